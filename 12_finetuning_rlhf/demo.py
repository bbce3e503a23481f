"""Lesson 12 demo: InstructGPT's pipeline on the lab GPT — supervised finetuning in three formats, LoRA vs
full finetuning, a reward model from preferences, PPO with a KL penalty, and DPO — on questions whose
answers the story generator fixes, so that every accuracy and "true quality" is measured against the truth.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--no-prompt-mask] [--kl-coef C] [--beta B] [--pad-is-eos]

Experiments (each prints its numbers and draws one figure into outputs/; measurements in experiments.py,
figures in figures.py, data in data.py):
 1. sft_formats.png   SFT on the plain / qa / instruction formats (2 seeds): held-out loss per step and
                      exact-match accuracy on held-in and held-out task families
 2. lora.png          full finetuning vs LoRA at ranks 1, 4, 16: accuracy vs trainable parameters, ms/step
 3. reward_model.png  a reward model (the SFT model + a scalar head): pairwise accuracy on held-out pairs,
                      and its score vs the true quality of SFT samples
 4. ppo.png           PPO at kl_coef 0, 0.1, 1: reward, true quality, KL (k1 and k3) and diversity
 5. dpo_vs_ppo.png    DPO on the same preferences: chosen / rejected log-probs, margin; accuracy vs KL
 6. (printed)         greedy answers of the base, SFT, PPO and DPO models to the same prompts
Break flags:
 --no-prompt-mask  SFT scores the prompt tokens too (the loss is no longer only the answer's)
 --kl-coef C       PPO only at this KL coefficient (default: the sweep 0, 0.1, 1)
 --beta B          DPO's beta (default 0.1; small = far from the reference)
 --pad-is-eos      pad with the EOS id and mask every pad-id label: the EOS is never learned
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import claim_mark, paired_effect, verdict_sentence

if TYPE_CHECKING:
    from llmlab.finetuning_rlhf import data as D
    from llmlab.finetuning_rlhf import experiments as ex
    from llmlab.finetuning_rlhf import figures
    from llmlab.utils import Demo


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above, made as this module's globals."""
    global D, ex, figures, Demo
    from llmlab.finetuning_rlhf import data as D
    from llmlab.finetuning_rlhf import experiments as ex
    from llmlab.finetuning_rlhf import figures
    from llmlab.utils import Demo


OUYANG_2022 = ("Ouyang et al. 2022 (InstructGPT): labelers preferred the 1.3B PPO-ptx model's outputs to the "
               "175B GPT-3's")


def settings(quick: bool) -> dict:
    if quick:
        return dict(n_train=24, n_test=4, seeds=1, sft_steps=6, batch_size=8, eval_iters=1, sft_lr=1e-3,
                    lora_lr=3e-3, ranks=[1, 4], cost_reps=2, rm_steps=4, rm_lr=1e-4, ppo_iters=2, rollouts=8,
                    minibatch=8, ppo_epochs=1, ppo_lr=1e-4, eval_every=2, kl_coefs=[0.0, 1.0], dpo_steps=3,
                    dpo_lr=1e-4, dpo_eval_every=3, new_tokens=5, samples=2, rm_samples=8)
    return dict(n_train=120, n_test=30, seeds=2, sft_steps=100, batch_size=16, eval_iters=2, sft_lr=1e-3,
                lora_lr=3e-3, ranks=[1, 4, 16], cost_reps=10, rm_steps=50, rm_lr=1e-4, ppo_iters=15,
                rollouts=32, minibatch=16, ppo_epochs=2, ppo_lr=1e-4, eval_every=5, kl_coefs=[0.0, 0.1, 1.0],
                dpo_steps=45, dpo_lr=1e-4, dpo_eval_every=15, new_tokens=6, samples=3, rm_samples=96)


