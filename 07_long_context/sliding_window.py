"""Long context: attend to a window of recent tokens, or to everything one chunk at a time.

Full causal attention builds a T x T matrix of scores, so its memory and time grow as T²: doubling the
context quadruples the cost. Sliding-window attention lets each token see only the `window` most recent
tokens, so the scores shrink to T x window; chunked attention keeps *exact* full attention but visits the
keys one chunk at a time with an online softmax, so only T x chunk scores ever exist at once.

    sliding window:  out_i = sum_{j = i-window+1 .. i} softmax_j(q_i . k_j / sqrt(D)) v_j
    online softmax, one chunk of scores s_j at a time (running max m, denominator l, accumulator acc):
        m' = max(m, max_j s_j)
        l' = l e^(m - m') + sum_j e^(s_j - m')
        acc' = acc e^(m - m') + sum_j e^(s_j - m') v_j            and at the end   out = acc / l

Papers: Beltagy et al. 2020, "Longformer" (arXiv:2004.05150, sliding windows); Jiang et al. 2023,
"Mistral 7B" (arXiv:2310.06825, a causal window of 4096 in every layer); Milakov & Gimelshein 2018,
"Online normalizer calculation for softmax" (arXiv:1805.02867); Rabe & Staats 2021, "Self-attention does
not need O(n²) memory" (arXiv:2112.05682); Dao et al. 2022, "FlashAttention" (arXiv:2205.14135).

The window convention. `window` is the number of keys a query sees, itself included: query i attends
keys j with i - window < j <= i. This is Mistral's `sliding_window` as transformers implements it
(`kv_idx > q_idx - sliding_window` in `masking_utils`), so window=1 is "only yourself" and window >= T is
plain causal attention. Longformer's `attention_window` w is two-sided and not causal (w/2 keys on each
side); the causal window here is its left half plus the token itself. Stacking L windowed layers reaches
L (window - 1) tokens back, which is why Mistral can use a window much shorter than its context.

The module also holds the measuring tools of the lesson's demo: `PeakMemory` (the peak bytes of every
tensor torch allocates, on any device), `loss_per_position` (how the loss depends on where a token
sits in a long input) and `windowed_attention` (run a lab GPT with a sliding-window mask).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from llmlab.attention_basics import causal_mask, scaled_dot_product_attention
from llmlab.transformer_block import GPT
from llmlab.utils.checks import check_bool, check_int, check_number, check_tensor
from llmlab.utils.exercises import exercise

__all__ = [
    "PeakMemory",
    "chunked_attention",
    "loss_per_position",
    "sliding_window_attention",
    "sliding_window_mask",
    "windowed_attention",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------------------------------
# argument checks


def _check_scale(scale: object, head_dim: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(head_dim)  # keeps the scores' variance at 1 (lesson 03)
    return check_number("scale", scale, low=0, low_open=True)


def _check_qkv(q: object, k: object, v: object) -> tuple[int, ...]:
    """q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) with broadcastable leading dims -> those dims."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x, min_ndim=2, dtype="float")  # (..., T, D)
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k and v must share one dtype, got q={q.dtype}, k={k.dtype}, v={v.dtype}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"k must have the last dimension of q ({q.shape[-1]}), got shape {tuple(k.shape)}")
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(f"v must have as many rows as k ({k.shape[-2]}), got shape {tuple(v.shape)}")
    if q.shape[-2] == 0 or k.shape[-2] == 0 or q.shape[-1] == 0:
        raise ValueError(f"q and k must hold at least one token of width >= 1, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}")
    try:
        return tuple(torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
    except RuntimeError as err:
        raise ValueError(f"q, k and v leading (batch, head) dims must broadcast, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}") from err


# ----------------------------------------------------------------------------------------------------
# sliding-window attention: each query sees its `window` most recent keys


@exercise(1, "distance = query position minus key position, a (T, T) table from two aranges; allowed "
          "where 0 <= distance < window")
def sliding_window_mask(T: int, window: int, *, device: torch.device | str | None = None) -> Tensor:
    """Boolean (T, T) mask, True where query i may attend key j, i.e. where i - window < j <= i.

    A band of width `window` on and below the diagonal; window >= T gives lesson 03's causal_mask(T).
    Raises TypeError/ValueError unless T and window are ints >= 1.
    """
    check_int("T", T, minimum=1)
    check_int("window", window, minimum=1)
    position = torch.arange(T, device=device)
    distance = position[:, None] - position[None, :]  # (T, T): how far key j lies behind query i
    return (distance >= 0) & (distance < window)


@exercise(3, "pad q to whole blocks of c = min(window, T); pad k, v with one block in front and unfold "
          "windows of 2c with step c; mask the band (and the front padding) from the positions; one "
          "attention per block; drop the padded queries")
def sliding_window_attention(q: Tensor, k: Tensor, v: Tensor, window: int, *,
                             scale: float | None = None) -> Tensor:
    """Causal sliding-window self-attention in O(T · window) memory, without a T x T matrix.

    q, k: (..., T, D), v: (..., T, Dv): one sequence attending to itself (so q and k have the same T);
    the leading (batch, head) dims broadcast. Returns out (..., T, Dv), equal to full attention with
    `sliding_window_mask(T, window)`.

    How: cut the queries into blocks of c = min(window, T) positions. Query i needs keys i - window + 1
    .. i, and since a block is as long as the window (or holds the whole sequence), those keys lie in the
    query's own block or the one before. So each block of c queries attends a (c, 2c) tile of scores,
    masked to the band: n_blocks · c · 2c ~ 2 T c scores instead of T².
    Raises TypeError unless q, k, v are floating-point tensors of one dtype, ValueError for mismatched
    shapes (k must have q's length), a window < 1 or a scale that is not a finite number > 0.
    """
    _check_qkv(q, k, v)
    check_int("window", window, minimum=1)
    T = q.shape[-2]
    if k.shape[-2] != T:
        raise ValueError(f"k must have the sequence length of q ({T}) for sliding-window self-attention, "
                         f"got shape {tuple(k.shape)}")
    scale = _check_scale(scale, q.shape[-1])
    c = min(window, T)  # block size: a query's keys lie in its own block and the one before
    n_blocks = math.ceil(T / c)
    pad = n_blocks * c - T  # the last block is padded; its padded queries are dropped at the end
    q_blocks = F.pad(q, (0, 0, 0, pad)).unflatten(-2, (n_blocks, c))  # (..., nb, c, D)
    # one block of (masked) keys in front, so block 0 also has a "previous block"
    k_padded = F.pad(k, (0, 0, c, pad))  # (..., (nb + 1) c, D)
    v_padded = F.pad(v, (0, 0, c, pad))  # (..., (nb + 1) c, Dv)
    # unfold: overlapping views [previous block | own block], no copy; it puts the 2c axis last
    k_blocks = k_padded.unfold(-2, 2 * c, c).transpose(-1, -2)  # (..., nb, 2c, D)
    v_blocks = v_padded.unfold(-2, 2 * c, c).transpose(-1, -2)  # (..., nb, 2c, Dv)

    q_pos = torch.arange(n_blocks * c, device=q.device).view(n_blocks, c, 1)  # (nb, c, 1)
    k_pos = torch.arange(-c, n_blocks * c, device=q.device).unfold(0, 2 * c, c)[:, None, :]  # (nb, 1, 2c)
    distance = q_pos - k_pos  # (nb, c, 2c)
    mask = (distance >= 0) & (distance < window) & (k_pos >= 0)  # the band; never the front padding

    out, _ = scaled_dot_product_attention(q_blocks, k_blocks, v_blocks, mask=mask, scale=scale)
    return out.flatten(-3, -2)[..., :T, :]  # (..., T, Dv)


# ----------------------------------------------------------------------------------------------------
# chunked attention: exact attention, one chunk of keys at a time (online softmax)


@exercise(4, "keep m, l, acc per query; per chunk of keys: scores, causal mask, m' = max(m, chunk max), "
          "p = exp(s - m'), rescale l and acc by exp(m - m') (unless rescale=False) and add p's sums;"
          " no in-place writes (autograd must see the loop); float32 for half inputs; return acc / l")
def chunked_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True, chunk_size: int = 128,
                      scale: float | None = None, rescale: bool = True) -> Tensor:
    """Exact softmax(q k^T * scale) v, visiting the keys `chunk_size` at a time: O(Tq · chunk) memory.

    q: (..., Tq, D), k: (..., Tk, D), v: (..., Tk, Dv); the leading dims broadcast; Tq may differ from Tk.
    causal: top-left aligned like lesson 03's `causal=True` and torch's `is_causal=True` (query i sees
    keys 0..i). Returns out (..., Tq, Dv). Half-precision inputs are computed in float32.

    This is the loop of FlashAttention with all queries in one block: the statistics of the softmax
    (running max m, running denominator l) and the unnormalised output acc are updated chunk by chunk,
    and whenever a chunk raises a query's max, what was accumulated so far is rescaled by e^(m - m').
    rescale=False skips that correction: the demo's --no-rescale break flag (the output is then wrong
    whenever a later chunk holds a larger score).
    Raises TypeError unless q, k, v are floating-point tensors of one dtype and causal, rescale are bools,
    ValueError for mismatched shapes, chunk_size < 1 or a scale that is not a finite number > 0.
    """
    batch = _check_qkv(q, k, v)
    check_int("chunk_size", chunk_size, minimum=1)
    check_bool("causal", causal)
    check_bool("rescale", rescale)
    Tq, Tk = q.shape[-2], k.shape[-2]
    scale = _check_scale(scale, q.shape[-1])
    dtype = torch.float32 if q.dtype in _LOW_PRECISION else q.dtype  # exp overflows float16 quickly
    out_dtype = q.dtype
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)

    # the three running statistics of every query (m, l and acc of the equations above)
    row_max = torch.full((*batch, Tq, 1), float("-inf"), dtype=dtype, device=q.device)  # m: max score
    denom = torch.zeros((*batch, Tq, 1), dtype=dtype, device=q.device)  # l: sum of e^(s - m)
    acc = torch.zeros((*batch, Tq, v.shape[-1]), dtype=dtype, device=q.device)  # acc: sum of e^(s - m) v
    for start in range(0, Tk, chunk_size):
        stop = min(start + chunk_size, Tk)
        # causal: queries 0..start-1 see no key of this chunk, so skip them (FlashAttention skips the
        # tiles above the diagonal: half the work). Every query left sees key `start`, so m' is finite.
        first = start if causal else 0
        if first >= Tq:
            break
        scores = (q[..., first:, :] @ k[..., start:stop, :].transpose(-2, -1)) * scale  # (..., Tq', c)
        if causal:
            visible = causal_mask(Tq - first, stop - start, offset=first - start, device=q.device)
            scores = scores.masked_fill(~visible, float("-inf"))
        m_old, l_old, acc_old = row_max[..., first:, :], denom[..., first:, :], acc[..., first:, :]
        m_new = torch.maximum(m_old, scores.amax(dim=-1, keepdim=True))  # (..., Tq', 1)
        p = torch.exp(scores - m_new)  # (..., Tq', c): this chunk's unnormalised weights, all <= 1
        # the old sums were taken relative to m_old: e^(s - m_old) = e^(s - m_new) · e^(m_old - m_new)
        alpha = torch.exp(m_old - m_new) if rescale else torch.ones_like(m_new)  # (..., Tq', 1)
        l_new = l_old * alpha + p.sum(dim=-1, keepdim=True)  # (..., Tq', 1)
        acc_new = acc_old * alpha + p @ v[..., start:stop, :]  # (..., Tq', Dv)
        if first == 0:
            row_max, denom, acc = m_new, l_new, acc_new
        else:  # new tensors rather than in-place writes, so that autograd can differentiate the loop
            row_max = torch.cat((row_max[..., :first, :], m_new), dim=-2)
            denom = torch.cat((denom[..., :first, :], l_new), dim=-2)
            acc = torch.cat((acc[..., :first, :], acc_new), dim=-2)
    return (acc / denom).to(out_dtype)  # (..., Tq, Dv): normalise once, at the end


