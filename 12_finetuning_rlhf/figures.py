"""Lesson 12's figures: each draws one experiment's measured numbers (demo.py passes them in) with a title
that states what was found (the title text is computed by demo.py from the same numbers)."""

from __future__ import annotations

import numpy as np

from llmlab.utils.plotting import PALETTE, new_figure

FORMAT_COLORS = {"plain": PALETTE[0], "qa": PALETTE[1], "instruction": PALETTE[2]}


def _running_mean(values, k: int = 5) -> np.ndarray:
    """The mean of the last k values at each point (fewer at the start)."""
    v = np.asarray(values, dtype=float)
    return np.array([v[max(0, i - k + 1): i + 1].mean() for i in range(len(v))])


def sft_figure(demo, out: dict, title: str) -> None:
    """Experiment 1: held-out SFT loss per step for each format, and exact-match accuracy per format."""
    fig, (ax1, ax2) = new_figure(1, 2, figsize=(12, 4.5), suptitle=title)
    for fmt, run in out["formats"].items():
        for i, curve in enumerate(run["val_curves"]):
            ax1.plot(run["eval_steps"], curve, color=FORMAT_COLORS[fmt], alpha=1 if i == 0 else 0.5,
                     label=fmt if i == 0 else None)
    ax1.set(xlabel="SFT step", ylabel="held-out response loss (nats/token)", title="loss (one line per seed)")
    ax1.legend()
    labels = ["base (no SFT)"] + list(out["formats"])
    x = np.arange(len(labels))
    for j, split in enumerate(("held_in", "held_out")):
        means = [out["base"][split]] + [out["formats"][f][split]["mean"] for f in out["formats"]]
        ax2.bar(x + (j - 0.5) * 0.38, means, 0.38, label=f"{split.replace('_', '-')} task families")
        for f_i, fmt in enumerate(out["formats"]):
            ax2.scatter([f_i + 1 + (j - 0.5) * 0.38] * len(out["formats"][fmt][split]["per_seed"]),
                        out["formats"][fmt][split]["per_seed"], color="black", s=10, zorder=3)
    ax2.set_xticks(x, labels)
    ax2.set(ylabel="exact-match accuracy (greedy)", ylim=(0, 1.05), title="accuracy (dots: seeds)")
    ax2.legend()
    demo.save_figure(fig, "sft_formats.png")


def lora_figure(demo, out: dict, title: str) -> None:
    """Experiment 2: accuracy vs trainable parameters, and the time of a training step."""
    fig, (ax1, ax2) = new_figure(1, 2, figsize=(12, 4.5), suptitle=title)
    names = list(out["runs"])
    params = [out["runs"][n]["trainable"] for n in names]
    acc = [out["runs"][n]["held_in"] for n in names]
    ax1.scatter(params, acc, color=PALETTE[0])
    for n, p, a in zip(names, params, acc):
        ax1.annotate(n, (p, a), textcoords="offset points", xytext=(4, 4))
    ax1.set_xscale("log")
    ax1.set(xlabel="trainable parameters (log scale)", ylabel="held-in exact-match accuracy", ylim=(0, 1.05),
            title="accuracy vs trainable parameters")
    ax2.bar(names, [out["step_ms"][n] for n in names], color=PALETTE[1])
    ax2.set(ylabel="ms per training step (median, round-robin)", title="time per step")
    demo.save_figure(fig, "lora.png")


