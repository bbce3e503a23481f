"""Lesson 13 demo: fit our own scaling laws on a CPU, reproduce Chinchilla's arithmetic, plan real training
runs, and train on two processes with torchrun.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--lr-schedule cosine|fixed] [--include-embeddings]

Experiments (each prints its numbers and draws one figure into outputs/; measurements in experiments.py,
figures in figures.py):
 1. scaling_fit.png     a model-size sweep at a fixed token budget and IsoFLOP runs at 3 compute budgets:
                        L(N) = E + A/N^alpha and L(N, D) fitted, with residuals and bootstrap intervals
 2. chinchilla.png      Hoffmann et al.'s Table 3 and Chinchilla 70B / 1.4T from the published constants
 3. sample_efficiency.png  held-out loss vs tokens seen for every size of the sweep
 4. pareto.png          loss vs wall time and vs training memory; a bigger model stopped early vs a smaller
                        one trained longer on the same compute
 5. planning.png        memory to train and serve real models, and the formulas vs measured tensor bytes
 6. ddp.png             train_ddp.py on 2 processes (gloo): tokens/s, and the check against 1 process
Break flags:
 --lr-schedule fixed    warmup then a constant rate for every run (a schedule not matched to the budget)
 --include-embeddings   fit the laws on total parameters instead of non-embedding ones
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import claim_mark, verdict_sentence

if TYPE_CHECKING:
    from llmlab.scaling_laws import experiments as ex
    from llmlab.scaling_laws import figures
    from llmlab.scaling_laws import scaling as sc
    from llmlab.utils import Demo


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above, made as this module's globals."""
    global ex, figures, sc, Demo
    from llmlab.scaling_laws import experiments as ex
    from llmlab.scaling_laws import figures
    from llmlab.scaling_laws import scaling as sc
    from llmlab.utils import Demo


MFU, GPU_FLOPS = 0.4, 989e12  # a stated MFU on an H100's dense bf16 peak (NVIDIA's datasheet)


def settings(quick: bool) -> dict:
    if quick:
        return dict(n_chars=100_000, vocab_size=512, block_size=32, batch_size=8, lr=1e-2, warmup=5,
                    eval_iters=4, sizes=[[1, 16], [1, 24], [1, 32], [2, 32], [2, 48], [2, 64]],
                    sweep_steps=30, budgets=[5e8, 1.5e9], iso_sizes=[[0, 1, 2, 3], [0, 1, 2, 3]],
                    n_boot=3, ddp_steps=3, ddp_float32=False, noise_seed=False)
    return dict(n_chars=1_000_000, vocab_size=512, block_size=64, batch_size=16, lr=1e-2, warmup=20,
                eval_iters=20, sizes=[[1, 8], [1, 16], [1, 24], [1, 32], [2, 32], [2, 48], [3, 64], [4, 96]],
                sweep_steps=400, budgets=[6e9, 2e10, 6e10],
                iso_sizes=[[0, 1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4]],
                n_boot=60, ddp_steps=10, ddp_float32=True, noise_seed=True)


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--lr-schedule", choices=("cosine", "fixed"), default="cosine",
                        help="cosine: decay over each run's own length (default); "
                             "fixed: break, a constant rate")
    parser.add_argument("--include-embeddings", action="store_true",
                        help="break: fit on total parameters (embeddings included)")
    return _run(parser.parse_args(argv))


