"""The KV cache: remember every token's keys and values, so each new token costs one token of work.

A decoder generates one token at a time, and token t's attention needs the keys and values of tokens
0..t. Those never change once computed (causal attention: a past token never sees the future), so
recomputing them for the whole prefix at every step (O(t) tokens through every layer, O(t²) attention
scores) is wasted work. A KV cache keeps them: each step pushes only the newest token through the
model, appends its k and v to the cache and lets its query attend over everything cached.

    step t, per layer:   K_{0..t} = [K_{0..t-1} ; x_t W_k],   V_{0..t} = [V_{0..t-1} ; x_t W_v]
                         out_t    = softmax(q_t K_{0..t}^T / sqrt(head_dim)) V_{0..t}
    memory:   bytes = 2 (K and V) · n_layer · n_kv_head · head_dim · seq_len · batch · bytes/element

Papers: Pope et al. 2022, "Efficiently Scaling Transformer Inference" (arXiv:2211.05102: the cache and
its memory arithmetic); Shazeer 2019, "Fast Transformer Decoding: One Write-Head is All You Need"
(arXiv:1911.02150: fewer K/V heads shrink it, see lesson 09); Beltagy et al. 2020 / Jiang et al. 2023
("Longformer", "Mistral 7B": a sliding window, stored as a rolling buffer); Hooper et al. 2024, "KVQuant"
and Liu et al. 2024, "KIVI" (quantized caches). The layout follows gpt-fast: two preallocated buffers per
layer and an `update` that writes in place, so no step ever copies the history (a torch.cat per step
would move O(t) bytes, O(t²) over a generation).

Three caches, all with the `update(layer_idx, k, v) -> (k_all, v_all)` that lesson 04's GPT calls:
- `KVCache`: exact. Buffers (B, n_kv_head, max_len, head_dim); generating past max_len is an error.
- `SlidingWindowKVCache`: a ring buffer of the last `window` tokens, so memory stops growing. Positions
  keep growing (RoPE rotates each key at its absolute position *before* it is cached, learned/sinusoidal
  positions are added to the embeddings), so a cached key carries its position with it. Softmax attention
  is a weighted sum over a *set* of keys: permuting the keys (with their values) permutes the terms of
  the sum and changes nothing, so the ring's rotated order only matters to the causal mask — and a single
  new query may see every key in the window, so its mask is all ones. The output equals full attention
  restricted to the last `window` tokens (Mistral's sliding window). ALiBi is refused: its bias is
  computed from the keys' order.
- `Int8KVCache`: keys and values as int8 with one scale per token and head (absmax / 127), dequantized
  on read: ~4x less memory than float32 for an error of at most absmax / 254 per element.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

# lesson 05: temperature / top-k / top-p / min-p; temperature 0 = argmax
from llmlab.sampling import filter_logits, sample
from llmlab.transformer_block import GPT, GPTConfig
from llmlab.utils.checks import check_bool, check_dtype, check_instance, check_int
from llmlab.utils.exercises import exercise

__all__ = [
    "Int8KVCache",
    "KVCache",
    "SlidingWindowKVCache",
    "cache_for",
    "dequantize_int8",
    "generate",
    "kv_cache_bytes",
    "quantize_int8",
]


# ----------------------------------------------------------------------------------------------------
# argument checks: every message names the argument, the value and what is allowed


# ----------------------------------------------------------------------------------------------------
# memory: the formula


@exercise(1, "K and V (2) for every layer, KV head, head dimension, position and sequence, times the "
          "bytes of one element of dtype (an empty tensor of it knows its element_size)")
def kv_cache_bytes(config: GPTConfig, seq_len: int, batch_size: int = 1,
                   dtype: torch.dtype = torch.float16) -> int:
    """Bytes of a full KV cache: 2 · n_layer · n_kv_head · head_dim · seq_len · batch_size · element size.

    The 2 is K and V. Nothing here depends on n_head or d_ff: grouped/multi-query attention (lesson 09)
    shrinks the cache by n_head / n_kv_head, a wider MLP does not grow it.
    Raises TypeError for a config that is not a GPTConfig, a dtype that is not a torch.dtype or non-int
    sizes, ValueError for seq_len or batch_size < 1.
    """
    config = check_instance("config", config, GPTConfig)
    seq_len = check_int("seq_len", seq_len, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    element_size = torch.empty((), dtype=dtype).element_size()
    return 2 * config.n_layer * config.kv_heads * config.head_dim * seq_len * batch_size * element_size


# ----------------------------------------------------------------------------------------------------
# int8 quantization: one scale per (token, head) row of head_dim numbers


@exercise(2, "scale = absmax of each row (last dim) / 127; q = round(x / scale) clamped to [-127, 127] "
          "as int8; divide by 1 where the scale is 0 so all-zero rows stay 0")
def quantize_int8(x: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric absmax quantization of the last dimension: x (..., D) -> (q int8 (..., D), scale (..., 1)).

    scale = max_i |x_i| / 127 and q = round(x / scale), so q·scale differs from x by at most scale / 2 =
    absmax / 254 per element. One scale per row follows the outliers of that row only: a key with one large
    channel does not flatten the resolution of every other token.
    Raises TypeError unless x is a floating-point tensor.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() == 0:
        raise TypeError(f"x must be a floating-point tensor (..., D), got {x!r}")
    absmax = x.abs().amax(dim=-1, keepdim=True)  # (..., 1)
    scale = absmax / 127  # (..., 1); an all-zero row keeps scale 0 and q 0 (no division by it below)
    q = torch.round(x / torch.where(scale > 0, scale, 1.0)).clamp_(-127, 127).to(torch.int8)  # (..., D)
    return q, scale


def dequantize_int8(q: Tensor, scale: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """q (..., D) int8, scale (..., 1) -> q · scale in `dtype`.

    Raises TypeError unless q is an int8 tensor, ValueError unless scale has shape (..., 1) matching q.
    """
    if not isinstance(q, Tensor) or q.dtype != torch.int8:
        raise TypeError(f"q must be an int8 tensor, got {q!r}")
    if not isinstance(scale, Tensor) or scale.shape != (*q.shape[:-1], 1):
        shape = tuple(scale.shape) if isinstance(scale, Tensor) else type(scale).__name__
        raise ValueError(f"scale must have shape {(*q.shape[:-1], 1)} (one per row of q), got {shape}")
    return q.to(dtype) * scale.to(dtype)


# ----------------------------------------------------------------------------------------------------
# the caches


class KVCache:
    """Two preallocated buffers per layer, (batch_size, n_kv_head, max_len, head_dim), written in place.

    update(layer_idx, k, v) writes the T_new new keys/values (B, n_kv_head, T_new, head_dim) after the
    ones already in that layer and returns views of everything cached so far, (B, n_kv_head, T_all,
    head_dim). Every layer keeps its own length, so a forward pass advances all of them by T_new.
    `device="meta"` builds a cache without memory: its `nbytes` still counts what the tensors would take.
    Raises TypeError for a config that is not a GPTConfig, a non-floating dtype or non-int sizes,
    ValueError for batch_size or max_len < 1.
    """

    def __init__(self, config: GPTConfig, batch_size: int = 1, max_len: int | None = None, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        self.config = check_instance("config", config, GPTConfig)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.max_len = config.block_size if max_len is None else check_int("max_len", max_len, minimum=1)
        self.dtype = check_dtype("dtype", dtype)
        shape = (self.batch_size, config.kv_heads, self.max_len, config.head_dim)  # (B, H_kv, max_len, D)
        self.allocate_storage(shape, device)
        self.lengths = [0] * config.n_layer  # tokens written, per layer

    def allocate_storage(self, shape: tuple[int, ...], device: torch.device | str) -> None:
        """The zeroed storage of every layer: keys and values of `shape` (B, H_kv, max_len, D) in self.dtype
        (Int8KVCache stores int8 codes and their scales instead)."""
        n = self.config.n_layer
        self.keys = [torch.zeros(shape, dtype=self.dtype, device=device) for _ in range(n)]
        self.values = [torch.zeros(shape, dtype=self.dtype, device=device) for _ in range(n)]

    @property
    def length(self) -> int:
        """Tokens cached in every layer (the layers agree after each complete forward pass)."""
        return min(self.lengths)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cache's tensors."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def attended_length(self, T_new: int) -> int:
        """How many keys the next T_new tokens' queries attend to: what update() will return (the GPT builds
        its mask for them once per forward pass, before the first layer writes)."""
        return self.length + T_new

    def tensors(self) -> list[Tensor]:
        return [*self.keys, *self.values]

    def reset(self) -> None:
        """Forget every token (the buffers are reused, not reallocated)."""
        self.lengths = [0] * self.config.n_layer

    def _check_update(self, layer_idx: object, k: object, v: object) -> int:
        """Validate an update; returns T_new."""
        check_int("layer_idx", layer_idx, minimum=0, maximum=self.config.n_layer - 1, wrong_type=ValueError)
        expected = (self.batch_size, self.config.kv_heads, self.config.head_dim)
        for name, t in (("k", k), ("v", v)):
            if not isinstance(t, Tensor) or t.dim() != 4 or (t.shape[0], t.shape[1], t.shape[3]) != expected:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                B, H, D = expected
                raise ValueError(f"{name} must have shape (batch_size={B}, n_kv_head={H}, T_new, "
                                 f"head_dim={D}), got {shape}")
        if k.shape != v.shape:
            raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
        return k.shape[2]

    @exercise(3, "write k and v into the layer's buffers at positions start:end in place (no torch.cat),"
              " advance the layer's length, return views of the first end positions")
    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write layer `layer_idx`'s new keys and values k, v (B, H_kv, T_new, D) after the cached ones ->
        (keys, values) (B, H_kv, end, D), views of every cached token of that layer. Raises ValueError
        for a layer_idx outside [0, n_layer), k or v of the wrong shape, or when the cache is full
        (more than max_len tokens).
        """
        T_new = self._check_update(layer_idx, k, v)
        start = self.lengths[layer_idx]
        end = start + T_new
        if end > self.max_len:
            raise ValueError(
                f"the KV cache is full: max_len={self.max_len}, layer {layer_idx} holds {start} tokens and "
                f"cannot take {T_new} more; build a longer cache or use SlidingWindowKVCache"
            )
        self.keys[layer_idx][:, :, start:end] = k  # in place: the history is never copied
        self.values[layer_idx][:, :, start:end] = v
        self.lengths[layer_idx] = end
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]  # (B, H_kv, end, D) views


