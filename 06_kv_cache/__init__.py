"""Lesson 06: the KV cache — preallocated, sliding-window and int8 caches, cached generation, its memory."""

from llmlab.kv_cache.cache import (
    Int8KVCache,
    KVCache,
    SlidingWindowKVCache,
    cache_for,
    dequantize_int8,
    generate,
    kv_cache_bytes,
    quantize_int8,
)

__all__ = [
    "Int8KVCache",
    "KVCache",
    "SlidingWindowKVCache",
    "cache_for",
    "dequantize_int8",
    "generate",
    "kv_cache_bytes",
    "quantize_int8",
]
