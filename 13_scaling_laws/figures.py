"""Lesson 13's figures: each draws one experiment's measured numbers (demo.py passes them in) with a title
that states what was found."""

from __future__ import annotations

import numpy as np

from llmlab.utils.plotting import PALETTE, new_figure


def scaling_figure(demo, out: dict) -> None:
    """Experiment 1: the sweep with L(N), the IsoFLOP runs with their parabolas, and the residuals."""
    fig, (ax, ax_iso, ax_res) = new_figure(1, 3, figsize=(16, 4.6))
    pw, sweep = out["power_law"], out["sweep"]
    key = "N_total" if out["parameters"] == "total" else "N"
    N = np.array([r[key] for r in sweep], float)
    L = np.array([r["loss"] for r in sweep])
    grid = np.geomspace(N.min() / 1.5, N.max() * 1.5, 100)
    ax.scatter(N, L, color=PALETTE[0], zorder=3, label=f"sweep, {sweep[0]['D']:,} tokens each")
    ax.plot(grid, pw["E"] + pw["A"] * grid ** -pw["alpha"], color=PALETTE[1],
            label=f"E + A/N^α: α {pw['alpha']:.3f}, E {pw['E']:.2f}")
    ax.axhline(pw["E"], color="gray", ls=":", label="fitted floor E")
    ax.set(xscale="log", xlabel=f"{out['parameters']} parameters N", ylabel="held-out loss (nats/token)",
           title="size sweep at a fixed token budget")
    ax.legend(fontsize=8)
    iso = out["isoflop"]
    for i, C in enumerate(sorted({r["budget"] for r in out["iso"]})):
        pts = [r for r in out["iso"] if r["budget"] == C]
        n = np.array([r[key] for r in pts], float)
        loss = np.array([r["loss"] for r in pts])
        ax_iso.scatter(n, loss, color=PALETTE[i % len(PALETTE)], label=f"C = {C:.2g} FLOPs", zorder=3)
        x = np.log(n) - np.log(n).mean()
        c = np.polyfit(x, loss, 2)
        xs = np.linspace(x.min() - 0.3, x.max() + 0.3, 60)
        ax_iso.plot(np.exp(xs + np.log(n).mean()), np.polyval(c, xs), color=PALETTE[i % len(PALETTE)], lw=1)
        if "N_opt" in iso:
            ax_iso.axvline(iso["N_opt"][i], color=PALETTE[i % len(PALETTE)], ls=":", lw=1)
    ax_iso.set(xscale="log", xlabel=f"{out['parameters']} parameters N", ylabel="held-out loss (nats/token)",
               title="IsoFLOP curves (dotted: parabola minimum)")
    ax_iso.legend(fontsize=8)
    ch = out["chinchilla"]
    every = sweep + out["iso"]
    ax_res.scatter(N, 100 * np.array(pw["residuals"]), color=PALETTE[0], label="L(N) on the sweep")
    ax_res.scatter([r[key] for r in every], 100 * np.array(ch["residuals"]), color=PALETTE[2], marker="x",
                   label="L(N, D) on every run")
    ax_res.axhline(0, color="gray", lw=1)
    ax_res.set(xscale="log", xlabel=f"{out['parameters']} parameters N", ylabel="residual, % of the loss",
               title="residuals (measured minus fitted)")
    ax_res.legend(fontsize=8)
    lo, hi = pw["alpha_interval"]
    shape = "a clean power law" if pw["rms_residual"] < 0.01 else "NOT a clean power law"
    fig.suptitle(f"L(N): α = {pw['alpha']:.3f} (80% CI {lo:.3f}-{hi:.3f}) on {out['parameters']} parameters, "
                 f"rms residual {100 * pw['rms_residual']:.1f}% ({shape}); compute-optimal here "
                 f"{ch['tokens_per_param']:.1f} tokens/param", fontweight="bold", fontsize=10)
    demo.save_figure(fig, "scaling_fit.png")


