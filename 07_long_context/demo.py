"""Lesson 07 demo: long context, measured.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--window W] [--chunk-size C] [--train-len L] [--mem-budget-mb M] [--no-rescale]
                   [--corpus stories|python-docs|python-code|PATH]

Experiments (each prints its numbers and draws one figure into outputs/):
 1. attention_cost.png    peak memory and time vs sequence length T of full, sliding-window and
                          chunked attention (log-log, with the fitted exponents)
 2. exactness.png         chunked attention == full attention: the largest difference vs chunk size
 3. context_collapse.png  loss vs position for small GPTs trained at L tokens with each positional
                          encoding (none, sinusoidal, rope, alibi), read up to 8 L tokens; and a rope
                          model trained at 4 L
 4. long_documents.png    mean loss on documents of growing length: read it all at once (extrapolate),
                          with a sliding window of L, or restart every L tokens
 5. window_size.png       loss vs the attention window, inside and beyond the training length
Break flags:
 --no-rescale     chunked attention without the online-softmax correction e^(m - m'): the output is wrong
 --window W       the window of sliding-window attention in experiment 1 (default 256)
 --chunk-size C   the key chunk of chunked attention in experiment 1 (default 128)
 --train-len L    the context length the small GPTs are trained at (default 64)
 --mem-budget-mb  skip the sizes whose predicted peak memory exceeds this (default 1024)
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from llmlab.attention_basics import scaled_dot_product_attention
    from llmlab.long_context import (
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
        Demo,
        History,
        TrainConfig,
        cached_training,
        encode,
        load_corpus,
        plotting,
        train,
        train_val_split,
    )


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, torch, F, scaled_dot_product_attention, PeakMemory, chunked_attention, loss_per_position
    global sliding_window_attention, sliding_window_mask, windowed_attention, GPT, llama_config
    global lab_tokenizer, Demo, History, TrainConfig, cached_training, encode, load_corpus, plotting
    global train, train_val_split, CORPORA
    import numpy as np
    import torch
    import torch.nn.functional as F

    from llmlab.attention_basics import scaled_dot_product_attention
    from llmlab.long_context import (
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
        Demo,
        History,
        TrainConfig,
        cached_training,
        encode,
        load_corpus,
        plotting,
        train,
        train_val_split,
    )


ENCODINGS = ("none", "sinusoidal", "rope", "alibi")
MiB = 2**20


def settings(quick: bool) -> dict:
    if quick:
        # rss_size None: no fresh-process RSS check (starting a second Python with torch costs seconds)
        return dict(sizes=[256, 512, 1024], fit_from=512, n_heads=1, head_dim=64, rss_size=None,
                    check_max_T=1024, exact_T=512, exact_chunks=[16, 64, 256, 512],
                    n_chars=100_000, steps=20, batch_size=8, eval_factor=4, n_windows=16,
                    windows=[4])
    return dict(sizes=[256, 512, 1024, 2048, 4096, 8192, 16384], fit_from=1024, n_heads=1, head_dim=64,
                rss_size=4096, check_max_T=2048, exact_T=2048, exact_chunks=[16, 64, 256, 1024, 2048],
                n_chars=1_000_000, steps=600, batch_size=16, eval_factor=8, n_windows=96,
                windows=[4, 8, 16, 32, 64])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _slope(xs, ys) -> float:
    """The exponent p of y ~ x^p: a least-squares line through (log x, log y)."""
    return float(np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)[0])


def _attention_methods(args) -> dict:
    """name -> fn(q, k, v): the three ways of computing causal attention, and torch's fused kernel."""
    return {
        "full (lesson 03)": lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True)[0],
        f"sliding window {args.window}": lambda q, k, v: sliding_window_attention(q, k, v, args.window),
        f"chunked {args.chunk_size}": lambda q, k, v: chunked_attention(
            q, k, v, causal=True, chunk_size=args.chunk_size, rescale=not args.no_rescale),
        "torch fused SDPA": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }


# ----------------------------------------------------------------------------------------------------
# 1. memory and time vs sequence length


