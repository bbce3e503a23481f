"""Normalization layers, activations and feed-forward blocks, from scratch.

A normalization layer rescales each token's vector to a fixed size before it enters a sub-layer,
so that activations neither explode nor vanish as a deep stack trains; the feed-forward block is
the per-token MLP between two attentions, and its non-linearity decides what it can compute.
LayerNorm centres and scales, RMSNorm only scales; GELU and SiLU are smooth ReLUs; gated units
(SwiGLU, GeGLU) multiply two linear projections, one passed through the non-linearity.

Equations (x is one token's vector of size d, the statistics run over its last dimension):

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * w + b          (Ba et al. 2016)
    RMSNorm(x)   = x / sqrt(mean(x^2) + eps) * w                        (Zhang & Sennrich 2019)
    GELU(x)      = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))             (Hendrycks & Gimpel 2016)
                 ~ 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))     (the "tanh" approximation)
    SiLU(x)      = x * sigmoid(x)
    SwiGLU(x)    = (silu(x W1) * x W3) W2                                (Shazeer 2020)
    GeGLU(x)     = (gelu(x W1) * x W3) W2                                (Shazeer 2020)

Papers: Ba, Kiros & Hinton, "Layer Normalization" (2016); Zhang & Sennrich, "Root Mean Square
Layer Normalization" (2019); Hendrycks & Gimpel, "Gaussian Error Linear Units" (2016); Shazeer,
"GLU Variants Improve Transformer" (2020).

Parameter names follow torch and transformers so that state dicts copy without renaming:
norms have `weight` (and `bias`) like `nn.LayerNorm`/`nn.RMSNorm`; the feed-forward block has
`up_proj`, `down_proj` (plain MLP) or `gate_proj`, `up_proj`, `down_proj` (gated, like Llama's MLP).

Equal-parameter rule for gated units: a plain MLP of width d_ff has 2·d_model·d_ff weights, a gated
one of width h has 3·d_model·h, so h = 2/3·d_ff gives the same count. `ffn_hidden_size` applies it
the way Llama does: int(2·d_ff/3), rounded *up* to a multiple of `multiple_of` (8 by default; 256
with d_ff = 4·4096 gives Llama-7B's 11008).

`fused=True` (norms, activations, FeedForward): compute the same maths with torch's own kernel
(`F.layer_norm`, `F.rms_norm`, `F.gelu`, `F.silu`, `F.relu`) instead of the from-scratch formula —
the tests prove the two equal, and lesson 10's demo measures how much faster a training step gets,
which is why the lab GPT trains with them by default.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmlab.utils.checks import check_bool, check_choice, check_int, check_number, check_tensor
from llmlab.utils.exercises import exercise

NORMS = ("layernorm", "rmsnorm", "none")
ELEMENTWISE_ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")
GATED_ACTIVATIONS = ("swiglu", "geglu")
ACTIVATIONS = ELEMENTWISE_ACTIVATIONS + GATED_ACTIVATIONS
GELU_APPROXIMATIONS = ("none", "tanh")


# --------------------------------------------------------------------------- argument checks


def _check_affine(name: str, p: torch.Tensor | None, dim: int) -> None:
    if p is None:
        return
    check_tensor(name, p, min_ndim=1, dtype="float")
    if p.shape != (dim,):
        raise ValueError(f"{name} must have shape ({dim},) to match x's last dimension, got {tuple(p.shape)}")


def _check_gate_up(gate: object, up: object) -> None:
    check_tensor("gate", gate, min_ndim=1, dtype="float")
    check_tensor("up", up, min_ndim=1, dtype="float")
    if gate.shape != up.shape:
        raise ValueError(f"gate and up must have one shape, got {tuple(gate.shape)} and {tuple(up.shape)}")


# --------------------------------------------------------------------------- normalization maths


@exercise(4, "float32 for half inputs; subtract the mean over the last dim; divide by sqrt(biased "
          "variance + eps), eps inside the root; cast back, then weight and bias when given")
def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """LayerNorm over the last dimension. x: (..., d); weight, bias: (d,) or None -> (..., d).

    Raises TypeError unless x is a floating-point tensor with at least 1 dimension (ValueError for 0-d),
    ValueError for a weight or bias not of shape (x.shape[-1],) or an eps that is not a finite number > 0.
    """
    check_tensor("x", x, min_ndim=1, dtype="float")
    _check_affine("weight", weight, x.shape[-1])
    _check_affine("bias", bias, x.shape[-1])
    check_number("eps", eps, low=0, low_open=True)
    # statistics in float32 at least: a sum of squares in float16 overflows above |x| ~ 256
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    mean = xf.mean(dim=-1, keepdim=True)  # (..., 1)
    var = ((xf - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1), biased: divide by d like torch
    # eps inside the sqrt, as torch does: a constant row (var = 0) maps to 0 instead of 0/0
    out = ((xf - mean) * torch.rsqrt(var + eps)).to(x.dtype)  # (..., d)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


@exercise(3, "compute in float32 for half inputs; divide by sqrt(mean of squares over the last dim + "
          "eps) (rsqrt); cast back to x's dtype, then multiply by the weight")
def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dimension. x: (..., d); weight: (d,) or None -> (..., d).

    Raises TypeError unless x is a floating-point tensor with at least 1 dimension (ValueError for 0-d),
    ValueError for a weight not of shape (x.shape[-1],) or an eps that is not a finite number > 0.
    """
    check_tensor("x", x, min_ndim=1, dtype="float")
    _check_affine("weight", weight, x.shape[-1])
    check_number("eps", eps, low=0, low_open=True)
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    # no mean subtraction: Zhang & Sennrich found re-centring adds cost but not quality
    mean_square = xf.pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
    out = (xf * torch.rsqrt(mean_square + eps)).to(x.dtype)  # (..., d)
    # cast back before the weight, as Llama does, so the weight multiplies in the model's dtype
    return out * weight if weight is not None else out


