"""Lesson 11's experiments: one small GPT trained three ways (causal, masked, prefix LM) on the same
tokens, then each model measured at what the others are good at. demo.py calls these in order; each
function returns the numbers it measured (and the demo draws the figures from them).

The three objectives share everything but two choices: which positions carry a loss, and which keys
a query may see (the GPT's `causal` flag and `attn_mask=`). `ObjectiveModel` wraps a lab GPT so that
the shared training loop (`llmlab.utils.train`) trains any of them: `forward(x, aux) -> (logits, loss)`.
"""

from __future__ import annotations

import copy
import math
import random
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from llmlab.pretraining_objectives.objectives import (
    causal_lm_loss,
    mask_tokens,
    masked_lm_loss,
    prefix_lm_loss,
    prefix_lm_mask,
)
from llmlab.tokenization import BPETokenizer
from llmlab.transformer_block import GPT, gpt2_config, trace
from llmlab.transformer_block.pretrained import lab_tokenizer
from llmlab.utils import TrainConfig, encode, get_batch, load_corpus, make_optimizer, train, train_val_split
from llmlab.utils.losses import cross_entropy
from llmlab.utils.stories import generate_story_with_facts

OBJECTIVES = ("clm", "mlm", "prefix")
NAMES = {"clm": "causal LM", "mlm": "masked LM", "prefix": "prefix LM"}
MASK = "[MASK]"


# ------------------------------------------------------------------------------------------------
# data: lesson 01's BPE with a [MASK] token added the lesson-01 way (a special token after the merges)


def with_mask_token(tokenizer: BPETokenizer) -> BPETokenizer:
    """The same merges plus "[MASK]" as a special token with the next free id (len(vocab))."""
    specials = dict(tokenizer.special_tokens)
    specials.setdefault(MASK, len(tokenizer.vocab))
    return BPETokenizer(tokenizer.merges, pattern=tokenizer.pattern, special_tokens=specials,
                        byte_shuffle=tokenizer.byte_shuffle)


def load_data(cfg: dict, corpus: str, seed: int) -> dict:
    """The corpus in lesson 01's BPE (+ [MASK]), split 90/10, and the unigram model's held-out loss."""
    text = load_corpus(corpus, cfg["n_chars"], seed=seed)
    tokenizer = with_mask_token(lab_tokenizer(text, cfg["vocab_size"]))
    train_text, val_text = train_val_split(text, 0.1)
    train_ids, val_ids = encode(train_text, tokenizer), encode(val_text, tokenizer)
    # the no-context baseline: every token predicted with its training frequency (add-one smoothed)
    counts = torch.bincount(train_ids, minlength=len(tokenizer.vocab)).double() + 1.0
    unigram = float(-(counts / counts.sum()).log()[val_ids].mean())
    return dict(tokenizer=tokenizer, mask_id=tokenizer.special_tokens[MASK], vocab_size=len(tokenizer.vocab),
                train=train_ids, val=val_ids, unigram_loss=unigram)


# ------------------------------------------------------------------------------------------------
# one model, three objectives


@dataclass(frozen=True)
class Recipe:
    """What an objective trains on: the masking of the masked LM, and whether its attention is causal."""

    objective: str  # "clm", "mlm" or "prefix"
    mask_rate: float = 0.15  # masked LM: the fraction of positions selected
    mask_replace_prob: float = 0.8  # of the selected: [MASK]; random_replace_prob is half the rest
    causal: bool | None = None  # None: causal for clm / prefix (prefix via attn_mask), bidirectional for mlm

    @property
    def is_causal(self) -> bool:
        return self.objective != "mlm" if self.causal is None else self.causal

    @property
    def random_replace_prob(self) -> float:
        return (1.0 - self.mask_replace_prob) / 2


class ObjectiveModel(nn.Module):
    """A lab GPT and an objective: `forward(x, aux) -> (logits, loss)`, the shape the training loop wants.

    clm:    x (B, T) ids, aux unused; loss = causal_lm_loss (every next token)
    mlm:    x (B, T) the masked input, aux (B, T) labels (-100 off the selection); loss = masked_lm_loss
    prefix: x (B, T) ids, aux (B,) prefix lengths; attention through prefix_lm_mask; loss on the suffix
    """

    def __init__(self, gpt: GPT, recipe: Recipe):
        super().__init__()
        self.gpt, self.recipe = gpt, recipe

    def forward(self, x: Tensor, aux: Tensor) -> tuple[Tensor, Tensor]:
        kind = self.recipe.objective
        if kind == "prefix":
            logits, _ = self.gpt(x, attn_mask=prefix_lm_mask(aux, x.shape[1]).to(x.device))
            return logits, prefix_lm_loss(logits, x, aux)
        logits, _ = self.gpt(x)
        return logits, (causal_lm_loss(logits, x) if kind == "clm" else masked_lm_loss(logits, aux))


