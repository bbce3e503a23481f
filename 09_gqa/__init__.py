"""Lesson 09: grouped-query attention (GQA), from scratch: shared K/V heads, MHA -> GQA conversion.

GroupedQueryAttention is also the attention layer of lesson 04's GPT; converting a whole GPT is lesson
04's gpt_mha_to_gqa (this lesson does not import lesson 04: no import cycle).
"""

from llmlab.gqa.gqa import (
    KERNELS,
    POOLING_METHODS,
    GroupedQueryAttention,
    grouped_attention,
    mha_to_gqa,
    pool_kv_heads,
    repeat_kv,
)

__all__ = [
    "KERNELS",
    "POOLING_METHODS",
    "GroupedQueryAttention",
    "grouped_attention",
    "mha_to_gqa",
    "pool_kv_heads",
    "repeat_kv",
]