def rss_probe(T: int, n_heads: int, head_dim: int, window: int, chunk_size: int) -> None:
    """Run in a fresh process: print the growth of the OS's peak resident memory during each call.

    Linux's /proc/self/clear_refs resets the peak (VmHWM) to the current RSS; MALLOC_MMAP_THRESHOLD_
    (set by the caller) makes glibc return every large freed block to the OS, so that memory freed by
    one call is not silently reused by the next one.
    """
    import json

    load_libraries()  # a fresh process imports only this function: torch and the lessons come from here

    def status() -> dict:
        with open("/proc/self/status") as f:
            return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f)
                    if k in ("VmRSS", "VmHWM")}

    class Args:
        pass

    args = Args()
    args.window, args.chunk_size, args.no_rescale = window, chunk_size, False
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, n_heads, T, head_dim) for _ in range(3))
    growth = {}
    with torch.no_grad():
        for name, fn in list(_attention_methods(args).items())[:3]:
            fn(q, k, v)  # warm-up: one-time allocations of the kernels
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = status()["VmRSS"]
            out = fn(q, k, v)
            growth[name] = status()["VmHWM"] - before
            del out
    print(json.dumps(growth))


def _rss_check(demo: Demo, cfg: dict, args) -> dict | None:
    """The tracker's peaks checked against the operating system, in a fresh process (Linux only)."""
    if cfg["rss_size"] is None or demo.device.type != "cpu" or not os.path.exists("/proc/self/clear_refs"):
        return None
    sizes = f"{cfg['rss_size']}, {cfg['n_heads']}, {cfg['head_dim']}, {args.window}, {args.chunk_size}"
    code = f"from llmlab.long_context.demo import rss_probe; rss_probe({sizes})"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        demo.say(f"   (RSS check failed, skipped: {proc.stderr.strip().splitlines()[-1:]})")
        return None
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])


