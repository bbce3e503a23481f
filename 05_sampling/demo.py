"""Lesson 05 demo: temperature, top-k, top-p and min-p on a trained model's real next-token distributions.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--temperature-last] [--prompt TEXT]

The model is lesson 04's lab GPT trained on the built-in stories (`lab_model("gpt2")`; --quick uses
the barely trained quick model). Experiments (each prints its numbers and draws one figure):
 1. one_distribution.png        one real context's next-token distribution under each setting
 2. entropy_vs_temperature.png  entropy over thousands of real contexts, and the diversity and NLL of
                                text sampled at each temperature
 3. kept_set_sizes.png          how many tokens top-p and min-p keep, how much mass top-k keeps, and
                                how often the real next token survives (median and IQR over contexts)
 4. presets.png                 samples of each preset: diversity (distinct-2), quality (NLL under the
                                model) and repetition (seq-rep-4), against the real continuation
 5. top_k_and_top_p.png         "use top-k or top-p, not both": which one binds, and does combining
                                change the samples measurably?
Break flags:
 --temperature-last  divide by the temperature AFTER top-k/top-p (the nucleus is then chosen on the
                     T = 1 distribution): experiments 4 and 5 generate with this order
 --prompt TEXT       use your own context for experiment 1
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import effect

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    import torch
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from llmlab.kv_cache.cache import cache_for  # a later lesson's cache, used for speed
    from llmlab.sampling import (
        PRESETS,
        apply_temperature,
        entropy,
        filter_logits,
        kept_mass,
        min_p_filter,
        n_kept,
        sample,
        top_k_filter,
        top_p_filter,
    )
    from llmlab.transformer_block.pretrained import LabModel, lab_model
    from llmlab.utils import Demo, plotting


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, torch, FuncFormatter, LogLocator, NullFormatter, cache_for, PRESETS, apply_temperature
    global entropy, filter_logits, kept_mass, min_p_filter, n_kept, sample, top_k_filter, top_p_filter
    global LabModel, lab_model, Demo, plotting
    import numpy as np
    import torch
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from llmlab.kv_cache.cache import cache_for  # a later lesson's cache, used for speed
    from llmlab.sampling import (
        PRESETS,
        apply_temperature,
        entropy,
        filter_logits,
        kept_mass,
        min_p_filter,
        n_kept,
        sample,
        top_k_filter,
        top_p_filter,
    )
    from llmlab.transformer_block.pretrained import LabModel, lab_model
    from llmlab.utils import Demo, plotting


MIN_CONTEXT = 16  # positions with fewer tokens of context are left out of the statistics


def temperature_grid(low: float, high: float, n: int) -> list[float]:
    """n log-spaced temperatures, plus the round values the summary quotes (0.1, 0.5, 1, 2, 5)."""
    round_values = [t for t in (0.1, 0.5, 1.0, 2.0, 5.0) if low <= t <= high]
    spaced = [t for t in np.round(np.geomspace(low, high, n), 3).tolist()
              if all(abs(t / r - 1) > 0.05 for r in round_values)]  # no near-duplicates of a round value
    return sorted(spaced + round_values)


def settings(quick: bool) -> dict:
    if quick:
        return dict(n_windows=6, n_prompts=4, n_samples=4, prompt_len=24, n_new=24,
                    temperatures=[0.0, 0.7, 1.5], entropy_temperatures=temperature_grid(0.1, 5, 10),
                    p_grid=[0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99],
                    k_grid=[1, 2, 5, 10, 20, 50, 100, 200, 500], min_p_grid=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
    return dict(n_windows=32, n_prompts=24, n_samples=8, prompt_len=32, n_new=64,
                temperatures=[0.0, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0],
                entropy_temperatures=temperature_grid(0.05, 10, 21),
                p_grid=[0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995,
                        0.999],
                k_grid=[1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000],
                min_p_grid=[0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8])


def quartiles(values: torch.Tensor) -> tuple[float, float, float]:
    """25th, 50th and 75th percentile."""
    return percentiles(values, (25, 50, 75))


def percentiles(values: torch.Tensor, at=(10, 25, 50, 75, 90)) -> tuple[float, ...]:
    q = torch.quantile(values.double().flatten(), torch.tensor(at, dtype=torch.float64) / 100)
    return tuple(float(v) for v in q)


def visible(token: str) -> str:
    """Token text with its whitespace visible: ' the' -> '·the', newline -> '⏎'."""
    return token.replace(" ", "\u00b7").replace("\n", "\u23ce")


def log_axis(axis) -> None:
    """A log scale labelled 0.1, 1, 10, 100 (plain numbers read faster than 10^k, and draw faster)."""
    getattr(axis.axes, f"set_{axis.axis_name}scale")("log")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error over prompts."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


# ------------------------------------------------------------------------------------------------
# data: real contexts, and text generated under a sampling setting


def real_contexts(lab: LabModel, n_windows: int, seed: int, device) -> dict:
    """Next-token logits at every position (>= MIN_CONTEXT) of random validation windows.

    One forward pass of (n_windows, block_size) tokens gives n_windows · (block_size - MIN_CONTEXT)
    real contexts, each with the token that actually came next.
    """
    with torch.inference_mode():
        block = lab.config.block_size
        g = torch.Generator().manual_seed(seed)
        starts = torch.randint(len(lab.val_data) - block - 1, (n_windows,), generator=g)
        windows = lab.val_data[starts[:, None] + torch.arange(block + 1)].to(device)  # (W, block + 1)
        logits, _ = lab.model(windows[:, :-1])  # (W, block, vocab)
        logits = logits[:, MIN_CONTEXT - 1:].float()  # (W, block - MIN_CONTEXT + 1, vocab)
        targets = windows[:, MIN_CONTEXT:]  # the real next tokens, same leading shape
        return {"windows": windows, "logits": logits.reshape(-1, logits.shape[-1]).cpu(),
                "targets": targets.reshape(-1).cpu()}


if TYPE_CHECKING:  # a type alias for readers and type checkers
    Sampler = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def make_sampler(temperature_last: bool = False, **knobs) -> Sampler:
    """logits (B, vocab) -> ids (B,) for one setting; `temperature_last` is the order ablation."""
    if not temperature_last or knobs.get("temperature", 1.0) in (0.0, 1.0):
        return lambda logits, g: sample(logits, generator=g, **knobs)
    temperature = knobs.pop("temperature")
    return lambda logits, g: sample(apply_temperature(filter_logits(logits, **knobs), temperature),
                                    generator=g)


def sample_continuations(lab: LabModel, prompts: torch.Tensor, n_new: int, sampler: Sampler,
                         seed: int) -> dict:
    """Sample n_new tokens after each prompt (B, T0); also the model's own NLL (T = 1, unfiltered) of
    every sampled token: how likely the model finds what the sampling rule picked."""
    with torch.inference_mode():
        device = prompts.device
        # the same draws for every setting
        generator = torch.Generator(device=device).manual_seed(seed)
        T0 = prompts.shape[1]
        # lesson 06's KV cache: without it every token would recompute the whole context
        # (minutes, not seconds)
        cache = cache_for(lab.model, batch_size=prompts.shape[0], max_len=T0 + n_new)
        logits, _ = lab.model(prompts, positions=torch.arange(T0, device=device), kv_cache=cache)
        last = logits[:, -1].float()  # (B, vocab)
        tokens, nll = [], []
        for t in range(n_new):
            ids = sampler(last, generator)  # (B,)
            nll.append(-last.log_softmax(-1).gather(-1, ids[:, None])[:, 0])  # (B,)
            tokens.append(ids)
            if t < n_new - 1:
                position = torch.tensor([T0 + t], device=device)  # (1,): where the new token sits
                logits, _ = lab.model(ids[:, None], positions=position, kv_cache=cache)
                last = logits[:, -1].float()
        return {"tokens": torch.stack(tokens, 1).cpu(), "nll": torch.stack(nll, 1).cpu()}  # (B, n_new) each


def distinct_n(sequences: list[list[int]], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over a set of continuations (Li et al. 2016): 1 = no two alike."""
    grams = [tuple(s[i:i + n]) for s in sequences for i in range(len(s) - n + 1)]
    return len(set(grams)) / max(len(grams), 1)


