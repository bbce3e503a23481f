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

from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import effect

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    import torch

    from llmlab.sampling import PRESETS, experiments
    from llmlab.transformer_block.pretrained import LabModel, lab_model
    from llmlab.utils import Demo, plotting


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, torch, PRESETS, experiments, LabModel, lab_model, Demo, plotting
    import numpy as np
    import torch

    from llmlab.sampling import PRESETS, experiments
    from llmlab.transformer_block.pretrained import LabModel, lab_model
    from llmlab.utils import Demo, plotting


def settings(quick: bool) -> dict:
    if quick:
        return dict(n_windows=6, n_prompts=4, n_samples=4, prompt_len=24, n_new=24,
                    temperatures=[0.0, 0.7, 1.5],
                    entropy_temperatures=experiments.temperature_grid(0.1, 5, 10),
                    p_grid=[0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99],
                    k_grid=[1, 2, 5, 10, 20, 50, 100, 200, 500], min_p_grid=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
    return dict(n_windows=32, n_prompts=24, n_samples=8, prompt_len=32, n_new=64,
                temperatures=[0.0, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0],
                entropy_temperatures=experiments.temperature_grid(0.05, 10, 21),
                p_grid=[0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995,
                        0.999],
                k_grid=[1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000],
                min_p_grid=[0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8])


def quick_caveat(demo: Demo) -> str:
    return " (quick run: few samples of a barely trained model)." if demo.quick else "."


# ------------------------------------------------------------------------------------------------
# 1. one distribution under every setting


def one_distribution(demo: Demo, lab: LabModel, ctx: dict, prompt: str | None) -> dict:
    """A single real next-token distribution, reshaped by each knob."""
    m = experiments.one_distribution(lab, ctx, prompt, demo.device)
    logits, rows = m["logits"], m["settings"]
    order = torch.argsort(logits, descending=True)[:15]  # the 15 most likely tokens at T = 1
    labels = [plotting._visible(lab.decode([int(t)])) for t in order]
    base = logits.softmax(-1)[order].numpy()
    fig, axes = plotting.new_figure(2, 4, figsize=(17, 8.2))
    x_max = 0.0
    for ax, (name, filtered) in zip(axes.flat, m["filtered"].items()):
        kept = torch.isfinite(filtered[order]).numpy()
        # a removed token is drawn grey at its (lost) T = 1 probability
        shown = np.where(kept, filtered.softmax(-1)[order].numpy(), base)
        plotting.bar_plot(ax, labels, shown, horizontal=True, annotate=False,
                          colors=[plotting.PALETTE[0] if k else "#C8C8C8" for k in kept],
                          xlabel="probability after the knob", title=f"{name}\n{rows[name]['kept']} of "
                          f"{logits.shape[-1]} kept, H = {rows[name]['entropy_nats']:.2f} nats")
        ax.scatter(base, np.arange(len(order)), marker="|", color="black", s=80, zorder=3,
                   label="T = 1 probability")
        x_max = max(x_max, float(shown.max()))
    for ax in axes.flat:
        ax.set_xlim(0, 1.08 * x_max)  # one scale for all panels
    axes.flat[0].legend(loc="lower right")
    tail = m["context"][-70:].replace("\n", " ")
    fig.suptitle(f"One real context: \"…{tail}\"\nblue = probability after the knob (renormalised), "
                 f"grey = removed, black tick = the model's own (T = 1) probability", fontweight="bold")
    demo.save_figure(fig, "one_distribution.png")

    demo.say(f"\n[1] One context: \"…{tail}\"")
    for name, row in rows.items():
        demo.say(f"    {name:<18} keeps {row['kept']:>4} of {logits.shape[-1]} tokens, "
                 f"entropy {row['entropy_nats']:.2f} nats, top token p = {row['top1_prob']:.2f}")
    return {"context": m["context"], "settings": rows}


# ------------------------------------------------------------------------------------------------
# 2. entropy and diversity vs temperature


def entropy_vs_temperature(demo: Demo, ctx: dict, cfg: dict, generations: dict) -> dict:
    """Entropy over many real contexts, and what sampling at each temperature produces."""
    r = experiments.entropy_vs_temperature(ctx, cfg, generations)
    metrics, temps, log_v, rank_corr = r.pop("metrics"), r["temperatures"], r["log_vocab"], \
        r["rank_corr_T_distinct2"]
    q, n, vocab, gen_t = np.array(r["entropy_quartiles"]), len(ctx["targets"]), ctx["logits"].shape[-1], \
        cfg["temperatures"]
    d2, nll = [metrics[t]["distinct_2"] for t in gen_t], [metrics[t]["nll"] for t in gen_t]

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(12, 4.6))
    plotting.band_plot(ax1, temps, q, band_labels=["IQR over contexts"])
    ax1.axhline(log_v, color="gray", ls="--", label=f"uniform: log {vocab} = {log_v:.2f}")
    ax1.axvline(1.0, color="black", lw=0.8, alpha=0.5)
    plotting.plain_log_axis(ax1.xaxis)
    ax1.set(xlabel="temperature T (log scale)", ylabel="entropy of softmax(z / T) (nats)")
    ax1.legend(loc="lower right")
    i1 = int(np.argmin(np.abs(np.array(temps) - 1.0)))
    ax1.set_title(f"median entropy {q[0, 1]:.2f} -> {q[i1, 1]:.2f} -> {q[-1, 1]:.2f} nats at "
                  f"T = {temps[0]:g}, {temps[i1]:.2g}, {temps[-1]:g}\n({n} real contexts)", fontsize=10)
    ax2.errorbar(gen_t, d2, yerr=[metrics[t]["distinct_2_se"] for t in gen_t], marker="o",
                 color=plotting.PALETTE[1], capsize=3, label="distinct-2 across samples (left)")
    ax2.set(xlabel="sampling temperature T (0 = greedy)",
            ylabel="distinct-2 (diversity, 1 = no two bigrams alike)")
    ax2b = ax2.twinx()
    ax2b.errorbar(gen_t, nll, yerr=[metrics[t]["nll_se"] for t in gen_t], marker="s",
                  color=plotting.PALETTE[3], capsize=3, label="NLL of the sampled tokens (right)")
    ax2b.axhline(generations["real"]["nll"], color=plotting.PALETTE[3], ls=":", label="NLL of the real text")
    ax2b.set_ylabel("NLL under the model (nats/token)")
    ax2b.grid(False)
    lines, lines_b = ax2.get_legend_handles_labels(), ax2b.get_legend_handles_labels()
    ax2.legend(lines[0] + lines_b[0], lines[1] + lines_b[1], loc="upper left")
    ax2.set_title(f"sampled text: distinct-2 {d2[0]:.2f} (greedy) -> {d2[-1]:.2f} (T = {gen_t[-1]:g}),\n"
                  f"NLL {nll[0]:.2f} -> {nll[-1]:.2f} nats/token (rank correlation T vs distinct-2: "
                  f"{rank_corr:+.2f})", fontsize=10)
    demo.save_figure(fig, "entropy_vs_temperature.png")

    for line in experiments.entropy_verdict_lines(r, metrics, cfg, n, vocab, demo.quick):
        demo.say(line)
    return r


