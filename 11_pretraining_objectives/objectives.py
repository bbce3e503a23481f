"""Pretraining objectives: what a language model is asked to predict, and from which tokens it may look.

The same transformer learns different things depending on two choices: which positions carry a loss
and which keys each query may attend to. A causal LM (GPT) predicts every next token from the tokens
before it; a masked LM (BERT) hides ~15% of the tokens and predicts them from both sides; a prefix LM
(T5's "causal with prefix") reads a prefix bidirectionally and predicts only the rest left to right.

    causal LM   L = -1/|S| sum_{b, t >= 1} log p(x[b,t] | x[b,<t])                  (every token)
    masked LM   L = -1/|M| sum_{(b,t) in M} log p(x[b,t] | x~)   M ~ Bernoulli(0.15) (selected only)
                x~ = the input with each selected token [MASK] (80%), random (10%) or kept (10%)
    prefix LM   L = -1/|S| sum_{b, max(P_b,1) <= t < T} log p(x[b,t] | x[b,<t])     (suffix only)
                attention: key j visible to query i  iff  j <= i  or  j < P_b
    span corr.  noise = round(L * density) tokens in round(noise / mean_span) spans; each span is
                replaced by one sentinel in the input and the target lists sentinel_k, span_k, ...

Papers: Radford et al. 2018 (GPT, the causal LM); Devlin et al. 2019, "BERT" §3.1 (masked LM,
80/10/10, and the whole-word-masking release); Raffel et al. 2020, "Exploring the Limits of Transfer
Learning with a Unified Text-to-Text Transformer" (T5) §3.2.1/§3.3 (the prefix LM, Fig. 3 and 4) and
§3.3.4 / `random_spans_noise_mask` (span corruption, density 0.15, mean span 3); Wettig et al. 2023,
"Should You Mask 15% in Masked Language Modeling?" (40% beats 15% for large models).

`mask_tokens` draws its random numbers in the order of transformers'
`DataCollatorForLanguageModeling.torch_mask_tokens` (checked against transformers 5.25.0): the same
seeded `torch.Generator` gives bit-identical inputs and labels. `whole_word_mask` does the same for
the collator's `whole_word_mask=True` (there forced to 100% [MASK]).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from llmlab.utils.checks import check_int, check_logits_ids, check_number, check_tensor, describe
from llmlab.utils.exercises import exercise
from llmlab.utils.losses import cross_entropy

IGNORE_INDEX = -100  # the transformers convention: labels equal to it carry no loss

__all__ = [
    "IGNORE_INDEX",
    "causal_lm_loss",
    "mask_tokens",
    "masked_lm_loss",
    "prefix_lm_loss",
    "prefix_lm_mask",
    "span_corrupt",
    "span_noise_mask",
    "whole_word_mask",
]


# ---------------------------------------------------------------------------------------------- checks
def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")


def _check_token_ids(name: str, values: object, vocab_size: int) -> tuple[int, ...]:
    """A sequence of ints, each in [0, vocab_size)."""
    if isinstance(values, (str, bytes, Tensor)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of ints (a list or tuple), got {describe(values)}")
    checked = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must hold ints, got {describe(value)}")
        if not 0 <= value < vocab_size:
            raise ValueError(f"{name} must hold token ids in [0, {vocab_size - 1}], got {value}")
        checked.append(int(value))
    return tuple(checked)


def _check_ids_in_vocab(ids: Tensor, vocab_size: int) -> None:
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):  # one read at the boundary
        raise ValueError(f"ids must be token ids in [0, {vocab_size - 1}], got values in "
                         f"[{int(ids.min())}, {int(ids.max())}]")


# --------------------------------------------------------------------------------------- causal LM
@exercise(1, "the output at position t is scored on the token at t + 1: drop the last position of the "
          "logits and the first of the ids, then cross_entropy with ignore_index")
def causal_lm_loss(logits: Tensor, ids: Tensor, *, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Next-token cross-entropy: logits[:, t] predicts ids[:, t + 1] (transformers' `labels=ids`).

    logits: (B, T, V) float; ids: (B, T) int, entries equal to ignore_index carry no loss.
    Returns a scalar: the mean over the B·(T-1) shifted targets that are not ignored.
    Raises TypeError for a wrong dtype, ValueError for mismatched shapes or T < 2.
    """
    _, T = check_logits_ids(logits, ids)
    if T < 2:
        raise ValueError(f"ids must have at least 2 positions (one to read, one to predict), got T={T}")
    check_int("ignore_index", ignore_index)
    # the shift: position t's output is scored on token t + 1; the last position has no target
    return cross_entropy(logits[:, :-1], ids[:, 1:], ignore_index=ignore_index)  # (B, T-1, V) vs (B, T-1)


