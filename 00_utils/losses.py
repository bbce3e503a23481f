"""Softmax and cross-entropy from scratch, numerically stable (the loss every lab model minimises).

A language model outputs a score (logit) per vocabulary entry; softmax turns the scores into
probabilities and the cross-entropy is minus the log-probability of the true next token, averaged
over the tokens that count:

    softmax(z)_i     = exp(z_i) / sum_j exp(z_j)
    log_softmax(z)_i = z_i - logsumexp(z),   logsumexp(z) = m + log sum_j exp(z_j - m),  m = max_j z_j
    CE               = (1 / |counted|) * sum_{n counted} -log_softmax(z_n)[y_n]

Subtracting the max changes nothing mathematically (it cancels between numerator and denominator)
but keeps every exp() in (0, 1]: exp(1e4) overflows to inf in float32 (and exp(12) in float16)
while exp(1e4 - 1e4) = 1. Half-precision inputs are computed in float32 and the result cast back,
as torch's kernels accumulate in float32. Targets equal to `ignore_index` (-100, the transformers
convention for padding and prompt tokens) are not counted. No paper: this is the maximum-likelihood
objective of every language model since Shannon; the log-sum-exp shift is standard numerics.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llmlab.utils.checks import check_tensor

REDUCTIONS = ("mean", "sum", "none")


def _at_least_float32(logits: Tensor) -> Tensor:
    # float16/bfloat16 -> float32: the sums need the range and precision; float64 stays float64
    return logits.float() if logits.element_size() < 4 else logits


def _log_softmax_float32(logits: Tensor, dim: int) -> Tensor:
    x = _at_least_float32(logits)
    m = x.amax(dim=dim, keepdim=True).detach()  # the shift; a constant for the gradient (it cancels)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # a row of all -inf: no shift, no nan
    shifted = x - m  # every entry <= 0, so exp() <= 1: no overflow
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def log_softmax(logits: Tensor, dim: int = -1) -> Tensor:
    """log softmax along `dim`, shifted by the max (any shape; same dtype as `logits`).

    Raises TypeError unless logits is a floating-point tensor.
    """
    check_tensor("logits", logits, dtype="float")
    return _log_softmax_float32(logits, dim).to(logits.dtype)


def softmax(logits: Tensor, dim: int = -1) -> Tensor:
    """Probabilities along `dim`: exp(z - max) / sum exp(z - max) (any shape; same dtype as `logits`).

    Raises TypeError unless logits is a floating-point tensor.
    """
    check_tensor("logits", logits, dtype="float")
    x = _at_least_float32(logits)
    m = x.amax(dim=dim, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = (x - m).exp()  # (..., C), in (0, 1]
    return (e / e.sum(dim=dim, keepdim=True)).to(logits.dtype)


def cross_entropy(logits: Tensor, targets: Tensor, *, ignore_index: int = -100,
                  reduction: str = "mean") -> Tensor:
    """Cross-entropy of integer targets. logits: (N, C) or (..., C), classes last; targets: (N,) or (...).

    reduction "mean": the mean over the targets != ignore_index (nan when none counts, as torch);
    "sum": their sum; "none": the per-target loss (0 where ignored), shaped like `targets`.
    Equal to `F.cross_entropy(logits.reshape(-1, C), targets.reshape(-1))` (torch puts the classes
    of >2-D inputs in dim 1; here they are always last, as a language model's logits are).
    Raises TypeError unless logits is a floating-point tensor, targets an integer tensor and ignore_index
    an int; ValueError for logits without a class dimension, targets of the wrong shape or an unknown
    reduction.
    """
    check_tensor("logits", logits, dtype="float")
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a class dimension (last) of size >= 1, got shape "
                         f"{tuple(logits.shape)}")
    if not isinstance(targets, Tensor) or targets.is_floating_point() or targets.is_complex() \
            or targets.dtype == torch.bool:
        got = targets.dtype if isinstance(targets, Tensor) else type(targets).__name__
        raise TypeError(f"targets must be an integer tensor, got {got}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have shape {tuple(logits.shape[:-1])} (logits without the class "
                         f"dimension), got {tuple(targets.shape)}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    targets = targets.long()
    logp = _log_softmax_float32(logits, -1)  # (..., C) in float32 (or float64)
    counted = targets != ignore_index  # (...)
    safe = torch.where(counted, targets, torch.zeros_like(targets))  # an in-range index where ignored
    nll = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (...) -log p(target)
    nll = torch.where(counted, nll, torch.zeros_like(nll))
    if reduction == "none":
        return nll.to(logits.dtype)
    total = nll.sum()
    if reduction == "sum":
        return total.to(logits.dtype)
    return (total / counted.sum()).to(logits.dtype)  # 0 / 0 = nan when nothing counts, as torch


