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
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from llmlab.moe import MoELayer
    from llmlab.transformer_block import GPT, llama_config
    from llmlab.utils import (
        CharTokenizer,
        Demo,
        TrainConfig,
        encode,
        estimate_loss,
        load_corpus,
        plotting,
        train,
        train_val_split,
    )


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, torch, nn, FlopCounterMode, MoELayer, GPT, llama_config, CharTokenizer, Demo, TrainConfig
    global encode, estimate_loss, load_corpus, plotting, train, train_val_split
    import numpy as np
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from llmlab.moe import MoELayer
    from llmlab.transformer_block import GPT, llama_config
    from llmlab.utils import (
        CharTokenizer,
        Demo,
        TrainConfig,
        encode,
        estimate_loss,
        load_corpus,
        plotting,
        train,
        train_val_split,
    )


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


def routing_recorder(model: GPT) -> nn.Module:
    """Wraps a GPT for llmlab.utils.train and records, at every training step, what each MoE layer did:
    the fraction of assignments per expert (n_layer, E), the router entropy and the dropped assignments.
    (The class is defined in this function because torch is imported only once the flags are parsed.)"""

    class RoutingRecorder(nn.Module):
        def __init__(self, model: GPT) -> None:
            super().__init__()
            self.model = model
            self.utilisation: list[np.ndarray] = []  # per step: (n_layer, E)
            self.entropy: list[float] = []  # per step: mean over layers, nats
            self.dropped: list[float] = []  # per step: fraction of assignments dropped

        def forward(self, idx, targets=None):
            out = self.model(idx, targets)
            if self.training:
                stats = [b.ffn.last_stats for b in self.model.blocks if isinstance(b.ffn, MoELayer)]
                if stats:
                    self.utilisation.append(np.stack([s.tokens_per_expert.cpu().numpy() for s in stats]))
                    self.entropy.append(float(np.mean([s.router_entropy for s in stats])))
                    self.dropped.append(sum(s.n_dropped for s in stats) / sum(s.n_assignments for s in stats))
            return out

    return RoutingRecorder(model)


def load_data(cfg: dict, corpus: str, seed: int) -> dict:
    text = load_corpus(corpus, cfg["corpus_chars"], seed=seed)
    tokenizer = CharTokenizer.from_text(text)  # characters: the FFNs, not the vocabulary, dominate compute
    train_ids, val_ids = train_val_split(encode(text, tokenizer), 0.1)
    return dict(tokenizer=tokenizer, train=train_ids, val=val_ids, vocab_size=tokenizer.vocab_size)


