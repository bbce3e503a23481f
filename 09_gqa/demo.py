"""Lesson 09 demo: grouped-query attention — what it saves (cache memory), what it buys (decode speed,
when decoding is memory-bound) and what it costs (quality, before and after uptraining).

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--uptrain-frac F] [--context N] [--batch N]

Experiments (each prints its numbers and draws one figure):
 1. kv_memory.png          KV-cache bytes of Llama-2-7B (MHA), Llama-3-8B and Mistral-7B (GQA, 8 KV heads) at
                           4k and 32k tokens in fp16, against their weights; and the Llama-2-7B shape with
                           32 .. 1 KV heads: how many 32k-token sequences fit beside the weights in 80 GB
 2. decode_speed.png       time per decoded token with a long KV cache on this machine, for 8/4/2/1 KV heads:
                           the attention alone (three kernels: repeat_kv + attention, which copies the cache;
                           the grouped fold, which reads it once; torch's enable_gqa), and the whole lab GPT
                           (lesson 06's KVCache) with kernels="torch" (enable_gqa) and kernels="lab"
                           (repeat_kv) at a long context, and with kernels="torch" at a short one
 3. quality_vs_cache.png   the trained lab Llama (4 heads) converted to 2 and 1 KV heads by mean-pooling
                           (Ainslie et al. 2023) or by keeping each group's first head: held-out loss right
                           after conversion and after uptraining for ~5% of the original steps, against the
                           MHA model given the same extra training
Break flags:
 --uptrain-frac F   uptraining steps as a fraction of the lab model's training steps (default 0.05;
                    0 = no uptraining: the converted models as they come out of the conversion)
 --context N        cached tokens in the decode-speed experiment (default 2048, quick 256)
 --batch N          sequences decoded at once in the decode-speed experiment (default 8, quick 2)
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import compare

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from llmlab.attention_basics import scaled_dot_product_attention
    from llmlab.gqa import grouped_attention, repeat_kv
    from llmlab.kv_cache import KVCache, kv_cache_bytes  # lesson 06: the cache and its size formula
    from llmlab.transformer_block import GPT, gpt_mha_to_gqa, llama_config
    from llmlab.transformer_block.pretrained import lab_model
    from llmlab.utils import Demo, TrainConfig, estimate_loss, plotting, train


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, torch, F, scaled_dot_product_attention, gpt_mha_to_gqa, grouped_attention, repeat_kv
    global KVCache, kv_cache_bytes, GPT, llama_config, lab_model, Demo, TrainConfig, estimate_loss
    global plotting, train
    import numpy as np
    import torch
    import torch.nn.functional as F

    from llmlab.attention_basics import scaled_dot_product_attention
    from llmlab.gqa import grouped_attention, repeat_kv
    from llmlab.kv_cache import KVCache, kv_cache_bytes  # lesson 06: the cache and its size formula
    from llmlab.transformer_block import GPT, gpt_mha_to_gqa, llama_config
    from llmlab.transformer_block.pretrained import lab_model
    from llmlab.utils import Demo, TrainConfig, estimate_loss, plotting, train


GIB = 2**30
GPU_MEMORY_BYTES = 80e9  # an 80 GB accelerator (A100/H100 80GB), for the "sequences that fit" count

# Published shapes, from each model's config.json on the Hugging Face Hub:
#   meta-llama/Llama-2-7b-hf:    hidden 4096, 32 layers, 32 heads, 32 KV heads, d_ff 11008, vocab 32000
#   meta-llama/Meta-Llama-3-8B:  hidden 4096, 32 layers, 32 heads,  8 KV heads, d_ff 14336, vocab 128256
#   mistralai/Mistral-7B-v0.1:   hidden 4096, 32 layers, 32 heads,  8 KV heads, d_ff 14336, vocab 32000
# (head_dim = 4096 / 32 = 128 for all three). Llama-2-7B is plain MHA; GQA came with Llama-2-70B,
# Llama-3 (all sizes) and Mistral 7B. Mistral also slides a 4096-token window (lesson 07); here its
# cache is counted without the window, as a full-attention cache.
REAL_MODELS = {
    "Llama-2-7B": dict(n_layer=32, n_head=32, n_kv_head=32, d_model=4096, d_ff=11008, vocab_size=32000,
                       block_size=4096),
    "Llama-3-8B": dict(n_layer=32, n_head=32, n_kv_head=8, d_model=4096, d_ff=14336, vocab_size=128256,
                       block_size=8192, rope_base=500000.0),
    "Mistral-7B": dict(n_layer=32, n_head=32, n_kv_head=8, d_model=4096, d_ff=14336, vocab_size=32000,
                       block_size=32768),
}
CONTEXTS = (4096, 32768)


def settings(quick: bool, args) -> dict:
    """Sizes of every experiment (quick: seconds on a 2-core CPU; full: a few minutes)."""
    context = args.context or (256 if quick else 2048)
    batch = args.batch or (2 if quick else 8)
    return dict(
        # decode speed: a random-weight lab Llama (timing does not need trained weights), 8 query heads
        speed_model=dict(vocab_size=1024, n_layer=4, n_head=8, d_model=256),
        speed_kv_heads=(8, 4, 2, 1), context=context, short_context=64, batch=batch,
        speed_reps=3 if quick else 15, kernel_reps=5 if quick else 40,
        # quality: the lab Llama has 4 heads, so 4 (MHA), 2 and 1 (MQA) KV heads
        quality_kv_heads=(2, 1), methods=("mean", "first"), uptrain_frac=args.uptrain_frac,
        eval_iters=2 if quick else 20, eval_batch=8 if quick else 16, uptrain_lr=1e-3,
    )


def fmt_bytes(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / 2**20:.1f} MiB"


# ----------------------------------------------------------------------------------------------------
# 1. KV-cache memory at real model shapes


def weight_bytes(config, bytes_per_param: int = 2) -> int:
    """fp16 bytes of a Llama-style model's weights: embeddings, untied lm_head, per layer q/k/v/o, the
    three SwiGLU matrices and two RMSNorm gains, the final norm (the demo checks the formula against
    GPT.num_parameters() of the lab model)."""
    d, kv = config.d_model, config.kv_heads * config.head_dim
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * config.ffn_dim + 2 * d
    embeddings = config.vocab_size * d * (1 if config.tie_embeddings else 2)
    return (embeddings + config.n_layer * per_layer + d) * bytes_per_param


def kv_memory(demo: Demo, lab_config) -> dict:
    # the formula of weight_bytes against the lab model's actual parameter count
    lab_params = GPT(lab_config).num_parameters()
    assert weight_bytes(lab_config, 1) == lab_params, (weight_bytes(lab_config, 1), lab_params)

    rows = {}
    for name, shape in REAL_MODELS.items():
        config = llama_config(norm_eps=1e-5, **shape)
        rows[name] = {
            "n_kv_heads": config.kv_heads, "head_dim": config.head_dim,
            "weights_bytes_fp16": weight_bytes(config),
            "kv_bytes_per_token": kv_cache_bytes(config, 1),
            **{f"kv_bytes_{t // 1024}k": kv_cache_bytes(config, t) for t in CONTEXTS},
        }
    # the Llama-2-7B shape with fewer K/V heads: the cache shrinks by n_head / n_kv_head, the weights barely
    sweep = {}
    for n_kv in (32, 16, 8, 4, 2, 1):
        config = llama_config(norm_eps=1e-5, **{**REAL_MODELS["Llama-2-7B"], "n_kv_head": n_kv})
        per_seq = kv_cache_bytes(config, 32768)
        free = GPU_MEMORY_BYTES - weight_bytes(config)
        sweep[n_kv] = {"kv_bytes_32k": per_seq, "weights_bytes_fp16": weight_bytes(config),
                       "seqs_32k_in_80GB": int(free // per_seq)}

    demo.say("\n1. KV-cache memory, fp16, batch 1 (2 · n_layer · n_kv_heads · head_dim · tokens · 2 bytes):")
    for name, r in rows.items():
        demo.say(f"   {name:11s} {r['n_kv_heads']:2d} KV heads: "
                 f"{r['kv_bytes_per_token'] / 1024:.0f} KiB/token, "
                 f"{fmt_bytes(r['kv_bytes_4k'])} at 4k, {fmt_bytes(r['kv_bytes_32k'])} at 32k "
                 f"(weights {fmt_bytes(r['weights_bytes_fp16'])})")
    l2, l3 = rows["Llama-2-7B"], rows["Llama-3-8B"]
    ratio = l2["kv_bytes_32k"] / l3["kv_bytes_32k"]
    demo.say(f"   -> Llama-3-8B's 8 KV heads make its cache {ratio:.0f}x smaller than Llama-2-7B's at the "
             f"same head_dim and depth.")
    if l2["kv_bytes_32k"] > l2["weights_bytes_fp16"]:
        demo.say(f"   -> At 32k tokens one Llama-2-7B sequence needs more cache "
                 f"({fmt_bytes(l2['kv_bytes_32k'])}) than the whole model's weights "
                 f"({fmt_bytes(l2['weights_bytes_fp16'])}): at long context the cache, not the model, "
                 f"limits the batch.")
    demo.say(f"   -> 32k-token sequences that fit beside the fp16 weights in {GPU_MEMORY_BYTES / 1e9:.0f} "
             "GB: "
             + ", ".join(f"{n} KV heads: {s['seqs_32k_in_80GB']}" for n, s in sweep.items()))

    fig, axes = plotting.new_figure(1, 2, figsize=(12.5, 4.6))
    ax = axes[0]
    names = list(rows)
    x = np.arange(len(names))
    for i, t in enumerate(CONTEXTS):
        vals = [rows[n][f"kv_bytes_{t // 1024}k"] / GIB for n in names]
        bars = ax.bar(x + (i - 0.5) * 0.35, vals, 0.35, label=f"KV cache at {t // 1024}k tokens",
                      color=plotting.PALETTE[i])
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=8, padding=2)
    ax.scatter(x, [rows[n]["weights_bytes_fp16"] / GIB for n in names], marker="_", s=900, color="k",
               linewidths=2, label="fp16 weights", zorder=3)
    ax.set_xticks(x, labels=[f"{n}\n({rows[n]['n_kv_heads']} KV heads)" for n in names])
    ax.set_ylabel("memory per sequence (GiB, fp16)")
    ax.set_title(f"GQA (8 KV heads) cuts the cache {ratio:.0f}x:\n{l2['kv_bytes_32k'] / GIB:.0f} GiB -> "
                 f"{l3['kv_bytes_32k'] / GIB:.0f} GiB per 32k-token sequence")
    ax.legend(loc="upper right")
    ax = axes[1]
    kvs = list(sweep)
    ax.plot(kvs, [sweep[n]["kv_bytes_32k"] / GIB for n in kvs], marker="o",
            label="KV cache, one 32k sequence")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(kvs, labels=[str(n) for n in kvs])
    ax.invert_xaxis()
    ax.set_xlabel("K/V heads (32 query heads; 32 = MHA, 1 = MQA)")
    ax.set_ylabel("KV cache at 32k tokens (GiB, fp16, log scale)")
    for n in kvs:
        ax.annotate(f"{sweep[n]['seqs_32k_in_80GB']} seq", (n, sweep[n]["kv_bytes_32k"] / GIB),
                    xytext=(4, 6), textcoords="offset points", fontsize=8)
    ax.set_title(f"Llama-2-7B shape, fewer K/V heads: 32k-token sequences beside the weights\n"
                 f"in {GPU_MEMORY_BYTES / 1e9:.0f} GB: {sweep[32]['seqs_32k_in_80GB']} (MHA) -> "
                 f"{sweep[8]['seqs_32k_in_80GB']} (8 KV heads) -> {sweep[1]['seqs_32k_in_80GB']} (MQA)")
    ax.legend(loc="upper right")
    demo.save_figure(fig, "kv_memory.png")
    return {"models": rows, "llama2_shape_sweep": sweep, "llama2_over_llama3_32k": ratio,
            "lab_params_formula_checked": lab_params}


# ----------------------------------------------------------------------------------------------------
# 2. decode speed: when does a smaller cache make decoding faster?


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def attention_kernels(cfg: dict, device) -> dict:
    """The decode attention of all n_layer layers for one new token (1 query per head) against a cache
    of `context` keys per layer, in ms: the fastest of kernel_reps rounds.

    Each layer has its own K/V buffers, as in a real model, so a step reads n_layer caches (the CPU's
    last-level cache holds a small one, which is part of why fewer K/V heads help). The rounds visit
    every (kernel, n_kv_heads) in turn, so load from other processes hits them all alike, and the
    fastest round is the one least disturbed (timeit's advice).
    """
    shape = cfg["speed_model"]
    n_head, head_dim, n_layer = shape["n_head"], shape["d_model"] // shape["n_head"], shape["n_layer"]
    B, T = cfg["batch"], cfg["context"]
    gen = torch.Generator().manual_seed(0)
    kernels = {
        "repeat_kv + attention": lambda q, k, v: F.scaled_dot_product_attention(
            q, repeat_kv(k, q.shape[1] // k.shape[1]), repeat_kv(v, q.shape[1] // k.shape[1])),
        "grouped fold (lesson 09)": lambda q, k, v: grouped_attention(q, k, v)[0],
        "torch enable_gqa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
    }
    layers = {}
    for n_kv in cfg["speed_kv_heads"]:
        layers[n_kv] = [(torch.randn(B, n_head, 1, head_dim, generator=gen).to(device),  # q (B, H, 1, D)
                         torch.randn(B, n_kv, T, head_dim, generator=gen).to(device),  # k (B, H_kv, T, D)
                         torch.randn(B, n_kv, T, head_dim, generator=gen).to(device))  # v
                        for _ in range(n_layer)]
        q, k, v = layers[n_kv][0]
        ref = scaled_dot_product_attention(q, repeat_kv(k, n_head // n_kv), repeat_kv(v, n_head // n_kv))[0]
        for kernel in kernels.values():  # all three compute the same numbers
            torch.testing.assert_close(kernel(q, k, v), ref, rtol=1e-4, atol=1e-4)
    times = {name: {n_kv: [] for n_kv in layers} for name in kernels}
    with torch.no_grad():
        for _ in range(cfg["kernel_reps"] + 1):  # round 0 warms up
            for n_kv, qkvs in layers.items():
                for name, kernel in kernels.items():
                    _sync(device)
                    t0 = time.perf_counter()
                    for q, k, v in qkvs:
                        kernel(q, k, v)
                    _sync(device)
                    times[name][n_kv].append(time.perf_counter() - t0)
    return {name: {n_kv: min(t[1:]) * 1e3 for n_kv, t in series.items()} for name, series in times.items()}


MODEL_KERNELS = ("torch", "lab")  # GPTConfig.kernels: torch's enable_gqa in place / lesson 03 on repeat_kv


def model_decode(cfg: dict, device, context: int, seed: int, kernels: tuple[str, ...] = ("torch",)) -> dict:
    """ms per decoded token of a lab GPT with `context` tokens already cached, per kernels setting and
    n_kv_head: {kernels: {n_kv: {...}}}.

    kernels="torch" (the lab GPT's default) runs F.scaled_dot_product_attention(enable_gqa=True), which
    reads each K/V head in place for its whole group; kernels="lab" runs lesson 03's attention on
    repeat_kv'd K/V, a copy of the cache per step. The cache is filled with random keys/values (timing does
    not depend on their values), then the models decode one token per step in turn, round-robin, so load
    from other processes hits all alike.
    """
    B, reps = cfg["batch"], cfg["speed_reps"]
    models, caches = {}, {}
    for kernel in kernels:
        for n_kv in cfg["speed_kv_heads"]:
            torch.manual_seed(seed)
            config = llama_config(**cfg["speed_model"], n_kv_head=n_kv, block_size=context + reps + 2,
                                  kernels=kernel)
            model = GPT(config).to(device).eval()
            cache = KVCache(config, B, context + reps + 2, device=device)
            gen = torch.Generator().manual_seed(seed)
            for layer in range(config.n_layer):
                kv_shape = (B, n_kv, context, config.head_dim)
                cache.update(layer, torch.randn(kv_shape, generator=gen).to(device),
                             torch.randn(kv_shape, generator=gen).to(device))
            models[kernel, n_kv], caches[kernel, n_kv] = model, cache
    times = {key: [] for key in models}
    ids = torch.zeros(B, 1, dtype=torch.long, device=device)
    with torch.no_grad():
        for step in range(reps + 1):
            for key, model in models.items():
                position = torch.tensor([caches[key].length], device=device)
                _sync(device)
                t0 = time.perf_counter()
                model(ids, positions=position, kv_cache=caches[key], allow_longer=True)
                _sync(device)
                if step > 0:  # step 0 warms up
                    times[key].append(time.perf_counter() - t0)
    return {kernel: {n_kv: {"ms_per_token": min(times[kernel, n_kv]) * 1e3,  # fastest: least disturbed
                            "cache_bytes_fp32": kv_cache_bytes(models[kernel, n_kv].config, context, B,
                                                               torch.float32),
                            "weight_bytes_fp32": models[kernel, n_kv].num_parameters() * 4}
                     for n_kv in cfg["speed_kv_heads"]}
            for kernel in kernels}


def model_kernel_sentence(kernel: str, ms: dict, mha: int, context: int, band: float = 0.1) -> str:
    """What the whole lab GPT's decode times with one kernels setting show, from the measurement:
    ms = {n_kv_heads: ms per token}. A K/V-head count is slower or faster than MHA only beyond `band`
    (10% of the MHA time by default: timings on a shared CPU move by that much)."""
    noise = band * ms[mha]
    items, slower = [], []
    for n in ms:
        if n == mha:
            continue
        outcome = compare(ms[n], ms[mha], noise)
        if outcome == "b":
            slower.append(n)
            items.append(f"{n} K/V heads {ms[n] / ms[mha]:.1f}x SLOWER")
        elif outcome == "a":
            items.append(f"{n} K/V heads {ms[mha] / ms[n]:.1f}x faster")
        else:
            items.append(f"{n} K/V heads no measurable difference ({ms[mha] / ms[n]:.2f}x, "
                         f"within {band:.0%})")
    text = (f"kernels={kernel!r}, whole lab GPT vs {mha} K/V heads at {context} cached tokens: "
            + ", ".join(items))
    if slower and kernel == "lab":
        copied = [n for n in slower if n > 1]
        if copied:
            text += (f": repeat_kv copies the cache back to every query head on each step for "
                     f"{', '.join(map(str, copied))} K/V heads (see the kernels above)")
        if 1 in slower:
            text += ("; with 1 K/V head the repeat is a view (no copy, measured above), so that slowdown has "
                     "another cause, which this demo does not isolate")
    elif not slower and kernel == "torch":
        text += ": torch's enable_gqa reads each K/V head in place, so fewer K/V heads cost no copy"
    return text + "."


def decode_speed(demo: Demo, cfg: dict) -> dict:
    device = demo.device
    T, B = cfg["context"], cfg["batch"]
    kernels = attention_kernels(cfg, device)
    long_by_kernel = model_decode(cfg, device, T, demo.seed, kernels=MODEL_KERNELS)
    long = long_by_kernel["torch"]  # the lab GPT's default kernels
    short = model_decode(cfg, device, cfg["short_context"], demo.seed)["torch"]
    kvs = cfg["speed_kv_heads"]
    mha, mqa = kvs[0], kvs[-1]

    def speedup(series: dict) -> float:
        return series[mha] / series[mqa]

    k_speed = {name: speedup(s) for name, s in kernels.items()}
    # speed-up over MHA at every K/V-head count, per kernel and for the whole model
    per_kv = {name: {n: s[mha] / s[n] for n in kvs} for name, s in kernels.items()}
    one_head = torch.randn(1, 1, 4, 8)
    repeat_is_view = repeat_kv(one_head, 8).data_ptr() == one_head.data_ptr()  # MQA: expand of a size-1 dim
    long_ms = {n: r["ms_per_token"] for n, r in long.items()}
    long_ms_by_kernel = {k: {n: r["ms_per_token"] for n, r in rs.items()} for k, rs in long_by_kernel.items()}
    short_ms = {n: r["ms_per_token"] for n, r in short.items()}
    def cache_share(r: dict) -> float:  # the cache's share of the bytes one decode step reads (fp32)
        return r["cache_bytes_fp32"] / (r["cache_bytes_fp32"] + r["weight_bytes_fp32"])

    long_share, short_share = cache_share(long[mha]), cache_share(short[mha])
    demo.say(f"\n2. Decode speed on {device} ({torch.get_num_threads()} threads), batch {B}, "
             f"{cfg['speed_model']['n_head']} query heads, head_dim "
             f"{cfg['speed_model']['d_model'] // cfg['speed_model']['n_head']}:")
    demo.say(f"   attention of all {cfg['speed_model']['n_layer']} layers for one new token against {T} "
             f"cached tokens each (ms, fastest of {cfg['kernel_reps']} rounds):")
    for name, series in kernels.items():
        demo.say(f"     {name:26s} " + "  ".join(f"{n} KV: {series[n]:.3f}" for n in kvs)
                 + f"   ({mha}->{mqa} KV heads: {k_speed[name]:.2f}x)")
    demo.say(f"   whole lab GPT (4 layers, lesson 06's KVCache), ms/token at {T} cached tokens:")
    for kernel, ms in long_ms_by_kernel.items():
        how = ("torch's enable_gqa, grouped K/V heads read in place" if kernel == "torch"
               else "lesson 03's attention on repeat_kv'd K/V")
        demo.say(f"     kernels={kernel!r:8s} ({how}): " + ", ".join(f"{n} KV {ms[n]:.2f}" for n in kvs))
    demo.say(f"     at {cfg['short_context']} cached tokens (kernels='torch'): "
             + ", ".join(f"{n} KV {short_ms[n]:.2f}" for n in kvs))
    demo.say(f"   the cache is {long_share:.0%} of the bytes a step reads at {T} tokens (MHA), "
             f"{short_share:.0%} at {cfg['short_context']}.")
    fold, rep = k_speed["grouped fold (lesson 09)"], k_speed["repeat_kv + attention"]
    model_long, model_short = long_ms[mha] / long_ms[mqa], short_ms[mha] / short_ms[mqa]

    def faster(x: float) -> str:
        return f"{x:.2f}x faster" if x >= 1 else f"{1 / x:.2f}x SLOWER"

    demo.say(f"   whole lab GPT, {mha} -> {mqa} KV heads: {faster(model_long)} per token at {T} cached "
             f"tokens (cache = {long_share:.0%} of the bytes a step reads), {faster(model_short)} at "
             f"{cfg['short_context']} ({short_share:.0%}).")
    if demo.quick:
        demo.say("   -> Quick mode: short context and few repeats, the timings are dominated by fixed "
                 "per-call overheads and noise, so no conclusion is drawn; run without --quick (or with "
                 "--context 8192 --batch 16) to see the memory-bound regime.")
    else:
        if fold > 1.5:
            demo.say(f"   -> Reading the cache once per K/V head (the fold) makes the attention {fold:.1f}x "
                     f"faster with {mha // mqa}x fewer K/V heads: decoding attention is memory-bound, its "
                     f"time follows the bytes of cache it reads.")
        else:
            demo.say(f"   -> The fold was only {fold:.2f}x faster with {mha // mqa}x fewer K/V heads here: "
                     f"at this size the attention is not limited by reading the cache (fixed overheads "
                     f"dominate); try --context 8192 --batch 16.")
        rep_per_kv = per_kv["repeat_kv + attention"]
        worst = min((n for n in kvs if n not in (mha, mqa)), key=lambda n: rep_per_kv[n], default=None)
        if worst is not None and rep_per_kv[worst] < 1:
            demo.say(f"   -> repeat_kv makes {worst} K/V heads {1 / rep_per_kv[worst]:.1f}x SLOWER than MHA: "
                     f"it "
                     f"copies every cached K/V head back to {mha} heads on every step, so GQA's saving is "
                     f"spent again"
                     + (f"; with 1 K/V head the repeat is a free view (a size-1 axis expands with stride 0, "
                        f"measured: no copy), which is why MQA escapes it ({rep:.2f}x)." if repeat_is_view
                        else ".")
                     + f" A GQA kernel must not materialise the repeat: the fold "
                       f"({per_kv['grouped fold (lesson 09)'][worst]:.2f}x at {worst} KV heads) and torch's "
                       f"enable_gqa ({per_kv['torch enable_gqa'][worst]:.2f}x) do not.")
        for kernel, ms in long_ms_by_kernel.items():
            demo.say(f"   -> {model_kernel_sentence(kernel, ms, mha, T)}")
        if model_long > 1.2 and model_short < 1.2:
            demo.say("   -> GQA speeds up decoding when the cache is a large share of the bytes each step "
                     "reads (long context, large batch); at a short context the weights dominate and it "
                     "barely matters.")
        elif model_long <= 1.2:
            demo.say(f"   -> The whole lab GPT (kernels='torch') gains little ({model_long:.2f}x) even at "
                     f"{T} tokens: fixed per-layer overheads of a small model on a CPU hide the saving.")

    fig, axes = plotting.new_figure(1, 2, figsize=(12.5, 4.6))
    plotting.line_plot(axes[0], list(kvs), {k: [v[n] for n in kvs] for k, v in kernels.items()},
                       xlabel="K/V heads (8 query heads)",
                       ylabel=f"ms per token, attention of {cfg['speed_model']['n_layer']} layers (fastest)",
                       logy=True,
                       title=f"Decode attention, {T} cached tokens, batch {B}\nspeed-up over MHA at 2 | 1 KV "
                             f"heads: fold {per_kv['grouped fold (lesson 09)'][2]:.1f}x | {fold:.1f}x,\n"
                             f"enable_gqa {per_kv['torch enable_gqa'][2]:.1f}x | "
                             f"{k_speed['torch enable_gqa']:.1f}x, repeat_kv (copies the cache) "
                             f"{per_kv['repeat_kv + attention'][2]:.1f}x | {rep:.1f}x")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(list(kvs), labels=[str(n) for n in kvs])
    axes[0].invert_xaxis()
    model_series = {f"kernels={k!r}, {T} cached tokens": [ms[n] for n in kvs]
                    for k, ms in long_ms_by_kernel.items()}
    model_series[f"kernels='torch', {cfg['short_context']} cached tokens"] = [short_ms[n] for n in kvs]
    plotting.line_plot(axes[1], list(kvs), model_series,
                       xlabel="K/V heads (8 query heads)", ylabel="ms per generated token (fastest step)",
                       title=f"Whole lab GPT, {T} cached tokens: speed-up over MHA\n"
                             + "\n".join(f"kernels={k!r}: " + ", ".join(f"{n} KV {ms[mha] / ms[n]:.2f}x"
                                                                       for n in kvs if n != mha)
                                         for k, ms in long_ms_by_kernel.items())
                             + f"\n(< 1 = slower; at {cfg['short_context']} tokens: {model_short:.2f}x "
                               f"with 1 KV)")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xticks(list(kvs), labels=[str(n) for n in kvs])
    axes[1].invert_xaxis()
    axes[1].set_ylim(bottom=0)
    demo.save_figure(fig, "decode_speed.png")
    return {"context": T, "batch": B, "device": str(device), "threads": torch.get_num_threads(),
            "attention_ms": kernels, "attention_speedup_mha_over_mqa": k_speed,
            "attention_speedup_over_mha": per_kv, "repeat_kv_one_head_is_a_view": repeat_is_view,
            "model_ms_per_token_long": long_ms, "model_ms_per_token_short": short_ms,
            "model_ms_per_token_long_by_kernels": long_ms_by_kernel,
            "model_speedup_long": model_long, "model_speedup_short": model_short,
            "cache_share_of_bytes_long": long_share, "cache_share_of_bytes_short": short_share}


# ----------------------------------------------------------------------------------------------------
# 3. quality: convert the trained MHA lab model, uptrain, compare


def unigram_loss(train_data: torch.Tensor, val_data: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of an add-one unigram model: the loss of a model that ignores context."""
    counts = torch.bincount(train_data, minlength=vocab_size).double() + 1.0
    log_p = (counts / counts.sum()).log()
    return float(-log_p[val_data].mean())


def quality(demo: Demo, cfg: dict, lab) -> dict:
    device = demo.device
    base_steps = len(lab.history.steps)
    up_steps = round(cfg["uptrain_frac"] * base_steps)
    eval_config = TrainConfig(batch_size=cfg["eval_batch"], block_size=lab.config.block_size,
                              eval_iters=cfg["eval_iters"])

    def val_loss(model) -> float:  # the same fixed held-out batches for every model
        return estimate_loss(model, lab.val_data, eval_config, device=device)

    def uptrain(model) -> tuple[GPT, list[float]]:
        if up_steps == 0:
            return model, []
        config = TrainConfig(steps=up_steps, batch_size=cfg["eval_batch"], block_size=lab.config.block_size,
                             lr=cfg["uptrain_lr"], warmup_steps=max(1, up_steps // 10),
                             eval_interval=up_steps, eval_iters=1)
        history = train(model, lab.train_data, None, config, device=device, seed=demo.seed + 1,
                        progress=not demo.quick, desc="uptrain")
        return model, history.train_loss

    n_head = lab.config.n_head
    mha_loss = val_loss(lab.model)
    mha_up_model, mha_curve = uptrain(gpt_mha_to_gqa(lab.model, n_head))  # a copy: same extra training
    mha_up = val_loss(mha_up_model)
    unigram = unigram_loss(lab.train_data, lab.val_data, lab.config.vocab_size)
    kv_per_token = {n: kv_cache_bytes(dataclasses.replace(lab.config, n_kv_head=n), 1)
                    for n in (n_head, *cfg["quality_kv_heads"])}
    rows = {}
    for method in cfg["methods"]:
        for n_kv in cfg["quality_kv_heads"]:
            model = gpt_mha_to_gqa(lab.model, n_kv, method=method)
            converted = val_loss(model)
            model, curve = uptrain(model)
            rows[f"{method}/{n_kv}"] = {"method": method, "n_kv_heads": n_kv, "converted": converted,
                                        "uptrained": val_loss(model), "uptrain_curve": curve}

    def kept(loss: float) -> float:  # share of the MHA model's gain over a unigram model that survives
        return (unigram - loss) / (unigram - mha_up)

    trained = f"barely trained: quick mode, {base_steps} steps" if demo.quick else f"{base_steps} steps"
    demo.say(f"\n3. Quality: the lab Llama ({n_head} heads, {trained}) converted to fewer K/V heads; "
             f"held-out loss (nats/token) on {cfg['eval_iters']} fixed batches. Uptraining: {up_steps} steps "
             f"({cfg['uptrain_frac']:.0%} of {base_steps}), the same for every model.")
    demo.say(f"   MHA ({n_head} KV heads): {mha_loss:.3f}; after the same uptraining {mha_up:.3f}.  "
             f"Unigram model (no context): {unigram:.3f}.")
    for r in rows.values():
        r["kept_after_uptraining"] = kept(r["uptrained"])
        r["kept_after_conversion"] = kept(r["converted"])
        r["cache_fraction"] = kv_per_token[r["n_kv_heads"]] / kv_per_token[n_head]
        demo.say(f"   {r['method']:5s} pooling, {r['n_kv_heads']} KV heads "
                 f"({r['cache_fraction']:.0%} cache): "
                 f"{r['converted']:.3f} converted ({r['converted'] - mha_loss:+.3f}), "
                 f"{r['uptrained']:.3f} uptrained ({r['uptrained'] - mha_up:+.3f} vs MHA uptrained; keeps "
                 f"{r['kept_after_uptraining']:.1%} of MHA's gain over unigram)")
    best_mqa = min((r for r in rows.values() if r["n_kv_heads"] == 1), key=lambda r: r["uptrained"])
    mean_better = None
    if "first" in cfg["methods"]:
        mean_better = all(rows[f"mean/{n}"]["converted"] < rows[f"first/{n}"]["converted"]
                          for n in cfg["quality_kv_heads"])
        caveat = " (quick mode: barely trained, not conclusive)" if demo.quick else ""
        demo.say(f"   -> Mean-pooling {'beats' if mean_better else 'does NOT beat'} keeping the first head "
                 f"right after conversion at every K/V-head count{caveat}; Ainslie et al. 2023 compare "
                 f"the methods after uptraining and find mean-pooling best, then the first head.")
    factor = n_head // best_mqa["n_kv_heads"]
    verdict_kept = best_mqa["kept_after_uptraining"]
    ppl_increase = math.exp(best_mqa["uptrained"] - mha_up) - 1
    claim = "Claim 'GQA maintains most quality with ~4x smaller cache':"
    measured = (f"with a {factor}x smaller cache (MQA from {n_head} heads) and {up_steps} uptraining steps, "
                f"perplexity {ppl_increase:+.1%} vs MHA given the same steps (it keeps {verdict_kept:.1%} of "
                f"MHA's gain over a unigram model)")
    if demo.quick:
        demo.say(f"   -> Quick mode: the base model is barely trained, so these losses say little about GQA; "
                 f"run without --quick to test the claim ({measured}).")
    elif ppl_increase <= 0.05:
        demo.say(f"   -> {claim} SUPPORTED here: {measured}.")
    elif ppl_increase <= 0.15:
        demo.say(f"   -> {claim} PARTLY supported: {measured}; more uptraining may close the gap.")
    else:
        demo.say(f"   -> {claim} NOT supported at this uptraining budget: {measured}. "
                 f"Try --uptrain-frac 0.2.")
    if "first" in cfg["methods"] and up_steps:
        up_better = all(rows[f"mean/{n}"]["uptrained"] < rows[f"first/{n}"]["uptrained"]
                        for n in cfg["quality_kv_heads"])
        verb = "beats" if up_better else "does NOT beat"
        demo.say(f"   -> After uptraining, mean-pooling {verb} keeping the first head at every K/V-head count"
                 + (" (quick mode: not conclusive)." if demo.quick else "."))
    if up_steps and not demo.quick:
        for n_kv in cfg["quality_kv_heads"]:
            r = rows[f"mean/{n_kv}"]
            damage = r["converted"] - mha_loss
            left = r["uptrained"] - mha_up
            r["damage_recovered"] = 1 - left / damage if damage > 0 else float("nan")
        demo.say("   -> Uptraining recovered " + ", ".join(
            f"{rows[f'mean/{n}']['damage_recovered']:.0%} of the conversion's loss increase at {n} KV heads"
            for n in cfg["quality_kv_heads"]) + " (beyond what the same steps gave the MHA model).")

    fig, axes = plotting.new_figure(1, 2, figsize=(12.5, 4.6))
    ax = axes[0]
    fractions = [1.0] + [kv_per_token[n] / kv_per_token[n_head] for n in cfg["quality_kv_heads"]]
    styles = {"mean": dict(color=plotting.PALETTE[0]), "first": dict(color=plotting.PALETTE[1])}
    for method in cfg["methods"]:
        conv = [mha_loss] + [rows[f"{method}/{n}"]["converted"] for n in cfg["quality_kv_heads"]]
        ax.plot(fractions, conv, ls="--", marker="o", label=f"{method}-pooled, right after conversion",
                **styles[method])
        if up_steps:
            up = [mha_up] + [rows[f"{method}/{n}"]["uptrained"] for n in cfg["quality_kv_heads"]]
            ax.plot(fractions, up, ls="-", marker="s", label=f"{method}-pooled + {up_steps} uptraining steps",
                    **styles[method])
    ax.axhline(mha_up, color="k", lw=1, ls=":", label=f"MHA + the same uptraining ({mha_up:.3f})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(fractions, labels=[f"{f:.0%}\n({n} KV)" for f, n in
                                     zip(fractions, (n_head, *cfg["quality_kv_heads"]), strict=True)])
    ax.invert_xaxis()
    ax.set_xlabel("KV cache size (share of MHA's; K/V heads)")
    ax.set_ylabel("held-out loss (nats/token)")
    quick_note = " [quick: barely trained]" if demo.quick else ""
    ppl2 = math.exp(rows["mean/2"]["uptrained"] - mha_up) - 1 if "mean/2" in rows \
        else float("nan")
    ax.set_title(f"Quality vs cache after {up_steps} uptraining steps{quick_note}\nperplexity vs MHA: "
                 f"{ppl2:+.1%} at 2 KV heads (mean-pooled),\n{ppl_increase:+.1%} at a {factor}x smaller "
                 f"cache (MQA)")
    ax.legend(fontsize=8)
    ax = axes[1]
    if up_steps:
        for r in rows.values():
            ax.plot(range(1, len(r["uptrain_curve"]) + 1), r["uptrain_curve"], lw=1.2,
                    ls="-" if r["method"] == "mean" else "--",
                    label=f"{r['method']}-pooled, {r['n_kv_heads']} KV")
        ax.plot(range(1, len(mha_curve) + 1), mha_curve, color="k", lw=1.2, label=f"MHA ({n_head} KV)")
        gaps = [f"{r['method']} {r['n_kv_heads']} KV {r['uptrained'] - mha_up:+.2f}" for r in rows.values()]
        ax.set_title("Uptraining: training loss per step\nfinal held-out gap to MHA (nats/token):\n"
                     + ", ".join(gaps))
        ax.set_xlabel("uptraining step")
        ax.set_ylabel("training loss (nats/token, one batch)")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "--uptrain-frac 0: no uptraining", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Uptraining disabled")
        ax.set_axis_off()
    demo.save_figure(fig, "quality_vs_cache.png")
    return {"base_steps": base_steps, "uptrain_steps": up_steps, "mha_loss": mha_loss,
            "mha_uptrained": mha_up,
            "unigram_loss": unigram, "kv_bytes_per_token_fp16": kv_per_token, "conversions": rows,
            "mean_beats_first_after_conversion": mean_better, "mqa_kept_after_uptraining": verdict_kept,
            "mqa_perplexity_increase": ppl_increase, "gqa2_perplexity_increase": ppl2,
            "mha_uptrain_curve": mha_curve}


def main(argv: list[str] | None = None) -> None:
    parser = demo_parser(__doc__)
    parser.add_argument("--uptrain-frac", type="unit_interval", default=0.05,
                        help="uptraining steps as a fraction of the lab model's steps "
                             "(0 = none; default 0.05)")
    parser.add_argument("--context", type="positive_int", default=None,
                        help="cached tokens for the decode-speed test")
    parser.add_argument("--batch", type="positive_int", default=None,
                        help="sequences decoded at once (decode speed)")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="lab model's text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    if not 0.0 <= args.uptrain_frac <= 1.0:
        parser.error(f"--uptrain-frac must be in [0, 1], got {args.uptrain_frac}")
    for name in ("context", "batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick, args)
    demo.results["settings"] = cfg
    lab = demo.timed("lab_model", lab_model, "llama", quick=demo.quick, device=demo.device, seed=demo.seed,
                     progress=not demo.quick)
    demo.results["kv_memory"] = demo.timed("kv_memory", kv_memory, demo, lab.config)
    demo.results["decode_speed"] = demo.timed("decode_speed", decode_speed, demo, cfg)
    demo.results["quality"] = demo.timed("quality", quality, demo, cfg, lab)
    seconds = demo.results["experiment_seconds"]
    demo.say("\n   Wall time per experiment (s): " + ", ".join(f"{k} {v}" for k, v in seconds.items()))
    demo.finish()


if __name__ == "__main__":
    main()
