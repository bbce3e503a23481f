"""Lesson 02: positional encodings: sinusoidal, learned, rotary (RoPE) and ALiBi."""

from llmlab.positional_embeddings.positional_embeddings import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    apply_rope_interleaved,
    apply_rotary,
    rope_cos_sin,
    rope_frequencies,
    rope_pairing_permutation,
    rotate_half,
    sinusoidal_embeddings,
)

__all__ = [
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