def batch_fn(data: Tensor, cfg: dict, recipe: Recipe, vocab_size: int, mask_id: int):
    """Batches for `recipe` from 1-D token ids: the same windows (the same generator draws) for every
    objective, then the objective's own masking or prefix lengths (drawn from the same generator)."""

    def make(generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x, _ = get_batch(data, cfg["batch_size"], cfg["block_size"], generator=generator)
        if recipe.objective == "mlm":
            return mask_tokens(x, vocab_size=vocab_size, mask_token_id=mask_id,
                               mlm_probability=recipe.mask_rate,
                               mask_replace_prob=recipe.mask_replace_prob,
                               random_replace_prob=recipe.random_replace_prob, special_token_ids=(mask_id,),
                               generator=generator)
        if recipe.objective == "prefix":  # T5: split each window at a uniformly drawn point
            return x, torch.randint(1, x.shape[1], (x.shape[0],), generator=generator)
        return x, torch.zeros(x.shape[0], dtype=torch.long)

    return make


def model_config(cfg: dict, vocab_size: int, recipe: Recipe):
    return gpt2_config(vocab_size=vocab_size, block_size=cfg["block_size"], n_layer=cfg["n_layer"],
                       n_head=cfg["n_head"], d_model=cfg["d_model"], causal=recipe.is_causal,
                       pos=cfg.get("pos", "learned"))


def train_objective(cfg: dict, data: dict, recipe: Recipe, *, seed: int, device) -> dict:
    """Train one GPT on `recipe` with the shared loop; the same windows at the same seed for every recipe."""
    torch.manual_seed(seed)
    model = ObjectiveModel(GPT(model_config(cfg, data["vocab_size"], recipe)), recipe)
    args = (cfg, recipe, data["vocab_size"], data["mask_id"])
    tc = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], block_size=cfg["block_size"],
                     lr=cfg["lr"], warmup_steps=cfg["warmup"], eval_interval=max(1, cfg["steps"] // 8),
                     eval_iters=cfg["eval_iters"])
    history = train(model, None, None, tc, device=device, seed=seed, progress=False,
                    batch_fn=batch_fn(data["train"], *args), val_batch_fn=batch_fn(data["val"], *args))
    share = {"clm": (cfg["block_size"] - 1) / cfg["block_size"], "mlm": recipe.mask_rate,
             "prefix": (cfg["block_size"] - 1) / 2 / cfg["block_size"]}[recipe.objective]
    return dict(model=model, gpt=model.gpt, recipe=recipe, seed=seed, history=history,
                predicted_share=share)


# ------------------------------------------------------------------------------------------------
# measurements on held-out text


def val_windows(data: dict, cfg: dict, n: int) -> Tensor:
    """n fixed held-out windows of block_size tokens (the same for every model)."""
    x, _ = get_batch(data["val"], n, cfg["block_size"], generator=torch.Generator().manual_seed(4321))
    return x


def _causal_token_losses(gpt: GPT, ids: Tensor) -> Tensor:
    """(B, T-1): -log p(ids[:, t] | ids[:, <t]) under the causal mask (even for a model trained without)."""
    T = ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
    logits, _ = gpt(ids, attn_mask=causal)
    losses = cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
    return losses.view(len(ids), -1)


def mlm_left_to_right(gpt: GPT, ids: Tensor, mask_id: int, positions) -> tuple[Tensor, Tensor]:
    """A masked LM used as a left-to-right model: to predict ids[:, t] it sees ids[:, <t] and a [MASK] at
    t (keys > t hidden). Returns (losses, argmax) of shape (B, len(positions))."""
    B, T = ids.shape
    losses, guesses = [], []
    for t in positions:
        x = ids.clone()
        x[:, t] = mask_id
        visible = torch.zeros(T, T, dtype=torch.bool, device=ids.device)
        visible[:, : t + 1] = True  # every query sees keys 0..t (bidirectionally); the future is hidden
        logits, _ = gpt(x, attn_mask=visible)
        losses.append(cross_entropy(logits[:, t], ids[:, t], reduction="none"))
        guesses.append(logits[:, t].argmax(-1))
    return torch.stack(losses, 1), torch.stack(guesses, 1)


@torch.no_grad()
def next_token_loss(run: dict, windows: Tensor, mask_id: int, positions) -> float:
    """Held-out next-token loss (nats) at `positions`: what generation needs. The causal and prefix LMs read
    it off one causal pass; the masked LM predicts each position from its left context plus a [MASK]."""
    gpt = run["gpt"].eval()
    if run["recipe"].objective == "mlm":
        return float(mlm_left_to_right(gpt, windows, mask_id, positions)[0].mean())
    return float(_causal_token_losses(gpt, windows)[:, [t - 1 for t in positions]].mean())