def main(argv: list[str] | None = None) -> dict:
    parser = demo_parser(__doc__)
    parser.add_argument("--no-prompt-mask", action="store_true", help="break: SFT scores the prompt too")
    parser.add_argument("--kl-coef", type="nonneg_float", default=None,
                        help="PPO only at this KL coefficient (default: the sweep 0, 0.1, 1)")
    parser.add_argument("--beta", type="positive_float", default=0.1, help="DPO's beta (default 0.1)")
    parser.add_argument("--pad-is-eos", action="store_true",
                        help="break: pad with the EOS id and mask every pad-id label (EOS never learned)")
    return _run(parser.parse_args(argv))


def _run(args) -> dict:
    load_libraries()
    from llmlab.transformer_block.pretrained import lab_model
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    if args.kl_coef is not None:
        cfg["kl_coefs"] = [args.kl_coef]
    results = demo.results
    results["config"] = dict(cfg, beta=args.beta, pad_is_eos=args.pad_is_eos, no_mask=args.no_prompt_mask)
    lab = demo.timed("lab_model", lab_model, "gpt2", quick=demo.quick, device=demo.device, progress=False)
    tok, s = lab.tokenizer, demo.seed
    eos = tok.encode(D.EOS_TEXT)[0]
    data = dict(train=D.make_examples(cfg["n_train"], s + 1, D.HELD_IN),
                test=D.make_examples(cfg["n_test"], s + 2),
                pref_train=D.make_preferences(D.make_examples(cfg["n_train"], s + 3, D.HELD_IN)),
                pref_test=D.make_preferences(D.make_examples(cfg["n_test"], s + 4, D.HELD_IN)))
    data["test_in"] = [e for e in data["test"] if e.family in D.HELD_IN]
    demo.say(f"Data: {len(data['train'])} training questions ({', '.join(D.HELD_IN)}), {len(data['test'])} "
             f"test questions (+ held-out families {', '.join(D.HELD_OUT)}), {len(data['pref_train'])} / "
             f"{len(data['pref_test'])} preference pairs; EOS = {D.EOS_TEXT!r} (id {eos}). Model: the lab "
             f"GPT ({sum(p.numel() for p in lab.model.parameters()):,} parameters, pretrained on stories).")
    if demo.quick:
        demo.say("Quick mode: a few steps of everything at 1 seed; no comparison below is evidence.")
    ctx = dict(demo=demo, cfg=cfg, lab=lab, tok=tok, eos=eos, data=data, args=args)
    results["sft"] = demo.timed("sft", sft_experiment, ctx)
    results["lora"] = demo.timed("lora", lora_experiment, ctx)
    results["reward"] = demo.timed("reward", reward_experiment, ctx)
    results["ppo"] = demo.timed("ppo", ppo_experiment, ctx)
    results["dpo"] = demo.timed("dpo", dpo_experiment, ctx)
    results["samples"] = samples(ctx)
    results["timings_s"] = results.pop("experiment_seconds")
    results["key_insights"] = key_insights(demo, results)
    results["cpu_seconds"] = round(time.process_time(), 1)
    demo.say(f"CPU time of this process: {results['cpu_seconds']} s")
    demo.finish()
    return results


def _drop_share(hist) -> float:
    """The share of the held-out loss drop (step 0 to the end) reached by a quarter of the steps."""
    steps, loss = hist.eval_steps, hist.val_loss
    at = max(i for i, st in enumerate(steps) if st <= steps[-1] / 4)
    total = loss[0] - loss[-1]
    return (loss[0] - loss[at]) / total if total > 0 else float("nan")


def _summary(values: list[float]) -> dict:
    mean = sum(values) / len(values)
    return dict(per_seed=values, mean=mean, spread=max(values) - min(values))


