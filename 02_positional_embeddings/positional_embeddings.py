"""Positional encodings: how a transformer learns where each token is.

Attention is permutation-invariant: shuffle the tokens and every output is shuffled the same way, so
order has to be injected, either by adding a position vector to each token (sinusoidal, learned) or by
making the attention scores themselves depend on the distance between query and key (RoPE, ALiBi).

Sinusoidal (Vaswani et al. 2017, "Attention Is All You Need"), added to the token embeddings:

    PE[pos, 2i]   = sin(pos / base^(2i/d))
    PE[pos, 2i+1] = cos(pos / base^(2i/d))          base = 10000

Learned (GPT-2): PE[pos] = W[pos], one trained vector per position, W of shape (max_len, d); there is
nothing to say about position max_len, so asking for it is an error.

Rotary, RoPE (Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding"): rotate
each pair (a, b) of query/key dimensions by the angle pos * theta_i, theta_i = base^(-2i/d):

    (a, b) -> (a cos(pos theta_i) - b sin(pos theta_i),  a sin(pos theta_i) + b cos(pos theta_i))

Rotations compose, so <R_m q, R_n k> = <q, R_(n-m) k>: the score depends only on the offset n - m.

ALiBi (Press et al. 2022, "Train Short, Test Long: Attention with Linear Biases"): no position vector
at all; head h adds a penalty linear in the distance to its attention logits,

    score[h, i, j] = q_i . k_j / sqrt(d) - m_h * (i - j),       m_h = 2^(-8h/H) for h = 1..H heads.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn

from llmlab.utils.checks import check_bool, check_int, check_number, check_tensor, renamed_arguments
from llmlab.utils.exercises import exercise

__all__ = [
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "alibi_bias",
    "alibi_slopes",
    "apply_rope",
    "apply_rope_interleaved",
    "apply_rotary",
    "offset_spread",
    "rope_cos_sin",
    "rope_frequencies",
    "rope_pairing_permutation",
    "rotate_half",
    "similarity_vs_distance",
    "sinusoidal_embeddings",
]


# ----------------------------------------------------------------------------------------------------
# argument checks (every public function validates its input and names the argument in the message)


def _check_positions(positions: object, seq_len: int | None = None, *, integer: bool = True) -> Tensor:
    """positions: an int (meaning 0..positions-1) or a tensor of shape (T,) or (B, T)."""
    if isinstance(positions, numbers.Integral) and not isinstance(positions, bool):
        check_int("positions", positions, minimum=1)
        positions = torch.arange(int(positions))
    if not isinstance(positions, Tensor):
        raise TypeError(f"positions must be an int or a tensor of shape (T,) or (B, T), got {positions!r}")
    if positions.dtype == torch.bool or (integer and positions.is_floating_point()) or positions.is_complex():
        allowed = "an integer" if integer else "an integer or floating-point"
        raise TypeError(f"positions must be {allowed} tensor, got dtype {positions.dtype}")
    if positions.dim() not in (1, 2):
        raise ValueError(f"positions must have shape (T,) or (B, T), got shape {tuple(positions.shape)}")
    if seq_len is not None and positions.shape[-1] != seq_len:
        raise ValueError(
            f"positions must have one entry per token: positions.shape[-1] = {positions.shape[-1]}, "
            f"but x has T = {seq_len} tokens"
        )
    return positions


# ----------------------------------------------------------------------------------------------------
# sinusoidal and learned absolute positions (added to the token embeddings)


@exercise(2, "angles = outer(positions, base^(-2i/dim)) in float64; put sin and cos of each angle side "
          "by side (stack on a new last axis), flatten to (seq_len, dim), cast to dtype")
def sinusoidal_embeddings(
    seq_len: int, dim: int, base: float = 10000.0, *, dtype: torch.dtype = torch.float32, device=None
) -> Tensor:
    """The fixed sin/cos table of "Attention Is All You Need", interleaved as in the paper.

    Returns PE of shape (seq_len, dim) with PE[pos, 2i] = sin(pos / base^(2i/dim)) and
    PE[pos, 2i+1] = cos(pos / base^(2i/dim)). dim must be even: every frequency is a (sin, cos) pair.
    Raises TypeError/ValueError unless seq_len is an int >= 1, dim an even int >= 1 and base a finite
    number > 0.
    """
    seq_len = check_int("seq_len", seq_len, minimum=1)
    dim = check_int("dim", dim, minimum=1, multiple_of=2)
    base = check_number("base", base, low=0, low_open=True)
    # float64 for the angles: pos * freq is large for late positions, float32 would lose the phase
    positions = torch.arange(seq_len, dtype=torch.float64, device=device)  # (T,)
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)  # (dim/2,)
    angles = torch.outer(positions, inv_freq)  # (T, dim/2)
    pe = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (T, dim/2, 2): (sin, cos) side by side
    return pe.reshape(seq_len, dim).to(dtype)  # (T, dim) = sin, cos, sin, cos, ...


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position (GPT-2's `wpe`): PE[pos] = weight[pos], weight (max_len, dim).

    It cannot extrapolate: position max_len has never been seen, so it raises instead of guessing.
    Raises TypeError/ValueError unless max_len and dim are ints >= 1.
    """

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.max_len = check_int("max_len", max_len, minimum=1)
        self.dim = check_int("dim", dim, minimum=1)
        self.weight = nn.Parameter(torch.empty(self.max_len, self.dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, mean=0.0, std=0.02)  # GPT-2's initialisation

    def forward(self, positions: Tensor | int, *, max_position: int | None = None) -> Tensor:
        """positions: an int T (meaning 0..T-1) or an integer tensor (T,) or (B, T) -> (..., T, dim).

        max_position: the largest entry of `positions` when the caller already knows it (the lab GPT
        counts tokens on the host): the entries are then trusted and nothing is read back from the
        device. Without it the range is checked (one read). Raises TypeError/ValueError for bad
        positions, ValueError for a position >= max_len.
        """
        positions = _check_positions(positions)
        positions = positions.to(self.weight.device)
        if max_position is None and positions.numel() > 0:
            low, high = torch.stack(torch.aminmax(positions)).tolist()  # one read for both ends
            if low < 0:
                raise ValueError(f"positions must be >= 0, got position {low}")
            max_position = high
        if max_position is not None and max_position >= self.max_len:
            raise ValueError(
                f"position {max_position} is out of range for max_len={self.max_len} "
                f"(a learned table only has positions 0..{self.max_len - 1})"
            )
        return self.weight[positions]  # (..., T, dim)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}"


# ----------------------------------------------------------------------------------------------------
# RoPE: rotate query/key pairs by an angle proportional to the position


def rope_frequencies(head_dim: int, base: float = 10000.0, *, device=None) -> Tensor:
    """The rotation speeds theta_i = base^(-2i/head_dim), i = 0..head_dim/2-1, float32 of shape (head_dim/2,).

    Computed exactly as transformers' LlamaRotaryEmbedding does, so that the two agree to the last bit.
    Raises TypeError/ValueError unless head_dim is an even int >= 1 and base a finite number > 0.
    """
    head_dim = check_int("head_dim", head_dim, minimum=1, multiple_of=2)
    base = check_number("base", base, low=0, low_open=True)
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=device) / head_dim))


