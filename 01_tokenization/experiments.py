"""The experiments of lesson 01's demo: each function measures one thing and returns its numbers.

`demo.py` runs them in order, draws each one's figure and prints its verdict; the numbers returned here
are what it writes into results.json. Sizes come from the demo's `settings(quick)`.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import torch

from llmlab.tokenization.bpe import (
    GPT4_SPLIT_PATTERN,
    BPETokenizer,
    bytes_per_token,
    hf_token_bytes,
    train_fast,
    train_hf_bpe,
    train_textbook,
)
from llmlab.tokenization.embeddings import (
    EmbeddingLM,
    cosine_similarity_matrix,
    group_similarity,
    nearest_neighbours,
    project_2d,
)
from llmlab.utils import TrainConfig, encode, load_corpus, train, train_val_split
from llmlab.utils import stories as story_grammar

DOMAINS = ("python-docs", "python-code", "stories")
# Candidate groups of related words in the stories corpus; the demo keeps those that are single tokens.
WORD_GROUPS = {
    "pronouns": ["he", "she", "they", "we", "you", "it", "I"],
    "girls' names": list(story_grammar.GIRL_NAMES),
    "boys' names": list(story_grammar.BOY_NAMES),
    "speech verbs": ["said", "asked", "shouted", "cried", "whispered", "replied", "laughed", "called"],
    "places": [place[0] for place in story_grammar.PLACES] + ["town", "house", "school"],
    "times": ["morning", "day", "night", "afternoon", "evening", "week", "summer"],
    "colours": list(story_grammar.COLORS),
    "feelings": ["happy", "sad", "scared", "proud", "worried", "excited", "brave", "afraid"],
}


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), its seconds): how the training-time experiments measure."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def loglog_slope(x, y) -> float:
    """The exponent p of y ~ x^p, fitted on log-log axes."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def load_data(cfg: dict, train_corpus: str, seed: int) -> dict:
    """Training text for the tokenizer, and held-out text of each domain (never seen in training).

    Every domain is cut at the same place, so the held-out texts are the same whichever corpus the
    tokenizer is trained on (--train-corpus) and the runs can be compared. A text file given as
    --train-corpus is cut the same way, or 90% / 10% when it is shorter.
    """
    data = {}
    for name in DOMAINS:
        text = load_corpus(name, cfg["train_chars"] + cfg["heldout_chars"], seed=seed)
        if name == train_corpus:
            data["train"] = text[: cfg["train_chars"]]
        data[name] = text[cfg["train_chars"]:]
    if train_corpus not in DOMAINS:  # the user's file
        text = load_corpus(train_corpus, cfg["train_chars"] + cfg["heldout_chars"], seed=seed)
        cut = min(cfg["train_chars"], int(0.9 * len(text)))
        data["train"], data[train_corpus] = text[:cut], text[cut:]
    return data


# ------------------------------------------------------------------------------------------------
# 1-5: the tokenizer


def compression_vs_merges(tokenizer: BPETokenizer, checkpoints: list[int], train_text: str,
                          heldout: str) -> dict:
    """Bytes per token after the first k merges, on held-out text and on as much training text."""
    merges = list(tokenizer.merges.items())
    ks = [k for k in checkpoints if k <= len(merges)]
    train_piece = train_text[: len(heldout)]
    held, seen = [], []
    for k in ks:
        partial = BPETokenizer(dict(merges[:k]), pattern=tokenizer.pattern)  # the tokenizer after k merges
        held.append(bytes_per_token(partial, heldout))
        seen.append(bytes_per_token(partial, train_piece))
    # diminishing returns: the compression each merge adds, between consecutive checkpoints
    per_100 = [100 * (h2 - h1) / (k2 - k1) for k1, k2, h1, h2 in zip(ks, ks[1:], held, held[1:])]
    knee = next((k for k, gain in zip(ks[1:], per_100[1:]) if gain < per_100[0] / 10), None)
    drop = per_100[0] / per_100[-1] if per_100[-1] > 0 else float("inf")
    return {"merges": ks, "heldout_bytes_per_token": held, "train_bytes_per_token": seen,
            "gain_per_100_merges": per_100, "knee_merges": knee, "first_over_last_gain": drop,
            "monotone": all(b >= a for a, b in zip(held, held[1:])), "diminishing_returns": drop > 4}