def attention_cost(demo: Demo, cfg: dict, args) -> dict:
    """Peak memory (every tensor torch allocates during the call) and wall time, for growing T."""
    methods = _attention_methods(args)
    budget = args.mem_budget_mb * MiB
    H, D = cfg["n_heads"], cfg["head_dim"]
    memory = {name: {} for name in methods}
    seconds = {name: {} for name in methods}
    skipped = {name: {} for name in methods}
    errors = {name: {} for name in methods}
    for T in cfg["sizes"]:
        gen = torch.Generator().manual_seed(demo.seed)
        q, k, v = (torch.randn(1, H, T, D, generator=gen).to(demo.device) for _ in range(3))
        if T <= cfg["check_max_T"]:  # the references the outputs must equal: full attention, masked or not
            with torch.no_grad():
                references = [scaled_dot_product_attention(q, k, v, causal=True)[0],
                              scaled_dot_product_attention(q, k, v, mask=sliding_window_mask(
                                  T, args.window, device=demo.device))[0]]
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
                _sync(demo.device)
                memory[name][T] = mem.peak_bytes
                if T <= cfg["check_max_T"]:
                    errors[name][T] = (out - references[1 if i == 1 else 0]).abs().max().item()
                del out
                repeats = 3 if T <= 2048 and not demo.quick else 1  # the memory run was the warm-up
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    fn(q, k, v)
                    _sync(demo.device)
                    times.append(time.perf_counter() - start)
                seconds[name][T] = min(times)
    rss = _rss_check(demo, cfg, args)

    names = list(methods)
    full, window, chunked, fused = names
    tail = [T for T in cfg["sizes"] if T >= cfg["fit_from"]]  # small T: fixed costs, not the asymptote
    mem_slope = {n: _slope(sorted(t for t in memory[n] if t in tail),
                           [memory[n][t] for t in sorted(memory[n]) if t in tail])
                 for n in names[:3] if len([t for t in memory[n] if t in tail]) >= 2}
    time_slope = {n: _slope(sorted(t for t in seconds[n] if t in tail),
                            [seconds[n][t] for t in sorted(seconds[n]) if t in tail])
                  for n in names if len([t for t in seconds[n] if t in tail]) >= 2}

    fig, (ax_mem, ax_time) = plotting.new_figure(1, 2, figsize=(12.5, 4.8))
    for i, name in enumerate(names[:3]):
        ts = sorted(memory[name])
        label = f"{name}: ~T^{mem_slope[name]:.2f}" if name in mem_slope else name
        ax_mem.plot(ts, [memory[name][t] / MiB for t in ts], "o-", color=plotting.PALETTE[i], label=label)
        if skipped[name]:
            ts_skip = sorted(skipped[name])
            ax_mem.plot(ts_skip, [skipped[name][t] for t in ts_skip], "x--", color=plotting.PALETTE[i],
                        label=f"{name}: skipped, predicted > {args.mem_budget_mb} MiB")
    if rss:
        ax_mem.plot([cfg["rss_size"]] * len(rss), [v / MiB for v in rss.values()], "s", mfc="none",
                    mec="black", ms=10, label="check: OS peak RSS growth (fresh process)")
    ax_mem.axhline(args.mem_budget_mb, color="gray", ls=":", lw=1)
    ax_mem.text(cfg["sizes"][0], args.mem_budget_mb * 1.15, f"budget {args.mem_budget_mb} MiB", fontsize=8,
                color="gray")
    ax_mem.set(yscale="log", xlabel="sequence length T (tokens)",
               ylabel="peak memory allocated during the call (MiB)",
               title=f"Memory: full ~T^{mem_slope.get(full, float('nan')):.1f}, "
                     f"window and chunked ~T^{mem_slope.get(chunked, float('nan')):.1f}")
    ax_mem.set_xscale("log", base=2)
    ax_mem.legend(fontsize=8)
    for i, name in enumerate(names):
        ts = sorted(seconds[name])
        label = f"{name}: ~T^{time_slope[name]:.2f}" if name in time_slope else name
        ax_time.plot(ts, [seconds[name][t] * 1e3 for t in ts], "o-" if i < 3 else "o:",
                     color=plotting.PALETTE[i], label=label)
    ax_time.set(yscale="log", xlabel="sequence length T (tokens)", ylabel="wall time per call (ms)",
                title=f"Time: chunked is still ~T^{time_slope.get(chunked, float('nan')):.1f} "
                      f"(same FLOPs), window ~T^{time_slope.get(window, float('nan')):.1f}")
    ax_time.set_xscale("log", base=2)
    ax_time.legend(fontsize=8)
    fig.suptitle(f"Causal attention, 1 sequence x {H} head x head_dim {D}, float32, "
                 f"{torch.get_num_threads()} thread(s), {demo.device}", fontweight="bold")
    demo.save_figure(fig, "attention_cost.png")

    result = {"shape": {"batch": 1, "n_heads": H, "head_dim": D, "dtype": "float32"},
              "threads": torch.get_num_threads(), "budget_mib": args.mem_budget_mb,
              "peak_mib": {n: {t: b / MiB for t, b in memory[n].items()} for n in names[:3]},
              "seconds": seconds, "skipped_predicted_mib": skipped, "max_abs_diff_vs_full": errors,
              "memory_exponent": mem_slope, "time_exponent": time_slope, "rss_check_mib": None}
    demo.say("\n1. Memory and time of causal attention vs sequence length "
             f"(1 x {H} head x {D}, float32, {torch.get_num_threads()} thread(s)).")
    demo.say("   Memory = peak bytes of the tensors torch allocates inside the call (a TorchDispatchMode "
             "tracker; tracemalloc cannot see torch's C++ allocations).")
    for n in names[:3]:
        row = ", ".join(f"T={t}: {memory[n][t] / MiB:.1f}" for t in sorted(memory[n]))
        demo.say(f"   {n:<22} MiB  {row}")
        for t, mib in sorted(skipped[n].items()):
            demo.say(f"   {'':<22} skipped T={t}: predicted {mib:.0f} MiB > budget {args.mem_budget_mb} MiB")
    for n in names:
        row = ", ".join(f"{seconds[n][t] * 1e3:.0f}" for t in sorted(seconds[n]))
        demo.say(f"   {n:<22} ms   {row}")
    if rss:
        tracked = {n: memory[n].get(cfg["rss_size"]) for n in rss}
        result["rss_check_mib"] = {n: {"os_peak_rss_growth": rss[n] / MiB,
                                       "tracker": (tracked[n] or 0) / MiB} for n in rss}
        demo.say(f"   Check at T={cfg['rss_size']}: OS peak-RSS growth in a fresh process vs the tracker: "
                 + "; ".join(f"{n.split()[0]} {rss[n] / MiB:.1f} vs {(tracked[n] or 0) / MiB:.1f} MiB"
                             for n in rss))
    worst = {n: max(errors[n].values()) for n in names if errors[n]}
    demo.say(f"   Outputs checked up to T={cfg['check_max_T']} against full attention (the window against "
             "full attention with sliding_window_mask), max |difference|: "
             + ", ".join(f"{n} {e:.1e}" + (" <- WRONG" if e > 1e-4 else "") for n, e in worst.items()) + ".")
    if full in mem_slope and chunked in mem_slope and window in mem_slope:
        quadratic = mem_slope[full] > 1.8 and max(mem_slope[window], mem_slope[chunked]) < 1.2
        verdict = "supports" if quadratic else "does NOT support"
        demo.say(f"   Memory exponents: full {mem_slope[full]:.2f}, window {mem_slope[window]:.2f}, "
                 f"chunked {mem_slope[chunked]:.2f}: this {verdict} 'full attention is O(n^2) in memory, "
                 "the window and chunked versions O(n)'.")
        if full in skipped and skipped[full]:
            largest = max(memory[full])
            demo.say(f"   Full attention stopped at T={largest}: the next size was predicted to need "
                     f"{min(skipped[full].values()):.0f} MiB; the chunked version ran to "
                     f"T={max(memory[chunked])} in {memory[chunked][max(memory[chunked])] / MiB:.0f} MiB.")
        scores_128k = memory[full][max(memory[full])] / MiB * (131072 / max(memory[full])) ** mem_slope[full]
        demo.say(f"   Extrapolating the fit, full attention at 128k tokens would need "
                 f"{scores_128k / 1024:.0f} GiB per head for this one call.")
    if chunked in time_slope and window in time_slope:
        chunked_says = "still ~quadratic: it saves memory, not FLOPs" if time_slope[chunked] > 1.5 \
            else "well below 2 at these sizes"
        window_says = "~linear: it skips the work outside the band" if 0.7 <= time_slope[window] < 1.3 \
            else "below linear: fixed costs dominate these sizes" if time_slope[window] < 0.7 \
            else "above linear at these sizes"
        demo.say(f"   Time exponents: chunked {time_slope[chunked]:.2f} ({chunked_says}), "
                 f"window {time_slope[window]:.2f} ({window_says}).")
        if fused in seconds and max(seconds[chunked]) in seconds[fused]:
            t = max(seconds[chunked])
            demo.say(f"   torch's fused C++ kernel (the same online softmax) is "
                     f"{seconds[chunked][t] / seconds[fused][t]:.1f}x faster than our Python loop at T={t}.")
    if demo.quick:
        demo.say("   (quick mode: small sizes only, the exponents are rough)")
    return result