class SlidingWindowKVCache(KVCache):
    """A ring buffer of the last `window` tokens per layer: memory fixed at `window`, positions unbounded.

    Token p lives in slot p % window. Until the ring is full, keys are appended in order (a chunk of several
    tokens is fine, the GPT's causal mask applies). Once full, tokens must come one at a time: the new key
    overwrites the oldest, and the single new query attends to all `window` slots, in ring order — the order
    of keys is irrelevant to softmax attention, only the mask cares, and one query's mask is all ones.
    A chunk that would let a query see more than `window` tokens raises instead of silently mixing rules.
    `window` counts the query's own token (Mistral's convention, lesson 07's sliding_window_mask).
    Raises TypeError/ValueError as KVCache does (window: an int >= 1), ValueError for a config with
    pos='alibi'.
    """

    def __init__(self, config: GPTConfig, batch_size: int = 1, window: int | None = None, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        config = check_instance("config", config, GPTConfig)
        if config.pos == "alibi":
            raise ValueError("config.pos='alibi' cannot use SlidingWindowKVCache: ALiBi's bias is computed "
                             "from the order of the keys, which a ring buffer rotates; allowed: learned, "
                             "sinusoidal, rope, none")
        window = config.block_size if window is None else check_int("window", window, minimum=1)
        super().__init__(config, batch_size, window, dtype=dtype, device=device)
        self.window = window

    def attended_length(self, T_new: int) -> int:
        """Keys the next T_new queries attend to: all of them while the ring fills, then the window."""
        return min(self.length + T_new, self.window)

    @property
    def seen(self) -> int:
        """Tokens that went through the cache so far (it holds the last min(seen, window) of them)."""
        return self.length

    @exercise(5, "the ring is full: the new token overwrites slot seen % window in keys and values; "
              "count it in the layer's length; return the whole buffers, in ring order")
    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append k, v (B, H_kv, T_new, D) while the ring fills, then overwrite the oldest slot -> (keys,
        values) (B, H_kv, min(seen, window), D) in ring order once full. Raises ValueError as
        KVCache.update does, and for T_new > 1 once the window is full (feed one token at a time).
        """
        T_new = self._check_update(layer_idx, k, v)
        seen = self.lengths[layer_idx]
        if seen + T_new <= self.window:  # still filling: append in order
            return super().update(layer_idx, k, v)
        if T_new != 1:
            raise ValueError(
                f"k holds T_new={T_new} tokens but the window of {self.window} has room for "
                f"{max(self.window - seen, 0)} more in order: once the ring is full, feed one token at a time"
            )
        slot = seen % self.window  # the oldest token's slot: it leaves the window now
        self.keys[layer_idx][:, :, slot] = k[:, :, 0]
        self.values[layer_idx][:, :, slot] = v[:, :, 0]
        self.lengths[layer_idx] = seen + 1
        return self.keys[layer_idx], self.values[layer_idx]  # (B, H_kv, window, D), ring order


class Int8KVCache(KVCache):
    """Keys and values stored as int8 plus one `dtype` scale per (token, head); dequantized on read.

    Per element the stored value is off by at most absmax(row) / 254 (see quantize_int8). The bytes per
    cached (token, head) drop from head_dim · element_size to head_dim + element_size.
    Raises TypeError/ValueError as KVCache does.
    """

    def allocate_storage(self, shape: tuple[int, ...], device: torch.device | str) -> None:
        """int8 codes of `shape` (B, H_kv, max_len, D) and one scale per vector (B, H_kv, max_len, 1) in
        self.dtype, for keys and values of every layer."""
        scale_shape = (*shape[:-1], 1)  # (B, H_kv, max_len, 1)
        n = self.config.n_layer
        self.keys = [torch.zeros(shape, dtype=torch.int8, device=device) for _ in range(n)]
        self.values = [torch.zeros(shape, dtype=torch.int8, device=device) for _ in range(n)]
        self.key_scales = [torch.zeros(scale_shape, dtype=self.dtype, device=device) for _ in range(n)]
        self.value_scales = [torch.zeros(scale_shape, dtype=self.dtype, device=device) for _ in range(n)]

    def tensors(self) -> list[Tensor]:
        return [*self.keys, *self.values, *self.key_scales, *self.value_scales]

    @exercise(4, "quantize k and v with quantize_int8 and store codes and scales at start:end; advance "
              "the length; return everything cached, dequantized to k's dtype")
    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Quantize and store k, v (B, H_kv, T_new, D) -> every cached (keys, values) of that layer,
        dequantized to k's dtype. Raises ValueError as KVCache.update does (bad layer_idx or shape,
        cache full).
        """
        T_new = self._check_update(layer_idx, k, v)
        start = self.lengths[layer_idx]
        end = start + T_new
        if end > self.max_len:
            raise ValueError(f"the KV cache is full: max_len={self.max_len}, layer {layer_idx} holds {start} "
                             f"tokens and cannot take {T_new} more")
        for x, codes, scales in ((k, self.keys, self.key_scales), (v, self.values, self.value_scales)):
            q, scale = quantize_int8(x)  # (B, H_kv, T_new, D) int8, (B, H_kv, T_new, 1)
            codes[layer_idx][:, :, start:end] = q
            scales[layer_idx][:, :, start:end] = scale
        self.lengths[layer_idx] = end
        # dequantize everything on read: attention needs real numbers (a fused kernel would do it on the fly)
        i = layer_idx
        k_all = dequantize_int8(self.keys[i][:, :, :end], self.key_scales[i][:, :, :end], k.dtype)
        v_all = dequantize_int8(self.values[i][:, :, :end], self.value_scales[i][:, :, :end], v.dtype)
        return k_all, v_all  # (B, H_kv, end, D) each


# ----------------------------------------------------------------------------------------------------
# generation


def _check_cache(cache: object, model: GPT, batch_size: int) -> KVCache:
    if not isinstance(cache, KVCache):
        raise TypeError(f"cache must be a KVCache (or a subclass), got {type(cache).__name__}")
    c, m = cache.config, model.config
    if (c.n_layer, c.kv_heads, c.head_dim) != (m.n_layer, m.kv_heads, m.head_dim):
        raise ValueError(f"cache was built for n_layer={c.n_layer}, n_kv_head={c.kv_heads}, "
                         f"head_dim={c.head_dim}; the model has {m.n_layer}, {m.kv_heads}, {m.head_dim}")
    if cache.batch_size != batch_size:
        raise ValueError(f"cache has batch_size={cache.batch_size}, prompt_ids has {batch_size} rows")
    if cache.length != 0 or max(cache.lengths) != 0:
        raise ValueError(f"cache must be empty (call cache.reset()), it holds {max(cache.lengths)} tokens")
    return cache


def _check_left_padding(attention_mask: object, B: int, T: int) -> None:
    """(B, T) of 0/1, each row zeros then ones (left padding) and ending in a token. One read."""
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != (B, T) \
            or attention_mask.is_floating_point() or attention_mask.is_complex():
        what = f"{attention_mask.dtype} {tuple(attention_mask.shape)}" if isinstance(attention_mask, Tensor) \
            else type(attention_mask).__name__
        raise ValueError(f"attention_mask must be an integer or bool tensor of prompt_ids' shape ({B}, {T}) "
                         f"(1 = token, 0 = left padding), got {what}")
    m = attention_mask.long()
    ok = ((m == 0) | (m == 1)).all() & (m[:, 1:] >= m[:, :-1]).all() & (m[:, -1] == 1).all()
    if not bool(ok):
        raise ValueError("attention_mask must hold 0/1 with the zeros on the left (left padding) and every "
                         "row ending in a real token (1)")


# inference_mode, not no_grad: it also skips autograd's version counters and views bookkeeping, a
# per-operation cost that a decode step of a small model pays on every one of its many small ops
@exercise(6, "a (B, T + n) ids buffer and a padding mask; in eval mode: prefill the prompt through the "
          "model with the cache (a sliding cache: a window, then one token at a time); each step "
          "sample from the last logits, write the id, feed only that token (without a cache: the "
          "whole prefix); collect logits and step times when asked; restore the mode in finally")
@torch.inference_mode()
def generate(model: GPT, prompt_ids: Tensor, max_new_tokens: int, *, use_cache: bool = True,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             min_p: float | None = None, generator: torch.Generator | None = None,
             attention_mask: Tensor | None = None, cache: KVCache | None = None, return_logits: bool = False,
             step_times: list[float] | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """Append max_new_tokens tokens to prompt_ids (B, T) -> (B, T + max_new_tokens).

    use_cache=True: one forward pass over the prompt (the "prefill"), then one token per step through a
    KV cache (the "decode"). use_cache=False: every step recomputes the whole sequence — the baseline.
    Tokens are drawn by lesson 05's `sample` (temperature 0 = greedy argmax), in float32 whatever the
    model's dtype.
    attention_mask: (B, T), 1 = token, 0 = left padding (transformers' convention): prompts of different
        lengths in one batch, each generating exactly what it generates alone (positions count from each
        row's first real token). Every row must end in a real token. Not with a SlidingWindowKVCache.
    cache: a cache to fill (e.g. SlidingWindowKVCache, Int8KVCache); default: a KVCache of exactly
        T + max_new_tokens tokens in the model's dtype.
    Context: without a SlidingWindowKVCache, T + max_new_tokens must fit in block_size (a clear error
    otherwise, never a silent truncation). With one, generation goes on past block_size with each token
    seeing the last `window` tokens (positions keep growing; pos='learned' has no positions past
    block_size and still raises).
    return_logits: also return the logits that chose each new token, (B, max_new_tokens, vocab_size).
    step_times: a list that receives the wall time (s) since the start, after each new token.
    Runs in eval mode and restores the model's mode afterwards. The inputs are checked here, once; a
    decode step then reads nothing back from the device (GPT.forward(validate=False) for the tokens this
    loop sampled itself), so on a GPU the host never waits for a step to finish.
    Raises TypeError/ValueError naming the argument for bad input, ValueError past block_size.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a lab GPT (llmlab.transformer_block.GPT), got {type(model).__name__}")
    if not isinstance(prompt_ids, Tensor) or prompt_ids.dim() != 2 or prompt_ids.shape[1] == 0 \
            or prompt_ids.is_floating_point() or prompt_ids.dtype == torch.bool:
        what = f"{prompt_ids.dtype} {tuple(prompt_ids.shape)}" if isinstance(prompt_ids, Tensor) \
            else type(prompt_ids).__name__
        raise ValueError(f"prompt_ids must be an integer tensor (B, T) with T >= 1, got {what}")
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=0)
    check_bool("use_cache", use_cache)
    check_bool("return_logits", return_logits)
    if step_times is not None and not isinstance(step_times, list):
        raise TypeError(f"step_times must be a list or None, got {type(step_times).__name__}")
    if cache is not None and not use_cache:
        raise ValueError("cache was given with use_cache=False; pass one or the other")
    # lesson 05 validates the sampling knobs; check them once here, before any compute (no RNG used)
    filter_logits(torch.zeros(1, 2), temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)

    config = model.config
    B, T = prompt_ids.shape
    total = T + max_new_tokens
    param = next(model.parameters())
    sliding = isinstance(cache, SlidingWindowKVCache)
    padded = attention_mask is not None
    if padded:
        _check_left_padding(attention_mask, B, T)
        if sliding:
            raise ValueError("attention_mask (left padding) cannot be used with a SlidingWindowKVCache: its "
                             "ring buffer reorders the keys; use a KVCache")
    if total > config.block_size and not sliding:
        raise ValueError(
            f"prompt length {T} + max_new_tokens {max_new_tokens} = {total} is past block_size="
            f"{config.block_size}; generate at most {config.block_size - T} tokens, or pass "
            f"cache=SlidingWindowKVCache(...) to slide a window over the context"
        )
    if use_cache:
        cache = KVCache(config, B, total, dtype=param.dtype, device=param.device) if cache is None \
            else _check_cache(cache, model, B)

    ids = torch.empty(B, total, dtype=torch.long, device=param.device)  # (B, T + n), filled as we go
    ids[:, :T] = prompt_ids
    mask = torch.ones(B, total, dtype=torch.long, device=param.device)  # (B, T + n): new tokens are real
    if padded:
        mask[:, :T] = attention_mask
    # the model counts positions itself: after the cached tokens, from each row's first real token
    def seen(end: int) -> dict:  # the padding mask up to token `end`, when there is padding
        return {"attention_mask": mask[:, :end]} if padded else {}
    all_logits = []
    was_training = model.training
    model.eval()
    start_time = time.perf_counter()
    try:
        if use_cache:  # prefill: the prompt in as few chunks as the cache allows
            chunk = min(T, cache.window) if sliding else T
            logits = model(ids[:, :chunk], kv_cache=cache, allow_longer=sliding,
                           **seen(chunk))[0]  # (B, chunk, vocab_size); checks the prompt's ids
            for t in range(chunk, T):  # a prompt longer than the window: one token at a time
                logits = model(ids[:, t:t + 1], kv_cache=cache, allow_longer=sliding)[0]
        for t in range(T, total):
            if not use_cache:  # recompute the whole prefix: T_t tokens through every layer, every step
                logits = model(ids[:, :t], validate=t == T, **seen(t))[0]
            next_logits = logits[:, -1]  # (B, vocab_size): the prediction for position t
            ids[:, t] = sample(next_logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                               generator=generator)  # (B,)
            if return_logits:
                all_logits.append(next_logits)
            if use_cache and t + 1 < total:  # decode: only the new token goes through the model
                logits = model(ids[:, t:t + 1], kv_cache=cache, allow_longer=sliding, validate=False,
                               **seen(t + 1))[0]  # (B, 1, vocab_size)
            if step_times is not None:
                step_times.append(time.perf_counter() - start_time)
    finally:
        model.train(was_training)
    if return_logits:
        empty = torch.empty(B, 0, config.vocab_size, dtype=param.dtype, device=param.device)
        return ids, (torch.stack(all_logits, dim=1) if all_logits else empty)  # (B, n, vocab_size)
    return ids


def cache_for(model: nn.Module, kind: str = "full", *, batch_size: int = 1, max_len: int | None = None,
              window: int | None = None) -> KVCache:
    """A cache of `kind` ("full", "sliding", "int8") matching `model`'s shape, dtype and device.

    Raises TypeError unless model is a lab GPT, ValueError for an unknown kind, TypeError/ValueError for
    bad sizes as the cache classes do.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a lab GPT, got {type(model).__name__}")
    param = next(model.parameters())
    kw = dict(dtype=param.dtype, device=param.device)
    if kind == "full":
        return KVCache(model.config, batch_size, max_len, **kw)
    if kind == "sliding":
        return SlidingWindowKVCache(model.config, batch_size, window, **kw)
    if kind == "int8":
        return Int8KVCache(model.config, batch_size, max_len, **kw)
    raise ValueError(f"kind must be one of 'full', 'sliding', 'int8'; got {kind!r}")