def chinchilla_figure(demo, out: dict) -> None:
    """Experiment 2: optimal tokens vs compute: Table 3, Hoffmann's constants, Besiroglu's refit."""
    fig, ax = new_figure(figsize=(8, 5))
    C = np.array([r["C"] for r in out["rows"]])
    for key, label, color, marker in (("table", "Table 3 (Approach 1)", PALETTE[0], "o"),
                                      ("hoffmann", "Hoffmann constants (Approach 3)", PALETTE[1], "s"),
                                      ("besiroglu", "Besiroglu et al. 2024 refit", PALETTE[2], "^")):
        D = np.array([r[f"{key}_D"] for r in out["rows"]])
        N = np.array([r[f"{key}_N"] for r in out["rows"]])
        ax.plot(C, D / N, marker=marker, color=color, label=label)
    h, b = out["hoffmann"], out["besiroglu"]
    ax.axvline(out["C_chinchilla"], color="gray", ls=":",
               label=f"Chinchilla / Gopher budget {out['C_chinchilla']:.3g}")
    ax.set(xscale="log", xlabel="training compute C (FLOPs)", ylabel="optimal tokens per parameter D/N")
    ax.legend(fontsize=8)
    ax.set_title(f"At Chinchilla's budget the rounded constants give {h['D'] / h['N']:.0f} tokens/param, "
                 f"the refit {b['D'] / b['N']:.0f} (Chinchilla: 1.4T/70B = 20)", fontsize=10)
    demo.save_figure(fig, "chinchilla.png")


def sample_efficiency_figure(demo, out: dict) -> None:
    """Experiment 3: held-out loss vs tokens seen for every size."""
    fig, ax = new_figure(figsize=(8, 5))
    for i, c in enumerate(out["curves"]):
        ax.plot(c["tokens"], c["val_loss"], marker="o", ms=3, color=PALETTE[i % len(PALETTE)],
                label=f"{c['size'][0]} layer(s), d {c['size'][1]}: N {c['N']:,}")
    ax.axhline(out["target_loss"], color="gray", ls=":", label="smallest model's final loss")
    ax.set(xscale="log", xlabel="tokens seen", ylabel="held-out loss (nats/token)")
    ax.legend(fontsize=8)
    reached = [t for t in out["tokens_to_target"] if t]
    ax.set_title(f"Bigger models reach the smallest one's final loss in fewer tokens "
                 f"({reached[-1]:,} vs {reached[0]:,})" if len(reached) > 1 else
                 "Loss vs tokens seen: no bigger model reached the smallest one's final loss", fontsize=10)
    demo.save_figure(fig, "sample_efficiency.png")


def pareto_figure(demo, out: dict) -> None:
    """Experiment 4: loss vs wall time (frontier) and vs training memory."""
    fig, (ax, ax_mem) = new_figure(1, 2, figsize=(13, 4.8))
    pts = out["points"]
    sizes = sorted({tuple(p["size"]) for p in pts}, key=lambda s: s[0] * s[1] ** 2)
    for i, s in enumerate(sizes):
        mine = [p for p in pts if tuple(p["size"]) == s]
        color = PALETTE[i % len(PALETTE)]
        ax.scatter([p["wall_s"] for p in mine], [p["loss"] for p in mine], color=color, label=f"{list(s)}")
        ax_mem.scatter([p["memory"] / 2**20 for p in mine], [p["loss"] for p in mine], color=color)
    f = [pts[i] for i in out["frontier"]]
    ax.step([p["wall_s"] for p in f], [p["loss"] for p in f], where="post", color="black", lw=1,
            label="Pareto frontier")
    ax.set(xscale="log", xlabel="training wall time on this machine (s)", ylabel="held-out loss (nats/token)",
           title="loss vs time ([n_layer, d_model])")
    ax.legend(fontsize=7)
    ax_mem.set(xscale="log", xlabel="training memory, fp32 AdamW (MiB, scaling.training_memory)",
               ylabel="held-out loss (nats/token)", title="loss vs memory (each size, every run length)")
    memory = {tuple(p["size"]): p["memory"] / 2**20 for p in pts}
    for key, marker in (("big_stopped_early", "*"), ("small_trained_long", "D"), ("isoflop_best", "P")):
        v = out[key]
        ax_mem.scatter([memory[tuple(v["size"])]], [v["loss"]], marker=marker, s=90, color="black",
                       facecolors="none", label=f"{key.replace('_', ' ')}: {v['loss']:.3f}")
    ax_mem.legend(fontsize=7, title=f"at C = {out['budget']:.2g}", title_fontsize=7)
    fast, best = f[0], f[-1]
    fig.suptitle(f"{len(out['frontier_sizes'])} sizes on the loss-vs-time frontier: fastest {fast['size']}, "
                 f"lowest loss {best['size']}; same compute: {out['early_vs_small'].split(':')[0]}",
                 fontweight="bold", fontsize=10)
    demo.save_figure(fig, "pareto.png")


