"""Lesson 14: quantization — integer weights from scratch (symmetric / asymmetric, per tensor, channel and
group; fake quantization with the straight-through estimator; QuantizedLinear), GPTQ and AWQ, llama.cpp's
Q8_0 / Q4_0 blocks and GGUF files that transformers and llama.cpp read."""

from llmlab.quantization.awq import awq_quantize, awq_quantize_weight, awq_scales, awq_search
from llmlab.quantization.gguf_blocks import (
    dequantize_q4_0,
    dequantize_q8_0,
    quantize_q4_0,
    quantize_q8_0,
)
from llmlab.quantization.gguf_export import (
    GGUF_QTYPES,
    export_gguf,
    gguf_tensor_names,
    interleave_rope_rows,
    load_gguf,
    uninterleave_rope_rows,
)
from llmlab.quantization.gptq import gptq_quantize, gptq_quantize_weight, hessian, layer_output_error
from llmlab.quantization.model_quantization import METHODS, quantize_model, record_inputs
from llmlab.quantization.quantization import (
    SCHEMES,
    QuantizedLinear,
    QuantizedTensor,
    dequantize,
    fake_quantize,
    pack_int4,
    quantize,
    quantize_rtn,
    quantized_range,
    unpack_int4,
)

__all__ = [
    "GGUF_QTYPES",
    "METHODS",
    "SCHEMES",
    "QuantizedLinear",
    "QuantizedTensor",
    "awq_quantize",
    "awq_quantize_weight",
    "awq_scales",
    "awq_search",
    "dequantize",
    "dequantize_q4_0",
    "dequantize_q8_0",
    "export_gguf",
    "fake_quantize",
    "gguf_tensor_names",
    "gptq_quantize",
    "gptq_quantize_weight",
    "hessian",
    "interleave_rope_rows",
    "layer_output_error",
    "load_gguf",
    "pack_int4",
    "quantize",
    "quantize_model",
    "quantize_q4_0",
    "quantize_q8_0",
    "quantize_rtn",
    "quantized_range",
    "record_inputs",
    "uninterleave_rope_rows",
    "unpack_int4",
]