# --------------------------------------------------------------------------- activation maths


@exercise(2, "exact: x times the normal CDF, written with erf(x / sqrt(2)); tanh: 0.5 x (1 + "
          "tanh(sqrt(2/pi) (x + 0.044715 x^3)))")
def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU = x * Phi(x), Phi the standard normal CDF; approximate="tanh" is GPT-2's formula.

    Raises TypeError unless x is a floating-point tensor with at least 1 dimension (ValueError for 0-d),
    ValueError for an approximate other than 'none' or 'tanh'.
    """
    check_tensor("x", x, min_ndim=1, dtype="float")
    check_choice("approximate", approximate, GELU_APPROXIMATIONS)
    if approximate == "tanh":
        # the tanh curve matched Phi to ~1e-3 when erf was slow on accelerators; GPT-2 used it
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))
        return 0.5 * x * (1.0 + torch.tanh(inner))
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU (a.k.a. swish) = x * sigmoid(x): smooth, non-monotonic just below 0, ~ReLU far away.

    Raises TypeError unless x is a floating-point tensor with at least 1 dimension (ValueError for 0-d).
    """
    check_tensor("x", x, min_ndim=1, dtype="float")
    return x * torch.sigmoid(x)


def relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU = max(x, 0).

    Raises TypeError unless x is a tensor, ValueError for a 0-d tensor.
    """
    check_tensor("x", x, min_ndim=1)
    return x.clamp_min(0)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The SwiGLU gate: silu(gate) * up, gate = x W1 and up = x W3, both (..., hidden).

    Raises TypeError unless gate and up are floating-point tensors, ValueError unless they have one shape.
    """
    _check_gate_up(gate, up)
    return silu(gate) * up


def geglu(gate: torch.Tensor, up: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """The GeGLU gate: gelu(gate) * up, gate = x W1 and up = x W3, both (..., hidden).

    Raises TypeError unless gate and up are floating-point tensors, ValueError unless they have one shape
    or for an unknown approximate.
    """
    _check_gate_up(gate, up)
    return gelu(gate, approximate) * up


# --------------------------------------------------------------------------- sizes and counting


@exercise(1, "plain activations keep d_ff; gated ones take int(2 * d_ff / 3) (at least 1) and round it "
          "up to a multiple of multiple_of")
def ffn_hidden_size(d_ff: int, activation: str, *, multiple_of: int = 8) -> int:
    """Hidden width that gives `activation`'s FFN the parameter count of a plain MLP of width d_ff.

    Plain activations keep d_ff. Gated ones (three matrices instead of two) get int(2·d_ff/3),
    rounded up to a multiple of `multiple_of` (hardware-friendly shapes; Llama's rule).
    Raises TypeError/ValueError unless d_ff and multiple_of are ints >= 1, ValueError for an unknown
    activation.
    """
    check_int("d_ff", d_ff, minimum=1)
    check_choice("activation", activation, ACTIVATIONS)
    check_int("multiple_of", multiple_of, minimum=1)
    if activation not in GATED_ACTIVATIONS:
        return d_ff
    hidden = max(1, int(2 * d_ff / 3))
    return multiple_of * math.ceil(hidden / multiple_of)


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared/tied tensors counted once).

    Raises TypeError unless module is an nn.Module.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------- analysis


