"""Probes of the lab GPT: look inside the residual stream of a forward pass.

trace records what flows through the blocks of one forward pass with forward hooks, from outside the
model (the model's code has no tracing flags): the residual stream after the embeddings and after each
block, and each layer's attention weights. On it: residual_norms (how the stream grows block by block),
attention_maps (what each layer attends to) and logit_lens (the stream decoded as if the model stopped
after each block, nostalgebraist 2020), each in eval mode without gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from llmlab.transformer_block.model import GPT
from llmlab.utils.exercises import exercise

__all__ = ["GPTTrace", "attention_maps", "logit_lens", "residual_norms", "trace"]


@dataclass
class GPTTrace:
    """What `trace` records. hidden: n_layer + 1 residual streams (B, T, d_model), after the embeddings and
    after each block (the last one is what the final norm reads); attn: n_layer attention weights
    (B, n_head, T, T_all), empty unless asked for."""

    hidden: list[Tensor] = field(default_factory=list)
    attn: list[Tensor] = field(default_factory=list)


def trace(model: GPT, idx: Tensor, *, attn: bool = False, **kwargs) -> tuple[Tensor, GPTTrace]:
    """model(idx, **kwargs), recording the residual stream (and with attn=True each layer's attention
    weights) through forward hooks on the blocks -> (logits (B, T, vocab_size), GPTTrace).

    The hooks are removed afterwards; gradients flow through the recorded tensors as through the logits
    (wrap the call in torch.no_grad() when none are needed). kwargs: those of GPT.forward (positions,
    attention_mask, attn_mask, allow_longer, ...; targets and kv_cache too).
    Raises TypeError unless model is a lab GPT and attn a bool, and what GPT.forward raises.
    """
    _check_model(model)
    if not isinstance(attn, bool):
        raise TypeError(f"attn must be a bool, got {type(attn).__name__}")
    recorded = GPTTrace()

    def before(block, args, block_kwargs):
        if block is model.blocks[0]:
            recorded.hidden.append(args[0])  # the embeddings: what the first block reads
        return args, {**block_kwargs, "return_weights": attn}

    def after(block, args, output):
        x, weights = output
        recorded.hidden.append(x)
        if attn:
            recorded.attn.append(weights)

    handles = []
    try:
        for block in model.blocks:
            handles.append(block.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(block.register_forward_hook(after))
        logits, _ = model(idx, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return logits, recorded


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


def _check_model(model: object) -> GPT:
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a GPT, got {type(model).__name__}")
    return model


def residual_norms(model: GPT, idx: Tensor, *, allow_longer: bool = False) -> Tensor:
    """Mean L2 norm of the residual stream (over batch and positions), after the embeddings and after
    each block: (n_layer + 1,). A post-norm stream is renormalised after every block (LayerNorm with
    weight 1 and bias 0 gives exactly sqrt(d_model)); a pre-norm stream is free to grow with depth.

    Raises TypeError unless model is a lab GPT, and what GPT.forward raises for bad idx."""
    _check_model(model)
    with _eval_mode(model):
        _, recorded = trace(model, idx, allow_longer=allow_longer)
    return torch.stack([h.norm(dim=-1).mean() for h in recorded.hidden])  # (n_layer + 1,)


def attention_maps(model: GPT, idx: Tensor, *, allow_longer: bool = False) -> list[Tensor]:
    """The attention weights of every layer: n_layer tensors (B, n_head, T, T), rows summing to 1.

    Raises TypeError unless model is a lab GPT, and what GPT.forward raises for bad idx.
    """
    _check_model(model)
    with _eval_mode(model):
        _, recorded = trace(model, idx, allow_longer=allow_longer, attn=True)
    return recorded.attn


@exercise(3, "trace the model in eval mode without gradients, then decode every hidden state with the "
          "final norm and the lm_head; stack them")
def logit_lens(model: GPT, idx: Tensor, *, allow_longer: bool = False) -> Tensor:
    """The logit lens (nostalgebraist 2020): decode the residual stream after the embeddings and after
    every block with the final norm and lm_head, as if the model stopped there: (n_layer + 1, B, T, vocab).
    The last entry is the model's own logits.

    Raises TypeError unless model is a lab GPT, and what GPT.forward raises for bad idx."""
    _check_model(model)
    with _eval_mode(model):
        _, recorded = trace(model, idx, allow_longer=allow_longer)
        return torch.stack([model.lm_head(model.norm_f(h)) for h in recorded.hidden])  # (L+1, B, T, V)