# --------------------------------------------------------------------------------------- masked LM
def _check_rates(mlm_probability: float, mask_replace_prob: float, random_replace_prob: float):
    p = check_number("mlm_probability", mlm_probability, low=0, high=1)
    mask_p = check_number("mask_replace_prob", mask_replace_prob, low=0, high=1)
    random_p = check_number("random_replace_prob", random_replace_prob, low=0, high=1)
    if mask_p + random_p > 1 + 1e-12:
        raise ValueError(f"mask_replace_prob + random_replace_prob must be <= 1, got {mask_p} + {random_p}")
    return p, mask_p, random_p


@exercise(5, "labels keep the id only where selected; draw the [MASK] Bernoulli first, stop early as "
          "transformers does, else random-given-rest = random / (1 - mask), then one randint per "
          "position")
def _replace_selected(ids: Tensor, selected: Tensor, *, vocab_size: int, mask_token_id: int,
                      mask_replace_prob: float, random_replace_prob: float,
                      generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """BERT's corruption of the selected positions: [MASK] with mask_replace_prob, a random token with
    random_replace_prob, unchanged otherwise. The draws follow transformers' torch_mask_tokens:
    one Bernoulli per position for [MASK], then (unless nothing is left to draw) one Bernoulli per
    position for "random among the rest" and one random token per position."""
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))  # loss only where selected
    inputs = ids.clone()  # the caller's ids stay untouched
    replaced = torch.bernoulli(torch.full(ids.shape, mask_replace_prob, device=ids.device),
                               generator=generator).bool() & selected
    inputs[replaced] = mask_token_id
    if mask_replace_prob == 1 or random_replace_prob == 0:
        return inputs, labels  # transformers stops here: no more draws from the generator
    # P(random | selected, not [MASK]) = random / (1 - mask): 0.1 / 0.2 = 0.5 for BERT's 80/10/10
    random_given_rest = min(1.0, random_replace_prob / (1 - mask_replace_prob))
    randomized = torch.bernoulli(torch.full(ids.shape, random_given_rest, device=ids.device),
                                 generator=generator).bool() & selected & ~replaced
    random_tokens = torch.randint(vocab_size, ids.shape, dtype=torch.long, device=ids.device,
                                  generator=generator)
    inputs[randomized] = random_tokens[randomized].to(inputs.dtype)  # may hit any id, as BERT's
    return inputs, labels


def _check_mask_args(ids, vocab_size, mask_token_id, special_token_ids, generator):
    check_tensor("ids", ids, min_ndim=1, dtype="int")
    vocab_size = check_int("vocab_size", vocab_size, minimum=1)
    mask_token_id = check_int("mask_token_id", mask_token_id)
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id must be a token id in [0, {vocab_size - 1}] (the vocabulary), "
                         f"got {mask_token_id}")
    specials = _check_token_ids("special_token_ids", special_token_ids, vocab_size)
    _check_generator(generator)
    _check_ids_in_vocab(ids, vocab_size)
    return vocab_size, mask_token_id, specials


@exercise(4, "a float32 probability tensor of mlm_probability, 0 at the special tokens; one Bernoulli "
          "draw per position selects; hand the selection to _replace_selected")