# ------------------------------------------------------------------------------------------------
# 3. what top-p, top-k and min-p keep


def kept_set_sizes(demo: Demo, ctx: dict, cfg: dict) -> dict:
    """Top-k fixes the count and lets the mass vary; top-p fixes the mass and lets the count vary."""
    r = experiments.kept_set_sizes(ctx, cfg)
    top_p, top_k, min_p = r["top_p"].values(), r["top_k"].values(), r["min_p"].values()
    p_n = np.array([v["kept_percentiles"] for v in top_p])  # (n_p, 5): P10, P25, P50, P75, P90
    k_mass = np.array([v["mass_percentiles"] for v in top_k])
    m_n = np.array([v["kept_percentiles"] for v in min_p])
    p_cover, k_cover = [v["real_token_kept"] for v in top_p], [v["real_token_kept"] for v in top_k]
    p_mass_mean, k_mass_mean = [v["mass_mean"] for v in top_p], [v["mass_mean"] for v in top_k]
    # what each filter fixes, and what it leaves free, at p = 0.9 and k = 10
    p9, k10, n_contexts = r["top_p"]["0.9"], r["top_k"]["10"], r["n_contexts"]
    n10, n25, n50, n75, n90 = p9["kept_percentiles"]
    m10, m25, m50, m75, m90 = k10["mass_percentiles"]
    n_max, m_min = r["top_p_0.9"]["kept_max"], r["top_k_10"]["mass_min"]

    fig, ((a, b), (c, d)) = plotting.new_figure(2, 2, figsize=(12, 8.5))
    for ax, x, qs, color in ((a, cfg["p_grid"], p_n, 0), (b, cfg["k_grid"], k_mass, 1),
                             (d, cfg["min_p_grid"], m_n, 2)):
        plotting.band_plot(ax, x, qs, color=color, band_labels=["10-90th percentile", "IQR"])
    plotting.plain_log_axis(a.xaxis, scale="logit")  # spreads out p = 0.9, 0.99, 0.999: the nucleus grows
    plotting.plain_log_axis(a.yaxis)
    a.set(xlabel="top_p (probability mass to keep, logit scale)", ylabel="tokens kept by top-p (log)")
    a.legend(loc="upper left")
    a.set_title(f"top-p fixes the mass, not the count: p = 0.9 keeps {n50:.0f} token(s)\n"
                f"(10-90th percentile {n10:.0f}-{n90:.0f}, max {n_max}) of {r['vocab']}", fontsize=10)
    plotting.plain_log_axis(b.xaxis)
    b.set(xlabel="top_k (tokens to keep, log)", ylabel="probability mass kept by top-k")
    b.legend(loc="lower right")
    b.set_title(f"top-k fixes the count, not the mass: k = 10 keeps {m50:.3f} of the\n"
                f"mass (10-90th percentile {m10:.3f}-{m90:.3f}, min {m_min:.3f})", fontsize=10)
    plotting.line_plot(c, {"top-p (p grid)": p_mass_mean, "top-k (k grid)": k_mass_mean},
                       {"top-p (p grid)": p_cover, "top-k (k grid)": k_cover},
                       styles={"top-k (k grid)": {"marker": "s"}}, xlabel="mean probability mass kept by "
                       "the filter", ylabel="fraction of real next tokens kept")
    low = min(min(p_mass_mean), min(k_mass_mean), min(p_cover), min(k_cover)) - 0.02
    c.plot([low, 1], [low, 1], color="gray", ls="--", label="calibrated: coverage = mass")
    c.set(xlim=(low, 1.005), ylim=(low, 1.005))
    c.legend(loc="upper left")
    c.set_title(f"top-p 0.9 removes the real next token in {1 - p9['real_token_kept']:.1%} of contexts,\n"
                f"top-k 10 in {1 - k10['real_token_kept']:.1%}", fontsize=10)
    plotting.plain_log_axis(d.xaxis)
    plotting.plain_log_axis(d.yaxis)
    d.set(xlabel="min_p (relative to the top token's probability, log)", ylabel="tokens kept by min-p (log)")
    d.legend(loc="upper right")
    mq = r["min_p"]["0.1"]["kept_percentiles"] if "0.1" in r["min_p"] else (np.nan,) * 5
    d.set_title(f"min-p scales with the top token: min_p = 0.1 keeps {mq[2]:.0f} token(s)\n"
                f"(10-90th percentile {mq[0]:.0f}-{mq[4]:.0f})", fontsize=10)
    fig.suptitle(f"What each filter keeps over {n_contexts} real contexts (T = 1)", fontweight="bold")
    demo.save_figure(fig, "kept_set_sizes.png")

    for line in experiments.kept_set_lines(r, demo.quick):
        demo.say(line)
    return r


