"""Lesson 08 demo: mixture of experts, measured against dense models on the stories corpus.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--aux-coef X] [--z-loss X] [--n-experts N] [--capacity-factor F] [--steps N]
                   [--corpus stories|python-docs|python-code|PATH]

Small Llama-style lab GPTs (2 layers, d_model 64, SwiGLU, character tokens) are trained through
llmlab.utils.train; the MoE models replace each FFN with lesson 08's MoELayer (GPTConfig.n_experts).

Experiments (each prints its numbers and draws one figure into outputs/):
 1. dense_vs_moe.png   val loss over training, and final val loss vs measured FLOPs/token and time/step:
                       dense; MoE top-1 (the same FLOPs per token: "equal active parameters"); a dense
                       FFN as wide as all experts together ("equal total parameters"); MoE top-2
 2. utilisation.png    the fraction of tokens each expert gets, step by step (expert x step heatmap), with
                       and without the load-balancing loss, and the router entropy over training
 3. experts_topk.png   final val loss vs number of experts (top-1) and top-1 vs top-2, against FLOPs
 4. capacity.png       capacity factor vs dropped assignments and val loss, for the balanced and the
                       unbalanced router (evaluated on the trained models, no retraining)
Break flags:
 --aux-coef X          the load-balancing coefficient of the balanced MoE runs (default 0.01 = Switch's)
 --z-loss X            add ST-MoE's router z-loss with this coefficient (default 0)
 --n-experts N         experts of the main MoE runs (default 4)
 --capacity-factor F   train every MoE run with this capacity limit (default: none)
 --steps N             training steps per run
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import COLLAPSE_RULE, compare, load_verdict

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np

    from llmlab.moe.experiments import (
        CAPACITY_FACTORS,
        capacity_sweep,
        imbalance,
        load_data,
        summary,
        train_all,
    )
    from llmlab.utils import Demo, plotting


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, CAPACITY_FACTORS, capacity_sweep, imbalance, load_data, summary, train_all, Demo, plotting
    import numpy as np

    from llmlab.moe.experiments import (
        CAPACITY_FACTORS,
        capacity_sweep,
        imbalance,
        load_data,
        summary,
        train_all,
    )
    from llmlab.utils import Demo, plotting


COLORS = {"dense": "tab:gray", "moe_top1": "tab:blue", "dense_wide": "black", "moe_top2": "tab:orange",
          "moe_no_aux": "tab:red"}


def settings(quick: bool, args) -> dict:
    cfg = dict(corpus_chars=300_000, steps=300, batch_size=16, block_size=64, eval_iters=10, n_evals=6,
               noise_run=True, expert_sweep=(2, 4, 8))
    if quick:  # every experiment still runs, on a few dozen steps: the models are barely trained
        cfg.update(corpus_chars=60_000, steps=30, batch_size=8, block_size=32, eval_iters=2, n_evals=2,
                   noise_run=False, expert_sweep=(2, 4))
    if args.steps is not None:
        cfg["steps"] = args.steps
    cfg.update(d_model=64, n_layer=2, n_head=4, n_experts=args.n_experts, aux_coef=args.aux_coef,
               z_coef=args.z_loss, capacity_factor=args.capacity_factor)
    cfg["expert_sweep"] = tuple(sorted(set(cfg["expert_sweep"]) | {args.n_experts}))
    return cfg


# ----------------------------------------------------------------------------------------------------
# verdict sentences, shared by the figures' titles and the key insights


def with_balancing(aux_coef: float) -> str:
    """How the main MoE runs were trained, for titles and sentences: it follows --aux-coef."""
    if aux_coef > 0:
        return f"with the balancing loss (coef {aux_coef:g})"
    return "with --aux-coef 0 (no balancing loss)"


def load_state(imbalance_value: float, n_experts: int) -> str:
    """'collapsed', 'imbalanced' or 'balanced' from the busiest expert's measured share (imbalance / E)."""
    share = min(max(imbalance_value / n_experts, 1.0 / n_experts), 1.0)  # clip float rounding at the ends
    return load_verdict(share, n_experts)