def compare_tokenizers(tokenizers: dict, ours: BPETokenizer, hf, data: dict) -> dict:
    """Bytes per token of each tokenizer (label -> tokenizer) on each held-out domain, and the share of
    our merged tokens that HF's trainer also learned."""
    table = {label: [bytes_per_token(tok, data[d]) for d in DOMAINS] for label, tok in tokenizers.items()}
    hf_tokens = hf_token_bytes(hf)
    shared = sum(ours.vocab[i] in hf_tokens for i in ours.merges.values()) / len(ours.merges)
    ours_label, _, cl_label = list(table)
    ratio = {d: table[cl_label][i] / table[ours_label][i] for i, d in enumerate(DOMAINS)}
    return {"bytes_per_token": {label: dict(zip(DOMAINS, v)) for label, v in table.items()},
            "shared_tokens_with_hf": shared, "cl100k_over_ours": ratio}


def training_time(cfg: dict, text: str) -> dict:
    """Training time as the corpus grows (fixed vocab) and as the merges grow (fixed corpus)."""
    vocab = cfg["time_vocab"]
    by_size = {"textbook": {}, "ours": {}, "HF tokenizers": {}}
    for size in sorted(set(cfg["time_sizes"]) | set(cfg["textbook_sizes"])):  # ours and HF at every size
        by_size["ours"][size] = timed(train_fast, text[:size], vocab)[1]
        by_size["HF tokenizers"][size] = timed(train_hf_bpe, text[:size], vocab)[1]
    identical = True
    for size in cfg["textbook_sizes"]:
        merges, by_size["textbook"][size] = timed(train_textbook, text[:size], vocab)
        identical &= list(merges.items()) == list(train_fast(text[:size], vocab).items())
    piece = text[: cfg["merge_chars"]]
    by_merges = {"textbook": {}, "ours": {}, "HF tokenizers": {}}
    for n in cfg["merge_counts"]:
        by_merges["textbook"][n] = timed(train_textbook, piece, 256 + n)[1]
        by_merges["ours"][n] = timed(train_fast, piece, 256 + n)[1]
        by_merges["HF tokenizers"][n] = timed(train_hf_bpe, piece, 256 + n)[1]
    slope_size = {k: loglog_slope(list(v), list(v.values())) for k, v in by_size.items()}
    # the cost of one more merge: the time difference between the most and the fewest merges, per merge
    lo, hi = min(cfg["merge_counts"]), max(cfg["merge_counts"])
    ms_per_merge = {k: 1000 * (v[hi] - v[lo]) / (hi - lo) for k, v in by_merges.items()}
    common = max(cfg["textbook_sizes"])
    speedup = by_size["textbook"][common] / by_size["ours"][common]
    return {"by_size_s": by_size, "by_merges_s": by_merges, "slope_vs_size": slope_size,
            "ms_per_merge": ms_per_merge, "textbook_speedup": speedup, "same_merges_as_textbook": identical}


def strip_sample(prose_corpus: str) -> str:
    """A short text that shows tokenization's corners: prose, indented code, accents, Cyrillic, symbols."""
    prose = prose_corpus.split("\n\n")[1][:150].strip()
    return f"{prose}\n    for i in range(10):  # naïve Привет ≠ 3.14159\n"


def zipf(tokenizer: BPETokenizer, text: str) -> tuple[dict, dict]:
    """Token frequency vs rank, and the fitted exponent s of f ~ rank^-s.

    Returns (the numbers, the curves to plot: counts by rank, the fitted slice and the fit's intercept).
    """
    counts = np.array(sorted(Counter(tokenizer.encode_ordinary(text)).values(), reverse=True), dtype=float)
    ranks = np.arange(1, len(counts) + 1)
    upper = max(20, int(np.searchsorted(-counts, -5)))  # fit where counts are >= 5, skipping the top 9
    fit = slice(9, upper)
    slope, intercept = np.polyfit(np.log(ranks[fit]), np.log(counts[fit]), 1)
    top10 = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    unused = tokenizer.vocab_size - len(tokenizer.special_tokens) - len(counts)
    numbers = {"zipf_exponent": float(slope), "top10pct_share": float(top10), "tokens_used": len(counts),
               "tokens_unused": unused}
    return numbers, {"ranks": ranks, "counts": counts, "fit": fit, "intercept": intercept}


