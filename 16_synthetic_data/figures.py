"""Lesson 16's figures: each draws one experiment's measured numbers (demo.py passes them in), with a title
that states what was found."""

from __future__ import annotations

import numpy as np

from llmlab.utils.plotting import PALETTE, grouped_bar_plot, new_figure

CONDITIONS = {"real": PALETTE[0], "synthetic": PALETTE[1], "mixed": PALETTE[2], "half real": PALETTE[4]}


def _dots(ax, x, values, label=None):
    ax.plot([x] * len(values), values, "k.", ms=6, label=label)


def real_vs_synthetic_figure(demo, cfg: dict, out: dict) -> None:
    fig, axes = new_figure(1, 2, figsize=(15, 5.2))
    for name, color in CONDITIONS.items():
        curve = out["curves"][name]
        losses = np.array(curve["val_loss"])  # (seeds, evals)
        tokens = np.array(curve["tokens"]) / 1e3
        axes[0].plot(tokens, losses.mean(0), "o-", ms=3, color=color, label=name)
        axes[0].fill_between(tokens, losses.min(0), losses.max(0), color=color, alpha=0.2)
    axes[0].axhline(out["unigram_loss"], color="gray", ls=":", label="no context (character frequencies)")
    axes[0].set(xlabel="characters trained on (thousands)", ylabel="held-out REAL loss (nats/char)",
                title="learning curves on held-out real text (band: min-max over seeds)")
    axes[0].legend(fontsize=8)
    names = list(CONDITIONS)
    series = {"held-out real text": [out[n]["real_val"]["mean"] for n in names],
              "held-out synthetic text": [out[n]["synthetic_val"]["mean"] for n in names]}
    grouped_bar_plot(axes[1], names, series, fmt="{:.2f}", ylabel="final loss (nats/char, lower is better)",
                     title="trained on (x) / tested on (colour); dots: seeds")
    width = 0.8 / 2
    for i, n in enumerate(names):
        _dots(axes[1], i - width / 2, out[n]["real_val"]["per_seed"], "one seed" if i == 0 else None)
        _dots(axes[1], i + width / 2, out[n]["synthetic_val"]["per_seed"])
    real = out["real"]["real_val"]["mean"]
    fig.suptitle(f"Equal tokens: on real text, synthetic-only reaches "
                 f"{out['synthetic']['real_val']['mean']:.2f} and "
                 f"mixed {out['mixed']['real_val']['mean']:.2f} vs real {real:.2f} nats/char; on synthetic "
                 f"text the synthetic model wins ({out['synthetic']['synthetic_val']['mean']:.2f})",
                 fontweight="bold")
    demo.save_figure(fig, "real_vs_synthetic.png")


def duplication_figure(demo, cfg: dict, out: dict) -> None:
    fig, axes = new_figure(1, 3, figsize=(21, 5.2))
    labels = [f"{r:.0%}" for r in out["rates"]]
    stages = [("before", "as trained (with copies)", PALETTE[3])]
    if any("after" in out[k] for k in labels):
        stages.append(("after", "after exact + MinHash dedup", PALETTE[2]))
    width = 0.8 / len(stages)
    panels = [("real_val", 1), ("repeated_loss", 1), ("char_match", 100)]
    for k, (stage, name, color) in enumerate(stages):
        xs = np.arange(len(labels)) + (k - (len(stages) - 1) / 2) * width
        for ax, (metric, scale) in zip(axes, panels):
            values = [out[lab][stage][metric]["mean"] * scale if stage in out[lab] else np.nan
                      for lab in labels]
            ax.bar(xs, values, width, color=color, alpha=0.85, label=name)
            for x, lab in zip(xs, labels):
                if stage in out[lab]:
                    _dots(ax, x, [v * scale for v in out[lab][stage][metric]["per_seed"]])
    once = [out[lab]["before"]["once_char_match"]["mean"] * 100 for lab in labels]
    axes[2].plot(np.arange(len(labels)), once, "D--", color="gray", label="documents seen once (control)")
    for ax, (metric, _) in zip(axes[:2], panels):
        values = [out[lab][s][metric]["mean"] for lab in labels for s, _, _ in stages if s in out[lab]]
        ax.set_ylim(min(values) - 0.2, max(values) + 0.1)
    xlabel = f"share of training documents that are copies of {cfg['n_sources']} documents"
    axes[0].set(ylabel="held-out real loss (nats/char)", title="held-out loss (dots: seeds)")
    axes[1].set(ylabel="loss on the repeated documents (nats/char)",
                title="how well the model knows the repeated documents")
    axes[2].set(ylabel=f"% of characters of greedy {cfg['memo_new']}-char continuations that match",
                title=f"memorisation: continuing the repeated documents from {cfg['memo_chars']}-char "
                      f"prefixes")
    for ax in axes:
        ax.set(xticks=range(len(labels)), xticklabels=labels, xlabel=xlabel)
        ax.legend(fontsize=8)
    top = out[labels[-1]]
    after = (f", {top['after']['repeated_loss']['mean']:.2f} after dedup" if "after" in top else
             " (--no-dedup: not deduplicated)")
    fig.suptitle(f"Duplication: with {labels[-1]} copies the repeated documents' loss falls to "
                 f"{top['before']['repeated_loss']['mean']:.2f} nats/char (seen once: "
                 f"{out['0%']['before']['repeated_loss']['mean']:.2f}){after}; held-out loss "
                 f"{top['before']['real_val']['mean']:.2f} vs {out['0%']['before']['real_val']['mean']:.2f} "
                 f"without "
                 "copies", fontweight="bold")
    demo.save_figure(fig, "duplication.png")