@exercise(4, "compute in at least float32: angles = positions[..., None] * rope_frequencies, repeated "
          "twice along the last axis (cat(freqs, freqs)); return their cos and sin in dtype")
def rope_cos_sin(
    positions: Tensor, head_dim: int, base: float = 10000.0, *, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotation angles, each (..., T, head_dim), in the rotate-half layout.

    positions: (T,) or (B, T), integer (or floating-point, e.g. for position interpolation). The
    angles are cat(freqs, freqs), as in transformers' LlamaRotaryEmbedding: dimension j and j + head_dim/2
    form a pair that turns by the same angle.
    Raises TypeError/ValueError for a bad head_dim or base (as rope_frequencies), TypeError/ValueError for
    positions that are not an int >= 1 or an integer tensor (T,) or (B, T) (float positions allowed),
    TypeError for a non-floating dtype.
    """
    positions = _check_positions(positions, integer=False)
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"dtype must be a floating-point torch dtype, got {dtype}")
    # float32 at least: in bf16, pos * theta would lose the angle after a few hundred positions
    compute_dtype = torch.promote_types(dtype, torch.float32)
    inv_freq = rope_frequencies(head_dim, base, device=positions.device).to(compute_dtype)  # (D/2,)
    freqs = positions[..., None].to(compute_dtype) * inv_freq  # (..., T, D/2)
    angles = torch.cat((freqs, freqs), dim=-1)  # (..., T, D)
    return angles.cos().to(dtype), angles.sin().to(dtype)


@exercise(1, "split the last dimension into its two halves x1, x2 and put them back as (-x2, x1)")
def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: a 90-degree turn of every pair
    (x[j], x[j + D/2]), so that x*cos + rotate_half(x)*sin is the rotation by the angle.
    Raises TypeError unless x is a tensor, ValueError for a 0-d x or an odd last dimension.
    """
    x = check_tensor("x", x, min_ndim=1)
    if x.shape[-1] % 2:
        raise ValueError(f"x.shape[-1] must be even to rotate pairs, got {x.shape[-1]}")
    x1, x2 = x.chunk(2, dim=-1)  # (..., D/2) each
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x by precomputed angles: x * cos + rotate_half(x) * sin (transformers' Llama pairing).

    x: (..., T, head_dim), e.g. (B, H, T, head_dim). cos, sin: (T, head_dim), or (B, T, head_dim) with a
    4-D x of shape (B, H, T, head_dim) (one head axis is inserted). Computing cos/sin once per forward
    pass (RotaryEmbedding) and reusing them in every layer saves n_layer - 1 recomputations.
    Raises TypeError unless x, cos and sin are floating-point tensors, ValueError for shapes that do not
    match.
    """
    x = check_tensor("x", x, min_ndim=2, dtype="float")
    cos = check_tensor("cos", cos, min_ndim=2, dtype="float")
    sin = check_tensor("sin", sin, min_ndim=2, dtype="float")
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have the same shape, got {tuple(cos.shape)}, {tuple(sin.shape)}")
    if cos.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"cos must end in (T, head_dim) = {tuple(x.shape[-2:])} to match x, got shape {tuple(cos.shape)}"
        )
    if cos.dim() == 3 and x.dim() == 4:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, D): the same angles for every head
    try:
        torch.broadcast_shapes(cos.shape, x.shape)
    except RuntimeError as err:
        raise ValueError(
            f"cos of shape {tuple(cos.shape)} does not broadcast against x of shape {tuple(x.shape)}"
        ) from err
    # cast like transformers does: in half precision the product is taken in half precision
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


def _rope_angles(x: Tensor, positions: Tensor, base: float) -> tuple[Tensor, Tensor]:
    """The checks of apply_rope's arguments, then cos and sin (..., T, head_dim) of x's positions, in
    float32 (float64 for a float64 x), on x's device."""
    x = check_tensor("x", x, min_ndim=2, dtype="float")
    head_dim = check_int("head_dim (x.shape[-1])", x.shape[-1], minimum=1, multiple_of=2)
    positions = _check_positions(positions, x.shape[-2], integer=False)
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    return rope_cos_sin(positions.to(x.device), head_dim, base, dtype=compute_dtype)


def apply_rope(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """RoPE with the rotate-half pairing of Llama in transformers: dimension j turns with j + head_dim/2.

    x: (..., T, head_dim) queries or keys; positions: (T,) or (B, T) (B matching x's first axis).
    Returns a tensor like x. The angles are computed in float32 (float64 for a float64 x).
    Raises TypeError unless x is a floating-point tensor (..., T, head_dim), ValueError for an odd
    head_dim, positions without one entry per token or a base that is not a finite number > 0.
    """
    cos, sin = _rope_angles(x, positions, base)
    return apply_rotary(x, cos, sin)


@exercise(5, "cast cos and sin to x's dtype; take the pairs a = x[..., 0::2], b = x[..., 1::2]; rotate "
          "each (a, b) by its angle and interleave the results back along the last axis")
def apply_rope_interleaved(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """RoPE with the pairing of the RoFormer paper (and Meta's original Llama): (x0, x1), (x2, x3), ...

    Pair i = (x[2i], x[2i+1]) turns by pos * theta_i. This is the same map as apply_rope up to the order
    of dimensions: with perm = rope_pairing_permutation(head_dim),

        apply_rope(x[..., perm], pos) == apply_rope_interleaved(x, pos)[..., perm]

    which is why converting a Meta Llama checkpoint to transformers permutes the rows of W_q and W_k.
    Raises TypeError unless x is a floating-point tensor (..., T, head_dim), ValueError for an odd
    head_dim, positions without one entry per token or a base that is not a finite number > 0.
    """
    cos, sin = _rope_angles(x, positions, base)
    head_dim = x.shape[-1]
    cos, sin = cos[..., : head_dim // 2], sin[..., : head_dim // 2]  # (..., T, D/2): one angle per pair
    if cos.dim() == 3 and x.dim() == 4:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, D/2)
    try:
        torch.broadcast_shapes(cos.shape, x[..., 0::2].shape)
    except RuntimeError as err:
        raise ValueError(
            f"positions of shape {tuple(positions.shape)} do not broadcast against x {tuple(x.shape)}"
        ) from err
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    a, b = x[..., 0::2], x[..., 1::2]  # (..., T, D/2) each: the two members of every pair
    rotated = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)  # (..., T, D/2, 2)
    return rotated.flatten(-2)  # (..., T, D), pairs back side by side


def rope_pairing_permutation(head_dim: int) -> Tensor:
    """perm = [0, 2, 4, ..., head_dim-2, 1, 3, ..., head_dim-1], the reordering between the two pairings.

    x[..., perm] moves the interleaved pair (x[2i], x[2i+1]) to (x'[i], x'[i + head_dim/2]), the pair
    that rotate-half turns by the same angle theta_i; the inverse is torch.argsort(perm).
    Raises TypeError/ValueError unless head_dim is an even int >= 1.
    """
    head_dim = check_int("head_dim", head_dim, minimum=1, multiple_of=2)
    return torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))


class RotaryEmbedding(nn.Module):
    """cos/sin tables for RoPE, computed once and shared by every layer; no parameters.

    forward(positions) -> (cos, sin), each (..., T, head_dim) in float32, in the layout of transformers'
    LlamaRotaryEmbedding (cos = cos(cat(freqs, freqs))); pass them to apply_rotary(q, cos, sin). The
    tables are non-persistent buffers: they follow .to(device), stay float32 under .half() or
    .to(torch.bfloat16), stay out of the state_dict, and grow on demand when a position beyond the
    cached length is asked for.
    Raises TypeError/ValueError unless head_dim is an even int >= 1, base a finite number > 0 and
    cache_len an int >= 1.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, *, cache_len: int = 1024) -> None:
        super().__init__()
        self.head_dim = check_int("head_dim", head_dim, minimum=1, multiple_of=2)
        self.base = check_number("base", base, low=0, low_open=True)
        cache_len = check_int("cache_len", cache_len, minimum=1)
        self.register_buffer("cos_cached", torch.empty(0, self.head_dim), persistent=False)
        self.register_buffer("sin_cached", torch.empty(0, self.head_dim), persistent=False)
        self._build_cache(cache_len)

    def _build_cache(self, length: int) -> None:
        device = self.cos_cached.device
        inv_freq = rope_frequencies(self.head_dim, self.base, device=device)  # (D/2,) float32
        positions = torch.arange(length, device=device)
        freqs = positions[:, None].float() * inv_freq  # (L, D/2), the same product as transformers
        angles = torch.cat((freqs, freqs), dim=-1)  # (L, D)
        self.cos_cached, self.sin_cached = angles.cos(), angles.sin()

    def _apply(self, fn, recurse=True):
        # .to(device) moves the tables, but .half() / .to(torch.bfloat16) would round them: rebuild them
        # in float32 wherever they now live (apply_rotary casts to the activations' dtype anyway)
        super()._apply(fn, recurse)
        self._build_cache(self.cos_cached.shape[0])
        return self

    def forward(self, positions: Tensor | int, *, max_position: int | None = None) -> tuple[Tensor, Tensor]:
        """positions: an int T (meaning 0..T-1) or an integer tensor (T,) or (B, T), all >= 0.

        max_position: the largest entry of `positions` when the caller already knows it (the lab GPT
        does: it counts tokens on the host). Then nothing is read back from the device — a decode step
        must not wait for the GPU — and the entries are trusted. Without it the range is checked (one
        read). Raises TypeError/ValueError on bad positions.
        """
        positions = _check_positions(positions)
        positions = positions.to(self.cos_cached.device)
        if max_position is None and positions.numel() > 0:
            low, high = torch.stack(torch.aminmax(positions)).tolist()  # one read for both ends
            if low < 0:
                raise ValueError(f"positions must be >= 0, got position {low}")
            max_position = high
        if max_position is not None and max_position >= self.cos_cached.shape[0]:
            # double rather than grow by one, so that a generation loop rebuilds O(log T) times
            self._build_cache(max(max_position + 1, 2 * self.cos_cached.shape[0]))
        return self.cos_cached[positions], self.sin_cached[positions]  # (..., T, D) each

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}, cached={self.cos_cached.shape[0]}"


# ----------------------------------------------------------------------------------------------------
# ALiBi: a per-head linear penalty on the query-key distance, added to the attention logits


@exercise(3, "for a power of two n: 2^(-8h/n), h = 1..n; otherwise the slopes of the closest smaller "
          "power of two c, then every other slope of 2c for the remaining heads")
@renamed_arguments(n_heads="n_head")
def alibi_slopes(n_head: int, *, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The head slopes m_h of ALiBi, shape (n_head,).

    n_head a power of two: m_h = 2^(-8h/n_head), h = 1..n_head (8 heads: 1/2, 1/4, ..., 1/256), a
    geometric sequence. Otherwise the paper's code: the slopes of the closest smaller power of two c,
    then every other slope of 2c (2^(-8h/2c) for h = 1, 3, 5, ...) for the n_head - c remaining heads,
    so the extra heads fall between the existing ones. This is what transformers' Bloom uses.
    Raises TypeError/ValueError unless n_head is an int >= 1.
    """
    n_head = check_int("n_head", n_head, minimum=1)

    def power_of_two_slopes(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    closest = 2 ** math.floor(math.log2(n_head))
    slopes = power_of_two_slopes(closest)
    if closest != n_head:
        slopes += power_of_two_slopes(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(slopes, dtype=dtype, device=device)


@exercise(6, "query i sits at seq_len - query_len + i, key j at j; bias = -slope_h * (query position - "
          "key position), negated as integers before the float cast; -inf where the key is in the "
          "future if causal")
@renamed_arguments(n_heads="n_head")
def alibi_bias(
    n_head: int,
    seq_len: int,
    *,
    query_len: int | None = None,
    causal: bool = True,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> Tensor:
    """The ALiBi bias to add to the attention logits, shape (n_head, query_len, seq_len).

    bias[h, i, j] = -m_h * (p_i - j), where the keys sit at positions j = 0..seq_len-1 and the queries
    are the last query_len of them, p_i = seq_len - query_len + i (query_len defaults to seq_len; a KV
    cache that decodes one token against seq_len cached keys uses query_len=1). The diagonal is 0 and
    the penalty grows linearly with the distance into the past.

    Above the diagonal (keys in the future, j > p_i) the paper's formula gives a *positive* bias. With
    causal=True (the default) those entries are -inf, so the result is the bias and the causal mask in
    one; with causal=False they are left as -m_h * (p_i - j) > 0 and the caller must apply its own
    causal mask (for a bidirectional encoder, use -m_h * |p_i - j| instead, which is not this function).
    Raises TypeError/ValueError unless n_head, seq_len and query_len are ints >= 1 with query_len <=
    seq_len, TypeError unless causal is a bool.
    """
    n_head = check_int("n_head", n_head, minimum=1)
    seq_len = check_int("seq_len", seq_len, minimum=1)
    query_len = seq_len if query_len is None else check_int("query_len", query_len, minimum=1)
    if query_len > seq_len:
        raise ValueError(f"query_len must be <= seq_len={seq_len} (queries = last keys), got {query_len}")
    check_bool("causal", causal)
    slopes = alibi_slopes(n_head, dtype=torch.float32, device=device)  # (H,)
    query_pos = torch.arange(seq_len - query_len, seq_len, device=device)  # (Tq,)
    key_pos = torch.arange(seq_len, device=device)  # (Tk,)
    distance = query_pos[:, None] - key_pos[None, :]  # (Tq, Tk), integer: how far back key j is
    bias = slopes[:, None, None] * (-distance).float()  # (H, Tq, Tk); negated as ints: 0, not -0
    if causal:
        bias = bias.masked_fill(distance < 0, float("-inf"))  # a query never sees a future key
    return bias.to(dtype)


# ----------------------------------------------------------------------------------------------------
# analysis: how alike are two positions, and does a score depend on the offset alone?


@exercise(7, "in float64 (unit rows when cosine): the Gram matrix of all position pairs; s[k] is the "
          "mean of its k-th diagonal below the main one, k = 0..max_distance")
def similarity_vs_distance(table: Tensor, *, cosine: bool = False, max_distance: int | None = None) -> Tensor:
    """How alike two position vectors k apart are, averaged over where the pair sits.

    table: (T, dim), one vector per position: a sinusoidal or learned table, or the rotated copies
    R_m q of one query for RoPE. Returns s of shape (max_distance + 1,) in float64 with
    s[k] = mean over m of table[m] . table[m + k] (the cosine similarity when cosine=True), for
    k = 0..max_distance (default T - 1). For the sinusoidal table the dot product does not depend on m
    at all: PE[m] . PE[m + k] = sum_i cos(k omega_i), the same for every m.
    Raises TypeError unless table is a floating-point tensor and cosine a bool, ValueError unless table is
    (T, dim), TypeError/ValueError unless max_distance is an int in [0, T - 1].
    """
    table = check_tensor("table", table, dtype="float")
    if table.dim() != 2:
        raise ValueError(f"table must have shape (T, dim), got shape {tuple(table.shape)}")
    check_bool("cosine", cosine)
    T = table.shape[0]
    max_distance = T - 1 if max_distance is None else check_int("max_distance", max_distance, minimum=0,
                                                                  maximum=T - 1)
    vectors = table.detach().double()
    if cosine:
        vectors = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    gram = vectors @ vectors.T  # (T, T): every pair of positions
    # the k-th diagonal below the main one holds the T - k pairs (m + k, m)
    return torch.stack([torch.diagonal(gram, offset=-k).mean() for k in range(int(max_distance) + 1)])


def offset_spread(scores: Tensor) -> Tensor:
    """Does a score depend on the offset m - n alone? The spread max - min along each diagonal.

    scores: (..., T, T), scores[..., m, n] for a query at position m and a key at position n. Returns
    (..., T) with spread[..., k] = max - min of scores[..., m, m - k] over m = k..T-1, for the causal
    offsets k = m - n = 0..T-1 (the only ones a decoder uses). All zeros <=> the matrix is constant
    along its diagonals (Toeplitz) on and below the main one: the score is a function of m - n only, as
    with RoPE and ALiBi. Absolute encodings (sinusoidal, learned) added to the tokens give spreads > 0.
    Raises TypeError unless scores is a floating-point tensor, ValueError unless it ends in a square (T,
    T).
    """
    scores = check_tensor("scores", scores, min_ndim=2, dtype="float")
    if scores.shape[-1] != scores.shape[-2]:
        raise ValueError(f"scores must end in a square (T, T), got shape {tuple(scores.shape)}")
    T = scores.shape[-1]
    spreads = []
    for k in range(T):
        diagonal = torch.diagonal(scores, offset=-k, dim1=-2, dim2=-1)  # (..., T - k): every (m, m - k)
        spreads.append(diagonal.amax(dim=-1) - diagonal.amin(dim=-1))
    return torch.stack(spreads, dim=-1)  # (..., T)
