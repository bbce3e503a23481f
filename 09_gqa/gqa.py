"""Grouped-query attention: K/V heads shared by groups of query heads.

Multi-head attention gives every query head its own key and value head; grouped-query attention
(GQA) keeps n_heads query heads but only n_kv_heads key/value heads, each shared by a group of
n_rep = n_heads / n_kv_heads consecutive query heads, so the KV cache shrinks by n_rep while
quality stays close to MHA (n_kv_heads = 1 is multi-query attention, MQA).

    head h of the queries attends with K/V head  h // n_rep,   h = 0 .. n_heads - 1
    KV cache = 2 (K and V) · n_layers · n_kv_heads · head_dim · seq_len · bytes per value

An existing MHA checkpoint becomes a GQA one by mean-pooling the K and V projection heads of each
group ("uptraining" then recovers most of the lost quality with ~5% of the pretraining compute):

    W_k'[g] = mean(W_k[g·n_rep], ..., W_k[g·n_rep + n_rep - 1])        (the same for W_v and biases)

Papers: Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
Checkpoints" (2023, https://arxiv.org/abs/2305.13245); MQA: Shazeer, "Fast Transformer Decoding: One
Write-Head is All You Need" (2019, https://arxiv.org/abs/1911.02150).
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor, nn

from llmlab.attention_basics import MultiHeadAttention, causal_mask, scaled_dot_product_attention

__all__ = [
    "POOLING_METHODS",
    "GroupedQueryAttention",
    "gpt_mha_to_gqa",
    "grouped_attention",
    "mha_to_gqa",
    "pool_kv_heads",
    "repeat_kv",
]

POOLING_METHODS = ("mean", "first")


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return value


def _check_divides(n_heads: int, n_kv_heads: int, what: str = "n_heads") -> None:
    if n_heads % n_kv_heads:
        divisors = [d for d in range(1, n_heads + 1) if n_heads % d == 0]
        raise ValueError(
            f"n_kv_heads must divide {what}={n_heads} (each K/V head serves a whole group of query "
            f"heads), got n_kv_heads={n_kv_heads}; allowed: {divisors}"
        )


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


def grouped_attention(
    q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Attention of n_heads query heads against n_kv_heads shared K/V heads, without copying K and V.

    q: (B, n_heads, Tq, D); k, v: (B, n_kv_heads, Tk, D) with n_kv_heads dividing n_heads.
    mask: bool (True = may attend) or additive float, broadcastable to (B, n_heads, Tq, Tk).
    causal: top-left aligned, like lesson 03's scaled_dot_product_attention.
    Returns (out (B, n_heads, Tq, D), weights (B, n_heads, Tq, Tk)): the same numbers as
    scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), ...).

    Why fold instead of repeat: the n_rep query heads of a group all read the same K/V head, so they
    can be stacked as n_rep·Tq query rows of ONE attention against that head — MQA within each
    group. repeat_kv would copy the cache n_rep times on every decoding step and throw away the
    memory saving that GQA exists for; the fold reads each cached K/V head once.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{name} must have shape (B, heads, T, head_dim), got shape {tuple(x.shape)}")
    B, n_heads, Tq, D = q.shape
    n_kv_heads, Tk = k.shape[1], k.shape[2]
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"v must have the (B, n_kv_heads, Tk) of k {tuple(k.shape[:3])}, got shape {tuple(v.shape)}"
        )
    if k.shape[0] != B:
        raise ValueError(f"k must have the batch size of q ({B}), got shape {tuple(k.shape)}")
    if n_kv_heads == 0 or n_heads % n_kv_heads:
        raise ValueError(
            f"the K/V heads of k ({n_kv_heads}) must divide the query heads of q ({n_heads}), "
            f"got shapes q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    n_rep = n_heads // n_kv_heads
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    if causal:  # fold the causal mask into `mask` first: after the fold, row r·Tq + i is query i
        allowed = causal_mask(Tq, Tk, device=q.device)  # (Tq, Tk)
        if mask is None:
            mask = allowed
        elif isinstance(mask, Tensor) and mask.dtype == torch.bool:
            mask = mask & allowed
        elif isinstance(mask, Tensor):
            mask = mask.masked_fill(~allowed, float("-inf"))
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
        try:
            full = torch.broadcast_shapes(mask.shape, (B, n_heads, Tq, Tk))
        except RuntimeError:
            full = None
        if full != (B, n_heads, Tq, Tk):
            target = (B, n_heads, Tq, Tk)
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {target}")
        while mask.dim() < 4:
            mask = mask[None]
        mask = mask.expand(mask.shape[0], n_heads, Tq, Tk)  # (1 | B, H, Tq, Tk)
        mask = mask.reshape(mask.shape[0], n_kv_heads, n_rep * Tq, Tk)  # (1 | B, H_kv, n_rep·Tq, Tk)
    # heads h = g·n_rep + r are consecutive, so this view needs no copy of q
    q = q.reshape(B, n_kv_heads, n_rep * Tq, D)  # (B, H_kv, n_rep·Tq, D)
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask, scale=scale)  # (B, H_kv, n_rep·Tq, D)
    out = out.reshape(B, n_heads, Tq, v.shape[-1])  # (B, H, Tq, D)
    return out, weights.reshape(B, n_heads, Tq, Tk)  # (B, H, Tq, Tk)


def pool_kv_heads(weight: Tensor, n_kv_heads: int, head_dim: int, *, method: str = "mean") -> Tensor:
    """Merge the K (or V) projection heads of each group into one head.

    weight: (n_in · head_dim, d_model) projection weight or (n_in · head_dim,) bias, head-major like
    nn.Linear's output rows; n_kv_heads must divide n_in. method "mean" averages the n_in / n_kv_heads
    heads of each group (Ainslie et al. 2023); "first" keeps the first head of each group (the naive
    alternative, which throws the other heads' information away).
    Returns (n_kv_heads · head_dim, d_model) (or (n_kv_heads · head_dim,)).
    """
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    _check_positive_int("n_kv_heads", n_kv_heads)
    _check_positive_int("head_dim", head_dim)
    if method not in POOLING_METHODS:
        raise ValueError(f"method must be one of {POOLING_METHODS}, got {method!r}")
    if weight.dim() not in (1, 2) or weight.shape[0] % head_dim:
        raise ValueError(
            f"weight must be (n_heads · head_dim, d_model) or (n_heads · head_dim,) with "
            f"head_dim={head_dim}, got shape {tuple(weight.shape)}"
        )
    n_in = weight.shape[0] // head_dim
    _check_divides(n_in, n_kv_heads, what="the K/V heads of weight")
    n_rep = n_in // n_kv_heads
    grouped = weight.reshape(n_kv_heads, n_rep, head_dim, *weight.shape[1:])  # (G, n_rep, D, ...)
    pooled = grouped.mean(dim=1) if method == "mean" else grouped[:, 0]  # (G, D, ...)
    return pooled.reshape(n_kv_heads * head_dim, *weight.shape[1:]).clone()


class GroupedQueryAttention(nn.Module):
    """n_heads query heads over n_kv_heads shared K/V heads: MHA (n_kv_heads = n_heads) to MQA (1).

    Projections q_proj (d_model -> d_model), k_proj and v_proj (d_model -> n_kv_heads · head_dim),
    o_proj (d_model -> d_model), laid out like transformers' Llama attention.
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, *, bias: bool = False) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("n_heads", n_heads), ("n_kv_heads", n_kv_heads)):
            _check_positive_int(name, value)
        if d_model % n_heads:
            raise ValueError(
                f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}"
            )
        _check_divides(n_heads, n_kv_heads)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        self.n_rep = n_heads // n_kv_heads  # query heads per K/V head
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=bias)
        # the only change from MHA: n_kv_heads instead of n_heads K/V heads (and so a smaller cache)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=bias)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}"

    def forward(
        self, x: Tensor, *, causal: bool = True, mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, d_model) -> (out (B, T, d_model), weights (B, n_heads, T, T) if need_weights else None).

        mask: bool (True = may attend) or additive float, broadcastable to (B, n_heads, T, T); combined
        with the causal mask when causal=True.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (B, T, d_model={self.d_model}), got shape {tuple(x.shape)}")
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, H_kv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, H_kv, T, D)
        out, weights = grouped_attention(q, k, v, mask=mask, causal=causal)  # (B, H, T, D)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H·D): concat heads
        return self.o_proj(out), (weights if need_weights else None)


