"""Lesson 02: positional encodings: sinusoidal, learned, rotary (RoPE) and ALiBi."""

from llmlab.positional_embeddings.positional_embeddings import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    apply_rope_interleaved,
    apply_rotary,
    offset_spread,
    rope_cos_sin,
    rope_frequencies,
    rope_pairing_permutation,
    rotate_half,
    similarity_vs_distance,
    sinusoidal_embeddings,
)

__all__ = [
    "offset_spread",
    "similarity_vs_distance",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "alibi_bias",
    "alibi_slopes",
    "apply_rope",
    "apply_rope_interleaved",
    "apply_rotary",
    "rope_cos_sin",
    "rope_frequencies",
    "rope_pairing_permutation",
    "rotate_half",
    "sinusoidal_embeddings",
]