def mask_tokens(ids: Tensor, *, vocab_size: int, mask_token_id: int, mlm_probability: float = 0.15,
                mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1,
                special_token_ids: Sequence[int] = (), generator: torch.Generator | None = None,
                ) -> tuple[Tensor, Tensor]:
    """BERT's masking: select each non-special token with probability mlm_probability; of the selected,
    mask_replace_prob become mask_token_id, random_replace_prob a uniform random id in [0, vocab_size),
    the rest stay (so that the model cannot rely on seeing [MASK], which never occurs at inference).

    ids: int tensor of any shape (usually (B, T)), never modified.
    Returns (inputs, labels), both shaped like ids: inputs = the corrupted ids; labels = the original id
    where selected, -100 elsewhere. Bit-identical to transformers' DataCollatorForLanguageModeling
    (torch_mask_tokens) given the same seeded generator and special_tokens_mask = ids in special_token_ids.
    Raises TypeError/ValueError naming the argument: rates outside [0, 1], mask_replace_prob +
    random_replace_prob > 1, mask_token_id / special_token_ids / ids outside the vocabulary.
    """
    p, mask_p, random_p = _check_rates(mlm_probability, mask_replace_prob, random_replace_prob)
    vocab_size, mask_token_id, specials = _check_mask_args(ids, vocab_size, mask_token_id,
                                                           special_token_ids, generator)
    special = torch.isin(ids, torch.tensor(specials, dtype=ids.dtype, device=ids.device))
    # float32 probabilities, as the collator's torch.full: the same uniform draws give the same choices
    probability = torch.full(ids.shape, p, device=ids.device).masked_fill(special, 0.0)
    selected = torch.bernoulli(probability, generator=generator).bool()  # specials: probability 0
    return _replace_selected(ids, selected, vocab_size=vocab_size, mask_token_id=mask_token_id,
                             mask_replace_prob=mask_p, random_replace_prob=random_p, generator=generator)


@exercise(7, "find each word's opening token (a start, after a special, or position 0, never a special),"
          " number the words per row, draw one Bernoulli per opening token, spread each pick over its"
          " word, then _replace_selected")