def seq_rep(sequence: list[int], n: int = 4) -> float:
    """seq-rep-n of Welleck et al. 2020: the fraction of a text's n-grams that repeat an earlier one."""
    grams = [tuple(sequence[i:i + n]) for i in range(len(sequence) - n + 1)]
    return 1 - len(set(grams)) / max(len(grams), 1)


def summary(metrics: dict) -> dict:
    """The numbers of text_metrics for results.json (without the per-prompt lists and token ids)."""
    return {k: v for k, v in metrics.items() if k not in ("per_prompt", "first_sample")}


def text_metrics(tokens: torch.Tensor, nll: torch.Tensor, n_prompts: int, n_samples: int) -> dict:
    """Per-prompt diversity (distinct-2 across its samples), repetition and NLL; mean ± SE over prompts."""
    rows = tokens.view(n_prompts, n_samples, -1).tolist()
    nll = nll.view(n_prompts, n_samples, -1)
    per_prompt = {
        "distinct_2": [distinct_n(samples, 2) for samples in rows] if n_samples > 1 else None,
        "seq_rep_4": [float(np.mean([seq_rep(s, 4) for s in samples])) for samples in rows],
        "nll": nll.mean(dim=(1, 2)).tolist(),
        "identical": [float(all(s == samples[0] for s in samples)) for samples in rows],
    }
    out = {"per_prompt": per_prompt}
    for name, values in per_prompt.items():
        if values is not None:
            out[name], out[name + "_se"] = mean_se(values)
    return out


# ------------------------------------------------------------------------------------------------
# 1. one distribution under every setting