@exercise(5, "in float32 for half inputs: the mean, the biased std (divide by d) and the root of the "
          "mean square, each over the last dim")
def token_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token (mean, std, rms) over the last dimension: x (..., d) -> three (...) tensors.

    std is the biased one (divide by d), the statistic LayerNorm divides by, so rms^2 = mean^2 + std^2
    exactly: RMSNorm rescales by the rms, LayerNorm removes the mean and rescales by the std, and the
    two agree when a token's mean is small next to its rms. Computed in float32 at least.
    Raises TypeError unless x is a floating-point tensor with at least 1 dimension (ValueError for 0-d).
    """
    check_tensor("x", x, min_ndim=1, dtype="float")
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    mean = xf.mean(dim=-1)  # (...)
    std = (xf - mean.unsqueeze(-1)).pow(2).mean(dim=-1).sqrt()  # (...)
    rms = xf.pow(2).mean(dim=-1).sqrt()  # (...)
    return mean, std, rms


# --------------------------------------------------------------------------- modules


class LayerNorm(nn.Module):
    """LayerNorm with a learnable gain `weight` (ones) and shift `bias` (zeros), over the last dim.

    Raises TypeError/ValueError unless dim is an int >= 1 and eps a finite number > 0, TypeError unless
    fused is a bool.
    """

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True, *, fused: bool = False) -> None:
        super().__init__()
        check_int("dim", dim, minimum=1)
        check_number("eps", eps, low=0, low_open=True)
        self.dim, self.eps, self.fused = dim, eps, check_bool("fused", fused)
        self.weight = nn.Parameter(torch.ones(dim))
        # bias=None (not a zero tensor) when disabled, like nn.LayerNorm(bias=False)
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., dim) -> (..., dim)
        if self.fused:  # the same maths in one torch kernel (tests prove equal): faster training
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        return layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, bias={self.bias is not None}, fused={self.fused}"


class RMSNorm(nn.Module):
    """RMSNorm with a learnable gain `weight` (ones), over the last dim; no bias, no centring.

    Raises TypeError/ValueError unless dim is an int >= 1 and eps a finite number > 0, TypeError unless
    fused is a bool.
    """

    def __init__(self, dim: int, eps: float = 1e-6, *, fused: bool = False) -> None:
        super().__init__()
        check_int("dim", dim, minimum=1)
        check_number("eps", eps, low=0, low_open=True)
        self.dim, self.eps, self.fused = dim, eps, check_bool("fused", fused)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., dim) -> (..., dim)
        if self.fused:  # the same maths in one torch kernel (tests prove equal): faster training
            return F.rms_norm(x, (self.dim,), self.weight, self.eps)
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, fused={self.fused}"


class GELU(nn.Module):
    """Raises ValueError for an approximate other than 'none' or 'tanh', TypeError unless fused is a bool."""
    def __init__(self, approximate: str = "none", *, fused: bool = False) -> None:
        super().__init__()
        check_choice("approximate", approximate, GELU_APPROXIMATIONS)
        self.approximate, self.fused = approximate, check_bool("fused", fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return F.gelu(x, approximate=self.approximate)
        return gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}, fused={self.fused}"


class SiLU(nn.Module):
    """Raises TypeError unless fused is a bool."""
    def __init__(self, *, fused: bool = False) -> None:
        super().__init__()
        self.fused = check_bool("fused", fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x) if self.fused else silu(x)


class ReLU(nn.Module):
    """Raises TypeError unless fused is a bool."""
    def __init__(self, *, fused: bool = False) -> None:
        super().__init__()
        self.fused = check_bool("fused", fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) if self.fused else relu(x)


def make_activation(name: str, *, fused: bool = False) -> nn.Module:
    """Element-wise activation module by name: "gelu", "gelu_tanh", "relu" or "silu".

    Raises ValueError for an unknown name or a gated one (use FeedForward), TypeError unless fused is a
    bool.
    """
    if name in GATED_ACTIVATIONS:
        raise ValueError(
            f"name {name!r} is a gated feed-forward unit, not an element-wise activation: use "
            f"FeedForward(d_model, d_ff, {name!r}); "
            f"element-wise names are {', '.join(ELEMENTWISE_ACTIVATIONS)}"
        )
    check_choice("name", name, ELEMENTWISE_ACTIVATIONS)
    if name == "gelu":
        return GELU("none", fused=fused)
    if name == "gelu_tanh":
        return GELU("tanh", fused=fused)
    return SiLU(fused=fused) if name == "silu" else ReLU(fused=fused)


def make_norm(kind: str, dim: int, *, eps: float | None = None, bias: bool = True,
              fused: bool = False) -> nn.Module:
    """Norm module by kind: "layernorm", "rmsnorm" or "none" (nn.Identity, for the ablation).

    eps=None takes the class default (1e-5 LayerNorm, 1e-6 RMSNorm); bias applies to LayerNorm only.
    fused=True computes the same maths with torch's kernel (faster; see `LayerNorm`).
    Raises ValueError for an unknown kind, TypeError/ValueError unless dim is an int >= 1 and eps (when
    given) a finite number > 0.
    """
    check_choice("kind", kind, NORMS)
    check_int("dim", dim, minimum=1)
    if eps is not None:
        check_number("eps", eps, low=0, low_open=True)
    if kind == "layernorm":
        return LayerNorm(dim, eps=1e-5 if eps is None else eps, bias=bias, fused=fused)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=1e-6 if eps is None else eps, fused=fused)
    return nn.Identity()


class FeedForward(nn.Module):
    """The per-token MLP of a transformer block. x: (..., d_model) -> (..., d_model).

    Plain ("gelu", "gelu_tanh", "relu", "silu"):  down_proj(act(up_proj(x)))
    Gated ("swiglu", "geglu"):                     down_proj(act(gate_proj(x)) * up_proj(x))

    d_ff is the hidden width as given: for equal parameter counts across activations pass
    `ffn_hidden_size(d_ff, activation)`. The gated form's names and maths are Llama's MLP, so its
    state dict copies directly (bias=False matches Llama). Dropout acts on the output.
    Raises TypeError/ValueError unless d_model and d_ff are ints >= 1 and dropout a number in [0, 1),
    ValueError for an unknown activation.
    """

    def __init__(
        self, d_model: int, d_ff: int, activation: str, *, bias: bool = True, dropout: float = 0.0,
        fused: bool = False,
    ) -> None:
        super().__init__()
        check_int("d_model", d_model, minimum=1)
        check_int("d_ff", d_ff, minimum=1)
        check_choice("activation", activation, ACTIVATIONS)
        check_number("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.d_model, self.d_ff, self.activation = d_model, d_ff, activation
        self.gated = activation in GATED_ACTIVATIONS
        if self.gated:
            # the gate decides, per hidden unit, how much of the linear "up" signal passes
            self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)
            self.act_fn = SiLU(fused=fused) if activation == "swiglu" else GELU("none", fused=fused)
        else:
            self.act_fn = make_activation(activation, fused=fused)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    @exercise(6, "gated: act(gate_proj(x)) * up_proj(x); plain: act(up_proj(x)); then down_proj and dropout")
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_model) -> (..., d_model). Raises TypeError unless x is a floating-point tensor with
        at least 1 dimension (ValueError for 0-d), ValueError unless x's last dimension is d_model.
        """
        check_tensor("x", x, min_ndim=1, dtype="float")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x's last dimension must be d_model={self.d_model}, got {tuple(x.shape)}")
        if self.gated:
            hidden = self.act_fn(self.gate_proj(x)) * self.up_proj(x)  # (..., d_ff)
        else:
            hidden = self.act_fn(self.up_proj(x))  # (..., d_ff)
        return self.dropout(self.down_proj(hidden))  # (..., d_model)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


class SwiGLU(FeedForward):
    """FeedForward(d_model, d_ff, "swiglu"): (silu(x W1) * x W3) W2, Llama's MLP."""

    def __init__(self, d_model: int, d_ff: int, *, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__(d_model, d_ff, "swiglu", bias=bias, dropout=dropout)


class GeGLU(FeedForward):
    """FeedForward(d_model, d_ff, "geglu"): (gelu(x W1) * x W3) W2."""

    def __init__(self, d_model: int, d_ff: int, *, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__(d_model, d_ff, "geglu", bias=bias, dropout=dropout)
