"""Lesson 15 demo: one workload served by the lab engine, transformers (static `generate` and its own
continuous batching), lesson 06's static generate and, where installed, real vLLM, on the same weights.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--no-prefix-caching] [--block-size N] [--num-blocks N] [--static-batching]
                   [--vllm auto|off]

Experiments (each prints its numbers and draws one figure into outputs/; measurements in experiments.py,
figures in figures.py). The model: the lab Llama trained on the stories (lesson 04's `lab_model`).
 1. throughput.png      output tokens/s, time to first token and time per output token of every backend at
                        batch sizes 1 ... N (round-robin over backends, medians of interleaved reps)
 2. kv_memory.png       KV slots reserved vs holding a live token: static padded batches vs the paged pool
 3. prefix_caching.png  a shared system prompt: prefill tokens and time saved by the prefix cache
 4. preemption.png      throughput and preemptions as the KV pool shrinks
 5. (printed)           a recommendation table generated from this run's numbers
Break flags:
 --no-prefix-caching  the engine never reuses cached blocks (experiment 3 compares off with off)
 --block-size N       tokens per KV block in every engine of the run (default 16)
 --num-blocks N       the engine's KV pool in experiment 1 (default: enough for every running request)
 --static-batching    experiment 1's engine serves static batches: a group waits until the previous ends
 --vllm off           leave vLLM out (auto: used when `vllm` imports, in the full run only: it loads slowly)
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import claim_mark, paired_effect

if TYPE_CHECKING:
    from llmlab.inference_stacks import experiments as ex
    from llmlab.inference_stacks import figures
    from llmlab.inference_stacks.backends import VLLMBackend
    from llmlab.transformer_block.pretrained import lab_model
    from llmlab.utils import Demo


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above, made as this module's globals."""
    global ex, figures, VLLMBackend, lab_model, Demo
    from llmlab.inference_stacks import experiments as ex
    from llmlab.inference_stacks import figures
    from llmlab.inference_stacks.backends import VLLMBackend
    from llmlab.transformer_block.pretrained import lab_model
    from llmlab.utils import Demo


KWON_2023 = ("Kwon et al. 2023 (SOSP), PagedAttention/vLLM: under 4% of KV memory wasted, 2-4x the "
             "throughput of FasterTransformer and Orca at the same latency; the vLLM launch post: up to "
             "24x over HF transformers (GPU, 7B-65B models)")


def settings(quick: bool) -> dict:
    if quick:
        return dict(requests=8, batch_sizes=[1, 8], prompt_range=(8, 32), out_tokens=8, latency_tokens=4,
                    reps=1, kv_requests=16, kv_out_range=(4, 24), kv_batch=8, block_sizes=[4, 16],
                    prefix_requests=8, system_tokens=32, user_range=(4, 12), prefix_out_range=(4, 8),
                    arrivals_per_step=2, prefix_reps=2, pool_fractions=[1.0, 0.4], preempt_reps=1)
    return dict(requests=32, batch_sizes=[1, 8, 32], prompt_range=(8, 64), out_tokens=32, latency_tokens=16,
                reps=3, kv_requests=32, kv_out_range=(4, 60), kv_batch=16, block_sizes=[1, 4, 8, 16, 32],
                prefix_requests=24, system_tokens=48, user_range=(4, 16), prefix_out_range=(8, 16),
                arrivals_per_step=2, prefix_reps=7, pool_fractions=[1.0, 0.6, 0.4, 0.25, 0.15],
                preempt_reps=2)


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--no-prefix-caching", action="store_true",
                        help="break: the engine never reuses the K/V of shared prompt blocks")
    parser.add_argument("--block-size", type="positive_int", default=16, help="tokens per KV block (16)")
    parser.add_argument("--num-blocks", type="positive_int", default=None,
                        help="break: the engine's KV pool in experiment 1 (default: no preemption needed)")
    parser.add_argument("--static-batching", action="store_true",
                        help="break: experiment 1's engine serves static batches")
    parser.add_argument("--vllm", choices=("auto", "off"), default="auto",
                        help="use vLLM when it imports (auto, full run only) or never (off)")
    return _run(parser.parse_args(argv))


