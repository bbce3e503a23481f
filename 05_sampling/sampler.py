"""Sampling: how the next token is picked from the model's logits, and the knobs that reshape the choice.

A language model does not write text; it gives a probability for every possible next token, and a
decoding rule picks one. Greedy decoding (always the argmax) is deterministic and tends to loop;
pure sampling follows the model everywhere, including into its long tail of unlikely tokens. The
knobs below reshape the distribution p = softmax(z) of the logits z before the one random draw:

    temperature T   p_i ∝ exp(z_i / T)                     T -> 0: argmax, T -> inf: uniform
    top-k           keep the k largest z_i                  (Fan, Lewis & Dauphin 2018)
    top-p (nucleus) keep the smallest top set with Σ p_i >= p
                                                            (Holtzman et al. 2020, "The Curious Case of
                                                             Neural Text Degeneration")
    min-p           keep p_i >= min_p · max_j p_j           (Nguyen et al. 2024, "Turning Up the Heat:
                                                             Min-p Sampling for Creative and Coherent
                                                             LLM Outputs")

Every filter takes logits (..., vocab) and returns logits of the same shape in which the removed
tokens are -inf (so softmax gives them probability 0 and renormalises the rest), computed in float32
whatever the input dtype (half-precision logits are upcast first: z / T at T = 1e-4 would overflow
float16, as would the exp of a softmax; transformers upcasts before its warpers too). They match
transformers' logits warpers token for token, ties and boundary included (tests/test_05_sampling.py);
`filter_logits` chains them in transformers' order, temperature -> top-k -> top-p -> min-p, and
`sample` is `filter_logits` followed by one multinomial draw. Nothing loops over the vocabulary in
Python, and nothing moves tensors between devices, so lesson 06 calls `sample` once per generated
token, on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llmlab.utils.checks import check_int, check_number, check_tensor
from llmlab.utils.exercises import exercise

# The curriculum's guidelines. "creative" takes the low end of its 1.5-2.0 temperature range: with
# top_p = 0.99 cutting only the last 1% of the mass, top_k = 100 is the main guard against the tail,
# and every step up in temperature moves mass into that tail (demo.py measures the NLL cost of 1.5 vs 2.0).
PRESETS: dict[str, dict[str, float | int]] = {
    "deterministic": {"temperature": 0.0},
    "focused": {"temperature": 0.7, "top_k": 10, "top_p": 0.9},
    "creative": {"temperature": 1.5, "top_k": 100, "top_p": 0.99},
}


# ------------------------------------------------------------------------------------------------
# argument checks: every message names the argument, the value and what is allowed


def _check_logits(logits: object) -> Tensor:
    """logits (..., vocab), vocab >= 1, floating point -> logits in float32 (float64 stays float64)."""
    check_tensor("logits", logits, min_ndim=1, dtype="float")
    if logits.shape[-1] == 0:
        raise ValueError(f"logits must have shape (..., vocab) with vocab >= 1, got {tuple(logits.shape)}")
    # float16 overflows at 65504: logits / 1e-4 or the exp of a softmax would turn into inf and nan.
    # Every filter computes in float32 (float64 stays float64), as transformers casts scores before
    # its warpers; the filtered logits come back in that dtype.
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


# The knobs raise ValueError for any bad value, a wrong type included, as transformers' warpers do.


def _check_temperature(temperature: object) -> float:
    return check_number("temperature", temperature, low=0, wrong_type=ValueError)  # 0 = argmax


def _check_top_k(top_k: object) -> int:
    return check_int("top_k", top_k, minimum=1, wrong_type=ValueError)


def _check_top_p(top_p: object) -> float:
    return check_number("top_p", top_p, low=0, high=1, low_open=True, wrong_type=ValueError)


def _check_min_p(min_p: object) -> float:
    return check_number("min_p", min_p, low=0, high=1, wrong_type=ValueError)


# ------------------------------------------------------------------------------------------------
# the filters: logits (..., vocab) in, logits (..., vocab) out, removed tokens = -inf


@exercise(1, "divide the logits by T; for T = 0 keep only the first argmax of each row (a boolean mask "
          "built with scatter) and set every other logit to -inf")
def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """z / T. T < 1 sharpens the distribution, T > 1 flattens it; T = 1 is the model's own.

    T = 0 is the limit T -> 0: all the mass on the argmax, so every other token becomes -inf (the
    first maximum wins a tie, as `torch.argmax` does).
    Raises TypeError unless logits is a floating-point tensor, ValueError if it has no vocab dimension or
    temperature is not a finite number >= 0.
    """
    logits, temperature = _check_logits(logits), _check_temperature(temperature)
    if temperature == 0:
        best = logits.argmax(dim=-1, keepdim=True)  # (..., 1)
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, best, True)  # (..., vocab)
        return logits.masked_fill(~keep, float("-inf"))
    return logits / temperature


@exercise(2, "clamp k to the vocab size; the k-th largest logit of each row (topk) is the threshold; set"
          " the logits strictly below it to -inf, so ties at the boundary stay")
def top_k_filter(logits: Tensor, top_k: int) -> Tensor:
    """Keep the top_k largest logits. A tie with the k-th value is kept too (like transformers), so
    ties can leave more than k tokens; top_k >= vocab keeps everything.
    Raises TypeError unless logits is a floating-point tensor, ValueError if it has no vocab dimension or
    top_k is not an int >= 1.
    """
    logits, top_k = _check_logits(logits), _check_top_k(top_k)
    k = min(top_k, logits.shape[-1])
    kth_value = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest logit
    return logits.masked_fill(logits < kth_value, float("-inf"))


@exercise(7, "sort ascending, cumulative softmax gives the tail mass up to each token; remove where it "
          "is <= 1 - top_p but never the most likely token; scatter the mask back to vocabulary order")
def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of most likely tokens whose probabilities sum to at least top_p.

    Computed from the bottom, as transformers does: sort ascending, accumulate the probability of
    the least likely tokens, and drop every token whose accumulated tail mass is still <= 1 - top_p
    (the tail is summed small numbers first, so no mass is lost to rounding). The most likely token
    always stays. top_p = 1 only drops tokens whose probability is exactly 0.
    Raises TypeError unless logits is a floating-point tensor, ValueError if it has no vocab dimension or
    top_p is not a number in (0, 1].
    """
    logits, top_p = _check_logits(logits), _check_top_p(top_p)
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=False)  # (..., vocab), ascending
    tail_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (..., vocab): mass of this token and all below
    sorted_remove = tail_mass <= 1 - top_p  # the tail that can go while >= top_p mass remains
    sorted_remove[..., -1] = False  # never remove the most likely token
    remove = sorted_remove.scatter(-1, sorted_idx, sorted_remove)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