def one_distribution(demo: Demo, lab: LabModel, ctx: dict, prompt: str | None) -> dict:
    """A single real next-token distribution, reshaped by each knob."""
    if prompt is not None:
        ids = lab.encode(prompt, device=demo.device)
        if ids.shape[1] > lab.config.block_size:
            raise ValueError(f"prompt must fit the model's context of {lab.config.block_size} tokens, "
                             f"got {ids.shape[1]} tokens")
        with torch.inference_mode():
            logits = lab.model(ids)[0][0, -1].float().cpu()
        context_ids = ids[0].tolist()
    else:
        # a context in the upper quartile of entropy, where the knobs visibly disagree
        h = entropy(ctx["logits"])
        i = int((h - torch.quantile(h, 0.75)).abs().argmin())
        logits = ctx["logits"][i]
        n_per_window = ctx["logits"].shape[0] // ctx["windows"].shape[0]
        w, pos = divmod(i, n_per_window)
        context_ids = ctx["windows"][w, : MIN_CONTEXT + pos].tolist()
    context = lab.decode(context_ids)
    setups = {"T = 1 (the model)": {}, "T = 0.5": {"temperature": 0.5}, "T = 1.5": {"temperature": 1.5},
              "top-k = 10": {"top_k": 10}, "top-p = 0.9": {"top_p": 0.9}, "min-p = 0.1": {"min_p": 0.1},
              **{f"{name} preset": knobs for name, knobs in PRESETS.items() if name != "deterministic"}}
    order = torch.argsort(logits, descending=True)[:15]  # the 15 most likely tokens at T = 1
    labels = [visible(lab.decode([int(t)])) for t in order]
    fig, axes = plotting.new_figure(2, 4, figsize=(17, 8.2))
    rows, x_max = {}, 0.0
    for ax, (name, knobs) in zip(axes.flat, setups.items()):
        filtered = filter_logits(logits, **knobs)
        probs = filtered.softmax(-1)
        row = rows[name] = {"kept": int(n_kept(filtered)), "entropy_nats": float(entropy(filtered)),
                            "top1_prob": float(probs.max())}
        kept = torch.isfinite(filtered[order]).numpy()
        base = logits.softmax(-1)[order].numpy()
        shown = np.where(kept, probs[order].numpy(), base)  # a removed token: its (lost) T = 1 probability
        y = np.arange(len(order))
        ax.barh(y, shown, color=[plotting.PALETTE[0] if k else "#C8C8C8" for k in kept])
        ax.scatter(base, y, marker="|", color="black", s=80, zorder=3, label="T = 1 probability")
        ax.set_yticks(y, labels=labels, fontsize=8, family="monospace")
        ax.invert_yaxis()
        x_max = max(x_max, float(shown.max()))
        ax.set_xlabel("probability after the knob")
        ax.set_title(f"{name}\n{row['kept']} of {logits.shape[-1]} kept, H = {row['entropy_nats']:.2f} nats",
                     fontsize=10)
    for ax in axes.flat:
        ax.set_xlim(0, 1.08 * x_max)  # one scale for all panels
    axes.flat[0].legend(loc="lower right")
    tail = context[-70:].replace("\n", " ")
    fig.suptitle(f"One real context: \"…{tail}\"\nblue = probability after the knob (renormalised), "
                 f"grey = removed, black tick = the model's own (T = 1) probability", fontweight="bold")
    demo.save_figure(fig, "one_distribution.png")
    demo.say(f"\n[1] One context: \"…{tail}\"")
    for name, row in rows.items():
        demo.say(f"    {name:<18} keeps {row['kept']:>4} of {logits.shape[-1]} tokens, "
                 f"entropy {row['entropy_nats']:.2f} nats, top token p = {row['top1_prob']:.2f}")
    return {"context": context, "settings": rows}


# ------------------------------------------------------------------------------------------------
# 2. entropy and diversity vs temperature


def entropy_vs_temperature(demo: Demo, lab: LabModel, ctx: dict, cfg: dict, prompts: torch.Tensor,
                           generations: dict) -> dict:
    """Entropy over many real contexts, and what sampling at each temperature produces."""
    temps = cfg["entropy_temperatures"]
    logits = ctx["logits"]
    h = torch.stack([entropy(apply_temperature(logits, t)) for t in temps])  # (n_T, N)
    q = np.array([quartiles(row) for row in h])  # (n_T, 3)
    monotone = float((h.diff(dim=0) >= -1e-5).all(dim=0).float().mean())
    log_v = float(np.log(logits.shape[-1]))

    gen_t = cfg["temperatures"]
    metrics = {t: generations[f"T={t}"] for t in gen_t}
    d2 = [metrics[t]["distinct_2"] for t in gen_t]
    nll = [metrics[t]["nll"] for t in gen_t]
    sampled_h = {t: float(entropy(apply_temperature(logits, t)).mean()) for t in gen_t}
    rank_corr = float(np.corrcoef(np.argsort(np.argsort(gen_t)), np.argsort(np.argsort(d2)))[0, 1])

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(12, 4.6))
    ax1.fill_between(temps, q[:, 0], q[:, 2], alpha=0.25, color=plotting.PALETTE[0],
                     label="IQR over contexts")
    ax1.plot(temps, q[:, 1], "o-", ms=3, color=plotting.PALETTE[0], label="median")
    ax1.axhline(log_v, color="gray", ls="--", label=f"uniform: log {logits.shape[-1]} = {log_v:.2f}")
    ax1.axvline(1.0, color="black", lw=0.8, alpha=0.5)
    log_axis(ax1.xaxis)
    ax1.set_xlabel("temperature T (log scale)")
    ax1.set_ylabel("entropy of softmax(z / T) (nats)")
    ax1.legend(loc="lower right")
    i1 = int(np.argmin(np.abs(np.array(temps) - 1.0)))
    ax1.set_title(f"median entropy {q[0, 1]:.2f} -> {q[i1, 1]:.2f} -> {q[-1, 1]:.2f} nats at "
                  f"T = {temps[0]:g}, {temps[i1]:.2g}, {temps[-1]:g}\n({len(h[0])} real contexts)",
                  fontsize=10)
    d2_se = [metrics[t]["distinct_2_se"] for t in gen_t]
    nll_se = [metrics[t]["nll_se"] for t in gen_t]
    ax2.errorbar(gen_t, d2, yerr=d2_se, marker="o", color=plotting.PALETTE[1], capsize=3,
                 label="distinct-2 across samples (left)")
    ax2.set_xlabel("sampling temperature T (0 = greedy)")
    ax2.set_ylabel("distinct-2 (diversity, 1 = no two bigrams alike)")
    ax2b = ax2.twinx()
    ax2b.errorbar(gen_t, nll, yerr=nll_se, marker="s", color=plotting.PALETTE[3], capsize=3,
                  label="NLL of the sampled tokens (right)")
    ax2b.axhline(generations["real"]["nll"], color=plotting.PALETTE[3], ls=":", label="NLL of the real text")
    ax2b.set_ylabel("NLL under the model (nats/token)")
    ax2b.grid(False)
    lines = ax2.get_legend_handles_labels()
    lines_b = ax2b.get_legend_handles_labels()
    ax2.legend(lines[0] + lines_b[0], lines[1] + lines_b[1], loc="upper left")
    ax2.set_title(f"sampled text: distinct-2 {d2[0]:.2f} (greedy) -> {d2[-1]:.2f} (T = {gen_t[-1]:g}),\n"
                  f"NLL {nll[0]:.2f} -> {nll[-1]:.2f} nats/token (rank correlation T vs distinct-2: "
                  f"{rank_corr:+.2f})", fontsize=10)
    demo.save_figure(fig, "entropy_vs_temperature.png")

    demo.say(f"\n[2] Entropy over {len(h[0])} real contexts (median, IQR), and text sampled at each T "
             f"({cfg['n_prompts']} prompts x {cfg['n_samples']} samples x {cfg['n_new']} tokens):")
    for t in (0.1, 0.5, 1.0, 2.0, 5.0):
        j = int(np.argmin(np.abs(np.array(temps) - t)))
        demo.say(f"    T = {temps[j]:<5.2g} entropy {q[j, 1]:.2f} nats (IQR {q[j, 0]:.2f}-{q[j, 2]:.2f}), "
                 f"exp(H) = {np.exp(q[j, 1]):.1f} effective choices (uniform: {logits.shape[-1]})")
    for t in gen_t:
        m = metrics[t]
        demo.say(f"    sampled at T = {t:<4g} distinct-2 {m['distinct_2']:.3f} ± {m['distinct_2_se']:.3f}, "
                 f"NLL {m['nll']:.2f} ± {m['nll_se']:.2f} nats/token, seq-rep-4 {m['seq_rep_4']:.3f}, "
                 f"all samples identical in {m['identical']:.0%} of prompts")
    greedy_same = metrics[0.0]["identical"]
    demo.say(f"    -> T = 0 is argmax: every sample of a prompt was identical in {greedy_same:.0%} of prompts"
             + ("." if greedy_same == 1.0 else " — NOT deterministic, which contradicts the curriculum."))
    if monotone > 0.999 and rank_corr > 0.8:
        demo.say(f"    -> Higher T -> higher entropy -> more diversity: confirmed. Entropy rose with T in "
                 f"{monotone:.1%} of contexts (dH/dT = Var(z)/T^3 >= 0), and distinct-2 rose with T "
                 f"(rank correlation {rank_corr:+.2f}), at the price of NLL {nll[0]:.2f} -> {nll[-1]:.2f}.")
    else:
        demo.say(f"    -> Higher T -> more diversity is only partly supported here: entropy rose with T in "
                 f"{monotone:.1%} of contexts, but distinct-2 vs T has rank correlation {rank_corr:+.2f}"
                 + (" (quick run: few samples of a barely trained model)." if demo.quick else "."))
    return {"temperatures": temps, "entropy_quartiles": q.tolist(), "log_vocab": log_v,
            "fraction_contexts_monotone": monotone, "mean_entropy_at_sampling_T": sampled_h,
            "sampled": {str(t): summary(metrics[t]) for t in gen_t},
            "rank_corr_T_distinct2": rank_corr}