def near_dup_figure(demo, cfg: dict, out: dict) -> None:
    fig, axes = new_figure(1, 3, figsize=(20, 5.2))
    bins = out["s_curve"]
    s = np.linspace(0, 1, 201)
    b, r = out["bands"], out["rows"]
    axes[0].plot(s, 1 - (1 - s**r) ** b, color="gray", label=f"predicted 1-(1-s^{r})^{b}")
    axes[0].scatter([x["mean_jaccard"] for x in bins], [x["measured"] for x in bins],
                    s=[20 + 8 * np.log1p(x["pairs"]) ** 2 for x in bins], color=PALETTE[0], zorder=3,
                    label="measured (share of pairs that became candidates; size: pairs in the bin)")
    axes[0].axvline(cfg["threshold"], color=PALETTE[3], ls=":", label=f"threshold {cfg['threshold']}")
    axes[0].set(xlabel="exact Jaccard of the 5-word shingle sets", ylabel="P(candidate pair)",
                title=f"the S-curve, {b} bands x {r} rows")
    axes[0].legend(fontsize=8, loc="upper left")
    grouped_bar_plot(axes[1], ["precision", "recall"],
                     {"LSH candidates": [out["candidates"]["precision"], out["candidates"]["recall"]],
                      "candidates verified by exact Jaccard": [out["verified"]["precision"],
                                                               out["verified"]["recall"]]},
                     fmt="{:.3f}", ylabel="against brute-force Jaccard (all pairs)", headroom=1.3,
                     title=f"{out['true_pairs']} true pairs among {out['all_pairs']:,}")
    t = out["timing"]
    axes[2].loglog(t["sizes"], t["brute_s"], "o-", color=PALETTE[3],
                   label=f"all pairs (~n^{t['brute_exponent']:.2f})")
    axes[2].loglog(t["sizes"], t["lsh_s"], "o-", color=PALETTE[2],
                   label=f"MinHash-LSH + verification (~n^{t['lsh_exponent']:.2f})")
    axes[2].set(xlabel="documents (log)", ylabel="seconds on this machine (log)", title="time vs corpus size")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"Near-duplicates: LSH recall {out['verified']['recall']:.2f} at precision "
                 f"{out['verified']['precision']:.2f} after verification, S-curve within "
                 f"{out['s_curve_max_gap']:.2f} "
                 f"of the formula; time grows ~n^{t['lsh_exponent']:.1f} vs ~n^{t['brute_exponent']:.1f} for "
                 f"all pairs",
                 fontweight="bold")
    demo.save_figure(fig, "near_dup.png")


def leakage_figure(demo, cfg: dict, out: dict) -> None:
    fig, axes = new_figure(1, 2, figsize=(15, 5.2))
    names = ["its clean\ndocuments", "with the\nleaked copies", "after dedup\nacross splits",
             "the leaked\ncopies alone", "a fully\nclean set"]
    keys = ["clean_part", "contaminated_val", "after_dedup", "leaked_only", "clean_val"]
    means = [out[k]["mean"] for k in keys]
    axes[0].bar(names, means, color=[PALETTE[0], PALETTE[3], PALETTE[2], PALETTE[7], PALETTE[9]], alpha=0.85)
    for i, k in enumerate(keys):
        _dots(axes[0], i, out[k]["per_seed"], "one seed" if i == 0 else None)
        axes[0].annotate(f"{means[i]:.3f}", (i, means[i]), ha="center", va="bottom", xytext=(0, 3),
                         textcoords="offset points", fontsize=9)
    axes[0].set(ylim=(min(means) - 0.2, max(means) + 0.05),
                ylabel="validation loss of the real-text model (nats/char)",
                title=f"{out['leaked_docs']} of {out['val_docs']} validation documents are near-copies of "
                      f"training ones")
    axes[0].tick_params(axis="x", labelsize=8)
    axes[0].legend(fontsize=8)
    n13 = out["ngram13"]
    grouped_bar_plot(axes[1], ["leaked copies", "clean documents", "fresh template stories"],
                     {"flagged by the 13-gram check": [n13["leaked"], n13["clean"], n13["fresh_stories"]]},
                     fmt="{:.2f}", ylabel="share of documents flagged",
                     title="GPT-3's 13-gram check: real text vs the story grammar")
    fig.suptitle(f"Leakage: leaked copies make validation loss {out['contaminated_val']['mean']:.3f} instead "
                 f"of "
                 f"{out['clean_part']['mean']:.3f}; dedup across splits removed {out['removed_leaked']} of "
                 f"{out['leaked_docs']} and gives {out['after_dedup']['mean']:.3f}", fontweight="bold")
    demo.save_figure(fig, "leakage.png")