def load_balance_sentence(a: float, b: float, n_experts: int, aux_coef: float) -> str:
    """The load-balancing verdict from the measured imbalances (busiest expert's share x E) of the main MoE
    run (a, trained with --aux-coef) and of the run without the balancing loss (b)."""
    state_a, state_b = load_state(a, n_experts), load_state(b, n_experts)
    if aux_coef <= 0:
        return (f"--aux-coef 0 trains both runs without the balancing loss, so its effect is not measured "
                f"here; the busiest expert gets {a:.2f}x ({state_a}) and {b:.2f}x ({state_b}) its fair share")
    numbers = (f"busiest expert {a:.2f}x its fair share {with_balancing(aux_coef)}: {state_a}; {b:.2f}x "
               f"without it: {state_b}")
    if state_b == "collapsed" and state_a != "collapsed":
        return f"the balancing loss prevents the collapse: {numbers}"
    if state_a == "collapsed" and state_b == "collapsed":
        return f"routing collapses with and without the balancing loss: {numbers}"
    if state_a == "collapsed":
        return f"routing collapses WITH the balancing loss, not without it: {numbers}"
    if b > a + 0.1:
        return (f"no collapse measured, but the balancing loss evens the load: {numbers} (the claim that "
                f"routing collapses without it is not shown at this scale/length)")
    return (f"no collapse measured in this run: {numbers} (the claim that routing collapses without it is "
            f"not shown at this scale/length)")


# ----------------------------------------------------------------------------------------------------
# 1. Dense vs MoE at equal FLOPs per token, and at equal total parameters: dense_vs_moe.png


def dense_vs_moe(demo: Demo, cfg: dict, runs: dict) -> dict:
    E = cfg["n_experts"]
    keys = ["dense", "moe_top1", "dense_wide", "moe_top2"]
    names = {runs[k]["name"]: k for k in keys}
    fig, axes = plotting.new_figure(1, 3, figsize=(17, 5))
    plotting.line_plot(axes[0], {n: runs[k]["history"].eval_steps for n, k in names.items()},
                       {n: runs[k]["history"].val_loss for n, k in names.items()},
                       styles={n: dict(color=COLORS[k], markersize=6) for n, k in names.items()},
                       xlabel="training step", ylabel="val loss (nats/char)",
                       title="val loss during training")
    for ax, metric, scale, xlabel, title in (
            (axes[1], "flops_per_token", 1e-6, "forward FLOPs per token (M, FlopCounterMode)",
             "loss vs compute per token"),
            (axes[2], "ms_per_step", 1, "time per training step (ms, this CPU)",
             "loss vs wall time per step")):
        for key in keys:
            ax.scatter(runs[key][metric] * scale, runs[key]["final_val_loss"], s=80, color=COLORS[key],
                       label=runs[key]["name"])
        ax.set(xlabel=xlabel, ylabel="final val loss (nats/char)", title=title)
    for ax in axes:
        ax.legend(fontsize=8)
    d, m, w = (runs[k]["final_val_loss"] for k in ("dense", "moe_top1", "dense_wide"))
    fig.suptitle(f"Equal FLOPs/token: MoE {E}x top-1 val loss {m:.3f} vs dense {d:.3f} ({m - d:+.3f}); "
                 f"dense with {E}x FFN params: {w:.3f}")
    demo.save_figure(fig, "dense_vs_moe.png")
    demo.say("\n== Dense vs MoE (final val loss, FLOPs/token measured by FlopCounterMode, ms/step)")
    for key in keys:
        r = runs[key]
        demo.say(f"  {r['name']:<28} loss {r['final_val_loss']:.3f}  {r['flops_per_token'] / 1e6:.3f} "
                 f"MFLOP/tok  {r['ms_per_step']:.1f} ms/step  FFN params {r['ffn_params']:,} "
                 f"(active {r['active_ffn_params']:,})")
    return {key: summary(runs[key]) for key in keys}


