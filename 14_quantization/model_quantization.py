"""Quantizing a whole model: every nn.Linear becomes a QuantizedLinear, by round-to-nearest or, with
calibration data, by GPTQ or AWQ.

The calibrated methods need each layer's inputs X. They are recorded with a forward hook while the
calibration tokens run through the model whose earlier layers are already quantized — so that each layer
corrects for the error of the layers before it, as both papers do (GPTQ quantizes sequentially, block by
block; AWQ applies each block's scales before moving on). The forward stops at the hooked layer (an
exception raised from the hook), so recording layer l costs a forward through layers <= l only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from llmlab.quantization.awq import awq_quantize
from llmlab.quantization.gptq import gptq_quantize, hessian
from llmlab.quantization.quantization import QuantizedLinear, _check_bits, _check_group_size
from llmlab.utils.checks import check_bool, check_choice

__all__ = ["METHODS", "quantize_model", "record_inputs"]

METHODS = ("rtn", "gptq", "awq")


def _target_linears(model: nn.Module, skip: Iterable[str]) -> list[str]:
    """Names of the nn.Linear modules to quantize, in registration order (= forward order in the lab GPT)."""
    skip = tuple(skip)
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(name == s or name.endswith("." + s) for s in skip)]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


class _Recorded(Exception):
    """Raised by the recording hook: the inputs are in, the rest of the forward is not needed."""


@torch.no_grad()
def record_inputs(model: nn.Module, name: str, calibration: Tensor) -> Tensor:
    """The inputs (n, in_features) that the module `name` sees when `calibration` runs through `model`
    (model(calibration), in eval mode; the forward stops right after that module is reached).

    Raises AttributeError (get_submodule's) when model has no module `name`, RuntimeError when
    model(calibration) never calls it."""
    module = model.get_submodule(name)
    inputs = []

    def hook(_module, args):
        inputs.append(args[0].detach().reshape(-1, args[0].shape[-1]))
        raise _Recorded

    handle = module.register_forward_pre_hook(hook)
    training = model.training
    model.eval()
    try:
        model(calibration)
    except _Recorded:
        pass
    finally:
        handle.remove()
        model.train(training)
    if not inputs:
        raise RuntimeError(f"module {name!r} was never called by model(calibration)")
    return inputs[0]


def quantize_model(model: nn.Module, *, bits: int, group_size: int | None = None, method: str = "rtn",
                   calibration: Tensor | None = None, skip: Iterable[str] = ("lm_head",),
                   inplace: bool = False, **method_options) -> nn.Module:
    """A copy of `model` (the model itself with inplace=True) whose every nn.Linear — except those named
    in `skip`, by default the output layer, which GPTQ, AWQ and llama.cpp keep at higher precision — is
    a QuantizedLinear with `bits`-bit symmetric weights, per output channel or per group.

    method "rtn": round to nearest, weight by weight. "gptq" / "awq": calibrated on `calibration`, a
    (B, T) tensor of token ids (anything the model's forward takes as its first argument).
    method_options go to gptq_quantize (damp=, block_size=) or awq_search (n_grid=).
    Raises TypeError/ValueError naming the argument (bits outside 2-8, a group size that does not divide
    a layer's width, a missing or superfluous calibration, an unknown method).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_bits(bits)
    check_choice("method", method, METHODS)
    check_bool("inplace", inplace)
    if method == "rtn" and calibration is not None:
        raise ValueError("calibration is only used by method='gptq' or 'awq', got it with method='rtn'")
    if method != "rtn" and calibration is None:
        raise ValueError(f"method={method!r} needs calibration (token ids (B, T) to record inputs on)")
    if method == "rtn" and method_options:
        raise TypeError(f"method='rtn' takes no options, got {sorted(method_options)}")
    names = _target_linears(model, skip)
    for name in names:
        _check_group_size(group_size, model.get_submodule(name).in_features)
    if not inplace:
        model = copy.deepcopy(model)
    for name in names:
        linear = model.get_submodule(name)
        if method == "rtn":
            layer = QuantizedLinear.from_linear(linear, bits, group_size=group_size)
        else:  # the inputs of this layer, with every earlier layer already quantized
            X = record_inputs(model, name, calibration)  # (n, in)
            if method == "gptq":
                codes, scale = gptq_quantize(linear.weight, hessian(X), bits, group_size=group_size,
                                             **method_options)
                input_scale = None
            else:
                codes, scale, input_scale = awq_quantize(linear.weight, X, bits, group_size=group_size,
                                                         **method_options)
            layer = QuantizedLinear.from_codes(codes, scale, bits, group_size=group_size, bias=linear.bias,
                                               input_scale=input_scale)
        _set_module(model, name, layer)
    return model