# ------------------------------------------------------------------------------------------------
# 3. what top-p, top-k and min-p keep


def kept_set_sizes(demo: Demo, ctx: dict, cfg: dict) -> dict:
    """Top-k fixes the count and lets the mass vary; top-p fixes the mass and lets the count vary."""
    logits, targets = ctx["logits"], ctx["targets"]
    vocab, n_contexts = logits.shape[-1], len(targets)

    def stats(filtered):
        kept = torch.isfinite(filtered)
        covers = kept.gather(-1, targets[:, None])[:, 0].float().mean()  # the real next token survived
        return n_kept(filtered).float(), kept_mass(logits, filtered), float(covers)

    top_p = {p: stats(top_p_filter(logits, p)) for p in cfg["p_grid"]}
    top_k = {k: stats(top_k_filter(logits, k)) for k in cfg["k_grid"]}
    min_p = {m: stats(min_p_filter(logits, m)) for m in cfg["min_p_grid"]}
    p_n = np.array([percentiles(v[0]) for v in top_p.values()])  # (n_p, 5): P10, P25, P50, P75, P90
    k_mass = np.array([percentiles(v[1]) for v in top_k.values()])
    m_n = np.array([percentiles(v[0]) for v in min_p.values()])
    p_cover, k_cover = [v[2] for v in top_p.values()], [v[2] for v in top_k.values()]
    p_mass_mean = [float(v[1].mean()) for v in top_p.values()]
    k_mass_mean = [float(v[1].mean()) for v in top_k.values()]
    ps, ks, ms = cfg["p_grid"], cfg["k_grid"], cfg["min_p_grid"]

    # what each filter fixes, and what it leaves free, at p = 0.9 and k = 10
    p9, k10 = top_p[0.9], top_k[10]
    exact_k = float((k10[0] == 10).float().mean())  # more than 10 only on a tie with the 10th logit
    mass_ok = float((p9[1] >= 0.9 - 1e-6).float().mean())
    n10, n25, n50, n75, n90 = percentiles(p9[0])
    m10, m25, m50, m75, m90 = percentiles(k10[1])
    n_min, n_max, m_min = int(p9[0].min()), int(p9[0].max()), float(k10[1].min())

    fig, axes = plotting.new_figure(2, 2, figsize=(12, 8.5))
    (a, b), (c, d) = axes
    for ax, x, qs, color in ((a, ps, p_n, 0), (b, ks, k_mass, 1), (d, ms, m_n, 2)):
        ax.fill_between(x, qs[:, 0], qs[:, 4], alpha=0.15, color=plotting.PALETTE[color],
                        label="10-90th percentile")
        ax.fill_between(x, qs[:, 1], qs[:, 3], alpha=0.35, color=plotting.PALETTE[color], label="IQR")
        ax.plot(x, qs[:, 2], "o-", ms=3, color=plotting.PALETTE[color], label="median")
    a.set_xscale("logit")  # spreads out p = 0.9, 0.99, 0.999, where the nucleus grows
    a.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.xaxis.set_minor_formatter(NullFormatter())
    log_axis(a.yaxis)
    a.set_xlabel("top_p (probability mass to keep, logit scale)")
    a.set_ylabel("tokens kept by top-p (log)")
    a.legend(loc="upper left")
    a.set_title(f"top-p fixes the mass, not the count: p = 0.9 keeps {n50:.0f} token(s)\n"
                f"(10-90th percentile {n10:.0f}-{n90:.0f}, max {n_max}) of {vocab}", fontsize=10)
    log_axis(b.xaxis)
    b.set_xlabel("top_k (tokens to keep, log)")
    b.set_ylabel("probability mass kept by top-k")
    b.legend(loc="lower right")
    b.set_title(f"top-k fixes the count, not the mass: k = 10 keeps {m50:.3f} of the\n"
                f"mass (10-90th percentile {m10:.3f}-{m90:.3f}, min {m_min:.3f})", fontsize=10)
    c.plot(p_mass_mean, p_cover, "o-", ms=3, label="top-p (p grid)")
    c.plot(k_mass_mean, k_cover, "s-", ms=3, label="top-k (k grid)")
    low = min(min(p_mass_mean), min(k_mass_mean), min(p_cover), min(k_cover)) - 0.02
    c.plot([low, 1], [low, 1], color="gray", ls="--", label="calibrated: coverage = mass")
    c.set_xlim(low, 1.005)
    c.set_ylim(low, 1.005)
    c.set_xlabel("mean probability mass kept by the filter")
    c.set_ylabel("fraction of real next tokens kept")
    c.legend(loc="upper left")
    c.set_title(f"top-p 0.9 removes the real next token in {1 - p9[2]:.1%} of contexts,\n"
                f"top-k 10 in {1 - k10[2]:.1%}", fontsize=10)
    log_axis(d.xaxis)
    log_axis(d.yaxis)
    d.set_xlabel("min_p (relative to the top token's probability, log)")
    d.set_ylabel("tokens kept by min-p (log)")
    d.legend(loc="upper right")
    mq = percentiles(min_p[0.1][0]) if 0.1 in min_p else (np.nan,) * 5
    d.set_title(f"min-p scales with the top token: min_p = 0.1 keeps {mq[2]:.0f} token(s)\n"
                f"(10-90th percentile {mq[0]:.0f}-{mq[4]:.0f})", fontsize=10)
    fig.suptitle(f"What each filter keeps over {n_contexts} real contexts (T = 1)", fontweight="bold")
    demo.save_figure(fig, "kept_set_sizes.png")

    demo.say(f"\n[3] Kept sets over {n_contexts} real contexts at T = 1 (median, 10-90th percentile):")
    demo.say(f"    top-p 0.9 kept >= 0.9 of the mass in {mass_ok:.1%} of contexts, with {n50:.0f} token(s) "
             f"({n10:.0f}-{n90:.0f}, max {n_max}, min {n_min}).")
    demo.say(f"    top-k 10 kept exactly 10 tokens in {exact_k:.1%} of contexts, with {m50:.3f} of the mass "
             f"({m10:.3f}-{m90:.3f}, min {m_min:.3f}).")
    if exact_k >= 0.99 and mass_ok >= 0.99:
        demo.say(f"    -> Top-k fixes the number of candidates, top-p the cumulative mass: confirmed. What "
                 f"each leaves free varies from context to context: top-p's count over {n10:.0f}-{n90:.0f} "
                 f"tokens, top-k's mass over {m10:.3f}-{m90:.3f}.")
    else:
        demo.say(f"    -> Top-k fixes the count and top-p the mass only approximately here: exactly k in "
                 f"{exact_k:.1%} of contexts (ties), mass >= p in {mass_ok:.1%}.")
    mass_09 = float(p9[1].mean())
    if abs(p9[2] - mass_09) < 0.03:
        calibration = (f"the model is close to calibrated (coverage within 3 points of the mean kept mass "
                       f"{mass_09:.3f}).")
    else:
        calibration = (f"coverage differs from the mean kept mass {mass_09:.3f} by more than 3 points, so "
                       f"the model is {'over' if p9[2] < mass_09 else 'under'}confident here"
                       + (" (quick run: barely trained)." if demo.quick else "."))
    demo.say(f"    The real next token survives top-p 0.9 in {p9[2]:.1%} of contexts and top-k 10 in "
             f"{k10[2]:.1%}: " + calibration)
    return {"vocab": vocab, "n_contexts": n_contexts, "percentiles": [10, 25, 50, 75, 90],
            "top_p_0.9": {"mass_at_least_p": mass_ok, "kept_min": n_min, "kept_max": n_max},
            "top_k_10": {"exactly_k": exact_k, "mass_min": m_min},
            "top_p": {str(p): {"kept_percentiles": p_n[i].tolist(), "mass_mean": p_mass_mean[i],
                               "real_token_kept": p_cover[i]} for i, p in enumerate(ps)},
            "top_k": {str(k): {"mass_percentiles": k_mass[i].tolist(), "mass_mean": k_mass_mean[i],
                               "real_token_kept": k_cover[i]} for i, k in enumerate(ks)},
            "min_p": {str(m): {"kept_percentiles": m_n[i].tolist(), "real_token_kept": min_p[m][2]}
                      for i, m in enumerate(ms)}}


