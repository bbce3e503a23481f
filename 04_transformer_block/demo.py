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
from llmlab.utils.verdicts import claim_mark, compare, effect

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    from matplotlib.colors import PowerNorm

    from llmlab.transformer_block import GPT, attention_maps
    from llmlab.transformer_block import experiments as ex
    from llmlab.transformer_block.pretrained import PRESETS, LabModel, lab_model
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
    from llmlab.transformer_block.pretrained import PRESETS, LabModel, lab_model
    from llmlab.utils import Demo, TrainConfig, plotting


PRESET_NAMES = ("gpt2", "llama")  # the keys of pretrained.PRESETS, for --preset before torch is imported
NORM_NAMES = ("layernorm", "rmsnorm", "none")  # lesson 10's NORMS, for --norm


def settings(quick: bool) -> dict:
    """Sizes of every experiment. The ablation models are small so the whole grid fits the budget."""
    small = dict(d_model=64, n_head=4, n_layer=4, block_size=64)
    if quick:
        return dict(eval_batches=2, eval_batch_size=8, attn_batch_size=4, sample_tokens=30, n_prompts=2,
                    variants=ex.QUICK_VARIANTS, noise_seeds=0, small=small,
                    ablation=TrainConfig(steps=20, batch_size=16, block_size=64, lr=ex.ABLATION_LR,
                                         warmup_steps=4, eval_interval=5, eval_iters=2))
    return dict(eval_batches=6, eval_batch_size=16, attn_batch_size=8, sample_tokens=60, n_prompts=3,
                variants=tuple(ex.VARIANTS), noise_seeds=1, small=small,
                ablation=TrainConfig(steps=400, batch_size=16, block_size=64, lr=ex.ABLATION_LR,
                                     warmup_steps=40, eval_interval=40, eval_iters=8))


def break_overrides(args, preset: str) -> dict:
    """The config changes the break flags ask for (only those that differ from the preset)."""
    default = PRESETS[preset]()
    wanted = {"residual": not args.no_residual, "norm": args.norm or default.norm,
              "prenorm": not args.postnorm, "n_layer": args.depth or default.n_layer}
    return {k: v for k, v in wanted.items() if getattr(default, k) != v}


def describe(overrides: dict) -> str:
    names = {"residual": lambda v: "no residual", "norm": lambda v: f"norm={v}",
             "prenorm": lambda v: "post-norm", "n_layer": lambda v: f"{v} blocks"}
    return ", ".join(names[k](v) for k, v in overrides.items()) or "baseline"


def visible(token: str, width: int = 7) -> str:
    """A token as printable cell text: spaces as '·', newlines as '⏎', other control bytes as \\xNN,
    cut to `width` characters."""
    text = token.replace(" ", "\u00b7").replace("\n", "\u23ce")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def layer_axis(ax, n_layers: int) -> None:
    """x ticks 0..n_layers named by where the residual stream is read: the embeddings, block 1, 2, ..."""
    step = 1 if n_layers <= 12 else 2
    ticks = list(range(0, n_layers + 1, step))
    ax.set_xticks(ticks, labels=["emb"] + [str(i) for i in ticks[1:]])
    ax.set_xlabel("residual stream after: embeddings (emb), block 1, 2, ...")


# ------------------------------------------------------------------------------------------------
# 1. the main model: training curve, val loss, samples


