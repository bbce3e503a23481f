"""Lesson 16's measurements: corpora built from real, synthetic, duplicated, leaked and noisy documents, small
character-level GPTs trained on them with the shared loop, and what each model and each dedup step does.
demo.py calls these in order; each function returns numbers (the demo prints them and draws the figures).

Every model here reads characters (`CharTokenizer`, one id per character), so "equal tokens" means equal
characters and noise of rate r edits r of the tokens. Every model has the same size and is trained for the
same steps of the same batch shape: the corpora differ, nothing else.
"""

from __future__ import annotations

import math
import random
import statistics
import string
import time
from collections import Counter

import torch

from llmlab.kv_cache import generate  # lesson 06: cached greedy / top-p sampling
from llmlab.synthetic_data.dedup import (
    MinHash,
    MinHashLSH,
    candidate_pairs,
    contaminated,
    exact_dedup,
    jaccard,
    near_dedup,
    ngram_overlap,
    s_curve,
    shingles,
    words,
)
from llmlab.synthetic_data.generate import add_noise, model_samples, real_documents, template_stories
from llmlab.transformer_block import GPT, gpt2_config
from llmlab.utils import CharTokenizer, TrainConfig, encode, get_batch, train

SEPARATOR = "\n\n"  # between documents of a corpus


# ------------------------------------------------------------------------------------------------ data
def load_data(cfg: dict, corpus: str, seed: int) -> dict:
    """Real documents (shuffled, split into train / val), template stories of the same size, one tokenizer.

    train: the real training documents, about cfg["train_chars"] characters; val: held-out real documents;
    stories / stories_val: template stories (the synthetic corpus) of the same size, and held out.
    """
    docs = real_documents(corpus, max_chars=cfg["real_chars"], seed=seed)
    random.Random(seed).shuffle(docs)
    val = docs[: cfg["val_docs"]]
    train_docs, total = [], 0
    for doc in docs[cfg["val_docs"]:]:
        if total >= cfg["train_chars"]:
            break
        train_docs.append(doc)
        total += len(doc) + len(SEPARATOR)
    spare = docs[cfg["val_docs"] + len(train_docs):]  # real documents no model trains on
    stories = fill(template_stories(4 * len(train_docs) + 50, seed=seed), total)
    stories_val = template_stories(cfg["val_docs"], seed=seed + 10_000)
    every_char = "".join(docs) + "".join(stories) + "".join(stories_val) + SEPARATOR
    return dict(train=train_docs, val=val, spare=spare, stories=stories, stories_val=stories_val,
                tokenizer=CharTokenizer.from_text(every_char), train_chars=total)


def fill(docs: list[str], chars: int) -> list[str]:
    """The first documents of `docs` that together hold about `chars` characters (with separators)."""
    out, total = [], 0
    for doc in docs:
        if total >= chars:
            break
        out.append(doc)
        total += len(doc) + len(SEPARATOR)
    return out


def ids_of(docs: list[str], tokenizer) -> torch.Tensor:
    return encode(SEPARATOR.join(docs) + SEPARATOR, tokenizer)


