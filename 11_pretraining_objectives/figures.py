"""Lesson 11's figures: each draws one experiment's measured numbers (demo.py passes them in) with a title
that states what was found."""

from __future__ import annotations

import random

import matplotlib.pyplot as plt
import numpy as np
import torch

from llmlab.pretraining_objectives import experiments as ex
from llmlab.pretraining_objectives.objectives import mask_tokens, prefix_lm_mask
from llmlab.utils.plotting import PALETTE, apply_style, grouped_bar_plot, heatmap, new_figure
from llmlab.utils.stories import generate_story

COLORS = {"clm": PALETTE[0], "mlm": PALETTE[1], "prefix": PALETTE[2]}


def held_out_prompts(tokenizer, n: int, length: int = 10, seed: int = 20_000) -> list[list[int]]:
    """The first `length` tokens of n held-out stories (drawn with a seed the corpus never used)."""
    rng = random.Random(seed)
    return [tokenizer.encode(generate_story(rng))[:length] for _ in range(n)]


def masks_figure(demo, cfg: dict, data: dict, recipe) -> dict:
    """Experiment 1: the causal, bidirectional and prefix masks on a real sentence (rows: queries, columns:
    keys), and under each the input the model sees with the tokens its loss is computed on."""
    tok = data["tokenizer"]
    ids = torch.tensor(held_out_prompts(tok, 1, length=12)[0])
    T, P = len(ids), 5
    generator = torch.Generator().manual_seed(3)
    while True:  # a draw that selects at least one token, so that the picture shows the objective
        inputs, labels = mask_tokens(ids[None], vocab_size=data["vocab_size"], mask_token_id=data["mask_id"],
                                     mlm_probability=recipe.mask_rate, special_token_ids=(data["mask_id"],),
                                     generator=generator)
        if (labels != -100).any():
            break
    words = [w.replace(" ", "·") for w in tok.token_strings(ids.tolist())]  # a space drawn as "·"
    masked_words = [w.replace(" ", "·") for w in tok.token_strings(inputs[0].tolist())]
    panels = {"causal LM": (torch.ones(T, T).tril(), words, [t >= 1 for t in range(T)]),
              "masked LM (bidirectional)": (torch.ones(T, T), masked_words, (labels[0] != -100).tolist()),
              f"prefix LM (prefix = {P})": (prefix_lm_mask([P], T)[0].float(), words,
                                            [t >= P for t in range(T)])}
    apply_style()
    fig, axes = plt.subplots(2, 3, figsize=(17, 7.5), gridspec_kw={"height_ratios": [5, 1]})
    fig.suptitle("Same sentence, same model: the objectives differ only in what each query may see and which "
                 "tokens carry a loss", fontweight="bold")
    out = {"tokens": words}
    for j, (name, (mask, shown, loss_on)) in enumerate(panels.items()):
        heatmap(axes[0, j], mask, row_labels=words, col_labels=words, cmap="Blues", vmin=0, vmax=1,
                title=f"{name}: {int(mask.sum())} of {T * T} query-key pairs visible",
                xlabel="key (attended to)", ylabel="query", cbar_label="1 = may attend")
        ax = axes[1, j]
        ax.imshow(np.array([loss_on], dtype=float), cmap="Oranges", vmin=0, vmax=1.4, aspect="auto")
        ax.set_xticks(range(T), labels=shown, rotation=90, fontsize=9)
        ax.set_yticks([])
        ax.grid(False)
        ax.set(title=f"input as the model sees it: loss on {sum(loss_on)} of {T} tokens (orange)",
               xlabel="input token")
        out[name] = dict(visible_pairs=int(mask.sum()), loss_tokens=int(sum(loss_on)))
    out["mlm_input"] = masked_words
    demo.save_figure(fig, "masks.png")
    return out


def _seed_mean(histories, attr: str):
    values = np.array([getattr(h, attr) for h in histories], dtype=float)
    return values.mean(0), values.min(0), values.max(0)


