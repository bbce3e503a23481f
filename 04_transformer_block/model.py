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

The parts come from the lessons that teach them: positions from lesson 02, the causal mask from lesson
03, the attention layer (grouped K/V heads, MHA when n_kv_head == n_head) from lesson 09, norms and
feed-forward blocks from lesson 10, the mixture-of-experts FFN from lesson 08. The configuration is in
config.py, the conversion to and from transformers in hf.py, the probes of the residual stream in
probes.py; generation (a sampler and a KV cache) is lesson 06's `generate`.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmlab.attention_basics import causal_mask

# lesson 09: the attention layer (K/V heads shared by groups of query heads) and its conversion
from llmlab.gqa import GroupedQueryAttention, mha_to_gqa
from llmlab.moe import MoELayer  # lesson 08: the mixture-of-experts FFN (it does not import this module)
from llmlab.normalization import FeedForward, make_norm  # lesson 10: norms and feed-forward blocks
from llmlab.positional_embeddings import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    alibi_bias,
    sinusoidal_embeddings,
)
from llmlab.transformer_block.config import GPTConfig, _check_bool, _check_int
from llmlab.utils.checks import renamed_arguments
from llmlab.utils.exercises import exercise
from llmlab.utils.losses import cross_entropy as lab_cross_entropy  # 00_utils: the loss from scratch

__all__ = ["GPT", "CausalSelfAttention", "TransformerBlock", "build_attention_mask", "gpt_mha_to_gqa",
           "make_attention"]

CausalSelfAttention = GroupedQueryAttention  # the GPT's attention class, by the name it had in lesson 04


@exercise(5, "offset = Tk - Tq; attn_mask replaces the causal mask, else causal_mask(Tq, Tk, offset) cut"
          " to the sliding_window most recent keys (all True when not causal); with attention_mask "
          "hide padded keys but let each query see itself; for ALiBi return the bias with -inf where "
          "the mask says no")
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


def make_attention(config: GPTConfig, layer_idx: int | None = None) -> GroupedQueryAttention:
    """The attention layer of this config: lesson 09's GroupedQueryAttention with the config's heads,
    biases, dropout, attn_scale and kernels; the GPT passes it the mask, the rotary angles and the cache.

    Raises TypeError unless config is a GPTConfig."""
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    return GroupedQueryAttention(config.d_model, config.n_head, config.kv_heads, bias=config.bias,
                                 dropout=config.dropout, attn_scale=config.attn_scale,
                                 kernels=config.kernels, layer_idx=layer_idx)


class TransformerBlock(nn.Module):
    """One layer: attention (tokens talk to each other), then a feed-forward block (each token thinks).

    pre-norm (GPT-2, Llama):    x = x + attn(norm1(x));   x = x + ffn(norm2(x))
    post-norm (Vaswani 2017):   x = norm1(x + attn(x));   x = norm2(x + ffn(x))
    residual=False drops the "x +" (the ablation of lesson 04's demo).
    Raises TypeError unless config is a GPTConfig, TypeError/ValueError unless layer_idx is an int >= 0.
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
        self.attn = make_attention(config, layer_idx)
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

    @exercise(4, "used alone (no mask, no cache) build the config's mask for the whole sequence; pre-"
              "norm: x = add(x, attn(norm1(x))) then x = add(x, ffn(norm2(x))); post-norm: norm after"
              " each add; return x and the weights")
    def forward(
        self, x: Tensor, *, mask: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None,
        kv_cache=None, return_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, d_model) -> (x (B, T, d_model), attention weights (B, H, T, T_all) or None).

        mask, rope, kv_cache: passed to the attention (lesson 09's GroupedQueryAttention.forward); the
            GPT builds them once per forward. A block used alone gets its config's mask by default.
        """
        if mask is None and kv_cache is None:  # used alone: the config's mask for one whole sequence
            mask = build_attention_mask(self.config, x.shape[1], x.shape[1], device=x.device, dtype=x.dtype)
        cache_args = dict(mask=mask, rope=rope, kv_cache=kv_cache, need_weights=return_weights)
        if self.config.prenorm:
            h, weights = self.attn(self.norm1(x), **cache_args)
            x = self.add(x, h)
            x = self.add(x, self.ffn(self.norm2(x)))
        else:
            h, weights = self.attn(x, **cache_args)
            x = self.norm1(self.add(x, h))
            x = self.norm2(self.add(x, self.ffn(x)))
        return x, weights

    @exercise(1, "the residual stream: the sub-layer's output is added to x (and replaces it when "
              "config.residual is False)")
    def add(self, x: Tensor, h: Tensor) -> Tensor:
        """The residual connection x + h: a sub-layer only adds a correction to the stream, and the
        gradient reaches early layers through the "+" unchanged. residual=False keeps h alone."""
        return x + h if self.config.residual else h


