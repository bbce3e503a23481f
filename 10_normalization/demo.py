"""Lesson 10 demo: normalization layers and activation functions, measured.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--norm all|layernorm|rmsnorm|none] [--lr-scale X] [--no-warmup] [--n-layer N]
                   [--steps N] [--corpus stories|python-docs|python-code|PATH]

Experiments (each prints its numbers and draws one figure into outputs/; the code of 1-2 is in
experiments_stats.py, of the training runs and 3-5 in experiments_grid.py, of 6 in experiments_kernels.py):
 1. norm_statistics.png  per-token mean and std of a trained model's residual stream (and of skewed
                         synthetic vectors) before and after LayerNorm and RMSNorm; their invariances
 2. activations.png      ReLU, GELU, GELU-tanh and SiLU with their derivatives, max |GELU - GELU_tanh|,
                         the SwiGLU unit's response surface (the share of hidden units a trained ReLU FFN
                         zeroes is printed)
 3. ablation_curves.png  training loss of {LayerNorm, RMSNorm, none} x {GELU, SwiGLU, ReLU} x {pre, post}
                         -norm: small GPTs with equal parameter counts (SwiGLU's hidden width x 2/3)
 4. ablation_grid.png    the cells' final val loss, steps to a common target loss and time per step, next to
                         the seed-to-seed noise (four cells re-trained at two more seeds)
 5. lr_stability.png     final val loss vs learning rate for four representative configs; failed runs marked
 6. kernels.png          a training step with kernels="lab" (the formulas) vs kernels="torch" (fused), and
                         each operation alone
Break flags:
 --norm X        train only the grid rows with norm X (none: the no-norm models alone)
 --lr-scale X    multiply every learning rate (e.g. 10: which cells stop training first?)
 --no-warmup     start at the full learning rate (post-norm needs warmup: Xiong et al. 2020)
 --n-layer N     deeper grid models (default 2)
 --steps N       training steps per run
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import paired_effect

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once (the experiments import torch).
if TYPE_CHECKING:
    from llmlab.normalization import experiments_grid, experiments_kernels, experiments_stats
    from llmlab.utils import Demo


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above, made as this module's globals: `main` calls this
    once the flags are parsed."""
    global experiments_grid, experiments_kernels, experiments_stats, Demo
    from llmlab.normalization import experiments_grid, experiments_kernels, experiments_stats
    from llmlab.utils import Demo


NORMS = ("layernorm", "rmsnorm", "none")
SHAZEER_2020 = "Shazeer 2020, Table 1 (T5, 65k steps): log-perplexity ReLU 1.997, GELU 1.983, SwiGLU 1.944"


