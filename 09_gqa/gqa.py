"""Grouped-query attention: K/V heads shared by groups of query heads.

Multi-head attention gives every query head its own key and value head; grouped-query attention
(GQA) keeps n_heads query heads but only n_kv_heads key/value heads, each shared by a group of
n_rep = n_heads / n_kv_heads consecutive query heads, so the KV cache shrinks by n_rep while
quality stays close to MHA (n_kv_heads = 1 is multi-query attention, MQA).

    head h of the queries attends with K/V head  h // n_rep,   h = 0 .. n_heads - 1

Paper: Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
Checkpoints" (2023); MQA: Shazeer, "Fast Transformer Decoding: One Write-Head is All You Need" (2019).
"""

from __future__ import annotations

import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each K/V head n_rep times, consecutively, to line up with the query heads.

    x: (B, n_kv_heads, T, head_dim) -> (B, n_kv_heads * n_rep, T, head_dim); output head h is
    input head h // n_rep. Same as torch.repeat_interleave(x, n_rep, dim=1) and transformers'
    Llama repeat_kv; n_rep == 1 returns x itself (no copy).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, n_kv_heads, T, head_dim), got shape {tuple(x.shape)}")
    if isinstance(n_rep, bool) or not isinstance(n_rep, int):
        raise TypeError(f"n_rep must be an int >= 1, got {type(n_rep).__name__} {n_rep!r}")
    if n_rep < 1:
        raise ValueError(f"n_rep must be an int >= 1, got {n_rep}")
    if n_rep == 1:
        return x
    B, n_kv_heads, T, head_dim = x.shape
    # expand is a free view (stride 0 on the new axis); only the reshape copies memory
    x = x[:, :, None, :, :].expand(B, n_kv_heads, n_rep, T, head_dim)  # (B, n_kv_heads, n_rep, T, D)
    return x.reshape(B, n_kv_heads * n_rep, T, head_dim)  # (B, n_kv_heads * n_rep, T, D)