# ------------------------------------------------------------------------------------------------
# 4. the presets


def presets(demo: Demo, lab: LabModel, cfg: dict, prompts: torch.Tensor, generations: dict,
            examples: dict) -> dict:
    """Diversity, quality and repetition of each preset's samples, against the real continuation."""
    names = list(examples)
    real = generations["real"]
    fig, axes = plotting.new_figure(1, 3, figsize=(16, 4.8))
    metrics = [("distinct_2", "distinct-2 across samples (higher = more diverse)"),
               ("nll", "NLL under the model (nats/token, lower = likelier)"),
               ("seq_rep_4", "seq-rep-4 (repeated 4-grams, lower = better)")]
    for ax, (key, label) in zip(axes, metrics):
        values = [generations[n][key] for n in names]
        errors = [generations[n][key + "_se"] for n in names]
        plotting.bar_plot(ax, names, values, errors=errors, ylabel=label,
                          fmt="{:.3f}" if key == "seq_rep_4" else "{:.2f}")
        ax.set_ylim(0, 1.3 * max(max(values), real.get(key, 0.0)) + 1e-3)  # room for the legend
        if key != "distinct_2":
            ax.axhline(real[key], color="black", ls="--", label=f"real continuation: {real[key]:.2f}")
            ax.legend(loc="upper left")
    best = min(names, key=lambda n: abs(generations[n]["nll"] - real["nll"]))
    axes[1].set_title(f"closest to the real text's NLL ({real['nll']:.2f}): {best} "
                      f"({generations[best]['nll']:.2f})", fontsize=10)
    g, c = generations[names[0]], generations[names[-1]]
    axes[0].set_title(f"distinct-2: {names[0]} {g['distinct_2']:.2f} vs {names[-1]} {c['distinct_2']:.2f}",
                      fontsize=10)
    rep_max = max(names, key=lambda n: generations[n]["seq_rep_4"])
    axes[2].set_title(f"most repetitive: {rep_max} ({generations[rep_max]['seq_rep_4']:.3f}; "
                      f"real text {real['seq_rep_4']:.3f})", fontsize=10)
    fig.suptitle(f"Presets on {cfg['n_prompts']} prompts x {cfg['n_samples']} samples x {cfg['n_new']} "
                 f"tokens (error bars: standard error over prompts)", fontweight="bold")
    demo.save_figure(fig, "presets.png")

    prompt_text = lab.decode(prompts[0].tolist()).replace("\n", " ")
    demo.say(f"\n[4] Presets ({cfg['n_prompts']} prompts x {cfg['n_samples']} samples x {cfg['n_new']} "
             f"tokens; NLL = the unfiltered model's surprise at each sampled token):")
    demo.say(f"    real continuation     NLL {real['nll']:.2f} nats/token, seq-rep-4 {real['seq_rep_4']:.3f}")
    for name in names:
        m = generations[name]
        demo.say(f"    {name:<21} distinct-2 {m['distinct_2']:.3f} ± {m['distinct_2_se']:.3f}, "
                 f"NLL {m['nll']:.2f} ± {m['nll_se']:.2f}, seq-rep-4 {m['seq_rep_4']:.3f} ± "
                 f"{m['seq_rep_4_se']:.3f}")
    demo.say(f"    Prompt: \"…{prompt_text[-80:]}\"")
    for name in names:
        text = lab.decode(generations[name]["first_sample"]).replace("\n", " ")
        demo.say(f"      {name:<19} \"{text[:110]}\"")
    c15, c20 = generations.get("creative"), generations.get("creative T=2.0")
    if c15 is not None and c20 is not None:
        diff = c20["nll"] - c15["nll"]
        se = float(np.hypot(c15["nll_se"], c20["nll_se"]))
        demo.say(f"    -> creative at T = 2.0 instead of {PRESETS['creative']['temperature']}: NLL "
                 f"{c15['nll']:.2f} -> {c20['nll']:.2f} ({diff:+.2f} ± {se:.2f}), distinct-2 "
                 f"{c15['distinct_2']:.3f} -> {c20['distinct_2']:.3f}; "
                 + ("the higher temperature buys diversity with measurably less likely text."
                    if effect(diff, 2 * se) == "worse" else "no measurable NLL cost in this run."))
    return {"real": summary(real),
            "presets": {n: summary(generations[n]) for n in names},
            "examples": {n: lab.decode(generations[n]["first_sample"]) for n in names},
            "prompt": lab.decode(prompts[0].tolist()), "closest_to_real_nll": best}