def training_and_samples(demo: Demo, cfg: dict, models: dict[str, LabModel], batches, counts: dict) -> dict:
    """Val loss / perplexity of each model (measured now, on fixed held-out batches) and samples."""
    out = {}
    fig, ax = plotting.new_figure(1, 1, figsize=(8, 4.5))
    for i, (name, lab) in enumerate(models.items()):
        loss = ex.mean_loss(lab.model, batches)
        h = lab.history
        plotting.loss_curve_plot(ax, h, label=name, color=plotting.PALETTE[i], alpha=0.5,
                                 window=max(1, len(h.train_loss) // 30), train_label=": train (smoothed)",
                                 val_label=": val")
        samples = ex.sample_continuations(lab, ex.SAMPLE_PROMPTS[: cfg["n_prompts"]], cfg["sample_tokens"],
                                          demo.seed, demo.device)
        out[name] = {"val_loss": loss, "perplexity": math.exp(loss), "steps": len(h.steps),
                     "params": lab.model.num_parameters(), "cache_hit": lab.cache_hit,
                     "train_step_ms": 1e3 * h.mean_step_time_s, "samples": samples}
    for key, style in (("unigram", ":"), ("bigram", "--")):
        ax.axhline(counts[key], color="gray", ls=style, label=f"count {key} model: {counts[key]:.2f}")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.legend(fontsize=8)
    title = "; ".join(f"{n}: val loss {r['val_loss']:.2f} (perplexity {r['perplexity']:.1f})"
                      for n, r in out.items())
    ax.set_title(title, fontsize=10)
    demo.save_figure(fig, "training.png")

    demo.say("\n1. The trained model(s): held-out loss measured now, on "
             f"{len(batches)}x{batches[0][0].shape[0]} windows of {batches[0][0].shape[1]} tokens")
    for name, r in out.items():
        cached = "loaded from cache" if r["cache_hit"] else "trained in this run"
        demo.say(f"   {name}: {r['params']:,} parameters, {r['steps']} steps ({cached}, "
                 f"{r['train_step_ms']:.0f} ms/step when trained): val loss {r['val_loss']:.3f} nats/token, "
                 f"perplexity {r['perplexity']:.1f} (count bigram {counts['bigram']:.3f}, "
                 f"unigram {counts['unigram']:.3f})")
        for s in r["samples"]:
            demo.say(f"     {s['prompt']!r} -> {s['continuation']!r}")
    if demo.quick:
        demo.say("   (quick mode: the model saw a few dozen steps, so the samples are barely English)")
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
    layer_names = ["embed"] + [f"block {i}" for i in range(1, n_rows)]

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
    ax.set_yticks(range(n_rows), labels=layer_names, fontsize=8)
    ax.set_xlabel("position: input token \u2192 true next token")
    ax.grid(False)
    final_acc = float((top1[-1] == target.cpu()).float().mean())
    ax.set_title(f"Logit lens of {main} on a prompt: top-1 prediction after each block (bold = correct); "
                 f"the output gets {final_acc:.0%} of this prompt's next tokens right", fontsize=10)

    ax_loss, ax_rank = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    xs = {n: list(range(len(s["loss"]))) for n, s in stats.items()}
    plotting.line_plot(ax_loss, xs, {n: s["loss"] for n, s in stats.items()}, logy=True,
                       ylabel="lens cross-entropy (nats/token, log)")
    plotting.line_plot(ax_rank, xs, {n: s["median_rank"] for n, s in stats.items()}, logy=True,
                       ylabel="median rank of the true token (log)")
    for a in (ax_loss, ax_rank):
        layer_axis(a, max(len(v) for v in xs.values()) - 1)
    s = stats[main]
    ax_loss.set_title(f"Held-out: loss {s['loss'][0]:.2f} after the embeddings -> {s['loss'][-1]:.2f} "
                      "at the output", fontsize=10)
    ax_rank.set_title(f"True token's median rank {s['median_rank'][0]:.0f} -> {s['median_rank'][-1]:.0f}",
                      fontsize=10)
    demo.save_figure(fig, "logit_lens.png")

    drops = np.diff(s["loss"])  # negative = the block made the prediction better
    biggest = int(np.argmin(drops)) + 1
    demo.say("\n2. Logit lens (the residual stream after each block, decoded by the final norm + lm_head), "
             "held-out text:")
    for name, st in stats.items():
        demo.say(f"   {name}: lens loss per layer {' -> '.join(f'{v:.2f}' for v in st['loss'])} nats; "
                 f"top-1 accuracy {' -> '.join(f'{v:.0%}' for v in st['top1_accuracy'])}")
    echo = s["top1_is_input"]
    why = " (tied embeddings: E E^T peaks on the diagonal)" if lab.config.tie_embeddings else ""
    demo.say(f"   After the embeddings alone the lens's top-1 is the input token itself at {echo[0]:.0%} of "
             f"positions{why}, at the output at {echo[-1]:.0%}"
             + (": the stream starts as 'the current token' and the blocks turn it into 'the next token'."
                if echo[0] > 0.5 > echo[-1] else "."))
    demo.say(f"   In {main}, block {biggest} lowers the loss most ({drops[biggest - 1]:+.2f} nats). "
             + ("Every block improves the prediction: each one adds to the same stream that the output reads."
                if (drops < 0).all() else
                "Not every block improves the lens prediction: "
                + ", ".join(f"block {i + 1} {d:+.2f}" for i, d in enumerate(drops) if d >= 0)
                + " — intermediate layers need not be in the output's basis (the lens is only a probe)."))
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
        ax.set_xlabel("key (attended-to token)")
        ax.set_ylabel("query")
        prev, first, back = (stats[k][layer] for k in ("previous_token", "first_token", "look_back_tokens"))
        ax.set_title(f"block {layer + 1}: previous token {prev:.0%}, first token {first:.0%}, "
                     f"look-back {back:.1f} tok", fontsize=9)
    for ax in axes[L:]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes[:L].tolist(), fraction=0.03, pad=0.02).set_label("attention weight (sqrt scale)")
    fig.suptitle(f"Head-averaged attention of {name}; numbers measured on held-out text "
                 f"(look-back = mean distance attended, in tokens)", fontweight="bold")
    demo.save_figure(fig, "attention_maps.png")

    demo.say(f"\n3. Attention of {name} on held-out text (head average; queries after the first):")
    for layer in range(L):
        prev, best_head, first, back = (stats[k][layer] for k in (
            "previous_token", "max_head_previous_token", "first_token", "look_back_tokens"))
        demo.say(f"   block {layer + 1}: {prev:.0%} on the previous token (best head {best_head:.0%}), "
                 f"{first:.0%} on the first token, mean look-back {back:.1f} tokens")
    T = batches[0][0].shape[1]
    uniform_prev = float(np.mean([1 / (i + 1) for i in range(1, T)]))  # query i sees i + 1 keys
    uniform_back = float(np.mean([i / 2 for i in range(1, T)]))  # the mean of 0..i
    demo.say(f"   (uniform attention over the causal window: {uniform_prev:.0%} on the previous token, "
             f"look-back {uniform_back:.1f} tokens)")
    back = stats["look_back_tokens"]
    if L > 1:
        trend = ("later blocks look further back" if all(b > a for a, b in zip(back, back[1:]))
                 else "look-back does not grow steadily with depth")
        demo.say(f"   Mean look-back {back[0]:.1f} tokens in block 1, {back[-1]:.1f} in block {L}: {trend}.")
    best = int(np.argmax(stats["max_head_previous_token"]))
    share = stats["max_head_previous_token"][best]
    demo.say(f"   The most previous-token-focused head (block {best + 1}) puts {share:.0%} there"
             + (": attention has learned where to look." if share > 2 * uniform_prev
                else ", not clearly above uniform (is the model trained enough?)."))
    return {"heldout": stats, "uniform_previous_token": uniform_prev,
            "uniform_look_back_tokens": uniform_back}


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
                               "feed-forward removed": per_layer["ffn"]},
                              fmt="%+.2f", fontsize=7, padding=2)
    ax1.set_ylabel("held-out loss increase (nats/token)")
    ax1.legend()
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
    gap = everything["attn"] - counts["bigram"]
    losses = per_layer["attn"] + per_layer["ffn"]
    if not model.config.residual and max(losses) - min(losses) < 1e-4:
        V, knocked = model.config.vocab_size, base + losses[0]
        uniform = f" = ln {V}, a uniform guess" if abs(knocked - math.log(V)) < 0.01 else ""
        demo.say(f"   Without residual connections a knock-out zeroes the whole stream, so every knock-out "
                 f"gives the same loss, {knocked:.3f}{uniform}.")
    if base > counts["bigram"] - 0.05:
        demo.say(f"   The full model ({base:.2f}) is not better than a count bigram ({counts['bigram']:.2f})"
                 + (" (quick mode: barely trained)" if demo.quick else "")
                 + ", so these knock-outs say little about what each sub-layer is for.")
    elif gap > -0.05:
        demo.say(f"   Without any attention the model ({everything['attn']:.2f}) is no better than a count "
                 f"bigram ({counts['bigram']:.2f}): context beyond the current token reaches a position only "
                 "through attention ('what to attend to').")
    else:
        demo.say(f"   Without any attention the model ({everything['attn']:.2f}) still beats a count bigram "
                 f"({counts['bigram']:.2f}) by {-gap:.2f}: it can still read the position embedding, which "
                 "a bigram cannot.")
    ffn_cost, attn_cost = everything["ffn"] - base, everything["attn"] - base
    ffn = per_layer["ffn"]
    top = max(range(L), key=lambda i: ffn[i])  # the block whose FFN costs most when removed alone
    others = [d for i, d in enumerate(ffn) if i != top]
    if base > counts["bigram"] - 0.05:
        role = "."
    elif ffn_cost <= 0.1:
        role = ": the FFNs matter little in this model (the claim is not supported here)."
    elif others and ffn[top] > 0.5 * ffn_cost:
        # one block's FFN makes up most of the total: the total measures that block, not FFNs in general
        role = (f": one block at a time, block {top + 1}'s FFN costs {ffn[top]:+.2f} and the other "
                f"blocks' {min(others):+.2f} to {max(others):+.2f}, so most of the total is one block's FFN"
                + (", the one that reads the token embedding first" if top == 0 else "") + ".")
    else:
        role = (": one block at a time the FFNs cost "
                + ", ".join(f"block {i + 1} {d:+.2f}" for i, d in enumerate(ffn)) + ".")
    demo.say(f"   Removing every FFN costs {ffn_cost:+.2f} nats, every attention {attn_cost:+.2f}{role}")
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

    verdicts = ablation_verdicts(demo, runs, counts, threshold, noise)
    results = {name: {k: v for k, v in r.items() if k != "history"}
               | {"val_curve": {"steps": r["history"].eval_steps, "loss": r["history"].val_loss}}
               for name, r in runs.items()}
    return {"runs": results, "noise": noise, "baseline_other_seeds": a["other_seeds"], "threshold": threshold,
            "verdicts": verdicts,
            "config": {**cfg["small"], "train": asdict(cfg["ablation"])}}, models


