"""The block manager: which blocks of the KV pool each sequence owns, and which prefixes are cached.

Every block has a reference count: the number of running sequences whose block table holds it. A block
with count 0 is free, even when it still holds the K/V of a finished sequence: it goes on a free list in
least-recently-freed order and is reused (evicted) only when a new block is needed and no older free
block is left. Blocks are taken as a sequence grows (one more every block_size tokens), never reserved
for max_tokens up front.

Prefix caching (vLLM's automatic prefix caching, SGLang's RadixAttention in a flat form): a *full* block
gets a key that covers every token up to its end, built as a hash chain over the blocks

    h_0 = hash(root, tokens of block 0),   h_i = hash(h_{i-1}, tokens of block i)

so equal keys mean equal prefixes, hence equal K/V (a token's K/V depends on every token before it).
A new sequence walks its blocks in order and reuses every block found under its key — with a token
check on each hit, because a hash can collide and a block may since have been evicted and refilled —
taking a reference instead of recomputing. Two rules keep this correct:
- only full blocks are shared, and a sequence only ever writes into its own last, partial block or a
  fresh one: a shared block is never written, so no copy-on-write is needed;
- the block that holds a sequence's last token is never taken from the cache: the model must run on at
  least that token to produce the logits of the next one (a prompt of exactly k·block_size tokens whose
  k blocks are all cached still recomputes its last block).

Papers/code: Kwon et al. 2023 (PagedAttention: blocks, block tables, ref counts and copy-on-write);
vLLM's automatic prefix caching and nano-vllm's `BlockManager` (the hash chain with a token check).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from llmlab.inference_stacks.sequence import Sequence
from llmlab.utils.checks import check_bool, check_int
from llmlab.utils.exercises import exercise

__all__ = ["Block", "BlockManager"]


@dataclass
class Block:
    """One block of the pool. hash/token_ids/parent_hash are set once the block is full and computed (the
    prefix-cache entry); ref_count = running sequences holding it."""

    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] | None = None
    parent_hash: int | None = None

    def reset(self) -> None:
        self.hash = self.token_ids = self.parent_hash = None


class BlockManager:
    """Ref-counted blocks of `block_size` tokens, a free list in least-recently-freed order, prefix caching.

    can_allocate(seq) / allocate(seq): blocks for every token of a waiting sequence, reusing cached full
        blocks of its prefix (sets seq.num_cached_tokens to the tokens found).
    can_append(seq) / may_append(seq): a new block when the sequence's next token starts one.
    hash_blocks(seq): register the sequence's newly computed full blocks in the prefix cache.
    deallocate(seq): drop the sequence's references (finished or preempted).
    num_free_blocks: blocks no running sequence holds (cached but unreferenced blocks included).
    Raises TypeError/ValueError naming the argument for bad sizes.
    """

    ROOT = None  # the parent of block 0 in the hash chain

    def __init__(self, num_blocks: int, block_size: int, *, enable_prefix_caching: bool = True) -> None:
        self.num_blocks = check_int("num_blocks", num_blocks, minimum=1)
        self.block_size = check_int("block_size", block_size, minimum=1)
        self.enable_prefix_caching = check_bool("enable_prefix_caching", enable_prefix_caching)
        self.blocks = [Block(i) for i in range(num_blocks)]
        # free block ids, oldest first: the front is evicted first, a freed block joins at the back
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.hash_to_block: dict[int, int] = {}

    # ------------------------------------------------------------------------------------------------
    # counts

    @property
    def num_free_blocks(self) -> int:
        """Blocks with no reference: never used, or holding a finished/preempted sequence's K/V (reusable)."""
        return len(self.free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self.free)

    @property
    def num_cached_free_blocks(self) -> int:
        """Free blocks that still hold a prefix-cache entry (a later request may reuse them)."""
        return sum(self.blocks[b].hash is not None for b in self.free)

    # ------------------------------------------------------------------------------------------------
    # the prefix cache

    @staticmethod
    def compute_hash(parent_hash: int | None, token_ids: tuple[int, ...]) -> int:
        """The key of a full block: a hash of the previous block's key and this block's tokens (Python's
        64-bit tuple hash, deterministic for ints). A collision is caught by the token check on hit."""
        return hash((parent_hash, token_ids))

    @exercise(5, "walk the full blocks, leaving the last token's block out; chain the hash from ROOT, "
              "look it up, and stop at a miss or when the block's tokens or parent hash differ (a "
              "collision)")
    def _match_prefix(self, seq: Sequence) -> list[int]:
        """Block ids of the longest cached prefix of seq (full blocks; never the block of its last token)."""
        if not self.enable_prefix_caching:
            return []
        hits: list[int] = []
        parent = self.ROOT
        for i in range((len(seq) - 1) // self.block_size):  # leaves >= 1 token to compute
            tokens = seq.block_tokens(i, self.block_size)
            h = self.compute_hash(parent, tokens)
            block_id = self.hash_to_block.get(h)
            if block_id is None:
                break
            block = self.blocks[block_id]
            if block.token_ids != tokens or block.parent_hash != parent:  # a collision, not a hit
                break
            hits.append(block_id)
            parent = h
        return hits

    def num_prefix_hit_tokens(self, seq: Sequence) -> int:
        """Tokens of a waiting seq whose K/V the prefix cache holds now (whole blocks, < len(seq))."""
        return len(self._match_prefix(seq)) * self.block_size

    @exercise(4, "nothing without prefix caching; for each newly full, computed block: its parent is the"
              " previous block's hash (ROOT for block 0); store hash, tokens and parent on the block,"
              " and register the key unless another block holds it")
    def hash_blocks(self, seq: Sequence) -> None:
        """Register the full blocks of seq whose K/V is now computed (the first num_cached_tokens tokens).
        A key already held by another block keeps that block; this one is still marked, for its checks."""
        if not self.enable_prefix_caching:
            return
        full = seq.num_cached_tokens // self.block_size
        for i in range(seq.num_hashed_blocks, full):
            block = self.blocks[seq.block_table[i]]
            parent = self.blocks[seq.block_table[i - 1]].hash if i > 0 else self.ROOT
            tokens = seq.block_tokens(i, self.block_size)
            block.hash, block.token_ids, block.parent_hash = self.compute_hash(parent, tokens), tokens, parent
            self.hash_to_block.setdefault(block.hash, block.block_id)
        seq.num_hashed_blocks = max(seq.num_hashed_blocks, full)

    # ------------------------------------------------------------------------------------------------
    # allocation

    def _take_free_block(self) -> int:
        """The least recently freed block, evicted from the prefix cache, with one reference."""
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None and self.hash_to_block.get(block.hash) == block_id:
            del self.hash_to_block[block.hash]
        block.reset()
        block.ref_count = 1
        return block_id

    def can_allocate(self, seq: Sequence) -> bool:
        """Whether the pool can hold every token of seq now, counting its cached prefix blocks."""
        hits = self._match_prefix(seq)
        taken_from_free = sum(self.blocks[b].ref_count == 0 for b in hits)  # cached but unreferenced
        new = seq.num_blocks(self.block_size) - len(hits)
        return self.num_free_blocks - taken_from_free >= new

    def allocate(self, seq: Sequence) -> int:
        """Give seq blocks for all its tokens: cached prefix blocks (one more reference each), then fresh
        ones. Sets seq.num_cached_tokens and returns it (the tokens the model need not compute).
        Raises ValueError if seq already holds blocks, RuntimeError if the pool is too small (ask
        can_allocate first)."""
        if seq.block_table:
            raise ValueError(f"seq must hold no blocks to be allocated, it holds {seq.block_table}")
        if not self.can_allocate(seq):
            raise RuntimeError(f"out of KV blocks: {self.num_free_blocks} free, sequence {seq.seq_id} "
                               f"needs {seq.num_blocks(self.block_size)}")
        hits = self._match_prefix(seq)
        for block_id in hits:  # first, so that taking fresh blocks below cannot evict them
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
        seq.block_table = hits + [self._take_free_block()
                                  for _ in range(seq.num_blocks(self.block_size) - len(hits))]
        seq.num_cached_tokens = seq.num_hashed_blocks = len(hits)
        seq.num_cached_tokens *= self.block_size
        return seq.num_cached_tokens

    def can_append(self, seq: Sequence) -> bool:
        """Whether the pool has the block that seq's newest token may need (a new block starts every
        block_size tokens: 0 or 1 blocks)."""
        return self.num_free_blocks >= seq.num_blocks(self.block_size) - len(seq.block_table)

    def may_append(self, seq: Sequence) -> None:
        """Take the blocks seq's tokens need beyond its table (a new one when its newest token, at position
        len - 1, is the first of a block). Raises RuntimeError when the pool is empty."""
        missing = seq.num_blocks(self.block_size) - len(seq.block_table)
        if missing > self.num_free_blocks:
            raise RuntimeError(f"out of KV blocks: sequence {seq.seq_id} needs {missing}, "
                               f"{self.num_free_blocks} free")
        seq.block_table.extend(self._take_free_block() for _ in range(missing))

    def deallocate(self, seq: Sequence) -> None:
        """Drop seq's references; a block nobody holds joins the free list (keeping its cache entry). The
        last block goes first, so that a prefix's tail is evicted before its head, which others share."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table = []
        seq.num_cached_tokens = seq.num_hashed_blocks = 0