# --------------------------------------------------------------------------------------- training
def train_lm(cfg: dict, docs: list[str], data: dict, *, seed: int, device,
             input_docs: list[str] | None = None) -> dict:
    """A fresh GPT trained on `docs` (concatenated) with the shared loop; the curve is held-out real loss.

    input_docs: the same documents with some characters substituted (same lengths): the model reads them
    and predicts the next character of `docs` (noise injection: corrupted inputs, clean targets).
    """
    tok = data["tokenizer"]
    torch.manual_seed(seed)
    model = GPT(gpt2_config(vocab_size=tok.vocab_size, block_size=cfg["block_size"], n_layer=cfg["n_layer"],
                            n_head=cfg["n_head"], d_model=cfg["d_model"]))
    tc = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], block_size=cfg["block_size"],
                     lr=cfg["lr"], warmup_steps=max(1, cfg["steps"] // 10),
                     eval_interval=max(1, cfg["steps"] // 6), eval_iters=cfg["eval_iters"], torch_optim=True)
    targets, val = ids_of(docs, tok), ids_of(data["val"], tok)
    if input_docs is None:
        history = train(model, targets, val, tc, device=device, seed=seed, progress=False)
    else:
        inputs = ids_of(input_docs, tok)
        if inputs.shape != targets.shape:
            raise ValueError("input_docs must have the lengths of docs (substitutions only)")
        T, B = cfg["block_size"], cfg["batch_size"]

        def batch(generator):  # the windows of get_batch: x from the noisy text, y from the clean one
            starts = torch.randint(len(targets) - T, (B,), generator=generator)
            at = starts[:, None] + torch.arange(T)  # (B, T)
            return inputs[at], targets[at + 1]

        history = train(model, None, None, tc, device=device, seed=seed, progress=False, batch_fn=batch,
                        val_batch_fn=lambda g: get_batch(val, B, T, generator=g))
    return dict(model=model.eval(), history=history, seed=seed, docs=docs)


@torch.no_grad()
def text_loss(model: GPT, docs: list[str], tokenizer, block_size: int, batch: int = 64,
              input_docs: list[str] | None = None) -> float:
    """Mean next-character loss (nats) over all of `docs`, cut into consecutive windows (deterministic).
    input_docs: what the model reads instead (the same lengths, e.g. with substitutions); the targets stay
    `docs`."""
    ids = ids_of(docs, tokenizer)
    source = ids if input_docs is None else ids_of(input_docs, tokenizer)
    if source.shape != ids.shape:
        raise ValueError("input_docs must have the lengths of docs (substitutions only)")
    n = (len(ids) - 1) // block_size
    x = source[: n * block_size].view(n, block_size)  # (n, T)
    y = ids[1: n * block_size + 1].view(n, block_size)
    device = next(model.parameters()).device
    total = 0.0
    for i in range(0, n, batch):
        _, loss = model(x[i: i + batch].to(device), y[i: i + batch].to(device))
        total += float(loss) * len(x[i: i + batch])
    return total / n


def paired(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b)]


def mean_sd(values) -> tuple[float, float]:
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def summary(values: list[float]) -> dict:
    """A measurement at every seed: the values, their mean and standard deviation."""
    mean, sd = mean_sd(values)
    return dict(per_seed=values, mean=mean, sd=sd)


# ------------------------------------------------------------------------------- 2. duplication
def duplicated_corpus(train_docs: list[str], rate: float, *, n_sources: int, seed: int) -> tuple[list, list]:
    """The same number of documents as `train_docs`, a fraction `rate` of them copies of `n_sources` documents
    (half exact, half with one character in 500 replaced by a letter: exact dedup misses those).
    Returns (corpus, sources)."""
    rng = random.Random(seed)
    sources = train_docs[:n_sources]
    n_copies = round(rate * len(train_docs))
    if n_copies <= n_sources:
        return list(train_docs), sources
    copies = [sources[i % n_sources] if i % 2 == 0 else
              add_noise(sources[i % n_sources], rate=0.002, kinds=("substitute",),
                        alphabet=string.ascii_lowercase, seed=seed + i)
              for i in range(n_copies - n_sources)]
    corpus = sources + train_docs[n_sources: len(train_docs) - len(copies)] + copies
    rng.shuffle(corpus)
    return corpus, sources


def dedup_corpus(docs: list[str], *, threshold: float, num_perm: int) -> tuple[list[str], dict]:
    """Exact dedup, then MinHash-LSH near dedup of what is left; the kept documents and the counts removed."""
    exact = exact_dedup(docs)
    after_exact = [docs[i] for i in exact]
    kept, _ = near_dedup(after_exact, threshold=threshold, num_perm=num_perm)
    return [after_exact[i] for i in kept], dict(docs=len(docs), removed_exact=len(docs) - len(exact),
                                                removed_near=len(exact) - len(kept), kept=len(kept))


@torch.no_grad()
def memorisation(model: GPT, docs: list[str], tokenizer, *, prompt_chars: int, new_chars: int,
                 per_doc: int) -> dict:
    """Prompt with `prompt_chars` characters of each training document (at `per_doc` offsets), continue
    greedily for `new_chars`: the share of continuations that reproduce the document verbatim, and the
    share of characters that match."""
    prompts, truths = [], []
    for doc in docs:
        span = prompt_chars + new_chars
        if len(doc) < span:
            continue
        for k in range(per_doc):
            start = (len(doc) - span) * k // max(per_doc - 1, 1)
            prompts.append(tokenizer.encode(doc[start: start + prompt_chars]))
            truths.append(tokenizer.encode(doc[start + prompt_chars: start + span]))
    device = next(model.parameters()).device
    out = generate(model, torch.tensor(prompts, device=device), new_chars, temperature=0.0)
    new = out[:, prompt_chars:].cpu()
    truth = torch.tensor(truths)
    return dict(verbatim=float((new == truth).all(1).float().mean()),
                char_match=float((new == truth).float().mean()),
                prompts=len(prompts))


# --------------------------------------------------------------------------- 3. near-dup detection
def planted_near_duplicates(docs: list[str], n_variants: int, rates: list[float], seed: int) -> list[str]:
    """`docs` plus `n_variants` edited copies (typo rate drawn from `rates`, 2% of words dropped in a third
    of them), so that pairs cover the whole range of Jaccard similarity."""
    rng = random.Random(seed)
    out = list(docs)
    for k in range(n_variants):
        source = docs[rng.randrange(len(docs))]
        out.append(add_noise(source, rate=rates[k % len(rates)], word_drop=0.02 if k % 3 == 2 else 0.0,
                             seed=seed + k))
    return out


def detection(docs: list[str], *, threshold: float, num_perm: int, ngram: int) -> dict:
    """Brute-force Jaccard of all pairs vs MinHash-LSH: precision / recall of the candidates and of the
    verified pairs, and the measured S-curve (share of pairs that became candidates, by Jaccard bin)."""
    sets = [shingles(d, ngram) for d in docs]
    all_pairs = {(i, j): jaccard(sets[i], sets[j]) for i in range(len(docs)) for j in range(i + 1, len(docs))}
    truth = {p for p, s in all_pairs.items() if s >= threshold}
    signatures = [MinHash.from_set(s, num_perm) for s in sets]
    lsh = MinHashLSH(threshold, num_perm)
    candidates = set(candidate_pairs(signatures, threshold=threshold))
    verified = {p for p in candidates if all_pairs[p] >= threshold}
    edges = [i / 10 for i in range(11)]
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = [p for p, s in all_pairs.items() if lo <= s < hi or (hi == 1.0 and s == 1.0)]
        if lo == 0.0:  # the mass of unrelated pairs (J ~ 0): a sample of them is enough
            inside = inside[:: max(1, len(inside) // 20_000)]
        if inside:
            mids = statistics.fmean(all_pairs[p] for p in inside)
            bins.append(dict(low=lo, high=hi, pairs=len(inside), mean_jaccard=mids,
                             measured=sum(p in candidates for p in inside) / len(inside),
                             predicted=statistics.fmean(s_curve(all_pairs[p], lsh.bands, lsh.rows)
                                                        for p in inside)))

    def pr(found: set) -> dict:
        hit = len(found & truth)
        return dict(precision=hit / len(found) if found else math.nan,
                    recall=hit / len(truth) if truth else math.nan, pairs=len(found))

    return dict(docs=len(docs), all_pairs=len(all_pairs), true_pairs=len(truth), bands=lsh.bands,
                rows=lsh.rows, candidates=pr(candidates), verified=pr(verified), s_curve=bins)


def timing(docs: list[str], sizes: list[int], *, threshold: float, num_perm: int, ngram: int) -> dict:
    """Seconds for all-pairs Jaccard vs the MinHash-LSH pipeline (shingles excluded from neither)."""
    brute, lsh = [], []
    for n in sizes:
        part = docs[:n]
        t0 = time.perf_counter()
        sets = [shingles(d, ngram) for d in part]
        [jaccard(sets[i], sets[j]) >= threshold for i in range(n) for j in range(i + 1, n)]
        brute.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        near_dedup(part, threshold=threshold, num_perm=num_perm, ngram=ngram)
        lsh.append(time.perf_counter() - t0)

    def slope(ys):  # the exponent k of time ~ n^k, least squares on the log-log points
        xs, ys = [math.log(n) for n in sizes], [math.log(max(y, 1e-6)) for y in ys]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)

    return dict(sizes=sizes, brute_s=brute, lsh_s=lsh, brute_exponent=slope(brute), lsh_exponent=slope(lsh))


# ------------------------------------------------------------------------------------- 4. leakage
def leaked_split(data: dict, share: float, seed: int) -> tuple[list[str], list[bool]]:
    """The validation set with a fraction `share` of its documents replaced by near-copies of training
    documents (one character in 500 replaced by a letter). Returns (docs, is_leaked)."""
    rng = random.Random(seed)
    n_leak = round(share * len(data["val"]))
    leaked = [add_noise(data["train"][rng.randrange(len(data["train"]))], rate=0.002, kinds=("substitute",),
                        alphabet=string.ascii_lowercase, seed=seed + k) for k in range(n_leak)]
    docs = leaked + data["val"][n_leak:]
    flags = [True] * n_leak + [False] * (len(docs) - n_leak)
    order = list(range(len(docs)))
    rng.shuffle(order)
    return [docs[i] for i in order], [flags[i] for i in order]


def cross_split_dedup(train_docs: list[str], val_docs: list[str], *, threshold: float, num_perm: int,
                      ngram: int) -> list[bool]:
    """For each val document: does a training document have Jaccard >= threshold with it (LSH candidates,
    verified exactly)? Those are removed from the validation set."""
    train_sets = [shingles(d, ngram) for d in train_docs]
    index = MinHashLSH(threshold, num_perm)
    for i, s in enumerate(train_sets):
        index.insert(i, MinHash.from_set(s, num_perm))
    flags = []
    for doc in val_docs:
        s = shingles(doc, ngram)
        candidates = index.query(MinHash.from_set(s, num_perm))
        flags.append(any(jaccard(s, train_sets[i]) >= threshold for i in candidates))
    return flags


def ngram_flags(train_docs: list[str], val_docs: list[str], n: int) -> list[bool]:
    """GPT-3's check per validation document: does it share a word n-gram with the training documents?"""
    return contaminated(train_docs, val_docs, n=n)


def false_alarm_rate(train_docs: list[str], fresh_docs: list[str], n: int) -> float:
    """The share of documents that no training document copies but that the n-gram check flags anyway."""
    return ngram_overlap(train_docs, fresh_docs, n=n)


# ---------------------------------------------------------------------------------- 6. model collapse
def text_stats(text: str, reference: Counter, n_words: int, vocabulary: set[str] | None = None) -> dict:
    """Distinct words in the first `n_words` words (and how many of them are words of `vocabulary`, the real
    text's), their unigram entropy (bits), the character entropy (bits), and the share of characters that
    are rare in the real text (`reference`: its character counts)."""
    ws = words(text)[:n_words]
    counts = Counter(ws)
    total = sum(counts.values()) or 1
    chars = Counter(text)
    n_chars = sum(chars.values()) or 1
    ref_total = sum(reference.values())
    rare = {c for c, k in reference.items() if k / ref_total < 0.002}
    return dict(distinct_words=len(counts), words=total,
                real_words=len(set(counts) & vocabulary) if vocabulary is not None else len(counts),
                word_entropy=-sum(k / total * math.log2(k / total) for k in counts.values()),
                char_entropy=-sum(k / n_chars * math.log2(k / n_chars) for k in chars.values()),
                rare_char_share=sum(k for c, k in chars.items() if c in rare) / n_chars,
                distinct_chars=len(chars))


def sample_corpus(model: GPT, tokenizer, chars: int, *, block_size: int, top_p: float,
                  seed: int) -> list[str]:
    """About `chars` characters of samples, each a context long, prompted with the document separator."""
    per = block_size - len(SEPARATOR)
    n = max(1, chars // per)
    return [t.strip() for t in model_samples(model, tokenizer, n, prompt=SEPARATOR, max_new_tokens=per,
                                             temperature=1.0, top_p=top_p, batch_size=128, seed=seed)]


def unigram_loss(train_docs: list[str], val_docs: list[str], tokenizer) -> float:
    """Held-out loss (nats per character) of the no-context model: each character at its training frequency
    (add-one smoothed). A model that learned anything transferable from its corpus beats it on real text."""
    counts = torch.bincount(ids_of(train_docs, tokenizer), minlength=tokenizer.vocab_size).double() + 1.0
    return float(-(counts / counts.sum()).log()[ids_of(val_docs, tokenizer)].mean())


def collapse_chains(cfg: dict, data: dict, base_runs: list[dict], trained, loss, *, seed: int) -> dict:
    """Model collapse (Shumailov et al. 2024): generation 0 is `base_runs[0]` (trained on real text);
    generation g+1 trains on the samples of generation g, alone ("synthetic only") or with half the budget
    real text ("half real"). Per generation: the held-out real loss and `text_stats` of its samples. The
    noise of each statistic: the gap between the two halves of generation 0's samples; of the loss: the
    spread of `base_runs` (seeds). A change from generation 0 to the last counts ("shrinks"/"grows")
    beyond it."""
    tok, gen0 = data["tokenizer"], base_runs[0]
    reference = Counter("".join(data["train"]))
    vocabulary = set(words(" ".join(data["train"])))

    def stats(docs):
        return text_stats(SEPARATOR.join(docs), reference, cfg["stats_words"], vocabulary)

    def sample(run, g):
        return sample_corpus(run["model"], tok, data["train_chars"], block_size=cfg["block_size"],
                             top_p=cfg["top_p"], seed=seed + g)

    samples0 = sample(gen0, 0)
    half = len(samples0) // 2
    h1, h2 = stats(samples0[:half]), stats(samples0[half:])
    base_losses = [loss(r, data["val"]) for r in base_runs]
    out = dict(real=stats(data["train"][: len(data["train"]) // 2]),
               noise={k: abs(h1[k] - h2[k]) for k in h1},
               seed_spread=max(base_losses) - min(base_losses), chains={}, verdicts={})
    real_half = fill(data["train"], data["train_chars"] // 2)
    for chain in ("synthetic only", "half real"):
        rows = [dict(generation=0, real_val=base_losses[0], **h1)]
        samples = samples0
        for g in range(1, cfg["generations"] + 1):
            docs = samples if chain == "synthetic only" else \
                real_half + fill(samples, data["train_chars"] // 2)
            run = trained(docs, seed)
            samples = sample(run, g)
            first_half = stats(samples[: len(samples) // 2])
            rows.append(dict(generation=g, real_val=loss(run, data["val"]), **first_half))
        out["chains"][chain] = rows
        first, last = rows[0], rows[-1]
        noise = dict(out["noise"], real_val=out["seed_spread"])
        out["verdicts"][chain] = {k: ("shrinks" if first[k] - last[k] > noise[k] else
                                      "grows" if last[k] - first[k] > noise[k] else "no measurable change")
                                  for k in ("real_val", "distinct_words", "real_words", "word_entropy",
                                            "rare_char_share")}
    return out
