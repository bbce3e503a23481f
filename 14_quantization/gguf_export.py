"""The lab Llama as a GGUF file: the single-file format that llama.cpp (and Ollama, LM Studio, and
transformers' `gguf_file=` loader) read — a header of key/value metadata, a table of tensors (name, shape,
type, offset), then the tensor data, each aligned to 32 bytes.

What makes a lab model a llama.cpp model:
- metadata under the architecture's prefix: `llama.block_count`, `llama.embedding_length`,
  `llama.attention.head_count(_kv)`, `llama.rope.freq_base`, ... (`GGUF_METADATA` below), plus
  `general.architecture`, `general.file_type` (the llama_ftype of the bulk of the tensors) and
  `general.quantization_version`;
- llama.cpp's tensor names: `token_embd`, `blk.N.attn_q` ..., `output` (`gguf_tensor_names`);
- shapes written innermost-first: an (out, in) weight is a GGUF tensor with ne = [in, out], and the
  quantization blocks run along `in`, the dimension the dot products reduce over;
- the Q/K row permutation. llama.cpp's RoPE rotates ADJACENT pairs (x0, x1), (x2, x3), ... (Meta's original
  layout); transformers' Llama, and the lab GPT (lesson 02's apply_rope), rotate the two HALVES (x_i,
  x_{i+d/2}) of each head. The two compute the same attention if the rows of W_q and W_k are reordered
  within each head: row i of the first half goes to 2i, row i of the second half to 2i + 1 — what
  llama.cpp's convert_hf_to_gguf.py does, and what transformers undoes when it loads a GGUF file. Without
  it the model loads but every query and key is rotated wrongly and the logits are garbage.

Types: "F32", "F16", "Q8_0", "Q4_0" for the 2-D weights (the blocks of gguf_blocks.py); a weight whose
width is not a multiple of 32 cannot be cut into blocks and falls back to F16, and the 1-D norm weights
stay F32, as llama.cpp does. The container is written with gguf-py's GGUFWriter; every byte of tensor data
is made here. `load_gguf` reads a file back into a lab GPT (the inverse, for round trips).

Tokenizer (optional, lesson 01's byte-level BPETokenizer): llama.cpp's "gpt2" tokenizer model — every token
spelled in GPT-2's byte alphabet (a space is 'Ġ'), the merges as "left right" strings in merge order, the
pre-tokenizer named by its split pattern ("llama-bpe" is llama.cpp's name for the GPT-4 pattern, "gpt-2"
for GPT-2's), special tokens marked CONTROL and ids the tokenizer does not use UNUSED. transformers
needs none of it to load the model; llama.cpp needs it to run the file at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import torch
from torch import nn

from llmlab.quantization.gguf_blocks import (
    BLOCK_SIZE,
    dequantize_q4_0,
    dequantize_q8_0,
    quantize_q4_0,
    quantize_q8_0,
)
from llmlab.tokenization import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer
from llmlab.tokenization.bpe import gpt2_byte_chars
from llmlab.transformer_block import GPT, GPTConfig, llama_config
from llmlab.utils.checks import check_choice

__all__ = [
    "GGUF_QTYPES",
    "export_gguf",
    "gguf_tensor_names",
    "interleave_rope_rows",
    "load_gguf",
    "uninterleave_rope_rows",
]

GGUF_QTYPES = ("F32", "F16", "Q8_0", "Q4_0")
# llama.cpp's llama_ftype: what general.file_type says the bulk of the tensors is
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7}
QUANTIZATION_VERSION = 2  # ggml's GGML_QNT_VERSION: the layout of the quantized blocks
ARCHITECTURE = "llama"
ALIGNMENT = 32  # bytes: GGUF's default general.alignment
PRE_TOKENIZERS = {GPT4_SPLIT_PATTERN: "llama-bpe", GPT2_SPLIT_PATTERN: "gpt-2"}  # llama.cpp's names
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_UNUSED = 1, 3, 5  # llama.cpp's llama_token_type


def _require_llama(model: object) -> GPTConfig:
    """The config of a lab GPT that llama.cpp's "llama" architecture computes exactly."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a lab GPT (llmlab.transformer_block.GPT), got {type(model).__name__}")
    config = model.config
    needs = {"norm": "rmsnorm", "pos": "rope", "activation": "swiglu", "prenorm": True, "residual": True,
             "bias": False, "causal": True, "attn_scale": None, "sliding_window": None, "n_experts": 0,
             "scale_embeddings": None}
    bad = [f"{field}={value!r} (got {getattr(config, field)!r})" for field, value in needs.items()
           if getattr(config, field) != value]
    if bad:
        raise ValueError("model must be a Llama-style GPT (llama_config) for llama.cpp's 'llama' "
                         "architecture; it needs " + ", ".join(bad))
    not_linear = [name for name, module in model.named_modules()
                  if name and not isinstance(module, nn.Linear) and name.endswith("_proj")]
    if not_linear:
        raise TypeError(f"model must hold float nn.Linear layers (export before quantize_model: the GGUF "
                        f"types quantize the weights themselves), got {not_linear[0]!r}")
    return config


