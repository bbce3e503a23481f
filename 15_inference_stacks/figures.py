"""Lesson 15's figures: one per experiment, drawn from the numbers demo.py measured; each title states
what was found."""

from __future__ import annotations

from llmlab.utils.plotting import PALETTE, new_figure

COLORS = {"lab-engine": PALETTE[0], "hf-generate": PALETTE[1], "hf-continuous-batching": PALETTE[2],
          "lesson06-static": PALETTE[3], "vllm": PALETTE[4]}


def throughput_figure(demo, r: dict) -> None:
    """Output tokens/s, time to first token and time per output token against batch size, per backend."""
    fig, axes = new_figure(1, 3, figsize=(15, 4.6))
    bs = r["batch_sizes"]
    for key, ax, label in (("tokens_per_s", axes[0], "output tokens / s"),
                           ("ttft_ms", axes[1], "time to first token (ms)"),
                           ("tpot_ms", axes[2], "time per output token (ms)")):
        for n in r["names"]:
            ax.plot(bs, [r[key][n][b] for b in bs], "o-", color=COLORS[n], label=n)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size (requests served together)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    axes[2].set_yscale("linear")  # a backend whose 1-token and n-token calls time alike reads 0 here
    axes[1].set_title("latency of the first b requests arriving together")
    big = bs[-1]
    best = max(r["names"], key=lambda n: r["tokens_per_s"][n][big])
    fig.suptitle(f"At batch {big} {best} is fastest ({r['tokens_per_s'][best][big]:.0f} tok/s); "
                 f"the lab engine runs at {r['ratio_to_hf']['lab-engine'][big]:.2f}x transformers' generate "
                 f"(medians of {r['reps']} interleaved reps, {r['useful_tokens']} output tokens)")
    demo.save_figure(fig, "throughput.png")


def kv_memory_figure(demo, r: dict) -> None:
    """Share of reserved KV slots holding no live token: static padded batches vs the paged pool, per block
    size."""
    fig, axes = new_figure(1, 2, figsize=(12, 4.6))
    sizes = sorted(r["paged"], key=int)
    labels = ["static\npadded"] + [f"paged\nblock {b}" for b in sizes]
    waste = [r["static"]["waste"]] + [r["paged"][b]["waste"] for b in sizes]
    axes[0].bar(labels, [100 * w for w in waste], color=[PALETTE[1]] + [PALETTE[0]] * len(sizes))
    axes[0].axhline(4, color="k", ls="--", lw=1, label="vLLM paper: under 4% waste (cited)")
    axes[0].set_ylabel("reserved KV slots without a live token (%)")
    axes[0].legend(fontsize=8)
    peak = [r["static"]["peak_reserved_mb"]] + [r["paged"][b]["peak_reserved_mb"] for b in sizes]
    used = [r["static"]["peak_used_mb"]] + [r["paged"][b]["peak_used_mb"] for b in sizes]
    axes[1].bar(labels, peak, color="0.8", label="peak reserved")
    axes[1].bar(labels, used, width=0.5, color=[PALETTE[1]] + [PALETTE[0]] * len(sizes),
                label="peak holding live tokens")
    axes[1].set_ylabel("peak KV memory reserved (MB, fp32)")
    axes[1].legend(fontsize=8)
    d = r["paged"][r["default_block"]]
    fig.suptitle(f"Static padded batching wastes {r['static']['waste']:.0%} of its KV slots, the paged pool "
                 f"{d['waste']:.1%} at block size {r['default_block']}\n(batch {r['batch_size']}, "
                 "averaged over the decode steps)")
    demo.save_figure(fig, "kv_memory.png")


def prefix_caching_figure(demo, r: dict) -> None:
    """Prefill tokens computed and wall seconds, with and without the prefix cache."""
    fig, axes = new_figure(1, 2, figsize=(11, 4.4))
    keys = ["no caching", "caching"]
    axes[0].bar(keys, [r["stats"][k]["prefill_tokens"] for k in keys], color=[PALETTE[1], PALETTE[0]],
                label="computed")
    axes[0].bar(keys, [r["stats"][k]["prefix_cache_hit_tokens"] for k in keys],
                bottom=[r["stats"][k]["prefill_tokens"] for k in keys], color="0.8", label="read from cache")
    axes[0].set_ylabel("prompt tokens")
    axes[0].legend(fontsize=8)
    axes[1].bar(keys, [r["seconds"][k] for k in keys], color=[PALETTE[1], PALETTE[0]])
    axes[1].set_ylabel("wall seconds to serve the stream (median)")
    saved = 1 - r["stats"]["caching"]["prefill_tokens"] / r["stats"]["no caching"]["prefill_tokens"]
    verdict = {"tie": "no measurable difference in time", "better": "faster beyond the noise",
               "worse": "slower beyond the noise"}.get(r.get("time_verdict"), "time not judged")
    fig.suptitle(f"A shared system prompt: prefix caching skips {saved:.0%} of the prefill tokens; "
                 f"serving time {r['speedup']:.2f}x (per rep {min(r['speedup_per_rep']):.2f}-"
                 f"{max(r['speedup_per_rep']):.2f}x): {verdict}")
    demo.save_figure(fig, "prefix_caching.png")


def preemption_figure(demo, r: dict) -> None:
    """Throughput and preemptions as the KV pool shrinks."""
    fig, ax = new_figure(figsize=(8, 4.6))
    pools = r["pools"]
    share = [100 * p / r["full_pool"] for p in pools]
    ax.plot(share, [r["tokens_per_s"][p] for p in pools], "o-", color=PALETTE[0], label="output tokens / s")
    ax.set_xlabel("KV pool (% of the blocks the batch needs without preemption)")
    ax.set_ylabel("output tokens / s (median)")
    ax.invert_xaxis()
    ax2 = ax.twinx()
    ax2.bar(share, [r["preemptions"][p] for p in pools], width=3, alpha=0.35, color=PALETTE[1],
            label="preemptions")
    ax2.set_ylabel("preemptions (recomputed sequences)")
    ax.legend(loc="upper right", fontsize=8)
    ax2.legend(loc="center right", fontsize=8)
    lo = pools[-1]
    fig.suptitle(f"At {100 * lo / r['full_pool']:.0f}% of the pool: {r['preemptions'][lo]} preemptions, "
                 f"{r['tokens_per_s'][lo] / r['tokens_per_s'][pools[0]]:.2f}x the throughput; outputs "
                 f"{'unchanged' if r['outputs_equal'] else 'CHANGED'}")
    demo.save_figure(fig, "preemption.png")
