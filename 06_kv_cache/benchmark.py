"""Benchmark: tokens/s of our cached `generate` against transformers' `generate` on the same weights.

    python benchmark.py [--quick] [--preset gpt2|llama|both] [--new-tokens N] [--repeats R] [--threads T]
                        [--profile] [--out DIR]

The model is the lab GPT's shape (4 layers, d_model 128, 4 heads, a 1024-token vocabulary) with random
weights and block_size 512 — speed does not depend on training. `to_hf(model)` gives transformers the
identical weights (its eager attention, as to_hf builds it, and its SDPA attention). Greedy decoding,
a 16-token prompt, batch 1 and 8. The runs are interleaved (ours, HF eager, HF sdpa, ours, ...) so that
a load spike from another process hits every contender alike; each number is the median of the repeats.
Every run is checked to produce the same tokens as ours. --profile prints cProfile's top functions of
one of our runs (where the time of the hot path goes).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import time
from pathlib import Path

import torch

from llmlab.kv_cache import generate
from llmlab.transformer_block import GPT, gpt2_config, llama_config, to_hf

SHAPE = dict(vocab_size=1024, block_size=512, n_layer=4, n_head=4, d_model=128)
PRESETS = {"gpt2": gpt2_config, "llama": llama_config}


def build(preset: str, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(PRESETS[preset](**SHAPE)).eval()


def hf_runner(hf_model, attn: str):
    hf_model.set_attn_implementation(attn)

    def run(ids: torch.Tensor, n_new: int) -> torch.Tensor:
        with torch.no_grad():
            return hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new,
                                     min_new_tokens=n_new, do_sample=False, eos_token_id=None, pad_token_id=0)
    return run


def benchmark(preset: str, batch_size: int, n_new: int, repeats: int, prompt_len: int = 16) -> dict:
    """Median tokens/s of each contender over `repeats` interleaved runs, and the ratios to ours.

    Raises KeyError for an unknown preset, RuntimeError when a contender's tokens differ from ours.
    """
    model = build(preset)
    hf = to_hf(model)
    contenders = {
        "ours": lambda ids, n: generate(model, ids, n),
        "hf_eager": hf_runner(hf, "eager"),
        "hf_sdpa": hf_runner(to_hf(model), "sdpa"),
    }
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, SHAPE["vocab_size"], (batch_size, prompt_len), generator=g)
    reference = contenders["ours"](ids, 8)  # warm-up, and the tokens everyone must match
    for name, run in contenders.items():
        out = run(ids, 8)
        if not torch.equal(out, reference):
            raise RuntimeError(f"{name} generated different tokens than ours: the comparison would be unfair")
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run(ids, n_new)
            times[name].append(time.perf_counter() - start)
    tokens = batch_size * n_new
    tok_s = {name: tokens / statistics.median(t) for name, t in times.items()}
    ours = times["ours"]
    return {"spread": (max(ours) - min(ours)) / statistics.median(ours),
            "preset": preset, "batch_size": batch_size, "new_tokens": n_new, "repeats": repeats,
            "tokens_per_s": tok_s, "ratio_vs_hf_eager": tok_s["ours"] / tok_s["hf_eager"],
            "ratio_vs_hf_sdpa": tok_s["ours"] / tok_s["hf_sdpa"]}


def profile_ours(preset: str, batch_size: int, n_new: int, top: int = 15) -> None:
    model = build(preset)
    ids = torch.randint(0, SHAPE["vocab_size"], (batch_size, 16))
    generate(model, ids, 8)
    profiler = cProfile.Profile()
    profiler.enable()
    generate(model, ids, n_new)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 new tokens, 3 repeats (a smoke run)")
    parser.add_argument("--preset", choices=("gpt2", "llama", "both"), default="both")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 256 (quick: 64)")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (quick: 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable timings)")
    parser.add_argument("--profile", action="store_true", help="cProfile one of our runs instead")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "outputs")
    args = parser.parse_args(argv)
    for name in ("new_tokens", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    torch.set_num_threads(args.threads)
    n_new = args.new_tokens or (64 if args.quick else 256)
    repeats = args.repeats or (3 if args.quick else 5)
    presets = ("gpt2", "llama") if args.preset == "both" else (args.preset,)
    if args.profile:
        profile_ours(presets[0], 1, n_new)
        return {}
    rows = []
    print(f"greedy generation, {n_new} new tokens after a 16-token prompt, median of {repeats} interleaved "
          f"runs, {args.threads} thread(s)")
    print(f"{'preset':>6} {'batch':>5} {'ours tok/s':>11} {'HF eager':>9} {'HF sdpa':>9} {'ours/eager':>10} "
          f"{'ours/sdpa':>9}")
    for preset in presets:
        for batch_size in (1, 8):
            row = benchmark(preset, batch_size, n_new, repeats)
            rows.append(row)
            t = row["tokens_per_s"]
            print(f"{preset:>6} {batch_size:>5} {t['ours']:>11.0f} {t['hf_eager']:>9.0f} "
                  f"{t['hf_sdpa']:>9.0f} {row['ratio_vs_hf_eager']:>9.2f}x {row['ratio_vs_hf_sdpa']:>8.2f}x "
                  f"(spread of our runs {100 * row['spread']:.0f}%)", flush=True)
    slowest = min(min(r["ratio_vs_hf_eager"], r["ratio_vs_hf_sdpa"]) for r in rows)
    spread = max(r["spread"] for r in rows)
    if slowest >= 1:
        print(f"ours is at least as fast as transformers in every setting (worst ratio {slowest:.2f}x)")
    else:
        n_slower = sum(min(r["ratio_vs_hf_eager"], r["ratio_vs_hf_sdpa"]) < 1 for r in rows)
        noise = "within" if 1 - slowest <= spread else "beyond"
        print(f"ours is slower than a transformers variant in {n_slower} of {len(rows)} settings "
              f"(worst ratio {slowest:.2f}x, {noise} the run-to-run spread of {100 * spread:.0f}%)")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"threads": args.threads, "rows": rows, "worst_ratio": slowest}
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