class GPT(nn.Module):
    """The decoder: embeddings, n_layer TransformerBlocks, a final norm and the output layer (lm_head).

    Context length rule: positions 0..block_size-1 always work. Learned positions have no vector past
    block_size - 1, so longer inputs raise. The other encodings can be *evaluated* past block_size
    (extrapolation, lessons 02 and 07) but only on request, with forward(..., allow_longer=True);
    otherwise a too-long input raises too. Nothing is ever truncated silently.
    The constructor raises TypeError unless config is a GPTConfig.
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

    @exercise(2, "sum numel over self.parameters() (a tied matrix is one parameter, counted once); "
              "non_embedding subtracts the token embedding, the learned position table and an untied "
              "lm_head")
    def num_parameters(self, non_embedding: bool = False) -> int:
        """Scalar parameters (tied matrices once). non_embedding=True leaves out the token embedding, the
        learned position table and an untied output layer: the N of Kaplan et al.'s scaling laws.

        Raises TypeError unless non_embedding is a bool."""
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

    @exercise(6, "positions, last = self._positions(...) (checks the context); token embeddings (times "
              "embedding_scale) plus _absolute_positions, dropout; the mask (build_attention_mask for"
              " the keys the cache will attend) and the rotary angles once; every block; norm_f and "
              "lm_head; cross-entropy over targets != -100 plus moe_aux_loss when training an MoE")
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
    ) -> tuple[Tensor, Tensor | None]:
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
        What flows through the blocks (residual streams, attention weights) is recorded from outside, with
        hooks: llmlab.transformer_block.probes.trace.
        Raises TypeError/ValueError naming the argument for bad input.
        """
        for name, flag in (("allow_longer", allow_longer), ("validate", validate)):
            _check_bool(name, flag)
        idx = self._check_idx(idx, validate)
        B, T = idx.shape
        cache_api = ("update", "length", "attended_length")
        if kv_cache is not None and not all(hasattr(kv_cache, name) for name in cache_api):
            raise TypeError("kv_cache needs update(layer_idx, k, v), length and attended_length(T_new) "
                            f"(a lesson 06 KVCache), got {type(kv_cache).__name__}")
        start = kv_cache.length if kv_cache is not None else 0  # tokens already cached (a host int)
        self._check_masks(attention_mask, attn_mask, B, T, start, kv_cache)
        if targets is not None and (not isinstance(targets, Tensor) or targets.shape != idx.shape):
            shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {shape}")

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

        for block in self.blocks:
            x, _ = block(x, mask=mask, rope=rope, kv_cache=kv_cache)

        logits = self.lm_head(self.norm_f(x))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            ce = F.cross_entropy if self.config.kernels == "torch" else lab_cross_entropy
            loss = ce(logits.reshape(B * T, -1), targets.reshape(B * T), ignore_index=-100)
            if self.training and self.config.n_experts > 0:  # lesson 08: keep the routers balanced
                loss = loss + self.moe_aux_loss()
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
@renamed_arguments(n_kv_heads="n_kv_head")
def gpt_mha_to_gqa(model: GPT, n_kv_head: int, *, method: str = "mean") -> GPT:
    """A copy of a lab GPT whose every layer has n_kv_head K/V heads: lesson 09's mha_to_gqa on each
    attention layer (each group's K/V heads mean-pooled, Ainslie et al. 2023).

    Everything else (embeddings, norms, feed-forward blocks, lm_head) is copied unchanged; the input
    model is not modified. The result is an ordinary GPT with config.n_kv_head = n_kv_head, ready for
    uptraining with llmlab.utils.train, for a KV cache, and for to_hf (Llama with num_key_value_heads =
    n_kv_head). Raises TypeError for a model that is not a GPT, ValueError for a head count that does
    not divide the current K/V heads or a bad method.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a lab GPT (llmlab.transformer_block.GPT), got {type(model).__name__}")
    layers = [mha_to_gqa(block.attn, n_kv_head, method=method) for block in model.blocks]  # checks both
    new = copy.deepcopy(model)  # same weights, device, dtype and mode; then swap in the pooled layers
    new.config = dataclasses.replace(model.config, n_kv_head=n_kv_head)
    for block, attn in zip(new.blocks, layers):
        block.config, block.attn = new.config, attn
    return new
