"""Lesson 07's experiments: the numbers behind demo.py's figures and verdicts.

Every function here measures and returns numbers; `demo.py` draws them and says what they show.
Experiments 1-2 time and check the three ways of computing causal attention (full, sliding window,
chunked with an online softmax); experiments 3-5 train small GPTs at a short context L (one per
positional encoding) and read them far beyond it, whole, through a sliding window, or restarted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from llmlab.attention_basics import scaled_dot_product_attention
from llmlab.long_context.sliding_window import (
    PeakMemory,
    chunked_attention,
    loss_per_position,
    sliding_window_attention,
    sliding_window_mask,
    windowed_attention,
)
from llmlab.transformer_block import GPT, llama_config
from llmlab.transformer_block.pretrained import lab_tokenizer
from llmlab.utils import (
    CORPORA,
    History,
    TrainConfig,
    cached_training,
    encode,
    load_corpus,
    train,
    train_val_split,
)

ENCODINGS = ("none", "sinusoidal", "rope", "alibi")
MiB = 2**20


def slope(xs, ys) -> float:
    """The exponent p of y ~ x^p: a least-squares line through (log x, log y)."""
    return float(np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)[0])


def mean_sem(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error over windows."""
    values = values.double()
    return values.mean().item(), (values.std() / math.sqrt(values.numel())).item()


# ----------------------------------------------------------------------------------------------------
# 1. memory and time vs sequence length


def attention_methods(window: int, chunk_size: int, rescale: bool = True) -> dict:
    """name -> fn(q, k, v): the three ways of computing causal attention, and torch's fused kernel."""
    return {
        "full (lesson 03)": lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True)[0],
        f"sliding window {window}": lambda q, k, v: sliding_window_attention(q, k, v, window),
        f"chunked {chunk_size}": lambda q, k, v: chunked_attention(
            q, k, v, causal=True, chunk_size=chunk_size, rescale=rescale),
        "torch fused SDPA": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rss_probe(T: int, n_heads: int, head_dim: int, window: int, chunk_size: int) -> None:
    """Run in a fresh process: print the growth of the OS's peak resident memory during each call.

    Linux's /proc/self/clear_refs resets the peak (VmHWM) to the current RSS; MALLOC_MMAP_THRESHOLD_
    (set by the caller) makes glibc return every large freed block to the OS, so that memory freed by
    one call is not silently reused by the next one.
    """
    def status() -> dict:
        with open("/proc/self/status") as f:
            return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f)
                    if k in ("VmRSS", "VmHWM")}

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, n_heads, T, head_dim) for _ in range(3))
    growth = {}
    with torch.no_grad():
        for name, fn in list(attention_methods(window, chunk_size).items())[:3]:
            fn(q, k, v)  # warm-up: one-time allocations of the kernels
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = status()["VmRSS"]
            out = fn(q, k, v)
            growth[name] = status()["VmHWM"] - before
            del out
    print(json.dumps(growth))