# ------------------------------------------------------------------------------------------------
# 5. top-k and top-p together


def binding(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
            temperature_last: bool) -> dict:
    """Over contexts: which filter is tighter, and what the chain keeps compared with each alone."""
    scaled = logits if temperature_last else apply_temperature(logits, temperature)
    n_p = n_kept(top_p_filter(scaled, top_p))  # (N,) nucleus of the (tempered) distribution
    n_k = n_kept(top_k_filter(scaled, top_k))  # (N,) = top_k unless ties
    both = torch.isfinite(top_p_filter(top_k_filter(scaled, top_k), top_p))  # (N, vocab): transformers' chain
    n_both = both.sum(dim=-1)
    return {"n_p": n_p, "kept_by_both": both, "k_binds": float((n_k < n_p).float().mean()),
            "p_binds": float((n_p < n_k).float().mean()),
            "equal": float((n_p == n_k).float().mean()),
            "both_smaller_than_either": float((n_both < torch.minimum(n_k, n_p)).float().mean()),
            "median_kept": {"top_k": float(n_k.float().median()), "top_p": float(n_p.float().median()),
                            "both": float(n_both.float().median())}}


def top_k_and_top_p(demo: Demo, ctx: dict, cfg: dict, generations: dict, temperature_last: bool) -> dict:
    """The curriculum says "use either top-k or top-p, not both". What does combining actually do?"""
    out = {}
    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(13, 5))
    demo.say(f"\n[5] Top-k and top-p together ({len(ctx['targets'])} real contexts; temperature applied "
             f"{'after' if temperature_last else 'before'} the filters):")
    top_count = 1.0
    for i, name in enumerate(("focused", "creative")):
        knobs = PRESETS[name]
        t, k, p = knobs["temperature"], knobs["top_k"], knobs["top_p"]
        b = binding(ctx["logits"], t, k, p, temperature_last)
        other_order = binding(ctx["logits"], t, k, p, not temperature_last)
        n_p = b.pop("n_p").float()
        other_order.pop("n_p")
        # the same knobs, the other order: in how many contexts does the chain keep a different set?
        differs = b.pop("kept_by_both") != other_order.pop("kept_by_both")  # (N, vocab)
        order_changes = float(differs.any(dim=-1).float().mean())
        b["order_changes_kept_set"] = order_changes
        # log-spaced bins with integer edges (nucleus sizes are integers: no empty slivers between them)
        bins = np.unique(np.round(np.geomspace(1, ctx["logits"].shape[-1] + 1, 40))) - 0.5
        color = plotting.PALETTE[i]
        counts, _, _ = ax1.hist(n_p.numpy(), bins=bins, alpha=0.5, color=color,
                                label=f"{name}: nucleus at T={t:g}, p={p:g}")
        top_count = max(top_count, float(counts.max()))
        ax1.axvline(k, color=color, ls="--", lw=1.5,
                    label=f"{name}: top_k = {k} (binds in {b['k_binds']:.0%})")

        gen = {v: generations[f"{name} {v}"] for v in ("top-k only", "top-p only", "both")}
        diffs = {}
        for alone in ("top-k only", "top-p only"):
            diffs[alone] = {}
            for key in ("distinct_2", "nll"):
                d = np.array(gen["both"]["per_prompt"][key]) - np.array(gen[alone]["per_prompt"][key])
                mean, se = mean_se(d)  # paired over prompts (the same random draws for each setting)
                measurable = effect(mean, 2 * se) in ("better", "worse")  # beyond 2 standard errors
                diffs[alone][key] = {"diff": mean, "se": se, "measurable": measurable}
        for j, (variant, m) in enumerate(gen.items()):
            marker = ("o", "s", "D")[j]
            ax2.errorbar(m["nll"], m["distinct_2"], xerr=m["nll_se"], yerr=m["distinct_2_se"], marker=marker,
                         ms=8, mfc="white" if variant == "both" else color, color=color, capsize=3, ls="none",
                         label=f"{name}: {variant}")
        out[name] = {**b, "other_order": other_order,
                     "generation": {v: summary(m) for v, m in gen.items()},
                     "both_minus_alone": diffs}
        mk = b["median_kept"]
        demo.say(f"    {name} (T={t:g}, k={k}, p={p:g}): top-k is the tighter filter in {b['k_binds']:.0%} "
                 f"of contexts, top-p in {b['p_binds']:.0%}, equal in {b['equal']:.0%}; median kept: top-k "
                 f"{mk['top_k']:.0f}, top-p {mk['top_p']:.0f}, both {mk['both']:.0f}.")
        demo.say(f"      the chain keeps FEWER tokens than either filter alone in "
                 f"{b['both_smaller_than_either']:.0%} of contexts (top-p renormalises over the top-k "
                 f"survivors, so it cuts deeper).")
        oo = other_order["median_kept"]
        demo.say(f"      with temperature {'before' if temperature_last else 'after'} the filters instead: "
                 f"median kept top-p {oo['top_p']:.0f}, both {oo['both']:.0f}; the chain keeps a different "
                 f"set in {order_changes:.0%} of contexts.")
        for alone, dd in diffs.items():
            words = []
            for key, label in (("distinct_2", "distinct-2"), ("nll", "NLL")):
                x = dd[key]
                words.append(f"{label} {x['diff']:+.3f} ± {x['se']:.3f}" + (" (measurable)" if x["measurable"]
                                                                           else " (within noise)"))
            demo.say(f"      both vs {alone}: " + ", ".join(words))
        # the curriculum's rule, tested: is the chain the same as the filter that decides most often?
        main_filter = "top-k only" if b["k_binds"] >= b["p_binds"] else "top-p only"
        other = "top-p" if main_filter == "top-k only" else "top-k"
        changed = [label for key, label in (("distinct_2", "diversity"), ("nll", "NLL"))
                   if diffs[main_filter][key]["measurable"]]
        share = b["k_binds"] if main_filter == "top-k only" else b["p_binds"]
        out[name]["adding_second_filter_measurable"] = bool(changed)
        out[name]["main_filter"] = main_filter
        if not changed:
            demo.say(f"      -> 'use one, not both' holds for {name}: {main_filter[:5]} is the tighter "
                     f"filter in {share:.0%} of contexts, and adding {other} changed neither diversity nor "
                     f"NLL measurably (> 2 standard errors)"
                     + (" (quick run: few samples of a barely trained model)." if demo.quick else "."))
        else:
            demo.say(f"      -> 'use one, not both' does NOT hold for {name}: {main_filter[:5]} is the "
                     f"tighter filter in {share:.0%} of contexts, yet adding {other} measurably changed "
                     f"{' and '.join(changed)} — the chain is not the tighter filter alone"
                     + (" (quick run: few samples of a barely trained model)." if demo.quick else "."))
    log_axis(ax1.xaxis)
    ax1.set_xlabel("tokens in the top-p nucleus (after temperature), log")
    ax1.set_yscale("log")
    ax1.set_ylabel("number of contexts (log)")
    ax1.set_ylim(0.8, top_count * 40)  # room for the legend above the bars
    ax1.legend(fontsize=8, loc="upper right", frameon=True, framealpha=0.9)
    f, c = out["focused"], out["creative"]
    ax1.set_title(f"top-k binds (nucleus > k) in {f['k_binds']:.0%} of contexts for focused,\n"
                  f"{c['k_binds']:.0%} for creative", fontsize=10)
    ax2.set_xlabel("NLL under the model (nats/token)")
    ax2.set_ylabel("distinct-2 across samples")
    ax2.legend(fontsize=8, loc="lower right")
    title = []
    for name, o in out.items():
        d = o["both_minus_alone"][o["main_filter"]]
        title.append(f"{name}: both minus {o['main_filter']}: distinct-2 {d['distinct_2']['diff']:+.3f} ± "
                     f"{d['distinct_2']['se']:.3f}, NLL {d['nll']['diff']:+.3f} ± {d['nll']['se']:.3f}")
    ax2.set_title("\n".join(title), fontsize=10)
    demo.save_figure(fig, "top_k_and_top_p.png")
    return out


