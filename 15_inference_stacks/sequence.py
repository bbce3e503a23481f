"""A request as the engine sees it: its sampling parameters and its state (tokens, blocks, status).

`SamplingParams` is what a client asks for (vLLM's and nano-vllm's name); a `Sequence` is one request in
flight: the token ids so far (prompt, then generated), the block table that maps them into the KV pool,
and how many of them already have their K/V in the pool (`num_cached_tokens`). One step of the engine
computes tokens num_cached_tokens..len-1 of each scheduled sequence (the whole prompt at prefill, the
last sampled token at decode) and appends one new token.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

import torch

from llmlab.sampling import filter_logits  # lesson 05: validates the sampling knobs
from llmlab.utils.checks import check_bool, check_int

__all__ = ["SamplingParams", "Sequence", "SequenceStatus"]


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded.

    temperature: 0 = greedy (argmax); otherwise lesson 05's `sample` with top_k / top_p / min_p.
    max_tokens: new tokens to generate (>= 1); fewer when the EOS token comes first (unless ignore_eos).
    seed: a private torch.Generator for this request, so its sampled tokens do not depend on what else is
        in the batch, on preemption or on the global RNG; None = the global RNG.
    Raises ValueError naming the field for a bad value.
    """

    temperature: float = 0.0
    max_tokens: int = 16
    top_k: int | None = None
    top_p: float | None = None
    ignore_eos: bool = False
    min_p: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        filter_logits(torch.zeros(1, 2), temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                      min_p=self.min_p)  # raises ValueError naming the knob
        check_int("max_tokens", self.max_tokens, minimum=1)
        check_bool("ignore_eos", self.ignore_eos)
        if self.seed is not None:
            check_int("seed", self.seed, minimum=0)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class SequenceStatus(enum.Enum):
    WAITING = "waiting"  # not in the pool: new, or preempted (its K/V will be recomputed)
    RUNNING = "running"  # holds blocks, decodes one token per step
    FINISHED = "finished"


class Sequence:
    """One request in flight. token_ids: prompt then generated tokens; block_table: the pool blocks holding
    their K/V, in order; num_cached_tokens: how many leading tokens have K/V in the pool."""

    _ids = itertools.count()

    def __init__(self, prompt: list[int], params: SamplingParams, *,
                 device: torch.device | str = "cpu") -> None:
        self.seq_id = next(Sequence._ids)
        self.token_ids = list(prompt)
        self.num_prompt_tokens = len(prompt)
        self.params = params
        self.status = SequenceStatus.WAITING
        self.block_table: list[int] = []
        self.num_cached_tokens = 0
        self.num_hashed_blocks = 0  # leading blocks registered in the prefix cache (BlockManager.hash_blocks)
        self.num_preemptions = 0
        self.generator = None
        if params.seed is not None and not params.greedy:
            self.generator = torch.Generator(device=device).manual_seed(params.seed)

    def __len__(self) -> int:
        return len(self.token_ids)

    def __repr__(self) -> str:
        return (f"Sequence(id={self.seq_id}, {self.status.value}, tokens={len(self)}, "
                f"cached={self.num_cached_tokens}, blocks={self.block_table})")

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    def num_blocks(self, block_size: int) -> int:
        """Blocks needed to hold the K/V of every token so far: ceil(len / block_size)."""
        return -(-len(self) // block_size)

    def block_tokens(self, i: int, block_size: int) -> tuple[int, ...]:
        """The token ids of logical block i."""
        return tuple(self.token_ids[i * block_size:(i + 1) * block_size])