def whole_word_mask(ids: Tensor, word_starts: Tensor, *, vocab_size: int, mask_token_id: int,
                    mlm_probability: float = 0.15, mask_replace_prob: float = 1.0,
                    random_replace_prob: float = 0.0, special_token_ids: Sequence[int] = (),
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Whole-word masking: select words, not sub-word tokens, so that the model cannot fill in "##ing"
    from "runn" next to it (the BERT authors' 2019 whole-word-masking release).

    ids: int tensor (B, T) (or (T,)); word_starts: bool tensor shaped like ids, True where a token begins
    a word (e.g. a BPE token with a leading space). A word is its start token and the non-start tokens
    after it; a special token is never part of a word, and a non-special token after a special token
    starts a new word. Each word's first token is selected with probability mlm_probability, and a
    selected word is selected whole. The selected tokens are then corrupted per token as in mask_tokens
    (default 100% [MASK], as transformers forces for whole words; 0.8/0.1 gives BERT's 80/10/10).
    Returns (inputs, labels) as mask_tokens. Bit-identical to transformers' collator with
    whole_word_mask=True (offsets contiguous inside a word, a gap between words) and the same generator.
    Raises TypeError/ValueError naming the argument, as mask_tokens, and for word_starts of another
    shape or dtype.
    """
    p, mask_p, random_p = _check_rates(mlm_probability, mask_replace_prob, random_replace_prob)
    vocab_size, mask_token_id, specials = _check_mask_args(ids, vocab_size, mask_token_id,
                                                           special_token_ids, generator)
    if not isinstance(word_starts, Tensor) or word_starts.dtype != torch.bool:
        got = word_starts.dtype if isinstance(word_starts, Tensor) else describe(word_starts)
        raise TypeError(f"word_starts must be a bool tensor (True = a token that begins a word), got {got}")
    if word_starts.shape != ids.shape:
        raise ValueError(f"word_starts must have the shape of ids {tuple(ids.shape)}, got "
                         f"{tuple(word_starts.shape)}")
    rows = ids.reshape(-1, ids.shape[-1])  # (B, T)
    starts = word_starts.to(ids.device).reshape(rows.shape)  # (B, T)
    special = torch.isin(rows, torch.tensor(specials, dtype=ids.dtype, device=ids.device))  # (B, T)
    after_special = torch.zeros_like(special)
    after_special[:, 1:] = special[:, :-1]
    first = torch.zeros_like(special)
    first[:, 0] = True
    new_word = ~special & (starts | after_special | first)  # (B, T): the token that opens each word
    word_id = torch.cumsum(new_word.long(), dim=1) - 1  # (B, T): 0, 0, 1, 1, 1, 2, ... per row
    word_id = word_id.masked_fill(special, -1)
    # one Bernoulli per token, non-zero only at word starts (the collator's draw: the same numbers)
    probability = torch.full(rows.shape, p, device=ids.device).masked_fill(~new_word, 0.0)
    picked = torch.bernoulli(probability, generator=generator).bool()  # (B, T) word starts picked
    # spread each pick to its word: a token is selected iff its word's start was picked
    n_words = int(word_id.max()) + 2 if word_id.numel() else 1
    row_offset = torch.arange(rows.shape[0], device=ids.device)[:, None] * n_words  # (B, 1)
    flat_word = torch.where(special, torch.full_like(word_id, -1), word_id + row_offset)  # (B, T)
    picked_words = torch.zeros(rows.shape[0] * n_words, dtype=torch.bool, device=ids.device)
    picked_words[flat_word[picked & ~special]] = True
    selected = picked_words[flat_word.clamp(min=0)] & ~special  # (B, T)
    inputs, labels = _replace_selected(rows, selected, vocab_size=vocab_size, mask_token_id=mask_token_id,
                                       mask_replace_prob=mask_p, random_replace_prob=random_p,
                                       generator=generator)
    return inputs.reshape(ids.shape), labels.reshape(ids.shape)


def masked_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy on the selected positions only: logits[b, t] predicts labels[b, t] (no shift: the
    model sees the corrupted token at t and reconstructs the original). labels: -100 elsewhere, as
    mask_tokens returns them. logits (B, T, V) float, labels (B, T) int -> a scalar (nan if none selected,
    as torch). Raises TypeError/ValueError naming the argument.
    """
    check_logits_ids(logits, labels, ids_name="labels")
    return cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)  # (B, T, V) vs (B, T)


# --------------------------------------------------------------------------------------- prefix LM
def _check_prefix_lengths(prefix_lengths: object, seq_len: int, batch_size: int | None = None) -> Tensor:
    if isinstance(prefix_lengths, Tensor):
        check_tensor("prefix_lengths", prefix_lengths, ndim=1, dtype="int")
        lengths = prefix_lengths.long()
    else:
        if isinstance(prefix_lengths, (str, bytes)) or not isinstance(prefix_lengths, Sequence):
            raise TypeError(f"prefix_lengths must be a 1-D int tensor or a list of ints, got "
                            f"{describe(prefix_lengths)}")
        for value in prefix_lengths:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"prefix_lengths must hold ints, got {describe(value)}")
        lengths = torch.tensor([int(v) for v in prefix_lengths], dtype=torch.long)
    if batch_size is not None and lengths.shape[0] != batch_size:
        raise ValueError(f"prefix_lengths must have one length per row ({batch_size}), got "
                         f"{lengths.shape[0]}")
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > seq_len):
        low, high = int(lengths.min()), int(lengths.max())
        shown = lengths.tolist() if lengths.numel() <= 8 else f"values in [{low}, {high}]"
        raise ValueError(f"prefix_lengths must be in [0, {seq_len}] (the sequence length), got {shown}")
    return lengths


@exercise(2, "a (T, T) causal part (key <= query) OR a (B, 1, T) part that is True for keys inside row "
          "b's prefix; broadcast to (B, T, T)")