def _run(args) -> dict:
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    results = demo.results
    results["config"] = dict(cfg, lr_schedule=args.lr_schedule, include_embeddings=args.include_embeddings)
    data = demo.timed("data", ex.load_data, cfg["n_chars"], cfg["vocab_size"], demo.seed)
    tps = cfg["batch_size"] * cfg["block_size"]
    demo.say(f"Data: {cfg['n_chars']:,} chars of stories in lesson 01's BPE ({data['vocab_size']} tokens): "
             f"{len(data['train']):,} train / {len(data['val']):,} val tokens; batches of {tps} tokens, "
             f"lr schedule {args.lr_schedule}.")
    if demo.quick:
        demo.say("Quick mode: a few dozen steps per run; no number below is evidence.")
    runs = demo.timed("train_runs", train_all, demo, cfg, data, args.lr_schedule)
    results["experiment_seconds"]["train_runs_cached"] = sum(r["cached"] for r in runs["all"])

    def experiment(name, fn, *inputs):
        results[name] = demo.timed(name, fn, demo, cfg, *inputs)
        return results[name]

    experiment("fits", fits, runs, args.include_embeddings)
    experiment("chinchilla", chinchilla)
    experiment("sample_efficiency", sample_efficiency, runs)
    experiment("pareto", pareto, runs)
    experiment("planning", planning, runs)
    experiment("ddp", ddp)
    results["timings_s"] = results.pop("experiment_seconds")
    results["key_insights"] = key_insights(demo, results)
    import resource  # CPU seconds of this process and of the torchrun subprocesses: the load-free cost

    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    results["cpu_seconds"] = round(sum(u.ru_utime + u.ru_stime for u in usage), 1)
    demo.say(f"CPU time: {results['cpu_seconds']} s (this process and its torchrun children)")
    demo.finish()
    return results


def train_all(demo: Demo, cfg: dict, data: dict, schedule: str) -> dict:
    """The sweep (every size, the same tokens) and the IsoFLOP runs (steps = C / (6 N tokens_per_step));
    in a full run also the IsoFLOP optimum's neighbour at a second seed, for the seed noise."""
    from tqdm.auto import tqdm

    tps = cfg["batch_size"] * cfg["block_size"]
    sizes = [tuple(s) for s in cfg["sizes"]]
    jobs = [("sweep", s, cfg["sweep_steps"], demo.seed, None) for s in sizes]
    for C, picks in zip(cfg["budgets"], cfg["iso_sizes"]):
        for i in picks:
            n = sc.count_params(ex.model_config(data["vocab_size"], cfg["block_size"], sizes[i]),
                                non_embedding=True)
            jobs.append(("iso", sizes[i], ex.isoflop_steps(C, n, tps), demo.seed, C))
    if cfg["noise_seed"]:
        mid = len(cfg["budgets"]) // 2
        jobs.append(("noise", sizes[cfg["iso_sizes"][mid][1]], jobs[len(sizes) + 4 * mid + 1][2],
                     demo.seed + 1, cfg["budgets"][mid]))
    runs: dict = {"sweep": [], "iso": [], "noise": [], "all": []}
    for kind, size, steps, seed, C in tqdm(jobs, desc="training runs", leave=False, disable=None):
        run = ex.train_point(cfg, data, size, steps, seed=seed, schedule=schedule, device=demo.device,
                             evals=8 if kind == "sweep" else 1)
        run["budget"] = C
        runs[kind].append(run)
        runs["all"].append(run)
    return runs


def _point(run: dict) -> dict:
    return {k: run[k] for k in ("size", "N", "N_total", "D", "C", "steps", "loss", "step_s", "budget")}