def reward_figure(demo, out: dict, title: str) -> None:
    """Experiment 3: the reward model's pairwise accuracy by kind of pair, and reward vs true quality."""
    fig, (ax1, ax2) = new_figure(1, 2, figsize=(12, 4.5), suptitle=title)
    kinds = ["all"] + list(out["held_out"]["by_kind"])
    values = [out["held_out"]["accuracy"]] + list(out["held_out"]["by_kind"].values())
    ax1.bar(kinds, values, color=PALETTE[2])
    ax1.axhline(0.5, color="grey", linestyle="--", label="chance")
    ax1.set(ylabel="pairwise accuracy on held-out pairs", ylim=(0, 1.05),
            title="chosen scored above rejected")
    ax1.legend()
    rng = np.random.default_rng(0)
    q = np.array(out["samples"]["quality"])
    ax2.scatter(q + rng.uniform(-0.06, 0.06, len(q)), out["samples"]["reward"], s=12, alpha=0.6)
    ax2.set(xlabel="true quality of an SFT sample (0 wrong, 0.5 rambling, 1 exact; jittered)",
            ylabel="reward model score", title=f"Spearman {out['samples']['spearman']:.2f}")
    demo.save_figure(fig, "reward_model.png")


def ppo_figure(demo, out: dict, title: str) -> None:
    """Experiment 4: per PPO iteration, the reward, the true quality, the KL (k1, k3) and the diversity."""
    fig, axes = new_figure(1, 4, figsize=(19, 4.5), suptitle=title)
    for i, (label, run) in enumerate(out["runs"].items()):
        color = PALETTE[i % len(PALETTE)]
        it = np.arange(1, len(run["score"]) + 1)
        axes[0].plot(it, run["score"], color=color, label=f"kl_coef {label}")
        axes[1].plot(it, run["quality"], color=color)
        axes[2].plot(it, run["k3"], color=color, label=f"k3, kl_coef {label}")
        axes[2].plot(it, run["k1"], color=color, linestyle=":", label=f"k1, kl_coef {label}")
        axes[3].plot(it, run["diversity"], color=color)
    axes[0].set(xlabel="PPO iteration", ylabel="reward model score (mean of rollouts)", title="reward")
    axes[1].set(xlabel="PPO iteration", ylabel="true quality (ground truth)", ylim=(0, 1.05),
                title="true quality")
    axes[2].set(xlabel="PPO iteration", ylabel="KL to the SFT model (nats per response)",
                title="KL (solid k3, dotted k1)")
    axes[3].set(xlabel="PPO iteration", ylabel="distinct responses / rollouts", ylim=(0, 1.05),
                title="sample diversity")
    axes[0].legend()
    demo.save_figure(fig, "ppo.png")


def dpo_figure(demo, out: dict, ppo: dict, title: str) -> None:
    """Experiment 5: DPO's chosen/rejected log-probs and margin, and accuracy vs KL for DPO and PPO."""
    fig, (ax1, ax2, ax3) = new_figure(1, 3, figsize=(17, 4.5), suptitle=title)
    steps = np.arange(1, len(out["chosen"]) + 1)
    lines = ((ax1, "chosen", PALETTE[0]), (ax1, "rejected", PALETTE[1]), (ax2, "margin", PALETTE[2]))
    for ax, key, color in lines:
        ax.plot(steps, out[key], color=color, alpha=0.35)
        ax.plot(steps, _running_mean(out[key]), color=color, linewidth=2, label=f"{key} (mean of 5 batches)")
    ax1.set(xlabel="DPO step", ylabel="policy log p(response | prompt) (nats, batch mean)", title="log-probs")
    ax1.legend()
    ax2.set(xlabel="DPO step", ylabel="implicit reward margin β·Δlog-ratio", title="margin")
    ax2.legend()
    for i, (label, run) in enumerate(ppo["runs"].items()):
        ax3.plot([0] + run["eval_kl"], [ppo["sft_accuracy"]] + run["eval_accuracy"], marker="o",
                 color=PALETTE[i % len(PALETTE)], label=f"PPO kl_coef {label}")
    ax3.plot([0] + out["eval_kl"], [ppo["sft_accuracy"]] + out["eval_accuracy"], marker="s", color="black",
             label=f"DPO beta {out['beta']:g}")
    ax3.set(xlabel="KL to the SFT model (k3, nats per response)", ylabel="held-out exact-match accuracy",
            ylim=(0, 1.05), title="accuracy vs KL (checkpoints)")
    ax3.legend()
    demo.save_figure(fig, "dpo_vs_ppo.png")