def _run(args) -> dict:
    load_libraries()
    import torch
    import transformers

    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    results = demo.results
    results["config"] = dict(cfg, block_size=args.block_size, num_blocks=args.num_blocks,
                             prefix_caching=not args.no_prefix_caching, static_batching=args.static_batching,
                             transformers=transformers.__version__)
    lab = demo.timed("model", lab_model, "llama", quick=demo.quick, device=demo.device)
    model = lab.model.eval()
    val = lab.val_data.tolist()
    demo.say(f"Model: the lab Llama ({sum(p.numel() for p in model.parameters()):,} parameters, "
             f"{model.config.n_layer} layers, d_model {model.config.d_model}, "
             f"context {model.config.block_size}), "
             f"fp32 on {demo.device}, {torch.get_num_threads()} torch thread(s); transformers "
             f"{transformers.__version__}.")
    if demo.quick:
        demo.say("Quick mode: a handful of requests and one rep; no comparison below is evidence.")

    vllm, reason = None, VLLMBackend.unavailable_reason()
    if args.vllm == "off" or demo.quick or reason is not None:
        reason = "--vllm off" if args.vllm == "off" else "quick mode (vLLM loads for tens of seconds)" \
            if demo.quick else reason
        demo.say(f"vLLM: not run ({reason}).")
    else:
        vllm = demo.timed("vllm_load", VLLMBackend, model, max_num_seqs=max(cfg["batch_sizes"]))
        import vllm as vllm_module
        demo.say(f"vLLM {vllm_module.__version__}: loaded the same weights (to_hf -> save_pretrained) in "
                 f"{results['experiment_seconds']['vllm_load']:.0f} s; its worker's OpenMP threads bound to "
                 "core 0 (one thread, as the other backends' one torch thread).")
    results["vllm"] = dict(used=vllm is not None, reason=reason)
    results["exllamav2"] = dict(used=False, reason="needs CUDA (GPU-only kernels and EXL2 weights); this "
                                                   "machine has none")

    engine_kwargs = dict(block_size=args.block_size, enable_prefix_caching=not args.no_prefix_caching)
    if args.num_blocks is not None:
        engine_kwargs["num_blocks"] = args.num_blocks
    wl = ex.workload(val, cfg["requests"], cfg["prompt_range"], (cfg["out_tokens"],) * 2, demo.seed)
    r = results["throughput"] = demo.timed(
        "throughput", ex.throughput, model, wl, cfg["batch_sizes"], cfg["reps"], cfg["latency_tokens"],
        vllm=vllm, engine_kwargs=engine_kwargs, static_engine=args.static_batching)
    report_throughput(demo, r, wl)
    figures.throughput_figure(demo, r)

    wl = ex.workload(val, cfg["kv_requests"], cfg["prompt_range"], cfg["kv_out_range"], demo.seed + 1)
    r = results["kv_memory"] = demo.timed("kv_memory", ex.kv_memory, model, wl, cfg["kv_batch"],
                                          cfg["block_sizes"], args.block_size)
    demo.say(f"\n== 2. KV memory ({cfg['kv_requests']} requests, prompts {cfg['prompt_range']}, outputs "
             f"{cfg['kv_out_range']} tokens, batch {cfg['kv_batch']}; share of reserved slots without a live "
             f"token, averaged over steps)")
    demo.say(f"  static padded batching: waste {r['static']['waste']:.1%}, peak reserved "
             f"{r['static']['peak_reserved_mb']:.2f} MB")
    for b, v in sorted(r["paged"].items()):
        demo.say(f"  paged, block size {b:>2}: waste {v['waste']:.1%}, "
                 f"peak reserved {v['peak_reserved_mb']:.2f} MB")
    figures.kv_memory_figure(demo, r)

    system = val[:cfg["system_tokens"]]
    wl = ex.workload(val, cfg["prefix_requests"], cfg["user_range"], cfg["prefix_out_range"], demo.seed + 2,
                     system=system)
    r = results["prefix_caching"] = demo.timed(
        "prefix_caching", ex.prefix_caching, model, wl, cfg["prefix_reps"], cfg["arrivals_per_step"],
        args.block_size, caching_on=not args.no_prefix_caching)
    on, off = r["stats"]["caching"], r["stats"]["no caching"]
    r["time_verdict"] = ("inconclusive" if len(r["speedup_per_rep"]) < 2 else  # caching vs not, in time
                         paired_effect([math.log(x) for x in r["speedup_per_rep"]], lower_is_better=False))
    demo.say(f"\n== 3. Prefix caching ({cfg['prefix_requests']} requests = a "
             f"{cfg['system_tokens']}-token system prompt + {cfg['user_range']} user tokens, "
             f"{cfg['arrivals_per_step']} arriving per step)")
    demo.say(f"  prefill tokens computed: {on['prefill_tokens']} with the cache "
             f"({on['prefix_cache_hit_tokens']} read from it) vs {off['prefill_tokens']} without; "
             f"serving time {r['seconds']['caching']:.3f} vs "
             f"{r['seconds']['no caching']:.3f} s: {r['speedup']:.2f}x (per rep "
             + ", ".join(f"{s:.2f}" for s in r["speedup_per_rep"])
             + f"): {r['time_verdict']}; outputs {'identical' if r['outputs_equal'] else 'DIFFERENT'}")
    figures.prefix_caching_figure(demo, r)

    wl = ex.workload(val, cfg["kv_requests"], cfg["prompt_range"], cfg["kv_out_range"], demo.seed + 1)
    r = results["preemption"] = demo.timed("preemption", ex.preemption, model, wl, cfg["kv_batch"],
                                           args.block_size, cfg["pool_fractions"], cfg["preempt_reps"])
    demo.say(f"\n== 4. Preemption (the experiment-2 workload, batch {cfg['kv_batch']}; "
             f"{r['full_pool']} blocks let every running request grow to its end)")
    for p in r["pools"]:
        demo.say(f"  {p:>4} blocks ({p / r['full_pool']:.0%}): {r['tokens_per_s'][p]:.0f} tok/s, "
                 f"{r['preemptions'][p]} preemptions, {r['prefill_tokens'][p]} tokens prefilled")
    demo.say(f"  outputs {'identical' if r['outputs_equal'] else 'DIFFERENT'} at every pool size")
    figures.preemption_figure(demo, r)

    results["recommendations"] = recommendations(demo, results)
    results["cpu_seconds"] = time.process_time()  # this process only (not vLLM's worker processes)
    results["load_average_1min"] = os.getloadavg()[0]
    results["timings_s"] = results.pop("experiment_seconds")
    results["key_insights"] = key_insights(demo, results)
    demo.finish()
    return results