# ------------------------------------------------------------------------------------------------
# 4. the presets


def presets(demo: Demo, lab: LabModel, cfg: dict, prompts: torch.Tensor, generations: dict,
            examples: dict) -> dict:
    """Diversity, quality and repetition of each preset's samples, against the real continuation."""
    names, real = list(examples), generations["real"]
    best = min(names, key=lambda n: abs(generations[n]["nll"] - real["nll"]))  # the likeliest-looking text
    rep_max = max(names, key=lambda n: generations[n]["seq_rep_4"])
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
    g, c = generations[names[0]], generations[names[-1]]
    axes[0].set_title(f"distinct-2: {names[0]} {g['distinct_2']:.2f} vs {names[-1]} {c['distinct_2']:.2f}",
                      fontsize=10)
    axes[1].set_title(f"closest to the real text's NLL ({real['nll']:.2f}): {best} "
                      f"({generations[best]['nll']:.2f})", fontsize=10)
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
    return {"real": experiments.summary(real),
            "presets": {n: experiments.summary(generations[n]) for n in names},
            "examples": {n: lab.decode(generations[n]["first_sample"]) for n in names},
            "prompt": lab.decode(prompts[0].tolist()), "closest_to_real_nll": best}


# ------------------------------------------------------------------------------------------------
# 5. top-k and top-p together


