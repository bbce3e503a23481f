"""Lesson 03 demo: attention, measured: what a trained model's heads look at, and what breaks without
the causal mask and the 1/sqrt(d) scale.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show] [--no-scale] [--no-mask]
                   [--corpus stories|python-docs|python-code|PATH]

Experiments (each prints its numbers and draws one figure into outputs/):
 1. attention_maps.png    every head of the trained lab GPT on one story passage, and the heads that link
                          " she" -> "Mia", "the ball" -> "a red ball" and a closing quote -> its opening quote
 2. reference_heads.png   the same two links measured over many fresh stories: each head's attention on
                          the referent, against what uniform attention would give
 3. head_diversity.png    entropy of every head, Jensen-Shannon divergence between heads, what each head
                          looks at; trained vs untrained ("different heads specialize"?)
 4. causality.png         change one token: how much every output position changes, with and without mask
 5. saturation.png        var(q.k), softmax entropy and the gradient through softmax vs head_dim, with and
                          without 1/sqrt(d), for random unit-variance q and k
 6. break_training.png    small GPTs trained without the scale / without the mask: loss curves, the
                          "cheating" loss vs the generation-time loss, and what their samples are worth
Break flags (experiment 6 always runs in a small form; a flag makes that break the focus: twice the
training steps for it and the baseline, and its samples printed in full):
 --no-scale   train with attn_scale=1.0 instead of 1/sqrt(head_dim)
 --no-mask    train with causal=False: every position sees the future, so it can read the next token

The measurements live in experiments.py (functions that return numbers); this file runs them in order and,
for each, draws its figure and prints its verdict.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import matplotlib as mpl  # mpl.colors, mpl.patches, mpl.ticker: loaded by pyplot
    import matplotlib.pyplot as plt

    from llmlab.attention_basics import experiments as ex
    from llmlab.transformer_block.pretrained import LabModel, lab_model
    from llmlab.utils import Demo, plotting


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global mpl, plt, ex, LabModel, lab_model, Demo, plotting
    import matplotlib as mpl  # mpl.colors, mpl.patches, mpl.ticker: loaded by pyplot
    import matplotlib.pyplot as plt

    from llmlab.attention_basics import experiments as ex
    from llmlab.transformer_block.pretrained import LabModel, lab_model
    from llmlab.utils import Demo, plotting


def panel_title(ax, text: str) -> None:
    ax.set_title(text, fontsize=10)


QUICK_NOTE = "quick mode: the lab model trained for a few seconds only; run without --quick to judge"


def settings(quick: bool) -> dict:
    if quick:
        return dict(n_stories=24, diversity_windows=4, sat_dims=[4, 16, 64, 256, 1024], sat_rows=128,
                    sat_keys=64, break_steps=60, break_batch=8, break_block=64, eval_iters=2,
                    honest_windows=4, honest_stride=4, n_samples=4, sample_tokens=40)
    return dict(n_stories=200, diversity_windows=32, sat_dims=[4, 8, 16, 32, 64, 128, 256, 512, 1024],
                sat_rows=1024, sat_keys=64, break_steps=400, break_batch=16, break_block=64, eval_iters=10,
                honest_windows=16, honest_stride=1, n_samples=8, sample_tokens=48)


# ------------------------------------------------------------------------------------------------
# 1. attention maps of the trained model on one passage
def attention_maps_experiment(demo: Demo, lab: LabModel) -> dict:
    m = ex.link_weights(lab, demo.device)
    ids, links, maps, tokens, entropy = m["ids"], m["links"], m["maps"], m["tokens"], m["entropy"]
    sqrt_norm = lambda: mpl.colors.PowerNorm(0.5, vmin=0, vmax=1)  # small weights stay visible by large ones
    fig = plt.figure(figsize=(19, 14))
    grid = fig.add_gridspec(2, 1, height_ratios=[1.45, 1])
    top = grid[0].subgridspec(1, 3)
    for col, link in enumerate(links):
        ax = fig.add_subplot(top[col])
        im = plotting.heatmap(ax, maps[link["best_index"]], row_labels=tokens, col_labels=tokens,
                              cbar_label="attention weight (square-root colour scale)",
                              xlabel="key (attended-to token)", ylabel="query (attending token)")
        im.set_norm(sqrt_norm())
        ax.tick_params(labelsize=5.5)
        for k in link["keys"]:
            ax.add_patch(mpl.patches.Rectangle((k - 0.5, link["query"] - 0.5), 1, 1, fill=False, ec="red",
                                               lw=1.6))
        panel_title(ax, f"{link['best_head']}: {link['name']}\nweight {link['best_weight']:.2f} "
                        f"(uniform {link['uniform']:.2f}, mean of all heads {link['mean_over_heads']:.2f})")
    n_heads = maps.shape[0]
    ncols = math.ceil(n_heads / 2)
    bottom = grid[1].subgridspec(2, ncols)
    for index in range(n_heads):
        ax = fig.add_subplot(bottom[index // ncols, index % ncols])
        ax.imshow(maps[index], cmap="viridis", norm=sqrt_norm(), interpolation="nearest")
        ax.set(xticks=[], yticks=[])
        ax.grid(False)
        ax.set_title(f"{ex.head_name(index, lab.config.n_head)}  H={entropy[index]:.2f} nats", fontsize=8)
    top = max(links, key=lambda link: link["best_weight"] / link["uniform"])
    fig.suptitle(f"Trained lab GPT on one passage ({len(ids)} tokens): the clearest link is {top['name']} "
                 f"({top['best_head']}, {top['best_weight']:.2f} vs {top['uniform']:.2f} uniform)\n"
                 f"red boxes = the link measured; thumbnails: all {n_heads} heads, H = mean row entropy",
                 fontweight="bold")
    demo.save_figure(fig, "attention_maps.png")

    note = f"; {QUICK_NOTE}" if demo.quick else ""
    demo.say(f"1. Attention maps of the trained lab GPT on a story passage "
             f"(val loss {lab.history.final_val_loss:.2f} nats/token{note}):")
    for link in links:
        ratio = link["best_weight"] / link["uniform"]
        demo.say(f"   {link['name']}: head {link['best_head']} puts {link['best_weight']:.2f} of the "
                 f"attention of {link['query_token']!r} on {link['key_tokens']} ({ratio:.1f}x uniform "
                 f"attention {link['uniform']:.2f}; the mean head gives {link['mean_over_heads']:.2f}).")
    return {"passage": ex.PASSAGE, "n_tokens": len(ids), "links": m["summary"],
            "head_entropy_on_passage_nats": entropy}


# ------------------------------------------------------------------------------------------------
# 2. the same links over many fresh stories
def reference_heads_experiment(demo: Demo, lab: LabModel, cfg: dict) -> dict:
    results = ex.reference_head_weights(lab, cfg["n_stories"], demo.seed, demo.device)
    n_layer, n_head = lab.config.n_layer, lab.config.n_head
    fig, axes = plotting.new_figure(1, 3, figsize=(17, 4.8))
    for ax, (kind, what) in zip(axes, ex.LINKS.items()):
        r = results[kind]
        plotting.heatmap(ax, r["per_head"], annotate=True, vmin=0, vmax=1,
                         row_labels=[f"layer {i}" for i in range(n_layer)],
                         col_labels=[f"head {i}" for i in range(n_head)],
                         cbar_label="mean attention weight on the referent")
        panel_title(ax, f"{what} ({r['n_links']} links)\nbest {r['best_head']}: "
                        f"{r['best_weight']:.2f}; uniform attention would give {r['uniform']:.2f}")
    fig.suptitle(f"Which head looks back at the referent? {results['n_stories']} fresh stories, trained lab "
                 "GPT", fontweight="bold")
    demo.save_figure(fig, "reference_heads.png")

    demo.say(f"2. The same links over {results['n_stories']} fresh stories (not from the training text):")
    for kind, what in ex.LINKS.items():
        r = results[kind]
        r["verdict"] = ex.link_verdict(r["best_weight"], r["uniform"])
        demo.say(f"   {what}: best head {r['best_head']} puts {r['best_weight']:.2f} on the referent, "
                 f"{r['best_weight'] / r['uniform']:.1f}x uniform attention ({r['uniform']:.2f}; "
                 f"{r['n_links']} links) -> {r['verdict']}.")
    if demo.quick:
        demo.say(f"   ({QUICK_NOTE})")
    return results


# ------------------------------------------------------------------------------------------------
# 3. head diversity: entropy and Jensen-Shannon divergence between heads, trained vs untrained
def head_diversity_experiment(demo: Demo, lab: LabModel, cfg: dict) -> dict:
    d = ex.head_diversity(lab, cfg["diversity_windows"], demo.seed, demo.device)
    trained, untrained, names, roles, T = d["trained"], d["untrained"], d["names"], d["roles"], d["T"]
    jsd, (a, b), n_head, n_heads = trained["jsd"], d["closest"], lab.config.n_head, len(d["names"])
    ent, ent0, uniform_entropy = trained["entropy"], untrained["entropy"], d["uniform_entropy"]
    mean_jsd, mean_jsd_init, near_duplicates, ratio, punct_u, one_key_u = (d[k] for k in (
        "mean_jsd", "mean_jsd_init", "near_duplicates", "jsd_ratio", "punctuation_uniform",
        "one_key_uniform"))
    fig, axes = plotting.new_figure(1, 3, figsize=(19, 5.6))
    plotting.grouped_bar_plot(axes[0], names, {"trained": ent, "untrained (init)": ent0}, rotation=90)
    axes[0].axhline(uniform_entropy, color="gray", ls="--",
                    label=f"uniform over the past ({uniform_entropy:.2f})")
    axes[0].set(xlabel="head", ylabel="mean entropy of a query's attention (nats)",
                ylim=(0, uniform_entropy * 1.3))
    axes[0].legend(loc="upper center", ncol=2)
    panel_title(axes[0], f"Entropy per head: {ent.min():.2f} to {ent.max():.2f} nats trained,\n"
                         f"{ent0.min():.2f} to {ent0.max():.2f} untrained")
    plotting.heatmap(axes[1], jsd, row_labels=names, col_labels=names, vmin=0, vmax=1, cmap="magma",
                     cbar_label="Jensen-Shannon divergence (bits, max 1)")
    for boundary in range(n_head, n_heads, n_head):
        axes[1].axhline(boundary - 0.5, color="white", lw=1)
        axes[1].axvline(boundary - 0.5, color="white", lw=1)
    panel_title(axes[1], f"Head vs head: mean JSD {mean_jsd:.2f} bits trained vs {mean_jsd_init:.3f} "
                         f"untrained\nclosest pair {names[a]}/{names[b]} ({jsd[a, b]:.3f}); white lines "
                         "separate layers")
    plotting.heatmap(axes[2], roles, row_labels=names, annotate=True, vmin=0,
                     cbar_label="mean attention weight",
                     col_labels=[f"previous token\n(uniform: {one_key_u:.2f})", "itself",
                                 "first token\nof the window", f"punctuation\n(uniform: {punct_u:.2f})"])
    axes[2].tick_params(axis="x", rotation=0)
    panel_title(axes[2], f"What each head looks at (trained): weight on punctuation\n{roles[:, 3].min():.2f}"
                         f"..{roles[:, 3].max():.2f} vs {punct_u:.2f} for uniform attention")
    demo.save_figure(fig, "head_diversity.png")

    prev_head, sink_head, punct_head, broad_head = d["leaders"].values()
    demo.say(f"3. Head diversity over {cfg['diversity_windows']} validation windows of {T} tokens:")
    demo.say(f"   mean JSD between two heads {mean_jsd:.3f} bits trained vs {mean_jsd_init:.4f} untrained "
             f"({ratio:.0f}x); entropy per head {ent.min():.2f}..{ent.max():.2f} nats "
             f"(uniform over the past {uniform_entropy:.2f}); {near_duplicates} near-duplicate pairs "
             "(JSD < 0.05 bits).")
    demo.say(f"   roles: {names[prev_head]} puts {roles[prev_head, 0]:.2f} on the previous token (uniform "
             f"attention: {one_key_u:.2f}), {names[sink_head]} puts {roles[sink_head, 2]:.2f} "
             f"on the first token, {names[punct_head]} puts {roles[punct_head, 3]:.2f} on punctuation "
             f"(uniform attention: {punct_u:.2f}), {names[broad_head]} is the broadest "
             f"(entropy {ent[broad_head]:.2f}).")
    if demo.quick:
        demo.say(f"   -> {QUICK_NOTE}.")
    elif ratio > 5 and mean_jsd > 0.1:
        demo.say("   -> the curriculum's 'different heads specialize' holds here: trained heads differ "
                 f"{ratio:.0f}x more from each other than at init"
                 + (f", though {near_duplicates} pairs are near-duplicates." if near_duplicates else "."))
    else:
        demo.say("   -> this run does NOT support 'different heads specialize' by this test: the trained "
                 f"heads differ {ratio:.1f}x more from each other than at init (the test asks for > 5x and "
                 "a mean JSD > 0.1 bits).")
    return {"windows": cfg["diversity_windows"], "heads": names, "uniform_entropy_nats": uniform_entropy,
            "punctuation_uniform": punct_u, "one_key_uniform": one_key_u,
            "trained": trained, "untrained": {k: v for k, v in untrained.items() if k != "jsd"},
            "mean_jsd_bits": mean_jsd, "mean_jsd_bits_untrained": mean_jsd_init,
            "closest_pair": [names[a], names[b], float(jsd[a, b])], "near_duplicate_pairs": near_duplicates}


# ------------------------------------------------------------------------------------------------
# 4. causality: a changed token never changes the outputs before it
def causality_experiment(demo: Demo, lab: LabModel) -> dict:
    c = ex.causality_curves(lab, demo.seed, demo.device)
    p, q, lab_curves, gpt_curves, before, gpt_before, causal_ok = (c[k] for k in (
        "p", "q", "lab_curves", "gpt_curves", "before", "gpt_before", "causal_ok"))
    fig, axes = plotting.new_figure(1, 2, figsize=(13, 4.6))
    for ax, curves, pos, what in ((axes[0], lab_curves, p, "MultiHeadAttention output (float64)"),
                                  (axes[1], gpt_curves, q, "next-token logits")):
        for i, (label, ys) in enumerate(curves.items()):
            ax.plot(range(len(ys)), ys, marker="o", ms=3.5, label=label, color=plotting.PALETTE[i])
        ax.set(xlabel="position", ylabel=f"max |change| of the {what}")
        ax.axvline(pos, color="gray", ls="--")
        ax.set_yscale("symlog", linthresh=1e-12)  # linear around 0, so an exact 0 is drawn as 0
        ax.set_ylim(0, 10)
        ax.legend(loc="center left")
    panel_title(axes[0], f"Lab attention, random input, position {p} changed:\nbefore it max |change| = "
                         f"{before['causal mask']:.1g} with the mask, {before['no mask']:.2g} without")
    panel_title(axes[1], f"Lab GPT on the passage, 'the ball' -> 'the dog' at position {q}:\n"
                         f"before it max |change| = {gpt_before['trained GPT (causal)']:.1g} with the mask, "
                         f"{gpt_before['same weights, mask removed']:.2g} without")
    demo.save_figure(fig, "causality.png")

    demo.say(f"4. Causality: change one token, measure every position's output. Before the change: max "
             f"|change| {before['causal mask']:.1g} (lab attention) and "
             f"{gpt_before['trained GPT (causal)']:.1g} (trained GPT) with the mask; {before['no mask']:.2g} "
             f"and {gpt_before['same weights, mask removed']:.2g} without.")
    demo.say("   -> with the mask the past is bit-for-bit unchanged: the future cannot leak backwards."
             if causal_ok else "   -> outputs before the change moved despite the mask: causality is broken!")
    return {"lab_attention": {"changed_position": p, "max_change": lab_curves, "max_change_before": before},
            "gpt": {"changed_position": q, "max_change": gpt_curves, "max_change_before": gpt_before}}


# ------------------------------------------------------------------------------------------------
# 5. softmax saturation vs head_dim
def saturation_experiment(demo: Demo, cfg: dict) -> dict:
    dims, n_keys = cfg["sat_dims"], cfg["sat_keys"]
    s = ex.saturation_series(dims, cfg["sat_rows"], n_keys, demo.seed)
    sc, un, var_qk, slope, per_d = s["scaled"], s["unscaled"], s["var_qk"], s["slope"], s["var_qk_scaled"]
    fig, axes = plotting.new_figure(1, 3, figsize=(16, 4.8))
    plotting.line_plot(axes[0], dims, {"var(q.k)": var_qk, "var(q.k / sqrt(d))": per_d},
                       logx=True, logy=True, xlabel="head_dim d (log)", ylabel="variance of the score (log)")
    axes[0].plot(dims, dims, color="gray", ls=":", label="d (theory)")
    axes[0].legend()
    panel_title(axes[0], f"var(q.k) grows like d^{slope:.2f}:\nthe raw scores spread by sqrt(d)")
    styles = {"without 1/sqrt(d)": {"ls": "--"}}
    plotting.line_plot(axes[1], dims, {"with 1/sqrt(d)": sc["entropy"], "without 1/sqrt(d)": un["entropy"]},
                       logx=True, xlabel="head_dim d (log)", ylabel="softmax entropy (nats)", styles=styles)
    axes[1].axhline(math.log(n_keys), color="gray", ls=":", label=f"uniform over {n_keys} keys")
    axes[1].legend()
    panel_title(axes[1], f"At d={dims[-1]}: entropy {sc['entropy'][-1]:.2f} nats with the scale,\n"
                         f"{un['entropy'][-1]:.2f} without (mean largest weight {un['max_weight'][-1]:.2f})")
    plotting.line_plot(axes[2], dims, {"with 1/sqrt(d)": sc["jacobian_norm"],
                                       "without 1/sqrt(d)": un["jacobian_norm"]},
                       logx=True, logy=True, xlabel="head_dim d (log)",
                       ylabel="||d softmax / d scores||_F per query (log)", styles=styles)
    panel_title(axes[2], f"Gradient through softmax at d={dims[-1]}: {100 * un['dead_fraction'][-1]:.0f}% of "
                         f"queries\npass back almost none (||J|| < 0.01) without the scale, "
                         f"{100 * sc['dead_fraction'][-1]:.0f}% with it")
    fig.suptitle(f"Softmax saturation: {cfg['sat_rows']} random unit-variance queries x {n_keys} keys "
                 "per head_dim", fontweight="bold")
    demo.save_figure(fig, "saturation.png")

    demo.say(f"5. Softmax saturation ({n_keys} keys, random q, k with unit-variance entries): var(q.k) "
             f"grows like d^{slope:.2f} (theory: d^1); divided by sqrt(d) it stays "
             f"{min(per_d):.2f}..{max(per_d):.2f}.")
    demo.say(f"   without 1/sqrt(d), d={dims[0]} -> {dims[-1]}: entropy {un['entropy'][0]:.2f} -> "
             f"{un['entropy'][-1]:.2f} nats, largest weight {un['max_weight'][0]:.2f} -> "
             f"{un['max_weight'][-1]:.2f}, mean ||J||_F "
             f"{un['jacobian_norm'][0]:.3f} -> {un['jacobian_norm'][-1]:.3f}, queries with ~no gradient "
             f"{100 * un['dead_fraction'][0]:.0f}% -> {100 * un['dead_fraction'][-1]:.0f}%; with it: entropy "
             f"{min(sc['entropy']):.2f}..{max(sc['entropy']):.2f}, ||J||_F {min(sc['jacobian_norm']):.3f}.."
             f"{max(sc['jacobian_norm']):.3f} at every d.")
    demo.say("   -> " + (f"the curriculum's 'scaling prevents saturation' holds: without the scale "
                         f"{100 * un['dead_fraction'][-1]:.0f}% of the queries at d={dims[-1]} get (almost) "
                         "no gradient." if s["saturates"]
                         else "this run does not show saturation without the scale."))
    demo.say(f"   (autograd's gradient = the formula w * (g - w.g) to {s['autograd_error']:.1g})")
    return {"head_dims": dims, "n_keys": n_keys, "rows": cfg["sat_rows"], "var_qk": var_qk,
            "var_qk_slope": slope, "scaled": sc, "unscaled": un}


# ------------------------------------------------------------------------------------------------
# 6. breaking it: train without the scale and without the mask
def break_training_experiment(demo: Demo, lab: LabModel, cfg: dict) -> dict:
    """Small GPTs on the stories: baseline, attn_scale=1.0 (no scale), causal=False (no mask); a break
    flag doubles the steps of all three, so that they stay comparable."""
    steps = cfg["break_steps"] * (2 if demo.args.no_scale or demo.args.no_mask else 1)
    r = ex.break_training(lab, cfg, steps=steps, seed=demo.seed, device=demo.device, quick=demo.quick)
    stats, samples, real_nll, unigram = r["stats"], r["samples"], r["real_nll"], r["unigram"]
    steps_of = {label: steps for label in ex.VARIANTS}
    plot_break_training(demo, r)

    for line in ex.break_training_lines(r, steps_of, QUICK_NOTE if demo.quick else None):
        demo.say(line)
    focus = [k for k, flag in (("no scale", demo.args.no_scale), ("no mask", demo.args.no_mask)) if flag]
    for label in (focus + ["baseline"]) if focus else list(ex.VARIANTS):
        for text in samples[label][: 3 if focus else 1]:
            demo.say(f"   sample {label:>9}: {ex.PROMPT + text!r}"[:400])
    return {"steps": steps_of, "stats": stats, "samples": samples, "real_text_judge_nll": real_nll,
            "unigram_entropy": unigram, "histories": r["val_curves"]}


def column(stats: dict, key: str, scale: float = 1) -> list[float]:
    return [scale * stats[label][key] for label in ex.VARIANTS]


def plot_break_training(demo: Demo, r: dict) -> None:
    labels, stats, histories, real_nll, unigram = list(ex.VARIANTS), *(r[k] for k in (
        "stats", "histories", "real_nll", "unigram"))
    bl, ns, nm = (stats[k] for k in labels)
    fig, axes = plotting.new_figure(2, 2, figsize=(13, 9.5))
    ax = axes[0, 0]
    for i, label in enumerate(labels):
        plotting.loss_curve_plot(ax, histories[label], label=label, color=plotting.PALETTE[i], window=10,
                                 val_fmt="o--", lw=1.2)
    ax.set_yscale("log")
    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis(mpl.ticker.FuncFormatter(lambda value, _: f"{value:g}"))  # 0.1, 0.2, ... not 10^-1, 2x10^-1
    ax.set(xlabel="training step", ylabel="loss (nats/token, log)")
    ax.legend(fontsize=8)
    panel_title(ax, f"Validation loss: baseline {bl['val_loss_teacher_forced']:.2f}, no scale "
                    f"{ns['val_loss_teacher_forced']:.2f}, no mask {nm['val_loss_teacher_forced']:.2f}")

    ax = axes[0, 1]
    forced, honest = column(stats, "val_loss_teacher_forced"), column(stats, "val_loss_generation_time")
    plotting.grouped_bar_plot(ax, labels, {"the whole window visible (training view)": forced,
                                           "only the past visible (generation)": honest}, fmt="%.2f")
    ax.axhline(unigram, color="gray", ls=":", label=f"token frequencies only ({unigram:.2f})")
    ax.set(ylabel="validation loss (nats/token)", ylim=(0, 1.35 * max(honest + forced + [unigram])))
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(("Without the mask the loss is a cheat: " if r["cheat"] else "No-mask loss: ")
                 + f"{nm['val_loss_teacher_forced']:.2f} with the future visible,\n"
                 f"{nm['val_loss_generation_time']:.2f} with only the past (baseline "
                 f"{bl['val_loss_generation_time']:.2f})", fontsize=10)

    ax = axes[1, 0]
    real, repeated = column(stats, "real_word_fraction", 100), column(stats, "repeat_fraction", 100)
    plotting.grouped_bar_plot(ax, labels, {"words of the corpus": real,
                                           "the same word as the one before": repeated}, fmt="%.0f%%")
    ax.set(ylabel="% of the generated words", ylim=(0, 125))
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    panel_title(ax, f"Samples (temperature 0.8): corpus words {real[2]:.0f}% without the mask vs "
                    f"{real[0]:.0f}%,\nrepeated words {repeated[2]:.0f}% vs {repeated[0]:.0f}%")

    plotting.bar_plot(axes[1, 1], labels + ["real text"], column(stats, "judge_nll") + [real_nll],
                      ylabel="NLL under the trained lab GPT (nats/token)", fmt="{:.2f}")
    axes[1, 1].set_title(f"The lab GPT judges the samples: {nm['judge_nll']:.2f} nats/token without\n"
                         f"the mask, {bl['judge_nll']:.2f} for the baseline, {real_nll:.2f} for real text",
                         fontsize=10)
    fig.suptitle("Breaking attention while training a 2-layer GPT (d_model 64, 2 heads of 32, RoPE) "
                 "on the stories", fontweight="bold")
    demo.save_figure(fig, "break_training.png")


def main(argv: list[str] | None = None) -> None:
    parser = demo_parser(__doc__)
    parser.add_argument("--no-scale", action="store_true", help="focus on training without 1/sqrt(head_dim)")
    parser.add_argument("--no-mask", action="store_true", help="focus on training without the causal mask")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="lab model's text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    lab = lab_model("gpt2", quick=demo.quick, device=demo.device)
    demo.results["lab_model"] = {"val_loss": lab.history.final_val_loss, "steps": len(lab.history.steps),
                                 "cache_hit": lab.cache_hit, "config": lab.config}
    demo.results["attention_maps"] = attention_maps_experiment(demo, lab)
    demo.results["reference_heads"] = reference_heads_experiment(demo, lab, cfg)
    demo.results["head_diversity"] = head_diversity_experiment(demo, lab, cfg)
    demo.results["causality"] = causality_experiment(demo, lab)
    demo.results["saturation"] = saturation_experiment(demo, cfg)
    demo.results["break_training"] = break_training_experiment(demo, lab, cfg)
    demo.finish()


if __name__ == "__main__":
    main()