def fits(demo: Demo, cfg: dict, runs: dict, include_embeddings: bool) -> dict:
    """Experiment 1: L(N) on the sweep, L(N, D) on every run (Approach 3), the IsoFLOP parabolas
    (Approach 2)."""
    key = "N_total" if include_embeddings else "N"
    sweep, iso = runs["sweep"], runs["iso"]
    seed_noise = (abs(runs["noise"][0]["loss"] - next(r["loss"] for r in iso if r["size"] == runs["noise"][0]
                                                      ["size"] and r["budget"] == runs["noise"][0]["budget"]))
                  if runs["noise"] else None)
    N = [r[key] for r in sweep]
    power = ex.power_law_fit(N, [r["loss"] for r in sweep], n_boot=cfg["n_boot"], seed=demo.seed)
    every = sweep + iso
    C_ref = max(cfg["budgets"])
    chin = ex.chinchilla_fit([r[key] for r in every], [r["D"] for r in every], [r["loss"] for r in every],
                             C_ref, n_boot=cfg["n_boot"], seed=demo.seed)
    isoflop = ex.isoflop_fit([r["budget"] for r in iso], [r[key] for r in iso], [r["loss"] for r in iso])
    out = dict(parameters="total" if include_embeddings else "non-embedding", seed_noise=seed_noise,
               sweep=[_point(r) for r in sweep], iso=[_point(r) for r in iso], power_law=power,
               chinchilla=chin, isoflop=isoflop, C_ref=C_ref,
               span=max(r["N"] for r in sweep) / min(r["N"] for r in sweep))
    demo.say(f"== 1. Scaling fits on {out['parameters']} parameters ({len(sweep)} sizes spanning "
             f"{out['span']:.0f}x at {sweep[0]['D']:,} tokens; {len(iso)} IsoFLOP runs)")
    a_lo, a_hi = power["alpha_interval"]
    demo.say(f"  L(N) = {power['E']:.3f} + {power['A']:.3g}/N^{power['alpha']:.3f}: "
             f"alpha {power['alpha']:.3f} "
             f"(80% bootstrap {a_lo:.3f}-{a_hi:.3f}), floor E {power['E']:.3f} nats, rms residual "
             f"{100 * power['rms_residual']:.2f}% of the loss. Kaplan: alpha_N 0.076 on non-embedding N, "
             "no floor, 1e3 times larger models (a citation).")
    f = chin["fit"]
    t_lo, t_hi = chin["tokens_per_param_interval"]
    demo.say(f"  L(N, D) = {f['E']:.3f} + {f['A']:.3g}/N^{f['alpha']:.3f} + {f['B']:.3g}/D^{f['beta']:.3f} "
             f"(rms residual {100 * chin['rms_residual']:.2f}%): "
             f"compute-optimal {chin['tokens_per_param']:.1f} "
             f"tokens per parameter at C = {C_ref:.3g} (80% bootstrap {t_lo:.1f}-{t_hi:.1f}); "
             "Chinchilla: ~20 (a citation).")
    if "error" in isoflop:
        demo.say(f"  IsoFLOP parabolas: no fit ({isoflop['error']})")
    else:
        demo.say("  IsoFLOP optima: " + ", ".join(
            f"C {c:.2g}: N {n:,.0f} ({'inside' if i else 'OUTSIDE'} the sizes), {t:.1f} tokens/param"
            for c, n, i, t in zip(isoflop["budgets"], isoflop["N_opt"], isoflop["inside"],
                                  isoflop["tokens_per_param"]))
            + f"; N_opt ~ C^{isoflop['a']:.2f}, D_opt ~ C^{isoflop['b']:.2f}")
    if seed_noise is not None:
        demo.say(f"  seed noise: one IsoFLOP run repeated at another seed moves by {seed_noise:.3f} nats")
    figures.scaling_figure(demo, out)
    return out