def loss_curves_figure(demo, cfg: dict, runs: dict, objectives, numbers: dict, step_ms: dict) -> None:
    tokens_per_step = cfg["batch_size"] * cfg["block_size"]
    fig, axes = new_figure(1, 3, figsize=(20, 5.2))
    for o in list(objectives) + (["mlm long"] if "mlm long" in runs else []):
        histories = [r["history"] for r in runs[o]]
        steps = np.array(histories[0].eval_steps)
        mean, low, high = _seed_mean(histories, "val_loss")
        share = runs[o][0]["predicted_share"]
        style = dict(color=COLORS["mlm"], ls="--") if o == "mlm long" else dict(color=COLORS[o])
        name = f"masked LM, {len(histories[0].steps)} steps, 1 seed" if o == "mlm long" else ex.NAMES[o]
        seconds = steps * step_ms["mlm" if o == "mlm long" else o] / 1000
        seen = steps * tokens_per_step / 1e3
        for ax, x in ((axes[0], seen), (axes[1], seen * share), (axes[2], seconds)):
            ax.plot(x, mean, marker="o", ms=3, label=f"{name} (loss on {share:.0%} of positions)", **style)
            ax.fill_between(x, low, high, color=style["color"], alpha=0.2)
    ylabel = "held-out loss on its own task (nats per predicted token)"
    axes[0].set(xlabel="tokens seen (thousands, log)", xscale="log", ylabel=ylabel,
                title="Per token SEEN (equal compute): each objective's own loss")
    axes[1].set(xlabel="tokens predicted, i.e. carrying a loss (thousands, log)", xscale="log",
                ylabel=ylabel, title="Per token PREDICTED: the masked LM learns from ~1 in 7 positions")
    axes[2].axvline(numbers["wall_time_budget_s"], color="gray", ls=":", lw=1, label="equal wall-time budget")
    axes[2].set(xlabel="seconds of training (steps x timed cost per step, this machine; log)", xscale="log",
                ylabel=ylabel,
                title="Per second of training (equal wall time)")
    handles, labels = axes[2].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=9,
               title=f"mean of {len(runs[objectives[0]])} seeds, band = min-max")
    finals = ", ".join(f"{ex.NAMES[o]} {numbers[o]['final_val_loss']['mean']:.2f}" for o in objectives)
    fig.suptitle(f"Three objectives, same model and tokens: final own-task losses {finals} nats — different "
                 "tasks, so the levels are not a ranking", fontweight="bold")
    demo.save_figure(fig, "loss_curves.png")


def _bars_with_seeds(ax, objectives, summaries: dict, *, ylabel: str, title: str, extra=None):
    labels = [ex.NAMES[o] for o in objectives]
    means = [summaries[o]["mean"] for o in objectives]
    ax.bar(labels, means, color=[COLORS[o] for o in objectives], alpha=0.8)
    for i, o in enumerate(objectives):
        seeds = summaries[o]["per_seed"]
        ax.plot([i] * len(seeds), seeds, "k.", ms=7, label="one seed" if i == 0 else None)
        ax.annotate(f"{means[i]:.3f}", (i, means[i]), ha="center", va="bottom", fontsize=9,
                    xytext=(0, 3), textcoords="offset points")
    if extra:
        for value, text, style in extra:
            ax.axhline(value, ls=style, color="gray", lw=1, label=text)
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=8, loc="lower right")


def generation_figure(demo, cfg: dict, out: dict, objectives) -> None:
    import textwrap

    fig, axes = new_figure(1, 2, figsize=(16, 6))
    _bars_with_seeds(axes[0], objectives, out["next_token_loss"],
                     ylabel="held-out next-token loss (nats, lower is better)",
                     title="Predicting the next token from the left context",
                     extra=[(out["unigram_loss"], "unigram model (no context)", ":")])
    axes[1].set_axis_off()
    lines = []
    for i, prompt in enumerate(out["prompts"]):
        lines.append(f"prompt: {prompt!r}")
        for o in objectives:
            text = textwrap.shorten(repr(out["continuations"][o][i]), 70)
            lines.append(f"  {ex.NAMES[o]:>9}: {text}")
        lines.append("")
    axes[1].text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8.5)
    axes[1].set_title(f"Greedy continuations ({cfg['new_tokens']} tokens, seed-{demo.seed} models)")
    loss = {o: out["next_token_loss"][o]["mean"] for o in objectives}
    best = min(loss, key=loss.get)
    fig.suptitle(f"Generation: the {ex.NAMES[best]} predicts the next token best ({loss[best]:.2f} nats; "
                 + ", ".join(f"{ex.NAMES[o]} {v:.2f}" for o, v in loss.items() if o != best)
                 + f"; unigram {out['unigram_loss']:.2f})", fontweight="bold")
    demo.save_figure(fig, "generation.png")


def _long_marker(ax, objectives, value: float, steps: int) -> None:
    i = list(objectives).index("mlm")
    ax.plot([i], [value], "D", color="black", mfc="white", ms=8,
            label=f"masked LM, {steps} steps (= causal LM's predicted tokens)")
    ax.legend(fontsize=8, loc="lower right")


