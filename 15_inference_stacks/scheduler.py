"""The scheduler: which sequences run in the next step — continuous batching with preemption by recompute.

Static batching runs a batch until its longest request finishes: finished rows idle, new requests wait.
Continuous (iteration-level) batching re-decides the batch at every step (Yu et al. 2022, "Orca"): a
finished sequence leaves at once and a waiting one joins at the next step. Each step is either

- a prefill step: admit waiting sequences, oldest first, while they fit — at most max_num_seqs
  running, at most max_num_batched_tokens prompt tokens computed in the step, and enough free blocks
  for their whole prompt (minus the blocks found in the prefix cache); or, when none can be admitted,
- a decode step: every running sequence computes its last token. A sequence whose next token starts a
  new block needs one; when the pool has none, the most recently admitted sequence is preempted: its
  blocks are freed and it goes back to the front of the queue with its tokens so far. When readmitted
  it is prefilled again over prompt + generated tokens (recompute; vLLM's default, cheaper than swapping
  to CPU for short sequences), and the prefix cache often gives its old blocks back.

The order of the two and the preemption policy follow vLLM's V0 scheduler and nano-vllm.
"""

from __future__ import annotations

from collections import deque

from llmlab.inference_stacks.block_manager import BlockManager
from llmlab.inference_stacks.sequence import Sequence, SequenceStatus
from llmlab.utils.checks import check_int

__all__ = ["Scheduler"]


class Scheduler:
    """waiting (FIFO; preempted sequences go back to its front) and running sequences.

    schedule() -> (sequences, is_prefill); postprocess(sequences, new_token_ids) -> finished sequences.
    stats: "preemptions", "prefix_cache_hit_tokens" (prompt tokens whose K/V came from the cache).
    A sequence must fit the pool alone and its prefill the token budget (the engine checks at
    add_request), so every step schedules at least one sequence.
    The constructor raises TypeError unless block_manager is a BlockManager, TypeError/ValueError unless
    max_num_seqs and max_num_batched_tokens are ints >= 1 and eos_token_id None or an int >= 0.
    """

    def __init__(self, block_manager: BlockManager, *, max_num_seqs: int = 32,
                 max_num_batched_tokens: int = 1024, eos_token_id: int | None = None) -> None:
        if not isinstance(block_manager, BlockManager):
            raise TypeError(f"block_manager must be a BlockManager, got {type(block_manager).__name__}")
        self.block_manager = block_manager
        self.max_num_seqs = check_int("max_num_seqs", max_num_seqs, minimum=1)
        self.max_num_batched_tokens = check_int("max_num_batched_tokens", max_num_batched_tokens, minimum=1)
        if eos_token_id is not None:
            check_int("eos_token_id", eos_token_id, minimum=0)
        self.eos_token_id = eos_token_id
        self.waiting: deque[Sequence] = deque()
        self.running: deque[Sequence] = deque()
        self.stats = {"preemptions": 0, "prefix_cache_hit_tokens": 0}

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> tuple[list[Sequence], bool]:
        """The next step's sequences and whether it is a prefill: the waiting ones that fit (first come, first
        served), else every running one, preempting the newest when the pool is full.

        Raises RuntimeError when no sequence fits the KV pool alone (the engine's checks rule that out).
        """
        bm = self.block_manager
        scheduled: list[Sequence] = []
        num_tokens = 0
        while self.waiting and len(self.running) + len(scheduled) < self.max_num_seqs:
            seq = self.waiting[0]
            if not bm.can_allocate(seq):
                break  # first come, first served: later requests do not overtake it
            to_compute = len(seq) - bm.num_prefix_hit_tokens(seq)
            if num_tokens + to_compute > self.max_num_batched_tokens:
                break
            self.stats["prefix_cache_hit_tokens"] += bm.allocate(seq)
            num_tokens += to_compute
            seq.status = SequenceStatus.RUNNING
            scheduled.append(self.waiting.popleft())
        if scheduled:
            self.running.extend(scheduled)
            return scheduled, True

        while self.running:  # decode: every running sequence, oldest first
            seq = self.running.popleft()
            while not bm.can_append(seq):
                if self.running:
                    self._preempt(self.running.pop())  # the newest gives its blocks back
                else:
                    self._preempt(seq)
                    break
            else:
                bm.may_append(seq)
                scheduled.append(seq)
        if not scheduled:
            raise RuntimeError("no sequence fits the KV pool alone; the engine checks this at add_request")
        self.running = deque(scheduled)
        return scheduled, False

    def _preempt(self, seq: Sequence) -> None:
        """Recompute-style preemption: free the blocks, keep the tokens, queue the sequence first."""
        self.block_manager.deallocate(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.stats["preemptions"] += 1
        self.waiting.appendleft(seq)

    def postprocess(self, seqs: list[Sequence], token_ids: list[int]) -> list[Sequence]:
        """After a step: every scheduled token now has K/V in the pool; append each new token; retire the
        sequences that hit EOS or max_tokens. Returns the finished sequences."""
        finished = []
        for seq, token in zip(seqs, token_ids):
            seq.num_cached_tokens = len(seq)
            self.block_manager.hash_blocks(seq)
            seq.token_ids.append(token)
            eos = self.eos_token_id is not None and token == self.eos_token_id and not seq.params.ignore_eos
            if eos or seq.num_generated >= seq.params.max_tokens:
                seq.status = SequenceStatus.FINISHED
                self.block_manager.deallocate(seq)
                self.running.remove(seq)
                finished.append(seq)
        return finished