def chinchilla(demo: Demo, cfg: dict) -> dict:
    """Experiment 2: Table 3 (Approach 1) vs Approach 3 from the published constants; Chinchilla itself."""
    rows = []
    for N_tab, C, D_tab in sc.HOFFMANN_2022_TABLE3:
        h, b = sc.compute_optimal(C, **sc.HOFFMANN_2022), sc.compute_optimal(C, **sc.BESIROGLU_2024)
        rows.append(dict(C=C, table_N=N_tab, table_D=D_tab, hoffmann_N=h[0], hoffmann_D=h[1],
                         besiroglu_N=b[0], besiroglu_D=b[1]))
    C = 5.76e23
    out = dict(rows=rows, C_chinchilla=C,
               hoffmann=dict(zip(("N", "D"), sc.compute_optimal(C, **sc.HOFFMANN_2022))),
               besiroglu=dict(zip(("N", "D"), sc.compute_optimal(C, **sc.BESIROGLU_2024))),
               chinchilla_6ND=6 * 70e9 * 1.4e12,
               exponents={name: dict(a=k["beta"] / (k["alpha"] + k["beta"]),
                                     b=k["alpha"] / (k["alpha"] + k["beta"]))
                          for name, k in (("hoffmann", sc.HOFFMANN_2022),
                                          ("besiroglu", sc.BESIROGLU_2024))})
    demo.say("== 2. Chinchilla's arithmetic (published constants, citations)")
    demo.say(f"  C = 6 N D for Chinchilla 70B on 1.4T tokens: {out['chinchilla_6ND']:.3g} FLOPs "
             "(Gopher's budget "
             f"{C:.3g})")
    for name in ("hoffmann", "besiroglu"):
        v, e = out[name], out["exponents"][name]
        demo.say(f"  {name:>10} constants at C = {C:.3g}: N_opt {v['N'] / 1e9:.1f}B, "
                 f"D_opt {v['D'] / 1e12:.2f}T, "
                 f"{v['D'] / v['N']:.1f} tokens/param; N_opt ~ C^{e['a']:.3f}, D_opt ~ C^{e['b']:.3f}")
    figures.chinchilla_figure(demo, out)
    return out


def sample_efficiency(demo: Demo, cfg: dict, runs: dict) -> dict:
    """Experiment 3: tokens (and FLOPs) each size needs to reach the smallest model's final loss."""
    tps = cfg["batch_size"] * cfg["block_size"]
    target = runs["sweep"][0]["loss"]
    curves, needed = [], []
    for r in runs["sweep"]:
        h = r["history"]
        tokens = [s * tps for s in h.eval_steps]
        curves.append(dict(size=r["size"], N=r["N"], tokens=tokens, val_loss=h.val_loss))
        below = [t for t, v in zip(tokens, h.val_loss) if v <= target]
        needed.append(below[0] if below else None)
    out = dict(target_loss=target, curves=curves, tokens_to_target=needed,
               flops_to_target=[6 * r["N"] * t if t else None for r, t in zip(runs["sweep"], needed)])
    demo.say(f"== 3. Sample efficiency: tokens to reach the smallest model's final loss {target:.3f}: "
             + ", ".join(
        f"N {r['N']:,}: {t:,}" if t else f"N {r['N']:,}: not reached" for r, t in zip(runs["sweep"], needed)))
    figures.sample_efficiency_figure(demo, out)
    return out


def pareto(demo: Demo, cfg: dict, runs: dict) -> dict:
    """Experiment 4: loss vs wall time and training memory; the same compute as a bigger model stopped
    early, a smaller model trained long, or the IsoFLOP optimum."""
    tps = cfg["batch_size"] * cfg["block_size"]
    points = []
    for r in runs["sweep"] + runs["iso"]:
        mem = sc.training_memory(r["config"], batch_size=cfg["batch_size"], seq_len=cfg["block_size"],
                                 dtype=__import__("torch").float32)["total"]
        points.append(dict(_point(r), wall_s=r["steps"] * r["step_s"], memory=mem))
    order = sorted(range(len(points)), key=lambda i: points[i]["wall_s"])
    frontier, best = [], float("inf")
    for i in order:
        if points[i]["loss"] < best:
            best = points[i]["loss"]
            frontier.append(i)
    mid = max(cfg["budgets"])
    # the largest sweep model whose curve reaches this compute (its first evaluation comes before it)
    covered = [r for r in runs["sweep"]
               if math.isfinite(ex.loss_at_tokens(r["history"], mid / (6 * r["N"]), tps))]
    big = max(covered or runs["sweep"][-1:], key=lambda r: r["N"])
    on_budget = [r for r in runs["iso"] if r["budget"] == mid]
    early = ex.loss_at_tokens(big["history"], mid / (6 * big["N"]), tps)
    small = min(on_budget, key=lambda r: r["N"])
    optimum = min(on_budget, key=lambda r: r["loss"])
    noise = demo.results["fits"]["seed_noise"]
    out = dict(points=points, frontier=frontier,
               frontier_sizes=sorted({tuple(points[i]["size"]) for i in frontier}),
               budget=mid, big_stopped_early=dict(size=big["size"], N=big["N"], loss=early),
               small_trained_long=dict(size=small["size"], N=small["N"], loss=small["loss"],
                                       steps=small["steps"]),
               isoflop_best=dict(size=optimum["size"], N=optimum["N"], loss=optimum["loss"]),
               seed_noise=noise,
               early_vs_small=verdict_sentence("bigger stopped early", early, "smaller trained long",
                                               small["loss"], noise),
               best_vs_small=verdict_sentence("IsoFLOP best", optimum["loss"], "smallest trained longest",
                                              small["loss"], noise))
    demo.say(f"== 4. Pareto frontier (loss vs wall time): {len(frontier)} runs from "
             f"{len(out['frontier_sizes'])} sizes; at C = {mid:.2g}: {out['early_vs_small']}; "
             f"{out['best_vs_small']}")
    figures.pareto_figure(demo, out)
    return out


