"""Lesson 05: sampling — temperature, top-k, top-p and min-p, each equal to transformers' logits warpers."""

from llmlab.sampling.sampler import (
    PRESETS,
    apply_temperature,
    entropy,
    filter_logits,
    kept_mass,
    min_p_filter,
    n_kept,
    sample,
    top_k_filter,
    top_p_filter,
)

__all__ = [
    "PRESETS",
    "apply_temperature",
    "entropy",
    "filter_logits",
    "kept_mass",
    "min_p_filter",
    "n_kept",
    "sample",
    "top_k_filter",
    "top_p_filter",
]