@torch.no_grad()
def fill_in(run: dict, windows: Tensor, mask_id: int) -> dict:
    """Fill in the middle token of each window (top-1 accuracy and loss). The masked LM sees both sides
    of the blank (and, as a control, the left side only); the causal and prefix LMs can only use the left."""
    gpt, t = run["gpt"].eval(), windows.shape[1] // 2
    if run["recipe"].objective == "mlm":
        x = windows.clone()
        x[:, t] = mask_id
        logits, _ = gpt(x, attn_mask=torch.ones(x.shape[1], x.shape[1], dtype=torch.bool))
        loss, guess = cross_entropy(logits[:, t], windows[:, t], reduction="none"), logits[:, t].argmax(-1)
        left_loss, left_guess = mlm_left_to_right(gpt, windows, mask_id, [t])
        return dict(accuracy=float((guess == windows[:, t]).float().mean()), loss=float(loss.mean()),
                    left_only_accuracy=float((left_guess[:, 0] == windows[:, t]).float().mean()),
                    left_only_loss=float(left_loss.mean()))
    if run["recipe"].objective == "prefix":  # the left context as a bidirectional prefix
        logits, _ = gpt(windows, attn_mask=prefix_lm_mask([t] * len(windows), windows.shape[1]))
    else:
        logits, _ = gpt(windows)
    loss = cross_entropy(logits[:, t - 1], windows[:, t], reduction="none")
    accuracy = float((logits[:, t - 1].argmax(-1) == windows[:, t]).float().mean())
    return dict(accuracy=accuracy, loss=float(loss.mean()))


@torch.no_grad()
def copy_accuracy(run: dict, windows: Tensor) -> float:
    """Top-1 accuracy of predicting each token of an input WITHOUT [MASK] at its own position (the input a
    fine-tuned encoder sees): 80/10/10 trains it (the 10% kept), 100%-[MASK] never does."""
    logits, _ = run["gpt"].eval()(windows)
    return float((logits.argmax(-1) == windows).float().mean())


@torch.no_grad()
def masked_loss_at(run: dict, windows: Tensor, data: dict, rate: float = 0.15) -> float:
    """The masked-LM loss on held-out windows masked at `rate` (80/10/10), the same masks for every model."""
    inputs, labels = mask_tokens(windows, vocab_size=data["vocab_size"], mask_token_id=data["mask_id"],
                                 mlm_probability=rate, special_token_ids=(data["mask_id"],),
                                 generator=torch.Generator().manual_seed(99))
    logits, _ = run["gpt"].eval()(inputs)
    return float(masked_lm_loss(logits, labels))


@torch.no_grad()
def prefix_sweep(run: dict, windows: Tensor, prefix_lengths) -> dict:
    """Suffix loss (tokens t >= P) for each prefix length P: with the prefix read bidirectionally
    (prefix_lm_mask) and with the plain causal mask, on the same suffix tokens."""
    gpt = run["gpt"].eval()
    causal = _causal_token_losses(gpt, windows)  # (B, T-1): loss of token t at column t-1
    out = {"bidirectional": [], "causal": []}
    for p in prefix_lengths:
        logits, _ = gpt(windows, attn_mask=prefix_lm_mask([p] * len(windows), windows.shape[1]))
        out["bidirectional"].append(float(prefix_lm_loss(logits, windows, [p] * len(windows))))
        out["causal"].append(float(causal[:, max(p, 1) - 1:].mean()))
    return out


# ------------------------------------------------------------------------------------------------
# linear probes on frozen representations


def probe_sentences(tokenizer, n: int, seed: int = 10_000) -> dict:
    """Held-out sentences (stories drawn with another seed than the corpus) and two labels the story
    generator knows: the story's arc (the sentence's event type, 10 kinds) and the gender of the one
    character a sentence refers to (female / male / a pair)."""
    rng = random.Random(seed)
    arcs, who = [], []
    while len(arcs) < n or len(who) < n:
        _, facts = generate_story_with_facts(rng)
        gender = {c.role: c.gender for c in facts.characters}
        for sentence, roles in zip(facts.sentences, facts.sentence_roles):
            ids = tokenizer.encode(sentence)
            if len(arcs) < n:
                arcs.append((ids, facts.arc))
            if len(roles) == 1 and len(who) < n:
                who.append((ids, gender[roles[0]]))
    return {"event type": arcs, "character": who}


