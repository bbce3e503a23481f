"""Lesson 15: inference stacks — a paged KV pool, a block manager with prefix caching, a continuously
batched scheduler with preemption, and an engine serving the lab GPT (the shape of vLLM / nano-vllm).

paged_attention.py: the pool and attention through block tables; block_manager.py: ref-counted blocks
and the prefix cache; scheduler.py: continuous batching; model_runner.py: the GPT over the pool;
engine.py: LLMEngine (read this one first); backends.py: one generate() for the engine, lesson 06,
transformers' generate, transformers' continuous batching and vLLM (where installed).
"""

from llmlab.inference_stacks.backends import (
    HFContinuousBatchingBackend,
    HFGenerateBackend,
    LabEngineBackend,
    Lesson06Backend,
    VLLMBackend,
)
from llmlab.inference_stacks.block_manager import Block, BlockManager
from llmlab.inference_stacks.engine import LLMEngine
from llmlab.inference_stacks.model_runner import ModelRunner
from llmlab.inference_stacks.paged_attention import (
    KVPool,
    gather_kv,
    paged_attention,
    paged_prefill_attention,
    slot_mapping,
    write_kv,
)
from llmlab.inference_stacks.scheduler import Scheduler
from llmlab.inference_stacks.sequence import SamplingParams, Sequence, SequenceStatus

__all__ = [
    "Block",
    "BlockManager",
    "HFContinuousBatchingBackend",
    "HFGenerateBackend",
    "KVPool",
    "LLMEngine",
    "LabEngineBackend",
    "Lesson06Backend",
    "ModelRunner",
    "SamplingParams",
    "Scheduler",
    "Sequence",
    "SequenceStatus",
    "VLLMBackend",
    "gather_kv",
    "paged_attention",
    "paged_prefill_attention",
    "slot_mapping",
    "write_kv",
]