def planning(demo: Demo, cfg: dict, runs: dict) -> dict:
    """Experiment 5: memory and days to train / serve real models; the formulas vs measured bytes."""
    import torch

    table = {}
    for name, config in sc.REAL_MODELS.items():
        n = sc.count_params(config)
        t32 = sc.training_memory(config, batch_size=1, seq_len=2048, dtype=torch.float32, checkpointing=True)
        t16 = sc.training_memory(config, batch_size=1, seq_len=2048, dtype=torch.bfloat16,
                                 checkpointing=True)
        serve = {bits: sc.inference_memory(config, seq_len=config.block_size, weight_bits=bits,
                                           group_size=32 if bits < 16 else None)["total"]
                 for bits in (16, 8, 4)}
        flops = sc.flops_per_token(config, seq_len=2048) * 20 * n  # Chinchilla's 20 tokens/param
        table[name] = dict(params=n, train_fp32=t32["total"], train_bf16=t16["total"],
                           serve=serve, gpu_days_20_tokens_per_param=flops / (MFU * GPU_FLOPS) / 86400)
    measured = [dict(size=r["size"], N_total=r["N_total"], **ex.measured_training_bytes(
        r["config"], batch_size=cfg["batch_size"], seq_len=cfg["block_size"], device=demo.device))
        for r in (runs["sweep"][0], runs["sweep"][-1])]
    out = dict(mfu=MFU, gpu_flops=GPU_FLOPS, seq_len=2048, real=table, measured=measured)
    demo.say(f"== 5. Planning (batch 1 x 2048, activation checkpointing; H100 bf16 at {MFU:.0%} MFU, "
             "a stated assumption)")
    for name, v in table.items():
        demo.say(f"  {name:>12}: train bf16+AdamW {v['train_bf16'] / 2**30:,.1f} GiB, serve 16/8/4-bit "
                 + "/".join(f"{v['serve'][b] / 2**30:,.1f}" for b in (16, 8, 4))
                 + f" GiB, {v['gpu_days_20_tokens_per_param']:,.3g} GPU-days for 20 tokens/param")
    for m in measured:
        demo.say(f"  lab GPT {m['size']}: predicted vs measured bytes: " + ", ".join(
            f"{k} {m['predicted'][k]:,} / {m['measured'][k]:,}" for k in m["predicted"]))
    figures.planning_figure(demo, out)
    return out


def ddp(demo: Demo, cfg: dict) -> dict:
    """Experiment 6: train_ddp.py --check under torchrun, 2 processes; float64 (and float32 in a full run)."""
    out = {"float64": ex.run_ddp(cfg["ddp_steps"], "float64")}
    if cfg["ddp_float32"]:
        out["float32"] = ex.run_ddp(cfg["ddp_steps"], "float32")
    demo.say("== 6. DDP, 2 processes on this machine (gloo)")
    for dtype, r in out.items():
        demo.say(f"  {dtype}: {r['tokens_per_s_total']:,.0f} tokens/s in all, "
                 f"{r['tokens_per_s_per_process']:,.0f} per process; max |w_DDP - w_single| = "
                 f"{r['max_abs_diff']:.3g} (tolerance {r['tolerance']:g}): "
                 + ("the same training" if r["check_passed"] else "NOT the same training"))
    figures.ddp_figure(demo, out)
    return out