def gguf_tensor_names(config: GPTConfig) -> dict[str, str]:
    """Lab parameter name -> llama.cpp tensor name (the output layer only when untied)."""
    names = {"tok_emb.weight": "token_embd.weight", "norm_f.weight": "output_norm.weight"}
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"blk.{i}."
        names |= {
            ours + "norm1.weight": theirs + "attn_norm.weight",
            ours + "attn.q_proj.weight": theirs + "attn_q.weight",
            ours + "attn.k_proj.weight": theirs + "attn_k.weight",
            ours + "attn.v_proj.weight": theirs + "attn_v.weight",
            ours + "attn.o_proj.weight": theirs + "attn_output.weight",
            ours + "norm2.weight": theirs + "ffn_norm.weight",
            ours + "ffn.gate_proj.weight": theirs + "ffn_gate.weight",
            ours + "ffn.up_proj.weight": theirs + "ffn_up.weight",
            ours + "ffn.down_proj.weight": theirs + "ffn_down.weight",
        }
    if not config.tie_embeddings:  # tied: llama.cpp reads the logits off token_embd
        names["lm_head.weight"] = "output.weight"
    return names


def interleave_rope_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """W_q or W_k (n_heads · head_dim, in) from the rotate-half order to llama.cpp's adjacent pairs:
    within each head, row i of the first half -> row 2i, row i of the second half -> row 2i + 1."""
    out_features, in_features = weight.shape
    head_dim = out_features // n_heads
    halves = weight.reshape(n_heads, 2, head_dim // 2, in_features)  # (H, half, i, in)
    return halves.transpose(1, 2).reshape(out_features, in_features)  # (H, i, half, in) -> rows 2i + half


def uninterleave_rope_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of interleave_rope_rows (what transformers applies when it loads a GGUF file)."""
    out_features, in_features = weight.shape
    head_dim = out_features // n_heads
    pairs = weight.reshape(n_heads, head_dim // 2, 2, in_features)  # (H, i, half, in)
    return pairs.transpose(1, 2).reshape(out_features, in_features)


def _metadata(config: GPTConfig) -> dict[str, tuple[str, object]]:
    """GGUF key -> (value type, value): the hyperparameters llama.cpp's llama architecture reads."""
    a = ARCHITECTURE
    return {
        f"{a}.vocab_size": ("uint32", config.vocab_size),
        f"{a}.context_length": ("uint32", config.block_size),
        f"{a}.embedding_length": ("uint32", config.d_model),
        f"{a}.block_count": ("uint32", config.n_layer),
        f"{a}.feed_forward_length": ("uint32", config.ffn_dim),
        f"{a}.attention.head_count": ("uint32", config.n_head),
        f"{a}.attention.head_count_kv": ("uint32", config.kv_heads),
        f"{a}.attention.layer_norm_rms_epsilon": ("float32", config.norm_eps),
        f"{a}.rope.freq_base": ("float32", config.rope_base),
        f"{a}.rope.dimension_count": ("uint32", config.head_dim),
    }


def _tokenizer_metadata(tokenizer: BPETokenizer, vocab_size: int) -> dict[str, object]:
    """tokenizer.ggml.* for a byte-level BPE whose ids all fit in the model's vocab_size."""
    if not isinstance(tokenizer, BPETokenizer):
        raise TypeError(f"tokenizer must be a BPETokenizer (lesson 01), got {type(tokenizer).__name__}")
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids, more than the model's "
                         f"vocab_size={vocab_size}")
    if tokenizer.pattern not in PRE_TOKENIZERS:
        raise ValueError("tokenizer must split with GPT2_SPLIT_PATTERN or GPT4_SPLIT_PATTERN, the two "
                         "patterns llama.cpp has a pre-tokenizer for")
    chars = gpt2_byte_chars()
    spell = lambda token_id: "".join(chars[b] for b in tokenizer.vocab[token_id])  # noqa: E731
    tokens, types = [], []
    for token_id in range(vocab_size):
        if token_id in tokenizer.inverse_special_tokens:
            tokens.append(tokenizer.inverse_special_tokens[token_id])
            types.append(TOKEN_CONTROL)
        elif token_id in tokenizer.vocab:
            tokens.append(spell(token_id))
            types.append(TOKEN_NORMAL)
        else:  # the model's embedding has rows no token uses (vocab padded to a round size)
            tokens.append(f"[PAD{token_id}]")
            types.append(TOKEN_UNUSED)
    merges = [f"{spell(a)} {spell(b)}" for (a, b), _ in sorted(tokenizer.merges.items(), key=lambda m: m[1])]
    metadata = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": PRE_TOKENIZERS[tokenizer.pattern],
                "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
                "tokenizer.ggml.merges": merges}
    eos = tokenizer.special_tokens.get("<|endoftext|>")
    if eos is not None:
        metadata["tokenizer.ggml.eos_token_id"] = eos
        metadata["tokenizer.ggml.bos_token_id"] = eos  # GPT-2's one special token serves as both
    return metadata