def report_throughput(demo, r: dict, wl: dict) -> None:
    demo.say(f"\n== 1. Throughput and latency ({len(wl['prompts'])} requests, prompts "
             f"{min(map(len, wl['prompts']))}-{max(map(len, wl['prompts']))} tokens, {wl['out_lens'][0]} new "
             f"tokens each; medians of {r['reps']} round-robin reps)")
    for n in r["names"]:
        row = ", ".join(f"b={b}: {r['tokens_per_s'][n][b]:.0f} tok/s ({r['ratio_to_hf'][n][b]:.2f}x HF), "
                        f"TTFT {r['ttft_ms'][n][b]:.1f} ms, TPOT {r['tpot_ms'][n][b]:.2f} ms"
                        for b in r["batch_sizes"])
        demo.say(f"  {n:<23} {row}")
    demo.say("  the lab engine's throughput / each backend's (median of per-rep ratios): " + "; ".join(
        f"{n} " + ", ".join(f"b={b} {v:.2f}x" for b, v in d.items()) for n, d in r["engine_over"].items()))
    demo.say("  greedy tokens equal to the lab engine's: "
             + ", ".join(f"{n} {'yes' if v else 'NO'}" for n, v in r["greedy_equal_to_engine"].items()))


def _faster(r: dict, a: str, b: str, batch: int, reps: int) -> str:
    """a vs b at one batch size, paired by rep: "better" (a faster at every rep, beyond the spread), "worse",
    "tie", or "inconclusive" with fewer than 2 reps."""
    if reps < 2:
        return "inconclusive"
    per = r["tokens_per_s_per_rep"]  # log ratios: timing noise on a shared machine is multiplicative
    return paired_effect([math.log(x / y) for x, y in zip(per[a][batch], per[b][batch])],
                         lower_is_better=False)