def rss_check(cfg: dict, window: int, chunk_size: int, device: torch.device) -> dict | str | None:
    """The tracker's peaks checked against the operating system, in a fresh process (Linux, CPU only):
    name -> bytes, None when not run, or the error text when the probe failed."""
    if cfg["rss_size"] is None or device.type != "cpu" or not os.path.exists("/proc/self/clear_refs"):
        return None
    sizes = f"{cfg['rss_size']}, {cfg['n_heads']}, {cfg['head_dim']}, {window}, {chunk_size}"
    code = f"from llmlab.long_context.experiments import rss_probe; rss_probe({sizes})"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return str(proc.stderr.strip().splitlines()[-1:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def attention_cost(cfg: dict, *, window: int, chunk_size: int, rescale: bool, budget_mib: int, seed: int,
                   device: torch.device, quick: bool) -> dict:
    """Peak memory (every tensor torch allocates during the call, MiB) and wall time (s) of each method
    for growing T; the sizes skipped because their predicted memory exceeds the budget (MiB); the max
    |difference| from full attention (the window: from masked full attention); the fitted exponents;
    the OS's view of the peaks, checked in a fresh process (full runs on Linux)."""
    methods = attention_methods(window, chunk_size, rescale)
    budget = budget_mib * MiB
    H, D = cfg["n_heads"], cfg["head_dim"]
    memory, seconds, skipped, errors = ({name: {} for name in methods} for _ in range(4))
    for T in cfg["sizes"]:
        gen = torch.Generator().manual_seed(seed)
        q, k, v = (torch.randn(1, H, T, D, generator=gen).to(device) for _ in range(3))
        if T <= cfg["check_max_T"]:  # the references the outputs must equal: full attention, masked or not
            with torch.no_grad():
                references = [scaled_dot_product_attention(q, k, v, causal=True)[0],
                              scaled_dot_product_attention(q, k, v, mask=sliding_window_mask(
                                  T, window, device=device))[0]]
        for i, (name, fn) in enumerate(methods.items()):
            done = sorted(memory[name])
            if len(done) >= 2:  # predict from the measured growth of the last two sizes
                t1, t2 = done[-2], done[-1]
                exponent = math.log(memory[name][t2] / memory[name][t1]) / math.log(t2 / t1)
                predicted = memory[name][t2] * (T / t2) ** exponent
                if predicted > budget:
                    skipped[name][T] = predicted / MiB
                    continue
            with torch.no_grad():
                with PeakMemory() as mem:
                    out = fn(q, k, v)
                _sync(device)
                memory[name][T] = mem.peak_bytes
                if T <= cfg["check_max_T"]:
                    errors[name][T] = (out - references[1 if i == 1 else 0]).abs().max().item()
                del out
                repeats = 3 if T <= 2048 and not quick else 1  # the memory run was the warm-up
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    fn(q, k, v)
                    _sync(device)
                    times.append(time.perf_counter() - start)
                seconds[name][T] = min(times)
    rss = rss_check(cfg, window, chunk_size, device)
    names = list(methods)
    tail = [T for T in cfg["sizes"] if T >= cfg["fit_from"]]  # small T: fixed costs, not the asymptote
    mem_slope = {n: slope(sorted(t for t in memory[n] if t in tail),
                          [memory[n][t] for t in sorted(memory[n]) if t in tail])
                 for n in names[:3] if len([t for t in memory[n] if t in tail]) >= 2}
    time_slope = {n: slope(sorted(t for t in seconds[n] if t in tail),
                           [seconds[n][t] for t in sorted(seconds[n]) if t in tail])
                  for n in names if len([t for t in seconds[n] if t in tail]) >= 2}
    result = {"shape": {"batch": 1, "n_heads": H, "head_dim": D, "dtype": "float32"},
              "threads": torch.get_num_threads(), "budget_mib": budget_mib,
              "peak_mib": {n: {t: b / MiB for t, b in memory[n].items()} for n in names[:3]},
              "seconds": seconds, "skipped_predicted_mib": skipped, "max_abs_diff_vs_full": errors,
              "memory_exponent": mem_slope, "time_exponent": time_slope, "rss_check_mib": None,
              "names": names, "rss_error": rss if isinstance(rss, str) else None}
    if isinstance(rss, dict):
        result["rss_check_mib"] = {n: {"os_peak_rss_growth": rss[n] / MiB,
                                       "tracker": (memory[n].get(cfg["rss_size"]) or 0) / MiB} for n in rss}
    return result


# ----------------------------------------------------------------------------------------------------
# 2. chunked attention is exact


def exactness(cfg: dict, *, seed: int, broken: bool) -> dict:
    """Largest |chunked - torch SDPA| for each chunk size, float32 and float64, and lesson 03's full
    attention for scale; `broken` adds chunked attention without the online-softmax rescaling."""
    T, D = cfg["exact_T"], cfg["head_dim"]
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, 2, T, D, generator=gen, dtype=torch.float64) * 2 for _ in range(3))
    series = {}
    with torch.no_grad():
        for dtype in (torch.float32, torch.float64):
            qd, kd, vd = q.to(dtype), k.to(dtype), v.to(dtype)
            reference = F.scaled_dot_product_attention(qd, kd, vd, is_causal=True)
            name = f"chunked, {str(dtype).removeprefix('torch.')}"
            series[name] = [(chunked_attention(qd, kd, vd, chunk_size=c) - reference).abs().max().item()
                            for c in cfg["exact_chunks"]]
            if dtype == torch.float32:
                ours = scaled_dot_product_attention(qd, kd, vd, causal=True)[0]
                series["lesson 03 full, float32"] = [(ours - reference).abs().max().item()] * len(
                    cfg["exact_chunks"])
        if broken:
            series["chunked WITHOUT rescaling, float64"] = [
                (chunked_attention(q, k, v, chunk_size=c, rescale=False)
                 - F.scaled_dot_product_attention(q, k, v, is_causal=True)).abs().max().item()
                for c in cfg["exact_chunks"]]
    return series


