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

from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import compare

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    from llmlab.gqa import experiments
    from llmlab.transformer_block.pretrained import lab_model
    from llmlab.utils import Demo, plotting


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global experiments, lab_model, Demo, plotting
    from llmlab.gqa import experiments
    from llmlab.transformer_block.pretrained import lab_model
    from llmlab.utils import Demo, plotting


GIB = 2**30


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
# 1. KV-cache memory at real model shapes: kv_memory.png


def kv_memory(demo: Demo, lab_config) -> dict:
    result = experiments.measure_kv_memory(lab_config)
    rows, sweep, ratio = result["models"], result["llama2_shape_sweep"], result["llama2_over_llama3_32k"]
    gpu_gb = experiments.GPU_MEMORY_BYTES / 1e9
    demo.say("\n1. KV-cache memory, fp16, batch 1 (2 · n_layer · n_kv_heads · head_dim · tokens · 2 bytes):")
    for name, r in rows.items():
        demo.say(f"   {name:11s} {r['n_kv_heads']:2d} KV heads: "
                 f"{r['kv_bytes_per_token'] / 1024:.0f} KiB/token, "
                 f"{fmt_bytes(r['kv_bytes_4k'])} at 4k, {fmt_bytes(r['kv_bytes_32k'])} at 32k "
                 f"(weights {fmt_bytes(r['weights_bytes_fp16'])})")
    l2, l3 = rows["Llama-2-7B"], rows["Llama-3-8B"]
    demo.say(f"   -> Llama-3-8B's 8 KV heads make its cache {ratio:.0f}x smaller than Llama-2-7B's at the "
             f"same head_dim and depth.")
    if l2["kv_bytes_32k"] > l2["weights_bytes_fp16"]:
        demo.say(f"   -> At 32k tokens one Llama-2-7B sequence needs more cache "
                 f"({fmt_bytes(l2['kv_bytes_32k'])}) than the whole model's weights "
                 f"({fmt_bytes(l2['weights_bytes_fp16'])}): at long context the cache, not the model, "
                 f"limits the batch.")
    demo.say(f"   -> 32k-token sequences that fit beside the fp16 weights in {gpu_gb:.0f} GB: "
             + ", ".join(f"{n} KV heads: {s['seqs_32k_in_80GB']}" for n, s in sweep.items()))

    fig, axes = plotting.new_figure(1, 2, figsize=(12.5, 4.6))
    ax, names = axes[0], list(rows)
    x = range(len(names))  # the groups' centres, for the weights' markers
    plotting.grouped_bar_plot(
        ax, [f"{n}\n({rows[n]['n_kv_heads']} KV heads)" for n in names],
        {f"KV cache at {t // 1024}k tokens": [rows[n][f"kv_bytes_{t // 1024}k"] / GIB for n in names]
         for t in experiments.CONTEXTS}, fmt="{:.1f}", width=0.7, ylabel="memory per sequence (GiB, fp16)",
        title=f"GQA (8 KV heads) cuts the cache {ratio:.0f}x:\n{l2['kv_bytes_32k'] / GIB:.0f} GiB -> "
              f"{l3['kv_bytes_32k'] / GIB:.0f} GiB per 32k-token sequence")
    ax.scatter(x, [rows[n]["weights_bytes_fp16"] / GIB for n in names], marker="_", s=900, color="k",
               linewidths=2, label="fp16 weights", zorder=3)
    ax.legend(loc="upper right")
    kvs = list(sweep)
    cache_32k = [sweep[n]["kv_bytes_32k"] / GIB for n in kvs]
    plotting.line_plot(axes[1], kvs, {"KV cache, one 32k sequence": cache_32k},
                       xlabel="K/V heads (32 query heads; 32 = MHA, 1 = MQA)",
                       ylabel="KV cache at 32k tokens (GiB, fp16, log scale)",
                       title=f"Llama-2-7B shape, fewer K/V heads: 32k-token sequences beside the weights\n"
                             f"in {gpu_gb:.0f} GB: {sweep[32]['seqs_32k_in_80GB']} (MHA) -> "
                             f"{sweep[8]['seqs_32k_in_80GB']} (8 KV heads) -> "
                             f"{sweep[1]['seqs_32k_in_80GB']} (MQA)")
    axes[1].set_yscale("log", base=2)
    plotting.log_count_axis(axes[1], kvs, invert=True)
    for n in kvs:
        axes[1].annotate(f"{sweep[n]['seqs_32k_in_80GB']} seq", (n, cache_32k[kvs.index(n)]),
                         xytext=(4, 6), textcoords="offset points", fontsize=8)
    axes[1].legend(loc="upper right")
    demo.save_figure(fig, "kv_memory.png")
    return result