def recommendations(demo, results: dict) -> list[dict]:
    """Experiment 5: which setup to pick for each situation, read off this run's numbers."""
    t, big = results["throughput"], results["throughput"]["batch_sizes"][-1]
    n_lat = demo.results["config"]["latency_tokens"]
    latency = {n: t["ttft_ms"][n][1] + (n_lat - 1) * t["tpot_ms"][n][1] for n in t["names"]}
    fastest = max(t["names"], key=lambda n: t["tokens_per_s"][n][big])
    quickest = min(latency, key=latency.get)
    kv, pc, pre = results["kv_memory"], results["prefix_caching"], results["preemption"]
    low = pre["pools"][-1]
    rows = [
        dict(situation="one request at a time (latency)", pick=quickest,
             because=f"{latency[quickest]:.0f} ms for {n_lat} tokens at batch 1 (next: "
                     + ", ".join(f"{n} {v:.0f}" for n, v in sorted(latency.items(), key=lambda x: x[1])[1:3])
                     + ")"),
        dict(situation=f"many requests (throughput, batch {big})", pick=fastest,
             because=f"{t['tokens_per_s'][fastest][big]:.0f} tok/s, {t['ratio_to_hf'][fastest][big]:.2f}x "
                     "transformers' generate"),
        dict(situation="a shared system prompt", pick="prefix caching on",
             because=f"{pc['stats']['caching']['prefix_cache_hit_tokens']} of {pc['prompt_tokens']} prompt "
                     f"tokens read from the cache; serving time {pc['speedup']:.2f}x ({pc['time_verdict']})"),
        dict(situation="KV memory is the limit", pick=f"paged KV, block {kv['default_block']}",
             because=f"waste {kv['paged'][kv['default_block']]['waste']:.1%} vs {kv['static']['waste']:.1%} "
                     "for static padded batches"),
        dict(situation="pool too small for the batch", pick="fewer concurrent requests",
             because=f"at {low} of {pre['full_pool']} blocks: {pre['preemptions'][low]} preemptions, "
                     f"{pre['tokens_per_s'][low] / pre['tokens_per_s'][pre['pools'][0]]:.2f}x "
                     "the throughput"),
    ]
    demo.say("\n== 5. Recommendations from this run's numbers (this CPU, this tiny model)")
    for row in rows:
        demo.say(f"  {row['situation']:<40} -> {row['pick']}: {row['because']}")
    return rows