# ------------------------------------------------------------------------------------------------


def run_generations(demo: Demo, lab: LabModel, cfg: dict, prompts: torch.Tensor, real: torch.Tensor,
                    temperature_last: bool) -> tuple[dict, dict]:
    """Every sampling setting of experiments 2, 4 and 5, on the same prompts and the same seed."""
    focused, creative = PRESETS["focused"], PRESETS["creative"]
    settings_: dict[str, dict] = {f"T={t}": {"temperature": t} for t in cfg["temperatures"]}
    examples = {"deterministic": dict(PRESETS["deterministic"]), "T=1 (pure)": {"temperature": 1.0},
                "focused": dict(focused), "min-p 0.1": {"min_p": 0.1}, "creative": dict(creative),
                "creative T=2.0": {**creative, "temperature": 2.0}}
    settings_.update(examples)
    for name, knobs in (("focused", focused), ("creative", creative)):
        settings_[f"{name} top-k only"] = {"temperature": knobs["temperature"], "top_k": knobs["top_k"]}
        settings_[f"{name} top-p only"] = {"temperature": knobs["temperature"], "top_p": knobs["top_p"]}
        settings_[f"{name} both"] = dict(knobs)
    P, S = cfg["n_prompts"], cfg["n_samples"]
    batch = prompts.repeat_interleave(S, dim=0)  # (P * S, prompt_len): S samples of each prompt
    generations, done = {}, {}
    for name, knobs in settings_.items():
        key = tuple(sorted(knobs.items()))
        if key not in done:  # the same knobs under two names: generate once
            sampler = make_sampler(temperature_last, **knobs)
            g = sample_continuations(lab, batch, cfg["n_new"], sampler, demo.seed)
            m = text_metrics(g["tokens"], g["nll"], P, S)
            m["first_sample"] = g["tokens"][0].tolist()
            done[key] = m
        generations[name] = done[key]
    # the real continuation of each prompt, scored by the same model (teacher forcing)
    with torch.inference_mode():
        full = torch.cat([prompts, real], dim=1)  # (P, prompt_len + n_new)
        logits, _ = lab.model(full[:, :-1])
        nll = -logits[:, prompts.shape[1] - 1:].float().log_softmax(-1).gather(-1, real[..., None])[..., 0]
    generations["real"] = text_metrics(real.cpu(), nll.cpu(), P, 1)
    return generations, examples


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--temperature-last", action="store_true",
                        help="break: divide by the temperature after top-k/top-p instead of before")
    parser.add_argument("--prompt", type=str, default=None, help="your own context for experiment 1")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="lab model's text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    return _run(args)  # Demo runs torch on --threads threads (default 1)


