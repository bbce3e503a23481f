"""Lesson 15's experiments: the same workload served by every backend of backends.py, and the engine's own
levers (paged KV, prefix caching, pool size) measured. demo.py calls these in order; each returns numbers.

Timing on a shared machine: every comparison interleaves its variants round-robin (rep r runs them in an
order rotated by r) and reports medians and per-rep ratios; a ratio's spread across reps is its noise.
"""

from __future__ import annotations

import random
import statistics
import time

import torch

from llmlab.inference_stacks.backends import (
    HFContinuousBatchingBackend,
    HFGenerateBackend,
    Lesson06Backend,
    left_pad,
)
from llmlab.inference_stacks.engine import LLMEngine
from llmlab.inference_stacks.sequence import SamplingParams
from llmlab.kv_cache import generate as lesson06_generate  # lesson 06

BACKENDS = ("lab-engine", "hf-generate", "hf-continuous-batching", "lesson06-static", "vllm")


def workload(val_ids: list[int], n: int, prompt_range: tuple[int, int], out_range: tuple[int, int],
             seed: int, system: list[int] | None = None) -> dict:
    """n requests: prompts are slices of held-out text with lengths uniform in prompt_range (after the
    shared `system` prefix, when given), output lengths uniform in out_range."""
    rng = random.Random(seed)
    prompts, out_lens = [], []
    for _ in range(n):
        length = rng.randint(*prompt_range)
        start = rng.randrange(len(val_ids) - length)
        prompts.append(list(system or []) + val_ids[start:start + length])
        out_lens.append(rng.randint(*out_range))
    return dict(prompts=prompts, out_lens=out_lens)


# ------------------------------------------------------------------------------------------------
# serving one workload

def run_engine(model, prompts: list[list[int]], out_lens: list[int], *, arrivals_per_step: int | None = None,
               trace: bool = False, **engine_kwargs) -> dict:
    """Serve the requests on a fresh LLMEngine. arrivals_per_step: None = all queued at once, k = k new
    requests join before each step (a stream). Returns outputs, the engine's stats, seconds, and with
    trace=True per step: KV tokens held by running sequences and the tokens their blocks reserve."""
    engine = LLMEngine(model, **engine_kwargs)
    queue = list(zip(prompts, out_lens))
    ids, outputs, steps = [], {}, []
    start = time.perf_counter()
    while queue or engine.has_unfinished_requests():
        for _ in range(len(queue) if arrivals_per_step is None else min(arrivals_per_step, len(queue))):
            prompt, n = queue.pop(0)
            ids.append(engine.add_request(prompt, SamplingParams(max_tokens=n, ignore_eos=True)))
        for request_id, tokens in engine.step():
            outputs[request_id] = tokens
        if trace:
            held = sum(s.num_cached_tokens for s in engine.scheduler.running)
            steps.append((held, engine.block_manager.num_used_blocks * engine.block_size))
    seconds = time.perf_counter() - start
    return dict(outputs=[outputs[i] for i in ids], stats=dict(engine.stats), seconds=seconds, trace=steps)


def run_static(backend, prompts: list[list[int]], out_lens: list[int], batch_size: int) -> list[list[int]]:
    """A static backend over batches of batch_size requests in arrival order: each batch runs until its
    longest request ends; each output is cut to its own length (the rest was computed and thrown away)."""
    out = []
    for i in range(0, len(prompts), batch_size):
        rows = range(i, min(i + batch_size, len(prompts)))
        new = backend.generate([prompts[r] for r in rows], max(out_lens[r] for r in rows))
        out += [new[k][:out_lens[r]] for k, r in enumerate(rows)]
    return out


def make_backends(model, batch_size: int, names=BACKENDS, vllm=None, engine_kwargs: dict | None = None,
                  static_engine: bool = False) -> dict:
    """name -> a function(prompts, out_lens) serving one workload at this batch size. vllm: a loaded
    VLLMBackend (None: no vLLM), sent the requests in groups of batch_size (its own limit is fixed when it
    loads; each group is continuously batched inside vLLM). engine_kwargs go to the lab engine;
    static_engine=True makes it serve static batches (each group of batch_size waits for the previous)."""
    kw = dict(engine_kwargs or {})

    def engine(p, o, b=batch_size):
        group = b if static_engine else len(p)
        return [t for i in range(0, len(p), group)
                for t in run_engine(model, p[i:i + group], o[i:i + group], max_num_seqs=b, **kw)["outputs"]]

    made = {}
    if vllm is not None and "vllm" in names:
        made["vllm"] = lambda p, o, b=batch_size: [t for i in range(0, len(p), b)
                                                   for t in vllm.generate(p[i:i + b], o[i:i + b])]
    for name in names:
        if name == "lab-engine":
            made[name] = engine
        elif name == "hf-generate":
            hf = HFGenerateBackend(model)
            made[name] = lambda p, o, be=hf, b=batch_size: run_static(be, p, o, b)
        elif name == "lesson06-static":
            l06 = Lesson06Backend(model)
            made[name] = lambda p, o, be=l06, b=batch_size: run_static(be, p, o, b)
        elif name == "hf-continuous-batching" and HFContinuousBatchingBackend.available():
            be = HFContinuousBatchingBackend(model, max_num_seqs=batch_size, num_blocks=batch_size * 8 + 8)
            made[name] = lambda p, o, be=be: [t[:n] for t, n in zip(be.generate(p, max(o)), o)]
    return made