# ----------------------------------------------------------------------------------------------------
# 2. Decode speed: when does a smaller cache make decoding faster? decode_speed.png


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
    result = experiments.measure_decode_speed(cfg, demo.device, demo.seed)
    device, T, B = demo.device, cfg["context"], cfg["batch"]
    kvs = cfg["speed_kv_heads"]
    mha, mqa = kvs[0], kvs[-1]
    kernels, k_speed = result["attention_ms"], result["attention_speedup_mha_over_mqa"]
    per_kv, repeat_is_view = result["attention_speedup_over_mha"], result["repeat_kv_one_head_is_a_view"]
    long_ms_by_kernel = result["model_ms_per_token_long_by_kernels"]
    short_ms = result["model_ms_per_token_short"]
    long_share, short_share = result["cache_share_of_bytes_long"], result["cache_share_of_bytes_short"]
    model_long, model_short = result["model_speedup_long"], result["model_speedup_short"]
    demo.say(f"\n2. Decode speed on {device} ({result['threads']} threads), batch {B}, "
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
                     f"it copies every cached K/V head back to {mha} heads on every step, so GQA's saving is "
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
    plotting.log_count_axis(axes[0], kvs, invert=True)
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
    plotting.log_count_axis(axes[1], kvs, invert=True)
    axes[1].set_ylim(bottom=0)
    demo.save_figure(fig, "decode_speed.png")
    return result


# ----------------------------------------------------------------------------------------------------
# 3. Quality: convert the trained MHA lab model, uptrain, compare: quality_vs_cache.png


def quality(demo: Demo, cfg: dict, lab) -> dict:
    result = experiments.measure_quality(cfg, lab, demo.device, demo.seed, progress=not demo.quick)
    n_head, rows = lab.config.n_head, result["conversions"]
    base_steps, up_steps = result["base_steps"], result["uptrain_steps"]
    mha_loss, mha_up, unigram = result["mha_loss"], result["mha_uptrained"], result["unigram_loss"]
    kv_per_token, mha_curve = result["kv_bytes_per_token_fp16"], result["mha_uptrain_curve"]
    mean_better = result["mean_beats_first_after_conversion"]
    verdict_kept = result["mqa_kept_after_uptraining"]
    ppl_increase, ppl2 = result["mqa_perplexity_increase"], result["gqa2_perplexity_increase"]
    trained = f"barely trained: quick mode, {base_steps} steps" if demo.quick else f"{base_steps} steps"
    demo.say(f"\n3. Quality: the lab Llama ({n_head} heads, {trained}) converted to fewer K/V heads; "
             f"held-out loss (nats/token) on {cfg['eval_iters']} fixed batches. Uptraining: {up_steps} steps "
             f"({cfg['uptrain_frac']:.0%} of {base_steps}), the same for every model.")
    demo.say(f"   MHA ({n_head} KV heads): {mha_loss:.3f}; after the same uptraining {mha_up:.3f}.  "
             f"Unigram model (no context): {unigram:.3f}.")
    for r in rows.values():
        demo.say(f"   {r['method']:5s} pooling, {r['n_kv_heads']} KV heads "
                 f"({r['cache_fraction']:.0%} cache): "
                 f"{r['converted']:.3f} converted ({r['converted'] - mha_loss:+.3f}), "
                 f"{r['uptrained']:.3f} uptrained ({r['uptrained'] - mha_up:+.3f} vs MHA uptrained; keeps "
                 f"{r['kept_after_uptraining']:.1%} of MHA's gain over unigram)")
    best_mqa = min((r for r in rows.values() if r["n_kv_heads"] == 1), key=lambda r: r["uptrained"])
    if "first" in cfg["methods"]:
        caveat = " (quick mode: barely trained, not conclusive)" if demo.quick else ""
        demo.say(f"   -> Mean-pooling {'beats' if mean_better else 'does NOT beat'} keeping the first head "
                 f"right after conversion at every K/V-head count{caveat}; Ainslie et al. 2023 compare "
                 f"the methods after uptraining and find mean-pooling best, then the first head.")
    factor = n_head // best_mqa["n_kv_heads"]
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
            damage, left = r["converted"] - mha_loss, r["uptrained"] - mha_up
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
    plotting.log_count_axis(ax, fractions, invert=True, labels=[
        f"{f:.0%}\n({n} KV)" for f, n in zip(fractions, (n_head, *cfg["quality_kv_heads"]), strict=True)])
    ax.set(xlabel="KV cache size (share of MHA's; K/V heads)", ylabel="held-out loss (nats/token)")
    quick_note = " [quick: barely trained]" if demo.quick else ""
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
        ax.set(xlabel="uptraining step", ylabel="training loss (nats/token, one batch)")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "--uptrain-frac 0: no uptraining", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Uptraining disabled")
        ax.set_axis_off()
    demo.save_figure(fig, "quality_vs_cache.png")
    return result


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