# ----------------------------------------------------------------------------------------------------
# 2. chunked attention is exact


def exactness(demo: Demo, cfg: dict, args) -> dict:
    """Largest |chunked - full| vs chunk size, float32 and float64; --no-rescale adds the broken version."""
    T, D = cfg["exact_T"], cfg["head_dim"]
    gen = torch.Generator().manual_seed(demo.seed)
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
        broken = "chunked WITHOUT rescaling, float64"
        if args.no_rescale:
            series[broken] = [
                (chunked_attention(q, k, v, chunk_size=c, rescale=False)
                 - F.scaled_dot_product_attention(q, k, v, is_causal=True)).abs().max().item()
                for c in cfg["exact_chunks"]]
    floor = 1e-18  # exact zeros cannot sit on a log axis
    fig, ax = plotting.new_figure(figsize=(7.5, 4.6))
    styles = {"lesson 03 full, float32": {"ls": ":", "marker": None}}
    plotting.line_plot(ax, cfg["exact_chunks"], {n: [max(e, floor) for e in s] for n, s in series.items()},
                       logx=True, logy=True, styles=styles, xlabel="chunk size (keys per step)",
                       ylabel="max |out - torch SDPA| over all outputs",
                       title=f"Chunked attention is exact: error {max(series['chunked, float32']):.0e} "
                             f"(float32), {max(series['chunked, float64']):.0e} (float64)")
    ax.set_xscale("log", base=2)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 0.12))  # between the rounding errors and float64
    if args.no_rescale:
        ax.set_title(ax.get_title() + f";\nwithout rescaling: {max(series[broken]):.0e} (wrong)")
    demo.save_figure(fig, "exactness.png")
    demo.say(f"\n2. Chunked (online-softmax) attention vs torch's F.scaled_dot_product_attention, causal, "
             f"T={T}, chunk sizes {cfg['exact_chunks']}:")
    for name, errs in series.items():
        demo.say(f"   {name:<36} max error " + ", ".join(f"{e:.1e}" for e in errs))
    if args.no_rescale:
        bad = max(series[broken])
        demo.say(f"   --no-rescale: without the e^(m - m') correction the error is {bad:.2f} "
                 "(wrong, not rounding): each chunk's sums were taken against a different max.")
    return {"T": T, "chunk_sizes": cfg["exact_chunks"], "max_abs_error": series}