def prefix_lm_mask(prefix_lengths: Tensor | Sequence[int], seq_len: int) -> Tensor:
    """T5's "causal with prefix" attention mask: query i may see key j iff j <= i (causal) or j < prefix
    (the whole prefix, both directions). prefix 0 is the causal mask; prefix seq_len is bidirectional.

    prefix_lengths: (B,) ints in [0, seq_len] -> bool (B, seq_len, seq_len), True = may attend (the
    lab GPT's attn_mask=). Raises TypeError/ValueError naming the argument.
    """
    seq_len = check_int("seq_len", seq_len, minimum=1)
    lengths = _check_prefix_lengths(prefix_lengths, seq_len)
    pos = torch.arange(seq_len, device=lengths.device)
    causal = pos[None, :] <= pos[:, None]  # (T, T): key j <= query i
    in_prefix = pos[None, None, :] < lengths[:, None, None]  # (B, 1, T): key j inside row b's prefix
    return causal[None] | in_prefix  # (B, T, T)


@exercise(3, "shift as in the causal loss, then set to IGNORE_INDEX every target at position t < "
          "max(prefix_b, 1) before the cross-entropy")
def prefix_lm_loss(logits: Tensor, ids: Tensor, prefix_lengths: Tensor | Sequence[int]) -> Tensor:
    """Next-token loss on the suffix only: the mean over all (b, t) with max(prefix_b, 1) <= t < T of
    CE(logits[b, t-1], ids[b, t]) (the prefix is given, not predicted; token 0 has nothing before it).

    logits (B, T, V) float, ids (B, T) int, prefix_lengths (B,) in [0, T] -> a scalar (nan when no row
    has a suffix, as torch). Raises TypeError/ValueError naming the argument (e.g. a prefix longer than
    the sequence).
    """
    B, T = check_logits_ids(logits, ids)
    if T < 2:
        raise ValueError(f"ids must have at least 2 positions, got T={T}")
    lengths = _check_prefix_lengths(prefix_lengths, T, B).to(ids.device)
    t = torch.arange(1, T, device=ids.device)  # (T-1,) the predicted positions
    in_suffix = t[None, :] >= lengths.clamp(min=1)[:, None]  # (B, T-1)
    targets = torch.where(in_suffix, ids[:, 1:], torch.full_like(ids[:, 1:], IGNORE_INDEX))
    return cross_entropy(logits[:, :-1], targets, ignore_index=IGNORE_INDEX)


# ---------------------------------------------------------------------------------- span corruption
def _random_segmentation(num_items: int, num_segments: int, generator: torch.Generator | None) -> Tensor:
    """num_items split into num_segments non-empty runs, uniformly at random (T5's _random_segmentation):
    shuffle (num_segments - 1) "a new run starts here" marks among the num_items - 1 gaps."""
    marks = (torch.arange(num_items - 1) < num_segments - 1).long()
    marks = marks[torch.randperm(num_items - 1, generator=generator)]
    first_in_segment = torch.cat([torch.zeros(1, dtype=torch.long), marks])  # (num_items,)
    segment_id = torch.cumsum(first_in_segment, 0)
    return torch.bincount(segment_id, minlength=num_segments)  # (num_segments,) lengths >= 1


@exercise(6, "count noise tokens and spans (clamped as the docstring says), split noise and kept tokens "
          "each into that many runs with _random_segmentation, interleave kept, noise, kept, ...")
