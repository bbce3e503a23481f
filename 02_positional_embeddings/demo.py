"""Lesson 02 demo: four ways to tell a transformer where each token is, and what happens past the end.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--train-len L] [--extrapolate K] [--rope-base B] [--encodings none rope ...]
                   [--steps N] [--corpus stories|python-docs|python-code|PATH]

Experiments (each prints its numbers and draws one figure into outputs/):
 1. encodings.png       the four encodings as heatmaps: sinusoidal table, a trained learned table, RoPE's
                        rotation angles, ALiBi's bias
 2. similarity.png      similarity of two positions vs their distance (sinusoidal, RoPE, learned)
 3. relative.png        RoPE's and ALiBi's attention logits depend only on m - n; added positions do not
 4. alibi.png           ALiBi's penalty per head, and how far back each head can look
 5. extrapolation.png   character-level GPTs (lesson 04), identical but for `pos`, trained on windows of
                        L characters and evaluated on windows of K*L: loss per position
Break flags:
 --train-len L     the training context (default 64; quick: 32)
 --extrapolate K   evaluate up to K * L positions (default 4)
 --rope-base B     also train RoPE with base B (e.g. 10 or 1e6) and compare its extrapolation
 --encodings ...   which position encodings to train (default: all five; `--encodings none` = NoPE only)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import compare

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    import torch

    from llmlab.positional_embeddings import experiments
    from llmlab.utils import Demo, plotting


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, torch, experiments, Demo, plotting
    import numpy as np
    import torch

    from llmlab.positional_embeddings import experiments
    from llmlab.utils import Demo, plotting


ENCODINGS = ("none", "sinusoidal", "learned", "rope", "alibi")
COLORS = {"none": "#8C8C8C", "sinusoidal": "#4C72B0", "learned": "#DD8452", "rope": "#55A868",
          "alibi": "#C44E52"}
EXTRA_COLOR = "#8172B3"  # the --rope-base model
VERDICTS = {"degrades": "DEGRADES past L", "holds": "holds past L",
            "unclear": "no clear change (within noise)"}
# Curriculum claims checked by experiment 5 (CURRICULUM-SEED.md, lesson 02's "Key Insights"), and what the
# literature says when a run contradicts them
CLAIMS = {"sinusoidal": ("Sinusoidal: fixed, excellent extrapolation", " (Press et al. 2022 found the same: "
                         "sinusoidal perplexity explodes soon after L)"),
          "learned": ("Learned PE: flexible but poor extrapolation", ""),
          "rope": ("RoPE: excellent for long contexts", ". Long-context RoPE models get there by rescaling "
                   "positions or the base and fine-tuning at the long length (Chen et al. 2023; Xiong et al. "
                   "2023), not by extrapolating")}


def settings(quick: bool) -> dict:
    # The models: 2 layers, 4 heads of 16 dims, 64 wide, character-level: big enough to use the context
    # (the loss falls from ~2.5 to ~1.3 nats/char over the first 16 characters), small enough to train
    # five of them in a few minutes on a CPU.
    model = dict(n_layer=2, n_head=4, d_model=64)
    if quick:
        return dict(model, n_chars=200_000, train_len=32, steps=100, batch_size=8, n_windows=32, n_pairs=4)
    return dict(model, n_chars=1_000_000, train_len=64, steps=1000, batch_size=16, n_windows=256, n_pairs=16)


def mark_L(ax, L: int, y: float | None = None, **text) -> None:
    """The training length L as a dotted vertical line: past it, every position is new to the models; with y,
    labelled "L=..." at height y."""
    ax.axvline(L, color="black", ls=":", lw=1)
    if y is not None:
        ax.text(L + 2, y, f"L={L}", fontsize=8, **text)


# 1. the encodings as pictures
def encodings(demo: Demo, cfg: dict, models: dict, n_positions: int, rope_bases: list[float]) -> dict:
    L, d_model, head_dim = cfg["train_len"], cfg["d_model"], cfg["d_model"] // cfg["n_head"]
    t = experiments.encoding_tables(cfg, models, n_positions, rope_bases)
    sinusoidal, learned, unseen_by_base = t["sinusoidal"], t["learned"], t["unseen_by_base"]

    fig, ((ax1, ax2), (ax3, ax4)) = plotting.new_figure(2, 2, figsize=(12, 9))
    plotting.heatmap(ax1, sinusoidal, cmap="RdBu_r", vmin=-1, vmax=1, xlabel="dimension",
                     ylabel="position", cbar_label="PE value",
                     title=f"Sinusoidal ({d_model} dims): fast waves left, slow right")
    ax1.axhline(L - 0.5, color="black", ls="--", lw=1)
    if learned is not None:
        limit = float(learned.abs().quantile(0.99))  # a few extreme weights would wash out the rest
        plotting.heatmap(ax2, learned, cmap="RdBu_r", vmin=-limit, vmax=limit, xlabel="dimension",
                         ylabel="position", cbar_label="trained weight (clipped at 99th pct.)",
                         title=f"Learned table after training: {L} rows, nothing past position {L - 1}")
    else:
        ax2.set_axis_off()
        ax2.text(0.5, 0.5, "learned model not trained\n(--encodings)", ha="center", va="center")
    plotting.heatmap(ax3, torch.cos(t["angles"]), cmap="RdBu_r", vmin=-1, vmax=1,
                     xlabel="pair i (speed theta_i)", ylabel="position m", cbar_label="cos(m * theta_i)",
                     title=f"RoPE angles (base {rope_bases[0]:g}): {unseen_by_base[rope_bases[0]]} of "
                           f"{head_dim // 2} pairs\nnever complete a turn within L={L}")
    ax3.axhline(L - 0.5, color="black", ls="--", lw=1)
    ax3.text(head_dim / 2 - 0.6, L + 3, f"past L={L}: new angles", ha="right", va="top", fontsize=8,
             bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    plotting.heatmap(ax4, t["alibi"], cmap="viridis", xlabel="key position j", ylabel="query position i",
                     cbar_label="bias added to the logit",
                     title=f"ALiBi bias, head 1 (slope {t['alibi_slopes'][0]:.3g}): -slope * (i - j)")
    fig.suptitle("The four encodings (dashed line: the training length L)", fontweight="bold")
    demo.save_figure(fig, "encodings.png")
    counts = " and ".join(f"{n} (base {base:g})" for base, n in unseen_by_base.items())
    demo.say(f"1. Encodings: sinusoidal table {tuple(sinusoidal.shape)}; RoPE: {counts} of {head_dim // 2} "
             f"rotation pairs never complete a full turn within L={L} positions, so past L they reach angles "
             f"the model never saw; ALiBi has no vectors, only a bias per head.")
    return t["numbers"]


# 2. how alike are two positions k apart?
def similarity(demo: Demo, cfg: dict, models: dict, n_positions: int, rope_bases: list[float]) -> dict:
    L = cfg["train_len"]
    curves = experiments.similarity_curves(cfg, models, n_positions, rope_bases, seed=demo.seed)
    r = experiments.similarity_stats(curves, L)
    sin_curve, rope_curve, fixed_floor, rising = experiments.fixed_curves(curves, cfg["d_model"], L).values()
    title = (f"Fixed encodings {'never decay to 0' if fixed_floor > 0.1 else 'decay towards 0'}: "
             f"sinusoidal {sin_curve[L]:.2f}, RoPE {rope_curve[L]:.2f} at distance L={L}")
    if "learned_cos_neighbour" in r:
        title += (f"\nthe trained learned table: {r['learned_cos_neighbour']:.2f} at distance 1, "
                  f"{r['learned_cos_min']:.2f} at distance {r['learned_cos_argmin']} "
                  f"(init: {r['learned_init_cos_neighbour']:.2f})")

    fig, ax = plotting.new_figure(figsize=(9, 4.8))
    styles = {label: {"ls": "--", "lw": 1} if "init" in label else {"lw": 1.6} for label in curves}
    plotting.line_plot(ax, {label: np.arange(len(c)) for label, c in curves.items()}, curves, markers=False,
                       styles=styles, title=title, xlabel="distance k between the two positions (tokens)",
                       ylabel="cosine similarity (mean over pairs)")
    mark_L(ax, L, 0.95)
    ax.axhline(0, color="gray", lw=0.5)
    ax.legend(loc="upper right")
    demo.save_figure(fig, "similarity.png")

    demo.say(f"2. Cosine similarity of two positions k apart: sinusoidal {sin_curve[1]:.3f} at k=1, "
             f"{sin_curve[L]:.3f} at k=L={L}, below 0.5 from k={experiments.first_below(sin_curve, 0.5)}; "
             f"RoPE (same q at both positions) {rope_curve[1]:.3f} at k=1, {rope_curve[L]:.3f} at k=L.")
    demo.say(f"   The decay is not monotonic: the sinusoidal curve rises again in {rising} of its first {L} "
             f"steps (sums of cosines oscillate), so similarity alone does not separate near from far.")
    if "learned_cos_neighbour" in r:
        trained, init = r["learned_cos_neighbour"], r["learned_init_cos_neighbour"]
        # above 0.5: neighbours clearly alike (a random table gives ~0)
        learned_says = ("learned a smooth order by itself (neighbours alike)" if trained > 0.5
                        else "has not (yet) learned that neighbours are alike")
        demo.say(f"   The trained learned table {learned_says}: neighbour cosine {trained:.3f} vs {init:.3f} "
                 f"at init; lowest {r['learned_cos_min']:.3f} at distance {r['learned_cos_argmin']}.")
    return r


# 3. relative vs absolute: layer-0 attention logits of the trained models
def relative(demo: Demo, cfg: dict, models: dict, n_positions: int) -> dict:
    L = cfg["train_len"]
    r = experiments.relative_spreads(cfg, models, n_positions, seed=demo.seed)
    spreads, offset = r["spreads"], r["offset"]
    labels, worst_rel, best_abs = list(spreads), r["worst_relative"], r["best_absolute"]
    colors = [COLORS.get(label, EXTRA_COLOR) for label in labels]

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(12.5, 4.6))
    styles = {label: {"color": c, "lw": 1.5} for label, c in zip(labels, colors)}
    plotting.line_plot(ax1, {label: np.arange(offset, offset + len(v)) for label, v in r["traces"].items()},
                       r["traces"], markers=False, styles=styles, ylabel="layer-0 attention logit, head 1",
                       xlabel=f"query position m (key at m - {offset})",
                       title="Same two tokens, same offset 4, moved along the sequence:\n"
                             "a flat line = the logit depends only on m - n")
    ax1.legend(fontsize=8)
    mark_L(ax1, L, ax1.get_ylim()[0], va="bottom")
    floor = 1e-9  # an exact 0 has no place on a log axis
    shown = [max(spreads[label], floor) for label in labels]
    bars = plotting.bar_plot(ax2, labels, shown, annotate=False, colors=colors,
                             ylabel="max spread of the logit at a fixed m - n\n/ std of all logits (log)",
                             title=f"Relative encodings: spread <= {worst_rel:.1e}; added positions: "
                                   f">= {best_abs:.2f}\n(over {cfg['n_pairs']} token pairs, 4 heads, all "
                                   f"offsets < L={L})")
    ax2.set(yscale="log", ylim=(floor / 3, max(shown) * 30))  # room above the tallest bar for its label
    texts = ["0 (exact)" if spreads[label] == 0 else f"{spreads[label]:.1e}" for label in labels]
    ax2.bar_label(bars, labels=texts, fontsize=8, padding=2)
    demo.save_figure(fig, "relative.png")

    demo.say(f"3. Layer-0 attention logits of the trained models, {cfg['n_pairs']} token pairs, every (m, n) "
             f"with the same offset m - n < L: max spread / std of the logits =")
    demo.say("   " + ", ".join(f"{label} {spreads[label]:.2g}" for label in labels))
    if r["relative"] and r["absolute"]:
        holds = worst_rel < 1e-4 and best_abs > 1e-2
        demo.say(f"   {'As the maths says' if holds else 'UNEXPECTED'}: RoPE/ALiBi/none logits are a "
                 f"function of m - n (spread {worst_rel:.1e}, float rounding), while added "
                 f"sinusoidal/learned positions make one offset score differently at different places "
                 f"(spread {best_abs:.2f} of a std).")
    demo.say(f"   (check: the reconstructed logits reproduce each model's own layer-0 attention to "
             f"{max(r['checks'].values()):.1e})")
    return {"max_relative_spread": spreads, "offset_traced": offset, "token_pairs": r["pairs"],
            "reconstruction_max_abs_diff": r["checks"]}


# 4. ALiBi: one penalty per head
def alibi(demo: Demo, cfg: dict, n_positions: int) -> dict:
    L, n_head = cfg["train_len"], cfg["n_head"]
    r = experiments.alibi_reach(n_head, n_positions)
    slopes, reach90 = r["slopes"], r["reach90"]
    local = sum(reach < L for reach in reach90)
    distance = np.arange(n_positions)
    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(12, 4.5))
    plotting.line_plot(ax1, distance, {f"head {h + 1}: slope {slopes[h]:.4g}": r["bias"][h]
                                       for h in range(n_head)}, markers=False,
                       ylabel="bias added to the logit",
                       title=f"ALiBi: a straight line per head, slopes 2^(-8h/{n_head})")
    plotting.line_plot(ax2, distance, {f"head {h + 1}: 90% within {reach90[h]}": r["cumulative"][h]
                                       for h in range(n_head)}, markers=False,
                       ylabel=f"attention mass within distance (query at {n_positions - 1})",
                       title=f"With equal content scores, {local} of {n_head} heads put 90% of\n"
                             f"their attention within L={L} tokens")
    for ax in (ax1, ax2):
        mark_L(ax, L)
        ax.set_xlabel("distance i - j from the query (tokens)")
        ax.legend(fontsize=8)
    ax2.axhline(0.9, color="gray", ls="--", lw=0.8)
    demo.save_figure(fig, "alibi.png")
    demo.say(f"4. ALiBi slopes {', '.join(f'{s:.4g}' for s in slopes.tolist())}: with equal content scores "
             f"the heads hold 90% of their attention within {', '.join(map(str, reach90))} tokens; "
             f"the {local} of {n_head} that stay inside L={L} see past L the same window as in training; the "
             f"others reach keys farther away than any in training.")
    return {"slopes": slopes, "reach90_tokens": reach90, "heads_within_L": local}


# 5. extrapolation: loss per position up to K * L
def extrapolation_title(results: dict, labels: list[str]) -> str:
    """The bar chart's title: the lowest ratio is named best only when it is lower than the runner-up's by
    more than their two 95% intervals together (the error bars drawn); else no measurable difference."""
    ranked = sorted(labels, key=lambda label: results[label]["ratio"])
    best, r = ranked[0], results[ranked[0]]["ratio"]
    if len(ranked) == 1:
        return f"Past the training length: {best} {r:.2f}x"
    second, r2 = ranked[1], results[ranked[1]]["ratio"]
    half = {label: results[label]["excess_ci95"] / results[label]["inside_late"] for label in ranked[:2]}
    if compare(r, r2, half[best] + half[second]) == "a":
        return f"Past the training length: {best} is best ({r:.2f}x vs {second} {r2:.2f}x)"
    return f"Past the training length: {best} {r:.2f}x and {second} {r2:.2f}x, no measurable difference"


def extrapolation(demo: Demo, cfg: dict, data: dict, models: dict, K: int) -> dict:
    L, T = cfg["train_len"], K * cfg["train_len"]
    results, curves, refused = experiments.extrapolation(cfg, data, models, K, device=demo.device)

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(13, 4.8))
    # a curve that blows up past L leaves the plot (its y range is that of the losses inside L), and its
    # legend entry says where it went
    binned, bottom, ymax = experiments.binned_curves(curves, L)
    for label, (x, y) in binned.items():
        color = COLORS.get(label, EXTRA_COLOR)
        text = label + (f" (off the plot: {curves[label][-L:].mean():.2f} at {T - L}..{T - 1})"
                        if y.max() > ymax else "")
        ax1.plot(x, y, color=color, lw=1.6, marker="o", ms=2.5, label=text)
        if models[label]["model"].config.pos == "learned":
            ax1.plot([x[-1]], [y[-1]], marker="X", ms=11, color=color, ls="none")
            ax1.annotate("learned: no vector\nfor position L", (x[-1], y[-1]), xytext=(14, -42),
                         textcoords="offset points", fontsize=8, color=color,
                         arrowprops={"arrowstyle": "-", "color": color, "lw": 0.8},
                         bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    mark_L(ax1, L)
    ax1.set_ylim(bottom, ymax)
    ax1.text(L * 0.95, ymax - 0.02 * (ymax - bottom), f"trained up to L={L}", ha="right", va="top",
             fontsize=8)
    ax1.set_xlabel("tokens of context = position + 1 (characters, log scale)")
    ax1.set_xscale("log", base=2)
    ax1.set_ylabel("validation loss (nats/char, log-spaced bins)")
    ax1.set_title(f"Past L={L}: {experiments.verdict_summary(results)}\n"
                  f"(loss per position, mean of {cfg['n_windows']} windows of {T} chars)")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    labels, ratios, errors = experiments.ratio_bars(results)
    plotting.bar_plot(ax2, labels, ratios, errors=errors, fmt="{:.2f}x",
                      colors=[COLORS.get(label, EXTRA_COLOR) for label in labels],
                      ylabel=f"loss at positions L..{K}L / loss at L/2..L")
    ax2.axhline(1.0, color="black", lw=0.8)
    if labels:
        ax2.set_ylim(min(0.9, min(ratios) - 0.05), max(ratios) * 1.12)
        ax2.set_title(extrapolation_title(results, labels))
    else:
        ax2.set_title("no model here can run past L (learned positions only)")
    demo.save_figure(fig, "extrapolation.png")

    demo.say(f"5. Extrapolation: char-level GPTs ({cfg['n_layer']} layers, {cfg['d_model']} wide) trained "
             f"{cfg['steps']} steps on windows of L={L}, evaluated on {cfg['n_windows']} windows of {T} "
             f"characters (loss inside = positions {L // 2}..{L - 1}, beyond = {L}..{T - 1}):")
    if demo.quick:
        val = np.mean([row["val_loss_at_L"] for row in results.values()])
        demo.say(f"   quick mode: each model trained only {cfg['steps']} steps (mean val loss {val:.2f}); "
                 f"the verdicts below describe barely-trained models: run without --quick to measure.")
    for label, row in results.items():
        if "ratio" in row:
            demo.say(f"   {label:<16} inside {row['inside_late']:.3f}, beyond {row['beyond_mean']:.3f} "
                     f"({row['ratio']:.2f}x, {row['excess_nats']:+.3f} ± {row['excess_ci95']:.3f} nats): "
                     f"{VERDICTS[row['verdict']]}")
        else:
            demo.say(f"   {label:<16} inside {row['inside_late']:.3f}, beyond: cannot run ({refused})")
    for name, (claim, literature) in ((name, c) for name, c in CLAIMS.items() if name in results):
        row = results[name]
        if name == "learned":
            said = ("confirmed, and stronger: it cannot be evaluated past L at all" if refused
                    else "not tested")
        elif row["verdict"] == "degrades":
            said = f"CONTRADICTED by this run: loss {row['ratio']:.2f}x higher past L{literature}"
        elif row["verdict"] == "holds":
            said = f"supported by this run ({row['ratio']:.2f}x)"
        else:
            said = f"not settled by this run ({row['ratio']:.2f}x, within noise)"
        if demo.quick and said.startswith(("CONTRADICTED", "supported")):
            said += " [quick run: barely trained]"
        demo.say(f"   Curriculum: '{claim}' -> {said}.")
    if "alibi" in results and "ratio" in results["alibi"]:
        row = results["alibi"]
        demo.say(f"   ALiBi here: {VERDICTS[row['verdict']]} ({row['ratio']:.2f}x). Press et al. 2022: "
                 f"trained at 1024 tokens, it matched at 2048 a sinusoidal model trained at 2048.")
    other = [label for label in labels if label.startswith("rope base")]
    if other and "rope" in results:
        mine, ref = results[other[0]], results["rope"]
        change = {"a": "better than", "b": "worse than"}.get(experiments.compare_ratios(mine, ref),
                                                            "with no measurable difference from")
        demo.say(f"   RoPE base: {other[0]} extrapolates {change} base 10000 ({mine['ratio']:.2f}x vs "
                 f"{ref['ratio']:.2f}x past L; inside L {mine['inside_late']:.3f} vs "
                 f"{ref['inside_late']:.3f}).")
    if labels:
        order = sorted(labels, key=lambda label: results[label]["beyond_mean"])
        demo.say("   Ranked by loss past L (lower = better): " +
                 " < ".join(f"{label} {results[label]['beyond_mean']:.3f}" for label in order))
    scale = experiments.embedding_scale(models)
    if (worse := experiments.sinusoidal_gap(results, scale)) > 0.05:
        demo.say(f"   Note: inside L the sinusoidal model is {worse:.2f} nats worse than the learned one. "
                 f"Its fixed table (row norm {scale['pe_norm']:.2f}) is {scale['ratio']:.1f}x the trained "
                 f"token vectors (row norm {scale['token_norm']:.2f}, the embeddings times "
                 f"{scale['embedding_scale']:.1f} = sqrt(d_model), as Vaswani et al. scale them).")
    return {"train_len": L, "eval_len": T, "n_windows": cfg["n_windows"], "learned_error": refused,
            "models": results, "sinusoidal_scale": scale}


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--train-len", type="positive_int", default=None,
                        help="training context L in characters (default 64; --quick: 32)")
    parser.add_argument("--extrapolate", type="positive_int", default=4,
                        help="evaluate on windows of K * L characters (default K=4)")
    parser.add_argument("--rope-base", type="positive_float", default=None,
                        help="also train a RoPE model with this base (e.g. 10 or 1e6) and compare")
    parser.add_argument("--encodings", nargs="+", choices=ENCODINGS, default=list(ENCODINGS),
                        help="which position encodings to train (default: all five)")
    parser.add_argument("--steps", type="positive_int", default=None,
                        help="training steps per model (default 1000; --quick 100)")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="stories (default), python-docs, python-code or a path to a UTF-8 text file")
    args = parser.parse_args(argv)
    for name, minimum in (("train_len", 4), ("extrapolate", 2), ("steps", 1)):
        value = getattr(args, name)
        if value is not None and value < minimum:
            parser.error(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")
    if args.rope_base is not None and not (math.isfinite(args.rope_base) and args.rope_base > 1):
        parser.error(f"--rope-base must be a finite number > 1, got {args.rope_base}")
    return _run(args)  # Demo runs torch on --threads threads (default 1)


def _run(args) -> dict:
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    cfg.update({k: v for k, v in (("train_len", args.train_len), ("steps", args.steps)) if v is not None})
    K, L, results = args.extrapolate, cfg["train_len"], demo.results
    results["settings"] = dict(cfg, extrapolate=K, corpus=args.corpus, rope_base=args.rope_base)

    data, models = demo.timed("training", experiments.load_and_train, cfg, args.corpus, args.encodings,
                              args.rope_base, seed=demo.seed, device=demo.device)
    hits, seconds = sum(entry["cache_hit"] for entry in models.values()), results["experiment_seconds"]
    demo.say(f"Trained {len(models)} char-level GPTs (vocab {data['tokenizer'].vocab_size}, L={L}, "
             f"{cfg['steps']} steps of {cfg['batch_size']}x{L}) in {seconds['training']:.1f} s "
             f"({hits} loaded from the cache); final val loss "
             + ", ".join(f"{k} {v['history'].final_val_loss:.3f}" for k, v in models.items()))

    def run(name, experiment, *inputs):  # results[name] = its numbers; its seconds in experiment_seconds
        results[name] = demo.timed(name, experiment, demo, cfg, *inputs)

    rope_bases = [10000.0] + ([args.rope_base] if args.rope_base is not None else [])
    run("encodings", encodings, models, K * L, rope_bases)
    run("similarity", similarity, models, K * L, rope_bases)
    run("relative", relative, models, K * L)
    run("alibi", alibi, K * L)
    run("extrapolation", extrapolation, data, models, K)
    demo.finish()
    return results


if __name__ == "__main__":
    main()
