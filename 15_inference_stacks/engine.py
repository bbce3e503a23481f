"""LLMEngine: a paged, continuously batched inference engine for the lab GPT, in the shape of vLLM.

One step of the engine is three calls (nano-vllm's `LLMEngine.step`):

    seqs, is_prefill = scheduler.schedule()           which sequences run, prefill or decode
    token_ids        = model_runner.run(seqs, ...)    one forward pass over the paged KV pool
    finished         = scheduler.postprocess(seqs, token_ids)   append tokens, retire finished sequences

The pieces: `KVPool` + `paged_attention` (paged_attention.py), `BlockManager` (block_manager.py: ref
counts, prefix caching), `Scheduler` (scheduler.py: continuous batching, preemption by recompute),
`ModelRunner` (model_runner.py: the GPT's modules over the pool). Greedy output equals lesson 06's
`generate` for each prompt alone, whatever the batching, preemption or prefix-cache hits
(tests/test_15_inference_stacks.py).

Papers: Kwon et al. 2023 (vLLM, PagedAttention); Yu et al. 2022 (Orca, iteration-level scheduling).
"""

from __future__ import annotations

import time

import torch

from llmlab.inference_stacks.block_manager import BlockManager
from llmlab.inference_stacks.model_runner import ModelRunner
from llmlab.inference_stacks.paged_attention import KVPool
from llmlab.inference_stacks.scheduler import Scheduler
from llmlab.inference_stacks.sequence import SamplingParams, Sequence
from llmlab.transformer_block import GPT
from llmlab.utils.checks import check_bool, check_int

__all__ = ["LLMEngine"]


def _check_prompt(prompt: object, vocab_size: int, name: str = "prompt") -> list[int]:
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() != 1 or prompt.is_floating_point() or prompt.dtype == torch.bool:
            raise TypeError(f"{name} must be a list of token ids or a 1-D integer tensor, got "
                            f"{prompt.dtype} {tuple(prompt.shape)}")
        prompt = prompt.tolist()
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise ValueError(f"{name} must be a non-empty list of token ids, got {prompt!r:.60}")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        raise TypeError(f"{name} must hold int token ids, got {prompt!r:.60}")
    low, high = min(prompt), max(prompt)
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} holds token id {low if low < 0 else high}, outside vocab_size "
                         f"0..{vocab_size - 1}")
    return list(prompt)