def encoding_figure(demo, cfg: dict, out: dict, objectives) -> None:
    tasks = list(out["chance"])
    fig, axes = new_figure(1, len(tasks) + 1, figsize=(6 * (len(tasks) + 1), 5.2))
    long = out.get("mlm_long")
    for ax, t in zip(axes, tasks):
        _bars_with_seeds(ax, objectives, {o: out["probes"][o][t] for o in objectives},
                         ylabel="probe accuracy on held-out sentences", title=f"linear probe: {t}",
                         extra=[(out["chance"][t], "majority class", ":"),
                                (out["untrained"][t], "untrained model", "--")])
        if long:
            _long_marker(ax, objectives, long[t], long["steps"])
    fill = {o: out["fill_in"][o]["accuracy"] for o in objectives}
    extra = ([(out["fill_in"]["mlm"]["left_only_accuracy"]["mean"], "masked LM, right side hidden", "--")]
             if "mlm" in objectives else None)
    _bars_with_seeds(axes[-1], objectives, fill, ylabel="top-1 accuracy", extra=extra,
                     title="fill in the middle token (masked LM sees both sides)")
    if long:
        _long_marker(axes[-1], objectives, long["fill_in"], long["steps"])
    winners = []
    for t in tasks + ["fill-in"]:
        scores = {o: (out["probes"][o][t] if t != "fill-in" else fill[o])["mean"] for o in objectives}
        winners.append(f"{t}: {ex.NAMES[max(scores, key=scores.get)]}")
    fig.suptitle("Encoding: highest mean accuracy — " + "; ".join(winners) + " (dots: seeds)",
                 fontweight="bold")
    demo.save_figure(fig, "encoding.png")


def mask_rate_figure(demo, cfg: dict, out: dict, tasks) -> None:
    rates = [100 * r for r in out["rates"]]
    fig, axes = new_figure(1, 4, figsize=(22, 5.2))
    panels = [("masked_loss_15", "masked-LM loss at 15% masking (nats)"), (None, "probe accuracy"),
              ("fill_in", "fill-in-the-middle accuracy")]
    for ax, (metric, ylabel) in zip(axes, panels):
        for k, m in enumerate([metric] if metric else tasks):
            ax.errorbar(rates, out["by_rate"][m], yerr=out["noise"][m] / 2, fmt="o-", color=PALETTE[k],
                        capsize=3, label=f"{m} (bars: seed spread at the main rate)")
        ax.set(xlabel="masking rate (%)", ylabel=ylabel, xticks=rates)
        ax.legend(fontsize=8)
    axes[0].set_title("loss on the same 15%-masked held-out text")
    axes[1].set_title("linear probes")
    axes[2].set_title("fill in one token")
    rep = out["replacement"]
    metrics = ["copy", "fill_in"] + list(tasks)
    grouped_bar_plot(axes[3], metrics, {k: [rep[k][m]["mean"] for m in metrics] for k in rep}, fmt="{:.2f}",
                     ylabel="accuracy", title="80/10/10 vs 100% [MASK] (copy = clean input)", rotation=20)
    best = out["best_rate"]
    fig.suptitle("Masking rate: best at " + ", ".join(f"{m} {r:.0%}" for m, r in best.items())
                 + " (one seed per rate)", fontweight="bold")
    demo.save_figure(fig, "mask_rate.png")


def prefix_figure(demo, cfg: dict, out: dict) -> None:
    lengths = out["prefix_lengths"]
    fig, axes = new_figure(1, 2, figsize=(14, 5.2))
    series = [("bidirectional", "prefix LM, prefix read bidirectionally", PALETTE[2], "o-"),
              ("causal_mask", "prefix LM, causal mask", PALETTE[2], "s--"),
              ("clm", "causal LM", PALETTE[0], "^:")]
    for key, label, color, fmt in series:
        if key not in out:
            continue
        values = np.array(out[key])  # (prefix lengths, seeds)
        axes[0].plot(lengths, values.mean(1), fmt, color=color, label=label)
        axes[0].fill_between(lengths, values.min(1), values.max(1), color=color, alpha=0.15)
    axes[0].set(xlabel="prefix length P (tokens)", ylabel="loss on the suffix tokens t >= P (nats)",
                title="suffix loss, same held-out windows")
    axes[0].legend(fontsize=8, title="mean of seeds, band = min-max")
    gain = np.array(out["gain"])
    axes[1].plot(lengths, gain.mean(1), "o-", color=PALETTE[2], label="causal-mask loss - bidirectional loss")
    axes[1].fill_between(lengths, gain.min(1), gain.max(1), color=PALETTE[2], alpha=0.2,
                         label="min-max over seeds")
    axes[1].axhline(0, color="gray", lw=1)
    axes[1].set(xlabel="prefix length P (tokens)", ylabel="nats saved per suffix token",
                title="what the bidirectional prefix buys")
    axes[1].legend(fontsize=8)
    i = int(np.argmax(gain.mean(1)))
    fig.suptitle(f"Prefix LM: reading the prefix bidirectionally saves up to {gain.mean(1)[i]:.3f} nats per "
                 f"suffix token (at P = {lengths[i]})", fontweight="bold")
    demo.save_figure(fig, "prefix.png")
