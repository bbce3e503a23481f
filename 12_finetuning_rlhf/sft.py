"""Supervised finetuning (SFT): the pretraining loss, counted on the response tokens only.

An instruction example is a (prompt, response) pair. The model reads the whole sequence, but only the
response is its job to produce, so the next-token loss is taken over the response tokens (and the EOS
that ends the response, which is how the model learns to stop); the prompt's labels are -100:

    L = -1/|R| sum_{(b, t) in R} log p(x[b,t] | x[b,<t]),   R = {(b, t): P_b <= t, t is a real token}
    log p(y | x) = sum_{t in R_b} log p(x[b,t] | x[b,<t])      (sequence_logprobs: DPO's and PPO's score)

P_b = prompt_lengths[b]: positions t < P_b are prompt (or left padding) and carry no loss. Which tokens
are "real" comes from the lengths (an attention_mask), never from `ids != pad_id`: with pad_id equal to
eos_id (a common shortcut: GPT-2 has no pad token) that test also hides every EOS label, and the model
never learns to end its answer (the --pad-is-eos break flag of the demo).

Papers: Ouyang et al. 2022, "Training language models to follow instructions with human feedback"
(InstructGPT: SFT is the first stage); Wei et al. 2022, "Finetuned Language Models Are Zero-Shot
Learners" (FLAN: instruction tuning on many task families generalises to held-out ones). The label
convention is transformers' (labels = -100 where no loss, the shift done inside the model).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from llmlab.pretraining_objectives import IGNORE_INDEX, causal_lm_loss  # lesson 11: next-token CE
from llmlab.utils.checks import check_int, check_logits_ids, check_tensor, describe
from llmlab.utils.exercises import exercise
from llmlab.utils.losses import log_softmax  # 00_utils: the stable log-softmax from scratch

__all__ = [
    "SFTBatch",
    "collate_prompts",
    "collate_sft",
    "mask_after_eos",
    "response_mask",
    "sequence_logprobs",
    "sft_labels",
    "sft_loss",
    "token_logprobs",
]


# ---------------------------------------------------------------------------------------------- checks
def _check_logits_ids(logits: object, ids: object) -> tuple[int, int]:
    """check_logits_ids, and at least two positions (a prompt token and a response token)."""
    B, T = check_logits_ids(logits, ids)
    if T < 2:
        raise ValueError(f"ids must have at least 2 positions (a prompt token and a response token), "
                         f"got T={T}")
    return B, T


def _check_prompt_lengths(prompt_lengths: object, B: int, T: int, device) -> Tensor:
    """An int (every row) or B ints, each in [1, T] -> a long tensor (B,). One read at the boundary."""
    if isinstance(prompt_lengths, numbers.Integral) and not isinstance(prompt_lengths, bool):
        lengths = torch.full((B,), int(prompt_lengths), dtype=torch.long)
    elif isinstance(prompt_lengths, Tensor):
        check_tensor("prompt_lengths", prompt_lengths, ndim=1, dtype="int")
        lengths = prompt_lengths.long()
    elif isinstance(prompt_lengths, Sequence) and not isinstance(prompt_lengths, (str, bytes)):
        for value in prompt_lengths:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"prompt_lengths must hold ints, got {describe(value)}")
        lengths = torch.tensor([int(v) for v in prompt_lengths], dtype=torch.long)
    else:
        raise TypeError(f"prompt_lengths must be an int, a list of ints or a 1-D int tensor, got "
                        f"{describe(prompt_lengths)}")
    if lengths.shape != (B,):
        raise ValueError(f"prompt_lengths must have one length per row (B={B}), got {tuple(lengths.shape)}")
    low, high = torch.stack(torch.aminmax(lengths)).tolist() if B else (1, 1)
    if low < 1 or high > T:
        shown = lengths.tolist() if B <= 8 else f"values in [{low}, {high}]"
        raise ValueError(f"prompt_lengths must be in [1, {T}] (at least one prompt token: the first "
                         f"response token is predicted from it; at most T), got {shown}")
    return lengths.to(device)


def _check_attention_mask(attention_mask: object, B: int, T: int) -> Tensor | None:
    if attention_mask is None:
        return None
    check_tensor("attention_mask", attention_mask, ndim=2)
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        raise TypeError(f"attention_mask must be an integer or bool tensor (1 = token, 0 = padding), got "
                        f"dtype {attention_mask.dtype}")
    if tuple(attention_mask.shape) != (B, T):
        raise ValueError(f"attention_mask must have shape ({B}, {T}) (ids' shape), got "
                         f"{tuple(attention_mask.shape)}")
    if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
    return attention_mask.bool()


# ------------------------------------------------------------------------------------- masks and labels
def response_mask(ids: Tensor, prompt_lengths: Tensor | Sequence[int] | int,
                  attention_mask: Tensor | None = None) -> Tensor:
    """Which tokens are scored: bool (B, T), True where t >= prompt_lengths[b] and the token is real.

    ids: (B, T) int; prompt_lengths: an int or (B,) ints in [1, T] (the index of each row's first response
    token: the prompt length with right padding, the padded prompt width with left padding);
    attention_mask: (B, T) of 0/1 (0 = padding, left or right), None = every token is real.
    The padding comes from attention_mask only: a pad id equal to the EOS id cannot hide an EOS label.
    Raises TypeError/ValueError naming the argument.
    """
    check_tensor("ids", ids, ndim=2, dtype="int")
    B, T = ids.shape
    lengths = _check_prompt_lengths(prompt_lengths, B, T, ids.device)
    real = _check_attention_mask(attention_mask, B, T)
    scored = torch.arange(T, device=ids.device)[None, :] >= lengths[:, None]  # (B, T): response positions
    return scored & real.to(ids.device) if real is not None else scored


def sft_labels(ids: Tensor, prompt_lengths: Tensor | Sequence[int] | int,
               attention_mask: Tensor | None = None) -> Tensor:
    """transformers' labels for SFT: ids with -100 on the prompt and the padding (B, T) — what
    `model(ids, labels=labels)` of a transformers causal LM turns into `sft_loss`."""
    return ids.masked_fill(~response_mask(ids, prompt_lengths, attention_mask), IGNORE_INDEX)


# ---------------------------------------------------------------------------------------------- losses
def sft_loss(logits: Tensor, ids: Tensor, prompt_lengths: Tensor | Sequence[int] | int, *,
             attention_mask: Tensor | None = None) -> Tensor:
    """The SFT loss: mean next-token cross-entropy over the response tokens of the whole batch.

    logits: (B, T, V) float (logits[:, t] predicts ids[:, t + 1]); ids: (B, T) int;
    prompt_lengths, attention_mask: as `response_mask`. Each response token (its EOS included) counts
    once, so long responses weigh more than short ones (transformers' token-level mean).
    prompt_lengths=1 trains on everything after the first token (the --no-prompt-mask ablation).
    Returns a scalar (nan if no token is scored, as torch). Raises TypeError/ValueError naming the argument.
    """
    _check_logits_ids(logits, ids)
    return causal_lm_loss(logits, sft_labels(ids, prompt_lengths, attention_mask))  # shift inside


@exercise(3, "half-precision logits go to float32 first; log_softmax of all positions but the last, then"
          " gather the log-prob of the next token (ids shifted by one)")
def token_logprobs(logits: Tensor, ids: Tensor) -> Tensor:
    """log p(ids[:, t+1] | ids[:, <=t]) for every t: (B, T, V), (B, T) -> float (B, T-1), in float32 (or
    float64 for float64 logits). Column t scores token t + 1 (the transformers shift): the tokens
    generated after a (padded) prompt of width P are scored by columns P - 1 onwards, `[:, P - 1:]`
    (PPO's per-token log-probs).

    Raises TypeError unless logits is a floating-point tensor and ids an integer tensor, ValueError unless
    they have shapes (B, T, V) and (B, T) with T >= 2."""
    _check_logits_ids(logits, ids)
    logits = logits.float() if logits.element_size() < 4 else logits  # half precision: sums need float32
    logp = log_softmax(logits[:, :-1], dim=-1)  # (B, T-1, V)
    return logp.gather(-1, ids[:, 1:, None].long()).squeeze(-1)  # (B, T-1)


def sequence_logprobs(logits: Tensor, ids: Tensor, prompt_lengths: Tensor | Sequence[int] | int, *,
                      average: bool = False, attention_mask: Tensor | None = None) -> Tensor:
    """log p(response | prompt) per row: the sum of the response tokens' log-probabilities -> (B,).

    average=False: the sum (DPO's paper and trl's default: a long response is less likely, so the loss
    sees length); average=True: the mean per response token (SimPO, IPO-style length normalisation; a
    row without response tokens gives 0). Padding (attention_mask 0) and the prompt never count.
    Arguments as `response_mask`; gradients flow into logits. Raises TypeError/ValueError naming the
    argument.
    """
    if not isinstance(average, bool):
        raise TypeError(f"average must be a bool, got {describe(average)}")
    logp = token_logprobs(logits, ids)  # (B, T-1): column t scores token t + 1
    scored = response_mask(ids, prompt_lengths, attention_mask)[:, 1:]  # (B, T-1), same alignment
    total = torch.where(scored, logp, torch.zeros_like(logp)).sum(dim=-1)  # where: a -inf never makes nan
    if average:
        return total / scored.sum(dim=-1).clamp(min=1)
    return total


# ------------------------------------------------------------------------------------------- batching
@dataclass
class SFTBatch:
    """A right-padded batch of (prompt, response) pairs.

    ids: (B, T) long, prompt + response (+ EOS) + padding; attention_mask: (B, T) long, 1 = token;
    prompt_lengths: (B,) long; labels: (B, T) long, ids with -100 on the prompt and the padding.
    """

    ids: Tensor
    attention_mask: Tensor
    prompt_lengths: Tensor
    labels: Tensor

    def to(self, device) -> SFTBatch:
        return SFTBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _token_list(name: str, value: object, *, allow_empty: bool) -> list[int]:
    if isinstance(value, Tensor):
        if value.dim() != 1 or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a sequence of ints or a 1-D int tensor, got "
                            f"{value.dtype} {tuple(value.shape)}")
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of token ids (ints), got {describe(value)}")
    tokens = []
    for token in value:
        if isinstance(token, bool) or not isinstance(token, numbers.Integral) or token < 0:
            raise TypeError(f"{name} must hold token ids (ints >= 0), got {describe(token)}")
        tokens.append(int(token))
    if not tokens and not allow_empty:
        raise ValueError(f"{name} must hold at least one token")
    return tokens


def collate_sft(examples: Sequence[tuple[Sequence[int], Sequence[int]]], *, pad_id: int,
                eos_id: int | None = None, max_length: int | None = None) -> SFTBatch:
    """(prompt, response) pairs of any lengths -> one right-padded SFTBatch for training.

    eos_id: appended to every response (and scored: the model learns to stop). pad_id: fills the
    right; it may equal eos_id, since the labels and the mask come from the lengths, not from the ids.
    max_length: the longest allowed prompt + response (+ EOS); a longer example raises, nothing is cut.
    Right padding keeps every real token at its own position 0..n-1, so the lab GPT needs no
    attention_mask for it (causality already hides the padding that follows).
    Raises TypeError/ValueError naming the argument (an empty prompt, an empty batch, a too-long example).
    """
    pad_id = check_int("pad_id", pad_id, minimum=0)
    if eos_id is not None:
        eos_id = check_int("eos_id", eos_id, minimum=0)
    if max_length is not None:
        max_length = check_int("max_length", max_length, minimum=2)
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence) or not examples:
        raise ValueError(f"examples must be a non-empty sequence of (prompt, response) pairs, got "
                         f"{describe(examples)}")
    rows, prompt_lengths = [], []
    for i, example in enumerate(examples):
        if not isinstance(example, Sequence) or isinstance(example, (str, bytes)) or len(example) != 2:
            raise TypeError(f"examples[{i}] must be a (prompt, response) pair, got {describe(example)}")
        prompt = _token_list(f"examples[{i}] prompt", example[0], allow_empty=False)
        response = _token_list(f"examples[{i}] response", example[1], allow_empty=True)
        row = prompt + response + ([eos_id] if eos_id is not None else [])
        if max_length is not None and len(row) > max_length:
            raise ValueError(f"examples[{i}] has {len(row)} tokens (prompt {len(prompt)} + response "
                             f"{len(row) - len(prompt)}), more than max_length={max_length}")
        rows.append(row)
        prompt_lengths.append(len(prompt))
    T = max(max(len(row) for row in rows), 2)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), T, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor(row, dtype=torch.long)  # right padding
        attention_mask[b, :len(row)] = 1
    lengths = torch.tensor(prompt_lengths, dtype=torch.long)
    return SFTBatch(ids, attention_mask, lengths, sft_labels(ids, lengths, attention_mask))


def collate_prompts(prompts: Sequence[Sequence[int]], *, pad_id: int) -> tuple[Tensor, Tensor]:
    """Prompts of any lengths -> (ids (B, T), attention_mask (B, T)), LEFT-padded for generation.

    Left padding puts every prompt's last token in the last column, where lesson 06's
    `generate(model, ids, n, attention_mask=attention_mask)` appends the new tokens; the mask hides the
    padding and the positions count from each row's first real token, so a row generates what it
    generates alone. The new tokens start at column T for every row (prompt_lengths=T for the scores).
    Raises TypeError/ValueError unless pad_id is an int >= 0, ValueError for prompts that are not a non-empty
    sequence or an empty prompt, TypeError for a prompt that is not a sequence (or 1-D integer tensor) of
    ints >= 0.
    """
    pad_id = check_int("pad_id", pad_id, minimum=0)
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence) or not prompts:
        raise ValueError(f"prompts must be a non-empty sequence of token-id sequences, got "
                         f"{describe(prompts)}")
    rows = [_token_list(f"prompts[{i}]", prompt, allow_empty=False) for i, prompt in enumerate(prompts)]
    T = max(len(row) for row in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), T, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, T - len(row):] = torch.tensor(row, dtype=torch.long)  # left padding
        attention_mask[b, T - len(row):] = 1
    return ids, attention_mask


def mask_after_eos(tokens: Tensor, eos_id: int) -> Tensor:
    """Which generated tokens belong to the response: bool (B, n), True up to and including each row's
    first eos_id, False after it (what a sampler produced after stopping is not part of the answer).

    Raises TypeError unless tokens is an integer tensor, ValueError unless it is 2-D, TypeError/ValueError
    unless eos_id is an int >= 0."""
    check_tensor("tokens", tokens, ndim=2, dtype="int")
    eos_id = check_int("eos_id", eos_id, minimum=0)
    is_eos = (tokens == eos_id).long()  # (B, n)
    eos_before = is_eos.cumsum(dim=-1) - is_eos  # (B, n): EOS tokens strictly before t
    return eos_before == 0
