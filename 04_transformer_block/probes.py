"""Probes of the lab GPT: look inside the residual stream of a forward pass.

residual_norms (how the stream grows block by block), attention_maps (what each layer attends to) and
logit_lens (the stream decoded as if the model stopped after each block, nostalgebraist 2020). Each runs
one forward pass in eval mode with GPT.forward's trace (return_hidden / return_attn).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from llmlab.transformer_block.model import GPT
from llmlab.utils.exercises import exercise

__all__ = ["attention_maps", "logit_lens", "residual_norms"]


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


@exercise(3, "run the model with return_hidden=True in eval mode without gradients, then decode every "
          "hidden state with the final norm and the lm_head; stack them")
def logit_lens(model: GPT, idx: Tensor, *, allow_longer: bool = False) -> Tensor:
    """The logit lens (nostalgebraist 2020): decode the residual stream after the embeddings and after
    every block with the final norm and lm_head, as if the model stopped there: (n_layer + 1, B, T, vocab).
    The last entry is the model's own logits."""
    _check_model(model)
    with _eval_mode(model):
        _, _, trace = model(idx, allow_longer=allow_longer, return_hidden=True)
        return torch.stack([model.lm_head(model.norm_f(h)) for h in trace.hidden])  # (L+1, B, T, V)