def dense_vs_moe_verdicts(demo: Demo, cfg: dict, runs: dict, margin: float) -> dict:
    """Sparse activation, 'FLOP savings with maintained capacity', the capacity gap, the wall time."""
    E = cfg["n_experts"]
    d, m, w = (runs[k]["final_val_loss"] for k in ("dense", "moe_top1", "dense_wide"))
    gain = d - m
    flops_ratio = runs["moe_top1"]["flops_per_token"] / runs["dense"]["flops_per_token"]
    time_ratio = runs["moe_top1"]["ms_per_step"] / runs["dense"]["ms_per_step"]
    param_ratio = runs["moe_top1"]["ffn_params"] / runs["dense"]["ffn_params"]
    say = demo.say
    say(f"- Sparse activation: MoE {E}x top-1 holds {param_ratio:.1f}x the dense FFN parameters "
        f"({runs['moe_top1']['ffn_params']:,} vs {runs['dense']['ffn_params']:,}) at {flops_ratio:.3f}x its "
        f"forward FLOPs per token (the extra is the router).")
    outcome = compare(m, d, margin)  # "inconclusive" in quick mode: no noise estimate (margin inf)
    if demo.quick or outcome == "inconclusive":
        verdict = f"NOT JUDGED in quick mode: MoE {m:.3f} vs dense {d:.3f} after {cfg['steps']} steps"
    elif outcome == "a":
        verdict = (f"CONFIRMED here: MoE reaches a lower val loss at equal FLOPs "
                   f"({m:.3f} vs {d:.3f}, -{gain:.3f})")
    elif outcome == "b":
        verdict = f"CONTRADICTED here: MoE is worse at equal FLOPs ({m:.3f} vs {d:.3f}, +{-gain:.3f})"
    else:
        verdict = (f"NOT RESOLVED here: MoE {m:.3f} vs dense {d:.3f}, no measurable difference "
                   f"(margin {margin:.3f})")
    say(f"- 'FLOP savings with maintained capacity': {verdict}.")
    if demo.quick:
        pass
    elif compare(w, d, margin) == "a":
        closed = (d - m) / (d - w)
        wide_flops = runs["dense_wide"]["flops_per_token"] / runs["dense"]["flops_per_token"]
        say(f"  The dense model with {E}x the FFN width (equal total params, {wide_flops:.2f}x the FLOPs) "
            f"reaches {w:.3f}: MoE closes {100 * closed:.0f}% of the dense -> wide-dense gap at the small "
            f"model's FLOPs.")
    else:
        say(f"  The {E}x wider dense model is not better than the small one by more than the noise margin "
            f"({w:.3f} vs {d:.3f}, margin {margin:.3f}): no measurable capacity gap for MoE to close here.")
    say(f"- Wall time on this {demo.device} device: MoE {E}x top-1 takes {time_ratio:.2f}x the dense step "
        f"time "
        f"({runs['moe_top1']['ms_per_step']:.1f} vs {runs['dense']['ms_per_step']:.1f} ms) — "
        + ("the FLOP saving does not become a time saving here (a Python loop over experts, small matmuls)."
           if time_ratio > 1.05 else "about the same as its FLOPs suggest."))
    return dict(equal_flops_gain=gain, flops_ratio=flops_ratio, time_ratio=time_ratio,
                ffn_param_ratio=param_ratio)


# ----------------------------------------------------------------------------------------------------
# 2. Expert utilisation with and without the load-balancing loss: utilisation.png