def key_insights(demo, results: dict) -> dict:
    """Each of the curriculum's lesson-15 claims next to the numbers of this run that test it."""
    out, quick = {}, demo.quick
    t, reps = results["throughput"], results["throughput"]["reps"]
    big, one = t["batch_sizes"][-1], t["batch_sizes"][0]
    demo.say("\n== The curriculum's claims, measured" + (" (quick mode: nothing decided)" if quick else ""))

    def say(key: str, claim: str, mark, note: str) -> None:
        out[key] = dict(claim=claim, mark=claim_mark(mark), note=note)
        demo.say(f"  [{claim_mark(mark)}] {claim} — {note}")

    others = {n: _faster(t, n, "hf-generate", big, reps) for n in t["names"] if n != "hf-generate"}
    beaten_by = [n for n, v in others.items() if v == "better"]
    mark = None if quick else (True if beaten_by else False)
    say("hf_baseline", "HF: flexible, easy, baseline performance", mark,
        f"at batch {big} vs transformers' generate: " + ", ".join(
            f"{n} {t['ratio_to_hf'][n][big]:.2f}x ({v})" for n, v in others.items())
        + "; flexibility and ease are not measured")
    if "vllm" in t["names"]:
        ratio = t["ratio_to_hf"]["vllm"][big]
        v = others["vllm"]
        mark = None if quick else (True if v == "better" and ratio >= 5 else
                                   "partly" if v == "better" else False)
        note = ("vLLM / transformers' generate: " + ", ".join(f"b={b} {t['ratio_to_hf']['vllm'][b]:.2f}x"
                                                              for b in t["batch_sizes"])
                + f" (b={big}: {v}); on a CPU with a 4-layer model the matmuls are tiny, so per-step "
                  f"overhead, not memory, sets the pace. Compare {KWON_2023}.")
    else:
        mark, note = None, f"not measured: vLLM {results['vllm']['reason']}. Compare {KWON_2023}."
    say("vllm_5_10x", "vLLM: 5-10x faster, best for production", mark, note)
    say("exllama", "ExLlama: fastest for Llama, quantized only", None,
        f"not measurable here: ExLlamaV2 {results['exllamav2']['reason']}")
    scales = {n: ("inconclusive" if reps < 2 else paired_effect(
        [math.log(x / y) for x, y in zip(t["tokens_per_s_per_rep"][n][big],
                                         t["tokens_per_s_per_rep"][n][one])],
        lower_is_better=False)) for n in t["names"]}
    up = [n for n, v in scales.items() if v == "better"]
    mark = None if quick else (True if len(up) == len(scales) else "partly" if up else False)
    say("batch_scaling", "Throughput scales with batch size", mark,
        f"tokens/s at batch {big} / batch {one}: " + ", ".join(
            f"{n} {t['tokens_per_s'][n][big] / t['tokens_per_s'][n][one]:.1f}x ({scales[n]})"
            for n in t["names"]))
    if "vllm" in t["names"]:
        vs = {n: _faster(t, "vllm", n, big, reps) for n in t["names"] if n != "vllm"}
        mark = None if quick else (True if all(v == "better" for v in vs.values()) else
                                   "partly" if any(v == "better" for v in vs.values()) else False)
        note = (f"vLLM's throughput / each backend's at batch {big}: " + ", ".join(
            f"{n} {t['tokens_per_s']['vllm'][big] / t['tokens_per_s'][n][big]:.2f}x ({v})"
            for n, v in vs.items())
            + " (throughput only; production features such as streaming and an HTTP server are not measured)")
    else:
        mark, note = None, "not measured (no vLLM in this run)"
    say("vllm_production", "For production: vLLM is typically optimal", mark, note)
    kv = results["kv_memory"]
    waste = kv["paged"][kv["default_block"]]["waste"]
    best = min(kv["paged"], key=lambda b: kv["paged"][b]["waste"])
    say("paged_waste", "PagedAttention wastes under 4% of KV memory (Kwon et al. 2023)",
        None if quick else waste < 0.04,
        f"paged waste {waste:.1%} at block size {kv['default_block']} (best {kv['paged'][best]['waste']:.1%}"
        f" at block size {best}) vs static "
        f"{kv['static']['waste']:.1%}: the last block of each sequence is part-empty, which weighs more on "
        "this workload's short sequences than on the paper's")
    return out


if __name__ == "__main__":
    main()
