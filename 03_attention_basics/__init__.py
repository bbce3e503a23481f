"""Lesson 03 — attention basics: scaled dot-product attention and multi-head attention from scratch."""

from llmlab.attention_basics.attention import (
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
    single_query_attention,
)

__all__ = [
    "MultiHeadAttention",
    "causal_mask",
    "scaled_dot_product_attention",
    "single_query_attention",
]