def utilisation(demo: Demo, cfg: dict, runs: dict) -> dict:
    E = cfg["n_experts"]
    pair = ("moe_top1", "moe_no_aux")
    results = {key: dict(imbalance=imbalance(runs[key]),
                         final_entropy=float(np.mean(runs[key]["recorder"].entropy[-5:])),
                         final_val_loss=runs[key]["final_val_loss"]) for key in pair}
    fig, axes = plotting.new_figure(1, 3, figsize=(17, 4.8))
    for ax, key in zip(axes[:2], pair):
        util = np.stack(runs[key]["recorder"].utilisation)[:, 0, :]  # (steps, E): layer 0
        load = results[key]["imbalance"]
        plotting.heatmap(ax, util.T, row_labels=[str(e) for e in range(E)], vmin=0, vmax=1,
                         cbar_label="fraction of tokens", xlabel="training step", ylabel="expert (layer 0)",
                         title=f"{runs[key]['name']}\nimbalance (max share x E, last 25%): {load:.2f}, "
                               f"{load_state(load, E)}")
    entropy = {runs[k]["name"]: runs[k]["recorder"].entropy for k in pair}
    plotting.line_plot(axes[2], {n: np.arange(len(e)) for n, e in entropy.items()}, entropy,
                       markers=False, styles={runs[k]["name"]: dict(color=COLORS[k]) for k in pair},
                       xlabel="training step", ylabel="router entropy (nats, mean over tokens, layers)",
                       title="how sure the router is")
    axes[2].axhline(math.log(E), ls="--", color="gray", label=f"ln {E} (undecided router)")
    axes[2].set_ylim(0, math.log(E) * 1.1)
    axes[2].legend(fontsize=8)
    a, b = results["moe_top1"]["imbalance"], results["moe_no_aux"]["imbalance"]
    fig.suptitle(f"Load balancing: busiest expert gets {a:.2f}x its fair share "
                 f"{with_balancing(cfg['aux_coef'])}, {b:.2f}x without (1 = even, {E} = all on one expert)")
    demo.save_figure(fig, "utilisation.png")
    return results


def utilisation_verdict(demo: Demo, cfg: dict, results: dict) -> None:
    E = cfg["n_experts"]
    a, b = results["moe_top1"]["imbalance"], results["moe_no_aux"]["imbalance"]
    demo.say(f"- Load balancing: {load_balance_sentence(a, b, E, cfg['aux_coef'])}.")
    demo.say(f"  ({COLLAPSE_RULE}: above {(E + 1) / 2:.1f}x the fair share for E = {E})")


# ----------------------------------------------------------------------------------------------------
# 3. More experts at equal FLOPs, and top-1 vs top-2 routing: experts_topk.png


def experts_topk(demo: Demo, cfg: dict, runs: dict) -> dict:
    E = cfg["n_experts"]
    sweep = {n: runs["moe_top1" if n == E else f"moe_e{n}"] for n in cfg["expert_sweep"]}
    ns = list(sweep)
    fig, axes = plotting.new_figure(1, 2, figsize=(13, 4.8))
    plotting.line_plot(axes[0], ns, {"MoE top-1": [sweep[n]["final_val_loss"] for n in ns]},
                       styles={"MoE top-1": dict(color="tab:blue", markersize=6)},
                       xlabel="number of experts (log)", ylabel="final val loss (nats/char)",
                       title="more experts, same FLOPs per token")
    axes[0].axhline(runs["dense"]["final_val_loss"], color="gray", ls="--", label="dense (same FLOPs/token)")
    for n in ns:
        axes[0].annotate(f"{sweep[n]['total_params'] / 1e3:.0f}k params", (n, sweep[n]["final_val_loss"]),
                         textcoords="offset points", xytext=(4, 6), fontsize=8)
    plotting.log_count_axis(axes[0], ns)
    axes[0].legend(fontsize=8)
    keys = ["dense", "moe_top1", "moe_top2"]
    losses = [runs[k]["final_val_loss"] for k in keys]
    bars = plotting.bar_plot(axes[1], [runs[k]["name"] for k in keys], losses, annotate=False,
                             colors=[COLORS[k] for k in keys], ylabel="final val loss (nats/char)",
                             title="top-1 vs top-2 routing")
    axes[1].bar_label(bars, labels=[f"{runs[k]['flops_per_token'] / 1e6:.2f} MFLOP/tok" for k in keys],
                      fontsize=8)
    axes[1].set_ylim(min(losses) - 0.15, max(losses) + 0.1)
    d1 = runs["moe_top2"]["final_val_loss"] - runs["moe_top1"]["final_val_loss"]
    fig.suptitle(f"Experts {ns[0]}->{ns[-1]} (top-1): val loss {sweep[ns[0]]['final_val_loss']:.3f} -> "
                 f"{sweep[ns[-1]]['final_val_loss']:.3f}; top-2 vs top-1: {d1:+.3f}")
    demo.save_figure(fig, "experts_topk.png")
    return dict(by_n_experts={n: summary(sweep[n]) for n in ns}, top2_minus_top1=d1)