def _median(values) -> float:
    return float(statistics.median(values))


# ------------------------------------------------------------------------------------------------
# experiment 1: throughput and latency per backend and batch size

def throughput(model, wl: dict, batch_sizes: list[int], reps: int, latency_tokens: int,
               names=BACKENDS, vllm=None, engine_kwargs: dict | None = None,
               static_engine: bool = False) -> dict:
    """Output tokens/s of each backend serving the whole workload at each batch size, and for the first
    `b` prompts arriving together: time to first token (a 1-token generate) and time per output token
    ((t(latency_tokens) - t(1)) / (latency_tokens - 1)). Round-robin over backends, `reps` times."""
    prompts, out_lens = wl["prompts"], wl["out_lens"]
    useful = sum(out_lens)
    runs = {b: make_backends(model, b, names, vllm, engine_kwargs, static_engine) for b in batch_sizes}
    names = [n for n in names if n in runs[batch_sizes[0]]]
    secs = {n: {b: [] for b in batch_sizes} for n in names}
    ttft = {n: {b: [] for b in batch_sizes} for n in names}
    tpot = {n: {b: [] for b in batch_sizes} for n in names}
    outputs = {}
    for r in range(reps):
        for b in batch_sizes:
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                fn = runs[b][n]
                start = time.perf_counter()
                outputs[n] = fn(prompts, out_lens)
                secs[n][b].append(time.perf_counter() - start)
                head = prompts[:b]
                start = time.perf_counter()
                fn(head, [1] * len(head))
                t1 = time.perf_counter() - start
                start = time.perf_counter()
                fn(head, [latency_tokens] * len(head))
                tn = time.perf_counter() - start
                ttft[n][b].append(t1)
                tpot[n][b].append(max(tn - t1, 0.0) / (latency_tokens - 1))
    tok_s = {n: {b: [useful / s for s in secs[n][b]] for b in batch_sizes} for n in names}
    ref = "hf-generate"
    ratio = {n: {b: [e / h for e, h in zip(tok_s[n][b], tok_s[ref][b])] for b in batch_sizes} for n in names}
    engine = {n: {b: _median([e / o for e, o in zip(tok_s["lab-engine"][b], tok_s[n][b])])
                  for b in batch_sizes} for n in names if n != "lab-engine"}  # lab engine / each other
    agree = {n: outputs[n] == outputs["lab-engine"] for n in names}
    return dict(useful_tokens=useful, batch_sizes=batch_sizes, reps=reps, names=names,
                tokens_per_s={n: {b: _median(v) for b, v in d.items()} for n, d in tok_s.items()},
                tokens_per_s_per_rep=tok_s, ratio_to_hf_per_rep=ratio,
                ratio_to_hf={n: {b: _median(v) for b, v in d.items()} for n, d in ratio.items()},
                ttft_ms={n: {b: 1e3 * _median(v) for b, v in d.items()} for n, d in ttft.items()},
                tpot_ms={n: {b: 1e3 * _median(v) for b, v in d.items()} for n, d in tpot.items()},
                engine_over=engine, greedy_equal_to_engine=agree)


# ------------------------------------------------------------------------------------------------
# experiment 2: KV memory, static padded batches vs the paged pool

def static_kv_trace(prompts: list[list[int]], out_lens: list[int], batch_size: int) -> list[tuple[int, int]]:
    """Per decode step of static batching: (tokens of K/V that live requests need, tokens the padded
    contiguous cache holds = rows x (longest prompt + steps so far)). Rows that finished early and the
    left padding count as reserved, not used."""
    steps = []
    for i in range(0, len(prompts), batch_size):
        rows = range(i, min(i + batch_size, len(prompts)))
        width = max(len(prompts[r]) for r in rows)
        for t in range(1, max(out_lens[r] for r in rows) + 1):
            used = sum(len(prompts[r]) + t - 1 for r in rows if t <= out_lens[r])
            steps.append((used, len(rows) * (width + t - 1)))
    return steps