def no_regex_break(cfg: dict, train_text: str, heldout: str) -> tuple[dict, int]:
    """--no-regex: train with pattern=None as well as with GPT-4's regex; merges cross word boundaries.

    Returns (the numbers, the number of merges of the tokenizer trained without the regex)."""
    text, vocab = train_text[: cfg["no_regex_chars"]], cfg["no_regex_vocab"]
    tokenizers, seconds = {}, {}
    for label, pattern in (("GPT-4 regex", GPT4_SPLIT_PATTERN), ("no regex", None)):
        tokenizers[label], seconds[label] = timed(BPETokenizer.train, text, vocab, pattern=pattern)
    table = {label: [bytes_per_token(tok, text), bytes_per_token(tok, heldout)]
             for label, tok in tokenizers.items()}
    raw = tokenizers["no regex"]
    crossing = sorted((raw.vocab[i] for i in raw.merges.values() if b" " in raw.vocab[i].strip(b" ")),
                      key=len, reverse=True)
    examples = [tok.decode("utf-8", "replace") for tok in crossing[:8]]
    return {"bytes_per_token": table, "crossing_merges": len(crossing), "longest_crossing": examples,
            "train_s": seconds}, len(raw.merges)


# ------------------------------------------------------------------------------------------------
# 6-8: embeddings


def embedding_data(cfg: dict, seed: int, *, shuffle_tokens: bool = False) -> dict:
    """Stories, BPE-encoded by a tokenizer trained on them, and the groups of related single tokens."""
    text = load_corpus("stories", cfg["story_chars"], seed=seed)
    train_text, val_text = train_val_split(text, 0.1)
    tokenizer = BPETokenizer.train(train_text, cfg["story_vocab"])
    train_ids, val_ids = encode(train_text, tokenizer), encode(val_text, tokenizer)
    if shuffle_tokens:  # break: the same tokens, without their contexts
        generator = torch.Generator().manual_seed(seed)
        train_ids = train_ids[torch.randperm(len(train_ids), generator=generator)]
    counts = torch.bincount(train_ids, minlength=tokenizer.vocab_size)
    groups = {}
    for name, words in WORD_GROUPS.items():
        ids = [tokenizer.encode(" " + w) for w in words]
        ids = [i[0] for i in ids if len(i) == 1 and counts[i[0]] >= cfg["min_count"]]
        frequent = set(sorted(set(ids), key=lambda i: -counts[i])[:8])  # at most 8, the most frequent
        ids = [i for i in dict.fromkeys(ids) if i in frequent]  # ... in the order of WORD_GROUPS
        if len(ids) >= 2:
            groups[name] = ids
    words = [i for i in range(tokenizer.vocab_size)  # frequent whole words: a space, then letters
             if counts[i] >= cfg["min_count"] and tokenizer.vocab[i][:1] == b" "
             and tokenizer.vocab[i][1:].isalpha()]
    return {"tokenizer": tokenizer, "train": train_ids, "val": val_ids, "groups": groups, "words": words,
            "counts": counts}


