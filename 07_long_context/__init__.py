"""Lesson 07: long context: sliding-window attention, chunked (FlashAttention-style) attention, and
what happens to a model's loss past the context length it was trained at."""

from llmlab.long_context.sliding_window import (
    PeakMemory,
    chunked_attention,
    loss_per_position,
    sliding_window_attention,
    sliding_window_mask,
    windowed_attention,
)

__all__ = [
    "PeakMemory",
    "chunked_attention",
    "loss_per_position",
    "sliding_window_attention",
    "sliding_window_mask",
    "windowed_attention",
]