# ----------------------------------------------------------------------------------------------------
# measuring memory: every tensor torch allocates, on any device


class PeakMemory(TorchDispatchMode):
    """Track the bytes of every tensor torch allocates inside the `with` block; keep the peak.

        with PeakMemory() as mem:
            out = chunked_attention(q, k, v)
        mem.peak_bytes, mem.largest_bytes   # high-water mark of live tensors, biggest single tensor

    Why this and not `tracemalloc`: torch allocates tensor memory in C++, which tracemalloc never sees.
    A TorchDispatchMode sees every op's outputs; an output whose storage is new (not an input's, not a
    view of a tracked tensor) is an allocation, and a weakref finalizer on each tensor frees it when the
    last tensor using that storage dies. This is what torch.cuda.max_memory_allocated reports on a GPU,
    measured the same way on a CPU. Tensors that exist before the block (the inputs) are not counted.
    Use it under torch.no_grad(): autograd keeps saved tensors alive after their Python objects die,
    which this tracker cannot see.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors using it]
        self.current_bytes = 0
        self.peak_bytes = 0
        self.largest_bytes = 0
        self.n_allocations = 0

    def _release(self, address: int) -> None:
        entry = self._live.get(address)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current_bytes -= entry[0]
            del self._live[address]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor):
                continue
            storage = t.untyped_storage()
            address, nbytes = storage.data_ptr(), storage.nbytes()
            if address in self._live:  # a view of (or in-place op on) a tracked tensor
                self._live[address][1] += 1
            elif address in inputs or nbytes == 0:  # a view of an untracked input: not an allocation
                continue
            else:
                self._live[address] = [nbytes, 1]
                self.current_bytes += nbytes
                self.n_allocations += 1
                self.peak_bytes = max(self.peak_bytes, self.current_bytes)
                self.largest_bytes = max(self.largest_bytes, nbytes)
            weakref.finalize(t, self._release, address)
        return out


# ----------------------------------------------------------------------------------------------------
# the context-length experiments: where does a long input hurt, and does a window help?


@exercise(2, "windows start at linspace(0, len(data) - length - 1, n_windows).long(); pass "
          "allow_longer=True only when length > block_size; eval mode, batch by batch, cross_entropy "
          "with reduction='none'; restore the training mode; average in float64")
@torch.no_grad()
def loss_per_position(model: nn.Module, data: Tensor, length: int, n_windows: int, *,
                      batch_size: int = 16, reduce: bool = True) -> Tensor:
    """Mean next-token cross-entropy at each position 0..length-1 of `n_windows` windows of `data`.

    model: a lab GPT (``model(idx, allow_longer=...) -> (logits, loss)``); length may exceed its
    block_size (the encodings that can run past it then extrapolate; learned positions raise).
    data: 1-D token ids; the windows start at evenly spaced offsets (deterministic, no RNG).
    Returns (length,) in nats: entry t is the loss of predicting token t + 1 from tokens 0..t;
    reduce=False returns every window's losses, (n_windows, length), for error bars.
    Raises TypeError unless model is an nn.Module and data a 1-D tensor of ids, reduce a bool,
    TypeError/ValueError for sizes < 1, ValueError for length >= len(data).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(data, Tensor) or data.ndim != 1 or data.is_floating_point():
        raise TypeError(f"data must be a 1-D tensor of token ids, got {data!r:.60}")
    check_int("length", length, minimum=1)
    check_int("n_windows", n_windows, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    if data.numel() < length + 1:
        raise ValueError(f"length must be < len(data) = {data.numel()} (a window holds length + 1 tokens), "
                         f"got {length}")
    check_bool("reduce", reduce)
    device = next(model.parameters()).device
    block_size = getattr(getattr(model, "config", None), "block_size", None)
    longer = {"allow_longer": True} if block_size is not None and length > block_size else {}
    starts = torch.linspace(0, data.numel() - length - 1, n_windows).long()  # (n_windows,)
    offsets = torch.arange(length + 1)  # (length + 1,)
    was_training = model.training
    model.eval()
    per_window = []
    for batch in starts.split(batch_size):
        windows = data[batch[:, None] + offsets].to(device)  # (B, length + 1)
        logits, _ = model(windows[:, :-1], **longer)  # (B, length, vocab)
        losses = F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")  # (B, length)
        per_window.append(losses.float().cpu())
    model.train(was_training)
    losses = torch.cat(per_window)  # (n_windows, length)
    return losses.double().mean(0).float() if reduce else losses


@contextlib.contextmanager
def windowed_attention(model: nn.Module, window: int | None) -> Iterator[nn.Module]:
    """Inside the block, the lab GPT `model` runs with config.sliding_window = window: every query sees only
    its `window` most recent keys, itself included (Mistral's `sliding_window`).

    The GPT builds its mask once per forward from its config (build_attention_mask), so this swaps the
    model's config for a copy with the window and puts the original back on exit. It works for every
    positional encoding: the causal mask is cut to the band, an ALiBi bias gets -inf outside it. The GPT
    still computes the masked T x T scores, so this changes *what* the model sees, not its memory:
    `sliding_window_attention` is the memory-saving computation of the same numbers (the tests prove the
    two agree). window=None changes nothing. Raises TypeError/ValueError for a bad model or window.
    Raises TypeError unless model is an nn.Module, ValueError unless it is a lab GPT, TypeError/ValueError
    for a window that is not an int >= 1 (or None).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a lab GPT (llmlab.transformer_block.GPT), "
                         f"got {type(model).__name__}")
    if window is None:
        yield model
        return
    check_int("window", window, minimum=1)
    saved = model.config
    model.config = dataclasses.replace(saved, sliding_window=window)
    try:
        yield model
    finally:
        model.config = saved
