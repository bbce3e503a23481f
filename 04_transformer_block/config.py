"""The lab GPT's configuration: one dataclass for GPT-2, Llama and every ablation the demos break.

`GPTConfig` holds everything that defines the architecture and checks it once, at construction (every
bad field raises naming the field); `gpt2_config` / `llama_config` are the two recipes at a CPU-sized
scale. The model itself is in model.py.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from llmlab.normalization import ACTIVATIONS, NORMS, ffn_hidden_size  # lesson 10: norms and FFN widths

__all__ = ["INITS", "KERNELS", "MODEL_VERSION", "POSITIONS", "GPTConfig", "gpt2_config", "llama_config"]

POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")
KERNELS = ("lab", "torch")
INITS = ("fan_in", "gpt2")
# bump when a change to the model code changes what the same config and seed train into (2: the
# width-aware "fan_in" init and sqrt(d_model)-scaled embeddings for sinusoidal positions): cached
# trained models (DESIGN §4) are keyed by it through GPTConfig.cache_key()
MODEL_VERSION = 2


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
