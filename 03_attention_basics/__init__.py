"""Lesson 03 — attention basics: scaled dot-product attention and multi-head attention from scratch."""

from llmlab.attention_basics.attention import (
    MultiHeadAttention,
    attention_distance,
    attention_entropy,
    attention_scale,
    causal_mask,
    head_divergence,
    jensen_shannon,
    scaled_dot_product_attention,
    single_query_attention,
)

__all__ = [
    "attention_distance",
    "head_divergence",
    "jensen_shannon",
    "attention_entropy",
    "attention_scale",
    "MultiHeadAttention",
    "causal_mask",
    "scaled_dot_product_attention",
    "single_query_attention",
]
