"""Lesson 11 demo: one small GPT trained as a causal, a masked and a prefix LM on the same tokens, then
each measured at what the others are good at.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--objective all|clm|mlm|prefix] [--mask-rate R] [--no-random-replace] [--causal-mlm]
                   [--steps N] [--corpus stories|python-docs|python-code|PATH]

Experiments (each prints its numbers and draws one figure into outputs/; measurements in experiments.py,
figures in figures.py):
 1. masks.png        the three attention masks on a real sentence, and the tokens each loss is computed on
 2. loss_curves.png  the three objectives trained side by side (same model, same windows, same steps, at
                     3 seeds): each one's held-out loss per token seen and per token predicted
 3. generation.png   held-out next-token loss of each model (the masked LM predicting left to right with a
                     [MASK] appended) and greedy continuations of held-out prompts
 4. encoding.png     linear probes on frozen mean-pooled sentence representations (the story's event type,
                     the gender of the character a sentence is about) and fill-in-the-middle accuracy
 5. mask_rate.png    masked LMs trained at 5-60% masking: masked loss, probes and fill-in vs the rate;
                     80/10/10 vs 100% [MASK] on inputs without [MASK] (the train/inference mismatch)
 6. prefix.png       suffix loss vs prefix length: the prefix read bidirectionally vs causally, and a
                     causal LM
Break flags:
 --objective X        train only objective X (the experiments that need the others are skipped)
 --mask-rate R        the masked LM's masking rate (default 0.15)
 --no-random-replace  the masked LM replaces every selected token with [MASK] (no 10% random / 10% kept)
 --causal-mlm         the masked LM with a causal mask: it can no longer see the right context of a [MASK]
 --steps N            training steps per model
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import claim_mark, paired_effect

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once (the experiments import torch).
if TYPE_CHECKING:
    from llmlab.pretraining_objectives import experiments as ex
    from llmlab.pretraining_objectives import figures
    from llmlab.utils import Demo


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above, made as this module's globals."""
    global ex, figures, Demo
    from llmlab.pretraining_objectives import experiments as ex
    from llmlab.pretraining_objectives import figures
    from llmlab.utils import Demo


WETTIG_2023 = ("Wettig et al. 2023 (EACL), 'Should You Mask 15% in Masked Language Modeling?': 40% masking "
               "beat 15% on GLUE/SQuAD for large (354M-param) models; the optimal rate grows with model size")


def settings(quick: bool) -> dict:
    if quick:
        return dict(n_chars=100_000, vocab_size=512, block_size=32, n_layer=2, n_head=4, d_model=32,
                    pos="rope", batch_size=8, steps=30, lr=3e-3, warmup=3, eval_iters=3, seeds=2, cost_reps=5,
                    mask_rates=[0.15, 0.4],
                    windows=32, next_token_windows=8, probe_sentences=200, prefix_lengths=[0, 8, 16, 24],
                    prompts=2, new_tokens=8)
    return dict(n_chars=1_000_000, vocab_size=1024, block_size=64, n_layer=2, n_head=4, d_model=64,
                pos="rope", batch_size=16, steps=300, lr=3e-3, warmup=30, eval_iters=10, seeds=3,
                cost_reps=30, mask_rates=[0.05, 0.15, 0.3, 0.5], windows=256, next_token_windows=48,
                probe_sentences=1200, prefix_lengths=[0, 4, 8, 16, 32, 48, 60], prompts=3, new_tokens=16)


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--objective", choices=("all", "clm", "mlm", "prefix"), default="all",
                        help="train only this objective (default all)")
    parser.add_argument("--mask-rate", type="unit_interval", default=0.15,
                        help="the masked LM's masking rate, in (0, 1) (default 0.15)")
    parser.add_argument("--no-random-replace", action="store_true",
                        help="break: the masked LM replaces every selected token with [MASK]")
    parser.add_argument("--causal-mlm", action="store_true",
                        help="break: train the masked LM with a causal mask")
    parser.add_argument("--steps", type="positive_int", default=None, help="training steps per model")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="training text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    if not 0.0 < args.mask_rate < 1.0:
        parser.error(f"--mask-rate must be in (0, 1), got {args.mask_rate}")
    return _run(args)


