"""Lesson 06's experiments: the numbers behind demo.py's figures and verdicts.

Every function here measures and returns numbers; `demo.py` draws them and says what they show:
the time a KV cache saves per generated token and in total (on a random-weight GPT of the lab
model's shape: timing does not depend on training), the bytes it costs against the closed formula,
and how far cheaper caches (int8, a sliding window) move a trained model's logits.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.optimize import nnls

from llmlab.kv_cache.cache import Int8KVCache, KVCache, SlidingWindowKVCache, generate, kv_cache_bytes
from llmlab.transformer_block import GPT, GPTConfig, gpt2_config, llama_config

if TYPE_CHECKING:
    from llmlab.transformer_block.pretrained import LabModel

PROMPT_LEN = 8  # the timing prompt's tokens: token i is generated at position PROMPT_LEN + i


def timing_model(device) -> GPT:
    """The lab GPT-2 shape (4 layers, 128 wide, 1024-token vocab), a 1040-token context, random weights."""
    config = gpt2_config(vocab_size=1024, block_size=1040, n_layer=4, n_head=4, d_model=128)
    return GPT(config).to(device).eval()


def timing_prompt(seed: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1024, (1, PROMPT_LEN), generator=g).to(device)  # (1, 8)


def flops_per_step(config: GPTConfig, n_tokens: int, context: int) -> float:
    """Forward FLOPs of n_tokens new tokens that attend to `context` keys: 2 · params · tokens for the
    matmuls, plus 2 · 2 · n_layer · d_model · tokens · context for QK^T and AV."""
    d, L = config.d_model, config.n_layer
    matmul_params = L * (4 * d * d + 2 * d * config.ffn_dim) + config.vocab_size * d  # blocks + lm_head
    return 2.0 * matmul_params * n_tokens + 4.0 * L * d * n_tokens * context


# ----------------------------------------------------------------------------------------------------
# 1 + 2: time


def time_per_token(cfg: dict, seed: int, device) -> dict:
    """Per-token wall time with the cache (every step of real generations) and without it (the
    uncached step at position t is one forward pass over t tokens: timed at probe positions); the fit
    t(T) = a + b T + c T² of the uncached times.

    Every time is the fastest of `repeats` runs (timeit's rule): other processes on the machine can
    only ever add time, so the minimum is the best estimate of the code's own cost."""
    model = timing_model(device)
    prompt = timing_prompt(seed, device)
    generate(model, prompt, 16)  # warm-up: first calls allocate
    runs = []
    for _ in range(cfg["repeats"]):
        stamps: list[float] = []
        generate(model, prompt, cfg["n_new"], step_times=stamps)
        runs.append(np.diff([0.0, *stamps]))  # (n_new,) seconds per token, token i sits at position 8 + i
    cached = np.min(runs, axis=0)  # (n_new,)
    uncached = []
    with torch.inference_mode():
        for t in cfg["probe_positions"]:
            ids = torch.randint(0, 1024, (1, t), generator=torch.Generator().manual_seed(t)).to(device)
            model(ids)
            times = []
            for _ in range(cfg["repeats"]):
                start = time.perf_counter()
                model(ids)
                times.append(time.perf_counter() - start)
            uncached.append(min(times))
    # a least-squares fit t(T) = a + b T + c T²: a = fixed cost per step, b T = projections and MLP over T
    # tokens, c T² = attention scores; the T² term overtakes the linear one at T* = b / c
    P = np.array(cfg["probe_positions"], dtype=float)
    # non-negative least squares: a cost cannot be negative, and noise must not buy a better fit with one
    a, b, c = nnls(np.stack([np.ones_like(P), P, P**2], 1), np.array(uncached))[0]
    window = max(1, len(cached) // 16)
    cached_first, cached_last = float(np.median(cached[:window])), float(np.median(cached[-window - 1:-1]))
    return dict(cached_s_per_token=cached.tolist(), cached_ms_first=1e3 * cached_first,
                cached_ms_last=1e3 * cached_last, probe_positions=cfg["probe_positions"],
                uncached_s=uncached, fit_a_ms=1e3 * a, fit_b_us_per_token=1e6 * b,
                fit_c_ns_per_token2=1e9 * c, t2_overtakes_linear_at=b / c if c > 0 else float("inf"),
                uncached_over_cached_at_last_probe=uncached[-1] / cached_last,
                n_threads=torch.get_num_threads())


def uncached_total(timing: dict, n: int) -> float:
    """Seconds to generate n tokens without a cache after the 8-token prompt: the per-step times at the
    probe positions, linearly interpolated to every step in between, summed."""
    steps = PROMPT_LEN + np.arange(n)  # the uncached step that produces token i processes 8 + i tokens
    return float(np.interp(steps, timing["probe_positions"], timing["uncached_s"]).sum())


def speedup(cfg: dict, timing: dict, seed: int, device) -> dict:
    """Total time with / without the cache vs generated length, next to the FLOP ratio; the
    interpolated uncached totals checked against real uncached generations."""
    model = timing_model(device)
    cached = np.cumsum(timing["cached_s_per_token"])  # seconds to generate the first n tokens
    prompt = timing_prompt(seed, device)
    checks = {}
    for n in cfg["check_lengths"]:  # the interpolation against real uncached generations
        start = time.perf_counter()
        generate(model, prompt, n, use_cache=False)
        checks[n] = {"measured_s": time.perf_counter() - start, "interpolated_s": uncached_total(timing, n)}
    lengths = [n for n in cfg["lengths"] if n <= len(cached)]
    rows = {n: {"cached_s": float(cached[n - 1]), "uncached_s": uncached_total(timing, n)} for n in lengths}
    for n, row in rows.items():
        row["speedup"] = row["uncached_s"] / row["cached_s"]
        steps = range(PROMPT_LEN, PROMPT_LEN + n)
        row["flop_ratio"] = sum(flops_per_step(model.config, t, t) for t in steps) / \
            sum(flops_per_step(model.config, 1, t) for t in steps)
    return {"by_length": rows, "interpolation_checks": checks}


# ----------------------------------------------------------------------------------------------------
# 3: memory


def real_shapes() -> dict:
    """Published architectures (their caches are counted in fp16)."""
    return {
        "GPT-2 small": gpt2_config(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, d_model=768),
        "Llama-2-7B": llama_config(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, d_model=4096,
                                   d_ff=11008),
        "Llama-3-8B (GQA, 8 K/V heads)": llama_config(vocab_size=128256, block_size=8192, n_layer=32,
                                                       n_head=32, n_kv_head=8, d_model=4096, d_ff=14336),
    }


def n_parameters(config: GPTConfig) -> int:
    """The lab GPT's parameter count in closed form (checked against GPT(config).num_parameters() for the
    lab shapes below): building a 7B model just to count it would take gigabytes."""
    d, head_dim, H, H_kv, F = config.d_model, config.head_dim, config.n_head, config.kv_heads, config.ffn_dim
    gated = config.activation in ("swiglu", "geglu")
    attn = 2 * d * H * head_dim + 2 * d * H_kv * head_dim  # q and o, k and v
    attn += config.bias * (H * head_dim + 2 * H_kv * head_dim + d)
    mlp = (3 if gated else 2) * d * F + config.bias * ((2 if gated else 1) * F + d)
    norm = d * (2 if config.norm == "layernorm" and config.bias else 1)
    embeddings = config.vocab_size * d * (1 if config.tie_embeddings else 2) \
        + (config.block_size * d if config.pos == "learned" else 0)
    return embeddings + config.n_layer * (attn + mlp + 2 * norm) + norm


def memory(quick: bool) -> dict:
    """Bytes of real cache tensors (allocated for the lab shapes, on the meta device for the big ones)
    against kv_cache_bytes, over lengths; and the length at which a batch-1 cache outweighs the model."""
    shapes = {
        "lab GPT-2 (4 layers, 4 heads)": gpt2_config(vocab_size=1024, block_size=1024),
        "lab Llama, 1 K/V head (MQA)": llama_config(vocab_size=1024, block_size=1024, n_kv_head=1),
        **real_shapes(),
    }
    lengths = [128, 512, 2048, 8192] if quick else [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
    out, max_rel_error = {}, 0.0
    for name, config in shapes.items():
        lab = name.startswith("lab")
        measured, formula = [], []
        for n in lengths:
            cache = KVCache(config, 1, n, dtype=torch.float16, device="cpu" if lab and n <= 8192 else "meta")
            measured.append(cache.nbytes if cache.keys[0].is_meta
                            else sum(t.untyped_storage().nbytes() for t in cache.tensors()))
            formula.append(kv_cache_bytes(config, n, 1, torch.float16))
            del cache
        errors = [abs(m - f) / f for m, f in zip(measured, formula, strict=True)]
        max_rel_error = max(max_rel_error, *errors)
        n_params = n_parameters(config)
        if lab and n_params != GPT(config).num_parameters():
            raise RuntimeError(f"n_parameters disagrees with the GPT for {name}: update the formula")
        weights = 2 * n_params  # fp16
        per_token = formula[0] / lengths[0]
        out[name] = {"n_parameters": n_params, "bytes_per_token": per_token, "weights_bytes_fp16": weights,
                     "tokens_to_match_weights": weights / per_token, "measured": measured, "formula": formula}
    return {"shapes": out, "lengths": lengths, "max_relative_error": max_rel_error}


# ----------------------------------------------------------------------------------------------------
# 4: cheaper caches on a trained model


def cached_logits(model: GPT, ids: torch.Tensor, cache: KVCache, *,
                  stale_positions: bool = False) -> torch.Tensor:
    """Teacher-forced logits (B, T, vocab) of ids (B, T) fed through `cache`: the first chunk that the
    cache accepts in one go, then one token at a time (a ring buffer takes one token once it is full).
    stale_positions: the bug of restarting positions at 0 for every step."""
    T = ids.shape[1]
    first = min(T, cache.window) if isinstance(cache, SlidingWindowKVCache) else T // 2
    pieces, start = [], 0
    with torch.inference_mode():
        for end in [first, *range(first + 1, T + 1)]:
            positions = torch.arange(start, end, device=ids.device)
            if stale_positions:
                positions = positions - start  # every step believes it is at the beginning
            pieces.append(model(ids[:, start:end], positions=positions, kv_cache=cache)[0])
            start = end
    return torch.cat(pieces, dim=1)  # (B, T, vocab)


def compare(logits: torch.Tensor, reference: torch.Tensor, targets: torch.Tensor, nbytes: int) -> dict:
    """A cache's logits against the exact cache's: top-1 agreement, logit errors, NLL of the targets."""
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
    same_argmax = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
    return {"bytes": nbytes, "top1_agreement": same_argmax,
            "max_abs_logit_error": (logits - reference).abs().max().item(),
            "mean_abs_logit_error": (logits - reference).abs().mean().item(), "nll": nll}


def cache_quality(lab: LabModel, cfg: dict, windows: list[int], *, stale_positions: bool, seed: int,
                  device) -> dict:
    """Each cheap cache vs the exact one on the same validation sequences: memory, top-1 agreement,
    max |Δ logit| and the validation NLL of the true next tokens."""
    model, config = lab.model, lab.config
    T = config.block_size
    data = lab.val_data
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(data) - T - 1, (cfg["n_eval"],), generator=g).tolist()
    ids = torch.stack([data[s:s + T] for s in starts]).to(device)  # (B, T)
    targets = torch.stack([data[s + 1:s + T + 1] for s in starts]).to(device)
    B = ids.shape[0]
    kw = dict(dtype=next(model.parameters()).dtype, device=device)
    variants = {"exact (fp32)": KVCache(config, B, T, **kw), "int8": Int8KVCache(config, B, T, **kw)}
    for w in windows:
        variants[f"window {w}"] = SlidingWindowKVCache(config, B, w, **kw)
    reference = cached_logits(model, ids, KVCache(config, B, T, **kw))
    with torch.inference_mode():
        uncached = model(ids)[0]
    rows = {name: compare(cached_logits(model, ids, cache), reference, targets, cache.nbytes)
            for name, cache in variants.items()}
    if stale_positions:
        logits = cached_logits(model, ids, KVCache(config, B, T, **kw), stale_positions=True)
        rows["stale positions (bug)"] = compare(logits, reference, targets, variants["exact (fp32)"].nbytes)
    for row in rows.values():
        row["memory_fraction"] = row["bytes"] / rows["exact (fp32)"]["bytes"]
    return {"rows": rows, "n_sequences": B, "seq_len": T,
            "exact_cache_vs_no_cache_max_abs_logit_diff": (reference - uncached).abs().max().item()}