def top_k_and_top_p(demo: Demo, ctx: dict, generations: dict, temperature_last: bool) -> dict:
    """The curriculum says "use either top-k or top-p, not both". What does combining actually do?"""
    out = experiments.top_k_and_top_p(ctx, generations, temperature_last)
    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(13, 5))
    demo.say(f"\n[5] Top-k and top-p together ({len(ctx['targets'])} real contexts; temperature applied "
             f"{'after' if temperature_last else 'before'} the filters):")
    # log-spaced bins with integer edges (nucleus sizes are integers: no empty slivers between them)
    bins = np.unique(np.round(np.geomspace(1, ctx["logits"].shape[-1] + 1, 40))) - 0.5
    top_count = 1.0
    for i, (name, b) in enumerate(out.items()):
        (t, k, p), color = b.pop("knobs"), plotting.PALETTE[i]
        counts, _, _ = ax1.hist(b.pop("nucleus_sizes").numpy(), bins=bins, alpha=0.5, color=color,
                                label=f"{name}: nucleus at T={t:g}, p={p:g}")
        top_count = max(top_count, float(counts.max()))
        ax1.axvline(k, color=color, ls="--", lw=1.5,
                    label=f"{name}: top_k = {k} (binds in {b['k_binds']:.0%})")
        for j, (variant, m) in enumerate(b.pop("gen").items()):
            ax2.errorbar(m["nll"], m["distinct_2"], xerr=m["nll_se"], yerr=m["distinct_2_se"],
                         marker="osD"[j], ms=8, mfc="white" if variant == "both" else color, color=color,
                         capsize=3, ls="none", label=f"{name}: {variant}")

        mk, oo = b["median_kept"], b["other_order"]["median_kept"]
        demo.say(f"    {name} (T={t:g}, k={k}, p={p:g}): top-k is the tighter filter in {b['k_binds']:.0%} "
                 f"of contexts, top-p in {b['p_binds']:.0%}, equal in {b['equal']:.0%}; median kept: top-k "
                 f"{mk['top_k']:.0f}, top-p {mk['top_p']:.0f}, both {mk['both']:.0f}.")
        demo.say(f"      the chain keeps FEWER tokens than either filter alone in "
                 f"{b['both_smaller_than_either']:.0%} of contexts (top-p renormalises over the top-k "
                 f"survivors, so it cuts deeper).")
        demo.say(f"      with temperature {'before' if temperature_last else 'after'} the filters instead: "
                 f"median kept top-p {oo['top_p']:.0f}, both {oo['both']:.0f}; the chain keeps a different "
                 f"set in {b['order_changes_kept_set']:.0%} of contexts.")
        for alone, dd in b["both_minus_alone"].items():
            demo.say(f"      both vs {alone}: " + ", ".join(
                f"{label} {dd[key]['diff']:+.3f} ± {dd[key]['se']:.3f}"
                + (" (measurable)" if dd[key]["measurable"] else " (within noise)")
                for key, label in (("distinct_2", "distinct-2"), ("nll", "NLL"))))
        main_filter, changed = b["main_filter"], b.pop("changed")
        other = "top-p" if main_filter == "top-k only" else "top-k"
        share = b["k_binds"] if main_filter == "top-k only" else b["p_binds"]
        demo.say(f"      -> 'use one, not both' {'does NOT hold' if changed else 'holds'} for {name}: "
                 f"{main_filter[:5]} is the tighter filter in {share:.0%} of contexts, "
                 + (f"yet adding {other} measurably changed {' and '.join(changed)} — the chain is not the "
                    "tighter filter alone" if changed else f"and adding {other} changed neither diversity "
                    "nor NLL measurably (> 2 standard errors)") + quick_caveat(demo))
    plotting.plain_log_axis(ax1.xaxis)
    ax1.set(yscale="log", xlabel="tokens in the top-p nucleus (after temperature), log",
            ylabel="number of contexts (log)",
            ylim=(0.8, top_count * 40))  # room for the legend above the bars
    ax1.legend(fontsize=8, loc="upper right", frameon=True, framealpha=0.9)
    ax1.set_title(f"top-k binds (nucleus > k) in {out['focused']['k_binds']:.0%} of contexts for focused,\n"
                  f"{out['creative']['k_binds']:.0%} for creative", fontsize=10)
    ax2.set(xlabel="NLL under the model (nats/token)", ylabel="distinct-2 across samples")
    ax2.legend(fontsize=8, loc="lower right")
    ax2.set_title("\n".join(
        f"{name}: both minus {o['main_filter']}: distinct-2 {d['distinct_2']['diff']:+.3f} ± "
        f"{d['distinct_2']['se']:.3f}, NLL {d['nll']['diff']:+.3f} ± {d['nll']['se']:.3f}"
        for name, o in out.items() for d in [o["both_minus_alone"][o["main_filter"]]]), fontsize=10)
    demo.save_figure(fig, "top_k_and_top_p.png")
    return out


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--temperature-last", action="store_true",
                        help="break: divide by the temperature after top-k/top-p instead of before")
    parser.add_argument("--prompt", type=str, default=None, help="your own context for experiment 1")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="lab model's text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    load_libraries()
    demo = Demo(args, lesson_file=__file__)  # runs torch on --threads threads (default 1)
    cfg, results = settings(demo.quick), demo.results

    lab = demo.timed("lab_model", lab_model, "gpt2", quick=demo.quick, device=demo.device, seed=demo.seed)
    val_loss = lab.history.final_val_loss
    demo.say(f"Lab model: {lab.config.n_layer} layers, d_model {lab.config.d_model}, "
             f"vocab {lab.config.vocab_size}, val loss {val_loss:.2f} nats "
             f"({'cache hit' if lab.cache_hit else 'trained now'}, "
             f"{results['experiment_seconds']['lab_model']:.1f} s).")
    if demo.quick:
        demo.say("Quick run: the model is barely trained (60 steps), so its distributions are close to flat "
                 "and the samples are noise; run without --quick for the numbers of a trained model.")
    results["model"] = {"val_loss": val_loss, "quick": demo.quick, "cache_hit": lab.cache_hit,
                        "temperature_last": args.temperature_last}

    # the material of every experiment: real contexts, and text sampled under every setting
    ctx, prompts, generations, examples = demo.timed("generation", experiments.material, lab, cfg,
                                                     args.temperature_last, demo.seed, demo.device)
    results["one_distribution"] = demo.timed("one_distribution", one_distribution, demo, lab, ctx,
                                             args.prompt)
    results["entropy_vs_temperature"] = demo.timed("entropy_vs_temperature", entropy_vs_temperature, demo,
                                                   ctx, cfg, generations)
    results["kept_set_sizes"] = demo.timed("kept_set_sizes", kept_set_sizes, demo, ctx, cfg)
    results["presets"] = demo.timed("presets", presets, demo, lab, cfg, prompts, generations, examples)
    results["top_k_and_top_p"] = demo.timed("top_k_and_top_p", top_k_and_top_p, demo, ctx, generations,
                                            args.temperature_last)
    demo.finish()
    return results


if __name__ == "__main__":
    main()