def _run(args) -> dict:
    """The lab notebook: the data, every training run, the six experiments, then the curriculum's claims."""
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    cfg["steps"] = args.steps or cfg["steps"]
    cfg["warmup"] = min(cfg["warmup"], cfg["steps"] // 10)
    results = demo.results
    objectives = ex.OBJECTIVES if args.objective == "all" else (args.objective,)
    seeds = [demo.seed + i for i in range(cfg["seeds"])]
    replace = 1.0 if args.no_random_replace else 0.8
    recipes = {"clm": ex.Recipe("clm"), "prefix": ex.Recipe("prefix"),
               "mlm": ex.Recipe("mlm", args.mask_rate, replace, causal=True if args.causal_mlm else None)}
    results["config"] = dict(cfg, objectives=list(objectives), seeds=seeds, mlm=vars(recipes["mlm"]))

    data = demo.timed("data", ex.load_data, cfg, args.corpus, demo.seed)
    results["data"] = dict(corpus=args.corpus, vocab_size=data["vocab_size"], mask_id=data["mask_id"],
                           train_tokens=len(data["train"]), val_tokens=len(data["val"]),
                           unigram_loss=data["unigram_loss"])
    demo.say(f"Data: {cfg['n_chars']:,} chars of {args.corpus} in lesson 01's BPE ({cfg['vocab_size']} "
             f"tokens) + [MASK] = id {data['mask_id']}: {len(data['train']):,} train / {len(data['val']):,} "
             "val tokens. "
             f"Every model: {cfg['n_layer']} layers, d_model {cfg['d_model']}, {cfg['steps']} steps of "
             f"{cfg['batch_size']} x {cfg['block_size']} tokens, the same windows at the same seed.")
    if demo.quick:
        demo.say("Quick mode: a few dozen steps at 2 seeds; the models are barely trained and no comparison "
                 "below is evidence.")

    # every training run: the objectives at every seed, then the masked-LM variants at the first seed
    runs = demo.timed("train_models", train_all, demo, cfg, data, recipes, objectives, seeds)
    windows = ex.val_windows(data, cfg, cfg["windows"])

    def experiment(name: str, fn, *inputs):
        results[name] = demo.timed(name, fn, demo, cfg, data, *inputs)
        return results[name]

    experiment("masks", figures.masks_figure, recipes["mlm"])
    experiment("training", training_numbers, runs, objectives)
    experiment("generation", generation, runs, objectives, windows)
    experiment("encoding", encoding, runs, objectives, windows)
    if "mlm" in objectives:
        experiment("mask_rate", mask_rate, runs, windows)
    if "prefix" in objectives:
        experiment("prefix", prefix, runs, objectives, windows)
    results["timings_s"] = results.pop("experiment_seconds")
    results["key_insights"] = key_insights(demo, results, objectives)
    demo.finish()
    return results


def train_all(demo: Demo, cfg: dict, data: dict, recipes: dict, objectives, seeds) -> dict:
    """{label: [run per seed]}: the objectives at every seed; the masked LM with the other replacement scheme
    at every seed; at the first seed, the other masking rates and "mlm long", the masked LM trained for as
    many PREDICTED tokens as the causal LM (steps / mask rate: the equal-signal comparison)."""
    from tqdm.auto import tqdm

    mlm = recipes["mlm"]
    other = ex.Recipe("mlm", mlm.mask_rate, 1.0 if mlm.mask_replace_prob < 1 else 0.8, mlm.causal)
    steps = cfg["steps"]
    jobs = [(o, recipes[o], s, steps) for o in objectives for s in seeds]
    if "mlm" in objectives:
        jobs += [("replacement", other, s, steps) for s in seeds]
        jobs += [(f"rate {r:g}", ex.Recipe("mlm", r, mlm.mask_replace_prob, mlm.causal), seeds[0], steps)
                 for r in cfg["mask_rates"] if not math.isclose(r, mlm.mask_rate)]
        long_steps = round(steps * (cfg["block_size"] - 1) / cfg["block_size"] / mlm.mask_rate)
        jobs.append(("mlm long", mlm, seeds[0], long_steps))
    runs: dict = {}
    for label, recipe, seed, n in tqdm(jobs, desc="training runs", leave=False, disable=None):
        run = ex.train_objective(dict(cfg, steps=n), data, recipe, seed=seed, device=demo.device)
        runs.setdefault(label, []).append(run)
    return runs


def _per_seed(runs: list[dict], fn) -> list[float]:
    return [fn(run) for run in runs]


def _summary(values: list[float]) -> dict:
    mean, sd = ex.mean_sd(values)
    return dict(per_seed=values, mean=mean, sd=sd)


def training_numbers(demo: Demo, cfg: dict, data: dict, runs: dict, objectives) -> dict:
    """Experiment 2: each objective's own held-out loss per token seen / predicted, and its cost per step."""
    # the cost of a step, timed round-robin (the objectives in turn, so that a busy machine slows all alike)
    step_ms = ex.step_costs({o: runs[o][0] for o in objectives}, cfg, data, reps=cfg["cost_reps"])
    out = {"step_ms": step_ms}
    for o in objectives:
        out[o] = dict(final_val_loss=_summary(_per_seed(runs[o], lambda r: r["history"].final_val_loss)),
                      predicted_share=runs[o][0]["predicted_share"],
                      tokens_seen=runs[o][0]["history"].tokens_seen)
        n = out[o]
        demo.say(f"  {ex.NAMES[o]:>10}: own held-out loss {n['final_val_loss']['mean']:.3f} nats "
                 f"(sd {n['final_val_loss']['sd']:.3f}) on {100 * n['predicted_share']:.0f}% of the "
                 f"positions; a training step {step_ms[o]:.1f} ms")
    if "clm" in out:
        ratios = {o: step_ms[o] / step_ms["clm"] for o in objectives}
        out["step_time_vs_clm"] = ratios
        equal = max(ratios.values()) <= 1.15 and min(ratios.values()) >= 1 / 1.15
        demo.say("  Time per step vs the causal LM (median of round-robin steps): "
                 + ", ".join(f"{ex.NAMES[o]} {v:.2f}x" for o, v in ratios.items())
                 + (": within 15%, so equal steps are (nearly) equal wall time." if equal else
                    ": NOT equal, so the wall-time comparison below differs from the per-token one."))
    # the same wall-time budget: each objective's own loss after the cheapest objective's training time
    budget = min(cfg["steps"] * step_ms[o] / 1000 for o in objectives)
    out["wall_time_budget_s"] = budget
    for o in objectives:
        out[o]["loss_at_wall_budget"] = _summary([ex.loss_at_time(r["history"], budget, step_ms[o])
                                                  for r in runs[o]])
    demo.say(f"  Own held-out loss after {budget:.1f} s of training each: " + ", ".join(
        f"{ex.NAMES[o]} {out[o]['loss_at_wall_budget']['mean']:.3f}" for o in objectives)
        + " nats. The losses are of different tasks: experiments 3-4 compare the models on common ones.")
    figures.loss_curves_figure(demo, cfg, runs, objectives, out, step_ms)
    return out


def generation(demo: Demo, cfg: dict, data: dict, runs: dict, objectives, windows) -> dict:
    """Experiment 3: held-out next-token loss at every position, and greedy continuations."""
    w = windows[: cfg["next_token_windows"]]
    positions = list(range(1, cfg["block_size"]))
    losses = {o: _summary(_per_seed(runs[o], lambda r: ex.next_token_loss(r, w, data["mask_id"], positions)))
              for o in objectives}
    prompts = figures.held_out_prompts(data["tokenizer"], cfg["prompts"])
    continuations = {o: [data["tokenizer"].decode(ex.continue_greedy(runs[o][0], p, cfg["new_tokens"],
                                                                     data["mask_id"])) for p in prompts]
                     for o in objectives}
    out = dict(next_token_loss=losses, prompts=[data["tokenizer"].decode(p) for p in prompts],
               continuations=continuations, unigram_loss=data["unigram_loss"])
    demo.say(f"  (a unigram model, no context: {data['unigram_loss']:.3f} nats)")
    for o in objectives:
        demo.say(f"  {ex.NAMES[o]:>10}: held-out next-token loss {losses[o]['mean']:.3f} nats "
                 f"(per seed {', '.join(f'{v:.3f}' for v in losses[o]['per_seed'])})")
    for i, prompt in enumerate(out["prompts"]):
        demo.say(f"  prompt {prompt!r}")
        for o in objectives:
            demo.say(f"    {ex.NAMES[o]:>10} -> {continuations[o][i]!r}")
    if "clm" in objectives and "mlm" in objectives:
        out["mlm_minus_clm"] = [m - c for m, c in zip(losses["mlm"]["per_seed"], losses["clm"]["per_seed"])]
    figures.generation_figure(demo, cfg, out, objectives)
    return out


def encoding(demo: Demo, cfg: dict, data: dict, runs: dict, objectives, windows) -> dict:
    """Experiment 4: linear probes on frozen sentence representations, and fill-in-the-middle accuracy."""
    tasks = ex.probe_sentences(data["tokenizer"], cfg["probe_sentences"])
    chance = {t: ex.majority_share(items) for t, items in tasks.items()}
    untrained = ex.untrained_run(cfg, data)
    out = dict(chance=chance, untrained=ex.probe_all(untrained, tasks, cfg["block_size"]), probes={},
               fill_in={})
    for o in objectives:
        per_seed = [ex.remember(r, "probes", ex.probe_all, r, tasks, cfg["block_size"]) for r in runs[o]]
        out["probes"][o] = {t: _summary([p[t] for p in per_seed]) for t in tasks}
        fills = [ex.remember(r, "fill_in", ex.fill_in, r, windows, data["mask_id"]) for r in runs[o]]
        out["fill_in"][o] = {k: _summary([f[k] for f in fills]) for k in fills[0]}
    probes, fill = out["probes"], out["fill_in"]
    for t in tasks:
        demo.say(f"  probe '{t}' (chance {chance[t]:.3f}, untrained model {out['untrained'][t]:.3f}): "
                 + ", ".join(f"{ex.NAMES[o]} {probes[o][t]['mean']:.3f} (sd {probes[o][t]['sd']:.3f})"
                             for o in objectives))
    demo.say("  fill in the middle token: " + ", ".join(
        f"{ex.NAMES[o]} {fill[o]['accuracy']['mean']:.3f}" for o in objectives)
        + (f" (the masked LM with the right side hidden: {fill['mlm']['left_only_accuracy']['mean']:.3f})"
           if "mlm" in objectives else ""))
    if "mlm long" in runs:  # the masked LM given as many predicted tokens as the causal LM
        long = runs["mlm long"][0]
        fill_long = ex.remember(long, "fill_in", ex.fill_in, long, windows, data["mask_id"])
        probes_long = ex.remember(long, "probes", ex.probe_all, long, tasks, cfg["block_size"])
        out["mlm_long"] = dict(steps=len(long["history"].steps), **probes_long, fill_in=fill_long["accuracy"])
        demo.say(f"  masked LM trained {out['mlm_long']['steps']} steps (as many predicted tokens as the "
                 "causal LM's run, 1 seed): "
                 + ", ".join(f"{t} {out['mlm_long'][t]:.3f}" for t in list(tasks) + ["fill_in"]))
    if "clm" in objectives and "mlm" in objectives:
        def diff(a: dict, b: dict) -> list[float]:
            return [x - y for x, y in zip(a["per_seed"], b["per_seed"])]

        out["mlm_minus_clm"] = {t: diff(probes["mlm"][t], probes["clm"][t]) for t in tasks}
        out["mlm_minus_clm"]["fill_in"] = diff(fill["mlm"]["accuracy"], fill["clm"]["accuracy"])
    figures.encoding_figure(demo, cfg, out, objectives)
    return out


def mask_rate(demo: Demo, cfg: dict, data: dict, runs: dict, windows) -> dict:
    """Experiment 5: the masking rate (first seed; the main rate at every seed gives the noise), and
    80/10/10 vs 100% [MASK] on inputs without [MASK]."""
    tasks = ex.probe_sentences(data["tokenizer"], cfg["probe_sentences"])

    def measure(run: dict) -> dict:
        probes = ex.remember(run, "probes", ex.probe_all, run, tasks, cfg["block_size"])
        fill = ex.remember(run, "fill_in", ex.fill_in, run, windows, data["mask_id"])
        return dict(masked_loss_15=ex.masked_loss_at(run, windows, data), **probes, fill_in=fill["accuracy"],
                    copy=ex.copy_accuracy(run, windows))

    main_runs = [measure(r) for r in runs["mlm"]]
    rate_runs = {runs["mlm"][0]["recipe"].mask_rate: main_runs[0]}
    rate_runs |= {runs[k][0]["recipe"].mask_rate: measure(runs[k][0]) for k in runs if k.startswith("rate ")}
    rates = sorted(rate_runs)
    metrics = list(main_runs[0])
    out = dict(rates=rates, by_rate={m: [rate_runs[r][m] for r in rates] for m in metrics},
               noise={m: max(v[m] for v in main_runs) - min(v[m] for v in main_runs) for m in metrics})
    main_recipe, other = runs["mlm"][0]["recipe"], runs["replacement"][0]["recipe"]
    other_runs = [measure(r) for r in runs["replacement"]]
    labels = {main_recipe.mask_replace_prob: main_runs, other.mask_replace_prob: other_runs}
    out["replacement"] = {("80/10/10" if p < 1 else "100% [MASK]"):
                          {m: _summary([v[m] for v in rs]) for m in metrics} for p, rs in labels.items()}
    best = {m: rates[(min if m == "masked_loss_15" else max)(range(len(rates)),
                                                             key=lambda i, m=m: out["by_rate"][m][i])]
            for m in metrics if m != "copy"}
    out["best_rate"] = best
    for m in metrics:
        by_rate = ", ".join(f"{r:.0%} {v:.3f}" for r, v in zip(rates, out["by_rate"][m]))
        demo.say(f"  {m:>15} by rate: {by_rate}"
                 + f"  (seed spread at {main_recipe.mask_rate:.0%}: {out['noise'][m]:.3f})")
    for label, values in out["replacement"].items():
        demo.say(f"  {label:>12}: copy accuracy on clean input {values['copy']['mean']:.3f}, fill-in "
                 f"{values['fill_in']['mean']:.3f}, probes "
                 + ", ".join(f"{t} {values[t]['mean']:.3f}" for t in tasks))
    figures.mask_rate_figure(demo, cfg, out, list(tasks))
    return out


def prefix(demo: Demo, cfg: dict, data: dict, runs: dict, objectives, windows) -> dict:
    """Experiment 6: suffix loss vs prefix length, the prefix read bidirectionally or causally; the CLM."""
    lengths = cfg["prefix_lengths"]
    sweeps = [ex.prefix_sweep(r, windows, lengths) for r in runs["prefix"]]
    out = dict(prefix_lengths=lengths,
               bidirectional=[[s["bidirectional"][i] for s in sweeps] for i in range(len(lengths))],
               causal_mask=[[s["causal"][i] for s in sweeps] for i in range(len(lengths))])
    if "clm" in objectives:
        clm = [ex.prefix_sweep(r, windows, lengths)["causal"] for r in runs["clm"]]
        out["clm"] = [[c[i] for c in clm] for i in range(len(lengths))]
    out["gain"] = [[c - b for b, c in zip(bs, cs)]
                   for bs, cs in zip(out["bidirectional"], out["causal_mask"])]

    def mean(key: str, i: int) -> float:
        return ex.mean_sd(out[key][i])[0]

    for i, p in enumerate(lengths):
        demo.say(f"  prefix {p:>2}: suffix loss bidirectional {mean('bidirectional', i):.3f}, causal mask "
                 f"{mean('causal_mask', i):.3f} (gain {mean('gain', i):+.3f})"
                 + (f", causal LM {mean('clm', i):.3f}" if "clm" in out else ""))
    figures.prefix_figure(demo, cfg, out)
    return out


# ------------------------------------------------------------------------------------------------
# the curriculum's claims, checked against this run's numbers


def _paired(diffs, quick: bool, lower_is_better: bool) -> str:
    if diffs is None or quick or len(diffs) < 2:
        return "inconclusive"
    return paired_effect(diffs, lower_is_better=lower_is_better)


def key_insights(demo: Demo, results: dict, objectives) -> dict:
    """Each of the curriculum's lesson-11 claims next to the numbers of this run that test it."""
    out, quick = {}, demo.quick
    demo.say("\n== The curriculum's claims, measured" + (" (quick mode: nothing decided)" if quick else ""))
    for o, text in (("clm", "Causal LM: predict the next token (GPT-style)"),
                    ("mlm", "Masked LM: predict masked tokens bidirectionally (BERT-style)"),
                    ("prefix", "Prefix LM: see the prefix, predict the suffix (hybrid)")):
        if o in objectives:
            share = results["training"][o]["predicted_share"]
            out[o] = dict(claim=text, mark="definition", note=f"masks.png; loss on {share:.0%} of positions")
            demo.say(f"  [definition] {text}: masks.png (loss on {share:.0%} of the positions)")
    if "clm" in objectives and "mlm" in objectives:
        # masked LM minus causal LM next-token loss per seed: "worse" = the causal LM predicts better
        gen = _paired(results["generation"]["mlm_minus_clm"], quick, lower_is_better=True)
        diffs = results["encoding"]["mlm_minus_clm"]
        enc = {t: _paired(d, quick, lower_is_better=False) for t, d in diffs.items()}
        generation_ok = {"worse": True, "better": False}.get(gen)
        encoding_wins = [t for t, v in enc.items() if v == "better"]
        encoding_ok = None if quick else (True if len(encoding_wins) == len(enc) else
                                          "partly" if encoding_wins else False)
        mark = None if quick else (True if generation_ok and encoding_ok is True else
                                   "partly" if generation_ok or encoding_ok else False)
        g = results["generation"]["next_token_loss"]
        note = (f"next-token loss causal {g['clm']['mean']:.3f} vs masked {g['mlm']['mean']:.3f} nats "
                f"(masked LM vs causal LM: {gen}); masked - causal accuracy per task: "
                + ", ".join(f"{t} {ex.mean_sd(d)[0]:+.3f} ({enc[t]})" for t, d in diffs.items()))
        long = results["encoding"].get("mlm_long")
        if long:
            clm = {t: results["encoding"]["probes"]["clm"][t]["per_seed"] for t in diffs if t != "fill_in"}
            clm["fill_in"] = results["encoding"]["fill_in"]["clm"]["accuracy"]["per_seed"]
            beats = [t for t in clm if long[t] > max(clm[t])]
            scores = ", ".join(f"{t} {long[t]:.3f} (causal LM seeds {min(clm[t]):.3f}-{max(clm[t]):.3f})"
                               for t in clm)
            note += (f". Given as many predicted tokens as the causal LM ({long['steps']} steps, 1 seed) the "
                     f"masked LM scores {scores}"
                     + f": above every causal-LM seed on {', '.join(beats) if beats else 'none'}")
        out["generation_vs_encoding"] = dict(claim="Causal: good for generation, MLM: good for encoding",
                                             mark=claim_mark(mark), generation=gen, encoding=enc, note=note)
        demo.say(f"  [{claim_mark(mark)}] Causal: good for generation, MLM: good for encoding — {note}")
    if "mask_rate" in results:
        mr = results["mask_rate"]
        moves = {m: max(v) - min(v) for m, v in mr["by_rate"].items() if m != "copy"}
        matters = [m for m, d in moves.items() if d > 2 * mr["noise"][m]]
        mark = None if quick else (True if matters else False)
        note = ("range across rates vs 2x seed spread: " + ", ".join(
            f"{m} {moves[m]:.3f} vs {2 * mr['noise'][m]:.3f}" for m in moves)
            + "; best rate: " + ", ".join(f"{m} {r:.0%}" for m, r in mr["best_rate"].items())
            + f". Compare {WETTIG_2023}.")
        out["mask_rate"] = dict(claim="Masking rate (~15%) impacts learning efficiency",
                                mark=claim_mark(mark), rate_matters_for=matters, note=note)
        demo.say(f"  [{claim_mark(mark)}] Masking rate (~15%) impacts learning efficiency — {note}")
    return out


if __name__ == "__main__":
    main()