def sft_experiment(ctx: dict) -> dict:
    """Experiment 1: SFT on each format at every seed; accuracy on held-in and held-out families."""
    demo, cfg, tok, eos, data, args = (ctx[k] for k in ("demo", "cfg", "tok", "eos", "data", "args"))
    seeds = [demo.seed + i for i in range(cfg["seeds"])]
    base = ex.evaluate(ctx["lab"].model, tok, data["test"], "qa", eos, cfg["new_tokens"])
    out = dict(base=dict(held_in=ex.family_mean(base["accuracy"], D.HELD_IN),
                         held_out=ex.family_mean(base["accuracy"], D.HELD_OUT)), formats={})
    ctx["models"] = {"base": ctx["lab"].model}
    for fmt in D.FORMATS:
        pairs, val = ex.encode_pairs(tok, data["train"], fmt), ex.encode_pairs(tok, data["test_in"], fmt)
        runs = []
        for seed in seeds:
            model = copy.deepcopy(ctx["lab"].model)
            hist, initial = ex.finetune(model, pairs, val, cfg, eos_id=eos, seed=seed, device=demo.device,
                               lr=cfg["sft_lr"],
                               pad_is_eos=args.pad_is_eos, prompt_mask=not args.no_prompt_mask, desc=fmt)
            hist.val_loss.insert(0, initial)
            hist.eval_steps.insert(0, 0)
            runs.append((hist, ex.evaluate(model, tok, data["test"], fmt, eos, cfg["new_tokens"])))
            ctx["models"].setdefault(f"sft {fmt}", model)
        accs = [r[1]["accuracy"] for r in runs]
        out["formats"][fmt] = dict(
            eval_steps=runs[0][0].eval_steps, val_curves=[h.val_loss for h, _ in runs],
            final_val_loss=_summary([h.val_loss[-1] for h, _ in runs]),
            drop_at_quarter=_summary([_drop_share(h) for h, _ in runs]),
            held_in=_summary([ex.family_mean(a, D.HELD_IN) for a in accs]),
            held_out=_summary([ex.family_mean(a, D.HELD_OUT) for a in accs]),
            by_family={f: _summary([a[f] for a in accs]) for f in D.FAMILIES},
            stop_rate=_summary([r[1]["stop_rate"] for r in runs]))
        o = out["formats"][fmt]
        demo.say(f"  {fmt:>11}: held-in accuracy {o['held_in']['mean']:.3f} (seeds "
                 f"{', '.join(f'{v:.3f}' for v in o['held_in']['per_seed'])}), "
                 f"held-out {o['held_out']['mean']:.3f}"
                 f", stops (emits EOS) {o['stop_rate']['mean']:.2f}, held-out loss "
                 f"{o['val_curves'][0][0]:.3f} -> {o['final_val_loss']['mean']:.3f} nats/token "
                 f"({o['drop_at_quarter']['mean']:.0%} of the drop "
                 "by a quarter of the steps)")
    demo.say(f"  base model (no SFT, qa prompts): held-in {out['base']['held_in']:.3f}, held-out "
             f"{out['base']['held_out']:.3f}")
    f = out["formats"]
    out["qa_minus_plain"] = [a + b - c - d for a, b, c, d in zip(
        f["qa"]["held_in"]["per_seed"], f["qa"]["held_out"]["per_seed"],
        f["plain"]["held_in"]["per_seed"], f["plain"]["held_out"]["per_seed"])]
    out["instruction_minus_plain_held_out"] = [a - b for a, b in zip(f["instruction"]["held_out"]["per_seed"],
                                                                     f["plain"]["held_out"]["per_seed"])]
    figures.sft_figure(demo, out, "SFT held-in accuracy " + ", ".join(
        f"{k} {f[k]['held_in']['mean']:.2f}" for k in f) + f" ({len(seeds)} seeds); held-out families "
        f"{max(f[k]['held_out']['mean'] for k in f):.2f} at best")
    return out


