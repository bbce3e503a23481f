"""Grouped-query attention: K/V heads shared by groups of query heads.

Multi-head attention gives every query head its own key and value head; grouped-query attention
(GQA) keeps n_head query heads but only n_kv_head key/value heads, each shared by a group of
n_rep = n_head / n_kv_head consecutive query heads, so the KV cache shrinks by n_rep while
quality stays close to MHA (n_kv_head = n_head is multi-head attention, n_kv_head = 1 is
multi-query attention, MQA).

    head h of the queries attends with K/V head  h // n_rep,   h = 0 .. n_head - 1
    KV cache = 2 (K and V) · n_layer · n_kv_head · head_dim · seq_len · bytes per value

An existing MHA checkpoint becomes a GQA one by mean-pooling the K and V projection heads of each
group ("uptraining" then recovers most of the lost quality with ~5% of the pretraining compute):

    W_k'[g] = mean(W_k[g·n_rep], ..., W_k[g·n_rep + n_rep - 1])        (the same for W_v and biases)

Papers: Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
Checkpoints" (2023, https://arxiv.org/abs/2305.13245); MQA: Shazeer, "Fast Transformer Decoding: One
Write-Head is All You Need" (2019, https://arxiv.org/abs/1911.02150).

`GroupedQueryAttention` is also the attention of the lab GPT (lesson 04): one module for MHA, GQA and
MQA, to which the model passes the mask, the rotary angles and the KV cache explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmlab.attention_basics import MultiHeadAttention, causal_mask, scaled_dot_product_attention
from llmlab.positional_embeddings import apply_rotary  # lesson 02: RoPE on queries and keys
from llmlab.utils.checks import renamed_arguments  # one name per quantity: n_head, n_kv_head
from llmlab.utils.exercises import exercise

__all__ = [
    "KERNELS",
    "POOLING_METHODS",
    "GroupedQueryAttention",
    "grouped_attention",
    "mha_to_gqa",
    "pool_kv_heads",
    "repeat_kv",
]

POOLING_METHODS = ("mean", "first")
KERNELS = ("lab", "torch")


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return value


def _positive_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


def _check_divides(n_head: int, n_kv_head: int, what: str = "n_head") -> None:
    if n_head % n_kv_head:
        divisors = [d for d in range(1, n_head + 1) if n_head % d == 0]
        raise ValueError(
            f"n_kv_head must divide {what}={n_head} (each K/V head serves a whole group of query "
            f"heads), got n_kv_head={n_kv_head}; allowed: {divisors}"
        )


@exercise(1, "n_rep == 1 returns x itself; otherwise insert a new axis after the heads, expand it to "
          "n_rep (a free view) and reshape so that the copies of one head are consecutive")
def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each K/V head n_rep times, consecutively, to line up with the query heads.

    x: (B, n_kv_head, T, head_dim) -> (B, n_kv_head * n_rep, T, head_dim); output head h is
    input head h // n_rep. Same as torch.repeat_interleave(x, n_rep, dim=1) and transformers'
    Llama repeat_kv; n_rep == 1 returns x itself (no copy).
    Raises TypeError/ValueError for an x that is not a 4-D tensor or an n_rep that is not an int >= 1.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, n_kv_head, T, head_dim), got shape {tuple(x.shape)}")
    if isinstance(n_rep, bool) or not isinstance(n_rep, int):
        raise TypeError(f"n_rep must be an int >= 1, got {type(n_rep).__name__} {n_rep!r}")
    if n_rep < 1:
        raise ValueError(f"n_rep must be an int >= 1, got {n_rep}")
    if n_rep == 1:
        return x
    B, n_kv_head, T, head_dim = x.shape
    # expand is a free view (stride 0 on the new axis); only the reshape copies memory
    x = x[:, :, None, :, :].expand(B, n_kv_head, n_rep, T, head_dim)  # (B, n_kv_head, n_rep, T, D)
    return x.reshape(B, n_kv_head * n_rep, T, head_dim)  # (B, n_kv_head * n_rep, T, D)


@exercise(5, "fold the causal mask into mask first; expand the mask to (B|1, n_head, Tq, Tk) and view "
          "it, and q, as n_kv_head groups of n_rep * Tq rows; one attention per K/V head; unfold out "
          "and weights back to n_head heads")
def grouped_attention(
    q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Attention of n_head query heads against n_kv_head shared K/V heads, without copying K and V.

    q: (B, n_head, Tq, D); k, v: (B, n_kv_head, Tk, D) with n_kv_head dividing n_head.
    mask: bool (True = may attend) or additive float, broadcastable to (B, n_head, Tq, Tk).
    causal: top-left aligned, like lesson 03's scaled_dot_product_attention.
    Returns (out (B, n_head, Tq, D), weights (B, n_head, Tq, Tk)): the same numbers as
    scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), ...).
    Raises TypeError/ValueError for tensors of the wrong type or shape, or a mask that does not broadcast.

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
    B, n_head, Tq, D = q.shape
    n_kv_head, Tk = k.shape[1], k.shape[2]
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"v must have the (B, n_kv_head, Tk) of k {tuple(k.shape[:3])}, got shape {tuple(v.shape)}"
        )
    if k.shape[0] != B:
        raise ValueError(f"k must have the batch size of q ({B}), got shape {tuple(k.shape)}")
    if n_kv_head == 0 or n_head % n_kv_head:
        raise ValueError(
            f"the K/V heads of k ({n_kv_head}) must divide the query heads of q ({n_head}), "
            f"got shapes q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    n_rep = n_head // n_kv_head
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
        try:
            full = torch.broadcast_shapes(mask.shape, (B, n_head, Tq, Tk))
        except RuntimeError:
            full = None
        if full != (B, n_head, Tq, Tk):
            target = (B, n_head, Tq, Tk)
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {target}")
    if causal:  # fold the causal mask into `mask` first: after the fold, row r·Tq + i is query i
        allowed = causal_mask(Tq, Tk, device=q.device)  # (Tq, Tk)
        if mask is None:
            mask = allowed
        elif mask.dtype == torch.bool:
            mask = mask & allowed
        else:
            mask = mask.masked_fill(~allowed, float("-inf"))
    if mask is not None:
        while mask.dim() < 4:
            mask = mask[None]
        mask = mask.expand(mask.shape[0], n_head, Tq, Tk)  # (1 | B, H, Tq, Tk)
        mask = mask.reshape(mask.shape[0], n_kv_head, n_rep * Tq, Tk)  # (1 | B, H_kv, n_rep·Tq, Tk)
    # heads h = g·n_rep + r are consecutive, so this view needs no copy of q
    q = q.reshape(B, n_kv_head, n_rep * Tq, D)  # (B, H_kv, n_rep·Tq, D)
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask, scale=scale)  # (B, H_kv, n_rep·Tq, D)
    out = out.reshape(B, n_head, Tq, v.shape[-1])  # (B, H, Tq, D)
    return out, weights.reshape(B, n_head, Tq, Tk)  # (B, H, Tq, Tk)


@exercise(2, "view the rows as (n_kv_head, n_rep, head_dim, ...): the heads of one group side by side; "
          "mean over the n_rep axis (or take the first); reshape back and return a copy, not a view")
@renamed_arguments(n_kv_heads="n_kv_head")
def pool_kv_heads(weight: Tensor, n_kv_head: int, head_dim: int, *, method: str = "mean") -> Tensor:
    """Merge the K (or V) projection heads of each group into one head.

    weight: (n_in · head_dim, d_model) projection weight or (n_in · head_dim,) bias, head-major like
    nn.Linear's output rows; n_kv_head must divide n_in. method "mean" averages the n_in / n_kv_head
    heads of each group (Ainslie et al. 2023); "first" keeps the first head of each group (the naive
    alternative, which throws the other heads' information away).
    Returns (n_kv_head · head_dim, d_model) (or (n_kv_head · head_dim,)).
    Raises TypeError/ValueError naming the argument for a bad weight, head count, head_dim or method.
    """
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    _check_positive_int("n_kv_head", n_kv_head)
    _check_positive_int("head_dim", head_dim)
    if method not in POOLING_METHODS:
        raise ValueError(f"method must be one of {POOLING_METHODS}, got {method!r}")
    if weight.dim() not in (1, 2) or weight.shape[0] % head_dim:
        raise ValueError(
            f"weight must be (n_head · head_dim, d_model) or (n_head · head_dim,) with "
            f"head_dim={head_dim}, got shape {tuple(weight.shape)}"
        )
    n_in = weight.shape[0] // head_dim
    _check_divides(n_in, n_kv_head, what="the K/V heads of weight")
    n_rep = n_in // n_kv_head
    grouped = weight.reshape(n_kv_head, n_rep, head_dim, *weight.shape[1:])  # (G, n_rep, D, ...)
    pooled = grouped.mean(dim=1) if method == "mean" else grouped[:, 0]  # (G, D, ...)
    return pooled.reshape(n_kv_head * head_dim, *weight.shape[1:]).clone()


class GroupedQueryAttention(nn.Module):
    """n_head query heads over n_kv_head shared K/V heads: MHA (n_kv_head = n_head) to MQA (1).

    Projections q_proj (d_model -> n_head · head_dim), k_proj and v_proj (d_model -> n_kv_head ·
    head_dim), o_proj (n_head · head_dim -> d_model), laid out like transformers' Llama attention.
    It is the attention of every layer of the lab GPT (lesson 04), which builds what all layers share
    once per forward pass and passes it in: the mask, the rotary angles and the KV cache.

    n_kv_head: None = n_head (plain multi-head attention).
    dropout: on the attention weights and on the output (training mode only).
    attn_scale: the factor on q·k (None = 1/sqrt(head_dim)).
    kernels: "lab" = lesson 03's scaled_dot_product_attention on repeat_kv'd keys and values; "torch" =
        F.scaled_dot_product_attention with enable_gqa (the same maths, fused; the lab path is still used
        whenever the weights are asked for).
    layer_idx: this layer's slot in a KV cache.
    Raises TypeError/ValueError naming the argument for bad sizes or options.
    """

    @renamed_arguments(n_heads="n_head", n_kv_heads="n_kv_head")
    def __init__(self, d_model: int, n_head: int, n_kv_head: int | None = None, *, bias: bool = False,
                 dropout: float = 0.0, attn_scale: float | None = None, kernels: str = "lab",
                 layer_idx: int | None = None) -> None:
        super().__init__()
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        for name, value in (("d_model", d_model), ("n_head", n_head), ("n_kv_head", n_kv_head)):
            _check_positive_int(name, value)
        if d_model % n_head:
            raise ValueError(f"d_model must be divisible by n_head, got d_model={d_model}, n_head={n_head}")
        _check_divides(n_head, n_kv_head)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if attn_scale is not None and not _positive_number(attn_scale):
            raise ValueError(f"attn_scale must be a number > 0 or None, got {attn_scale!r}")
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
        if layer_idx is not None and (isinstance(layer_idx, bool) or not isinstance(layer_idx, int)
                                      or layer_idx < 0):
            raise ValueError(f"layer_idx must be an int >= 0 or None, got {layer_idx!r}")
        self.d_model, self.n_head, self.n_kv_head = d_model, n_head, n_kv_head
        self.head_dim = d_model // n_head
        self.n_rep = n_head // n_kv_head  # query heads per K/V head
        self.dropout, self.attn_scale, self.kernels, self.layer_idx = dropout, attn_scale, kernels, layer_idx
        self.q_proj = nn.Linear(d_model, n_head * self.head_dim, bias=bias)
        # the only change from MHA: n_kv_head instead of n_head K/V heads (and so a smaller cache)
        self.k_proj = nn.Linear(d_model, n_kv_head * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_head * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(n_head * self.head_dim, d_model, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_head={self.n_head}, n_kv_head={self.n_kv_head}, "
                f"kernels={self.kernels!r}")

    @exercise(4, "project and split the heads (q: n_head, k and v: n_kv_head); rotate q and k when rope "
              "is given, then append to the cache; causal mask with the queries as the last T keys; "
              "the torch kernel with enable_gqa, or repeat_kv and lesson 03's attention; merge the "
              "heads, o_proj, dropout")
    def forward(
        self, x: Tensor, *, mask: Tensor | None = None, causal: bool = True,
        rope: tuple[Tensor, Tensor] | None = None, kv_cache=None, layer_idx: int | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, d_model) -> (out (B, T, d_model), weights (B, n_head, T, T_all) or None).

        mask: what each query may see: bool (True = may attend) or additive float (ALiBi), broadcastable
            to (B, n_head, T, T_all); it replaces the causal mask (the lab GPT builds one per forward,
            with causality, padding and windows in it). Without a mask: the causal mask when causal=True
            (the queries are the last T of the T_all keys), no mask when False.
        rope: (cos, sin), each (T, head_dim) or (B, T, head_dim), lesson 02's rotary angles of the new
            tokens' positions: queries and keys are rotated before the keys are cached, so a cached key
            keeps the rotation of its own absolute position.
        kv_cache: any object with update(layer_idx, k, v) -> (k_all, v_all) that appends the new keys
            and values, each (B, n_kv_head, T, head_dim), and returns everything cached (lesson 06).
        layer_idx: the cache slot (default: the layer_idx given at init).
        Raises TypeError/ValueError for a bad x, ValueError for a kv_cache without a layer_idx.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (B, T, d_model={self.d_model}), got shape {tuple(x.shape)}")
        B, T, _ = x.shape
        layer_idx = self.layer_idx if layer_idx is None else layer_idx
        if kv_cache is not None and layer_idx is None:
            raise ValueError("layer_idx is required with a kv_cache (the cache keeps one slot per layer)")
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, H_kv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, H_kv, T, D)
        if rope is not None:
            cos, sin = rope  # (T, D) or (B, T, D)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # shapes unchanged
        if kv_cache is not None:
            k, v = kv_cache.update(layer_idx, k, v)  # (B, H_kv, T_all, D) each: past + new
        if mask is None and causal:  # query i sits at key index T_all - T + i
            mask = causal_mask(T, k.shape[-2], offset=k.shape[-2] - T, device=x.device)  # (T, T_all)
        dropout_p = self.dropout if self.training else 0.0
        if self.kernels == "torch" and not need_weights:
            # enable_gqa reads each K/V head for its whole group in place: no copy of the cache per step
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                 scale=self.attn_scale,
                                                 enable_gqa=self.n_rep > 1)  # (B, H, T, D)
            weights = None
        else:
            k, v = repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep)  # (B, H, T_all, D): one per query head
            out, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p,
                                                        scale=self.attn_scale)  # (B, H, T, D)
        out = out.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, H·D): concat heads
        out = self.resid_dropout(self.o_proj(out))  # (B, T, d_model)
        return out, (weights if need_weights else None)


# ----------------------------------------------------------------------------------------------------
# converting a multi-head checkpoint (Ainslie et al. 2023, section 2.1)


def _check_target(n_kv_head: object, n_kv_in: int, method: object) -> int:
    _check_positive_int("n_kv_head", n_kv_head)
    if n_kv_head > n_kv_in:
        raise ValueError(f"n_kv_head must be <= the {n_kv_in} K/V heads it is pooled from, got {n_kv_head}")
    _check_divides(n_kv_in, n_kv_head, what="the current K/V heads n_kv_head_in")
    if method not in POOLING_METHODS:
        raise ValueError(f"method must be one of {POOLING_METHODS}, got {method!r}")
    return n_kv_head


@exercise(3, "build a GroupedQueryAttention of the same width, head count, bias and options on the same "
          "device, dtype and training mode; copy q_proj and the output projection; pool k_proj and "
          "v_proj (weights and biases) with pool_kv_heads")
@torch.no_grad()
@renamed_arguments(n_kv_heads="n_kv_head")
def mha_to_gqa(attention: nn.Module, n_kv_head: int, *, method: str = "mean") -> GroupedQueryAttention:
    """A GroupedQueryAttention copy of `attention` with n_kv_head K/V heads, each pooled from a group of
    the current ones.

    attention: a GroupedQueryAttention (the lab GPT's layers are these: dropout, attn_scale, kernels and
    layer_idx are kept) or lesson 03's MultiHeadAttention. The query and output projections are copied
    unchanged; K and V are pooled with pool_kv_heads (method "mean", the paper's, or "first"). When the
    heads of each group are already identical, the result computes exactly the same function. The input
    module is not modified. The whole lab GPT: lesson 04's gpt_mha_to_gqa, which calls this per layer.
    Raises TypeError for another module, ValueError for a head count that does not divide or a bad method.
    """
    if isinstance(attention, GroupedQueryAttention):
        n_kv_in, o_name = attention.n_kv_head, "o_proj"
        options = dict(dropout=attention.dropout, attn_scale=attention.attn_scale,
                       kernels=attention.kernels, layer_idx=attention.layer_idx)
    elif isinstance(attention, MultiHeadAttention):
        n_kv_in, o_name, options = attention.q_proj.out_features // attention.head_dim, "out_proj", {}
    else:
        raise TypeError("attention must be a GroupedQueryAttention (the lab GPT's layers) or lesson 03's "
                        f"MultiHeadAttention, got {type(attention).__name__}")
    _check_target(n_kv_head, n_kv_in, method)
    weight = attention.q_proj.weight
    new = GroupedQueryAttention(weight.shape[1], weight.shape[0] // attention.head_dim, n_kv_head,
                                bias=attention.q_proj.bias is not None, **options)
    new = new.to(device=weight.device, dtype=weight.dtype).train(attention.training)
    for src, dst in (("q_proj", "q_proj"), (o_name, "o_proj")):
        new.get_submodule(dst).load_state_dict(attention.get_submodule(src).state_dict())
    for name in ("k_proj", "v_proj"):
        src, dst = attention.get_submodule(name), new.get_submodule(name)
        dst.weight.copy_(pool_kv_heads(src.weight, n_kv_head, attention.head_dim, method=method))
        if src.bias is not None:
            dst.bias.copy_(pool_kv_heads(src.bias, n_kv_head, attention.head_dim, method=method))
    return new