def final_loss_title(runs: dict, base: float, band: float | None) -> str:
    """The bar chart's title: the worst (or best) variant only when it differs from the baseline by more
    than the noise band; band=None (no seed-noise estimate) names no variant."""
    worst = max(runs, key=lambda n: runs[n]["final_val_loss"])
    best = min(runs, key=lambda n: runs[n]["final_val_loss"])
    w, b = runs[worst]["final_val_loss"], runs[best]["final_val_loss"]
    if band is None:
        return f"Final val loss: {b:.2f} to {w:.2f}, no seed-noise estimate, so no variant is singled out"
    if compare(w, base, band) == "b":
        return f"Final val loss: '{worst}' is worst ({w:.2f} vs baseline {base:.2f}, beyond \u00b1{band:.3f})"
    if compare(b, base, band) == "a":
        return f"Final val loss: '{best}' is best ({b:.2f} vs baseline {base:.2f}, beyond \u00b1{band:.3f})"
    return (f"Final val loss: no measurable difference, every variant within \u00b1{band:.3f} of the "
            f"baseline {base:.2f}")


def ablation_verdicts(demo: Demo, runs: dict, counts: dict, threshold: float, noise: float | None) -> dict:
    """The curriculum's lesson-04 claims against this run's numbers: a difference counts only beyond the
    noise, and in quick mode nothing is concluded (the numbers are printed, the verdicts say so)."""
    base = runs["baseline"]["final_val_loss"]
    steps = len(runs["baseline"]["history"].steps)
    unigram = counts["unigram"]

    def delta(name: str) -> float:
        return runs[name]["final_val_loss"] - base

    def stuck(name: str) -> str:
        """A note when a model never got past word frequencies (the count unigram's loss)."""
        loss = runs[name]["final_val_loss"]
        return (f" — at {loss:.2f} it never got past word frequencies (count unigram {unigram:.2f})"
                if loss > unigram - 0.1 and not demo.quick else "")

    demo.say(f"\n5. Ablations: small GPTs, {steps} training steps each; final val loss (nats/token), "
             f"time per step, parameters:")
    for name, r in runs.items():
        demo.say(f"   {name:<16} {r['final_val_loss']:.3f} ({delta(name):+.3f})  "
                 f"{r['step_ms']:5.0f} ms/step  {r['params']:>8,} params"
                 + ("  DIVERGED" if r["diverged"] else "") + ("  (cached)" if r["cache_hit"] else ""))
    noise_text = (f"the baseline with another seed differs by {noise:.3f}" if noise is not None
                  else f"no noise measured in quick mode, {threshold:.2f} assumed")
    demo.say(f"   A difference counts only beyond {threshold:.3f} nats ({noise_text}"
             + (", doubled)." if noise is not None else ")."))
    if demo.quick:
        demo.say(f"   QUICK MODE: {steps} steps leave every model barely trained, so nothing is concluded "
                 "below; run without --quick for the real comparison.")
    verdicts = {}

    def verdict(key: str, supported: bool | str | None, text: str, why: str = "") -> None:
        if demo.quick:  # a few dozen steps decide nothing: report the numbers, claim nothing
            supported, why = None, ""
        text += why + "."
        verdicts[key] = {"supported": supported, "text": text}
        demo.say(f"   [{claim_mark(supported)}] {text}")

    if "no residual" in runs:
        d = delta("no residual")
        worse = effect(d, threshold) == "worse"
        verdict("residual", worse,
                f"Residual connections: without them the val loss is {d:+.3f} nats from the baseline",
                stuck("no residual") if worse else ", within the noise at this depth and budget")
    if "no norm" in runs:
        d = delta("no norm")
        outcome = effect(d, threshold)
        verdict("norm", {"worse": True, "better": False}.get(outcome),
                f"Normalization: without any norm the val loss is {d:+.3f} nats from the baseline",
                {"worse": stuck("no norm"), "better": " — better without it here"}.get(
                    outcome, ", within the noise: as good without it at this depth and learning rate"))
    if "post-norm" in runs:
        d = delta("post-norm")
        text = f"Norm placement: post-norm is {d:+.3f} nats from pre-norm at the same learning rate"
        text += stuck("post-norm")
        why = ""
        low = "post-norm, lr/6"
        if low in runs:
            text += (f"; at a sixth of the learning rate it reaches {runs[low]['final_val_loss']:.3f} "
                     f"({delta(low):+.3f})")
            post, rescue = runs["post-norm"]["final_val_loss"], runs[low]["final_val_loss"]
            rescued = compare(rescue, post, threshold) == "a"
            if effect(d, threshold) == "worse" and rescued:
                why += (": post-norm fails at a step size that pre-norm trains well with — where the norm "
                        "sits decides how large a learning rate is stable")
        verdict("prenorm", {"worse": True, "better": False}.get(effect(d, threshold)), text, why)

    by_depth = sorted((r["n_layer"], r["final_val_loss"], r["step_ms"]) for n, r in runs.items()
                      if n == "baseline" or "n_layer" in r["overrides"])  # (depth, loss, ms/step)
    if len(by_depth) > 1:
        gains = [(a, b, la - lb) for (a, la, _), (b, lb, _) in zip(by_depth, by_depth[1:])]
        text = "Depth (same width, same steps): "
        text += ", ".join(f"{n} blocks {loss:.3f}" for n, loss, _ in by_depth)
        parts = []
        helps = {a: effect(-g, threshold) == "better" for a, _, g in gains}  # g: loss drop a -> b blocks
        for a, b, g in gains:
            words = {"better": "helps", "worse": "HURTS"}.get(effect(-g, threshold), "is within the noise")
            parts.append(f"{a}->{b} blocks {words} ({-g:+.3f})")
        text += "; " + ", ".join(parts)
        best = min(by_depth, key=lambda row: row[1])
        deepest = by_depth[-1]
        why = ""
        if best[0] != deepest[0]:
            relation = ("worse than" if compare(deepest[1], best[1], threshold) == "b"
                        else "not measurably better than")
            why = (f": at equal steps {deepest[0]} blocks are {relation} {best[0]} on this budget, at "
                   f"{deepest[2] / best[2]:.1f}x the time per step")
        if all(helps.values()):
            supported = True
        elif any(helps.values()):
            supported = "partly"  # some extra depth helps, the rest is not better at equal steps
        else:
            supported = False
        verdict("depth", supported, text, why)
    return verdicts


