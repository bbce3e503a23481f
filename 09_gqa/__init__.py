"""Lesson 09: grouped-query attention (GQA), from scratch: shared K/V heads, MHA -> GQA conversion."""

from llmlab.gqa.gqa import (
    POOLING_METHODS,
    GroupedQueryAttention,
    gpt_mha_to_gqa,
    grouped_attention,
    mha_to_gqa,
    pool_kv_heads,
    repeat_kv,
)

__all__ = [
    "POOLING_METHODS",
    "GroupedQueryAttention",
    "gpt_mha_to_gqa",
    "grouped_attention",
    "mha_to_gqa",
    "pool_kv_heads",
    "repeat_kv",
]