# ----------------------------------------------------------------------------------------------------
# converting a multi-head checkpoint (Ainslie et al. 2023, section 2.1)


def _heads_of(attention: nn.Module) -> tuple[int, int, int]:
    """(n_heads, n_kv_heads, head_dim) of a supported attention module."""
    from llmlab.transformer_block import CausalSelfAttention  # lesson 04 imports this module: no cycle

    if isinstance(attention, GroupedQueryAttention):
        return attention.n_heads, attention.n_kv_heads, attention.head_dim
    if isinstance(attention, MultiHeadAttention):
        return attention.n_heads, attention.n_heads, attention.head_dim
    if isinstance(attention, CausalSelfAttention):
        return attention.n_head, attention.n_kv_head, attention.head_dim
    raise TypeError(
        "attention must be a GroupedQueryAttention, lesson 03's MultiHeadAttention or the lab GPT's "
        f"CausalSelfAttention, got {type(attention).__name__}"
    )


def _check_target(n_kv_heads: object, n_kv_in: int, method: object) -> int:
    _check_positive_int("n_kv_heads", n_kv_heads)
    if n_kv_heads > n_kv_in:
        raise ValueError(f"n_kv_heads must be <= the {n_kv_in} K/V heads it is pooled from, got {n_kv_heads}")
    _check_divides(n_kv_in, n_kv_heads, what="the current K/V heads n_kv_heads_in")
    if method not in POOLING_METHODS:
        raise ValueError(f"method must be one of {POOLING_METHODS}, got {method!r}")
    return n_kv_heads