def key_insights(demo: Demo, results: dict) -> dict:
    """The curriculum's lesson-13 claims next to the numbers of this run that test them."""
    out, quick = {}, demo.quick
    fit, pw = results["fits"], results["fits"]["power_law"]
    demo.say("\n== The curriculum's claims, measured" + (" (quick mode: nothing decided)" if quick else ""))

    def claim(key, text, mark, note):
        out[key] = dict(claim=text, mark=claim_mark(None if quick else mark), note=note)
        demo.say(f"  [{out[key]['mark']}] {text} — {note}")

    lo, hi = pw["alpha_interval"]
    form_ok = pw["rms_residual"] < 0.01
    kaplan_in = lo <= 0.076 <= hi
    claim("power_law", "Loss follows power law: loss ≈ a + b/N^0.07",
          True if form_ok and kaplan_in else "partly" if form_ok or kaplan_in else False,
          f"the form fits to {100 * pw['rms_residual']:.2f}% rms; alpha here {pw['alpha']:.3f} "
          f"(80% bootstrap {lo:.3f}-{hi:.3f}) on {fit['parameters']} parameters. 0.076 is Kaplan's "
          "alpha_N, for NON-embedding parameters and a law without the offset a (a citation)")
    iso, ch = fit["isoflop"], fit["chinchilla"]
    # the IsoFLOP exponent only when every parabola's minimum lies inside the sizes tried
    a = iso["a"] if "a" in iso and all(iso["inside"]) else float("nan")
    claim("chinchilla", "Chinchilla optimal: equal compute for model & data (corrected: N and D scale "
          "equally, ~20 tokens/param)", (abs(a - 0.5) < 0.1) if math.isfinite(a) else None,
          "as worded the claim has no meaning (C = 6ND is one product, not a model share plus a data share); "
          f"measured here N_opt ~ C^{a:.2f} (IsoFLOP) and {ch['tokens_per_param']:.1f} tokens/param "
          "(Approach 3, "
          f"80% bootstrap {ch['tokens_per_param_interval'][0]:.1f}-{ch['tokens_per_param_interval'][1]:.1f})")
    need = results["sample_efficiency"]["tokens_to_target"]
    reached = [t for t in need if t]
    fewer = len(reached) >= 3 and all(b <= a_ for a_, b in zip(reached, reached[1:]))
    flops = [f for f in results["sample_efficiency"]["flops_to_target"] if f]
    claim("sample_efficiency", "Bigger models: better sample efficiency, but more compute",
          True if fewer and flops[-1] > flops[0] else "partly" if fewer else False,
          "tokens to reach the smallest model's final loss: "
          + ", ".join(f"{t:,}" if t else "-" for t in need)
          + (f"; FLOPs for it {flops[0]:.2g} (smallest) vs {flops[-1]:.2g} (largest reaching it)"
             if flops else ""))
    p = results["pareto"]
    claim("pareto", "Optimal size depends on time/memory budget (Pareto frontier)",
          len(p["frontier_sizes"]) > 1,
          f"the loss-vs-time frontier holds {len(p['frontier_sizes'])} model sizes: "
          + ", ".join(str(list(s)) for s in p["frontier_sizes"]) + " ([n_layer, d_model])")
    e1 = p["early_vs_small"].startswith("bigger stopped early is better")
    e2 = p["best_vs_small"].startswith("IsoFLOP best is better")
    claim("early_stopping", "Early stopping matters; don't train to convergence always",
          True if e1 and e2 else "partly" if e1 or e2 else False,
          f"same compute {p['budget']:.2g} FLOPs: {p['early_vs_small']}; {p['best_vs_small']}")
    return out


if __name__ == "__main__":
    main()
