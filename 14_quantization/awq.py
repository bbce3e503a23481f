"""AWQ: activation-aware weight quantization. A few input channels carry much larger activations than the
rest; their weights matter most for the output, so scale those weight columns UP before rounding (their
relative rounding error shrinks) and divide the activations by the same factor (the product is unchanged).

    y = W x = (W · diag(s)) (x / s)          exact for any s > 0
    ŷ = Q(W · diag(s)) (x / s)               AWQ: round the scaled weight
    s = mean|x|^α  (per input channel, over calibration tokens),  α ∈ [0, 1] chosen on a grid to minimize
        ||X Wᵀ - (X / s) Q(W diag(s))ᵀ||²    the layer's output error on the calibration inputs

α = 0 gives s = 1, plain round-to-nearest, so the search can only do as well or better than RTN on the
calibration data. Scaling a channel up makes its weights dominate their group's absmax, which coarsens
the grid for the others: α trades the two, which is why it is searched rather than fixed.

Paper: Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration"
(§3.2, the search over α; the scales are normalized by sqrt(max·min) as in AutoAWQ, which changes nothing
for absmax scales but keeps the numbers near 1). Left out: AWQ's second search, the clipping range of each
group. In a deployed model 1/s is folded into the previous operator (the norm before q/k/v, up_proj
before down_proj); QuantizedLinear keeps it as its `input_scale` instead, which computes the same thing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llmlab.quantization.quantization import (
    _check_bits,
    _check_group_size,
    dequantize,
    quantize,
    quantize_rtn,
)
from llmlab.utils.checks import check_int, check_number, check_tensor
from llmlab.utils.exercises import exercise

__all__ = ["awq_quantize", "awq_quantize_weight", "awq_scales", "awq_search"]


def _fake_quantized(W: Tensor, bits: int, group_size: int | None) -> Tensor:
    return dequantize(quantize(W, bits, axis=None if group_size else 0, group_size=group_size))


def awq_scales(x_mean: Tensor, alpha: float) -> Tensor:
    """s = mean|x|^α per input channel, normalized to s / sqrt(max(s)·min(s)); α = 0 gives s = 1.

    Raises TypeError unless x_mean is a floating-point tensor, ValueError unless it is 1-D,
    TypeError/ValueError unless alpha is a number in [0, 1].
    """
    check_tensor("x_mean", x_mean, ndim=1, dtype="float")
    check_number("alpha", alpha, low=0, high=1)
    s = x_mean.pow(alpha).clamp(min=1e-4)  # (in,) a channel that is always 0 keeps a usable scale
    return s / (s.max() * s.min()).sqrt()  # centre the scales on 1 (in log scale)


@exercise(7, "for each alpha on the grid: s = awq_scales of mean|X| per channel, W_hat = fake-quantized "
          "(W * s) / s, error = squared output error summed over out, averaged over tokens; keep the "
          "best")
@torch.no_grad()
def awq_search(W: Tensor, X: Tensor, bits: int, *, group_size: int | None = None, n_grid: int = 20
               ) -> tuple[Tensor, float, dict[float, float]]:
    """The per-input-channel scales s (in,) that minimize the output error of Q(W diag(s)) (x / s) over
    α ∈ {0, 1/n_grid, ..., 1}: returns (s, the best α, {α: squared output error / n}).

    W: (out, in); X: (n, in) calibration inputs (or (..., in), flattened).
    Raises TypeError unless W and X are floating-point tensors, ValueError unless W is 2-D and X has at least
    2 dimensions, the last of size in; TypeError/ValueError unless bits is an int in [2, 8], group_size None
    or an int >= 1 dividing in, and n_grid an int >= 1.
    """
    check_tensor("W", W, ndim=2, dtype="float")
    check_tensor("X", X, min_ndim=2, dtype="float")
    if X.shape[-1] != W.shape[1]:
        raise ValueError(f"X must have W's in_features={W.shape[1]} as its last dimension, "
                         f"got shape {tuple(X.shape)}")
    _check_bits(bits)
    group_size = _check_group_size(group_size, W.shape[1])
    check_int("n_grid", n_grid, minimum=1)
    W = W.detach().float()
    X = X.detach().reshape(-1, W.shape[1]).float()  # (n, in)
    exact = X @ W.T  # (n, out)
    x_mean = X.abs().mean(dim=0)  # (in,) the activation size of each input channel
    errors, best = {}, (float("inf"), 0.0, torch.ones_like(x_mean))
    for step in range(n_grid + 1):
        alpha = step / n_grid
        s = awq_scales(x_mean, alpha)  # (in,)
        W_hat = _fake_quantized(W * s, bits, group_size) / s  # (out, in) the effective weight
        error = float((exact - X @ W_hat.T).pow(2).sum(dim=1).mean())
        errors[alpha] = error
        if error < best[0]:
            best = (error, alpha, s)
    return best[2], best[1], errors


def awq_quantize(W: Tensor, X: Tensor, bits: int, *, group_size: int | None = None, n_grid: int = 20
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """AWQ of an (out, in) weight on calibration inputs X: (int8 codes (out, in) of W·diag(s), scales
    (out, n_groups), input scales s (in,)) — QuantizedLinear.from_codes(..., input_scale=s) computes
    Q(W diag(s)) (x / s)."""
    s, _, _ = awq_search(W, X, bits, group_size=group_size, n_grid=n_grid)
    codes, scales = quantize_rtn(W.detach().float() * s, bits, group_size=group_size)
    return codes, scales, s


def awq_quantize_weight(W: Tensor, X: Tensor, bits: int, *, group_size: int | None = None,
                        n_grid: int = 20) -> Tensor:
    """AWQ's effective weight Q(W diag(s)) diag(1/s), dequantized: (out, in) in W's dtype."""
    s, _, _ = awq_search(W, X, bits, group_size=group_size, n_grid=n_grid)
    return (_fake_quantized(W.detach().float() * s, bits, group_size) / s).to(W.dtype)