@exercise(3, "softmax; remove the tokens whose probability is below min_p times the row's maximum, but "
          "never the argmax itself; -inf where removed")
def min_p_filter(logits: Tensor, min_p: float) -> Tensor:
    """Keep the tokens with p_i >= min_p · max_j p_j: the cut scales with the model's confidence
    (a peaked distribution keeps few tokens, a flat one many). min_p = 0 keeps everything.
    Raises TypeError unless logits is a floating-point tensor, ValueError if it has no vocab dimension or
    min_p is not a number in [0, 1].
    """
    logits, min_p = _check_logits(logits), _check_min_p(min_p)
    probs = logits.softmax(dim=-1)  # (..., vocab)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)  # (..., 1)
    remove = probs < threshold
    # the most likely token always stays, even when rounding puts it under its own threshold
    remove.scatter_(-1, probs.argmax(dim=-1, keepdim=True), False)
    return logits.masked_fill(remove, float("-inf"))


@exercise(5, "apply each knob that is on, in the order temperature (only if != 1), top-k, top-p (only if"
          " < 1), min-p, each on the output of the previous one")
def filter_logits(logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, min_p: float | None = None) -> Tensor:
    """temperature -> top-k -> top-p -> min-p, the order of transformers' `generate` (None = off).

    The order matters: top-p and min-p see the distribution *after* temperature and after top-k
    (renormalised over the survivors), so top-k then top-p can keep fewer tokens than either alone.
    As in `generate`, top_p = 1 is skipped (it could only remove tokens of probability exactly 0).
    Raises TypeError unless logits is a floating-point tensor, ValueError if it has no vocab dimension or
    a knob is out of range (ValueError for every bad knob, its type included, as transformers).
    """
    logits = _check_logits(logits)
    temperature = _check_temperature(temperature)
    top_k = None if top_k is None else _check_top_k(top_k)
    top_p = None if top_p is None else _check_top_p(top_p)
    min_p = None if min_p is None else _check_min_p(min_p)
    if temperature != 1.0:
        logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    if min_p is not None:
        logits = min_p_filter(logits, min_p)
    return logits