def experts_topk_verdicts(demo: Demo, runs: dict, results: dict, margin: float) -> None:
    m, m2 = runs["moe_top1"]["final_val_loss"], runs["moe_top2"]["final_val_loss"]
    demo.say(f"- Top-2 vs top-1 (2x expert FLOPs): val loss {m2:.3f} vs {m:.3f} ({m2 - m:+.3f}).")
    sweep = results["by_n_experts"]
    ns = sorted(sweep)
    steps = [compare(sweep[b]["final_val_loss"], sweep[a]["final_val_loss"], margin)
             for a, b in zip(ns, ns[1:])]  # "a": more experts measurably better
    demo.say("- More experts at equal FLOPs ('much larger models with the same compute'): "
             + ", ".join(f"{n} experts {sweep[n]['final_val_loss']:.3f}" for n in ns)
             + (" — inconclusive: no noise estimate." if "inconclusive" in steps
                else " — each step improves beyond the noise." if all(o == "a" for o in steps)
                else " — a step is measurably worse: not monotone in this run." if "b" in steps
                else f" — some steps show no measurable difference (margin {margin:.3f})."))


# ----------------------------------------------------------------------------------------------------
# 4. Capacity factor vs dropped assignments and val loss (evaluation only): capacity.png


def capacity(demo: Demo, cfg: dict, data: dict, runs: dict) -> dict:
    pair = ("moe_top1", "moe_no_aux")
    results = {key: capacity_sweep(runs[key], data["val"], cfg, demo.device) for key in pair}
    factors = CAPACITY_FACTORS
    xs = [f if f is not None else 3.0 for f in factors]
    styles = {runs[k]["name"]: dict(color=COLORS[k], markersize=6) for k in pair}
    fig, axes = plotting.new_figure(1, 2, figsize=(13, 4.8))
    plotting.line_plot(axes[0], xs, {runs[k]["name"]: [100 * d for d in results[k]["dropped_fraction"]]
                                     for k in pair},
                       styles=styles, ylabel="assignments dropped (%)",
                       title="tokens over capacity are dropped")
    plotting.line_plot(axes[1], xs, {runs[k]["name"]: results[k]["val_loss"] for k in pair}, styles=styles,
                       ylabel="val loss (nats/char)", title="what dropping costs")
    for ax in axes:
        ax.set_xticks(xs, [str(f) if f is not None else "none" for f in factors])
        ax.set_xlabel("capacity factor (evaluation only; 'none' = unlimited)")
        ax.legend(fontsize=8)
    bal = dict(zip(factors, results["moe_top1"]["dropped_fraction"]))
    unb = dict(zip(factors, results["moe_no_aux"]["dropped_fraction"]))
    fig.suptitle(f"Capacity factor 1.0 drops {100 * bal[1.0]:.1f}% of assignments "
                 f"{with_balancing(cfg['aux_coef'])}, {100 * unb[1.0]:.1f}% without")
    demo.save_figure(fig, "capacity.png")
    return results


