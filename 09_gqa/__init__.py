"""Lesson 09: grouped-query attention (GQA), from scratch."""

from llmlab.gqa.gqa import repeat_kv

__all__ = ["repeat_kv"]
