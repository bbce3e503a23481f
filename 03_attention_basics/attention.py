"""Attention: every token looks at every other token and takes a weighted average of what it finds.

A query asks a question, each key says how well it answers it, and the softmax of those match scores
decides how much of each value flows into the output, so attention is a weighted average of the values:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + M) V

with d the query/key width and M a mask (0 where a query may attend, -inf where it may not).
Paper: Vaswani et al. 2017, "Attention Is All You Need", https://arxiv.org/abs/1706.03762 (section 3.2).

Why divide by sqrt(d)? If the entries of q and k are independent with mean 0 and variance 1, the dot
product q . k is a sum of d such products, so its variance is d (its standard deviation sqrt(d)). With
d = 64 the raw scores are ~8 times too large: softmax saturates into a one-hot vector, almost all
weights sit at 0 or 1, and the gradient of softmax (w_i (delta_ij - w_j)) vanishes. Dividing by sqrt(d)
brings the variance back to 1, whatever the head width.

Multi-head attention runs H such attentions side by side on d_model / H wide slices of learned linear
projections of the input, so that different heads can look for different things, then mixes their
concatenated outputs with one more linear layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# lesson 05 (a later lesson): the one entropy of the lab, of softmax(logits) in nats
from llmlab.sampling import entropy
from llmlab.utils.checks import check_bool, check_int, check_number, check_tensor, renamed_arguments
from llmlab.utils.exercises import exercise

__all__ = [
    "MultiHeadAttention",
    "attention_distance",
    "attention_scale",
    "attention_entropy",
    "causal_mask",
    "head_divergence",
    "jensen_shannon",
    "scaled_dot_product_attention",
    "single_query_attention",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@exercise(1, "the factor that brings the variance of q . k back to 1 when q and k have independent "
          "entries of mean 0 and variance 1 (see the module docstring)")
def attention_scale(scale: float | None, head_dim: int) -> float:
    """The factor that multiplies the scores q . k: `scale` when given, else 1/sqrt(head_dim).

    Why 1/sqrt(head_dim): q . k is a sum of head_dim products, so its variance grows with the width;
    the default scale keeps the scores' variance at 1 and the softmax out of saturation
    (Vaswani et al. 2017, section 3.2.1). Raises TypeError/ValueError unless scale (when given) is a
    finite number > 0.
    """
    if scale is not None:
        return check_number("scale", scale, low=0, low_open=True)
    return 1.0 / math.sqrt(head_dim)


@exercise(3, "score every key against the query, turn the scores into weights that are >= 0 and sum to "
          "1 (without overflowing exp), then average the values with them")
def single_query_attention(
    q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None
) -> tuple[Tensor, Tensor]:
    """Attention for ONE query token: attention is a weighted average of the values.

    q: (D,) the query, k: (T, D) one key per token, v: (T, Dv) one value per token.
    Returns (out (Dv,), weights (T,)), with weights >= 0 summing to 1 and out = sum_t weights[t] * v[t].
    Raises TypeError unless q, k, v are floating-point tensors of one dtype, ValueError for wrong
    dimensions or sizes, or a scale that is not a finite number > 0.
    """
    check_tensor("q", q, ndim=1, dtype="float")
    check_tensor("k", k, ndim=2, dtype="float")
    check_tensor("v", v, ndim=2, dtype="float")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"k must have the same last dimension as q ({q.shape[-1]}), got shape {tuple(k.shape)}"
        )
    if v.shape[0] != k.shape[0]:
        raise ValueError(f"v must have one row per key ({k.shape[0]}), got shape {tuple(v.shape)}")
    if q.shape[0] == 0:
        raise ValueError("q must have width >= 1, got shape (0,)")
    if k.shape[0] == 0:
        raise ValueError(f"k must hold at least one key, got shape {tuple(k.shape)}")
    scale = attention_scale(scale, q.shape[-1])
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k and v must share one dtype, got q={q.dtype}, k={k.dtype}, v={v.dtype}")

    scores = (k @ q) * scale  # (T,)  how well each key matches the query
    # subtract the max before exp: softmax is unchanged, but exp can no longer overflow
    weights = torch.exp(scores - scores.max())  # (T,)
    weights = weights / weights.sum()  # (T,)  >= 0, sums to 1
    out = weights @ v  # (Dv,)  the weighted average of the values
    return out, weights


@exercise(2, "a (Tq, Tk) bool matrix of ones, kept on and below the diagonal shifted by offset: tril")
def causal_mask(
    Tq: int, Tk: int | None = None, *, offset: int = 0, device: torch.device | str | None = None
) -> Tensor:
    """Boolean (Tq, Tk) mask, True where query i may attend key j, i.e. where j <= i + offset.

    causal_mask(T) is True on and below the diagonal: token i sees tokens 0..i, never the future.
    The default offset=0 is *top-left* aligned, exactly like torch's `is_causal=True` (and our
    `causal=True`). When the queries are the LAST Tq of Tk tokens (a KV cache: one new query against
    T cached keys) use the *bottom-right* alignment offset = Tk - Tq, so that query i sits at
    position Tk - Tq + i.
    Raises TypeError/ValueError unless Tq and Tk are ints >= 0, TypeError unless offset is an int.
    """
    Tq = check_int("Tq", Tq, minimum=0)
    Tk = Tq if Tk is None else check_int("Tk", Tk, minimum=0)
    offset = check_int("offset", offset)
    return torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril(diagonal=offset)


@exercise(7, "scores = q @ k^T * scale (in float32 for half inputs); -inf where causal or mask forbids "
          "(a float mask is added); a row with nothing allowed gives zero weights, not NaN; softmax "
          "over the keys, dropout, weights @ v")
def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T * scale + mask) v for a whole batch of queries at once.

    q: (..., Tq, D), k: (..., Tk, D), v: (..., Tk, Dv); the leading (batch, head, ...) dims broadcast.
    mask: bool (True = may attend) or additive float (0 = attend, -inf = do not), broadcastable to
        (..., Tq, Tk). It may be combined with causal=True (both must allow a position).
    causal: top-left aligned like torch's `is_causal=True`: query i sees keys 0..i even when Tq != Tk.
        For queries that are the last Tq tokens (KV cache) pass mask=causal_mask(Tq, Tk, offset=Tk - Tq).
    scale: multiplies the scores; default 1/sqrt(D).
    dropout_p: drop attention weights with this probability (always applied when > 0, like torch).

    Returns (out (..., Tq, Dv), weights (..., Tq, Tk)) with the weights actually used for out.
    A fully masked row (a query that may attend nothing) gives zero weights and a zero output, not
    the NaN (0/0) of a plain softmax. Recent torch (2.5+) defines the same zeros in its math SDPA;
    older torch versions returned NaN there.
    Half-precision inputs: scores and softmax are computed in float32, then cast back.
    Raises TypeError unless q, k, v are floating-point tensors of one dtype, causal a bool and mask a bool
    or float tensor; ValueError for shapes that do not fit or broadcast, a scale that is not a finite
    number > 0 or dropout_p outside [0, 1).
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x, min_ndim=2, dtype="float")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k and v must share one dtype, got q={q.dtype}, k={k.dtype}, v={v.dtype}")
    Tq, D = q.shape[-2:]
    Tk = k.shape[-2]
    if k.shape[-1] != D:
        raise ValueError(f"k must have the same last dimension as q ({D}), got shape {tuple(k.shape)}")
    if v.shape[-2] != Tk:
        raise ValueError(f"v must have as many rows as k ({Tk}), got shape {tuple(v.shape)}")
    if Tk == 0 or D == 0:
        raise ValueError(f"k must hold at least one key of width >= 1, got shape {tuple(k.shape)}")
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError as err:
        raise ValueError(
            f"q, k and v leading (batch) dims must broadcast, "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        ) from err
    check_bool("causal", causal)
    dropout_p = check_number("dropout_p", dropout_p, low=0.0, high=1.0, high_open=True)
    scale = attention_scale(scale, D)
    scores_shape = (*batch, Tq, Tk)
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise TypeError(f"mask must be bool (True = may attend) or an additive float, got {mask.dtype}")
        try:
            ok = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {scores_shape}")

    # low-precision inputs: scores can overflow float16 (max 65504) and softmax loses mass, so use float32
    compute_dtype = torch.float32 if q.dtype in _LOW_PRECISION else q.dtype
    scores = (q.to(compute_dtype) @ k.to(compute_dtype).transpose(-2, -1)) * scale  # (..., Tq, Tk)
    if causal:
        scores = scores.masked_fill(~causal_mask(Tq, Tk, device=q.device), float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(compute_dtype)

    # a row that may attend nothing is all -inf and softmax would give 0/0 = NaN: define it as zeros
    fully_masked = scores.amax(dim=-1, keepdim=True) == float("-inf")  # (..., Tq, 1)
    scores = scores.masked_fill(fully_masked, 0.0)  # any finite value: keeps softmax (and its grad) finite
    weights = torch.softmax(scores, dim=-1).masked_fill(fully_masked, 0.0)  # (..., Tq, Tk)
    weights = weights.to(q.dtype)
    if dropout_p > 0:
        weights = F.dropout(weights, p=dropout_p)  # zeroes weights, scales the rest by 1/(1-p)
    out = weights @ v  # (..., Tq, Dv)
    return out, weights


# ----------------------------------------------------------------------------------------------------
# analysis: what a head does, in numbers (the demo measures head diversity and saturation with these)


def _check_weights(name: str, weights: object, min_ndim: int = 1) -> Tensor:
    """Attention weights: a float tensor whose rows (last dim) are probability distributions.

    A row of zeros (a query that may attend nothing, see scaled_dot_product_attention) is allowed.
    """
    check_tensor(name, weights, min_ndim=min_ndim, dtype="float")
    if weights.numel() == 0 or weights.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one key per row, got shape {tuple(weights.shape)}")
    if (weights < 0).any() or not torch.isfinite(weights).all():
        raise ValueError(f"{name} must hold finite probabilities >= 0, got min {weights.min().item():.3g}")
    sums = weights.float().sum(-1)
    tol = 1e-2 if weights.dtype in _LOW_PRECISION else 1e-3
    if not (((sums - 1).abs() <= tol) | (sums == 0)).all():
        bad = sums[((sums - 1).abs() > tol) & (sums != 0)][0].item()
        raise ValueError(
            f"{name} rows must sum to 1 (or 0 for a fully masked row), got a row summing to {bad:.4g}"
        )
    return weights


def attention_entropy(weights: Tensor, *, base: float = math.e) -> Tensor:
    """The entropy H(w) = -sum_j w_j log w_j of each row of attention weights: (..., Tq, Tk) -> (..., Tq).

    0 when a query looks at one key only (one-hot: the softmax is saturated), log(n) when it spreads
    evenly over n keys (a causal query at position i can reach at most log(i + 1)). In nats by default;
    base=2 gives bits. 0 log 0 = 0, so masked keys and fully masked rows count as nothing.
    Raises TypeError unless weights is a floating-point tensor, ValueError unless its rows are
    probabilities (>= 0, summing to 1 or 0), ValueError for base <= 1.
    """
    _check_weights("weights", weights)
    return _entropy(weights, check_number("base", base, low=1, low_open=True))


def _entropy(weights: Tensor, base: float) -> Tensor:
    w = weights.float() if weights.dtype in _LOW_PRECISION else weights
    # softmax(log w) = w: the log-weights are logits of the row itself; log 0 = -inf counts as 0 (0 log 0 = 0)
    return entropy(w.log()) / math.log(base)  # (..., Tq), nats / log(base)


def jensen_shannon(p: Tensor, q: Tensor, *, base: float = math.e) -> Tensor:
    """Jensen-Shannon divergence between rows of two attention patterns: (..., Tk), (..., Tk) -> (...).

        JSD(p, q) = H((p + q) / 2) - (H(p) + H(q)) / 2       (Lin 1991)

    Symmetric, 0 only when p == q, at most log(2) (1 bit with base=2) for disjoint supports, and, unlike
    KL, finite when one pattern puts zero weight where the other does not (masked keys).
    Raises TypeError unless p and q is a floating-point tensor, ValueError unless its rows are
    probabilities (>= 0, summing to 1 or 0) or have different shapes, ValueError for base <= 1.
    """
    _check_weights("p", p)
    _check_weights("q", q)
    if p.shape != q.shape:
        raise ValueError(f"q must have the shape of p {tuple(p.shape)}, got {tuple(q.shape)}")
    base = check_number("base", base, low=1, low_open=True)
    mixture = (p + q) / 2  # (..., Tk)
    h = attention_entropy  # clamp: rounding can leave -1e-17 where p == q
    return (h(mixture, base=base) - (h(p, base=base) + h(q, base=base)) / 2).clamp_min(0.0)


def head_divergence(weights: Tensor, *, base: float = math.e) -> Tensor:
    """How differently the heads attend: (B, H, Tq, Tk) -> (H, H) mean Jensen-Shannon divergence.

    Entry (a, b) is JSD(head a's row, head b's row) averaged over the batch and the query rows, i.e. over
    the same inputs, so it measures the heads and not the data. The diagonal is 0. Stack the maps of
    several layers along dim 1 (torch.cat(maps, dim=1)) to compare every head of a model.
    Raises TypeError unless weights is a floating-point tensor, ValueError unless its rows are
    probabilities (>= 0, summing to 1 or 0) or of shape (B, H, Tq, Tk), ValueError for base <= 1.
    """
    _check_weights("weights", weights, min_ndim=4)
    if weights.ndim != 4:
        raise ValueError(f"weights must have shape (B, H, Tq, Tk), got {tuple(weights.shape)}")
    base = check_number("base", base, low=1, low_open=True)
    H = weights.shape[1]
    rows = weights.transpose(0, 1).reshape(H, -1, weights.shape[-1])  # (H, B*Tq, Tk)
    entropy = _entropy(rows, base)  # (H, B*Tq): each head's H(p), computed once
    out = torch.zeros(H, H, dtype=torch.float64)
    for a in range(H - 1):  # head a against the heads after it: memory H*B*Tq*Tk, not H*H*B*Tq*Tk
        mixture = (rows[a : a + 1] + rows[a + 1 :]) / 2  # (H - a - 1, B*Tq, Tk)
        jsd = _entropy(mixture, base) - (entropy[a : a + 1] + entropy[a + 1 :]) / 2  # (H - a - 1, B*Tq)
        out[a, a + 1 :] = jsd.clamp_min(0.0).mean(-1).double().cpu()
    return out + out.T  # symmetric, zero diagonal


@exercise(4, "query i sits at position Tk - Tq + i; weight each |query position - key position| by the "
          "attention weight and sum over the keys")
def attention_distance(weights: Tensor) -> Tensor:
    """Mean attention distance of each query: sum_j w_ij |pos_i - j|, (..., Tq, Tk) -> (..., Tq), in tokens.

    The queries are the last Tq of the Tk positions (pos_i = Tk - Tq + i), as in self-attention (Tq = Tk)
    and with a KV cache. Small = local heads (previous token), large = heads that reach far back
    (Dosovitskiy et al. 2021 use the same measure for vision transformers, their Fig. 7).
    Raises TypeError unless weights is a floating-point tensor, ValueError unless its rows are
    probabilities (>= 0, summing to 1 or 0) with at least 2 dimensions.
    """
    _check_weights("weights", weights, min_ndim=2)
    Tq, Tk = weights.shape[-2:]
    query_pos = torch.arange(Tk - Tq, Tk, device=weights.device)[:, None]  # (Tq, 1)
    key_pos = torch.arange(Tk, device=weights.device)[None, :]  # (1, Tk)
    distance = (query_pos - key_pos).abs().to(weights.dtype)  # (Tq, Tk)
    return (weights * distance).sum(-1)  # (..., Tq)


class MultiHeadAttention(nn.Module):
    """H heads of scaled dot-product attention over learned projections of the input (Vaswani et al.).

    Self-attention by default; pass `kv` for cross-attention (queries from x, keys and values from kv).
    Weights are laid out like nn.MultiheadAttention(batch_first=True) with separate q/k/v projections.
    """

    @renamed_arguments(n_heads="n_head")
    def __init__(self, d_model: int, n_head: int, *, bias: bool = True, dropout: float = 0.0) -> None:
        """Raises TypeError/ValueError unless d_model and n_head are ints >= 1 with n_head dividing
        d_model, bias is a bool and dropout is in [0, 1)."""
        super().__init__()
        self.d_model = check_int("d_model", d_model, minimum=1)
        self.n_head = check_int("n_head", n_head, minimum=1)
        if d_model % n_head != 0:
            raise ValueError(f"d_model must be divisible by n_head, got d_model={d_model}, n_head={n_head}")
        check_bool("bias", bias)
        self.dropout = check_number("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.head_dim = d_model // n_head
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    @exercise(5, "view (B, T, C) as (B, T, H, D), then swap the T and H dims")
    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, H, T, D): each head gets its own D = C / H wide slice of the channels."""
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    @exercise(6, "the inverse of split_heads: swap H and T back, make it contiguous, view as (B, T, C)")
    def merge_heads(self, x: Tensor) -> Tensor:
        """(B, H, T, D) -> (B, T, C): concatenate the heads' outputs side by side again."""
        B, _, T, _ = x.shape
        return x.transpose(1, 2).contiguous().view(B, T, self.d_model)  # (B, T, C)

    def _check_input(self, name: str, x: object) -> Tensor:
        x = check_tensor(name, x, ndim=3, dtype="float")
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"{name} must have last dimension d_model={self.d_model}, got shape {tuple(x.shape)}"
            )
        return x

    @exercise(8, "project x to q and kv to k, v; split the heads; scaled_dot_product_attention (dropout "
              "only in training); merge the heads; out_proj")
    def forward(
        self,
        x: Tensor,
        *,
        kv: Tensor | None = None,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, Tq, C); kv: (B, Tk, C) or None (self-attention: kv = x).

        mask: bool (True = may attend; note nn.MultiheadAttention's bool attn_mask means the opposite)
            or additive float, broadcastable to (B, H, Tq, Tk). causal: see scaled_dot_product_attention.
        Returns (out (B, Tq, C), weights (B, H, Tq, Tk) per head if need_weights else None);
        weights.mean(1) is what nn.MultiheadAttention returns with average_attn_weights=True.
        Raises TypeError unless x (and kv) are floating-point tensors, ValueError unless they are (B, T,
        d_model) with one batch size, and as scaled_dot_product_attention does for a bad mask.
        """
        self._check_input("x", x)
        if kv is None:
            kv = x
        else:
            self._check_input("kv", kv)
            if kv.shape[0] != x.shape[0]:
                raise ValueError(
                    f"kv must have the batch size of x ({x.shape[0]}), got shape {tuple(kv.shape)}"
                )
        q = self.split_heads(self.q_proj(x))  # (B, H, Tq, D)
        k = self.split_heads(self.k_proj(kv))  # (B, H, Tk, D)
        v = self.split_heads(self.v_proj(kv))  # (B, H, Tk, D)
        dropout_p = self.dropout if self.training else 0.0
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal, dropout_p=dropout_p)
        out = self.out_proj(self.merge_heads(out))  # (B, Tq, C)
        return out, (weights if need_weights else None)