def capacity_verdict(demo: Demo, cfg: dict, results: dict) -> None:
    bal, unb = results["moe_top1"], results["moe_no_aux"]
    demo.say(f"- Capacity factor 1.0 drops {100 * bal['dropped_fraction'][2]:.1f}% "
             f"({with_balancing(cfg['aux_coef'])}) vs {100 * unb['dropped_fraction'][2]:.1f}% "
             f"(without) of the assignments; "
             f"at 0.5: {100 * bal['dropped_fraction'][0]:.1f}%, val loss "
             f"{bal['val_loss'][0]:.3f} vs {bal['val_loss'][-1]:.3f} unlimited.")


# ----------------------------------------------------------------------------------------------------
# the summary: each claim of the curriculum, checked against this run's numbers, experiment by experiment


def key_insights(demo: Demo, cfg: dict, runs: dict, results: dict) -> dict:
    d = runs["dense"]["final_val_loss"]
    if "dense_seed2" in runs:
        noise = abs(runs["dense_seed2"]["final_val_loss"] - d)
        noise_text = f"seed-to-seed noise (dense, 2 seeds): {noise:.3f}"
    else:
        noise = float("inf")
        noise_text = ("quick mode: no noise estimate, the models are barely trained; "
                      "differences are not evidence")
    margin = max(2 * noise, 0.01)
    demo.say("\n== Key insights, measured")
    demo.say(f"  ({noise_text})")
    numbers = dense_vs_moe_verdicts(demo, cfg, runs, margin)
    utilisation_verdict(demo, cfg, results["utilisation"])
    experts_topk_verdicts(demo, runs, results["experts_topk"], margin)
    capacity_verdict(demo, cfg, results["capacity"])
    if demo.quick:
        demo.say("  (quick mode: a few dozen steps; run without --quick for the real comparison)")
    return dict(noise=noise if math.isfinite(noise) else None, **numbers)


def main(argv: list[str] | None = None) -> dict:
    parser = demo_parser(__doc__)
    parser.add_argument("--aux-coef", type="nonneg_float", default=0.01,
                        help="load-balancing loss coefficient of the balanced MoE runs (default 0.01)")
    parser.add_argument("--z-loss", type="nonneg_float", default=0.0,
                        help="router z-loss coefficient (default 0)")
    parser.add_argument("--n-experts", type="positive_int", default=4,
                        help="experts of the main MoE runs (default 4)")
    parser.add_argument("--capacity-factor", type="positive_float", default=None,
                        help="train the MoE runs with this capacity factor (default: unlimited)")
    parser.add_argument("--steps", type="positive_int", default=None, help="training steps per run")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="training text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    if args.n_experts < 2:
        parser.error(f"--n-experts must be >= 2, got {args.n_experts}")
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick, args)
    data = load_data(cfg, args.corpus, demo.seed)
    demo.say(f"{args.corpus} corpus: {cfg['corpus_chars']:,} chars, {data['vocab_size']} character tokens; "
             f"{cfg['steps']} steps of {cfg['batch_size']}x{cfg['block_size']} tokens per run")
    results = demo.results
    results["settings"] = dict(cfg)
    runs = demo.timed("train_all", train_all, cfg, data, seed=demo.seed, device=demo.device)
    results["dense_vs_moe"] = demo.timed("dense_vs_moe", dense_vs_moe, demo, cfg, runs)
    results["utilisation"] = demo.timed("utilisation", utilisation, demo, cfg, runs)
    results["experts_topk"] = demo.timed("experts_topk", experts_topk, demo, cfg, runs)
    results["capacity"] = demo.timed("capacity", capacity, demo, cfg, data, runs)
    if "dense_seed2" in runs:
        results["dense_seed2"] = summary(runs["dense_seed2"])
    results["key_insights"] = key_insights(demo, cfg, runs, results)
    demo.finish()
    return results


if __name__ == "__main__":
    main()