def noise_figure(demo, cfg: dict, out: dict) -> None:
    fig, ax = new_figure(1, 1, figsize=(9, 5.2))
    tests = ["clean_test", "noisy_test"]
    labels = ["clean inputs", f"{cfg['noise_rate']:.0%} of input characters substituted"]
    series = {f"trained on {k} inputs": [out[k][t]["mean"] for t in tests] for k in ("clean", "noisy")}
    grouped_bar_plot(ax, labels, series,
                     fmt="{:.3f}", ylabel="held-out loss of the clean next character (nats/char)",
                     title="test inputs (x); dots: seeds")
    for k, offset in (("clean", -0.2), ("noisy", 0.2)):
        for i, t in enumerate(tests):
            _dots(ax, i + offset, out[k][t]["per_seed"])
    low = min(out[k][t]["mean"] for k in ("clean", "noisy") for t in tests)
    ax.set_ylim(low - 0.2, None)
    d_noisy = np.mean(out["noisy_minus_clean_on_noisy_test"])
    d_clean = np.mean(out["noisy_minus_clean_on_clean_test"])
    fig.suptitle(f"Noise injection: training on noisy inputs changes the loss by {d_noisy:+.3f} on noisy and "
                 f"{d_clean:+.3f} on clean inputs (nats/char)", fontweight="bold")
    demo.save_figure(fig, "noise.png")


def collapse_figure(demo, cfg: dict, out: dict) -> None:
    metrics = [("real_val", "held-out real loss (nats/char)"),
               ("real_words", "distinct words of the real text's vocabulary in the sample"),
               ("word_entropy", "unigram word entropy (bits)"),
               ("rare_char_share", "share of characters that are rare (<0.2%) in real text")]
    fig, axes = new_figure(1, 4, figsize=(22, 5.2))
    for ax, (key, label) in zip(axes, metrics):
        for k, (chain, rows) in enumerate(out["chains"].items()):
            gens = [r["generation"] for r in rows]
            values = [r[key] for r in rows]
            ax.plot(gens, values, "o-", color=PALETTE[3 if k == 0 else 2], label=f"trained on {chain}")
            noise = out["seed_spread"] if key == "real_val" else out["noise"][key]
            ax.fill_between(gens, np.array(values) - noise / 2, np.array(values) + noise / 2,
                            color=PALETTE[3 if k == 0 else 2], alpha=0.15)
        if key == "word_entropy":
            ax.axhline(out["real"][key], color="gray", ls=":", label="the real training text")
        ax.set(xlabel="generation (0 = trained on real text)", ylabel=label, xticks=gens)
        ax.legend(fontsize=8)
    axes[0].set_title("band: seed spread of generation 0")
    axes[1].set_title(f"in the first {cfg['stats_words']} words (real text: {out['real']['real_words']})")
    axes[2].set_title("band: sampling noise (two halves of gen 0's samples)")
    axes[3].set_title(f"top-p {cfg['top_p']} samples (real text: {out['real']['rare_char_share']:.1%})")
    rows = out["chains"]["synthetic only"]
    fig.suptitle(f"Model collapse: trained only on its predecessor's samples, generation "
                 f"{rows[-1]['generation']} has "
                 f"held-out loss {rows[-1]['real_val']:.2f} (gen 0: {rows[0]['real_val']:.2f}) and "
                 f"uses {rows[-1]['real_words']} distinct real words (gen 0: {rows[0]['real_words']}); "
                 f"mixing real "
                 f"text back in: loss {out['chains']['half real'][-1]['real_val']:.2f}", fontweight="bold")
    demo.save_figure(fig, "collapse.png")