def residual_norm_experiment(demo: Demo, models: dict[str, LabModel], small: dict[str, GPT], batches) -> dict:
    result = ex.residual_norm_curves(models, small, batches[0][0])
    big, same_depth, growth = result["lab"], result["small"], result["growth_small"]
    d_small = small["baseline"].config.d_model
    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(12, 4.5))
    plotting.line_plot(ax1, {n: list(range(len(v))) for n, v in big.items()}, big,
                       ylabel="mean L2 norm of the residual stream")
    layer_axis(ax1, max(len(v) for v in big.values()) - 1)
    main = list(big)[-1]
    ax1.set_title(f"Lab GPT ({main}): the stream grows {big[main][-1] / big[main][0]:.0f}x\n"
                  "from the embeddings to the last block", fontsize=10)
    plotting.line_plot(ax2, {n: list(range(len(v))) for n, v in same_depth.items()}, same_depth, logy=True,
                       ylabel="mean L2 norm (log scale)")
    layer_axis(ax2, max(len(v) for v in same_depth.values()) - 1)
    ax2.axhline(math.sqrt(d_small), color="gray", ls=":", label=f"sqrt(d_model) = {math.sqrt(d_small):.0f}")
    ax2.legend(fontsize=8)
    ax2.set_title("Small ablation models, growth embeddings -> last block:\n"
                  + ", ".join(f"{n} {g:.0f}x" for n, g in growth.items()), fontsize=10)
    demo.save_figure(fig, "residual_norms.png")

    demo.say("\n6. Residual stream norm after the embeddings and after each block (held-out text):")
    for n, v in {**big, **{f"small {k}": v for k, v in same_depth.items()}}.items():
        demo.say(f"   {n}: {' -> '.join(f'{a:.1f}' for a in v)}")
    for name in [n for n in same_depth if n.startswith("post-norm")]:
        post = same_depth[name][1:]
        demo.say(f"   {name} ends every block in a norm: its stream stays between {min(post):.1f} and "
                 f"{max(post):.1f} (sqrt(d_model) = {math.sqrt(d_small):.1f} when the norm's gains are 1); "
                 f"the pre-norm baseline's grows {growth['baseline']:.0f}x from the embeddings.")
    return result


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--preset", choices=PRESET_NAMES, default="gpt2",
                        help="architecture of the main model and of the ablation models (default gpt2)")
    parser.add_argument("--no-residual", action="store_true",
                        help="break: main model without residual connections (x = f(norm(x)))")
    parser.add_argument("--norm", choices=NORM_NAMES, default=None,
                        help="break: the main model's normalization (default: the preset's)")
    parser.add_argument("--postnorm", action="store_true",
                        help="break: main model with post-norm blocks, x = norm(x + f(x))")
    parser.add_argument("--depth", type="positive_int", default=None,
                        help="break: number of blocks of the main model")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="lab model's text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    if args.depth is not None and args.depth < 1:
        parser.error(f"--depth must be >= 1, got {args.depth}")

    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    results = demo.results
    overrides = break_overrides(args, args.preset)
    main_name = describe(overrides) if overrides else "baseline"
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
    main_lab = models[main_name]
    results["training"] = demo.timed("training", training_and_samples, demo, cfg, models, batches, counts)
    results["logit_lens"] = demo.timed("logit_lens", logit_lens_experiment, demo, models, main_name, batches)
    results["attention"] = demo.timed("attention", attention_experiment, demo, cfg, main_lab, main_name,
                                      batches)
    results["knockout"] = demo.timed("knockout", knockout_experiment, demo, main_lab, main_name, batches,
                                     counts)
    results["ablations"], small = demo.timed("ablations", ablation_experiment, demo, cfg, lab, args.preset,
                                             counts)
    results["residual_norms"] = demo.timed("residual_norms", residual_norm_experiment, demo, models, small,
                                           batches)
    demo.finish()
    return results


if __name__ == "__main__":
    main()