def _run(args) -> dict:
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    results, timings = demo.results, {}
    results["timings_s"] = timings

    start = time.perf_counter()
    lab = lab_model("gpt2", quick=demo.quick, device=demo.device, seed=demo.seed)
    timings["lab_model"] = round(time.perf_counter() - start, 2)
    val_loss = lab.history.final_val_loss
    demo.say(f"Lab model: {lab.config.n_layer} layers, d_model {lab.config.d_model}, "
             f"vocab {lab.config.vocab_size}, val loss {val_loss:.2f} nats "
             f"({'cache hit' if lab.cache_hit else 'trained now'}, "
             f"{timings['lab_model']:.1f} s).")
    if demo.quick:
        demo.say("Quick run: the model is barely trained (60 steps), so its distributions are close to flat "
                 "and the samples are noise; run without --quick for the numbers of a trained model.")
    results["model"] = {"val_loss": val_loss, "quick": demo.quick, "cache_hit": lab.cache_hit,
                        "temperature_last": args.temperature_last}

    start = time.perf_counter()
    ctx = real_contexts(lab, cfg["n_windows"], demo.seed, demo.device)
    g = torch.Generator().manual_seed(demo.seed + 1)
    span = cfg["prompt_len"] + cfg["n_new"]
    starts = torch.randint(len(lab.val_data) - span, (cfg["n_prompts"],), generator=g)
    text = lab.val_data[starts[:, None] + torch.arange(span)]  # (P, prompt_len + n_new)
    prompts, real = text[:, : cfg["prompt_len"]].to(demo.device), text[:, cfg["prompt_len"]:].to(demo.device)
    generations, examples = run_generations(demo, lab, cfg, prompts, real, args.temperature_last)
    timings["generation"] = round(time.perf_counter() - start, 2)

    def run(name, experiment, *inputs):
        start = time.perf_counter()
        results[name] = experiment(demo, *inputs)
        timings[name] = round(time.perf_counter() - start, 2)

    run("one_distribution", one_distribution, lab, ctx, args.prompt)
    run("entropy_vs_temperature", entropy_vs_temperature, lab, ctx, cfg, prompts, generations)
    run("kept_set_sizes", kept_set_sizes, ctx, cfg)
    run("presets", presets, lab, cfg, prompts, generations, examples)
    run("top_k_and_top_p", top_k_and_top_p, ctx, cfg, generations, args.temperature_last)
    demo.finish()
    return results


if __name__ == "__main__":
    main()
