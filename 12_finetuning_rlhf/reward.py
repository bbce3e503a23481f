"""A reward model: the language model with a scalar head, trained on preferences to say which of two
answers a person would pick.

The GPT reads the whole (prompt, answer) sequence; a linear head turns the final hidden state of the
LAST REAL token (the only position that has seen everything) into one number r(x, y). A preference
"y_c is better than y_r" is modelled by Bradley–Terry, P(y_c > y_r) = σ(r_c − r_r), and the loss is its
negative log-likelihood; Llama 2 adds a margin m when the labellers were sure:

    L = −log σ(r(x, y_c) − r(x, y_r) − m)        (m = 0: InstructGPT's loss)

Only differences of rewards are learned: adding a constant to every reward changes nothing.
Which token is the last real one comes from the attention_mask (left or right padding), never from a
pad id: with pad = EOS, "the last token that is not a pad" is the token BEFORE the EOS.

Papers: Bradley & Terry 1952; Ouyang et al. 2022 (InstructGPT, §3.5 eq. 1); Touvron et al. 2023, "Llama
2" §3.2.2 eq. 2 (the margin). trl's RewardTrainer computes the same loss (checked against trl 1.16.0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmlab.transformer_block import GPT, trace
from llmlab.utils.checks import check_bool, check_number, check_tensor, describe
from llmlab.utils.exercises import exercise

__all__ = ["RewardModel", "final_hidden", "last_token_index", "reward_loss"]


def final_hidden(gpt: GPT, ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One forward pass of the lab GPT -> (logits (B, T, vocab_size), hidden (B, T, d_model)), hidden being
    the final-normed residual stream that the lm_head reads (what a reward or value head reads too).

    Raises TypeError unless gpt is a lab GPT, and what GPT.forward raises for bad ids or attention_mask."""
    if not isinstance(gpt, GPT):
        raise TypeError(f"gpt must be a lab GPT (llmlab.transformer_block.GPT), got {type(gpt).__name__}")
    logits, recorded = trace(gpt, ids, attention_mask=attention_mask)
    return logits, gpt.norm_f(recorded.hidden[-1])  # (B, T, V), (B, T, d_model)


def last_token_index(attention_mask: Tensor) -> Tensor:
    """Each row's last real token: the largest t with attention_mask[b, t] = 1 -> long (B,). Works for left
    and right padding. Raises ValueError for a row without a real token (one read)."""
    check_tensor("attention_mask", attention_mask, ndim=2)
    real = attention_mask.bool()
    if not bool(real.any(dim=-1).all()):
        raise ValueError("attention_mask has a row without a real token (all 0): nothing to score")
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return torch.where(real, positions, -1).amax(dim=-1)  # (B,)


class RewardModel(nn.Module):
    """The lab GPT with a scalar head: forward(ids, attention_mask=None) -> rewards (B,).

    gpt: the body (usually a copy of the SFT model; it is used, not copied, and it keeps training).
    score: nn.Linear(d_model, 1, bias=False) (transformers' `score`; a bias would cancel in every
    difference), initialised N(0, 1/d_model) like the GPT's own layers.
    attention_mask: (B, T) 1 = token, 0 = padding, left or right; the reward is read at each row's last
    real token. per_token=True returns the head at every position (B, T): a value model (PPO's critic is
    initialised from the reward model, as in trl).
    The constructor raises TypeError unless gpt is a lab GPT.
    """

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        if not isinstance(gpt, GPT):
            raise TypeError(f"gpt must be a lab GPT (llmlab.transformer_block.GPT), got {type(gpt).__name__}")
        self.gpt = gpt
        d_model = gpt.config.d_model
        param = next(gpt.parameters())
        self.score = nn.Linear(d_model, 1, bias=False, device=param.device, dtype=param.dtype)
        nn.init.normal_(self.score.weight, std=d_model ** -0.5)

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None, *,
                per_token: bool = False) -> Tensor:
        """ids (B, T) -> rewards (B,), read at each row's last real token; (B, T) with per_token=True.

        Raises TypeError unless per_token is a bool and attention_mask (when given) a tensor, ValueError
        unless attention_mask is a 2-D integer or bool tensor of ids' shape, and what GPT.forward raises for
        bad ids.
        """
        check_bool("per_token", per_token)
        if attention_mask is not None:
            check_tensor("attention_mask", attention_mask, ndim=2)
            if attention_mask.is_floating_point() or tuple(attention_mask.shape) != tuple(ids.shape):
                raise ValueError(f"attention_mask must be an integer/bool tensor of ids' shape "
                                 f"{tuple(ids.shape)}, got {attention_mask.dtype} "
                                 f"{tuple(attention_mask.shape)}")
        _, hidden = final_hidden(self.gpt, ids, attention_mask)  # (B, T, d_model)
        scores = self.score(hidden).squeeze(-1)  # (B, T): the head at every position
        if per_token:
            return scores
        if attention_mask is None:
            return scores[:, -1]  # no padding: the last column
        last = last_token_index(attention_mask)  # (B,)
        return scores.gather(1, last[:, None]).squeeze(1)  # (B,)


@exercise(2, "the difference chosen - rejected, minus the margin when there is one; the loss is the mean"
          " of -log sigmoid of it (use logsigmoid, never log(sigmoid))")
def reward_loss(chosen: Tensor, rejected: Tensor, *, margin: Tensor | float | None = None) -> Tensor:
    """Bradley–Terry loss: mean over pairs of −log σ(chosen − rejected − margin).

    chosen, rejected: (B,) float rewards of the preferred and the other answer; margin: None (0), a
    number or (B,) (Llama 2: larger when the preference is clearer). −log σ is computed as softplus(−x),
    finite for any difference. Raises TypeError/ValueError naming the argument.
    """
    check_tensor("chosen", chosen, ndim=1, dtype="float")
    check_tensor("rejected", rejected, ndim=1, dtype="float")
    if rejected.shape != chosen.shape:
        raise ValueError(f"rejected must have chosen's shape {tuple(chosen.shape)}, got "
                         f"{tuple(rejected.shape)}")
    if margin is not None:
        if isinstance(margin, Tensor):
            check_tensor("margin", margin, dtype="float")
            if margin.dim() > 1 or (margin.dim() == 1 and margin.shape != chosen.shape):
                raise ValueError(f"margin must be a number or a tensor of shape {tuple(chosen.shape)}, got "
                                 f"{tuple(margin.shape)}")
        elif not isinstance(margin, (int, float)) or isinstance(margin, bool):
            raise TypeError(f"margin must be None, a number or a tensor, got {describe(margin)}")
        else:
            margin = check_number("margin", margin)
    difference = chosen - rejected  # (B,)
    if margin is not None:
        difference = difference - margin
    return -F.logsigmoid(difference).mean()