# ----------------------------------------------------------------------------------------------------
# 3-5. small GPTs trained at a short context, read far beyond it


def train_models(demo: Demo, cfg: dict, args) -> tuple[dict, torch.Tensor]:
    """One small Llama-style GPT per positional encoding at block_size L, plus rope at 4 L (cached)."""
    text = load_corpus(args.corpus, cfg["n_chars"], seed=demo.seed)
    tokenizer = lab_tokenizer(text)
    train_text, val_text = train_val_split(text, 0.1)
    train_data, val_data = encode(train_text, tokenizer), encode(val_text, tokenizer)
    corpus_key = {"name": args.corpus if args.corpus in CORPORA else "file",
                  "sha256": hashlib.sha256(text.encode()).hexdigest()}  # by content, not by path
    L = args.train_len
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
               "corpus": corpus_key, "tokenizer": "bpe-gpt4-split-1024",
               "seed": demo.seed}

        def build(config=config):
            torch.manual_seed(demo.seed)
            return GPT(config)

        def fit(model, recipe=recipe, name=name) -> History:
            return train(model, train_data, val_data, recipe, device=demo.device, seed=demo.seed,
                         desc=f"train {name}")

        model, history, hit = cached_training(key, build, fit)
        models[name] = {"model": model.to(demo.device).eval(), "history": history, "cache_hit": hit,
                        "block_size": block}
    demo.say(f"\n   Trained {len(models)} GPTs (Llama-style, 2 layers, d_model 64, 4 heads) on "
             f"{cfg['n_chars'] // 1000} kB of {args.corpus}, {cfg['steps']} steps of {cfg['batch_size'] * L} "
             "tokens: "
             + ", ".join(f"{n} val {m['history'].final_val_loss:.2f}"
                         + (" (cached)" if m["cache_hit"] else "") for n, m in models.items()))
    val = {n: m["history"].final_val_loss for n, m in models.items() if "@" not in n}
    if "sinusoidal" in val and val["sinusoidal"] > min(val.values()) + 0.5:
        model = models["sinusoidal"]["model"]
        table = model.pos_table  # (block_size, d_model), fixed
        torch.manual_seed(demo.seed)
        init = GPT(model.config).tok_emb.weight * model.config.embedding_scale  # token vectors at init
        ratio = table.norm(dim=-1).mean().item() / init.norm(dim=-1).mean().item()
        demo.say(f"   sinusoidal trains {val['sinusoidal'] - min(val.values()):.2f} nats worse than the best "
                 f"(val {val['sinusoidal']:.2f}); its fixed table rows are {ratio:.2f}x the length of the "
                 f"token vectors at init (embeddings scaled by sqrt(d_model), as Vaswani et al. do).")
    if demo.quick:
        demo.say(f"   (quick mode: {cfg['steps']} steps, the models are barely trained; run without --quick "
                 "for the real curves)")
    return models, val_data


def _quick_note(demo: Demo) -> str:
    return "\n(quick mode: barely trained models, the differences are noise)" if demo.quick else ""