def train_embedding_lm(cfg: dict, data: dict, dim: int, *, seed: int, device, one_hot: bool = False):
    """Train an `EmbeddingLM` on the stories with the shared training loop; returns (model, history)."""
    torch.manual_seed(seed)
    model = EmbeddingLM(data["tokenizer"].vocab_size, dim, context_size=3, hidden=64, one_hot=one_hot)
    steps = cfg["lm_steps"]
    # a high learning rate (3e-2 to 5e-2): this shallow model is stable there, and the rows of rare tokens,
    # updated only when they occur, need big steps to move away from their random start
    config = TrainConfig(steps=steps, batch_size=cfg["lm_batch"], block_size=32, lr=cfg["lm_lr"],
                         warmup_steps=50, eval_interval=max(steps // 3, 1), eval_iters=10)
    history = train(model, data["train"], data["val"], config, device=device, seed=seed,
                    desc=f"embedding LM dim {'one-hot' if one_hot else dim}")
    return model.cpu(), history


def trained_embeddings(cfg: dict, seed: int, device, *, shuffle_tokens: bool = False):
    """The stories data, the d=32 model's random initial embedding table and the trained d=32 model:
    returns (data, init, model, history)."""
    data = embedding_data(cfg, seed, shuffle_tokens=shuffle_tokens)
    torch.manual_seed(seed)
    init = EmbeddingLM(data["tokenizer"].vocab_size, 32, context_size=3, hidden=64).embedding.weight
    # the same seed: it starts from `init`
    model, history = train_embedding_lm(cfg, data, 32, seed=seed, device=device)
    return data, init.detach(), model, history


def embedding_similarity(data: dict, learned: torch.Tensor, init: torch.Tensor) -> tuple[dict, dict]:
    """Cosine similarity of one-hot vs learned vectors for related tokens; nearest neighbours.

    Returns (the numbers, the matrices to plot: the first 3 tokens of the first 6 groups, their labels,
    one-hot and learned cosine similarities).
    """
    tok, groups = data["tokenizer"], data["groups"]
    shown = [i for ids in list(groups.values())[:6] for i in ids[:3]]
    stats = {"learned": group_similarity(learned, groups), "random init": group_similarity(init, groups),
             "one-hot": group_similarity(torch.eye(tok.vocab_size), groups)}
    neighbours = {}
    for word in [" he", " said", " park", " happy", " morning"]:
        ids = tok.encode(word)
        if len(ids) == 1 and ids[0] in data["words"]:
            neighbours[word] = [(tok.decode([i]), round(s, 2))
                                for i, s in nearest_neighbours(learned, ids[0], 5, candidates=data["words"])]
    numbers = {"groups": {g: [tok.decode([i]) for i in ids] for g, ids in groups.items()},
               "similarity": stats, "nearest_neighbours": neighbours}
    plot = {"labels": [tok.decode([i]).strip() for i in shown],
            "one_hot": torch.eye(len(shown)),  # cosine of distinct one-hot vectors is exactly 0
            "learned": cosine_similarity_matrix(learned[shown])}
    return numbers, plot


def embedding_projection(data: dict, learned: torch.Tensor, *, quick: bool, seed: int) -> tuple[dict, dict]:
    """The learned vectors of the frequent word tokens in 2-D (PCA and t-SNE), and for each projection the
    share of grouped tokens whose 2-D nearest neighbour is in the same group.

    Returns (the numbers, the plot: the token ids drawn, group of each grouped id, points per method).
    """
    groups = data["groups"]
    words = data["words"][:300] if not quick else data["words"][:150]
    words = sorted(set(words) | {i for ids in groups.values() for i in ids})
    group_of = {i: g for g, ids in groups.items() for i in ids}
    out, points = {}, {}
    for method in ("pca", "tsne"):
        points[method] = project_2d(learned[words], method, seed=seed)
        # how well the 2-D picture keeps the groups: share of grouped points whose 2-D nearest is same-group
        grouped = [k for k, i in enumerate(words) if i in group_of]
        gp = points[method][grouped]
        dist = ((gp[:, None] - gp[None]) ** 2).sum(-1) + np.eye(len(gp)) * 1e18
        nearest = dist.argmin(1)
        labels = [group_of[words[k]] for k in grouped]
        out[method] = float(np.mean([labels[a] == labels[b] for a, b in enumerate(nearest)]))
    return {"nn_same_group_2d": out, "n_points": len(words)}, {"words": words, "group_of": group_of,
                                                                "points": points}


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def embedding_dim_ablation(cfg: dict, data: dict, trained: dict, *, seed: int, device) -> dict:
    """Validation loss vs embedding dimension, and the one-hot model (dim = vocab size) as reference.

    `trained` maps dims already trained (with the same recipe) to their val loss, so they are reused.
    """
    dims = cfg["dims"]
    vocab = data["tokenizer"].vocab_size
    losses = {d: trained[d] if d in trained
              else train_embedding_lm(cfg, data, d, seed=seed, device=device)[1].final_val_loss for d in dims}
    one_hot_loss = train_embedding_lm(cfg, data, vocab, seed=seed, device=device,
                                      one_hot=True)[1].final_val_loss
    n_params = {d: trainable_parameters(EmbeddingLM(vocab, d, context_size=3, hidden=64)) for d in dims}
    one_hot_params = trainable_parameters(EmbeddingLM(vocab, context_size=3, hidden=64, one_hot=True))
    p = (data["counts"].double() + 1e-12) / data["counts"].sum()
    unigram = float(-(p * p.log()).sum())  # the loss of the best model that ignores the context
    return {"val_loss_by_dim": losses, "params_by_dim": n_params, "one_hot_val_loss": one_hot_loss,
            "one_hot_params": one_hot_params, "unigram_entropy": unigram}
