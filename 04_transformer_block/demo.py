"""Lesson 04 demo: look inside the trained lab GPT, then take its blocks apart and measure what breaks.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show] [--preset gpt2|llama]
                   [--no-residual] [--norm none|layernorm|rmsnorm] [--postnorm] [--depth N]

The main model is the lab GPT (`lab_model`: 4 blocks of 128 channels trained on the stories with a
1024-token BPE, cached after the first run). Experiments (each prints its numbers and draws one figure):
 1. training.png        its loss curves, val loss and perplexity; text sampled from it (printed, results.json)
 2. logit_lens.png      the residual stream decoded after every block (the logit lens) on a story prompt:
                        the top-1 token in each cell, coloured by the probability of the true next token
 3. attention_maps.png  the head-averaged attention of every block on the same prompt, and how far back
                        each block looks (measured on held-out text)
 4. knockout.png        the held-out loss when one block's attention or feed-forward output is removed,
                        against count-based unigram and bigram models: what each sub-layer is for
 5. ablations.png       small GPTs trained with the shared loop, with one part removed or a different
                        depth: loss curves, final val loss, time per step
 6. residual_norms.png  the size of the residual stream after each block, for the lab GPT and for the
                        small ablation models (pre-norm grows, post-norm is pinned at sqrt(d_model))
Break flags: they change the main model, a lab GPT trained with the same recipe, which every experiment
then shows beside the baseline:
 --no-residual   x = f(norm(x)) instead of x + f(norm(x))
 --norm KIND     none | layernorm | rmsnorm
 --postnorm      x = norm(x + f(x)) (Vaswani 2017) instead of x + f(norm(x))
 --depth N       N blocks instead of 4

The measurements live in experiments.py (functions that return numbers); this file runs them in order and,
for each, draws its figure and prints its verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import compare

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    from matplotlib.colors import PowerNorm

    from llmlab.transformer_block import GPT, attention_maps
    from llmlab.transformer_block import experiments as ex
    from llmlab.transformer_block.pretrained import LabModel, lab_model
    from llmlab.utils import Demo, TrainConfig, plotting


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, PowerNorm, GPT, attention_maps, ex, PRESETS, LabModel, lab_model, Demo, TrainConfig
    global plotting
    import numpy as np
    from matplotlib.colors import PowerNorm

    from llmlab.transformer_block import GPT, attention_maps
    from llmlab.transformer_block import experiments as ex
    from llmlab.transformer_block.pretrained import LabModel, lab_model
    from llmlab.utils import Demo, TrainConfig, plotting


PRESET_NAMES = ("gpt2", "llama")  # the keys of pretrained.PRESETS, for --preset before torch is imported
NORM_NAMES = ("layernorm", "rmsnorm", "none")  # lesson 10's NORMS, for --norm


def settings(quick: bool) -> dict:
    """Sizes of every experiment. The ablation models are small so the whole grid fits the budget."""
    small = dict(d_model=64, n_head=4, n_layer=4, block_size=64)
    steps, warmup, every, iters = (20, 4, 5, 2) if quick else (400, 40, 40, 8)
    ablation = TrainConfig(steps=steps, batch_size=16, block_size=64, lr=ex.ABLATION_LR, warmup_steps=warmup,
                           eval_interval=every, eval_iters=iters)
    if quick:
        return dict(eval_batches=2, eval_batch_size=8, attn_batch_size=4, sample_tokens=30, n_prompts=2,
                    variants=ex.QUICK_VARIANTS, noise_seeds=0, small=small, ablation=ablation)
    return dict(eval_batches=6, eval_batch_size=16, attn_batch_size=8, sample_tokens=60, n_prompts=3,
                variants=tuple(ex.VARIANTS), noise_seeds=1, small=small, ablation=ablation)


def visible(token: str, width: int = 7) -> str:
    """A token as printable cell text: spaces as '·', newlines as '⏎', other control bytes as \\xNN,
    cut to `width` characters."""
    text = token.replace(" ", "\u00b7").replace("\n", "\u23ce")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def say_all(demo: Demo, lines: list[str]) -> None:
    for line in lines:
        demo.say(line)


def layer_plot(ax, series: dict, **kwargs) -> None:
    """`plotting.line_plot` of curves over layers, x ticks named by where the residual stream is read: the
    embeddings, block 1, 2, ..."""
    plotting.line_plot(ax, {n: list(range(len(v))) for n, v in series.items()}, series, **kwargs)
    n_layers = max(len(v) for v in series.values()) - 1
    step = 1 if n_layers <= 12 else 2
    ticks = list(range(0, n_layers + 1, step))
    ax.set_xticks(ticks, labels=["emb"] + [str(i) for i in ticks[1:]])
    ax.set_xlabel("residual stream after: embeddings (emb), block 1, 2, ...")


# ------------------------------------------------------------------------------------------------
# 1. the main model: training curve, val loss, samples


def training_and_samples(demo: Demo, cfg: dict, models: dict[str, LabModel], batches, counts: dict) -> dict:
    """Val loss / perplexity of each model (measured now, on fixed held-out batches) and samples."""
    out = {name: ex.trained_model_numbers(lab, batches, cfg, demo.seed, demo.device)
           for name, lab in models.items()}
    fig, ax = plotting.new_figure(1, 1, figsize=(8, 4.5))
    for i, (name, lab) in enumerate(models.items()):
        h = lab.history
        plotting.loss_curve_plot(ax, h, label=name, color=plotting.PALETTE[i], alpha=0.5,
                                 window=max(1, len(h.train_loss) // 30), train_label=": train (smoothed)",
                                 val_label=": val")
    for key, style in (("unigram", ":"), ("bigram", "--")):
        ax.axhline(counts[key], color="gray", ls=style, label=f"count {key} model: {counts[key]:.2f}")
    ax.set(xlabel="training step", ylabel="cross-entropy (nats/token)")
    ax.legend(fontsize=8)
    ax.set_title("; ".join(f"{n}: val loss {r['val_loss']:.2f} (perplexity {r['perplexity']:.1f})"
                           for n, r in out.items()), fontsize=10)
    demo.save_figure(fig, "training.png")

    say_all(demo, ex.training_report(out, counts, batches, demo.quick))
    return out


# ------------------------------------------------------------------------------------------------
# 2. the logit lens


def logit_lens_experiment(demo: Demo, models: dict[str, LabModel], main: str, batches) -> dict:
    lab = models[main]
    lens = ex.prompt_lens(lab, ex.PROMPT)
    p_true, top1, target, tokens = lens["p_true"], lens["top1"], lens["target"], lens["tokens"]
    T = len(tokens)
    stats = {name: ex.lens_statistics(m.model, batches) for name, m in models.items()}
    n_rows = p_true.shape[0]

    fig = plotting.plt.figure(figsize=(max(12, 0.62 * (T - 1) + 2), 4.0 + 0.45 * n_rows))
    grid = fig.add_gridspec(2, 2, height_ratios=[0.45 * n_rows + 0.8, 3.0])
    ax = fig.add_subplot(grid[0, :])
    im = ax.imshow(p_true, cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01).set_label("P(true next token)")
    for layer in range(n_rows):
        for t in range(T - 1):
            hit = int(top1[layer, t]) == int(target[t])
            ax.text(t, layer, visible(lab.decode([int(top1[layer, t])])), ha="center", va="center",
                    fontsize=6.5, fontweight="bold" if hit else "normal",
                    color="black" if p_true[layer, t] > 0.5 else "white")
    ax.set_xticks(range(T - 1), labels=[f"{visible(tokens[t])}\u2192{visible(tokens[t + 1])}"
                                        for t in range(T - 1)], rotation=90, fontsize=7)
    ax.set_yticks(range(n_rows), labels=["embed"] + [f"block {i}" for i in range(1, n_rows)], fontsize=8)
    ax.set_xlabel("position: input token \u2192 true next token")
    ax.grid(False)
    final_acc = float((top1[-1] == target.cpu()).float().mean())
    ax.set_title(f"Logit lens of {main} on a prompt: top-1 prediction after each block (bold = correct); "
                 f"the output gets {final_acc:.0%} of this prompt's next tokens right", fontsize=10)

    ax_loss, ax_rank = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    layer_plot(ax_loss, {n: s["loss"] for n, s in stats.items()}, logy=True,
               ylabel="lens cross-entropy (nats/token, log)")
    layer_plot(ax_rank, {n: s["median_rank"] for n, s in stats.items()}, logy=True,
               ylabel="median rank of the true token (log)")
    s = stats[main]
    ax_loss.set_title(f"Held-out: loss {s['loss'][0]:.2f} after the embeddings -> {s['loss'][-1]:.2f} "
                      "at the output", fontsize=10)
    ax_rank.set_title(f"True token's median rank {s['median_rank'][0]:.0f} -> {s['median_rank'][-1]:.0f}",
                      fontsize=10)
    demo.save_figure(fig, "logit_lens.png")

    say_all(demo, ex.lens_verdicts(stats, main, lab.config.tie_embeddings))
    return {"prompt": ex.PROMPT, "prompt_tokens": tokens, "prompt_top1_accuracy": final_acc,
            "prompt_p_true": p_true.tolist(), "heldout": stats}


# ------------------------------------------------------------------------------------------------
# 3. attention maps


def attention_experiment(demo: Demo, cfg: dict, lab: LabModel, name: str, batches) -> dict:
    idx = lab.encode(ex.PROMPT)
    maps = [w[0].mean(0).cpu() for w in attention_maps(lab.model, idx)]  # n_layer x (T, T), head average
    tokens = [visible(lab.decode([int(t)]), 8) for t in idx[0]]
    stats = ex.attention_statistics(lab.model, batches[0][0][: cfg["attn_batch_size"]])
    L = len(maps)
    ncols = min(L, 2 if L <= 4 else 4)
    nrows = math.ceil(L / ncols)
    fig, axes = plotting.new_figure(nrows, ncols, figsize=(5.8 * ncols + 1, 5.6 * nrows))
    axes = np.atleast_1d(axes).ravel()
    for layer, (ax, w) in enumerate(zip(axes, maps)):
        im = ax.imshow(w.numpy(), cmap="magma", norm=PowerNorm(0.5, vmin=0, vmax=1), interpolation="nearest")
        ax.set_xticks(range(len(tokens)), labels=tokens, rotation=90, fontsize=6)
        ax.set_yticks(range(len(tokens)), labels=tokens, fontsize=6)
        ax.grid(False)
        ax.set(xlabel="key (attended-to token)", ylabel="query")
        prev, first, back = (stats[k][layer] for k in ("previous_token", "first_token", "look_back_tokens"))
        ax.set_title(f"block {layer + 1}: previous token {prev:.0%}, first token {first:.0%}, "
                     f"look-back {back:.1f} tok", fontsize=9)
    for ax in axes[L:]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes[:L].tolist(), fraction=0.03, pad=0.02).set_label("attention weight (sqrt scale)")
    fig.suptitle(f"Head-averaged attention of {name}; numbers measured on held-out text "
                 f"(look-back = mean distance attended, in tokens)", fontweight="bold")
    demo.save_figure(fig, "attention_maps.png")

    lines, uniform = ex.attention_verdicts(stats, name, batches[0][0].shape[1])
    say_all(demo, lines)
    return {"heldout": stats, **uniform}


# ------------------------------------------------------------------------------------------------
# 4. knocking out sub-layers


def knockout_experiment(demo: Demo, lab: LabModel, name: str, batches, counts: dict) -> dict:
    model = lab.model
    L = model.config.n_layer
    result = ex.knockout_losses(model, batches)
    base, per_layer, everything = (result[k] for k in ("base_loss", "per_layer_increase", "all_removed_loss"))

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(13, 4.8))
    plotting.grouped_bar_plot(ax1, [f"block {i + 1}" for i in range(L)],
                              {"attention removed": per_layer["attn"],
                               "feed-forward removed": per_layer["ffn"]}, fmt="%+.2f", fontsize=7,
                              padding=2, ylabel="held-out loss increase (nats/token)")
    part, layer = max(((p, i) for p in per_layer for i in range(L)), key=lambda k: per_layer[k[0]][k[1]])
    ax1.set_title(f"One sub-layer removed: the {'attention' if part == 'attn' else 'FFN'} of block "
                  f"{layer + 1} matters most (+{per_layer[part][layer]:.2f} nats)", fontsize=10)
    labels = ["full model", "every attention\nremoved", "every FFN\nremoved", "count bigram", "count unigram"]
    values = [base, everything["attn"], everything["ffn"], counts["bigram"], counts["unigram"]]
    colors = [plotting.PALETTE[2], plotting.PALETTE[0], plotting.PALETTE[1], "#999999", "#BBBBBB"]
    plotting.bar_plot(ax2, labels, values, ylabel="held-out cross-entropy (nats/token)", fmt="{:.2f}",
                      colors=colors)
    ax2.set_title(f"All attention removed: {everything['attn']:.2f} nats (count bigram "
                  f"{counts['bigram']:.2f}); all FFNs removed: {everything['ffn']:.2f}", fontsize=10)
    demo.save_figure(fig, "knockout.png")

    demo.say(f"\n4. Knock-outs on {name} (a sub-layer's output set to 0, held-out loss {base:.3f}):")
    for part, label in (("attn", "attention"), ("ffn", "feed-forward")):
        demo.say(f"   {label} of one block removed: "
                 + ", ".join(f"block {i + 1} {d:+.3f}" for i, d in enumerate(per_layer[part]))
                 + f"; all removed: {everything[part]:.3f}")
    say_all(demo, ex.knockout_verdicts(result, counts, model.config, demo.quick))
    return result


# ------------------------------------------------------------------------------------------------
# 5-6. ablations and the residual stream: small models trained with one part changed


def ablation_experiment(demo: Demo, cfg: dict, lab: LabModel, preset: str, counts: dict) -> tuple[dict, dict]:
    a = ex.ablation_runs(cfg, lab, preset, demo.seed, demo.device)
    runs, models, noise, threshold = a["runs"], a["models"], a["noise"], a["threshold"]
    base = runs["baseline"]["final_val_loss"]

    fig, (ax1, ax2, ax3) = plotting.new_figure(1, 3, figsize=(17, 5))
    styles = {n: {"ls": "--"} for n in runs if "block" in n}
    plotting.line_plot(ax1, {n: r["history"].eval_steps for n, r in runs.items()},
                       {n: r["history"].val_loss for n, r in runs.items()}, styles=styles,
                       xlabel="training step", ylabel="val loss (nats/token)")
    ax1.axhline(counts["bigram"], color="gray", ls=":", label=f"count bigram {counts['bigram']:.2f}")
    ax1.axhline(counts["unigram"], color="gray", ls="-.", label=f"count unigram {counts['unigram']:.2f}")
    curves = [v for r in runs.values() for v in r["history"].val_loss] + [counts["unigram"]]
    ax1.set_ylim(top=max(curves) + 0.35 * (max(curves) - min(curves)))  # room for the legend above
    ax1.legend(fontsize=7, ncol=3, loc="upper center", frameon=True, framealpha=0.9)
    ax1.set_title(f"Val loss while training ({cfg['ablation'].steps} steps of "
                  f"{cfg['ablation'].batch_size}x{cfg['ablation'].block_size} tokens)", fontsize=10)
    names = list(runs)
    finals = [runs[n]["final_val_loss"] for n in names]
    plotting.bar_plot(ax2, names, finals, ylabel="final val loss (nats/token)", fmt="{:.3f}")
    spread = "2x seed-to-seed spread" if noise is not None else "assumed noise"
    ax2.axhspan(base - threshold, base + threshold, color="gray", alpha=0.2,
                label=f"baseline \u00b1 {threshold:.3f} ({spread})")
    ax2.axhline(counts["bigram"], color="gray", ls=":", label=f"count bigram {counts['bigram']:.2f}")
    ax2.axhline(counts["unigram"], color="gray", ls="-.", label=f"count unigram {counts['unigram']:.2f}")
    refs = finals + [counts["bigram"], counts["unigram"]]
    ax2.set_ylim(min(refs) * 0.9, max(refs) * 1.2)
    ax2.legend(fontsize=7, loc="upper right", frameon=True, framealpha=0.9)
    ax2.set_title(final_loss_title(runs, base, threshold if noise is not None else None), fontsize=10)
    plotting.bar_plot(ax3, [f"{n} ({runs[n]['params'] / 1e3:.0f}k params)" for n in names],
                      [runs[n]["step_ms"] for n in names], xlabel="time per training step (ms)", fmt="{:.0f}",
                      horizontal=True)
    depth_ms = sorted((r["n_layer"], r["step_ms"]) for n, r in runs.items()
                      if n == "baseline" or "n_layer" in r["overrides"])
    title = "Time per training step"
    if len(depth_ms) > 1:
        (shallow, fast), (deep, slow) = depth_ms[0], depth_ms[-1]
        title += f": {deep} blocks take {slow / fast:.1f}x the time of {shallow}"
    ax3.set_title(title, fontsize=10)
    demo.save_figure(fig, "ablations.png")

    verdicts, lines = ex.ablation_verdicts(runs, counts, threshold, noise, demo.quick)
    say_all(demo, lines)
    results = {name: {k: v for k, v in r.items() if k != "history"}
               | {"val_curve": {"steps": r["history"].eval_steps, "loss": r["history"].val_loss}}
               for name, r in runs.items()}
    return {"runs": results, "noise": noise, "baseline_other_seeds": a["other_seeds"], "threshold": threshold,
            "verdicts": verdicts,
            "config": {**cfg["small"], "train": asdict(cfg["ablation"])}}, models


def final_loss_title(runs: dict, base: float, band: float | None) -> str:
    """The bar chart's title: the worst (or best) variant only when it differs from the baseline by more
    than the noise band; band=None (no seed-noise estimate) names no variant."""
    worst, best = (pick(runs, key=lambda n: runs[n]["final_val_loss"]) for pick in (max, min))
    w, b = runs[worst]["final_val_loss"], runs[best]["final_val_loss"]
    if band is None:
        return f"Final val loss: {b:.2f} to {w:.2f}, no seed-noise estimate, so no variant is singled out"
    if compare(w, base, band) == "b":
        return f"Final val loss: '{worst}' is worst ({w:.2f} vs baseline {base:.2f}, beyond \u00b1{band:.3f})"
    if compare(b, base, band) == "a":
        return f"Final val loss: '{best}' is best ({b:.2f} vs baseline {base:.2f}, beyond \u00b1{band:.3f})"
    return (f"Final val loss: no measurable difference, every variant within \u00b1{band:.3f} of the "
            f"baseline {base:.2f}")


def residual_norm_experiment(demo: Demo, models: dict[str, LabModel], small: dict[str, GPT], batches) -> dict:
    result = ex.residual_norm_curves(models, small, batches[0][0])
    big, same_depth, growth = result["lab"], result["small"], result["growth_small"]
    d_small = small["baseline"].config.d_model
    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(12, 4.5))
    layer_plot(ax1, big, ylabel="mean L2 norm of the residual stream")
    main = list(big)[-1]
    ax1.set_title(f"Lab GPT ({main}): the stream grows {big[main][-1] / big[main][0]:.0f}x\n"
                  "from the embeddings to the last block", fontsize=10)
    layer_plot(ax2, same_depth, logy=True, ylabel="mean L2 norm (log scale)")
    ax2.axhline(math.sqrt(d_small), color="gray", ls=":", label=f"sqrt(d_model) = {math.sqrt(d_small):.0f}")
    ax2.legend(fontsize=8)
    ax2.set_title("Small ablation models, growth embeddings -> last block:\n"
                  + ", ".join(f"{n} {g:.0f}x" for n, g in growth.items()), fontsize=10)
    demo.save_figure(fig, "residual_norms.png")

    say_all(demo, ex.residual_norm_verdicts(result, d_small))
    return result


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    for flag, help_text, kwargs in (
            ("--preset", "architecture of the main model and of the ablation models (default gpt2)",
             dict(choices=PRESET_NAMES, default="gpt2")),
            ("--no-residual", "break: main model without residual connections (x = f(norm(x)))",
             dict(action="store_true")),
            ("--norm", "break: the main model's normalization (default: the preset's)",
             dict(choices=NORM_NAMES, default=None)),
            ("--postnorm", "break: main model with post-norm blocks, x = norm(x + f(x))",
             dict(action="store_true")),
            ("--depth", "break: number of blocks of the main model", dict(type="positive_int", default=None)),
            ("--corpus", "lab model's text: stories (default), python-docs, python-code or a file",
             dict(type="corpus", default="stories"))):
        parser.add_argument(flag, help=help_text, **kwargs)
    args = parser.parse_args(argv)
    if args.depth is not None and args.depth < 1:
        parser.error(f"--depth must be >= 1, got {args.depth}")

    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    results = demo.results
    overrides = ex.break_overrides(args, args.preset)
    main_name = ex.describe(overrides) if overrides else "baseline"
    kinds = {"baseline": {}, **({main_name: overrides} if overrides else {})}
    models = demo.timed("lab_models", lambda: {
        name: lab_model(args.preset, quick=demo.quick, device=demo.device, seed=demo.seed, **change)
        for name, change in kinds.items()})
    lab = models["baseline"]
    demo.say(f"Main model: lab {args.preset} GPT{'' if not overrides else ' with ' + main_name}; "
             f"{len(lab.train_data):,} training tokens of stories, vocabulary {lab.config.vocab_size}.")
    results["main_model"] = {"name": main_name, "preset": args.preset, "overrides": overrides,
                             "config": asdict(models[main_name].config)}

    batches = ex.eval_batches(lab, cfg, demo.seed, demo.device)
    counts = ex.count_model_losses(lab.train_data, lab.val_data, lab.config.vocab_size)
    results["count_models"] = counts
    main_lab, timed = models[main_name], demo.timed
    results["training"] = timed("training", training_and_samples, demo, cfg, models, batches, counts)
    results["logit_lens"] = timed("logit_lens", logit_lens_experiment, demo, models, main_name, batches)
    results["attention"] = timed("attention", attention_experiment, demo, cfg, main_lab, main_name, batches)
    results["knockout"] = timed("knockout", knockout_experiment, demo, main_lab, main_name, batches, counts)
    results["ablations"], small = timed("ablations", ablation_experiment, demo, cfg, lab, args.preset, counts)
    results["residual_norms"] = timed("residual_norms", residual_norm_experiment, demo, models, small,
                                      batches)
    demo.finish()
    return results


if __name__ == "__main__":
    main()