# ----------------------------------------------------------------------------------------------------
# 3-5. small GPTs trained at a short context, read far beyond it


def train_models(cfg: dict, *, train_len: int, corpus: str, seed: int,
                 device: torch.device) -> tuple[dict, torch.Tensor]:
    """One small Llama-style GPT per positional encoding at block_size L = train_len, plus rope at 4 L
    (cached): name -> {"model", "history", "cache_hit", "block_size"}, and the validation tokens."""
    text = load_corpus(corpus, cfg["n_chars"], seed=seed)
    tokenizer = lab_tokenizer(text)
    train_text, val_text = train_val_split(text, 0.1)
    train_data, val_data = encode(train_text, tokenizer), encode(val_text, tokenizer)
    corpus_key = {"name": corpus if corpus in CORPORA else "file",
                  "sha256": hashlib.sha256(text.encode()).hexdigest()}  # by content, not by path
    L = train_len
    runs = {pos: (pos, L, cfg["batch_size"]) for pos in ENCODINGS}
    # the same tokens per step (batch x length) and the same steps: only the context length differs
    runs[f"rope @ {4 * L}"] = ("rope", 4 * L, max(1, cfg["batch_size"] // 4))
    models = {}
    for name, (pos, block, batch) in runs.items():
        config = llama_config(vocab_size=len(tokenizer.vocab), block_size=block, n_layer=2, n_head=4,
                              d_model=64, pos=pos)
        recipe = TrainConfig(steps=cfg["steps"], batch_size=batch, block_size=block, lr=3e-3,
                             warmup_steps=max(1, cfg["steps"] // 10), eval_interval=max(1, cfg["steps"] // 5),
                             eval_iters=10)
        key = {"what": "long_context_gpt", "config": config.cache_key(), "train": asdict(recipe),
               "corpus": corpus_key, "tokenizer": "bpe-gpt4-split-1024", "seed": seed}

        def build(config=config):
            torch.manual_seed(seed)
            return GPT(config)

        def fit(model, recipe=recipe, name=name) -> History:
            return train(model, train_data, val_data, recipe, device=device, seed=seed, desc=f"train {name}")

        model, history, hit = cached_training(key, build, fit)
        models[name] = {"model": model.to(device).eval(), "history": history, "cache_hit": hit,
                        "block_size": block}
    return models, val_data


def sinusoidal_table_ratio(model: GPT, seed: int) -> float:
    """Mean length of the fixed sinusoidal table's rows / of the token vectors at init (both scaled)."""
    torch.manual_seed(seed)
    init = GPT(model.config).tok_emb.weight * model.config.embedding_scale  # token vectors at init
    return model.pos_table.norm(dim=-1).mean().item() / init.norm(dim=-1).mean().item()


def context_collapse(cfg: dict, train_len: int, models: dict, val_data: torch.Tensor) -> dict:
    """Loss at each position of inputs eval_factor x longer than the training context L: every window's
    curve, and (mean, SE over windows) of the loss inside (L/2..L-1), beyond (past the model's own
    block size) and their paired difference ("rise"); rope trained at 4 L against rope at L."""
    L = train_len
    length = cfg["eval_factor"] * L
    per_window = {name: loss_per_position(m["model"], val_data, length, cfg["n_windows"], reduce=False)
                  for name, m in models.items()}  # (n_windows, length) each
    inside, beyond, rise = {}, {}, {}
    for name, losses in per_window.items():
        block = models[name]["block_size"]
        inside_w = losses[:, L // 2:L].mean(1)  # positions with at least L/2 tokens of context
        beyond_w = losses[:, max(L, block):].mean(1) if max(L, block) < length else None
        inside[name] = mean_sem(inside_w)
        if beyond_w is not None:
            beyond[name] = mean_sem(beyond_w)
            rise[name] = mean_sem(beyond_w - inside_w)  # paired: the same windows
    out = {"length": length, "per_window": per_window, "inside": inside, "beyond": beyond, "rise": rise}
    long_name = f"rope @ {4 * L}"
    if long_name in per_window:
        short_w = per_window["rope"][:, L:4 * L].mean(1)
        long_w = per_window[long_name][:, L:4 * L].mean(1)
        out["long"] = {"short_mean": short_w.mean(), "long_mean": long_w.mean(),
                       "gain": mean_sem(short_w - long_w),
                       "short_in": mean_sem(per_window["rope"][:, L // 2:L].mean(1)
                                            - per_window[long_name][:, L // 2:L].mean(1))}
    return out


def window_losses(cfg: dict, train_len: int, models: dict, val_data: torch.Tensor, full_curves: dict) -> dict:
    """Each short-trained model read at eval_factor x L with every window: {name: {window: curve}}.

    full_curves: experiment 3's curves (the same windows of data) are the window=None entries."""
    length = cfg["eval_factor"] * train_len
    windows = sorted(set(cfg["windows"] + [train_len]))
    curves = {}
    for name, m in models.items():
        if "@" in name:
            continue
        curves[name] = {}
        for window in windows:
            with windowed_attention(m["model"], window):
                curves[name][window] = loss_per_position(m["model"], val_data, length, cfg["n_windows"])
        curves[name][None] = full_curves[name]
    return curves


def long_documents(train_len: int, curves: dict) -> dict:
    """Mean loss on documents of growing length D, three ways to read a document longer than L."""
    L = train_len
    length = next(iter(next(iter(curves.values())).values())).numel()
    doc_lengths = [d for d in (L // 4, L // 2, L, 2 * L, 4 * L, 8 * L) if 1 <= d <= length]
    strategies = {}
    for name, by_window in curves.items():
        full, window = by_window[None], by_window[L]
        restart = full[torch.arange(length) % L]  # restart every L tokens: position t has t mod L of context
        # causal models: the loss at position t ignores what follows, so a D-token document's mean loss is
        # the mean of positions 0..D-1 of the per-position curve
        strategies[name] = {
            "read it all (extrapolate)": [full[:d].mean().item() for d in doc_lengths],
            f"sliding window {L}": [window[:d].mean().item() for d in doc_lengths],
            f"restart every {L}": [restart[:d].mean().item() for d in doc_lengths],
        }
    return {"doc_lengths": doc_lengths, "mean_loss": strategies}


def window_gain(strategies: dict, L: int) -> tuple[dict, str]:
    """At the longest document, how much lower (nats) each model's loss is with a window of L than reading
    it all, and the model that gains most."""
    gap = {name: s["read it all (extrapolate)"][-1] - s[f"sliding window {L}"][-1]
           for name, s in strategies.items()}
    return gap, max(gap, key=gap.get)


def best_strategy(series: dict, L: int) -> tuple[str, float]:
    """The way to read the longest document with the lowest mean loss, and that loss."""
    return min(("read it all", series["read it all (extrapolate)"][-1]),
               ("sliding window", series[f"sliding window {L}"][-1]),
               ("restart", series[f"restart every {L}"][-1]), key=lambda item: item[1])


def window_size(train_len: int, curves: dict, tolerance: float) -> dict:
    """Loss vs window inside the training length (what a small window forgets) and beyond it; the
    smallest window within `tolerance` nats of full attention; what a window of L saves beyond L."""
    L = train_len
    windows = [w for w in next(iter(curves.values())) if w is not None]
    spans = {"inside": slice(L // 2, L), "beyond": slice(L, None)}
    table = {part: {name: {("full" if w is None else w): c[span].mean().item() for w, c in by_w.items()}
                    for name, by_w in curves.items()} for part, span in spans.items()}
    small = min(windows)
    return {"windows": windows, "loss": table,
            "small_window_cost": {n: table["inside"][n][small] - table["inside"][n]["full"] for n in curves},
            "smallest_window_as_good": {n: min((w for w in windows if table["inside"][n][w]
                                                <= table["inside"][n]["full"] + tolerance), default=None)
                                        for n in curves},
            "window_L_saves_beyond": {n: table["beyond"][n]["full"] - table["beyond"][n][L] for n in curves},
            "tolerance": tolerance}
