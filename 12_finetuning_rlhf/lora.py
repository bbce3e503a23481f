"""LoRA: finetune a frozen linear layer through a low-rank correction, r·(d_in + d_out) numbers instead
of d_in·d_out.

A finetuned weight W' = W + ΔW stays close to the pretrained W, and the change ΔW has low "intrinsic
rank"; LoRA trains it in factored form and leaves W frozen:

    h = W x + (alpha / r) · B A x,     A: (r, d_in) kaiming-uniform,  B: (d_out, r) zeros,  r << d_in, d_out
    merged:  W' = W + (alpha / r) · B A     (one matrix again: no extra cost at inference)

B = 0 at the start, so the adapted model begins exactly at the pretrained one; alpha / r keeps the
update's scale roughly independent of r (rsLoRA: alpha / sqrt(r)). Hu et al. adapt W_q and W_v of every
attention layer, the default here.

Papers: Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models" (§4, eq. 3); Kalajdzievski
2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA" (rsLoRA). The initialisation, the
scaling and the forward are those of peft's `LoraConfig` defaults (init_lora_weights=True, checked
against peft 0.21.2: same A and B give the same outputs and gradients).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from llmlab.utils.checks import check_bool, check_int, check_number, describe
from llmlab.utils.exercises import exercise

__all__ = ["LoRALinear", "apply_lora", "disable_lora", "merge_lora"]

DEFAULT_TARGETS = ("q_proj", "v_proj")  # Hu et al. 2021, §7.1: W_q and W_v


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update: y = base(x) + scaling · B(A(dropout(x))).

    base: the nn.Linear to adapt (its weight and bias are frozen in place, not copied).
    r: the rank; alpha: the scale numerator, scaling = alpha / r (alpha / sqrt(r) with rslora=True);
    dropout: applied to the adapter's input only (peft's lora_dropout).
    lora_A (r, in_features) starts kaiming-uniform (the default init of an nn.Linear, a = sqrt(5)),
    lora_B (out_features, r) at zero, both on base's device and dtype. `enabled = False` runs base alone.
    Raises TypeError unless base is an nn.Linear and rslora a bool, TypeError/ValueError unless r is an
    int >= 1, alpha a number > 0 and dropout a number in [0, 1).
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0, *,
                 rslora: bool = False) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be an nn.Linear, got {type(base).__name__}")
        self.r = check_int("r", r, minimum=1)
        self.alpha = check_number("alpha", alpha, low=0, low_open=True)
        self.dropout_p = check_number("dropout", dropout, low=0, high=1, high_open=True)
        self.rslora = check_bool("rslora", rslora)
        self.base = base
        for param in base.parameters():
            param.requires_grad_(False)  # the pretrained weights never move
        self.scaling = self.alpha / (math.sqrt(self.r) if rslora else self.r)
        like = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(self.r, base.in_features, **like))  # (r, d_in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, self.r, **like))  # (d_out, r): ΔW = 0
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # U(-1/sqrt(d_in), 1/sqrt(d_in))
        self.dropout = nn.Dropout(self.dropout_p) if self.dropout_p > 0 else nn.Identity()
        self.enabled = True

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:g}, enabled={self.enabled}"

    @exercise(4, "base(x) always; when enabled add scaling * dropout(x) through A then B (two thin "
              "matmuls, never the full B A product)")
    def forward(self, x: Tensor) -> Tensor:  # (..., d_in) -> (..., d_out)
        """y = base(x) + scaling · B(A(dropout(x))): (..., in_features) -> (..., out_features), float.

        With `enabled = False` the adapter is skipped and this is base(x) alone (LoRA, Hu et al. 2021, eq. 3).
        """
        y = self.base(x)
        if not self.enabled:
            return y
        # x A^T B^T: two thin matmuls through r dimensions; never the (d_out, d_in) product B A
        update = self.dropout(x) @ self.lora_A.T @ self.lora_B.T  # (..., r) -> (..., d_out)
        return y + self.scaling * update

    def delta_weight(self) -> Tensor:
        """ΔW = scaling · B A, (out_features, in_features), computed in float32 at least."""
        B, A = self.lora_B, self.lora_A
        if A.element_size() < 4:  # half precision: the product in float32, as peft does on CPU
            B, A = B.float(), A.float()
        return (self.scaling * (B @ A)).to(self.base.weight.dtype)

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        """A new nn.Linear with W + scaling · B A (and base's bias): the same function, one matmul.

        The result's parameters keep base's requires_grad (frozen); this module is not modified."""
        base = self.base
        merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)
        merged.weight.copy_(base.weight + self.delta_weight())
        if base.bias is not None:
            merged.bias.copy_(base.bias)
        for new, old in zip(merged.parameters(), base.parameters()):
            new.requires_grad_(old.requires_grad)
        return merged


def _matches(name: str, target_modules: str | Sequence[str]) -> bool:
    """peft's rule: a string is a regular expression for the whole module name; a list matches a name
    equal to one entry or ending in "." + entry (so "q_proj" hits blocks.0.attn.q_proj)."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == target or name.endswith("." + target) for target in target_modules)


def _check_targets(target_modules: object) -> str | tuple[str, ...]:
    if isinstance(target_modules, str):
        return target_modules
    if isinstance(target_modules, Sequence) and target_modules \
            and all(isinstance(t, str) and t for t in target_modules):
        return tuple(target_modules)
    raise TypeError(f"target_modules must be a regex string or a non-empty list of module names, got "
                    f"{describe(target_modules)}")


def apply_lora(model: nn.Module, *, r: int = 8, alpha: float = 16,
               target_modules: str | Sequence[str] = DEFAULT_TARGETS, dropout: float = 0.0,
               rslora: bool = False) -> nn.Module:
    """Freeze every parameter of `model` and wrap each targeted nn.Linear in a LoRALinear, in place.

    target_modules: module names as peft's LoraConfig takes them; in the lab GPT (lessons 04, 09, 10):
    attention "q_proj", "k_proj", "v_proj", "o_proj"; feed-forward "gate_proj" (gated activations only),
    "up_proj", "down_proj"; and "lm_head". Returns the model, whose only trainable parameters are the
    adapters' A and B (r·(in + out) per wrapped layer). Raises TypeError for a target that is not an
    nn.Linear, ValueError when nothing matches, the model already has adapters or a target's weight is tied
    to another layer (a tied lm_head: its merged weight could no longer be the embedding).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    targets = _check_targets(target_modules)
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("model already has LoRA adapters; merge_lora(model) first to add new ones")
    chosen = [(name, module) for name, module in model.named_modules() if name and _matches(name, targets)]
    if not chosen:
        linears = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                          if isinstance(m, nn.Linear)})
        raise ValueError(f"target_modules {targets!r} match no module; the model's linear layers are "
                         f"named {linears}")
    for name, module in chosen:
        if not isinstance(module, nn.Linear):
            raise TypeError(f"target_modules must name nn.Linear layers; {name!r} is a "
                            f"{type(module).__name__}")
    for name, module in chosen:  # a tied weight (GPT-2's lm_head is the token embedding) would untie on merge
        if any(other is not module and any(p is module.weight for p in other.parameters(recurse=False))
               for other in model.modules()):
            raise ValueError(f"target_modules: {name!r} shares its weight with another layer (tied "
                             f"embeddings); merging a LoRA into it would untie them: leave it out")
    for param in model.parameters():
        param.requires_grad_(False)
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(module, r, alpha, dropout, rslora=rslora))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear of `model` by its merged nn.Linear, in place; returns the model (the same
    function, the plain architecture again: ready for to_hf, quantization or a KV cache).

    Raises TypeError unless model is an nn.Module, or when it is a LoRALinear itself (call its .merge())."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, LoRALinear):
        raise TypeError("model is a LoRALinear itself: call its .merge()")
    adapted = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in adapted:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, getattr(parent, child).merge())
    return model


@contextmanager
def disable_lora(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` without its adapters inside the block: the frozen base model, with no copy (how trl
    gets the reference model of DPO and PPO when the policy is a LoRA model)."""
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    states = [layer.enabled for layer in layers]
    for layer in layers:
        layer.enabled = False
    try:
        yield model
    finally:
        for layer, state in zip(layers, states):
            layer.enabled = state
