"""Lesson 15 benchmark: the lab engine's throughput as a ratio to transformers' `generate` and to vLLM's, on
one workload and the same weights (the lab Llama), in one run.

    python benchmark.py [--requests N] [--batch B] [--new-tokens T] [--reps R] [--quick] [--out FILE]

Backends run round-robin (rep r starts at a different backend) and the ratios are medians of per-rep
ratios, with their range; the load average is printed because the machine may be shared. vLLM runs where
it imports (`make vllm-venv`, then `.venv-vllm/bin/python benchmark.py`); elsewhere it says why not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32, help="requests served together")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the quick lab model (seconds to train)")
    parser.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)

    import torch

    from llmlab.inference_stacks import experiments as ex
    from llmlab.inference_stacks.backends import VLLMBackend
    from llmlab.transformer_block.pretrained import lab_model

    torch.set_num_threads(1)
    lab = lab_model("llama", quick=args.quick, progress=False)
    model = lab.model.eval()
    wl = ex.workload(lab.val_data.tolist(), args.requests, (8, 64), (args.new_tokens,) * 2, seed=0)
    reason = VLLMBackend.unavailable_reason()
    vllm = VLLMBackend(model, max_num_seqs=args.batch) if reason is None else None
    load = os.getloadavg()
    r = ex.throughput(model, wl, [args.batch], args.reps, 2, names=("lab-engine", "hf-generate", "vllm"),
                      vllm=vllm)
    b = args.batch
    per = r["tokens_per_s_per_rep"]
    print(f"{args.requests} requests, prompts 8-64 tokens, {args.new_tokens} new tokens each, batch {b}, "
          f"{args.reps} round-robin reps; load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    for n in r["names"]:
        print(f"  {n:<12} {r['tokens_per_s'][n][b]:8.0f} output tokens/s (median)")
    out = dict(load_average_before=load[0], load_average_after=os.getloadavg()[0], batch=b,
               requests=args.requests, new_tokens=args.new_tokens, reps=args.reps, vllm_reason=reason,
               tokens_per_s=r["tokens_per_s"], tokens_per_s_per_rep=per, engine_over={})
    for other in ("hf-generate", "vllm"):
        if other not in per:
            print(f"  lab engine / {other}: not measured ({reason})")
            continue
        ratios = [e / o for e, o in zip(per["lab-engine"][b], per[other][b])]
        out["engine_over"][other] = dict(median=statistics.median(ratios), per_rep=ratios)
        print(f"  lab engine / {other}: {statistics.median(ratios):.2f}x "
              f"(per rep {min(ratios):.2f}-{max(ratios):.2f})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2, default=str)
    return out


if __name__ == "__main__":  # vLLM starts its engine in a spawned process: the guard is required
    main()