def lora_experiment(ctx: dict) -> dict:
    """Experiment 2: LoRA at several ranks vs the full finetuning of experiment 1 (instruction format)."""
    demo, cfg, tok, eos, data, args = (ctx[k] for k in ("demo", "cfg", "tok", "eos", "data", "args"))
    pairs = ex.encode_pairs(tok, data["train"], "instruction")
    val = ex.encode_pairs(tok, data["test_in"], "instruction")
    full = ctx["models"]["sft instruction"]
    sft = demo.results["sft"]["formats"]["instruction"]
    runs = {"full": dict(trainable=ex.trainable(full), held_in=sft["held_in"]["per_seed"][0])}
    models = {"full": copy.deepcopy(ctx["lab"].model)}
    for r in cfg["ranks"]:
        model = ex.lora_model(ctx["lab"].model, r)
        ex.finetune(model, pairs, val, cfg, eos_id=eos, seed=demo.seed, device=demo.device, lr=cfg["lora_lr"],
                    pad_is_eos=args.pad_is_eos, prompt_mask=not args.no_prompt_mask, desc=f"lora {r}")
        acc = ex.evaluate(model, tok, data["test"], "instruction", eos, cfg["new_tokens"])["accuracy"]
        runs[f"LoRA r={r}"] = dict(trainable=ex.trainable(model), held_in=ex.family_mean(acc, D.HELD_IN))
        models[f"LoRA r={r}"] = model
    step_ms = ex.step_times(models, pairs, cfg, eos, cfg["cost_reps"])
    out = dict(runs=runs, step_ms=step_ms, full_seed_spread=sft["held_in"]["spread"],
               step_ratio={k: v / step_ms["full"] for k, v in step_ms.items()})
    for k, v in runs.items():
        demo.say(f"  {k:>10}: {v['trainable']:>8,} trainable parameters, held-in accuracy {v['held_in']:.3f},"
                 f" a step {step_ms[k]:.1f} ms ({out['step_ratio'][k]:.2f}x full)")
    gap = runs["full"]["held_in"] - min(v["held_in"] for v in runs.values())
    figures.lora_figure(demo, out, f"LoRA vs full finetuning: largest accuracy gap {gap:.2f} (full FT's seed "
                        f"spread {out['full_seed_spread']:.2f}); steps {min(out['step_ratio'].values()):.2f}-"
                        f"{max(out['step_ratio'].values()):.2f}x full's time")
    return out


def reward_experiment(ctx: dict) -> dict:
    """Experiment 3: a reward model trained on the preference pairs; held-out accuracy; score vs quality."""
    demo, cfg, tok, eos, data = (ctx[k] for k in ("demo", "cfg", "tok", "eos", "data"))
    sft = ctx["models"]["sft qa"]
    rm, losses = ex.train_reward_model(sft, tok, data["pref_train"], cfg, eos, demo.seed)
    ctx["rm"] = rm
    held_out = ex.reward_accuracy(rm, tok, data["pref_test"], eos)
    train_acc = ex.reward_accuracy(rm, tok, data["pref_train"][:64], eos)
    exs = (data["test_in"] * 8)[: cfg["rm_samples"]]
    scores, quality = ex.score_samples(sft, rm, tok, exs, cfg["new_tokens"], eos, demo.seed)
    out = dict(losses=losses, held_out=held_out, train_accuracy=train_acc["accuracy"],
               n_held_out=len(data["pref_test"]),
               samples=dict(reward=scores, quality=quality, spearman=ex.spearman(quality, scores)))
    out["chance_band"] = 0.5 + 2 * (0.25 / len(data["pref_test"])) ** 0.5
    demo.say(f"  pairwise accuracy: held-out {held_out['accuracy']:.3f} ("
             + ", ".join(f"{k} {v:.3f}" for k, v in held_out["by_kind"].items())
             + f"), training pairs {train_acc['accuracy']:.3f}; chance + 2 s.e. = {out['chance_band']:.3f}")
    demo.say(f"  reward vs true quality of {len(exs)} SFT samples: Spearman {out['samples']['spearman']:.3f}")
    figures.reward_figure(demo, out, f"Reward model: {held_out['accuracy']:.2f} held-out pairwise accuracy; "
                          f"Spearman {out['samples']['spearman']:.2f} with true quality")
    return out


def _first_last(values: list[float], k: int = 5) -> tuple[float, float, float]:
    """Mean of the first and the last k values, and 2 standard errors of their difference (the noise
    of iteration-to-iteration sampling; nan with fewer than 2 values on a side)."""
    k = max(1, min(k, len(values) // 2 or 1))
    first, last = values[:k], values[-k:]
    noise = 2 * ((statistics.variance(first) + statistics.variance(last)) / k) ** 0.5 if k > 1 else math.nan
    return sum(first) / k, sum(last) / k, noise


def ppo_experiment(ctx: dict) -> dict:
    """Experiment 4: PPO against the reward model at each kl_coef (1 seed)."""
    demo, cfg, tok, eos, data = (ctx[k] for k in ("demo", "cfg", "tok", "eos", "data"))
    sft = ctx["models"]["sft qa"]
    sft_eval = ex.evaluate(sft, tok, data["test_in"], "qa", eos, cfg["new_tokens"])
    out = dict(sft_accuracy=ex.family_mean(sft_eval["accuracy"], D.HELD_IN), runs={})
    for c in cfg["kl_coefs"]:
        run = ex.ppo_run(sft, ctx["rm"], tok, data["train"], data["test_in"], cfg, eos, kl_coef=c,
                         seed=demo.seed)
        ctx["models"][f"ppo {c:g}"] = run.pop("policy")
        final = run.pop("final")
        run["final_accuracy"] = ex.family_mean(final["accuracy"], D.HELD_IN)
        (s0, s1, sn), (q0, q1, qn) = _first_last(run["score"]), _first_last(run["quality"])
        run["change"] = dict(score=s1 - s0, score_noise=sn, quality=q1 - q0, quality_noise=qn)
        # reward hacking: the reward rises and the true quality falls, each beyond its noise
        run["hacking"] = bool(s1 - s0 > sn and q0 - q1 > qn)
        run["kl_last"] = _first_last(run["k3"])[1]  # k3 per response, mean of the last iterations
        out["runs"][f"{c:g}"] = run
        demo.say(f"  kl_coef {c:<4g}: reward {s0:+.2f} -> {s1:+.2f} (noise {sn:.2f}), true quality "
                 f"{q0:.2f} -> "
                 f"{q1:.2f} (noise {qn:.2f}), "
                 f"KL k3 {run['k3'][-1]:.2f} / k1 {run['k1'][-1]:.2f} nats "
                 f"(k1 < 0 on {max(run['k1_negative']):.0%} of "
                 f"samples at worst), diversity {run['diversity'][-1]:.2f}; greedy accuracy "
                 f"{out['sft_accuracy']:.3f} (SFT) -> {run['final_accuracy']:.3f}"
                 + ("  <- reward up, true quality down beyond the noise: reward hacking" if run["hacking"]
                    else "  (no noise estimate)" if math.isnan(sn) else "  (no reward hacking beyond noise)"))
    hacked = [k for k, r in out["runs"].items() if r["hacking"]]
    figures.ppo_figure(demo, out, "PPO: greedy accuracy " + ", ".join(
        f"{r['final_accuracy']:.2f}" for r in out["runs"].values()) + f" (SFT {out['sft_accuracy']:.2f}) at "
        f"kl_coef {', '.join(out['runs'])}; "
        + (f"reward hacking beyond the noise at kl_coef {', '.join(hacked)}" if hacked
           else "no reward hacking beyond the noise"))
    return out


def dpo_experiment(ctx: dict) -> dict:
    """Experiment 5: DPO on the same preference pairs; accuracy and KL vs PPO's at matched KL."""
    demo, cfg, tok, eos, data, args = (ctx[k] for k in ("demo", "cfg", "tok", "eos", "data", "args"))
    sft = ctx["models"]["sft qa"]
    run = ex.dpo_run(sft, tok, data["pref_train"], data["test_in"], cfg, eos, beta=args.beta, seed=demo.seed)
    ctx["models"]["dpo"] = run.pop("policy")
    final = run.pop("final")
    run["beta"] = args.beta
    run["final_accuracy"] = ex.family_mean(final["accuracy"], D.HELD_IN)
    kl = run["eval_kl"][-1]
    ppo = demo.results["ppo"]
    matched = {}
    for k, r in ppo["runs"].items():  # PPO's accuracy at DPO's KL, interpolated along its checkpoints
        xs, ys = [0.0] + r["eval_kl"], [ppo["sft_accuracy"]] + r["eval_accuracy"]
        pts = sorted(zip(xs, ys))
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if x0 <= kl <= x1 and x1 > x0:
                matched[k] = y0 + (y1 - y0) * (kl - x0) / (x1 - x0)
                break
    run["ppo_accuracy_at_dpo_kl"] = matched
    n = len(data["test_in"])  # 2 binomial standard errors of a difference of two accuracies on n prompts
    acc = run["eval_accuracy"][-1]
    run["vs_ppo"] = {k: verdict_sentence("DPO", acc, f"PPO kl_coef {k}", v, lower_is_better=False, unit="",
                                         noise=2 * ((acc * (1 - acc) + v * (1 - v)) / n) ** 0.5)
                     for k, v in matched.items()}
    (c0, c1, cn), (r0, r1, rn) = _first_last(run["chosen"]), _first_last(run["rejected"])
    run["first_last"] = dict(chosen=[c0, c1, cn], rejected=[r0, r1, rn], margin=_first_last(run["margin"]))
    demo.say(f"  DPO beta {args.beta:g} (means of the first / last 5 batches): log p(chosen) {c0:.2f} -> "
             f"{c1:.2f} (noise {cn:.2f}), log p(rejected) {r0:.2f} -> {r1:.2f} (noise {rn:.2f}), margin "
             f"{run['first_last']['margin'][1]:.2f}; greedy accuracy {ppo['sft_accuracy']:.3f} (SFT) -> "
             f"{run['eval_accuracy'][-1]:.3f} at KL {kl:.2f} nats; PPO at the same KL: "
             + (", ".join(f"kl_coef {k} {v:.3f}" for k, v in matched.items()) or "no PPO run reached it"))
    for sentence in run["vs_ppo"].values():
        demo.say(f"    {sentence} (1 seed; noise = 2 binomial s.e. of the difference)")
    moves = {k: ("falls" if b - a < -n else "rises" if b - a > n else "no measurable change")
             for k, (a, b, n) in (("chosen", (c0, c1, cn)), ("rejected", (r0, r1, rn)))}
    run["moves"] = moves
    figures.dpo_figure(demo, run, ppo, f"DPO: log p(chosen) {c0:.1f} -> {c1:.1f} ({moves['chosen']}), "
                       f"log p(rejected) {r0:.1f} -> {r1:.1f} ({moves['rejected']}); accuracy "
                       f"{run['eval_accuracy'][-1]:.2f} at KL {kl:.2f}")
    return run


def samples(ctx: dict) -> dict:
    """Experiment 6: greedy answers of every stage's model to the same held-out prompts."""
    demo, cfg, tok, eos, data = (ctx[k] for k in ("demo", "cfg", "tok", "eos", "data"))
    exs = data["test"][5: 5 + cfg["samples"]]  # one of each family (the test set interleaves them)
    names = ["base", "sft qa"] + [k for k in ctx["models"] if k.startswith("ppo")] + ["dpo"]
    out = {}
    for e in exs:
        prompt = D.render(e, "qa")[0]
        demo.say(f"  prompt {prompt!r} (answer {e.answer!r})")
        out[prompt] = {n: ex.evaluate(ctx["models"][n], tok, [e], "qa", eos, cfg["new_tokens"])["texts"][0]
                       for n in names}
        for n, text in out[prompt].items():
            demo.say(f"    {n:>9} -> {text!r}")
    return out


def key_insights(demo: Demo, results: dict) -> dict:
    """Each of the curriculum's lesson-12 claims next to the numbers of this run that test it."""
    out, quick = {}, demo.quick
    demo.say("\n== The curriculum's claims, measured" + (" (quick mode: nothing decided)" if quick else ""))

    def paired(diffs):
        return "inconclusive" if quick or len(diffs) < 2 else paired_effect(diffs, lower_is_better=False)

    f = results["sft"]["formats"]
    task_gap = [a - b for a, b in zip(f["qa"]["held_in"]["per_seed"], f["qa"]["held_out"]["per_seed"])]
    specific = paired(task_gap)
    fast = min(min(f[k]["drop_at_quarter"]["per_seed"]) for k in f) >= 0.75  # every run, every seed
    mark = None if quick else (True if specific == "better" and fast else
                               "partly" if specific == "better" or fast else False)
    out["sft"] = dict(claim="Supervised FT: fast convergence, task-specific", mark=claim_mark(mark),
        held_in_minus_held_out=task_gap, fast=fast,
        note=f"qa SFT: held-in {f['qa']['held_in']['mean']:.3f} vs held-out "
             f"{f['qa']['held_out']['mean']:.3f} accuracy (held-in - held-out: {specific}; the base model "
             f"scores {results['sft']['base']['held_in']:.3f}); share of the held-out loss drop reached by a "
             "quarter of the steps: " + ", ".join(f"{k} {f[k]['drop_at_quarter']['mean']:.0%}" for k in f)
             + f" ('fast' = at least 75% in every run: {'yes' if fast else 'no'})")
    gen = paired(results["sft"]["instruction_minus_plain_held_out"])
    out["instruction"] = dict(claim="Instruction TG: better generalization to new tasks", mark=claim_mark(
        None if quick else gen == "better"), effect=gen,
        note=f"held-out-family accuracy instruction {f['instruction']['held_out']['mean']:.3f} vs plain "
             f"{f['plain']['held_out']['mean']:.3f} ({gen} at "
             f"{len(f['plain']['held_out']['per_seed'])} seeds)")
    fmt = paired(results["sft"]["qa_minus_plain"])
    out["format"] = dict(claim="Instruction format matters (QA > plain)", mark=claim_mark(
        None if quick else fmt == "better"), effect=fmt,
        note="held-in + held-out accuracy qa "
             f"{f['qa']['held_in']['mean'] + f['qa']['held_out']['mean']:.3f} vs "
             f"plain {f['plain']['held_in']['mean'] + f['plain']['held_out']['mean']:.3f} ({fmt})")
    rw = results["reward"]
    learned = rw["held_out"]["accuracy"] > rw["chance_band"]
    out["rlhf"] = dict(claim="RLHF: learns from human preference signals", mark=claim_mark(
        None if quick else ("partly" if learned else False)),
        note=f"the reward model ranks {rw['held_out']['accuracy']:.3f} of held-out pairs right "
             "(chance + 2 s.e. "
             f"{rw['chance_band']:.3f}); the preferences are synthetic (ground truth), not human. Compare "
             f"{OUYANG_2022}.")
    runs = results["ppo"]["runs"]
    if len(runs) >= 2:
        coefs = sorted(runs, key=float)
        kls = [runs[c]["kl_last"] for c in coefs]
        monotone = all(a >= b for a, b in zip(kls, kls[1:]))
        lo, hi = runs[coefs[0]]["change"], runs[coefs[-1]]["change"]
        reward_gap = lo["score"] - hi["score"] > max(lo["score_noise"], hi["score_noise"])
        out["tradeoff"] = dict(claim="RLHF trade-off: reward maximization vs staying close to base (KL)",
                               mark=claim_mark(None if quick else (True if monotone and reward_gap else
                                                                   "partly" if monotone else False)),
                               note="KL (k3, mean of the last iterations) by kl_coef "
                               + ", ".join(f"{c}: {k:.2f}" for c, k in zip(coefs, kls))
                               + "; reward change " + ", ".join(f"{c}: {runs[c]['change']['score']:+.2f}"
                                                               for c in coefs)
                               + f" (noise {max(lo['score_noise'], hi['score_noise']):.2f}; 1 seed)")
    for v in out.values():
        demo.say(f"  [{v['mark']}] {v['claim']} — {v['note']}")
    return out


if __name__ == "__main__":
    main()