@torch.no_grad()
def mha_to_gqa(attention: nn.Module, n_kv_heads: int, *, method: str = "mean") -> nn.Module:
    """A copy of `attention` with n_kv_heads K/V heads, each pooled from a group of the current ones.

    attention: a GroupedQueryAttention or lesson 03's MultiHeadAttention (-> a GroupedQueryAttention),
    or the lab GPT's CausalSelfAttention (-> a CausalSelfAttention with config.n_kv_head = n_kv_heads).
    The query and output projections are copied unchanged; K and V are pooled with pool_kv_heads
    (method "mean", the paper's, or "first"). When the heads of each group are already identical, the
    result computes exactly the same function. The input module is not modified.
    """
    from llmlab.transformer_block import CausalSelfAttention

    n_heads, n_kv_in, head_dim = _heads_of(attention)
    _check_target(n_kv_heads, n_kv_in, method)
    if isinstance(attention, CausalSelfAttention):
        config = dataclasses.replace(attention.config, n_kv_head=n_kv_heads)
        new = CausalSelfAttention(config, attention.layer_idx)
        o_name = "o_proj"
    else:
        has_bias = attention.q_proj.bias is not None
        new = GroupedQueryAttention(attention.d_model, n_heads, n_kv_heads, bias=has_bias)
        o_name = "out_proj" if isinstance(attention, MultiHeadAttention) else "o_proj"
    weight = attention.q_proj.weight
    new = new.to(device=weight.device, dtype=weight.dtype).train(attention.training)
    for src, dst in (("q_proj", "q_proj"), (o_name, "o_proj")):
        new.get_submodule(dst).load_state_dict(attention.get_submodule(src).state_dict())
    for name in ("k_proj", "v_proj"):
        src, dst = attention.get_submodule(name), new.get_submodule(name)
        dst.weight.copy_(pool_kv_heads(src.weight, n_kv_heads, head_dim, method=method))
        if src.bias is not None:
            dst.bias.copy_(pool_kv_heads(src.bias, n_kv_heads, head_dim, method=method))
    return new


@torch.no_grad()
def gpt_mha_to_gqa(model: nn.Module, n_kv_heads: int, *, method: str = "mean") -> nn.Module:
    """A copy of a lab GPT whose every layer has n_kv_heads K/V heads (mha_to_gqa on each attention).

    Everything else (embeddings, norms, feed-forward blocks, lm_head) is copied unchanged; the input
    model is not modified. The result is an ordinary GPT with config.n_kv_head = n_kv_heads, ready
    for uptraining with llmlab.utils.train, for a KV cache, and for to_hf (Llama with
    num_key_value_heads = n_kv_heads).
    """
    from llmlab.transformer_block import GPT

    if not isinstance(model, GPT):
        raise TypeError(f"model must be a lab GPT (llmlab.transformer_block.GPT), got {type(model).__name__}")
    config = model.config
    _check_target(n_kv_heads, config.kv_heads, method)
    new = copy.deepcopy(model)  # same weights, device, dtype and mode; then swap the attention layers
    new.config = dataclasses.replace(config, n_kv_head=n_kv_heads)
    for block in new.blocks:
        block.config = new.config
        block.attn = mha_to_gqa(block.attn, n_kv_heads, method=method)
    return new
