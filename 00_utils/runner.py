"""`llm-lab`: list the lessons, run their demos, and build a gallery page of every plot and number.

    llm-lab list
    llm-lab run                    # every lesson that has a demo, full runs
    llm-lab run 01 03 --quick      # some lessons (by number, folder or package name), quick mode
    llm-lab run --quick --out DIR  # gallery in DIR/index.html (default ./outputs)

Each demo runs in its own process (`python -m llmlab.<lesson>.demo --out DIR/<folder>`), so one
failing lesson does not stop the others; the exit status is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

# (folder, package, what it teaches)
LESSONS: list[tuple[str, str, str]] = [
    ("00_utils", "utils", "shared plotting, corpora, demo CLI, training loop and model cache"),
    ("01_tokenization", "tokenization", "byte-level BPE from scratch (== tiktoken), embeddings"),
    ("02_positional_embeddings", "positional_embeddings", "sinusoidal, learned, RoPE, ALiBi; extrapolation"),
    ("03_attention_basics", "attention_basics", "scaled dot-product and multi-head attention, causality"),
    ("04_transformer_block", "transformer_block", "the lab GPT (== HF GPT-2 / Llama), residual stream"),
    ("05_sampling", "sampling", "temperature, top-k, top-p, min-p (== HF logits warpers)"),
    ("06_kv_cache", "kv_cache", "KV cache: speedup and memory, sliding-window and int8 caches"),
    ("07_long_context", "long_context", "sliding-window and chunked (flash-style) attention"),
    ("08_moe", "moe", "mixture of experts: routing, load balancing, capacity"),
    ("09_gqa", "gqa", "grouped-query attention: KV-cache size vs quality"),
    ("10_normalization", "normalization", "LayerNorm, RMSNorm, GELU, SwiGLU; training ablations"),
    ("11_pretraining_objectives", "pretraining_objectives", "causal, masked and prefix LM"),
    ("12_finetuning_rlhf", "finetuning_rlhf", "SFT, instruction tuning, reward models, RLHF"),
    ("13_scaling_laws", "scaling_laws", "loss vs parameters and compute, Chinchilla"),
    ("14_quantization", "quantization", "PTQ, QAT, bit-width vs accuracy, GGUF export"),
    ("15_inference_stacks", "inference_stacks", "HF vs vLLM vs ExLlamaV2 throughput and latency"),
    ("16_synthetic_data", "synthetic_data", "generating, noising and deduplicating training data"),
]


def has_demo(package: str) -> bool:
    try:
        return importlib.util.find_spec(f"llmlab.{package}.demo") is not None
    except ModuleNotFoundError:
        return False


def resolve(names: list[str]) -> list[tuple[str, str, str]]:
    """Lessons by number ('01'), folder ('01_tokenization') or package ('tokenization')."""
    chosen = []
    for name in names:
        matches = [row for row in LESSONS if name in (row[0], row[1], row[0][:2], row[0][:2].lstrip("0"))]
        if not matches:
            known = ", ".join(row[0] for row in LESSONS)
            raise SystemExit(f"llm-lab: unknown lesson {name!r}; known lessons: {known}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def _flatten(value, prefix: str = "", limit: int = 60) -> list[tuple[str, str]]:
    """results.json -> (dotted key, short value) rows for the gallery's table."""
    rows: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            rows.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k), limit))
    elif isinstance(value, list) and len(value) > 8:
        rows.append((prefix, f"[{len(value)} values]"))
    else:
        text = json.dumps(value)
        rows.append((prefix, text if len(text) < 120 else text[:117] + "..."))
    return rows[:limit] if not prefix else rows


def write_gallery(out: Path, runs: list[dict]) -> Path:
    """outputs/index.html: every lesson's plots and results.json numbers, readable from file://."""
    parts = ["<!doctype html><meta charset='utf-8'><title>LLM Lab results</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "img{max-width:48%;margin:.5%;border:1px solid #ddd}"
             "table{border-collapse:collapse;font-size:13px}"
             "td{border-bottom:1px solid #eee;padding:2px 8px;vertical-align:top}"
             ".fail{color:#b00}.ok{color:#070}code{font-size:12px}</style>",
             "<h1>LLM Lab — results gallery</h1>",
             f"<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S')}. Each section is one lesson's demo run; "
             "every number comes from that run's <code>results.json</code>.</p><ul>"]
    for run in runs:
        status = "ok" if run["returncode"] == 0 else "fail"
        parts.append(f"<li><a href='#{run['folder']}'>{run['folder']}</a> "
                     f"<span class='{status}'>{status}</span> ({run['seconds']:.0f} s)</li>")
    parts.append("</ul>")
    for run in runs:
        folder = run["folder"]
        status = "ok" if run["returncode"] == 0 else f"failed (exit {run['returncode']})"
        parts.append(f"<h2 id='{folder}'>{folder}</h2><p>{html.escape(run['about'])} — "
                     f"<b>{status}</b>, {run['seconds']:.1f} s</p>")
        results_path = out / folder / "results.json"
        if results_path.exists():
            data = json.loads(results_path.read_text())
            for fig in data.get("figures", []):
                parts.append(f"<a href='{folder}/{fig}'><img src='{folder}/{fig}' alt='{fig}'></a>")
            rows = _flatten(data.get("results", {}))
            parts.append("<details><summary>numbers (results.json)</summary><table>")
            parts.extend(f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(v)}</td></tr>"
                         for k, v in rows)
            parts.append("</table></details>")
        if run["returncode"] != 0:
            parts.append(f"<pre class='fail'>{html.escape(run['tail'])}</pre>")
    path = out / "index.html"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def cmd_list() -> int:
    for folder, package, about in LESSONS:
        status = "demo" if has_demo(package) else "    "
        print(f"{folder:<28} llmlab.{package:<24} [{status}] {about}")
    return 0


def cmd_run(names: list[str], quick: bool, out: Path, seed: int, device: str) -> int:
    lessons = resolve(names) if names else [row for row in LESSONS if has_demo(row[1])]
    missing = [row[0] for row in lessons if not has_demo(row[1])]
    if missing:
        print(f"llm-lab: no demo yet in {', '.join(missing)}; skipping", file=sys.stderr)
    lessons = [row for row in lessons if has_demo(row[1])]
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for folder, package, about in lessons:
        cmd = [sys.executable, "-m", f"llmlab.{package}.demo", "--out", str(out / folder),
               "--seed", str(seed), "--device", device] + (["--quick"] if quick else [])
        print(f"\n### {folder}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - start
        print(proc.stdout, end="", flush=True)
        runs.append({"folder": folder, "about": about, "returncode": proc.returncode, "seconds": seconds,
                     "tail": proc.stdout[-3000:]})
    gallery = write_gallery(out, runs)
    failed = [r["folder"] for r in runs if r["returncode"] != 0]
    print(f"\nllm-lab: {len(runs) - len(failed)} of {len(runs)} demos ran; gallery: {gallery}")
    if failed:
        print(f"llm-lab: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the lessons and which have a demo")
    run = sub.add_parser("run", help="run lesson demos and write outputs/index.html")
    run.add_argument("lessons", nargs="*", help="lesson numbers, folders or package names (default: all)")
    run.add_argument("--quick", action="store_true", help="quick mode (~20 s per lesson)")
    run.add_argument("--out", type=Path, default=Path("outputs"), help="gallery folder (default ./outputs)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    args = parser.parse_args(argv)
    if args.command == "list":
        return cmd_list()
    return cmd_run(args.lessons, args.quick, args.out, args.seed, args.device)


if __name__ == "__main__":
    raise SystemExit(main())
