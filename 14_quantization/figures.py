"""Lesson 14's figures: each draws one experiment's measured numbers (demo.py passes them in) with a title
that states what was found."""

from __future__ import annotations

import numpy as np

from llmlab.utils.plotting import PALETTE, grouped_bar_plot, new_figure

GRAN_COLORS = {"tensor": PALETTE[3], "channel": PALETTE[0], "group 32": PALETTE[2]}
METHOD_STYLE = {"rtn": "-", "gptq": "--", "awq": ":"}
METHOD_MARKER = {"rtn": "o", "gptq": "s", "awq": "^"}


def _gran_color(g: str) -> str:
    return GRAN_COLORS.get(g, PALETTE[4])


def distributions_figure(demo, args, out: dict) -> None:
    layers = out["layers"]
    fig, axes = new_figure(1, 3, figsize=(18, 5))
    w_name, a_name = out["outlier_weight_layer"], out["outlier_activation_layer"]
    w = np.array(out["outlier_weights"])
    ax = axes[0]
    ax.hist(w, bins=120, color=PALETTE[0], log=True)
    step = np.abs(w).max() / (2 ** (args.bits - 1) - 1)
    for k in range(-(2 ** (args.bits - 1) - 1), 2 ** (args.bits - 1)):
        ax.axvline(k * step, color=PALETTE[3], lw=0.6, alpha=0.6)
    inside = float(np.mean(np.abs(w) < step / 2))
    ax.set(title=f"{w_name}: {100 * inside:.0f}% of the weights round to 0\non a per-tensor {args.bits}-bit "
                 "grid "
                 "(red lines) stretched by the largest |w|",
           xlabel="weight value", ylabel="count (log scale)")
    ax = axes[1]
    x = np.array(out["activation_channel_mean"])
    ax.bar(np.arange(len(x)), x, width=1.0, color=PALETTE[1])
    ax.axhline(np.median(x), color="k", ls="--", lw=1, label=f"median channel {np.median(x):.3f}")
    ax.set(title=f"inputs of {a_name}: the largest channel is\n{x.max() / np.median(x):.1f}x the median "
                 "(AWQ protects the weights that meet them)",
           xlabel="input channel", ylabel="mean |activation| on calibration tokens")
    ax.legend()
    ax = axes[2]
    names = list(layers)
    grans = list(out["mean_weight_error"])
    for g in grans:
        ax.plot(range(len(names)), [layers[n]["weight_error"][g] for n in names], "o-", ms=3,
                color=_gran_color(g), label=f"{g} (mean {out['mean_weight_error'][g]:.3f})")
    ax.set_xticks(range(len(names)), [n.replace("blocks.", "").replace(".attn", "").replace(".ffn", "")
                                      for n in names], rotation=90, fontsize=7)
    finest, coarsest = min(out["mean_weight_error"].values()), out["mean_weight_error"]["tensor"]
    ax.set(title=f"{args.bits}-bit relative weight error per layer: per tensor {coarsest / finest:.1f}x the "
                 "finest\ngranularity's (smaller groups, smaller ranges, finer steps)",
           xlabel="layer", ylabel="||W - Q(W)|| / ||W||", yscale="log")
    ax.legend(title="scale per")
    demo.save_figure(fig, "distributions.png")


def sweep_figure(demo, args, out: dict, group: str) -> None:
    rows = out["rows"]
    fig, axes = new_figure(1, 2, figsize=(16, 5.5))
    series = {}
    for r in rows:
        series.setdefault((r["method"], r["granularity"]), []).append(r)
    for (method, gran), rs in series.items():
        rs = sorted(rs, key=lambda r: r["bits"])
        label = f"{method.upper() if method != 'rtn' else 'round-to-nearest'}, {gran}"
        style = dict(ls=METHOD_STYLE[method], marker=METHOD_MARKER[method], color=_gran_color(gran),
                     label=label)
        axes[0].plot([r["bits"] for r in rs], [r["perplexity"] for r in rs], **style)
        axes[1].plot([r["bits"] for r in rs], [100 * r["agreement"] for r in rs], **style)
    fp = out["float_perplexity"]
    axes[0].axhline(fp, color="k", ls="--", lw=1, label=f"float32 {fp:.3f}")
    r4 = [r for r in rows if r["bits"] == 4 and r["granularity"] != "tensor"]
    best = max(r4, key=lambda r: r["ppl_ratio"])
    r8 = next(r for r in rows if (r["bits"], r["granularity"], r["method"]) == (8, "channel", "rtn"))
    axes[0].set(title=f"8-bit per channel keeps {100 * r8['ppl_ratio']:.1f}% of float's perplexity; the best "
                      "4-bit "
                      f"({best['method']}, {best['granularity']})\nkeeps {100 * best['ppl_ratio']:.1f}%; "
                      f"the best 2-bit {100 * max(r['ppl_ratio'] for r in rows if r['bits'] == 2):.1f}%",
                xlabel="bits per weight (codes)", ylabel="held-out perplexity (log scale)", yscale="log")
    axes[1].set(title=f"top-1 agreement with the float model: 8-bit {100 * r8['agreement']:.1f}%, best 4-bit "
                      f"{100 * best['agreement']:.1f}%",
                xlabel="bits per weight (codes)", ylabel="positions with the float model's argmax (%)")
    for ax in axes:
        ax.set_xticks([8, 6, 4, 3, 2])
        ax.invert_xaxis()
    axes[0].legend(fontsize=8, ncol=2)
    demo.save_figure(fig, "perplexity_vs_bits.png")