class LLMEngine:
    """Serve many requests on one lab GPT: add_request / step, or generate(prompts, params).

    block_size: tokens per KV block. num_blocks: blocks in the pool (None: enough for max_num_seqs
        sequences of the model's full context, block_size tokens of config.block_size).
    max_num_seqs: most sequences running at once. max_num_batched_tokens: most tokens computed in one
        prefill step (there is no chunked prefill: a prompt is prefilled in one step, so a request whose
        prompt + max_tokens - 1 exceeds it is refused).
    enable_prefix_caching: reuse the K/V of full blocks shared with earlier prompts.
    eos_token_id: stop a request when it samples this token (unless its params say ignore_eos).
    stats: "preemptions", "prefix_cache_hit_tokens", "prefill_tokens" (computed), "decode_tokens",
        "prefill_steps", "decode_steps", "prefill_time_s", "decode_time_s".
    Supported models: the GPT's causal attention with learned, sinusoidal, rope or no positions (ALiBi and
    sliding windows are refused with a ValueError). Raises TypeError/ValueError naming the argument.
    """

    def __init__(self, model: GPT, *, block_size: int = 16, num_blocks: int | None = None,
                 max_num_seqs: int = 32, max_num_batched_tokens: int = 1024,
                 enable_prefix_caching: bool = True, eos_token_id: int | None = None) -> None:
        if not isinstance(model, GPT):
            raise TypeError(f"model must be a lab GPT (llmlab.transformer_block.GPT), "
                            f"got {type(model).__name__}")
        config = model.config
        if config.pos == "alibi" or config.sliding_window is not None or not config.causal:
            raise ValueError(f"model must use causal attention with pos learned/sinusoidal/rope/none and "
                             f"no sliding window; got pos={config.pos!r}, "
                             f"sliding_window={config.sliding_window}, causal={config.causal}")
        self.model = model
        self.block_size = check_int("block_size", block_size, minimum=1)
        max_num_seqs = check_int("max_num_seqs", max_num_seqs, minimum=1)
        if num_blocks is None:
            num_blocks = max_num_seqs * -(-config.block_size // block_size)
        num_blocks = check_int("num_blocks", num_blocks, minimum=1)
        check_bool("enable_prefix_caching", enable_prefix_caching)
        if eos_token_id is not None:
            check_int("eos_token_id", eos_token_id, minimum=0, maximum=config.vocab_size - 1)
        param = next(model.parameters())
        self.device = param.device
        self.pool = KVPool(config, num_blocks, block_size, dtype=param.dtype, device=param.device)
        self.block_manager = BlockManager(num_blocks, block_size, enable_prefix_caching=enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, max_num_seqs=max_num_seqs,
                                   max_num_batched_tokens=max_num_batched_tokens, eos_token_id=eos_token_id)
        self.runner = ModelRunner(model, self.pool)
        self.stats = self.scheduler.stats  # one dict: the scheduler counts preemptions and cache hits
        self.stats.update(prefill_tokens=0, decode_tokens=0, prefill_steps=0, decode_steps=0,
                          prefill_time_s=0.0, decode_time_s=0.0)
        self._finished: dict[int, list[int]] = {}

    # ------------------------------------------------------------------------------------------------

    def add_request(self, prompt: list[int], params: SamplingParams | None = None) -> int:
        """Queue one prompt (token ids) -> its request id. It joins the batch at a coming step.
        Raises ValueError when it cannot fit: prompt + max_tokens past the model's block_size, its K/V
        past the whole pool, or its prefill past max_num_batched_tokens."""
        seq = self._new_sequence(prompt, params)
        self.scheduler.add(seq)
        return seq.seq_id

    def _new_sequence(self, prompt: object, params: object, name: str = "prompt") -> Sequence:
        config = self.model.config
        prompt = _check_prompt(prompt, config.vocab_size, name)
        params = SamplingParams() if params is None else params
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
        total = len(prompt) + params.max_tokens
        if total > config.block_size:
            raise ValueError(f"{name} length {len(prompt)} + max_tokens {params.max_tokens} = {total} is "
                             f"past the model's block_size={config.block_size}")
        kv_tokens = total - 1  # the last sampled token is never fed back
        blocks = -(-kv_tokens // self.block_size)
        if blocks > self.block_manager.num_blocks:
            raise ValueError(f"{name} + max_tokens needs {blocks} KV blocks, the pool has "
                             f"num_blocks={self.block_manager.num_blocks}")
        if kv_tokens > self.scheduler.max_num_batched_tokens:
            raise ValueError(f"{name} + max_tokens - 1 = {kv_tokens} tokens may need one prefill step (after "
                             f"a preemption), past max_num_batched_tokens="
                             f"{self.scheduler.max_num_batched_tokens}")
        return Sequence(prompt, params, device=self.device)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished()

    def step(self) -> list[tuple[int, list[int]]]:
        """Schedule, run, postprocess -> [(request id, new token ids)] of the requests finished now."""
        seqs, is_prefill = self.scheduler.schedule()
        computed = sum(len(s) - s.num_cached_tokens for s in seqs)
        start = time.perf_counter()
        token_ids = self.runner.run(seqs, is_prefill)
        phase = "prefill" if is_prefill else "decode"
        self.stats[f"{phase}_time_s"] += time.perf_counter() - start
        self.stats[f"{phase}_tokens"] += computed
        self.stats[f"{phase}_steps"] += 1
        finished = self.scheduler.postprocess(seqs, token_ids)
        return [(s.seq_id, s.output_ids) for s in finished]

    def generate(self, prompts: list[list[int]],
                 params: SamplingParams | list[SamplingParams] | None = None) -> list[list[int]]:
        """The new token ids of each prompt, in prompt order. params: one for all prompts, or one per
        prompt (default SamplingParams(): greedy, 16 tokens). Runs steps until these requests finish.

        Raises TypeError unless prompts is a list of prompts (lists of int token ids or 1-D integer tensors)
        and each params a SamplingParams, ValueError for a params list of another length, an empty prompt, a
        token id outside the vocabulary, or a prompt + max_tokens past block_size, the KV pool or
        max_num_batched_tokens."""
        if not isinstance(prompts, (list, tuple)):
            raise TypeError(f"prompts must be a list of prompts (lists of token ids), "
                            f"got {type(prompts).__name__}")
        if isinstance(params, (list, tuple)):
            if len(params) != len(prompts):
                raise ValueError(f"params must be one SamplingParams or one per prompt ({len(prompts)}), "
                                 f"got {len(params)}")
        else:
            params = [params] * len(prompts)
        seqs = [self._new_sequence(p, sp, f"prompts[{i}]")  # all checked before any is queued
                for i, (p, sp) in enumerate(zip(prompts, params))]
        for seq in seqs:
            self.scheduler.add(seq)
        ids = [seq.seq_id for seq in seqs]
        pending = set(ids)
        while pending - self._finished.keys():
            for request_id, tokens in self.step():
                self._finished[request_id] = tokens
        return [self._finished.pop(i) for i in ids]