@exercise(6, "filter the logits, softmax them, flatten the leading dims to rows for torch.multinomial "
          "(one sample each, with the generator), reshape back to the leading shape")
def sample(logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           min_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """One token id per row of logits (..., vocab) -> (...,) int64, on the logits' device.

    temperature = 0 is greedy decoding: the argmax, no randomness (the other filters cannot change
    the argmax, so they are only checked). Otherwise: `filter_logits`, softmax, one multinomial draw
    from `generator` (which must live on the logits' device; None = torch's global RNG).
    Raises TypeError unless logits is a floating-point tensor, ValueError if it has no vocab dimension or
    a knob is out of range (ValueError for every bad knob, its type included, as transformers).
    """
    logits = _check_logits(logits)
    if _check_temperature(temperature) == 0:
        for check, value in ((_check_top_k, top_k), (_check_top_p, top_p), (_check_min_p, min_p)):
            if value is not None:
                check(value)
        return logits.argmax(dim=-1)  # (...,)
    filtered = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    probs = filtered.softmax(dim=-1)  # (..., vocab), float32 (or float64): see _check_logits
    flat = probs.reshape(-1, probs.shape[-1])  # (N, vocab): multinomial wants 1-D or 2-D
    ids = torch.multinomial(flat, num_samples=1, generator=generator)  # (N, 1)
    return ids.reshape(probs.shape[:-1])  # (...,)


# ------------------------------------------------------------------------------------------------
# analysis: how spread out a distribution is, and how much of the vocabulary a filter keeps


@exercise(4, "log_softmax, then p log p with the -inf entries counted as 0 (torch.where, not 0 * -inf = "
          "nan); the entropy is 0 minus the sum over the vocab")
def entropy(logits: Tensor) -> Tensor:
    """H = -Σ p_i log p_i in nats of softmax(logits), (..., vocab) -> (...,).

    exp(H) is the "effective number of choices": 1 for a certainty, vocab for a uniform distribution.
    Filtered (-inf) tokens contribute 0 (the limit p log p -> 0); a row of only -inf has entropy 0.
    Computed in float32 (half precision is upcast), float64 stays float64. The one entropy of the lab:
    for probabilities p (attention weights, lesson 03) pass their logs, entropy(p.log()) - log 0 = -inf.
    Raises TypeError unless logits is a floating-point tensor, ValueError if it has no vocab dimension.
    """
    logits = _check_logits(logits)
    log_probs = logits.log_softmax(dim=-1)  # (..., vocab)
    p_log_p = torch.where(log_probs > float("-inf"), log_probs.exp() * log_probs, 0.0)
    return 0.0 - p_log_p.sum(dim=-1)  # 0 - x, not -x: a certainty gives +0.0, not -0.0


def n_kept(filtered_logits: Tensor) -> Tensor:
    """How many tokens a filter left (logit > -inf), (..., vocab) -> (...,) int64. Sparsity = 1 - n/vocab.

    Raises TypeError unless filtered_logits is a floating-point tensor, ValueError if it has no vocab
    dimension.
    """
    return (_check_logits(filtered_logits) > float("-inf")).sum(dim=-1)


def kept_mass(logits: Tensor, filtered_logits: Tensor) -> Tensor:
    """The probability mass, under softmax(logits), of the tokens that survived the filter: (...,).

    Raises TypeError unless logits is a floating-point tensor, ValueError if it has no vocab dimension or
    filtered_logits has another shape.
    """
    logits, filtered_logits = _check_logits(logits), _check_logits(filtered_logits)
    if logits.shape != filtered_logits.shape:
        raise ValueError(f"filtered_logits must have the shape of logits {tuple(logits.shape)}, "
                         f"got {tuple(filtered_logits.shape)}")
    probs = logits.float().softmax(dim=-1)  # (..., vocab)
    return torch.where(filtered_logits > float("-inf"), probs, 0.0).sum(dim=-1)