def kv_memory(model, wl: dict, batch_size: int, block_sizes: list[int], default_block: int) -> dict:
    """Time-averaged share of reserved KV slots that hold a live token (1 - waste), static vs paged,
    and the paged pool's waste per block size (only the last block of each sequence is partly empty)."""
    cfg = model.config
    bytes_per_token = 2 * cfg.n_layer * (cfg.n_kv_head or cfg.n_head) * (cfg.d_model // cfg.n_head) * 4

    def summary(trace):
        used, reserved = sum(u for u, _ in trace), sum(r for _, r in trace)
        return dict(waste=1 - used / reserved,
                    peak_reserved_mb=max(r for _, r in trace) * bytes_per_token / 1e6,
                    peak_used_mb=max(u for u, _ in trace) * bytes_per_token / 1e6)

    static = summary(static_kv_trace(wl["prompts"], wl["out_lens"], batch_size))
    paged = {}
    for bs in sorted(set(block_sizes) | {default_block}):
        run = run_engine(model, wl["prompts"], wl["out_lens"], trace=True, max_num_seqs=batch_size,
                         block_size=bs, enable_prefix_caching=False)
        paged[bs] = summary([s for s in run["trace"] if s[1]])
    return dict(batch_size=batch_size, bytes_per_token=bytes_per_token, static=static, paged=paged,
                default_block=default_block)


# ------------------------------------------------------------------------------------------------
# experiment 3: prefix caching with a shared system prompt

def prefix_caching(model, wl: dict, reps: int, arrivals_per_step: int, block_size: int,
                   caching_on: bool = True) -> dict:
    """The same stream of requests (a shared system prompt + a user part) with and without prefix caching:
    prefill tokens computed, cache-hit tokens, wall seconds (round-robin, `reps` times)."""
    variants = {"caching": caching_on, "no caching": False}
    secs = {k: [] for k in variants}
    stats, outs = {}, {}
    for r in range(reps):
        for k in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            run = run_engine(model, wl["prompts"], wl["out_lens"], arrivals_per_step=arrivals_per_step,
                             block_size=block_size, enable_prefix_caching=variants[k])
            secs[k].append(run["seconds"])
            stats[k], outs[k] = run["stats"], run["outputs"]
    speedup = [n / c for c, n in zip(secs["caching"], secs["no caching"])]
    return dict(seconds={k: _median(v) for k, v in secs.items()}, speedup_per_rep=speedup,
                speedup=_median(speedup), stats=stats, outputs_equal=outs["caching"] == outs["no caching"],
                prompt_tokens=sum(len(p) for p in wl["prompts"]))


# ------------------------------------------------------------------------------------------------
# experiment 4: preemption under memory pressure

def preemption(model, wl: dict, batch_size: int, block_size: int, pool_fractions: list[float],
               reps: int) -> dict:
    """Throughput and preemptions as the pool shrinks from enough blocks for every running sequence's
    whole request to `fraction` of that (never below what the longest single request needs)."""
    full = batch_size * max(-(-(len(p) + n - 1) // block_size) for p, n in zip(wl["prompts"], wl["out_lens"]))
    least = max(-(-(len(p) + n - 1) // block_size) for p, n in zip(wl["prompts"], wl["out_lens"]))
    pools = sorted({max(least, round(f * full)) for f in pool_fractions}, reverse=True)
    useful = sum(wl["out_lens"])
    secs = {p: [] for p in pools}
    stats, outs = {}, {}
    for r in range(reps):
        for p in pools[r % len(pools):] + pools[:r % len(pools)]:
            run = run_engine(model, wl["prompts"], wl["out_lens"], max_num_seqs=batch_size,
                             block_size=block_size, num_blocks=p, enable_prefix_caching=False)
            secs[p].append(run["seconds"])
            stats[p], outs[p] = run["stats"], run["outputs"]
    tok_s = {p: [useful / s for s in v] for p, v in secs.items()}
    return dict(pools=pools, full_pool=full, tokens_per_s={p: _median(v) for p, v in tok_s.items()},
                tokens_per_s_per_rep=tok_s,
                preemptions={p: stats[p]["preemptions"] for p in pools},
                prefill_tokens={p: stats[p]["prefill_tokens"] for p in pools},
                outputs_equal=all(outs[p] == outs[pools[0]] for p in pools))


# ------------------------------------------------------------------------------------------------
# lesson 06's generate on one request alone: the reference the engine's tokens are checked against

@torch.inference_mode()
def reference_tokens(model, prompts: list[list[int]], n: int) -> list[list[int]]:
    out = []
    for p in prompts:
        ids, mask = left_pad([p], device=next(model.parameters()).device)
        new = lesson06_generate(model, ids, n, attention_mask=mask, temperature=0.0)
        out.append(new[0, len(p):].tolist())
    return out