def span_noise_mask(length: int, *, noise_density: float = 0.15, mean_span_length: float = 3.0,
                    generator: torch.Generator | None = None) -> Tensor:
    """T5's random_spans_noise_mask: a bool (length,) with round(length·noise_density) True tokens
    (at least 1, at most length - 1) in round(noise / mean_span_length) runs (at least 1, at most as
    many as there are noise and non-noise tokens); the sequence always starts with non-noise.

    Raises TypeError/ValueError unless length is an int >= 2, noise_density a number in [0, 1] and
    mean_span_length a number >= 1, TypeError unless generator is a torch.Generator or None."""
    length = check_int("length", length, minimum=2)
    density = check_number("noise_density", noise_density, low=0, high=1)
    mean_span = check_number("mean_span_length", mean_span_length, low=1)
    _check_generator(generator)
    num_noise = min(max(round(length * density), 1), length - 1)
    num_spans = min(max(round(num_noise / mean_span), 1), num_noise, length - num_noise)
    noise_lengths = _random_segmentation(num_noise, num_spans, generator)  # (S,)
    keep_lengths = _random_segmentation(length - num_noise, num_spans, generator)  # (S,)
    interleaved = torch.stack([keep_lengths, noise_lengths], dim=1).reshape(-1)  # keep, noise, keep, ...
    is_noise = torch.arange(2 * num_spans).remainder(2).bool()  # (2S,) False, True, False, ...
    return torch.repeat_interleave(is_noise, interleaved)  # (length,)


def span_corrupt(ids: Tensor, *, noise_density: float = 0.15, mean_span_length: float = 3.0,
                 sentinel_ids: Sequence[int], generator: torch.Generator | None = None,
                 ) -> tuple[Tensor, Tensor]:
    """T5's span corruption on one sequence: drop random spans from the input, each replaced by one
    sentinel, and ask the model to write out the dropped spans after their sentinels.

        ids      The cat sat on the mat today
        inputs   The <X> on the <Y> today
        targets  <X> cat sat <Y> mat

    ids: (L,) int, L >= 2. sentinel_ids: at least as many ids as spans (the k-th span becomes
    sentinel_ids[k]; T5 uses <extra_id_0>, <extra_id_1>, ...). The spans come from span_noise_mask.
    Returns (inputs, targets), 1-D: targets = sentinel_0, span_0, sentinel_1, span_1, ... with no
    closing sentinel or EOS. Raises TypeError/ValueError naming the argument (density outside [0, 1],
    mean_span_length < 1, too few sentinel_ids).
    """
    check_tensor("ids", ids, ndim=1, dtype="int")
    if ids.shape[0] < 2:
        raise ValueError(f"ids must hold at least 2 tokens (some noise, some kept), got {ids.shape[0]}")
    if isinstance(sentinel_ids, (str, bytes, Tensor)) or not isinstance(sentinel_ids, Sequence):
        raise TypeError(f"sentinel_ids must be a sequence of ints, got {describe(sentinel_ids)}")
    for value in sentinel_ids:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"sentinel_ids must hold ints, got {describe(value)}")
    noise = span_noise_mask(ids.shape[0], noise_density=noise_density, mean_span_length=mean_span_length,
                            generator=generator).to(ids.device)  # (L,)
    span_start = noise.clone()
    span_start[1:] &= ~noise[:-1]  # the first token of each noise run
    num_spans = int(span_start.sum())
    if len(sentinel_ids) < num_spans:
        raise ValueError(f"sentinel_ids must hold one id per span: {num_spans} spans, got "
                         f"{len(sentinel_ids)} sentinel_ids")
    sentinels = torch.tensor(list(sentinel_ids[:num_spans]), dtype=ids.dtype, device=ids.device)  # (S,)
    span_index = torch.cumsum(span_start.long(), 0) - 1  # (L,) which span a noise token belongs to
    # inputs: kept tokens, plus each span's sentinel at the span's first position
    with_sentinels = torch.where(span_start, sentinels[span_index.clamp(min=0)], ids)
    inputs = with_sentinels[~noise | span_start]
    # targets: each span's sentinel, then the span: every noise token moves right by the number of
    # sentinels written before it (one per span started so far)
    tokens, starts = ids[noise], span_start[noise]  # (N,), (N,)
    position = torch.arange(tokens.shape[0], device=ids.device) + torch.cumsum(starts.long(), 0)  # (N,)
    targets = torch.empty(tokens.shape[0] + num_spans, dtype=ids.dtype, device=ids.device)  # (N + S,)
    targets[position] = tokens
    targets[position[starts] - 1] = sentinels
    return inputs, targets