def qat_figure(demo, args, out: dict, base: dict) -> None:
    fig, axes = new_figure(1, 2, figsize=(16, 5))
    bits = list(out["bits"])
    labels = [f"{b} bits" for b in bits]
    series = {"PTQ of the trained model": [out["bits"][b]["ptq"]["perplexity"] for b in bits],
              f"PTQ after {out['steps']} float steps":
                  [out["bits"][b]["ptq_after_float_finetune"]["perplexity"] for b in bits],
              f"QAT, {out['steps']} steps" + ("" if out["ste"] else " (no STE)"):
                  [out["bits"][b]["qat"]["perplexity"] for b in bits]}
    grouped_bar_plot(axes[0], labels, series, fmt="{:.2f}", ylabel="held-out perplexity (log scale)",
                     xlabel=f"round-to-nearest weights, {out['group']}")
    axes[0].set_yscale("log")
    axes[0].axhline(base["perplexity"], color="k", ls="--", lw=1, label=f"float32 {base['perplexity']:.3f}")
    axes[0].legend(fontsize=8)
    verdicts = ", ".join(f"{b}: {out['bits'][b]['qat_vs_ptq']}" for b in bits)
    axes[0].set_title(f"QAT vs PTQ of an equally finetuned model ({verdicts})")
    ax = axes[1]
    window = max(1, len(out["control_losses"]) // 15)
    smooth = lambda v: np.convolve(v, np.ones(window) / window, mode="valid")  # noqa: E731
    ax.plot(smooth(out["control_losses"]), color="k", label="float (control)")
    for i, b in enumerate(bits):
        ax.plot(smooth(out["bits"][b]["qat_losses"]), color=PALETTE[i], label=f"QAT {b} bits")
    secs = np.mean([out["bits"][b]["qat_seconds"] for b in bits])
    ax.set(title=f"QAT training loss (moving mean of {window}); one QAT run {secs:.1f} s vs "
                 f"{out['float_finetune_seconds']:.1f} s float",
           xlabel="finetuning step", ylabel="training loss (nats/token)")
    ax.legend()
    demo.save_figure(fig, "qat.png")


def memory_speed_figure(demo, args, out: dict) -> None:
    fig, axes = new_figure(1, 2, figsize=(16, 5))
    labels = list(out["layer_bytes"])
    grouped_bar_plot(axes[0], labels, {"quantized layers": [out["layer_bytes"][k] / 1e6 for k in labels],
                                       "whole model": [out["model_bytes"].get(k, np.nan) / 1e6
                                                       for k in labels]},
                     fmt="{:.2f}", ylabel="MB", xlabel="format (bits per weight of the layers in the title)")
    bpw = out["layer_bits_per_weight"]
    axes[0].set_title("bytes held: " + ", ".join(f"{k} {v:.2f}" for k, v in bpw.items()) + " bits/weight")
    shapes = list(out["vs_fp32"])
    kinds = list(out["vs_fp32"][shapes[0]])
    grouped_bar_plot(axes[1], shapes, {k: [out["vs_fp32"][s][k] for s in shapes] for k in kinds},
                     fmt="{:.2f}x",
                     ylabel="speed vs fp32 (x, median of round-robin runs)", xlabel="forward pass")
    axes[1].axhline(1.0, color="k", lw=1)
    one = out["vs_fp32"][shapes[0]]
    slow = [k for k in kinds if k != "fp32" and one[k] < 1]
    axes[1].set_title(("dequantize-on-the-fly is SLOWER than fp32 on this CPU at 1 token: " + ", ".join(
        f"{k} {one[k]:.2f}x" for k in slow)) if slow else "dequantize-on-the-fly vs fp32 on this CPU")
    demo.save_figure(fig, "memory_speed.png")


def gguf_figure(demo, out: dict) -> None:
    fig, axes = new_figure(1, 2, figsize=(15, 5))
    qtypes = list(out)
    axes[0].bar(qtypes, [out[q]["file_bytes"] / 1e6 for q in qtypes], color=PALETTE[0])
    for i, q in enumerate(qtypes):
        axes[0].text(i, out[q]["file_bytes"] / 1e6, f"{out[q]['bits_per_weight']:.2f} bits/w", ha="center",
                     va="bottom", fontsize=9)
    sizes = ", ".join(f"{q} {out[q]['file_bytes'] / 1e6:.2f} MB" for q in qtypes)
    axes[0].set(title=f"GGUF file size: {sizes}",
                xlabel="tensor type of the 2-D weights", ylabel="file size (MB)")
    x = np.arange(len(qtypes))
    floor = 1e-9  # an exact 0 drawn at the bottom of the log axis
    axes[1].bar(x - 0.2, [max(out[q]["max_abs_vs_our_reader"], floor) for q in qtypes], 0.4, color=PALETTE[2],
                label="transformers vs our reader of the same file")
    axes[1].bar(x + 0.2, [max(out[q]["max_abs_vs_float"], floor) for q in qtypes], 0.4, color=PALETTE[3],
                label="transformers vs our float model")
    axes[1].set_xticks(x, qtypes)
    worst = max(out[q]["max_abs_vs_our_reader"] for q in qtypes)
    axes[1].set(yscale="log", ylabel="max |logit difference| (log scale)", xlabel="tensor type",
                title=(f"transformers reads every file as we wrote it (max |diff| {worst:.1g})"
                       if worst <= 1e-5 else
                       f"transformers' logits DIFFER from ours on the same file (max |diff| {worst:.1g})")
                + "\nthe distance to the float model is the quantization error")
    for i, q in enumerate(qtypes):
        for dx, key in ((-0.2, "max_abs_vs_our_reader"), (0.2, "max_abs_vs_float")):
            value = out[q][key]
            axes[1].text(i + dx, max(value, floor), "0 (exact)" if value == 0 else f"{value:.2g}",
                         ha="center", va="bottom", fontsize=8)
    axes[1].legend()
    demo.save_figure(fig, "gguf.png")
