"""PagedAttention: the KV cache as a pool of fixed-size blocks, read through a per-sequence block table.

Lesson 06's cache gives every sequence one contiguous buffer of max_len tokens. A server does not know
how long a sequence will grow, so it must reserve the worst case and most of the reservation sits
empty (Kwon et al. measured 20-38% of KV memory actually used in earlier systems). PagedAttention cuts
the cache into blocks of `block_size` tokens, like pages of virtual memory: one pool of blocks shared
by every sequence, each sequence owning a list of block ids (its block table) that grows one block at
a time. Logical token t of a sequence lives in

    block  = block_table[t // block_size],   offset = t % block_size,   slot = block · block_size + offset

so at most block_size - 1 slots per sequence are wasted, and a block can be shared by several
sequences (a common prompt prefix is stored once). Attention reads the keys through the table:

    K_seq = concat(K_pool[block_table[0]], K_pool[block_table[1]], ...)[:context_len]     (a gather)
    out   = softmax(q K_seq^T · scale, masked past context_len) V_seq

Paper: Kwon et al. 2023, "Efficient Memory Management for Large Language Model Serving with
PagedAttention" (SOSP, arXiv:2309.06180). Their CUDA kernel walks the block table inside the kernel;
here the gather is one indexing op (`k_cache[block_tables]`) that builds a (B, blocks·block_size)
view of just the blocks each sequence owns, never a copy of the whole pool and never a per-sequence
reserved buffer.

Layout (one pool per layer, as vLLM and nano-vllm):  k_cache, v_cache (num_blocks, block_size, H_kv, D).
Two attentions read it:
- `paged_attention`: decode, one new query per sequence, q (B, H, D).
- `paged_prefill_attention`: prefill, Tq new queries per sequence (right-padded), causal over the prompt
  *and* the tokens already in the pool (a prefix-cache hit, or a sequence resumed after preemption).
Both fold grouped K/V heads (lesson 09) instead of copying them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from llmlab.gqa import grouped_attention  # lesson 09: n_head queries over n_kv_head shared K/V heads
from llmlab.transformer_block import GPTConfig
from llmlab.utils.checks import check_choice, check_int, check_number, check_tensor
from llmlab.utils.exercises import exercise

__all__ = [
    "KVPool",
    "gather_kv",
    "paged_attention",
    "paged_prefill_attention",
    "slot_mapping",
    "write_kv",
]

KERNELS = ("lab", "torch")


# ----------------------------------------------------------------------------------------------------
# the pool and the slot mapping


class KVPool:
    """The paged KV cache of a whole model: per layer, K and V pools (num_blocks, block_size, H_kv, D).

    Nothing in the pool belongs to a sequence; the BlockManager decides which blocks a sequence owns.
    `nbytes` counts what the pool reserves; the used part is (tokens held) / (num_blocks · block_size).
    Raises TypeError/ValueError naming the argument for bad sizes.
    """

    def __init__(self, config: GPTConfig, num_blocks: int, block_size: int, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.num_blocks = check_int("num_blocks", num_blocks, minimum=1)
        self.block_size = check_int("block_size", block_size, minimum=1)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        shape = (num_blocks, block_size, config.kv_heads, config.head_dim)  # (N_blocks, bs, H_kv, D)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    @property
    def bytes_per_block(self) -> int:
        """Bytes one block holds over all layers, K and V: 2 · n_layer · block_size · H_kv · D · element."""
        return self.nbytes // self.num_blocks


@exercise(1, "for each token t in start..end-1: its block is block_table[t // block_size], its offset t "
          "% block_size; the slot counts whole blocks before it plus the offset")
def slot_mapping(block_table: list[int], start: int, end: int, block_size: int) -> list[int]:
    """The pool slots of tokens start..end-1 of a sequence: block_table[t // bs] · bs + t % bs.

    Pure host-side arithmetic on Python ints (the engine builds it for a whole batch, then moves one
    tensor to the device). Raises ValueError when the table has no block for token end - 1.
    """
    if end > len(block_table) * block_size:
        raise ValueError(f"block_table holds {len(block_table)} blocks of {block_size} tokens, too few for "
                         f"token {end - 1}")
    return [block_table[t // block_size] * block_size + t % block_size for t in range(start, end)]


def write_kv(k_cache: Tensor, v_cache: Tensor, k: Tensor, v: Tensor, slots: Tensor) -> None:
    """Write N new keys and values k, v (N, H_kv, D) into the pool at `slots` (N,) (in place).

    The pool (num_blocks, block_size, H_kv, D) is viewed as num_blocks · block_size slots of (H_kv, D):
    one index_copy_ per tensor, whatever blocks the tokens land in.
    """
    H_kv, D = k_cache.shape[2:]
    k_cache.view(-1, H_kv, D).index_copy_(0, slots, k)  # (N_slots, H_kv, D)
    v_cache.view(-1, H_kv, D).index_copy_(0, slots, v)


@exercise(2, "index the pool with the whole block table at once, giving (B, max_blocks, bs, H_kv, D); "
          "merge the block and offset dims into one token dim, then put the heads before it")
def gather_kv(cache: Tensor, block_tables: Tensor) -> Tensor:
    """The context of each sequence through its block table: cache (num_blocks, bs, H_kv, D), block_tables
    (B, max_blocks) -> (B, H_kv, max_blocks · bs, D). Entries past a sequence's blocks may be any valid
    block id (they are masked by context_lens); nothing else of the pool is touched."""
    B, max_blocks = block_tables.shape
    _, block_size, H_kv, D = cache.shape
    blocks = cache[block_tables]  # (B, max_blocks, bs, H_kv, D): only the blocks each sequence owns
    return blocks.view(B, max_blocks * block_size, H_kv, D).transpose(1, 2)  # (B, H_kv, L, D)


# ----------------------------------------------------------------------------------------------------
# attention through the block table


def _check_pool(q: Tensor, k_cache: object, v_cache: object, block_tables: object, context_lens: object,
                q_name: str, q_ndim: int) -> None:
    """Shapes and dtypes only (host metadata): nothing is read back from the device."""
    check_tensor(q_name, q, ndim=q_ndim, dtype="float")
    for name, cache in (("k_cache", k_cache), ("v_cache", v_cache)):
        check_tensor(name, cache, ndim=4, dtype="float")
        if cache.dtype != q.dtype:
            raise TypeError(f"{name} must have the dtype of {q_name} ({q.dtype}), got {cache.dtype}")
    if v_cache.shape != k_cache.shape:
        raise ValueError(f"v_cache must have the shape of k_cache {tuple(k_cache.shape)}, "
                         f"got {tuple(v_cache.shape)}")
    H, D = q.shape[1], q.shape[-1]
    H_kv = k_cache.shape[2]
    if k_cache.shape[3] != D:
        raise ValueError(f"k_cache must have shape (num_blocks, block_size, H_kv, D={D}), "
                         f"got {tuple(k_cache.shape)}")
    if H % H_kv:
        raise ValueError(f"the K/V heads of k_cache ({H_kv}) must divide the query heads of {q_name} ({H})")
    B = q.shape[0]
    check_tensor("block_tables", block_tables, ndim=2, dtype="int")
    check_tensor("context_lens", context_lens, ndim=1, dtype="int")
    if block_tables.shape[0] != B or block_tables.shape[1] == 0:
        raise ValueError(f"block_tables must have shape (B={B}, max_blocks >= 1), "
                         f"got {tuple(block_tables.shape)}")
    if context_lens.shape[0] != B:
        raise ValueError(f"context_lens must have shape (B={B},), got {tuple(context_lens.shape)}")


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float | None, kernels: str) -> Tensor:
    """q (B, H, Tq, D), k, v (B, H_kv, L, D), mask bool (B, 1, Tq, L) -> (B, H, Tq, D)."""
    if kernels == "torch":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale,
                                              enable_gqa=q.shape[1] != k.shape[1])
    return grouped_attention(q, k, v, mask=mask, scale=scale)[0]


@exercise(3, "gather K and V through the block tables; mask out every key at or past context_lens[b]; "
          "attend with the one query as a length-1 query dim (_attend), then drop that dim")
def paged_attention(q: Tensor, k_cache: Tensor, v_cache: Tensor, block_tables: Tensor, context_lens: Tensor,
                    *, scale: float | None = None, kernels: str = "lab") -> Tensor:
    """Decode attention: one query per sequence over its context_lens[b] cached tokens, read through its
    block table.

    q: (B, H, D), the new token of each sequence (its own K/V already written to the pool).
    k_cache, v_cache: (num_blocks, block_size, H_kv, D), H_kv dividing H (grouped K/V heads).
    block_tables: (B, max_blocks) integer block ids; row b's first ceil(context_lens[b] / block_size)
        entries are used, the rest (padding) may hold any valid block id.
    context_lens: (B,) tokens of each sequence in the pool, each >= 1.
    scale: the factor on q·k (None = 1/sqrt(D)). kernels: "lab" (lesson 09's grouped_attention) or
        "torch" (F.scaled_dot_product_attention with enable_gqa).
    Returns (B, H, D) = softmax(q K^T · scale) V over each sequence's own context.
    Shapes and dtypes are checked; the ids and lengths are not read back from the device.
    Raises TypeError unless q, k_cache and v_cache are floating-point tensors of one dtype and block_tables,
    context_lens integer tensors, ValueError for other shapes than the above (H_kv not dividing H included);
    TypeError/ValueError unless scale is None or a number > 0, ValueError unless kernels is 'lab' or 'torch'.
    """
    _check_pool(q, k_cache, v_cache, block_tables, context_lens, "q", 3)
    if scale is not None:
        check_number("scale", scale, low=0, low_open=True)
    check_choice("kernels", kernels, KERNELS)
    k = gather_kv(k_cache, block_tables)  # (B, H_kv, L, D), L = max_blocks · block_size
    v = gather_kv(v_cache, block_tables)
    L = k.shape[2]
    mask = torch.arange(L, device=q.device) < context_lens.to(q.device)[:, None]  # (B, L): real keys
    out = _attend(q[:, :, None], k, v, mask[:, None, None, :], scale, kernels)  # (B, H, 1, D)
    return out[:, :, 0]  # (B, H, D)


@exercise(6, "gather K and V; query i of row b sits at position context_lens - query_lens + i (0 for "
          "padded queries); key j is allowed when j <= that position; attend with _attend")
def paged_prefill_attention(q: Tensor, k_cache: Tensor, v_cache: Tensor, block_tables: Tensor,
                            context_lens: Tensor, query_lens: Tensor, *, scale: float | None = None,
                            kernels: str = "lab") -> Tensor:
    """Prefill attention: query_lens[b] new tokens of each sequence, causal over everything before them.

    q: (B, H, Tq, D), right-padded: row b's queries are its last query_lens[b] tokens, so query i sits at
        position context_lens[b] - query_lens[b] + i and sees keys 0..that position. The keys before the
        first query are the sequence's cached prefix (prefix-cache hit, or a resumed sequence): they are
        read from the pool, not recomputed. Padded queries (i >= query_lens[b]) see only key 0 (their
        output is garbage, never NaN, and never used).
    k_cache, v_cache, block_tables, context_lens, scale, kernels: as paged_attention; the new tokens' K/V
        must already be written to the pool.
    query_lens: (B,) each in 1..context_lens[b].
    Returns (B, H, Tq, D).
    Raises what paged_attention raises (q being (B, H, Tq, D)), TypeError unless query_lens is an integer
    tensor, ValueError unless it has shape (B,).
    """
    _check_pool(q, k_cache, v_cache, block_tables, context_lens, "q", 4)
    check_tensor("query_lens", query_lens, ndim=1, dtype="int")
    if query_lens.shape != context_lens.shape:
        raise ValueError(f"query_lens must have shape (B={q.shape[0]},), got {tuple(query_lens.shape)}")
    if scale is not None:
        check_number("scale", scale, low=0, low_open=True)
    check_choice("kernels", kernels, KERNELS)
    Tq = q.shape[2]
    k = gather_kv(k_cache, block_tables)  # (B, H_kv, L, D)
    v = gather_kv(v_cache, block_tables)
    L = k.shape[2]
    context_lens, query_lens = context_lens.to(q.device), query_lens.to(q.device)
    query_pos = (context_lens - query_lens)[:, None] + torch.arange(Tq, device=q.device)  # (B, Tq)
    query_pos = torch.where(torch.arange(Tq, device=q.device) < query_lens[:, None], query_pos, 0)
    mask = torch.arange(L, device=q.device) <= query_pos[:, :, None]  # (B, Tq, L): causal, with offset
    return _attend(q, k, v, mask[:, None], scale, kernels)  # (B, H, Tq, D)