def planning_figure(demo, out: dict) -> None:
    """Experiment 5: memory to train and serve real models; predicted vs measured for the lab GPTs."""
    fig, (ax, ax_m) = new_figure(1, 2, figsize=(13, 4.8))
    names = list(out["real"])
    x = np.arange(len(names))
    bars = [("train_fp32", "train fp32 AdamW"), ("train_bf16", "train bf16 mixed AdamW")]
    width = 0.16
    for i, (k, label) in enumerate(bars):
        ax.bar(x + (i - 2) * width, [out["real"][n][k] / 2**30 for n in names], width, label=label,
               color=PALETTE[i])
    for j, bits in enumerate((16, 8, 4)):
        ax.bar(x + j * width, [out["real"][n]["serve"][bits] / 2**30 for n in names], width,
               label=f"serve {bits}-bit + fp16 KV cache (full context)", color=PALETTE[2 + j])
    ax.axhline(80, color="gray", ls=":", label="one 80 GB GPU")
    ax.set(yscale="log", xticks=x, xticklabels=names, ylabel="GiB",
           title="real shapes (batch 1, checkpointing)")
    ax.legend(fontsize=7)
    parts = ["params", "grads", "optimizer_states", "activations"]
    for i, m in enumerate(out["measured"]):
        ax_m.scatter([m["predicted"][p] for p in parts], [m["measured"][p] for p in parts],
                     color=PALETTE[i], label=f"lab GPT {m['size']}")
        for p in parts:
            ax_m.annotate(p, (m["predicted"][p], m["measured"][p]), fontsize=6)
    lim = [min(min(m["predicted"][p] for p in parts) for m in out["measured"]) / 2,
           max(max(m["measured"][p] for p in parts) for m in out["measured"]) * 2]
    ax_m.plot(lim, lim, color="gray", ls=":", label="measured = predicted")
    ax_m.set(xscale="log", yscale="log", xlabel="predicted bytes (scaling.training_memory)",
             ylabel="measured tensor bytes", title="formula vs one real training step")
    ax_m.legend(fontsize=7)
    act = [m["measured"]["activations"] / m["predicted"]["activations"] for m in out["measured"]]
    exact = all(m["measured"][p] == m["predicted"][p] for m in out["measured"] for p in parts[:3])
    fig.suptitle(f"Llama-3-70B needs {out['real']['Llama-3-70B']['train_bf16'] / 2**30:,.0f} GiB to train; "
                 f"weights, grads, AdamW states {'match' if exact else 'do NOT match'} the formula "
                 f"{'exactly' if exact else ''}, activations measured/predicted "
                 f"{min(act):.2f}-{max(act):.2f}x",
                 fontweight="bold", fontsize=10)
    demo.save_figure(fig, "planning.png")


def ddp_figure(demo, out: dict) -> None:
    """Experiment 6: the DDP losses per step and the weight difference to one process vs the tolerance."""
    fig, (ax, ax_d) = new_figure(1, 2, figsize=(12, 4.5))
    for i, (dtype, r) in enumerate(out.items()):
        ax.plot(range(1, len(r["losses"]) + 1), r["losses"], marker="o", color=PALETTE[i],
                label=f"{dtype}: {r['tokens_per_s_total']:,.0f} tokens/s "
                      f"({r['tokens_per_s_per_process']:,.0f} per process)")
    ax.set(xlabel="optimizer step", ylabel="training loss of the global batch (nats/token)",
           title="DDP on 2 processes (gloo)")
    ax.legend(fontsize=8)
    names = list(out)
    ax_d.bar(np.arange(len(names)) - 0.2, [out[n]["max_abs_diff"] for n in names], 0.4, color=PALETTE[0],
             label="max |w_DDP - w_single|")
    ax_d.bar(np.arange(len(names)) + 0.2, [out[n]["tolerance"] for n in names], 0.4, color=PALETTE[3],
             label="tolerance")
    ax_d.set(yscale="log", xticks=range(len(names)), xticklabels=names, ylabel="largest weight difference",
             title="the check against one process")
    ax_d.legend(fontsize=8)
    ok = all(r["check_passed"] for r in out.values())
    fig.suptitle(("2-process DDP equals 1-process training: " if ok else "DDP differs from 1 process: ")
                 + ", ".join(f"{n} max diff {out[n]['max_abs_diff']:.2g}" for n in names), fontweight="bold")
    demo.save_figure(fig, "ddp.png")