@torch.no_grad()
def sentence_features(run: dict, sentences: list[list[int]], block_size: int, batch: int = 64) -> np.ndarray:
    """Mean over its tokens of the final normed hidden state (what the LM head reads), one row per sentence.
    The masked and prefix LMs read the whole sentence bidirectionally (the prefix LM: all of it as prefix),
    the causal LM causally; right padding is never attended to."""
    gpt = run["gpt"].eval()
    bidirectional = run["recipe"].objective != "clm"
    rows = []
    for i in range(0, len(sentences), batch):
        chunk = [s[:block_size] for s in sentences[i: i + batch]]
        lengths = torch.tensor([len(s) for s in chunk])
        T = int(lengths.max())
        ids = torch.zeros(len(chunk), T, dtype=torch.long)
        for b, s in enumerate(chunk):
            ids[b, : len(s)] = torch.tensor(s)
        real = torch.arange(T)[None, :] < lengths[:, None]  # (B, T)
        visible = real[:, None, :].expand(-1, T, -1)  # key j real
        if not bidirectional:
            visible = visible & torch.ones(T, T, dtype=torch.bool).tril()
        visible = visible | torch.eye(T, dtype=torch.bool)  # a padded query sees itself: no empty rows
        _, recorded = trace(gpt, ids, attn_mask=visible)
        h = gpt.norm_f(recorded.hidden[-1])  # (B, T, d_model)
        rows.append(((h * real[..., None]).sum(1) / lengths[:, None]).numpy())
    return np.concatenate(rows)


def probe_accuracy(features: np.ndarray, labels: list[str], seed: int = 0) -> float:
    """Held-out accuracy of a logistic regression on standardised features (75/25 split, fixed)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, xte, ytr, yte = train_test_split(features, labels, test_size=0.25, random_state=seed,
                                          stratify=labels)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    return float(clf.fit(xtr, ytr).score(xte, yte))


def probe_all(run: dict, tasks: dict, block_size: int) -> dict:
    return {task: probe_accuracy(sentence_features(run, [s for s, _ in items], block_size),
                                 [label for _, label in items]) for task, items in tasks.items()}


def untrained_run(cfg: dict, data: dict) -> dict:
    """A randomly initialised bidirectional GPT of the same size: the floor a probe must beat."""
    torch.manual_seed(0)
    recipe = Recipe("mlm")
    return dict(gpt=GPT(model_config(cfg, data["vocab_size"], recipe)).eval(), recipe=recipe)


def remember(run: dict, name: str, fn, *args):
    """fn(*args), computed once per run (the probes and fill-in serve experiments 4 and 5)."""
    if name not in run:
        run[name] = fn(*args)
    return run[name]


def majority_share(items) -> float:
    labels = [label for _, label in items]
    return max(labels.count(v) for v in set(labels)) / len(labels)


# ------------------------------------------------------------------------------------------------
# greedy continuations: how each objective generates


@torch.no_grad()
def continue_greedy(run: dict, prompt: list[int], n: int, mask_id: int) -> list[int]:
    """n greedy tokens after `prompt`. Causal LM: the usual loop. Prefix LM: the prompt is the
    bidirectional prefix. Masked LM: append a [MASK], take its argmax, replace it, repeat (bidirectional)."""
    gpt, kind = run["gpt"].eval(), run["recipe"].objective
    ids = list(prompt)
    for _ in range(n):
        x = torch.tensor([ids + [mask_id]] if kind == "mlm" else [ids])
        T = x.shape[1]
        if kind == "prefix":
            logits, _ = gpt(x, attn_mask=prefix_lm_mask([len(prompt)], T))
        elif kind == "mlm":
            logits, _ = gpt(x, attn_mask=torch.ones(T, T, dtype=torch.bool))
        else:
            logits, _ = gpt(x)
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


def distinct_share(ids: list[int]) -> float:
    """Distinct tokens / tokens: low when a generator repeats itself."""
    return len(set(ids)) / max(len(ids), 1)


def step_costs(runs: dict, cfg: dict, data: dict, reps: int) -> dict:
    """Milliseconds of one training step (forward, backward, an AdamW update on a copy) per objective: the
    median of `reps` steps taken round-robin, one objective after the other, so that load from other
    programs falls on all of them alike. runs: {objective: run}."""
    setups = {}
    for o, run in runs.items():
        model = copy.deepcopy(run["model"]).train()
        make = batch_fn(data["train"], cfg, run["recipe"], data["vocab_size"], data["mask_id"])
        optimizer = make_optimizer(model, TrainConfig(lr=cfg["lr"]))
        setups[o] = (model, optimizer, make(torch.Generator().manual_seed(7)))
    times = {o: [] for o in runs}
    for _ in range(reps):
        for o, (model, optimizer, (x, aux)) in setups.items():
            start = time.perf_counter()
            _, loss = model(x, aux)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times[o].append(1000 * (time.perf_counter() - start))
    return {o: statistics.median(t) for o, t in times.items()}


def loss_at_time(history, seconds: float, step_ms: float) -> float:
    """The held-out loss after `seconds` of training at `step_ms` per step (interpolated between evals)."""
    return float(np.interp(1000 * seconds / step_ms, history.eval_steps, history.val_loss))


def mean_sd(values) -> tuple[float, float]:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan
