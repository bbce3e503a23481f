"""Lesson 14 demo: the trained lab Llama quantized to 8 ... 2 bits by round-to-nearest, GPTQ and AWQ, trained
with fake quantization, measured in bytes and tokens/s, and written as GGUF files that transformers reads.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--bits B] [--group-size G] [--method all|rtn|gptq|awq] [--no-ste] [--qat-steps N]

Experiments (each prints its numbers and draws one figure into outputs/; measurements in experiments.py,
figures in figures.py):
 1. distributions.png      the weights of the layer with the largest outlier, the activations per input
                           channel of the layer with the most unequal channels, and each granularity's
                           weight error per layer
 2. perplexity_vs_bits.png held-out perplexity and top-1 agreement with the float model at 8, 6, 4, 3, 2
                           bits: round-to-nearest per tensor / channel / group 32 / group G, GPTQ and AWQ
 3. qat.png                post-training quantization vs quantization-aware training at 4, 3, 2 bits
 4. memory_speed.png       bytes of each format (tensors and GGUF files) and tokens/s of the
                           dequantize-on-the-fly layers vs float32 on this machine
 5. gguf.png               the exported GGUF files: size, and transformers' logits vs ours
Break flags:
 --bits B          the bit width of the headline model (speed test, method comparison, sample) (default 4)
 --group-size G    the group size of GPTQ, AWQ, QAT and the headline model; 0 = per output channel
 --method M        which calibrated methods run besides round-to-nearest (default all)
 --no-ste          QAT without the straight-through estimator: no gradient reaches the quantized weights
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import NO_DIFFERENCE, claim_mark, paired_effect

if TYPE_CHECKING:
    from llmlab.quantization import experiments as ex
    from llmlab.quantization import figures
    from llmlab.utils import Demo


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above, made as this module's globals."""
    global ex, figures, Demo
    from llmlab.quantization import experiments as ex
    from llmlab.quantization import figures
    from llmlab.utils import Demo


BITS = [8, 6, 4, 3, 2]
QAT_BITS = [4, 3, 2]


def settings(quick: bool) -> dict:
    if quick:
        return dict(windows=8, chunks=2, calib=2, awq_grid=2, qat_steps=3, qat_batch=2, speed_reps=3,
                    speed_batch=2, calibrated_bits="headline", gguf_qtypes=["Q4_0"])
    return dict(windows=40, chunks=5, calib=8, awq_grid=10, qat_steps=150, qat_batch=8, speed_reps=40,
                speed_batch=8, calibrated_bits="all", gguf_qtypes=["F32", "F16", "Q8_0", "Q4_0"])


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--bits", type=int, choices=range(2, 9), default=4, metavar="{2..8}",
                        help="bit width of the headline model (default 4)")
    parser.add_argument("--group-size", type="nonneg_int", default=128,
                        help="group size of GPTQ/AWQ/QAT and the headline model; 0 = per channel "
                             "(default 128)")
    parser.add_argument("--method", choices=("all", "rtn", "gptq", "awq"), default="all",
                        help="calibrated methods to run besides round-to-nearest (default all)")
    parser.add_argument("--no-ste", action="store_true",
                        help="break: QAT without the straight-through estimator (gradients vanish)")
    parser.add_argument("--qat-steps", type="positive_int", default=None, help="QAT finetuning steps")
    args = parser.parse_args(argv)
    if args.group_size and 128 % args.group_size:  # 128 = d_model: every width of the lab Llama divides
        parser.error(f"--group-size must divide 128 (the model width), got {args.group_size}")
    return _run(args)


def _run(args) -> dict:
    load_libraries()
    import torch

    from llmlab.transformer_block.pretrained import lab_model

    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    cfg["qat_steps"] = args.qat_steps or cfg["qat_steps"]
    group = f"group {args.group_size}" if args.group_size else "channel"
    methods = ["rtn"] + ([m for m in ("gptq", "awq")] if args.method == "all" else
                         [args.method] if args.method != "rtn" else [])
    grans = ["tensor", "channel", "group 32"] + ([group] if group not in ("channel", "group 32") else [])
    results = demo.results
    results["config"] = dict(cfg, bits=args.bits, group=group, methods=methods, granularities=grans,
                             no_ste=args.no_ste)
    # the lab Llama with d_ff = 384 (3 x 128) instead of its default 344: groups of 32 and 128 then divide
    # every layer's width (llama.cpp would leave a 344-wide down projection in F16)
    lab = demo.timed("lab_model", lab_model, "llama", quick=demo.quick, device="cpu", d_ff=384)
    model, block = lab.model.float().eval(), lab.config.block_size
    windows = ex.val_windows(lab.val_data, cfg["windows"], block)
    calib = ex.calibration_ids(lab.train_data, cfg["calib"], block, demo.seed)
    base, reference = ex.evaluate(model, windows, n_chunks=cfg["chunks"])
    base["agreement"] = 1.0
    results["model"] = dict(parameters=sum(p.numel() for p in model.parameters()), n_layer=lab.config.n_layer,
                            d_model=lab.config.d_model, d_ff=lab.config.d_ff, cache_hit=lab.cache_hit,
                            eval_tokens=windows[:, 1:].numel(), float=base)
    demo.say(f"Lab Llama: {results['model']['parameters']:,} parameters, {len(ex.target_linears(model))} "
             f"linear layers quantized (the output layer stays float); held-out perplexity "
             f"{base['perplexity']:.3f} on {windows[:, 1:].numel():,} tokens; calibration: {cfg['calib']} "
             f"training windows of {block} tokens.")
    if demo.quick:
        demo.say("Quick mode: a barely trained model, few windows and steps; no comparison below is "
                 "evidence.")

    def experiment(name, fn, *inputs):
        results[name] = demo.timed(name, fn, demo, cfg, args, *inputs)
        return results[name]

    experiment("distributions", distributions, model, calib, grans)
    experiment("sweep", sweep, model, windows, calib, reference, base, methods, grans, group)
    experiment("qat", qat, model, lab, windows, reference, base, group)
    experiment("memory_speed", memory_speed, model, windows, group)
    experiment("gguf", gguf_files, model, lab, windows, reference, base)
    results["timings_s"] = results.pop("experiment_seconds")
    results["key_insights"] = key_insights(demo, results, args, group, torch)
    demo.finish()
    return results


def distributions(demo, cfg, args, model, calib, grans) -> dict:
    """Experiment 1: outliers in the weights and the activations, and what they do to each granularity."""
    out = ex.weight_activation_stats(model, calib, args.bits, grans)
    layers = out["layers"]
    act, w = out["outlier_activation_layer"], out["outlier_weight_layer"]
    demo.say(f"  activations: the input channels of {act} range up to "
             f"{layers[act]['activation_max_over_median']:.1f}x the median channel's mean |x|; weights: "
             f"max|w| of {w} is {layers[w]['weight_absmax_over_std']:.1f} standard deviations")
    errs = out["mean_weight_error"]
    demo.say(f"  {args.bits}-bit round-to-nearest, relative weight error ||W - Q(W)|| / ||W|| (layer mean): "
             + ", ".join(f"{g} {v:.4f}" for g, v in errs.items()))
    figures.distributions_figure(demo, args, out)
    for key in ("activation_channel_mean", "outlier_weights"):
        out.pop(key)
    return out


def sweep(demo, cfg, args, model, windows, calib, reference, base, methods, grans, group) -> dict:
    """Experiment 2: perplexity and top-1 agreement vs bits x granularity x method."""
    import time

    rows = []
    calibrated = BITS if cfg["calibrated_bits"] == "all" else [args.bits]
    jobs = [(b, g, "rtn") for b in BITS for g in grans]
    jobs += [(b, g, m) for m in methods if m != "rtn" for b in calibrated
             for g in dict.fromkeys(([] if demo.quick else ["channel"]) + [group])]
    for bits, gran, method in jobs:
        options = dict(n_grid=cfg["awq_grid"]) if method == "awq" else {}
        start = time.perf_counter()
        q = ex.quantized(model, bits, gran, method, calib, **options)
        seconds = time.perf_counter() - start
        metrics, _ = ex.evaluate(q, windows, reference, n_chunks=cfg["chunks"])
        vs_float = "inconclusive" if demo.quick else paired_effect(ex.chunk_diffs(base, metrics))
        rows.append(dict(bits=bits, granularity=gran, method=method, seconds=seconds, **metrics,
                         ppl_ratio=base["perplexity"] / metrics["perplexity"], vs_float=vs_float))
    for r in rows:
        if r["method"] != "rtn" or r["granularity"] in ("channel", group):
            demo.say(f"  {r['bits']} bits {r['method']:>4} {r['granularity']:>9}: perplexity "
                     f"{r['perplexity']:9.3f} ({100 * r['ppl_ratio']:5.1f}% of float's), top-1 agreement "
                     f"{100 * r['agreement']:5.1f}%"
                     f", {r['seconds']:.2f} s")
    out = dict(rows=rows, float_perplexity=base["perplexity"])
    headline = [r for r in rows if r["bits"] == args.bits and r["granularity"] == group]
    for r in headline:
        rtn = next(x for x in headline if x["method"] == "rtn")
        if r["method"] != "rtn":
            verdict = "inconclusive" if demo.quick else paired_effect(ex.chunk_diffs(rtn, r))
            r["vs_rtn"] = verdict
            demo.say(f"  {r['method']} vs round-to-nearest at {args.bits} bits, {group}: perplexity "
                     f"{r['perplexity']:.3f} vs {rtn['perplexity']:.3f}: "
                     + (NO_DIFFERENCE if verdict == "tie" else verdict))
    figures.sweep_figure(demo, args, out, group)
    return out


def qat(demo, cfg, args, model, lab, windows, reference, base, group) -> dict:
    """Experiment 3: PTQ vs QAT. QAT finetunes through fake quantization; the control finetunes the float
    model for the same steps and quantizes after (so the extra training is not counted as QAT's gain)."""
    gs = None if group == "channel" else int(group.split()[1])
    common = dict(steps=cfg["qat_steps"], batch_size=cfg["qat_batch"], block_size=lab.config.block_size,
                  lr=3e-4, seed=demo.seed)
    control = ex.copy.deepcopy(model)
    control_run = ex.finetune(control, lab.train_data, **common)
    out = dict(steps=cfg["qat_steps"], float_finetune_seconds=control_run["seconds"], ste=not args.no_ste,
               group=group, control_losses=control_run["losses"], bits={})
    for bits in QAT_BITS:
        ptq, _ = ex.evaluate(ex.quantized(model, bits, group, "rtn", None), windows, reference,
                             n_chunks=cfg["chunks"])
        ptq_ft, _ = ex.evaluate(ex.quantized(control, bits, group, "rtn", None), windows, reference,
                                n_chunks=cfg["chunks"])
        trained = ex.with_fake_quant(model, bits, gs, ste=not args.no_ste)
        run = ex.finetune(trained, lab.train_data, **common)
        q, _ = ex.evaluate(ex.quantized(ex.without_fake_quant(trained), bits, group, "rtn", None), windows,
                           reference, n_chunks=cfg["chunks"])
        verdict = "inconclusive" if demo.quick else paired_effect(ex.chunk_diffs(ptq_ft, q))
        out["bits"][bits] = dict(ptq=ptq, ptq_after_float_finetune=ptq_ft, qat=q, qat_seconds=run["seconds"],
                                 qat_losses=run["losses"], weight_grad_norm=run["weight_grad_norm"],
                                 qat_vs_ptq=verdict)
        demo.say(f"  {bits} bits, {group}: perplexity PTQ {ptq['perplexity']:.3f}, PTQ of the float model "
                 f"finetuned {cfg['qat_steps']} steps {ptq_ft['perplexity']:.3f}, QAT {q['perplexity']:.3f} "
                 f"({run['seconds']:.1f} s of training; gradient norm reaching the weights "
                 f"{run['weight_grad_norm']:.3g}): QAT vs PTQ "
                 + (NO_DIFFERENCE if verdict == "tie" else verdict))
    figures.qat_figure(demo, args, out, base)
    return out


def memory_speed(demo, cfg, args, model, windows, group) -> dict:
    """Experiment 4: the bytes of each format and the speed of dequantize-on-the-fly layers."""
    import copy

    gs = None if group == "channel" else int(group.split()[1])
    int8 = ex.quantize_model(model, bits=8)
    low = ex.quantize_model(model, bits=args.bits, group_size=gs)
    fp16 = copy.deepcopy(model).half()
    n_weights = sum(model.get_submodule(n).weight.numel() for n in ex.target_linears(model))
    fp32_layers = ex.quantized_layer_bytes(model)
    name = f"int{args.bits} {group}"
    out = dict(quantized_weights=n_weights,
               model_bytes={"fp32": ex.tensor_bytes(model), "fp16": ex.tensor_bytes(fp16),
                            "int8": ex.tensor_bytes(int8), name: ex.tensor_bytes(low)},
               layer_bytes={"fp32": fp32_layers, "fp16": fp32_layers // 2,
                            "int8": ex.quantized_layer_bytes(int8), name: ex.quantized_layer_bytes(low)})
    out["layer_bits_per_weight"] = {k: 8 * v / n_weights for k, v in out["layer_bytes"].items()}
    demo.say("  quantized layers, bits per weight (codes + scales): " + ", ".join(
        f"{k} {v:.2f}" for k, v in out["layer_bits_per_weight"].items()))
    demo.say("  whole model (embedding and output layer stay float32), MB: " + ", ".join(
        f"{k} {v / 1e6:.2f}" for k, v in out["model_bytes"].items()))
    models = {"fp32": model, "int8": int8, f"int{args.bits}": low}
    shapes = {"1 token": windows[:1, :1],
              f"{cfg['speed_batch']}x128 tokens": windows[: cfg["speed_batch"], :-1]}
    out["tokens_per_s"], out["vs_fp32"] = {}, {}
    for label, ids in shapes.items():
        times = ex.forward_times(models, ids, cfg["speed_reps"])
        out["tokens_per_s"][label] = {k: ids.numel() / t for k, t in times.items()}
        out["vs_fp32"][label] = {k: times["fp32"] / t for k, t in times.items()}
        demo.say(f"  {label}: tokens/s "
                 + ", ".join(f"{k} {v:,.0f}" for k, v in out["tokens_per_s"][label].items())
                 + " (speed vs fp32: "
                 + ", ".join(f"{k} {v:.2f}x" for k, v in out["vs_fp32"][label].items()) + ")")
        if label == "1 token":
            dq = ex.dequantize_seconds(low, cfg["speed_reps"])
            out["dequantize_share_1_token"] = dq / times[f"int{args.bits}"]
    demo.say(f"  dequantizing every int{args.bits} weight takes {100 * out['dequantize_share_1_token']:.0f}% "
             "of "
             f"a 1-token forward: on a CPU the float matmul reads the float weight the dequantization just "
             f"wrote, so fewer bytes stored is not fewer bytes moved (gpt-fast's GPU numbers, where fewer "
             "bytes is faster, are cited in the README).")
    figures.memory_speed_figure(demo, args, out)
    return out


def gguf_files(demo, cfg, args, model, lab, windows, reference, base) -> dict:
    """Experiment 5: each GGUF type exported, read back by transformers, compared with our logits."""
    import torch

    with torch.no_grad():
        float_logits = model(windows[:8, :-1])[0]
    out = {}
    for qtype in cfg["gguf_qtypes"]:
        r = ex.gguf_round_trip(model, lab.tokenizer, demo.out_dir / "gguf", qtype, windows, float_logits,
                               reference)
        out[qtype] = r
        demo.say(f"  {qtype:>4}: {r['file_bytes'] / 1e6:.2f} MB file, {r['bits_per_weight']:.2f} bits per "
                 f"quantized weight; transformers' logits vs ours from the same file: max |diff| "
                 f"{r['max_abs_vs_our_reader']:.2g}; vs the float model: relative error "
                 f"{r['rel_error_vs_float']:.2g}; perplexity {r['perplexity']:.3f} (float "
                 f"{base['perplexity']:.3f}), top-1 agreement {100 * r['agreement']:.1f}%")
    figures.gguf_figure(demo, out)
    return out


# ------------------------------------------------------------------------------------------------
# the curriculum's claims, checked against this run's numbers
def key_insights(demo, results: dict, args, group: str, torch) -> dict:
    out, quick = {}, demo.quick
    demo.say("\n== The curriculum's claims, measured" + (" (quick mode: nothing decided)" if quick else ""))
    rows = results["sweep"]["rows"]

    def row(bits, gran, method):
        return next(r for r in rows if (r["bits"], r["granularity"], r["method"]) == (bits, gran, method))

    def say(key, claim, mark, note):
        out[key] = dict(claim=claim, mark=mark if isinstance(mark, str) and mark == "not measurable here"
                        else claim_mark(mark), note=note)
        demo.say(f"  [{out[key]['mark']}] {claim} — {note}")

    q = results["qat"]["bits"]
    ptq_loss = {b: q[b]["ptq"]["perplexity"] / results["model"]["float"]["perplexity"] - 1 for b in q}
    ptq_s = {r["method"]: r["seconds"] for r in rows if r["bits"] == 4 and r["granularity"] == group}
    qat_s = statistics_mean([q[b]["qat_seconds"] for b in q])
    loses = [b for b in q if row(b, group, "rtn")["vs_float"] == "worse"]
    say("ptq", "PTQ: quantize after training, fast but loses accuracy",
        None if quick else (True if loses and max(ptq_s.values()) < qat_s else "partly" if loses else False),
        "PTQ seconds per model: " + ", ".join(f"{k} {v:.2f}" for k, v in ptq_s.items())
        + f" vs {qat_s:.1f} s of QAT training; round-to-nearest ({group}) perplexity increase "
        + ", ".join(f"{b} bits {100 * v:+.1f}%" for b, v in ptq_loss.items())
        + f"; worse than float beyond the noise at {', '.join(map(str, loses)) or 'no'} bits")
    better = [b for b in q if q[b]["qat_vs_ptq"] == "better"]
    say("qat", "QAT: quantize during training, better quality",
        None if quick else (True if len(better) == len(q) else "partly" if better else False),
        "perplexity PTQ (float finetuned as long) -> QAT: " + ", ".join(
            f"{b} bits {q[b]['ptq_after_float_finetune']['perplexity']:.3f} -> "
            f"{q[b]['qat']['perplexity']:.3f} "
            f"({q[b]['qat_vs_ptq']})" for b in q)
        + ("" if results["qat"]["ste"] else "; --no-ste: no gradient reached the quantized weights"))
    r8 = row(8, "channel", "rtn")
    mem = results["memory_speed"]
    saving = mem["layer_bytes"]["fp16"] / mem["layer_bytes"]["int8"]
    minimal = r8["vs_float"] == "tie" or (r8["ppl_ratio"] >= 0.99 and r8["agreement"] >= 0.98)
    say("int8", "8-bit: minimal accuracy loss, 2x memory savings",
        None if quick else (True if minimal and saving >= 1.9 else
                            "partly" if minimal or saving >= 1.9 else False),
        f"8-bit per channel: perplexity {100 * r8['ppl_ratio']:.2f}% of float's ({r8['vs_float']} vs float), "
        f"top-1 agreement {100 * r8['agreement']:.1f}%; quantized layers {saving:.2f}x smaller than fp16 "
        f"(whole model {mem['model_bytes']['fp16'] / mem['model_bytes']['int8']:.2f}x: embedding and output "
        "layer kept float32)")
    best4 = max((r for r in rows if r["bits"] == 4 and r["granularity"] != "tensor"),
                key=lambda r: r["ppl_ratio"])
    hits = [best4["ppl_ratio"] >= 0.98, best4["agreement"] >= 0.98]
    say("int4", "4-bit: more aggressive, ~99% of performance",
        None if quick else (True if all(hits) else "partly" if any(hits) else False),
        f"best 4-bit model ({best4['method']}, {best4['granularity']}): float perplexity / its perplexity "
        f"{100 * best4['ppl_ratio']:.1f}%, top-1 agreement {100 * best4['agreement']:.1f}% (supported = "
        f"both >= 98%); per tensor: {100 * row(4, 'tensor', 'rtn')['ppl_ratio']:.1f}%")
    say("edge", "Quantization crucial for on-device/edge inference", "not measurable here",
        f"no device measured; the bytes are: int{args.bits} {group} layers "
        f"{mem['layer_bits_per_weight'][f'int{args.bits} {group}']:.2f} bits per weight vs 32")
    return out


def statistics_mean(values) -> float:
    return math.fsum(values) / len(values)


if __name__ == "__main__":
    main()