def _mean_sem(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error over windows."""
    values = values.double()
    return values.mean().item(), (values.std() / math.sqrt(values.numel())).item()


def context_collapse(demo: Demo, cfg: dict, args, models: dict, val_data: torch.Tensor) -> dict:
    """Loss at each position of inputs eval_factor x longer than the training context."""
    L = args.train_len
    length = cfg["eval_factor"] * L
    per_window = {name: loss_per_position(m["model"], val_data, length, cfg["n_windows"], reduce=False)
                  for name, m in models.items()}  # (n_windows, length) each
    inside, beyond, rise = {}, {}, {}
    for name, losses in per_window.items():
        block = models[name]["block_size"]
        inside_w = losses[:, L // 2:L].mean(1)  # positions with at least L/2 tokens of context
        beyond_w = losses[:, max(L, block):].mean(1) if max(L, block) < length else None
        inside[name] = _mean_sem(inside_w)
        if beyond_w is not None:
            beyond[name] = _mean_sem(beyond_w)
            rise[name] = _mean_sem(beyond_w - inside_w)  # paired: the same windows

    width = max(1, L // 8)
    fig, ax = plotting.new_figure(figsize=(9, 5))
    for i, (name, losses) in enumerate(per_window.items()):
        curve = losses.mean(0)
        binned = curve[: length // width * width].view(-1, width).mean(1)
        centres = np.arange(binned.numel()) * width + width / 2
        ax.plot(centres, binned.numpy(), "-" if "@" not in name else "--", color=plotting.PALETTE[i],
                label=f"{name} (trained at {models[name]['block_size']})")
    ax.axvline(L, color="black", ls=":", lw=1)
    ax.text(L, ax.get_ylim()[1], f" training length {L}", va="top", fontsize=8)
    ax.axvline(4 * L, color="gray", ls=":", lw=1)
    ax.text(4 * L, ax.get_ylim()[1], f" {4 * L}", va="top", fontsize=8, color="gray")
    ranked = sorted((n for n in rise if "@" not in n), key=lambda n: -rise[n][0])
    ax.set(xlabel="position in the input (tokens)",
           ylabel=f"next-token loss (nats, mean of {width} positions)",
           title=f"Loss past the training length {L} minus inside it: "
                 + ", ".join(f"{n} {rise[n][0]:+.2f}" for n in ranked) + " nats" + _quick_note(demo))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    demo.save_figure(fig, "context_collapse.png")

    demo.say(f"\n3. Context collapse: loss at positions {L}..{length - 1} (beyond the training length) minus "
             f"loss at {L // 2}..{L - 1}, same {cfg['n_windows']} windows, mean ± standard error:")
    threshold = 0.05
    collapsed = []
    for name in rise:
        mean, sem = rise[name]
        significant = mean > max(threshold, 3 * sem)
        if significant and "@" not in name:
            collapsed.append(name)
        block = models[name]["block_size"]
        demo.say(f"   {name:<12} inside {inside[name][0]:.3f}, beyond {beyond[name][0]:.3f}: "
                 f"{mean:+.3f} ± {sem:.3f} nats" + ("  <- collapses" if significant else "")
                 + (f"  (beyond = {block}..{length - 1}, its own training length)" if block != L else ""))
    held = [n for n in rise if "@" not in n and n not in collapsed]
    caveat = " (quick mode: barely trained models, treat as noise)" if demo.quick else ""
    if collapsed:
        demo.say(f"   'Performance drops beyond the training length' holds for {', '.join(collapsed)}"
                 + (f"; not for {', '.join(held)}" if held else "")
                 + f" (rise > {threshold} nats and > 3 SE)." + caveat)
    else:
        demo.say(f"   No encoding lost more than {threshold} nats beyond the training length: this run does "
                 "NOT show context collapse." + caveat)
    if collapsed and "alibi" in held:
        demo.say("   ALiBi was designed for this (Press et al. 2022, 'Train Short, Test Long'): its distance "
                 "penalty makes far keys fade instead of turning into unseen positions.")
    long_name = f"rope @ {4 * L}"
    result = {"train_len": L, "eval_len": length, "n_windows": cfg["n_windows"],
              "loss_per_position": {n: losses.mean(0) for n, losses in per_window.items()},
              "inside_mean_sem": inside, "beyond_mean_sem": beyond, "rise_mean_sem": rise,
              "collapsed": collapsed, "val_loss": {n: m["history"].final_val_loss for n, m in models.items()}}
    if long_name in per_window:
        span = slice(L, 4 * L)
        short_w = per_window["rope"][:, span].mean(1)
        long_w = per_window[long_name][:, span].mean(1)
        gain = _mean_sem(short_w - long_w)
        short_in = _mean_sem(per_window["rope"][:, L // 2:L].mean(1)
                             - per_window[long_name][:, L // 2:L].mean(1))
        result["train_long_gain_mean_sem"] = gain
        demo.say(f"   At positions {L}..{4 * L - 1}, rope trained at {4 * L} has loss {long_w.mean():.3f} vs "
                 f"{short_w.mean():.3f} for rope trained at {L} (extrapolating): {gain[0]:+.3f} ± "
                  f"{gain[1]:.3f} nats in its favour. Inside {L // 2}..{L - 1}: {short_in[0]:+.3f} ± "
                 f"{short_in[1]:.3f} (both saw the same tokens, in sequences of {4 * L} vs {L}).")
        if gain[0] > 3 * gain[1] and gain[0] > 0:
            demo.say("   Supports 'extrapolation is hard; better to train on long sequences'." + caveat)
        else:
            demo.say("   Does NOT support 'better to train on long sequences' in this run." + caveat)
    return result


def window_losses(cfg: dict, args, models: dict, val_data: torch.Tensor, full_curves: dict) -> dict:
    """Each short-trained model read at eval_factor x L with every window: {name: {window: curve}}.

    full_curves: experiment 3's curves (the same windows of data) are the window=None entries."""
    length = cfg["eval_factor"] * args.train_len
    windows = sorted(set(cfg["windows"] + [args.train_len]))
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


def long_documents(demo: Demo, args, curves: dict) -> dict:
    """Mean loss on documents of growing length D, three ways to read a document longer than L."""
    L = args.train_len
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
    fig, axes = plotting.new_figure(1, len(strategies), figsize=(4.2 * len(strategies), 4.4))
    for ax, (name, series) in zip(np.atleast_1d(axes), strategies.items(), strict=True):
        plotting.line_plot(ax, doc_lengths, series, logx=True, xlabel="document length (tokens)",
                           ylabel="mean loss over the document (nats)", title=f"pos = {name}")
        ax.set_xscale("log", base=2)
        ax.axvline(L, color="black", ls=":", lw=1)
        ax.legend(fontsize=7)
    longest = doc_lengths[-1]
    gap = {n: s["read it all (extrapolate)"][-1] - s[f"sliding window {L}"][-1]
           for n, s in strategies.items()}
    worst = max(gap, key=gap.get)
    headline = (f"a window of {L} beats reading it all by {gap[worst]:.2f} nats for {worst}" if gap[worst] > 0
                else f"reading it all is never worse than a window of {L} here")
    fig.suptitle(f"{longest}-token documents: {headline}" + _quick_note(demo), fontweight="bold")
    demo.save_figure(fig, "long_documents.png")
    demo.say(f"\n4. Loss on documents of growing length ({doc_lengths}), three ways to read one longer than "
             f"the training length {L} (from the per-position losses of the runs of experiment 5):")
    for name, series in strategies.items():
        demo.say(f"   {name:<11} " + "; ".join(f"{s}: {v[-1]:.3f}" for s, v in series.items())
                 + f"  (at {longest} tokens)")
    for name, series in strategies.items():
        window_loss, restart_loss = series[f"sliding window {L}"][-1], series[f"restart every {L}"][-1]
        full_loss = series["read it all (extrapolate)"][-1]
        best = min(("read it all", full_loss), ("sliding window", window_loss), ("restart", restart_loss),
                   key=lambda item: item[1])
        demo.say(f"   {name}: best on {longest}-token documents is '{best[0]}' ({best[1]:.3f} nats)"
                 + (" (quick mode: barely trained models, differences are noise)" if demo.quick else ""))
    return {"doc_lengths": doc_lengths, "mean_loss": strategies}


def window_size(demo: Demo, cfg: dict, args, curves: dict) -> dict:
    """Loss vs window: inside the training length (what a small window forgets) and beyond it."""
    L = args.train_len
    windows = [w for w in next(iter(curves.values())) if w is not None]
    spans = {"inside": slice(L // 2, L), "beyond": slice(L, None)}
    table = {part: {name: {("full" if w is None else w): c[span].mean().item() for w, c in by_w.items()}
                    for name, by_w in curves.items()} for part, span in spans.items()}
    fig, axes = plotting.new_figure(1, 2, figsize=(12, 4.6))
    x_full = windows[-1] * 2  # where "full attention" sits on the window axis
    for ax, (part, rows) in zip(axes, table.items(), strict=True):
        for i, (name, row) in enumerate(rows.items()):
            ax.plot(windows, [row[w] for w in windows], "o-", color=plotting.PALETTE[i], label=name)
            ax.plot([x_full], [row["full"]], "*", ms=12, color=plotting.PALETTE[i])
        ax.set_xscale("log", base=2)
        ax.set_xticks(windows + [x_full], labels=[str(w) for w in windows] + ["full"])
        ax.axvline(L, color="black", ls=":", lw=1)
        where = f"positions {L // 2}..{L - 1} (inside training length)" if part == "inside" else \
            f"positions {L}..{cfg['eval_factor'] * L - 1} (beyond it)"
        ax.set(xlabel="attention window (tokens per layer; star = full causal attention)",
               ylabel="mean next-token loss (nats)", title=where)
        ax.legend(fontsize=8)
    tolerance = 0.02  # nats: "as good as full attention"
    small = min(windows)
    cost = {n: table["inside"][n][small] - table["inside"][n]["full"] for n in curves}
    enough = {n: min((w for w in windows if table["inside"][n][w] <= table["inside"][n]["full"] + tolerance),
                     default=None) for n in curves}
    saved = {n: table["beyond"][n]["full"] - table["beyond"][n][L] for n in curves}
    best_saved = max(saved, key=saved.get)
    rope_enough = enough.get("rope")
    fig.suptitle((f"rope needs a window of only {rope_enough} (within {tolerance} nats of full attention); "
                  if rope_enough is not None else "")
                 + f"beyond the training length a window of {L} saves {best_saved} "
                   f"{saved[best_saved]:.2f} nats" + _quick_note(demo), fontweight="bold")
    demo.save_figure(fig, "window_size.png")
    demo.say(f"\n5. Sliding-window attention on the trained models (every layer sees its last W tokens; "
             f"2 layers reach 2(W-1) back), read at {cfg['eval_factor'] * L} tokens:")
    for part in table:
        demo.say(f"   {part} the training length:")
        for name, row in table[part].items():
            demo.say(f"     {name:<11} " + ", ".join(f"W={w}: {v:.3f}" for w, v in row.items()))
    caveat = " (quick mode: barely trained models, differences are noise)" if demo.quick else ""

    def effect(name: str) -> str:
        left = table["beyond"][name][L] - table["inside"][name]["full"]  # what is left of the collapse
        if saved[name] <= 0.05:
            return ""
        if left <= 0.05:
            return f" (no collapse left: {left:+.3f} vs inside)"
        return f" (less collapse, but still {left:+.3f} vs inside)"

    for name in curves:
        found = f"W={enough[name]}" if enough[name] is not None else f"no window below {L}"
        demo.say(f"   {name}: inside the training length, {found} is within {tolerance} nats of full "
                 f"attention (W={small} costs {cost[name]:+.3f}); beyond it, W={L} changes the loss by "
                 f"{-saved[name]:+.3f} nats vs full attention" + effect(name) + caveat)
    return {"windows": windows, "loss": table, "small_window_cost": cost, "smallest_window_as_good": enough,
            "window_L_saves_beyond": saved, "tolerance": tolerance}


def main(argv: list[str] | None = None) -> None:
    parser = demo_parser(__doc__)
    parser.add_argument("--window", type="positive_int", default=256,
                        help="sliding window in experiment 1 (tokens)")
    parser.add_argument("--chunk-size", type="positive_int", default=128,
                        help="key chunk of chunked attention")
    parser.add_argument("--train-len", type="positive_int", default=64,
                        help="context length of the small GPTs")
    parser.add_argument("--mem-budget-mb", type="positive_int", default=1024,
                        help="skip sizes whose predicted peak memory exceeds this many MiB")
    parser.add_argument("--no-rescale", action="store_true",
                        help="break the online softmax: no e^(m - m') correction of earlier chunks")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="the small GPTs' text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    for name in ("window", "chunk_size", "train_len", "mem_budget_mb"):
        if getattr(args, name) < 1 or (name == "train_len" and getattr(args, name) < 8):
            parser.error(f"--{name.replace('_', '-')} must be >= {8 if name == 'train_len' else 1}")
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    demo.results["settings"] = cfg
    demo.results["attention_cost"] = demo.timed("attention_cost", attention_cost, demo, cfg, args)
    demo.results["exactness"] = demo.timed("exactness", exactness, demo, cfg, args)
    models, val_data = demo.timed("train_models", train_models, demo, cfg, args)
    demo.results["context_collapse"] = demo.timed("context_collapse", context_collapse, demo, cfg, args,
                                                  models, val_data)
    curves = demo.timed("window_losses", window_losses, cfg, args, models, val_data,
                   demo.results["context_collapse"]["loss_per_position"])
    demo.results["long_documents"] = demo.timed("long_documents", long_documents, demo, args, curves)
    demo.results["window_size"] = demo.timed("window_size", window_size, demo, cfg, args, curves)
    seconds = demo.results["experiment_seconds"]
    demo.say("\n   Wall time per experiment (s): " + ", ".join(f"{k} {v}" for k, v in seconds.items()))
    demo.finish()


if __name__ == "__main__":
    main()