def flops_per_token(model: GPT, block_size: int, device) -> float:
    """Forward FLOPs per token of the whole model, counted by torch's FlopCounterMode (matmuls only)."""
    idx = torch.zeros(1, block_size, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(idx)
    model.train(was_training)
    return counter.get_total_flops() / block_size


def train_run(demo: Demo, cfg: dict, data: dict, name: str, *, seed_offset: int = 0, **overrides) -> dict:
    config = llama_config(vocab_size=data["vocab_size"], block_size=cfg["block_size"], n_layer=cfg["n_layer"],
                          n_head=cfg["n_head"], d_model=cfg["d_model"], **overrides)
    torch.manual_seed(demo.seed + seed_offset)
    model = GPT(config)
    recorder = routing_recorder(model)
    tc = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], block_size=cfg["block_size"],
                     lr=3e-3, warmup_steps=max(1, cfg["steps"] // 10),
                     eval_interval=max(1, cfg["steps"] // cfg["n_evals"]), eval_iters=cfg["eval_iters"])
    history = train(recorder, data["train"], data["val"], tc, device=demo.device,
                    seed=demo.seed + seed_offset, progress=True, desc=name)
    moe = model.blocks[0].ffn if config.n_experts else None
    ffn_params = sum(p.numel() for b in model.blocks for p in b.ffn.parameters())
    active_ffn = sum(b.ffn.cost().active_params for b in model.blocks) if moe is not None else ffn_params
    return dict(
        name=name, model=model, config=config, history=history, recorder=recorder, train_config=tc,
        final_val_loss=history.final_val_loss, ms_per_step=1000 * history.mean_step_time_s,
        flops_per_token=flops_per_token(model, cfg["block_size"], demo.device),
        total_params=model.num_parameters(), ffn_params=ffn_params, active_ffn_params=active_ffn,
    )


def summary(run: dict) -> dict:
    return {k: run[k] for k in ("final_val_loss", "ms_per_step", "flops_per_token", "total_params",
                                "ffn_params", "active_ffn_params")}


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


def imbalance(run: dict, last_fraction: float = 0.25) -> float:
    """max over layers and experts of (fraction of assignments) x E, averaged over the last quarter of the
    steps: 1.0 = perfectly balanced, E = every token on one expert."""
    util = np.stack(run["recorder"].utilisation)  # (steps, n_layer, E)
    tail = util[-max(1, int(len(util) * last_fraction)):].mean(axis=0)  # (n_layer, E)
    return float(tail.max() * util.shape[-1])


# ----------------------------------------------------------------------------------------------------
# experiments


def train_all(demo: Demo, cfg: dict, data: dict) -> dict:
    """Every training run the experiments need, once."""
    E, cf = cfg["n_experts"], cfg["capacity_factor"]
    moe = dict(n_experts=E, moe_capacity_factor=cf, moe_aux_loss_coef=cfg["aux_coef"],
               moe_z_loss_coef=cfg["z_coef"])
    ffn_dim = llama_config(d_model=cfg["d_model"]).ffn_dim
    no_aux = "" if cfg["aux_coef"] > 0 else ", aux-coef 0"  # the names follow the flag
    runs = {
        "dense": train_run(demo, cfg, data, "dense"),
        "moe_top1": train_run(demo, cfg, data, f"MoE {E}x top-1{no_aux}", moe_top_k=1, **moe),
        "dense_wide": train_run(demo, cfg, data, f"dense d_ff x{E}", d_ff=E * ffn_dim),
        "moe_top2": train_run(demo, cfg, data, f"MoE {E}x top-2{no_aux}", moe_top_k=min(2, E), **moe),
        "moe_no_aux": train_run(demo, cfg, data, f"MoE {E}x top-1, no balance loss", moe_top_k=1,
                                **(moe | dict(moe_aux_loss_coef=0.0))),
    }
    for n in cfg["expert_sweep"]:
        if n != E:
            runs[f"moe_e{n}"] = train_run(demo, cfg, data, f"MoE {n}x top-1", moe_top_k=1,
                                          **(moe | dict(n_experts=n)))
    if cfg["noise_run"]:  # the seed-to-seed noise of a final val loss: the dense model with another seed
        runs["dense_seed2"] = train_run(demo, cfg, data, "dense (seed + 1)", seed_offset=1)
    return runs


def dense_vs_moe(demo: Demo, cfg: dict, runs: dict) -> dict:
    E = cfg["n_experts"]
    keys = ["dense", "moe_top1", "dense_wide", "moe_top2"]
    fig, axes = plotting.new_figure(1, 3, figsize=(17, 5))
    for key in keys:
        h = runs[key]["history"]
        axes[0].plot(h.eval_steps, h.val_loss, "o-", color=COLORS[key], label=runs[key]["name"])
        axes[1].scatter(runs[key]["flops_per_token"] / 1e6, runs[key]["final_val_loss"], s=80,
                        color=COLORS[key], label=runs[key]["name"])
        axes[2].scatter(runs[key]["ms_per_step"], runs[key]["final_val_loss"], s=80, color=COLORS[key],
                        label=runs[key]["name"])
    axes[0].set(xlabel="training step", ylabel="val loss (nats/char)", title="val loss during training")
    axes[1].set(xlabel="forward FLOPs per token (M, FlopCounterMode)", ylabel="final val loss (nats/char)",
                title="loss vs compute per token")
    axes[2].set(xlabel="time per training step (ms, this CPU)", ylabel="final val loss (nats/char)",
                title="loss vs wall time per step")
    for ax in axes:
        ax.legend(fontsize=8)
    d, m, w = (runs[k]["final_val_loss"] for k in ("dense", "moe_top1", "dense_wide"))
    fig.suptitle(f"Equal FLOPs/token: MoE {E}x top-1 val loss {m:.3f} vs dense {d:.3f} ({m - d:+.3f}); "
                 f"dense with {E}x FFN params: {w:.3f}")
    demo.save_figure(fig, "dense_vs_moe.png")
    return {key: summary(runs[key]) for key in keys}


def utilisation(demo: Demo, cfg: dict, runs: dict) -> dict:
    E = cfg["n_experts"]
    pair = ("moe_top1", "moe_no_aux")
    fig = plotting.new_figure(1, 3, figsize=(17, 4.8))[0]
    axes = fig.axes
    results = {}
    for ax, key in zip(axes[:2], pair):
        util = np.stack(runs[key]["recorder"].utilisation)[:, 0, :]  # (steps, E): layer 0
        im = ax.imshow(util.T, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set(xlabel="training step", ylabel="expert (layer 0)", yticks=range(E),
               title=f"{runs[key]['name']}\nimbalance (max share x E, last 25%): {imbalance(runs[key]):.2f}, "
                     f"{load_state(imbalance(runs[key]), E)}")
        fig.colorbar(im, ax=ax, label="fraction of tokens")
        results[key] = dict(imbalance=imbalance(runs[key]),
                            final_entropy=float(np.mean(runs[key]["recorder"].entropy[-5:])),
                            final_val_loss=runs[key]["final_val_loss"])
    for key in pair:
        axes[2].plot(runs[key]["recorder"].entropy, color=COLORS[key], label=runs[key]["name"])
    axes[2].axhline(math.log(E), ls="--", color="gray", label=f"ln {E} (undecided router)")
    axes[2].set(xlabel="training step", ylabel="router entropy (nats, mean over tokens, layers)",
                title="how sure the router is", ylim=(0, math.log(E) * 1.1))
    axes[2].legend(fontsize=8)
    a, b = results["moe_top1"]["imbalance"], results["moe_no_aux"]["imbalance"]
    fig.suptitle(f"Load balancing: busiest expert gets {a:.2f}x its fair share "
                 f"{with_balancing(cfg['aux_coef'])}, {b:.2f}x without (1 = even, {E} = all on one expert)")
    demo.save_figure(fig, "utilisation.png")
    return results


def experts_topk(demo: Demo, cfg: dict, runs: dict) -> dict:
    E = cfg["n_experts"]
    sweep = {n: runs["moe_top1" if n == E else f"moe_e{n}"] for n in cfg["expert_sweep"]}
    fig, axes = plotting.new_figure(1, 2, figsize=(13, 4.8))
    ns = list(sweep)
    axes[0].plot(ns, [sweep[n]["final_val_loss"] for n in ns], "o-", color="tab:blue", label="MoE top-1")
    axes[0].axhline(runs["dense"]["final_val_loss"], color="gray", ls="--", label="dense (same FLOPs/token)")
    for n in ns:
        axes[0].annotate(f"{sweep[n]['total_params'] / 1e3:.0f}k params", (n, sweep[n]["final_val_loss"]),
                         textcoords="offset points", xytext=(4, 6), fontsize=8)
    axes[0].set(xscale="log", xticks=ns, xticklabels=[str(n) for n in ns], xlabel="number of experts (log)",
                ylabel="final val loss (nats/char)", title="more experts, same FLOPs per token")
    axes[0].minorticks_off()  # no "3 x 10^0" labels between the expert counts
    axes[0].legend(fontsize=8)
    keys = ["dense", "moe_top1", "moe_top2"]
    labels = [runs[k]["name"] for k in keys]
    losses = [runs[k]["final_val_loss"] for k in keys]
    bars = axes[1].bar(labels, losses, color=[COLORS[k] for k in keys])
    for bar, k in zip(bars, keys):
        axes[1].annotate(f"{runs[k]['flops_per_token'] / 1e6:.2f} MFLOP/tok",
                         (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                         fontsize=8)
    lo = min(losses)
    axes[1].set(ylim=(lo - 0.15, max(losses) + 0.1), ylabel="final val loss (nats/char)",
                title="top-1 vs top-2 routing")
    d1 = runs["moe_top2"]["final_val_loss"] - runs["moe_top1"]["final_val_loss"]
    fig.suptitle(f"Experts {ns[0]}->{ns[-1]} (top-1): val loss {sweep[ns[0]]['final_val_loss']:.3f} -> "
                 f"{sweep[ns[-1]]['final_val_loss']:.3f}; top-2 vs top-1: {d1:+.3f}")
    demo.save_figure(fig, "experts_topk.png")
    return dict(by_n_experts={n: summary(sweep[n]) for n in ns}, top2_minus_top1=d1)


def capacity(demo: Demo, cfg: dict, data: dict, runs: dict) -> dict:
    factors = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, None]
    tc = TrainConfig(steps=1, batch_size=cfg["batch_size"], block_size=cfg["block_size"],
                     eval_iters=cfg["eval_iters"])
    results = {}
    fig, axes = plotting.new_figure(1, 2, figsize=(13, 4.8))
    xs = [f if f is not None else 3.0 for f in factors]
    for key in ("moe_top1", "moe_no_aux"):
        model = runs[key]["model"]
        layers = [b.ffn for b in model.blocks]
        saved = [layer.capacity_factor for layer in layers]
        dropped, losses = [], []
        counts = {"dropped": 0, "assignments": 0}

        def record(layer, inputs, output, counts=counts):  # every forward of every layer, every batch
            counts["dropped"] += layer.last_stats.n_dropped
            counts["assignments"] += layer.last_stats.n_assignments

        hooks = [layer.register_forward_hook(record) for layer in layers]
        for f in factors:
            for layer in layers:
                layer.capacity_factor = f
            counts.update(dropped=0, assignments=0)
            losses.append(estimate_loss(model, data["val"], tc, device=demo.device))
            dropped.append(counts["dropped"] / counts["assignments"])  # over the same batches as the loss
        for hook in hooks:
            hook.remove()
        for layer, f in zip(layers, saved):
            layer.capacity_factor = f
        results[key] = dict(capacity_factor=[str(f) for f in factors], dropped_fraction=dropped,
                            val_loss=losses)
        axes[0].plot(xs, [100 * d for d in dropped], "o-", color=COLORS[key], label=runs[key]["name"])
        axes[1].plot(xs, losses, "o-", color=COLORS[key], label=runs[key]["name"])
    for ax in axes:
        ax.set_xticks(xs, [str(f) if f is not None else "none" for f in factors])
        ax.set_xlabel("capacity factor (evaluation only; 'none' = unlimited)")
        ax.legend(fontsize=8)
    axes[0].set(ylabel="assignments dropped (%)", title="tokens over capacity are dropped")
    axes[1].set(ylabel="val loss (nats/char)", title="what dropping costs")
    bal = dict(zip(factors, results["moe_top1"]["dropped_fraction"]))
    unb = dict(zip(factors, results["moe_no_aux"]["dropped_fraction"]))
    fig.suptitle(f"Capacity factor 1.0 drops {100 * bal[1.0]:.1f}% of assignments "
                 f"{with_balancing(cfg['aux_coef'])}, {100 * unb[1.0]:.1f}% without")
    demo.save_figure(fig, "capacity.png")
    return results


# ----------------------------------------------------------------------------------------------------
# the summary: each claim of the curriculum, checked against this run's numbers


def key_insights(demo: Demo, cfg: dict, runs: dict, results: dict) -> dict:
    E = cfg["n_experts"]
    d, m, w, m2 = (runs[k]["final_val_loss"] for k in ("dense", "moe_top1", "dense_wide", "moe_top2"))
    if "dense_seed2" in runs:
        noise = abs(runs["dense_seed2"]["final_val_loss"] - d)
        noise_text = f"seed-to-seed noise (dense, 2 seeds): {noise:.3f}"
    else:
        noise = float("inf")
        noise_text = ("quick mode: no noise estimate, the models are barely trained; "
                      "differences are not evidence")
    margin = max(2 * noise, 0.01)
    gain = d - m
    flops_ratio = runs["moe_top1"]["flops_per_token"] / runs["dense"]["flops_per_token"]
    time_ratio = runs["moe_top1"]["ms_per_step"] / runs["dense"]["ms_per_step"]
    param_ratio = runs["moe_top1"]["ffn_params"] / runs["dense"]["ffn_params"]
    say = demo.say
    say("\n== Key insights, measured")
    say(f"  ({noise_text})")
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
    a, b = results["utilisation"]["moe_top1"]["imbalance"], results["utilisation"]["moe_no_aux"]["imbalance"]
    say(f"- Load balancing: {load_balance_sentence(a, b, E, cfg['aux_coef'])}.")
    say(f"  ({COLLAPSE_RULE}: above {(E + 1) / 2:.1f}x the fair share for E = {E})")
    say(f"- Top-2 vs top-1 (2x expert FLOPs): val loss {m2:.3f} vs {m:.3f} ({m2 - m:+.3f}).")
    sweep = results["experts_topk"]["by_n_experts"]
    ns = sorted(sweep)
    steps = [compare(sweep[b_]["final_val_loss"], sweep[a_]["final_val_loss"], margin)
             for a_, b_ in zip(ns, ns[1:])]  # "a": more experts measurably better
    say("- More experts at equal FLOPs ('much larger models with the same compute'): "
        + ", ".join(f"{n} experts {sweep[n]['final_val_loss']:.3f}" for n in ns)
        + (" — inconclusive: no noise estimate." if "inconclusive" in steps
           else " — each step improves beyond the noise." if all(o == "a" for o in steps)
           else " — a step is measurably worse: not monotone in this run." if "b" in steps
           else f" — some steps show no measurable difference (margin {margin:.3f})."))
    cap = results["capacity"]
    say(f"- Capacity factor 1.0 drops {100 * cap['moe_top1']['dropped_fraction'][2]:.1f}% "
        f"({with_balancing(cfg['aux_coef'])}) vs {100 * cap['moe_no_aux']['dropped_fraction'][2]:.1f}% "
        f"(without) of the assignments; "
        f"at 0.5: {100 * cap['moe_top1']['dropped_fraction'][0]:.1f}%, val loss "
        f"{cap['moe_top1']['val_loss'][0]:.3f} vs {cap['moe_top1']['val_loss'][-1]:.3f} unlimited.")
    if demo.quick:
        say("  (quick mode: a few dozen steps; run without --quick for the real comparison)")
    return dict(noise=noise if math.isfinite(noise) else None, equal_flops_gain=gain,
                flops_ratio=flops_ratio, time_ratio=time_ratio, ffn_param_ratio=param_ratio)


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
    runs = train_all(demo, cfg, data)
    results = {"settings": {k: v for k, v in cfg.items()}}
    results["dense_vs_moe"] = dense_vs_moe(demo, cfg, runs)
    demo.say("\n== Dense vs MoE (final val loss, FLOPs/token measured by FlopCounterMode, ms/step)")
    for key in ("dense", "moe_top1", "dense_wide", "moe_top2"):
        r = runs[key]
        demo.say(f"  {r['name']:<28} loss {r['final_val_loss']:.3f}  {r['flops_per_token'] / 1e6:.3f} "
                 f"MFLOP/tok  {r['ms_per_step']:.1f} ms/step  FFN params {r['ffn_params']:,} "
                 f"(active {r['active_ffn_params']:,})")
    results["utilisation"] = utilisation(demo, cfg, runs)
    results["experts_topk"] = experts_topk(demo, cfg, runs)
    results["capacity"] = capacity(demo, cfg, data, runs)
    if "dense_seed2" in runs:
        results["dense_seed2"] = summary(runs["dense_seed2"])
    results["key_insights"] = key_insights(demo, cfg, runs, results)
    demo.results.update(results)
    demo.finish()
    return results


if __name__ == "__main__":
    main()