def _tensor_type(array: np.ndarray, qtype: str) -> str:
    """The type a tensor is stored in: 1-D stays F32, widths that are not whole blocks fall back to F16."""
    if array.ndim == 1:
        return "F32"
    if qtype in ("Q8_0", "Q4_0") and array.shape[-1] % BLOCK_SIZE:
        return "F16"
    return qtype


def _encode(array: np.ndarray, tensor_type: str) -> np.ndarray:
    """float32 (..., n) -> the array GGUFWriter stores: float32/float16 values or uint8 block bytes."""
    if tensor_type == "F32":
        return array.astype(np.float32)
    if tensor_type == "F16":
        return array.astype(np.float16)
    return quantize_q8_0(array) if tensor_type == "Q8_0" else quantize_q4_0(array)


def export_gguf(model: GPT, path: str | os.PathLike, *, qtype: str = "F32", name: str = "llm-lab",
                tokenizer: BPETokenizer | None = None) -> Path:
    """Write a Llama-style lab GPT as a GGUF file that llama.cpp and transformers load; returns the path.

    qtype: the type of the 2-D weights — "F32", "F16", "Q8_0" (8.5 bits/weight) or "Q4_0" (4.5);
    widths that are not a multiple of 32 fall back to F16 and 1-D norms stay F32, as llama.cpp does.
    tokenizer: lesson 01's BPETokenizer the model was trained with, written as llama.cpp's "gpt2"
    tokenizer metadata (None: no tokenizer in the file).
    Raises TypeError/ValueError for a model that llama.cpp's llama architecture cannot represent (naming
    the config fields), an unknown qtype, a tokenizer with more ids than the model's vocabulary.
    """
    config = _require_llama(model)
    check_choice("qtype", qtype, GGUF_QTYPES)
    path = Path(path)
    if path.suffix != ".gguf":
        raise ValueError(f"path must end in .gguf, got {str(path)!r}")
    tokenizer_metadata = {} if tokenizer is None else _tokenizer_metadata(tokenizer, config.vocab_size)
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    writer = gguf.GGUFWriter(path, ARCHITECTURE)  # writes general.architecture itself
    writer.add_string("general.name", name)
    for key, (kind, value) in _metadata(config).items():
        getattr(writer, f"add_{kind}")(key, value)
    writer.add_uint32("general.file_type", FILE_TYPES[qtype])
    writer.add_uint32("general.quantization_version", QUANTIZATION_VERSION)
    for key, value in tokenizer_metadata.items():
        if isinstance(value, list):
            writer.add_array(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_string(key, value)
    for ours, theirs in gguf_tensor_names(config).items():
        weight = state[ours]
        if ours.endswith("q_proj.weight"):
            weight = interleave_rope_rows(weight, config.n_head)
        elif ours.endswith("k_proj.weight"):
            weight = interleave_rope_rows(weight, config.kv_heads)
        array = weight.numpy()
        tensor_type = _tensor_type(array, qtype)
        raw = gguf.GGMLQuantizationType[tensor_type] if tensor_type in ("Q8_0", "Q4_0") else None
        writer.add_tensor(theirs, _encode(array, tensor_type), raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _decode(tensor) -> np.ndarray:
    """A GGUFReader tensor -> float32 in PyTorch's order (GGUF lists the shape innermost-first)."""
    kind = tensor.tensor_type.name
    shape = tuple(int(n) for n in reversed(tensor.shape))  # e.g. (out, in)
    if kind == "F32":
        return np.asarray(tensor.data, dtype=np.float32).reshape(shape)
    if kind == "F16":
        return np.asarray(tensor.data).astype(np.float32).reshape(shape)
    if kind == "Q8_0":
        return dequantize_q8_0(np.asarray(tensor.data).reshape(shape[0], -1), shape)
    if kind == "Q4_0":
        return dequantize_q4_0(np.asarray(tensor.data).reshape(shape[0], -1), shape)
    raise ValueError(f"tensor {tensor.name!r} has type {kind}; load_gguf reads F32, F16, Q8_0 and Q4_0")


def load_gguf(path: str | os.PathLike) -> GPT:
    """A lab GPT from a GGUF file written by export_gguf (or any llama-architecture file with these types
    and no biases): the metadata back into a llama_config, the tensors dequantized and un-permuted.

    Raises ValueError for a file without a metadata key this needs or whose general.architecture is not
    'llama', and what gguf.GGUFReader raises for a missing or unreadable file."""
    reader = gguf.GGUFReader(Path(path))

    def field(key: str):
        if key not in reader.fields:
            raise ValueError(f"{path}: metadata key {key!r} missing")
        return reader.fields[key].contents()

    if field("general.architecture") != ARCHITECTURE:
        raise ValueError(f"{path}: general.architecture must be {ARCHITECTURE!r}, got "
                         f"{field('general.architecture')!r}")
    a = ARCHITECTURE
    tensors = {t.name: t for t in reader.tensors}
    config = llama_config(
        vocab_size=int(field(f"{a}.vocab_size")), block_size=int(field(f"{a}.context_length")),
        d_model=int(field(f"{a}.embedding_length")), n_layer=int(field(f"{a}.block_count")),
        d_ff=int(field(f"{a}.feed_forward_length")), n_head=int(field(f"{a}.attention.head_count")),
        n_kv_head=int(field(f"{a}.attention.head_count_kv")),
        # stored as float32: back to the shortest decimal that rounds to it (1e-06, not 9.99999997e-07)
        norm_eps=float(np.format_float_positional(np.float32(field(f"{a}.attention.layer_norm_rms_epsilon")),
                                                  unique=True)),
        rope_base=float(field(f"{a}.rope.freq_base")), tie_embeddings="output.weight" not in tensors,
    )
    model = GPT(config)
    state = {}
    for ours, theirs in gguf_tensor_names(config).items():
        weight = torch.from_numpy(_decode(tensors[theirs]).copy())
        if ours.endswith("q_proj.weight"):
            weight = uninterleave_rope_rows(weight, config.n_head)
        elif ours.endswith("k_proj.weight"):
            weight = uninterleave_rope_rows(weight, config.kv_heads)
        state[ours] = weight
    if config.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    model.load_state_dict(state, strict=True)
    return model.eval()
