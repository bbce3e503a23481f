"""The lab GPT: a decoder-only transformer, one configurable model for every later lesson.

A GPT turns token ids into vectors, lets every position read the earlier positions (causal
self-attention) and think about what it read (a per-token MLP), n_layer times, each time adding the
result to a running "residual stream"; a final linear layer reads the next-token logits off that stream.

    x_0 = E[idx] (+ P[pos])                                  token (+ absolute position) embedding
    x_l = x_{l-1} + Attn(Norm(x_{l-1}))                      pre-norm block, l = 1..n_layer
    x_l = x_l + FFN(Norm(x_l))
    logits = Norm(x_L) W_out^T                               W_out tied to E (GPT-2) or separate (Llama)
    Attn(x) = softmax(Q K^T / sqrt(head_dim) + M) V,  Q = x W_q, K = x W_k, V = x W_v   (per head)

Papers: Vaswani et al. 2017, "Attention Is All You Need" (the block, post-norm); Radford et al. 2019,
"Language Models are Unsupervised Multitask Learners" (GPT-2: pre-norm, learned positions, GELU,
scaled residual init); Touvron et al. 2023, "LLaMA" (RMSNorm, SwiGLU, RoPE, no biases).

The parts come from the lessons that teach them: positions from lesson 02, attention from lesson 03,
grouped K/V heads from lesson 09 and norms/feed-forward blocks from lesson 10. `GPTConfig` switches
between GPT-2 and Llama (and the ablations the demos break things with); `to_hf`/`from_hf` convert to
and from transformers' `GPT2LMHeadModel` / `LlamaForCausalLM` with identical logits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmlab.attention_basics import causal_mask, scaled_dot_product_attention
from llmlab.gqa import repeat_kv  # lesson 09: K/V heads shared by groups of query heads
from llmlab.moe import MoELayer  # lesson 08: the mixture-of-experts FFN (it does not import this module)
from llmlab.normalization import (  # lesson 10: norms and feed-forward blocks
    ACTIVATIONS,
    NORMS,
    FeedForward,
    ffn_hidden_size,
    make_norm,
)
from llmlab.positional_embeddings import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    alibi_bias,
    apply_rotary,
    sinusoidal_embeddings,
)
from llmlab.sampling import filter_logits, sample  # lesson 05: in float32 whatever the model's dtype
from llmlab.utils.losses import cross_entropy as lab_cross_entropy  # 00_utils: the loss from scratch

__all__ = [
    "GPT",
    "CausalSelfAttention",
    "GPTConfig",
    "GPTTrace",
    "TransformerBlock",
    "attention_maps",
    "from_hf",
    "gpt2_config",
    "llama_config",
    "logit_lens",
    "residual_norms",
    "to_hf",
]

POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")
KERNELS = ("lab", "torch")
INITS = ("fan_in", "gpt2")
# bump when a change to the model code changes what the same config and seed train into (2: the
# width-aware "fan_in" init and sqrt(d_model)-scaled embeddings for sinusoidal positions): cached
# trained models (DESIGN §4) are keyed by it through GPTConfig.cache_key()
MODEL_VERSION = 2


# ----------------------------------------------------------------------------------------------------
# configuration


def _check_int(name: str, value: object, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r} of type {type(value).__name__}")


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _check_positive_float(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {value!r} of type {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


@dataclass
class GPTConfig:
    """Everything that defines the architecture. Defaults: a GPT-2-style model small enough for a CPU.

    n_kv_head: key/value heads (None = n_head, plain multi-head attention; 1 = multi-query).
    d_ff: hidden width of the feed-forward block (None = the width with the parameter count of a
        4·d_model MLP: 4·d_model for plain activations, ffn_hidden_size(4·d_model, ...) ~ 8/3·d_model
        for the gated swiglu/geglu, Llama's rule).
    pos: "learned" (GPT-2) and "sinusoidal" (Vaswani) add a vector to the embeddings; "rope" (Llama)
        rotates queries and keys; "alibi" biases the attention scores; "none" relies on the causal
        mask alone.
    prenorm: x + f(norm(x)) (GPT-2, Llama) instead of norm(x + f(x)) (Vaswani 2017).
    residual: False drops the "x +" of both sub-layers (an ablation: deep stacks stop training).
    bias: biases in every linear layer and LayerNorm (GPT-2: True, Llama: False).
    kernels: "lab" = the from-scratch code of lessons 03 and 10 everywhere (lesson 03's
        scaled_dot_product_attention, lesson 10's norm and activation formulas); "torch" = the same
        maths through torch's fused kernels (F.scaled_dot_product_attention, F.layer_norm, F.rms_norm,
        F.gelu, F.silu): ~1.5-2x faster training on CPU. The tests prove both compute the same function;
        the lab attention is still used whenever attention weights are asked for.
    causal: False removes the causal mask (lesson 03's --no-mask ablation: every position sees the
        future, so next-token training "cheats"; generation, which has no future, then fails).
    sliding_window: each query sees only its `sliding_window` most recent keys, itself included
        (Mistral's `sliding_window`, lesson 07); None = the whole causal context. Needs causal=True.
    attn_scale: the factor on q·k (None = 1/sqrt(head_dim); lesson 03's --no-scale passes 1.0).
    init: "fan_in" (default) = every weight N(0, 1/fan_in) (LeCun et al. 1998, "Efficient BackProp"), the
        embeddings N(0, 1/d_model) so that tied logits start at unit variance, and the projections that
        write into the residual stream (o_proj, down_proj) further scaled by 1/sqrt(2·n_layer) (GPT-2);
        "gpt2" = GPT-2's constant N(0, 0.02) (with the same residual scaling), which at d_model 64 makes
        the product of a gated FFN (SwiGLU) second order at the start (lesson 10 measures it).
    scale_embeddings: multiply the token embeddings by sqrt(d_model) before adding positions (Vaswani et
        al. 2017, §3.4); None = only for pos="sinusoidal", whose table entries are O(1) and would swamp
        unscaled N(0, 1/d_model) embeddings.
    n_experts: 0 = a dense FFN; > 0 = lesson 08's MoELayer with n_experts experts of width ffn_dim each,
        moe_top_k of them per token, at most moe_capacity_factor · fair share per expert (None: no limit).
        In training mode, GPT.forward adds moe_aux_loss_coef · sum over layers of the load-balancing loss
        and moe_z_loss_coef · sum of the router z-losses to the cross-entropy it returns (eval: pure CE).
    The None defaults are resolved by the properties `kv_heads` and `ffn_dim`, not in place, so that
    dataclasses.replace(config, d_model=256) gets the new default d_ff.
    """

    vocab_size: int = 256
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None
    d_model: int = 128
    d_ff: int | None = None
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    activation: str = "gelu_tanh"
    pos: str = "learned"
    rope_base: float = 10000.0
    prenorm: bool = True
    residual: bool = True
    bias: bool = True
    dropout: float = 0.0
    tie_embeddings: bool = True
    # measured on a 2-core CPU at the default size (B=8, T=128): the torch kernel made the whole model
    # 1.4x (forward+backward) to 1.6x (forward) faster than the lab attention, hence the default
    kernels: str = "torch"
    causal: bool = True
    sliding_window: int | None = None
    attn_scale: float | None = None
    init: str = "fan_in"
    scale_embeddings: bool | None = None
    # Lesson 08 (mixture of experts): its layer is built in TransformerBlock.make_ffn and its auxiliary
    # losses are added in GPT.forward; nothing else in the model needs to change.
    n_experts: int = 0
    moe_top_k: int = 2
    moe_capacity_factor: float | None = None
    moe_aux_loss_coef: float = 0.01  # Switch Transformer's alpha = 1e-2
    moe_z_loss_coef: float = 0.0  # ST-MoE uses 1e-3

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            _check_int(name, getattr(self, name))
        if self.n_kv_head is not None:
            _check_int("n_kv_head", self.n_kv_head)
        if self.d_ff is not None:
            _check_int("d_ff", self.d_ff)
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model must be divisible by n_head (each head gets d_model / n_head channels), "
                f"got d_model={self.d_model}, n_head={self.n_head}"
            )
        if self.n_head % self.kv_heads:
            raise ValueError(
                f"n_head must be a multiple of n_kv_head (each K/V head serves a whole group of query "
                f"heads), got n_head={self.n_head}, n_kv_head={self.n_kv_head}"
            )
        _check_choice("norm", self.norm, NORMS)
        _check_positive_float("norm_eps", self.norm_eps)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("pos", self.pos, POSITIONS)
        _check_positive_float("rope_base", self.rope_base)
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError(
                f"pos='rope' rotates pairs of dimensions, so head_dim = d_model / n_head must be even, "
                f"got head_dim={self.head_dim} (d_model={self.d_model}, n_head={self.n_head})"
            )
        if self.pos == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"pos='sinusoidal' needs an even d_model (sin/cos pairs), got {self.d_model}")
        for name in ("prenorm", "residual", "bias", "tie_embeddings"):
            _check_bool(name, getattr(self, name))
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real):
            raise TypeError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        _check_choice("kernels", self.kernels, KERNELS)
        _check_bool("causal", self.causal)
        if self.sliding_window is not None:
            _check_int("sliding_window", self.sliding_window)
            if not self.causal:
                raise ValueError("sliding_window needs causal=True (a window of the most recent keys)")
        if self.attn_scale is not None:
            _check_positive_float("attn_scale", self.attn_scale)
        _check_choice("init", self.init, INITS)
        if self.scale_embeddings is not None:
            _check_bool("scale_embeddings", self.scale_embeddings)
        _check_int("n_experts", self.n_experts, minimum=0)
        _check_int("moe_top_k", self.moe_top_k)
        if self.n_experts and self.moe_top_k > self.n_experts:
            raise ValueError(f"moe_top_k must be in [1, n_experts={self.n_experts}], got {self.moe_top_k}")
        if self.moe_capacity_factor is not None:
            _check_positive_float("moe_capacity_factor", self.moe_capacity_factor)
        for name in ("moe_aux_loss_coef", "moe_z_loss_coef"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a number >= 0, got {value!r} of type {type(value).__name__}")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    def cache_key(self) -> dict:
        """The fields that differ from GPTConfig's defaults, and MODEL_VERSION: a key for cached trained
        models that stays valid when a later lesson adds a field (with a default that keeps the old
        behaviour) and changes when the model code changes what a config trains into."""
        defaults = GPTConfig()
        key = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if getattr(self, f.name) != getattr(defaults, f.name)}
        return {**key, "model_version": MODEL_VERSION}

    @property
    def embedding_scale(self) -> float:
        """The factor on the token embeddings: sqrt(d_model) when scale_embeddings (None: for sinusoidal)."""
        scale = self.pos == "sinusoidal" if self.scale_embeddings is None else self.scale_embeddings
        return math.sqrt(self.d_model) if scale else 1.0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads: n_kv_head, or n_head when n_kv_head is None."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def ffn_dim(self) -> int:
        """The feed-forward hidden width: d_ff, or the width matching a 4·d_model MLP when d_ff is None."""
        return self.d_ff if self.d_ff is not None else ffn_hidden_size(4 * self.d_model, self.activation)


_CPU_DEFAULTS = dict(vocab_size=256, block_size=128, n_layer=4, n_head=4, d_model=128)


def gpt2_config(**overrides) -> GPTConfig:
    """GPT-2's recipe (pre-norm LayerNorm eps 1e-5, tanh-GELU MLP, learned positions, biases, tied
    embeddings) at a CPU-sized default scale; any field can be overridden."""
    fields = dict(
        _CPU_DEFAULTS, norm="layernorm", norm_eps=1e-5, activation="gelu_tanh", pos="learned",
        prenorm=True, residual=True, bias=True, tie_embeddings=True,
    )
    return GPTConfig(**{**fields, **overrides})


def llama_config(**overrides) -> GPTConfig:
    """Llama's recipe (pre-norm RMSNorm eps 1e-6 = LlamaConfig's rms_norm_eps, SwiGLU, RoPE base 10000,
    no biases, untied output layer) at a CPU-sized default scale; any field can be overridden."""
    fields = dict(
        _CPU_DEFAULTS, norm="rmsnorm", norm_eps=1e-6, activation="swiglu", pos="rope", rope_base=10000.0,
        prenorm=True, residual=True, bias=False, tie_embeddings=False,
    )
    return GPTConfig(**{**fields, **overrides})


# ----------------------------------------------------------------------------------------------------
# the model


def build_attention_mask(config: GPTConfig, Tq: int, Tk: int, *, attention_mask: Tensor | None = None,
                         attn_mask: Tensor | None = None, device=None,
                         dtype: torch.dtype = torch.float32) -> Tensor:
    """What each of Tq new queries may see of Tk keys; the GPT builds it once per forward for every layer.

    The queries are the LAST Tq of the Tk tokens (bottom-right alignment: query i sits at key index
    Tk - Tq + i; with a KV cache Tq < Tk).
    - attn_mask: bool (Tq, Tk) or (B, Tq, Tk), True = may attend, replaces the causal mask (prefix LM,
      lesson 11). Otherwise the causal mask (all ones when config.causal is False), cut to the
      `config.sliding_window` most recent keys.
    - attention_mask: (B, Tk) with 1 = token, 0 = left padding (transformers' convention): padded keys
      are hidden from every query; a padded query sees only itself (its output is never used, but a row
      with nothing to attend would be NaN).
    - pos="alibi": the additive distance bias (n_head, Tq, Tk) with -inf wherever the mask says no.
    Returns bool (Tq, Tk) or (B, 1, Tq, Tk), or for ALiBi float (n_head, Tq, Tk) or (B, n_head, Tq, Tk),
    broadcastable against the scores (B, n_head, Tq, Tk). Reads nothing back from the device.
    """
    offset = Tk - Tq  # how many keys precede the first query
    if attn_mask is not None:
        mask = attn_mask.to(device=device, dtype=torch.bool)  # (Tq, Tk) or (B, Tq, Tk)
    elif config.causal:
        mask = causal_mask(Tq, Tk, offset=offset, device=device)  # (Tq, Tk): key j <= query position
        if config.sliding_window is not None:  # ... and key j > query position - window
            mask = mask & ~causal_mask(Tq, Tk, offset=offset - config.sliding_window, device=device)
    else:  # the --no-mask ablation: every query sees every key
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=device)
    if attention_mask is not None:
        keys = attention_mask[:, -Tk:].to(device=device, dtype=torch.bool)  # (B, Tk): real tokens
        query_at = torch.arange(Tq, device=device) + offset  # (Tq,): each query's own key index
        own = torch.arange(Tk, device=device) == query_at[:, None]  # (Tq, Tk)
        mask = (mask & keys[:, None, :]) | own  # (B, Tq, Tk)
    if mask.dim() == 3:
        mask = mask[:, None]  # (B, 1, Tq, Tk): the same for every head
    if config.pos == "alibi":
        bias = alibi_bias(config.n_head, Tk, query_len=Tq, causal=False, dtype=dtype, device=device)
        return bias.masked_fill(~mask, float("-inf"))  # (n_head, Tq, Tk) or (B, n_head, Tq, Tk)
    return mask


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with n_kv_head <= n_head K/V heads, RoPE/ALiBi optional.

    forward(x, *, mask, rope, kv_cache) takes what is the same for every layer from the GPT, which builds
    it once per forward pass: the mask (build_attention_mask), the rotary angles `rope` = (cos, sin) of
    the new tokens' positions, and the KV cache, any object with `update(layer_idx, k, v) -> (k_all,
    v_all)` that appends the new keys/values, each (B, n_kv_head, T_new, head_dim), and returns
    everything cached so far. RoPE rotates each key once, at its absolute position, before it is cached.
    """

    def __init__(self, config: GPTConfig, layer_idx: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        C = config.d_model
        self.q_proj = nn.Linear(C, self.n_head * self.head_dim, bias=config.bias)
        # fewer K/V heads (GQA) shrink these two projections and the KV cache by n_head / n_kv_head
        self.k_proj = nn.Linear(C, self.n_kv_head * self.head_dim, bias=config.bias)
        self.v_proj = nn.Linear(C, self.n_kv_head * self.head_dim, bias=config.bias)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, C, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
        kv_cache=None,
        layer_idx: int | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, d_model) -> (out (B, T, d_model), weights (B, n_head, T, T_all) or None).

        mask: see build_attention_mask (default: the config's mask for a sequence without padding).
        rope: (cos, sin), each (T, head_dim) or (B, T, head_dim), required when pos='rope'.
        layer_idx: the cache slot (default: the layer_idx given at init).
        Raises ValueError for a bad x, a missing rope or a kv_cache without a layer_idx.
        """
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.config.d_model:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, T, d_model={self.config.d_model}), got {shape}")
        B, T, _ = x.shape
        layer_idx = self.layer_idx if layer_idx is None else layer_idx
        if kv_cache is not None and layer_idx is None:
            raise ValueError("layer_idx is required with a kv_cache (the cache keeps one slot per layer)")
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, H_kv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, H_kv, T, D)

        if self.config.pos == "rope":
            if rope is None:
                raise ValueError("rope=(cos, sin) is required when pos='rope' (GPT.forward builds it once "
                                 "per pass from its RotaryEmbedding)")
            cos, sin = rope  # (T, D) or (B, T, D)
            # rotate before caching: a cached key keeps the rotation of its own absolute position
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # shapes unchanged

        if kv_cache is not None:
            k, v = kv_cache.update(layer_idx, k, v)  # (B, H_kv, T_all, D) each, past + new
        if mask is None:  # used on its own: the config's mask, queries = the last T of the T_all keys
            mask = build_attention_mask(self.config, T, k.shape[-2], device=x.device, dtype=q.dtype)
        dropout_p = self.config.dropout if self.training else 0.0
        n_rep = self.n_head // self.n_kv_head
        if self.config.kernels == "torch" and not return_weights:
            # enable_gqa reads each K/V head for its whole group in place: no copy of the cache per step
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                 scale=self.config.attn_scale,
                                                 enable_gqa=n_rep > 1)  # (B, H, T, D)
            weights = None
        else:
            k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, T_all, D): one K/V head per query head
            out, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p,
                                                        scale=self.config.attn_scale)
        out = out.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, H*D): concat heads
        out = self.resid_dropout(self.o_proj(out))  # (B, T, d_model)
        return out, (weights if return_weights else None)


class TransformerBlock(nn.Module):
    """One layer: attention (tokens talk to each other), then a feed-forward block (each token thinks).

    pre-norm (GPT-2, Llama):    x = x + attn(norm1(x));   x = x + ffn(norm2(x))
    post-norm (Vaswani 2017):   x = norm1(x + attn(x));   x = norm2(x + ffn(x))
    residual=False drops the "x +" (the ablation of lesson 04's demo).
    """

    def __init__(self, config: GPTConfig, layer_idx: int = 0) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        _check_int("layer_idx", layer_idx, minimum=0)
        self.config = config
        self.layer_idx = layer_idx
        self.norm1 = make_norm(config.norm, config.d_model, eps=config.norm_eps, bias=config.bias,
                               fused=config.kernels == "torch")
        self.attn = CausalSelfAttention(config, layer_idx)
        self.norm2 = make_norm(config.norm, config.d_model, eps=config.norm_eps, bias=config.bias,
                               fused=config.kernels == "torch")
        self.ffn = self.make_ffn(config)

    def make_ffn(self, config: GPTConfig) -> nn.Module:
        """The per-token feed-forward block: the one place where the FFN is chosen (lesson 08 returns a
        mixture-of-experts layer here when n_experts > 0)."""
        if config.n_experts > 0:
            return MoELayer(config.d_model, config.ffn_dim, config.n_experts, config.moe_top_k,
                            capacity_factor=config.moe_capacity_factor, activation=config.activation,
                            bias=config.bias, dropout=config.dropout, fused=config.kernels == "torch")
        return FeedForward(config.d_model, config.ffn_dim, config.activation, bias=config.bias,
                           dropout=config.dropout, fused=config.kernels == "torch")

    def forward(
        self, x: Tensor, *, mask: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None,
        kv_cache=None, return_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, d_model) -> (x (B, T, d_model), attention weights (B, H, T, T_all) or None).

        mask, rope, kv_cache: passed to the attention (see CausalSelfAttention.forward).
        """
        cache_args = dict(mask=mask, rope=rope, kv_cache=kv_cache, return_weights=return_weights)
        if self.config.prenorm:
            h, weights = self.attn(self.norm1(x), **cache_args)
            x = self.add(x, h)
            x = self.add(x, self.ffn(self.norm2(x)))
        else:
            h, weights = self.attn(x, **cache_args)
            x = self.norm1(self.add(x, h))
            x = self.norm2(self.add(x, self.ffn(x)))
        return x, weights

    def add(self, x: Tensor, h: Tensor) -> Tensor:
        """The residual connection x + h: a sub-layer only adds a correction to the stream, and the
        gradient reaches early layers through the "+" unchanged. residual=False keeps h alone."""
        return x + h if self.config.residual else h


@dataclass
class GPTTrace:
    """What GPT.forward records on request. hidden: n_layer + 1 residual streams (B, T, d_model), after
    the embeddings and after each block; attn: n_layer attention weights (B, n_head, T, T_all)."""

    hidden: list[Tensor] | None = None
    attn: list[Tensor] | None = None


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off and no autograd inside; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


class GPT(nn.Module):
    """The decoder: embeddings, n_layer TransformerBlocks, a final norm and the output layer (lm_head).

    Context length rule: positions 0..block_size-1 always work. Learned positions have no vector past
    block_size - 1, so longer inputs raise. The other encodings can be *evaluated* past block_size
    (extrapolation, lessons 02 and 07) but only on request, with forward(..., allow_longer=True);
    otherwise a too-long input raises too. Nothing is ever truncated silently.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = LearnedPositionalEmbedding(config.block_size, config.d_model) \
            if config.pos == "learned" else None
        if config.pos == "sinusoidal":  # fixed, not trained: a buffer, not in the state_dict
            self.register_buffer("pos_table", sinusoidal_embeddings(config.block_size, config.d_model),
                                 persistent=False)
        # RoPE: one table of angles for every layer, looked up once per forward pass
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_base, cache_len=config.block_size) \
            if config.pos == "rope" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(config, i) for i in range(config.n_layer))
        # post-norm blocks already end in a norm; pre-norm leaves the stream unnormalised, so norm it
        final_norm = config.norm if config.prenorm else "none"
        self.norm_f = make_norm(final_norm, config.d_model, eps=config.norm_eps, bias=config.bias,
                                fused=config.kernels == "torch")
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            # one matrix reads tokens in and writes logits out (Press & Wolf 2017): saves vocab·d_model
            self.lm_head.weight = self.tok_emb.weight
        self._init_weights()

    def _init_weights(self) -> None:
        """Biases 0, norms 1, weights normal with the std of config.init:
        "fan_in": 1/sqrt(fan_in) for a linear layer, 1/sqrt(d_model) for the embeddings (a unit-variance
            input keeps unit variance through every layer, whatever the width);
        "gpt2": 0.02 everywhere (GPT-2's constant, tuned for d_model 768).
        The projections that write into the residual stream (o_proj, down_proj) get std/sqrt(2·n_layer):
        2·n_layer of them add up, and the scale keeps the stream's variance from growing with depth.
        """
        fan_in = self.config.init == "fan_in"
        embeddings = [m.weight for m in self.modules() if isinstance(m, nn.Embedding)]
        if self.pos_emb is not None:
            embeddings.append(self.pos_emb.weight)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                std = module.in_features ** -0.5 if fan_in else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for weight in embeddings:  # after the linears: a tied lm_head is the token embedding
            nn.init.normal_(weight, mean=0.0, std=self.config.d_model ** -0.5 if fan_in else 0.02)
        depth = 1 / math.sqrt(2 * self.config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                std = param.shape[1] ** -0.5 if fan_in else 0.02
                nn.init.normal_(param, mean=0.0, std=std * depth)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Scalar parameters (tied matrices once). non_embedding=True leaves out the token embedding, the
        learned position table and an untied output layer: the N of Kaplan et al.'s scaling laws."""
        _check_bool("non_embedding", non_embedding)
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def _check_idx(self, idx: object, validate: bool = True) -> Tensor:
        if not isinstance(idx, Tensor):
            raise TypeError(f"idx must be a tensor of token ids (B, T), got {type(idx).__name__}")
        if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex():
            raise TypeError(f"idx must hold integer token ids, got dtype {idx.dtype}")
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"idx must have shape (B, T) with T >= 1, got {tuple(idx.shape)}")
        if validate:
            low, high = torch.stack(torch.aminmax(idx)).tolist()  # one read of the ids back to the host
            if low < 0 or high >= self.config.vocab_size:
                bad = low if low < 0 else high
                raise ValueError(f"idx holds token id {bad}, outside vocab_size "
                                 f"0..{self.config.vocab_size - 1}")
        return idx

    def _positions(self, idx: Tensor, positions: Tensor | None, attention_mask: Tensor | None, start: int,
                   allow_longer: bool) -> tuple[Tensor, int]:
        """The absolute positions of the T new tokens, (T,) or (B, T), and the largest one as a host int.

        By default the tokens sit at start..start+T-1 (start = tokens already in the KV cache), counted
        from each row's first real token when there is left padding; these are known on the host, so
        nothing is read back from the device. Explicit positions are checked (one read).
        """
        B, T = idx.shape
        if positions is None:
            if attention_mask is not None:  # left padding: count only the real tokens before each one
                counted = attention_mask.long().cumsum(dim=-1) - 1  # (B, start + T)
                positions = counted[:, start:].clamp(min=0)  # (B, T); padding sits at 0, never used
            else:
                positions = torch.arange(start, start + T, device=idx.device)  # (T,)
            last = start + T - 1  # the largest position (an upper bound with padding)
        else:
            integer = isinstance(positions, Tensor) and not positions.is_floating_point()
            if not integer or positions.dtype == torch.bool or positions.is_complex():
                raise TypeError(f"positions must be an integer tensor of shape (T,) or (B, T), "
                                f"got {positions!r}")
            if positions.shape not in ((T,), (B, T)):
                raise ValueError(f"positions must have shape (T,) = ({T},) or (B, T) = ({B}, {T}), "
                                 f"got {tuple(positions.shape)}")
            low, last = torch.stack(torch.aminmax(positions)).tolist()  # one read
            if low < 0:
                raise ValueError(f"positions must be >= 0, got {low}")
            positions = positions.to(idx.device)
        if last >= self.config.block_size:
            if self.config.pos == "learned":
                raise ValueError(
                    f"position {last} is past block_size={self.config.block_size}: learned positions only "
                    f"exist for 0..{self.config.block_size - 1}; feed at most block_size tokens"
                )
            if not allow_longer:
                raise ValueError(
                    f"position {last} is past block_size={self.config.block_size} (the training context); "
                    f"pass allow_longer=True to evaluate pos={self.config.pos!r} beyond it"
                )
        return positions, last

    def _absolute_positions(self, positions: Tensor, last: int) -> Tensor | None:
        """The vectors added to the token embeddings, (T, d_model) or (B, T, d_model), or None (rope etc.)."""
        if self.config.pos == "learned":
            return self.pos_emb(positions, max_position=last)  # (T, d_model) or (B, T, d_model)
        if self.config.pos == "sinusoidal":
            table = self.pos_table
            if last >= table.shape[0]:  # beyond block_size (allow_longer): extend the table
                table = sinusoidal_embeddings(last + 1, self.config.d_model, dtype=table.dtype,
                                              device=table.device)
            return table[positions]  # (T, d_model) or (B, T, d_model)
        return None

    def _check_masks(self, attention_mask: object, attn_mask: object, B: int, T: int, start: int,
                     kv_cache) -> None:
        if attention_mask is not None:
            if not isinstance(attention_mask, Tensor) or attention_mask.shape != (B, start + T):
                shape = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) \
                    else type(attention_mask).__name__
                raise ValueError(f"attention_mask must have shape (B, cached + T) = ({B}, {start + T}) "
                                 f"(1 = token, 0 = left padding), got {shape}")
            if kv_cache is not None and kv_cache.attended_length(T) < start + T:
                raise ValueError("attention_mask (left padding) cannot be combined with a sliding-window "
                                 "cache: its ring buffer reorders the keys")
        if attn_mask is not None:
            if kv_cache is not None:
                raise ValueError("attn_mask replaces the causal mask of a whole sequence: pass it without "
                                 "a kv_cache")
            if not isinstance(attn_mask, Tensor) or attn_mask.dtype != torch.bool \
                    or attn_mask.shape not in ((T, T), (B, T, T)):
                what = f"{attn_mask.dtype} {tuple(attn_mask.shape)}" if isinstance(attn_mask, Tensor) \
                    else type(attn_mask).__name__
                raise ValueError(f"attn_mask must be a bool tensor (T, T) = ({T}, {T}) or (B, T, T) "
                                 f"(True = may attend), got {what}")

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        positions: Tensor | None = None,
        attention_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        kv_cache=None,
        allow_longer: bool = False,
        validate: bool = True,
        return_hidden: bool = False,
        return_attn: bool = False,
    ) -> tuple[Tensor, Tensor | None] | tuple[Tensor, Tensor | None, GPTTrace]:
        """idx: (B, T) token ids -> (logits (B, T, vocab_size), loss or None).

        targets: (B, T) next-token ids; loss = mean cross-entropy over the targets != -100.
        positions: (T,) or (B, T) absolute positions (default: 0..T-1 after the tokens already in
            kv_cache, counted from each row's first real token when attention_mask is given).
        attention_mask: (B, cached + T), 1 = token, 0 = left padding: a padded batch computes what each
            row computes alone (lesson 06's generate batches prompts of different lengths with it).
        attn_mask: bool (T, T) or (B, T, T), True = may attend: replaces the causal mask (prefix LM,
            sliding windows); ALiBi keeps its distance bias. Not with a kv_cache.
        kv_cache: a lesson 06 cache (update(layer_idx, k, v), length, attended_length(T_new)).
        allow_longer: let rope/alibi/sinusoidal/none run past block_size (see the class docstring).
        validate: check the token ids (and explicit positions) against vocab_size and the context: one
            read of the tensor back to the host. Lesson 06's decode steps pass False for the tokens they
            sampled themselves, so a decode step never waits on the device (DESIGN §7: validate at the
            boundary). Shapes and dtypes are always checked.
        return_hidden / return_attn: also return a GPTTrace, as (logits, loss, trace).
        Raises TypeError/ValueError naming the argument for bad input.
        """
        for name, flag in (("allow_longer", allow_longer), ("validate", validate),
                           ("return_hidden", return_hidden), ("return_attn", return_attn)):
            _check_bool(name, flag)
        idx = self._check_idx(idx, validate)
        B, T = idx.shape
        cache_api = ("update", "length", "attended_length")
        if kv_cache is not None and not all(hasattr(kv_cache, name) for name in cache_api):
            raise TypeError("kv_cache needs update(layer_idx, k, v), length and attended_length(T_new) "
                            f"(a lesson 06 KVCache), got {type(kv_cache).__name__}")
        start = kv_cache.length if kv_cache is not None else 0  # tokens already cached (a host int)
        self._check_masks(attention_mask, attn_mask, B, T, start, kv_cache)
        positions, last = self._positions(idx, positions, attention_mask, start, allow_longer)

        x = self.tok_emb(idx)  # (B, T, d_model)
        if self.config.embedding_scale != 1.0:
            x = x * self.config.embedding_scale  # Vaswani et al.: embeddings on the scale of the positions
        pos_vectors = self._absolute_positions(positions, last)  # (T or B·T, d_model) or None
        if pos_vectors is not None:
            x = x + pos_vectors  # (B, T, d_model), broadcast over the batch
        x = self.drop(x)

        # what every layer shares, built once per pass: the mask and the rotary angles
        Tk = kv_cache.attended_length(T) if kv_cache is not None else T  # keys each layer will attend
        mask = build_attention_mask(self.config, T, Tk, attention_mask=attention_mask, attn_mask=attn_mask,
                                    device=idx.device, dtype=x.dtype)
        rope = self.rotary(positions, max_position=last) if self.rotary is not None else None

        trace = GPTTrace(hidden=[x] if return_hidden else None, attn=[] if return_attn else None)
        for block in self.blocks:
            x, weights = block(x, mask=mask, rope=rope, kv_cache=kv_cache, return_weights=return_attn)
            if return_hidden:
                trace.hidden.append(x)
            if return_attn:
                trace.attn.append(weights)

        logits = self.lm_head(self.norm_f(x))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            if not isinstance(targets, Tensor) or targets.shape != idx.shape:
                shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {shape}")
            ce = F.cross_entropy if self.config.kernels == "torch" else lab_cross_entropy
            loss = ce(logits.reshape(B * T, -1), targets.reshape(B * T), ignore_index=-100)
            if self.training and self.config.n_experts > 0:  # lesson 08: keep the routers balanced
                loss = loss + self.moe_aux_loss()
        if return_hidden or return_attn:
            return logits, loss, trace
        return logits, loss

    def moe_aux_loss(self) -> Tensor:
        """moe_aux_loss_coef · sum of the layers' load-balancing losses + moe_z_loss_coef · sum of their
        router z-losses, from the last forward (a 0-d tensor; 0 for a dense model)."""
        total = self.tok_emb.weight.new_zeros(())
        for block in self.blocks:
            if isinstance(block.ffn, MoELayer) and block.ffn.last_aux_loss is not None:
                total = total + self.config.moe_aux_loss_coef * block.ffn.last_aux_loss
                total = total + self.config.moe_z_loss_coef * block.ffn.last_z_loss
        return total

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Append max_new_tokens sampled tokens to idx (B, T) -> (B, T + max_new_tokens).

        The minimal loop (lesson 05 teaches sampling, lesson 06 the cache that makes this fast): recompute
        the whole context for every token; the model sees at most the last block_size tokens (a sliding
        window, so generation can go on past the context). temperature 0 = greedy (argmax).
        Runs in eval mode (dropout off) and restores the model's mode afterwards.
        """
        self._check_idx(idx)
        _check_int("max_new_tokens", max_new_tokens, minimum=0)
        filter_logits(torch.zeros(1, 2), temperature=temperature, top_k=top_k)  # checks the knobs, no draw
        with _eval_mode(self):
            for _ in range(max_new_tokens):
                context = idx[:, -self.config.block_size :]  # (B, <= block_size)
                logits, _ = self(context, validate=False)  # (B, T, vocab_size)
                # lesson 05's sampler: temperature and top-k in float32 (half-precision logits overflow)
                next_id = sample(logits[:, -1, :], temperature=temperature, top_k=top_k, generator=generator)
                idx = torch.cat((idx, next_id[:, None]), dim=1)  # (B, T + 1)
        return idx


# ----------------------------------------------------------------------------------------------------
# analysis tools: look inside the residual stream


def _check_model(model: object) -> GPT:
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a GPT, got {type(model).__name__}")
    return model


def residual_norms(model: GPT, idx: Tensor, *, allow_longer: bool = False) -> Tensor:
    """Mean L2 norm of the residual stream (over batch and positions), after the embeddings and after
    each block: (n_layer + 1,). A post-norm stream is renormalised after every block (LayerNorm with
    weight 1 and bias 0 gives exactly sqrt(d_model)); a pre-norm stream is free to grow with depth."""
    _check_model(model)
    with _eval_mode(model):
        _, _, trace = model(idx, allow_longer=allow_longer, return_hidden=True)
    return torch.stack([h.norm(dim=-1).mean() for h in trace.hidden])  # (n_layer + 1,)


def attention_maps(model: GPT, idx: Tensor, *, allow_longer: bool = False) -> list[Tensor]:
    """The attention weights of every layer: n_layer tensors (B, n_head, T, T), rows summing to 1."""
    _check_model(model)
    with _eval_mode(model):
        _, _, trace = model(idx, allow_longer=allow_longer, return_attn=True)
    return trace.attn


def logit_lens(model: GPT, idx: Tensor, *, allow_longer: bool = False) -> Tensor:
    """The logit lens (nostalgebraist 2020): decode the residual stream after the embeddings and after
    every block with the final norm and lm_head, as if the model stopped there: (n_layer + 1, B, T, vocab).
    The last entry is the model's own logits."""
    _check_model(model)
    with _eval_mode(model):
        _, _, trace = model(idx, allow_longer=allow_longer, return_hidden=True)
        return torch.stack([model.lm_head(model.norm_f(h)) for h in trace.hidden])  # (L+1, B, T, V)


# ----------------------------------------------------------------------------------------------------
# conversion to and from transformers


# what each transformers architecture fixes, as (field, required value); the rest maps onto its config
_GPT2_NEEDS = (("norm", "layernorm"), ("pos", "learned"), ("prenorm", True), ("residual", True),
               ("bias", True), ("n_kv_head == n_head", True), ("causal", True), ("attn_scale", None),
               ("n_experts", 0))
_LLAMA_NEEDS = (("norm", "rmsnorm"), ("pos", "rope"), ("prenorm", True), ("residual", True),
                ("causal", True), ("attn_scale", None), ("n_experts", 0))
_GPT2_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}
_LLAMA_ACT = {"swiglu": "silu", "geglu": "gelu"}  # Llama's MLP is gated: act(gate_proj(x)) * up_proj(x)


def _field(config: GPTConfig, field: str) -> object:
    return config.kv_heads == config.n_head if field == "n_kv_head == n_head" else getattr(config, field)


def _mismatches(config: GPTConfig, needs: tuple, activations: dict) -> list[str]:
    bad = [f"{f}={v!r} (got {_field(config, f)!r})" for f, v in needs if _field(config, f) != v]
    if config.activation not in activations:
        bad.append(f"activation in {sorted(activations)} (got {config.activation!r})")
    return bad


def _architecture(config: GPTConfig) -> str:
    """'gpt2' or 'llama': the transformers architecture that represents this config exactly."""
    gpt2_bad = _mismatches(config, _GPT2_NEEDS, _GPT2_ACT)
    llama_bad = _mismatches(config, _LLAMA_NEEDS, _LLAMA_ACT)
    if not gpt2_bad:
        return "gpt2"
    if not llama_bad:
        return "llama"
    raise ValueError(
        "config cannot be represented by transformers' GPT-2 or Llama: GPT-2 needs "
        + ", ".join(gpt2_bad) + "; Llama needs " + ", ".join(llama_bad)
    )


def _weight_map(config: GPTConfig, arch: str) -> list[tuple[str, tuple[str, ...], bool]]:
    """Every transformers parameter as (its name, our parameter names, transposed?).

    Several of our names are concatenated along dim 0 (GPT-2 fuses q, k, v into one c_attn), and GPT-2's
    Conv1D stores weights as (in, out), the transpose of nn.Linear's (out, in).
    """
    rows: list[tuple[str, tuple[str, ...], bool]] = []
    if arch == "gpt2":
        rows.append(("transformer.wte.weight", ("tok_emb.weight",), False))
        rows.append(("transformer.wpe.weight", ("pos_emb.weight",), False))
        for i in range(config.n_layer):
            h, b = f"transformer.h.{i}.", f"blocks.{i}."
            q_k_v = [f"{b}attn.{n}_proj" for n in "qkv"]
            rows += [
                (h + "ln_1.weight", (b + "norm1.weight",), False),
                (h + "ln_1.bias", (b + "norm1.bias",), False),
                (h + "attn.c_attn.weight", tuple(f"{m}.weight" for m in q_k_v), True),
                (h + "attn.c_attn.bias", tuple(f"{m}.bias" for m in q_k_v), False),
                (h + "attn.c_proj.weight", (b + "attn.o_proj.weight",), True),
                (h + "attn.c_proj.bias", (b + "attn.o_proj.bias",), False),
                (h + "ln_2.weight", (b + "norm2.weight",), False),
                (h + "ln_2.bias", (b + "norm2.bias",), False),
                (h + "mlp.c_fc.weight", (b + "ffn.up_proj.weight",), True),
                (h + "mlp.c_fc.bias", (b + "ffn.up_proj.bias",), False),
                (h + "mlp.c_proj.weight", (b + "ffn.down_proj.weight",), True),
                (h + "mlp.c_proj.bias", (b + "ffn.down_proj.bias",), False),
            ]
        rows += [("transformer.ln_f.weight", ("norm_f.weight",), False),
                 ("transformer.ln_f.bias", ("norm_f.bias",), False)]
    else:  # llama: the same Linear layout and the same names, only the module paths differ
        rows.append(("model.embed_tokens.weight", ("tok_emb.weight",), False))
        params = ["weight", "bias"] if config.bias else ["weight"]
        for i in range(config.n_layer):
            h, b = f"model.layers.{i}.", f"blocks.{i}."
            rows += [(h + "input_layernorm.weight", (b + "norm1.weight",), False),
                     (h + "post_attention_layernorm.weight", (b + "norm2.weight",), False)]
            for p in params:
                rows += [(f"{h}self_attn.{n}_proj.{p}", (f"{b}attn.{n}_proj.{p}",), False) for n in "qkvo"]
                rows += [(f"{h}mlp.{n}_proj.{p}", (f"{b}ffn.{n}_proj.{p}",), False)
                         for n in ("gate", "up", "down")]
        rows.append(("model.norm.weight", ("norm_f.weight",), False))
    if not config.tie_embeddings:
        rows.append(("lm_head.weight", ("lm_head.weight",), False))
    return rows


def _hf_config(config: GPTConfig, arch: str):
    from transformers import GPT2Config, LlamaConfig

    # eager attention: the plain softmax(QK^T)V, for an exact comparison; no special token ids, since
    # the lab vocabularies are tiny and GPT-2's default 50256 would be out of range
    common = dict(vocab_size=config.vocab_size, tie_word_embeddings=config.tie_embeddings,
                  bos_token_id=None, eos_token_id=None, pad_token_id=None, attn_implementation="eager")
    if arch == "gpt2":
        return GPT2Config(
            n_positions=config.block_size, n_embd=config.d_model, n_layer=config.n_layer,
            n_head=config.n_head, n_inner=config.ffn_dim, activation_function=_GPT2_ACT[config.activation],
            layer_norm_epsilon=config.norm_eps, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
            attn_pdrop=config.dropout, **common,
        )
    # HF Llama has attention dropout only; our embedding/residual dropout has no counterpart (eval: none)
    return LlamaConfig(
        hidden_size=config.d_model, intermediate_size=config.ffn_dim, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, num_key_value_heads=config.kv_heads, head_dim=config.head_dim,
        max_position_embeddings=config.block_size, rms_norm_eps=config.norm_eps,
        hidden_act=_LLAMA_ACT[config.activation], rope_theta=config.rope_base, attention_bias=config.bias,
        mlp_bias=config.bias, attention_dropout=config.dropout, **common,
    )


def to_hf(model: GPT):
    """A transformers GPT2LMHeadModel (GPT-2-style configs) or LlamaForCausalLM (Llama-style configs)
    with our weights and the same logits, in float32 and eval mode, on the model's device.

    Raises ValueError naming the fields when neither architecture can represent the config
    (e.g. pos='alibi', post-norm, no residual, GQA with LayerNorm, n_experts > 0).
    """
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    _check_model(model)
    config = model.config
    arch = _architecture(config)
    hf_class = GPT2LMHeadModel if arch == "gpt2" else LlamaForCausalLM
    hf = hf_class(_hf_config(config, arch)).float()
    ours = model.state_dict()
    hf_params = dict(hf.named_parameters())  # tied matrices appear once
    rows = _weight_map(config, arch)
    if {name for name, _, _ in rows} != set(hf_params):  # every transformers parameter, exactly once
        raise RuntimeError(f"weight map out of date for {hf_class.__name__}: {sorted(hf_params)}")
    with torch.no_grad():
        for hf_name, our_names, transposed in rows:
            tensor = torch.cat([ours[n].float().cpu() for n in our_names], dim=0)  # (out, in) stacked
            hf_params[hf_name].copy_(tensor.T if transposed else tensor)
    return hf.to(model.tok_emb.weight.device).eval()


def _simplest(config: GPTConfig) -> GPTConfig:
    """The same config with n_kv_head / d_ff back to None where they equal their defaults."""
    if config.n_kv_head == config.n_head:
        config = dataclasses.replace(config, n_kv_head=None)
    if config.d_ff == dataclasses.replace(config, d_ff=None).ffn_dim:
        config = dataclasses.replace(config, d_ff=None)
    return config


def _config_from_hf(hf_config) -> tuple[GPTConfig, str]:
    name = type(hf_config).__name__
    common = dict(vocab_size=hf_config.vocab_size, tie_embeddings=bool(hf_config.tie_word_embeddings))
    if hf_config.model_type == "gpt2":
        acts = {v: k for k, v in _GPT2_ACT.items()} | {"gelu_pytorch_tanh": "gelu_tanh", "swish": "silu"}
        if hf_config.activation_function not in acts:
            raise ValueError(
                f"{name}.activation_function={hf_config.activation_function!r} is not one of {sorted(acts)}"
            )
        for field, supported in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                                 ("add_cross_attention", False)):
            if getattr(hf_config, field, supported) != supported:
                value = getattr(hf_config, field)
                raise ValueError(f"{name}.{field}={value!r} is not supported, it must be {supported}")
        config = gpt2_config(
            block_size=hf_config.n_positions, n_layer=hf_config.n_layer, n_head=hf_config.n_head,
            d_model=hf_config.n_embd, d_ff=hf_config.n_inner or 4 * hf_config.n_embd,
            activation=acts[hf_config.activation_function], norm_eps=hf_config.layer_norm_epsilon,
            dropout=float(hf_config.resid_pdrop), **common,
        )
        return _simplest(config), "gpt2"
    if hf_config.model_type == "llama":
        acts = {v: k for k, v in _LLAMA_ACT.items()} | {"swish": "swiglu"}
        if hf_config.hidden_act not in acts:
            raise ValueError(f"{name}.hidden_act={hf_config.hidden_act!r} is not one of {sorted(acts)}")
        rope = getattr(hf_config, "rope_parameters", None) or {  # transformers 5 / 4
            "rope_type": "default", "rope_theta": getattr(hf_config, "rope_theta", 10000.0)}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"{name}.rope_parameters: rope_type={rope['rope_type']!r}, only 'default' works")
        n_head, d_model = hf_config.num_attention_heads, hf_config.hidden_size
        head_dim = getattr(hf_config, "head_dim", None) or d_model // n_head
        if head_dim * n_head != d_model:
            raise ValueError(f"{name}.head_dim={head_dim} must equal hidden_size / num_attention_heads")
        if hf_config.attention_bias != hf_config.mlp_bias:
            raise ValueError(f"{name}.attention_bias and mlp_bias must agree (our config has one bias flag)")
        config = llama_config(
            block_size=hf_config.max_position_embeddings, n_layer=hf_config.num_hidden_layers,
            n_head=n_head, n_kv_head=hf_config.num_key_value_heads, d_model=d_model,
            d_ff=hf_config.intermediate_size, activation=acts[hf_config.hidden_act],
            norm_eps=hf_config.rms_norm_eps, rope_base=float(rope["rope_theta"]),
            bias=bool(hf_config.attention_bias), dropout=float(hf_config.attention_dropout), **common,
        )
        return _simplest(config), "llama"
    raise ValueError(f"hf_model must be a GPT-2 or Llama model, got model_type={hf_config.model_type!r}")


def from_hf(hf_model) -> GPT:
    """Our GPT with the weights of a transformers GPT2LMHeadModel or LlamaForCausalLM (float32, on the
    same device, in the same train/eval mode): from_hf(to_hf(model)) has the logits of model."""
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    if not isinstance(hf_model, (GPT2LMHeadModel, LlamaForCausalLM)):
        kind = type(hf_model).__name__
        raise TypeError(f"hf_model must be a GPT2LMHeadModel or LlamaForCausalLM, got {kind}")
    config, arch = _config_from_hf(hf_model.config)
    hf_params = dict(hf_model.named_parameters())
    model = GPT(config)
    state = {}
    for hf_name, our_names, transposed in _weight_map(config, arch):
        tensor = hf_params[hf_name].detach().float().cpu()
        tensor = tensor.T if transposed else tensor  # (out, in) stacked
        sizes = [model.get_parameter(n).shape[0] for n in our_names]
        state.update(zip(our_names, torch.split(tensor, sizes, dim=0)))
    if config.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    model.load_state_dict(state, strict=True)  # strict: a parameter the map forgot is an error
    return model.to(next(iter(hf_params.values())).device).train(hf_model.training)
