"""Lesson 09's experiments: the measurements behind demo.py, as functions that return numbers and draw
nothing (the demo prints them, draws each figure and says what they show).

1. `measure_kv_memory`     KV-cache and weight bytes at published model shapes (Llama-2-7B, Llama-3-8B,
                           Mistral-7B), and the Llama-2-7B shape with fewer K/V heads
2. `measure_decode_speed`  time per decoded token against a long KV cache: three attention kernels, and
                           the whole lab GPT with lesson 06's KVCache
3. `measure_quality`       the trained lab Llama converted to fewer K/V heads (mean-pooled or first head),
                           held-out loss before and after uptraining
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
import torch.nn.functional as F

from llmlab.attention_basics import scaled_dot_product_attention
from llmlab.gqa.gqa import grouped_attention, repeat_kv
from llmlab.kv_cache import KVCache, kv_cache_bytes  # lesson 06: the cache and its size formula
from llmlab.transformer_block import GPT, gpt_mha_to_gqa, llama_config
from llmlab.utils import TrainConfig, estimate_loss, train

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



def measure_kv_memory(lab_config) -> dict:
    """KV-cache bytes (fp16, batch 1) per token, at 4k and 32k tokens, and fp16 weight bytes of each of
    REAL_MODELS; the Llama-2-7B shape with 32 .. 1 K/V heads: its 32k-token cache and how many such
    sequences fit beside the weights in GPU_MEMORY_BYTES."""
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
    ratio = rows["Llama-2-7B"]["kv_bytes_32k"] / rows["Llama-3-8B"]["kv_bytes_32k"]
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

def measure_decode_speed(cfg: dict, device, seed: int) -> dict:
    """The attention kernels and the whole lab GPT (both kernels settings at `context` cached tokens,
    kernels="torch" at `short_context`), with the speed-ups over MHA and the cache's share of the bytes
    a decode step reads."""
    T, B = cfg["context"], cfg["batch"]
    kernels = attention_kernels(cfg, device)
    long_by_kernel = model_decode(cfg, device, T, seed, kernels=MODEL_KERNELS)
    long = long_by_kernel["torch"]  # the lab GPT's default kernels
    short = model_decode(cfg, device, cfg["short_context"], seed)["torch"]
    kvs = cfg["speed_kv_heads"]
    mha, mqa = kvs[0], kvs[-1]
    k_speed = {name: s[mha] / s[mqa] for name, s in kernels.items()}
    # speed-up over MHA at every K/V-head count, per kernel
    per_kv = {name: {n: s[mha] / s[n] for n in kvs} for name, s in kernels.items()}
    one_head = torch.randn(1, 1, 4, 8)
    repeat_is_view = repeat_kv(one_head, 8).data_ptr() == one_head.data_ptr()  # MQA: expand of a size-1 dim
    long_ms = {n: r["ms_per_token"] for n, r in long.items()}
    long_ms_by_kernel = {k: {n: r["ms_per_token"] for n, r in rs.items()} for k, rs in long_by_kernel.items()}
    short_ms = {n: r["ms_per_token"] for n, r in short.items()}

    def cache_share(r: dict) -> float:  # the cache's share of the bytes one decode step reads (fp32)
        return r["cache_bytes_fp32"] / (r["cache_bytes_fp32"] + r["weight_bytes_fp32"])

    return {"context": T, "batch": B, "device": str(device), "threads": torch.get_num_threads(),
            "attention_ms": kernels, "attention_speedup_mha_over_mqa": k_speed,
            "attention_speedup_over_mha": per_kv, "repeat_kv_one_head_is_a_view": repeat_is_view,
            "model_ms_per_token_long": long_ms, "model_ms_per_token_short": short_ms,
            "model_ms_per_token_long_by_kernels": long_ms_by_kernel,
            "model_speedup_long": long_ms[mha] / long_ms[mqa],
            "model_speedup_short": short_ms[mha] / short_ms[mqa],
            "cache_share_of_bytes_long": cache_share(long[mha]),
            "cache_share_of_bytes_short": cache_share(short[mha])}


# ----------------------------------------------------------------------------------------------------
# 3. quality: convert the trained MHA lab model, uptrain, compare


def unigram_loss(train_data: torch.Tensor, val_data: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of an add-one unigram model: the loss of a model that ignores context."""
    counts = torch.bincount(train_data, minlength=vocab_size).double() + 1.0
    log_p = (counts / counts.sum()).log()
    return float(-log_p[val_data].mean())

def measure_quality(cfg: dict, lab, device, seed: int, *, progress: bool = True) -> dict:
    """The trained MHA lab model `lab` converted to each of cfg["quality_kv_heads"] K/V heads by each of
    cfg["methods"]: held-out loss right after conversion and after uptraining (cfg["uptrain_frac"] of the
    lab model's steps), against the MHA model given the same uptraining and a unigram model."""
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
        history = train(model, lab.train_data, None, config, device=device, seed=seed + 1,
                        progress=progress, desc="uptrain")
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

    for r in rows.values():
        r["kept_after_uptraining"] = kept(r["uptrained"])
        r["kept_after_conversion"] = kept(r["converted"])
        r["cache_fraction"] = kv_per_token[r["n_kv_heads"]] / kv_per_token[n_head]
    best_mqa = min((r for r in rows.values() if r["n_kv_heads"] == 1), key=lambda r: r["uptrained"])
    mean_better = None
    if "first" in cfg["methods"]:
        mean_better = all(rows[f"mean/{n}"]["converted"] < rows[f"first/{n}"]["converted"]
                          for n in cfg["quality_kv_heads"])
    ppl2 = math.exp(rows["mean/2"]["uptrained"] - mha_up) - 1 if "mean/2" in rows else float("nan")
    return {"base_steps": base_steps, "uptrain_steps": up_steps, "mha_loss": mha_loss,
            "mha_uptrained": mha_up,
            "unigram_loss": unigram, "kv_bytes_per_token_fp16": kv_per_token, "conversions": rows,
            "mean_beats_first_after_conversion": mean_better,
            "mqa_kept_after_uptraining": best_mqa["kept_after_uptraining"],
            "mqa_perplexity_increase": math.exp(best_mqa["uptrained"] - mha_up) - 1,
            "gqa2_perplexity_increase": ppl2, "mha_uptrain_curve": mha_curve}