def settings(quick: bool) -> dict:
    if quick:
        return dict(n_chars=100_000, vocab_size=512, d_model=32, n_layer=2, n_head=4, block_size=32,
                    batch_size=8, steps=20, lr=3e-3, warmup=4, eval_iters=4, extra_seeds=1,
                    sweep_lrs=[3e-3, 3e-2], sweep_configs=2,
                    kernel_models=[dict(d_model=32, n_layer=2, block_size=32, batch_size=8, steps=4)],
                    op_reps=5)
    return dict(n_chars=400_000, vocab_size=512, d_model=64, n_layer=2, n_head=4, block_size=64,
                batch_size=16, steps=250, lr=3e-3, warmup=25, eval_iters=10, extra_seeds=2,
                sweep_lrs=[3e-3, 1e-2, 3e-2, 1e-1], sweep_configs=4,
                kernel_models=[dict(d_model=64, n_layer=2, block_size=64, batch_size=16, steps=10),
                               dict(d_model=128, n_layer=4, block_size=128, batch_size=16, steps=5)],
                op_reps=20)


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--norm", choices=("all",) + NORMS, default="all",
                        help="train only the grid rows with this norm (default all)")
    parser.add_argument("--lr-scale", type="positive_float", default=1.0,
                        help="break: multiply every learning rate by this factor")
    parser.add_argument("--no-warmup", action="store_true",
                        help="break: no learning-rate warmup (post-norm needs it)")
    parser.add_argument("--n-layer", type="positive_int", default=None,
                        help="layers of the grid's models (default 2)")
    parser.add_argument("--steps", type="positive_int", default=None, help="training steps per run")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="training text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    if not (args.lr_scale > 0 and math.isfinite(args.lr_scale)):
        parser.error(f"--lr-scale must be a positive number, got {args.lr_scale}")
    for name in ("n_layer", "steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return _run(args)  # Demo runs torch on --threads threads (default 1)


def _run(args) -> dict:
    """The lab notebook: the data, every training run, then the six experiments in order (each returns its
    numbers, draws its figure and prints its findings), then the curriculum's claims against them."""
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    cfg["lr"] *= args.lr_scale
    cfg["sweep_lrs"] = [lr * args.lr_scale for lr in cfg["sweep_lrs"]]
    cfg["warmup"] = 0 if args.no_warmup else cfg["warmup"]
    cfg["n_layer"] = args.n_layer or cfg["n_layer"]
    cfg["steps"] = args.steps or cfg["steps"]
    norms = NORMS if args.norm == "all" else (args.norm,)
    results = demo.results
    results["config"] = {k: v for k, v in cfg.items() if k != "kernel_models"} | {"norms": list(norms)}

    # the data, and a baseline that every trained model must beat
    data = demo.timed("data", experiments_grid.load_data, cfg, args.corpus, demo.seed, demo.quick)
    results["data"] = dict(corpus=args.corpus, chars=cfg["n_chars"], vocab_size=data["vocab_size"],
                           train_tokens=len(data["train"]), val_tokens=len(data["val"]),
                           unigram_loss=data["unigram_loss"], uniform_loss=data["uniform_loss"],
                           fail_threshold=data["fail_threshold"])
    demo.say(f"Data: {cfg['n_chars']:,} chars of {args.corpus}, BPE {data['vocab_size']} tokens: "
             f"{len(data['train']):,} train / {len(data['val']):,} val tokens; a context-free unigram model "
             f"scores {data['unigram_loss']:.3f} nats on val, uniform guessing {data['uniform_loss']:.3f}.")
    if demo.quick:
        demo.say(f"Quick mode: {cfg['steps']} steps per run, the models are barely trained (a run fails only "
                 f"if within {experiments_grid.FAIL_MARGIN} of uniform guessing); the training comparisons "
                 "are not evidence.")

    # every training run at once: the grid, the seed-noise re-runs, the learning-rate sweep
    training = demo.timed("training", experiments_grid.run_training, demo, cfg, data, norms)
    grid = training["grid"]
    stats_cell = next(k for k in ("pre-layernorm-gelu", "pre-rmsnorm-gelu", "pre-none-gelu") if k in grid)

    def experiment(name: str, fn, *inputs):
        results[name] = demo.timed(name, fn, demo, *inputs)
        return results[name]

    # 1. what LayerNorm and RMSNorm do to a token's statistics -> norm_statistics.png
    experiment("norm_statistics", experiments_stats.norm_statistics, cfg, data, grid[stats_cell])
    # 2. ReLU, GELU, SiLU and SwiGLU's gate -> activations.png
    experiment("activations", experiments_stats.activation_functions, cfg, data, grid)
    # 3. the grid's training curves -> ablation_curves.png
    curves = experiment("ablation_curves", experiments_grid.ablation_curves, cfg, data, training, norms)
    # 4. the grid's final losses against the seed-to-seed noise -> ablation_grid.png
    experiment("grid", experiments_grid.ablation_grid, cfg, training, curves, norms)
    # 5. how large a learning rate each block survives -> lr_stability.png
    experiment("lr_stability", experiments_grid.lr_stability, cfg, data, training)
    # 6. what the from-scratch formulas cost against fused kernels -> kernels.png
    experiment("kernels", experiments_kernels.kernel_costs, cfg, data)

    # Learn: the curriculum's claims next to this run's numbers
    results["timings_s"] = results.pop("experiment_seconds")  # Demo.timed's seconds, under this lesson's key
    results["key_insights"] = key_insights(demo, results)
    demo.finish()
    return results


# ------------------------------------------------------------------------------------------------
# the curriculum's claims, checked against this run's numbers


def _status(diffs: list[float] | None, quick: bool) -> str:
    """'supported' when a paired difference (negative = the claim's side is better) holds at every seed."""
    if diffs is None:
        return "not measured"
    if quick:
        return "inconclusive"
    outcome = paired_effect(diffs)
    if outcome == "better":
        return "supported"
    if outcome == "worse":
        return "NOT supported on this budget (the opposite holds)"
    return "not shown (within seed noise)" if outcome == "tie" else "inconclusive"


def _norm_claim(results: dict, quick: bool) -> str:
    """Without a norm: worse at the grid's lr? at its own best lr? does it collapse where pre-LN trains?"""
    fmt_lr, sweep_configs = experiments_grid.fmt_lr, experiments_grid.SWEEP_CONFIGS
    grid, sweep = results["grid"], results["lr_stability"]
    noise, at_grid_lr = grid["seed_noise"], grid["no_norm_minus_norm"]["pre"]
    grid_lr = fmt_lr(results["config"]["lr"])
    if quick or not (math.isfinite(at_grid_lr) and math.isfinite(noise)):
        return (f"inconclusive (no norm - normed at lr {grid_lr}: {at_grid_lr:+.3f})"
                + (": quick mode" if quick else ""))
    label, gpt2 = sweep_configs[3][0], sweep_configs[0][0]
    at_best = sweep.get("best_lr_minus_gpt2", {}).get(label, math.nan)
    configs = sweep["configs"]
    collapse = [lr for i, lr in enumerate(sweep["lrs"]) if label in configs and gpt2 in configs
                and configs[label]["failed"][i] and not configs[gpt2]["failed"][i]]
    text = (f"no norm - normed {at_grid_lr:+.3f} nats at lr {grid_lr}; at each one's best lr, no-norm GELU - "
            f"pre-LN GELU {at_best:+.3f} (no-norm's best lr {fmt_lr(configs.get(label, {}).get('best_lr'))})"
            + (f"; no norm fails at lr {', '.join(map(fmt_lr, collapse))} where pre-LN still trains"
               if collapse else ""))
    if at_grid_lr > noise and math.isfinite(at_best) and at_best > noise:
        return "supported: no norm is worse even at its own best lr; " + text
    if at_grid_lr > noise or collapse:
        own = ("better" if at_best < -noise else "as good (within noise)") if math.isfinite(at_best) \
            else "unmeasured"
        return (f"supported only as 'a norm widens the range of learning rates that work': at this depth "
                f"({results['config']['n_layer']} layers) the no-norm model at its own best lr is {own}; "
                + text)
    return "NOT supported on this budget: " + text


def key_insights(demo: Demo, results: dict) -> dict:
    """Each of the curriculum's lesson-10 claims next to the numbers of this run that test it."""
    stats, grid, acts = results["norm_statistics"]["residual stream"], results["grid"], results["activations"]
    noise, quick = grid["seed_noise"], demo.quick
    std_error = max(abs(s - 1) for s in stats["layernorm_std_range"])
    ln_ok = stats["layernorm_max_abs_mean"] < 1e-4 and std_error < 1e-2
    relu_gap = acts["max_abs_gelu_minus_relu"]
    claims = {
        "LayerNorm: normalize to mean=0, std=1 per example":
            f"{'supported' if ln_ok else 'NOT supported'}: max |mean| {stats['layernorm_max_abs_mean']:.1e}, "
            f"std {stats['layernorm_std_range'][0]:.4f}..{stats['layernorm_std_range'][1]:.4f}",
        "RMSNorm: simpler, no centering":
            f"the mean stays (max |mean| {stats['rmsnorm_max_abs_mean']:.2f}); lab LayerNorm takes "
            f"{results['kernels']['layernorm_over_rmsnorm_lab']:.2f}x lab RMSNorm's time (torch's fused "
            f"LayerNorm {results['kernels']['layernorm_over_rmsnorm_torch']:.2f}x torch's RMSNorm); val loss "
            f"RMSNorm - LayerNorm {grid['verdicts']['rmsnorm_vs_layernorm']}",
        "GELU: smooth approximation of ReLU":
            f"max |GELU - ReLU| {relu_gap['value']:.3f} (at x = {relu_gap['at_x']:.2f}), and a continuous "
            f"slope (peak {acts['gelu_max_slope']['value']:.3f}) where ReLU's jumps",
        "SwiGLU: better than standard MLPs":
            f"{_status(grid['swiglu_minus_gelu_by_seed'], quick)}: SwiGLU - GELU at equal parameters after "
            f"{results['config']['steps']} steps: {grid['verdicts']['swiglu_vs_gelu']} ({SHAZEER_2020})",
    }
    spread, failed = grid["spread_working_models"], grid["failed_models"]
    if quick:
        combo = "inconclusive: quick mode, the models are barely trained"
    elif math.isfinite(noise) and noise > 0 and math.isfinite(spread):
        combo = (f"{'supported' if spread > noise or failed else 'NOT supported'}: the working models' final "
                 f"losses span {spread:.3f} nats = {spread / noise:.1f}x the seed noise, and {failed} of "
                 f"{grid['distinct_models']} models failed")
    else:
        combo = f"final losses span {spread:.3f} nats; {failed} models failed; no seed-noise estimate"
    claims["Different combinations affect convergence speed and final performance"] = combo
    claims["Normalization prevents training collapse (Key Learnings)"] = _norm_claim(results, quick)
    demo.say("Key insights of the curriculum, checked against this run:")
    for claim, evidence in claims.items():
        demo.say(f" - {claim}: {evidence}.")
    return claims


if __name__ == "__main__":
    main()
