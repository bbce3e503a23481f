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

from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    import torch

    from llmlab.long_context import experiments
    from llmlab.utils import Demo, plotting


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, torch, experiments, MiB, Demo, plotting
    import numpy as np
    import torch

    from llmlab.long_context import experiments
    from llmlab.long_context.experiments import MiB
    from llmlab.utils import Demo, plotting


def settings(quick: bool) -> dict:
    if quick:
        # rss_size None: no fresh-process RSS check (starting a second Python with torch costs seconds)
        return dict(sizes=[256, 512, 1024], fit_from=512, n_heads=1, head_dim=64, rss_size=None,
                    check_max_T=1024, exact_T=512, exact_chunks=[16, 64, 256, 512],
                    n_chars=100_000, steps=20, batch_size=8, eval_factor=4, n_windows=16, windows=[4])
    return dict(sizes=[256, 512, 1024, 2048, 4096, 8192, 16384], fit_from=1024, n_heads=1, head_dim=64,
                rss_size=4096, check_max_T=2048, exact_T=2048, exact_chunks=[16, 64, 256, 1024, 2048],
                n_chars=1_000_000, steps=600, batch_size=16, eval_factor=8, n_windows=96,
                windows=[4, 8, 16, 32, 64])


def quick_note(demo: Demo) -> str:
    return "\n(quick mode: barely trained models, the differences are noise)" if demo.quick else ""


# 1. memory and time vs sequence length
def attention_cost(demo: Demo, cfg: dict, args) -> dict:
    """Peak memory (every tensor torch allocates during the call) and wall time, for growing T."""
    r = experiments.attention_cost(cfg, window=args.window, chunk_size=args.chunk_size,
                                   rescale=not args.no_rescale, budget_mib=args.mem_budget_mb, seed=demo.seed,
                                   device=demo.device, quick=demo.quick)
    names, rss_error, rss = r.pop("names"), r.pop("rss_error"), r["rss_check_mib"]
    memory, seconds, skipped, errors = (r[k] for k in ("peak_mib", "seconds", "skipped_predicted_mib",
                                                        "max_abs_diff_vs_full"))
    mem_slope, time_slope = r["memory_exponent"], r["time_exponent"]
    full, window, chunked, fused = names
    H, D, nan = cfg["n_heads"], cfg["head_dim"], float("nan")
    if rss_error is not None:
        demo.say(f"   (RSS check failed, skipped: {rss_error})")

    fig, (ax_mem, ax_time) = plotting.new_figure(1, 2, figsize=(12.5, 4.8))
    for i, name in enumerate(names[:3]):
        ts = sorted(memory[name])
        label = f"{name}: ~T^{mem_slope[name]:.2f}" if name in mem_slope else name
        ax_mem.plot(ts, [memory[name][t] for t in ts], "o-", color=plotting.PALETTE[i], label=label)
        if skipped[name]:
            ts_skip = sorted(skipped[name])
            ax_mem.plot(ts_skip, [skipped[name][t] for t in ts_skip], "x--", color=plotting.PALETTE[i],
                        label=f"{name}: skipped, predicted > {args.mem_budget_mb} MiB")
    if rss:
        ax_mem.plot([cfg["rss_size"]] * len(rss), [v["os_peak_rss_growth"] for v in rss.values()], "s",
                    mfc="none", mec="black", ms=10, label="check: OS peak RSS growth (fresh process)")
    ax_mem.axhline(args.mem_budget_mb, color="gray", ls=":", lw=1)
    ax_mem.text(cfg["sizes"][0], args.mem_budget_mb * 1.15, f"budget {args.mem_budget_mb} MiB", fontsize=8,
                color="gray")
    ax_mem.set(yscale="log", xlabel="sequence length T (tokens)",
               ylabel="peak memory allocated during the call (MiB)",
               title=f"Memory: full ~T^{mem_slope.get(full, nan):.1f}, "
                     f"window and chunked ~T^{mem_slope.get(chunked, nan):.1f}")
    label = {n: f"{n}: ~T^{time_slope[n]:.2f}" if n in time_slope else n for n in names}
    plotting.line_plot(ax_time, {label[n]: sorted(seconds[n]) for n in names},
                       {label[n]: [seconds[n][t] * 1e3 for t in sorted(seconds[n])] for n in names},
                       styles={label[fused]: {"ls": ":"}}, logy=True, xlabel="sequence length T (tokens)",
                       ylabel="wall time per call (ms)",
                       title=f"Time: chunked is still ~T^{time_slope.get(chunked, nan):.1f} "
                             f"(same FLOPs), window ~T^{time_slope.get(window, nan):.1f}")
    for ax in (ax_mem, ax_time):
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
    fig.suptitle(f"Causal attention, 1 sequence x {H} head x head_dim {D}, float32, "
                 f"{torch.get_num_threads()} thread(s), {demo.device}", fontweight="bold")
    demo.save_figure(fig, "attention_cost.png")

    demo.say(f"\n1. Memory and time of causal attention vs sequence length (1 x {H} head x {D}, float32, "
             f"{torch.get_num_threads()} thread(s)).")
    demo.say("   Memory = peak bytes of the tensors torch allocates inside the call (a TorchDispatchMode "
             "tracker; tracemalloc cannot see torch's C++ allocations).")
    for n in names[:3]:
        demo.say(f"   {n:<22} MiB  " + ", ".join(f"T={t}: {memory[n][t]:.1f}" for t in sorted(memory[n])))
        for t, mib in sorted(skipped[n].items()):
            demo.say(f"   {'':<22} skipped T={t}: predicted {mib:.0f} MiB > budget {args.mem_budget_mb} MiB")
    for n in names:
        demo.say(f"   {n:<22} ms   " + ", ".join(f"{seconds[n][t] * 1e3:.0f}" for t in sorted(seconds[n])))
    if rss:
        demo.say(f"   Check at T={cfg['rss_size']}: OS peak-RSS growth in a fresh process vs the tracker: "
                 + "; ".join(f"{n.split()[0]} {v['os_peak_rss_growth']:.1f} vs {v['tracker']:.1f} MiB"
                             for n, v in rss.items()))
    worst = {n: max(errors[n].values()) for n in names if errors[n]}
    demo.say(f"   Outputs checked up to T={cfg['check_max_T']} against full attention (the window against "
             "full attention with sliding_window_mask), max |difference|: "
             + ", ".join(f"{n} {e:.1e}" + (" <- WRONG" if e > 1e-4 else "") for n, e in worst.items()) + ".")
    if full in mem_slope and chunked in mem_slope and window in mem_slope:
        quadratic = mem_slope[full] > 1.8 and max(mem_slope[window], mem_slope[chunked]) < 1.2
        demo.say(f"   Memory exponents: full {mem_slope[full]:.2f}, window {mem_slope[window]:.2f}, "
                 f"chunked {mem_slope[chunked]:.2f}: this {'supports' if quadratic else 'does NOT support'} "
                 "'full attention is O(n^2) in memory, the window and chunked versions O(n)'.")
        largest = max(memory[full])
        if skipped[full]:
            demo.say(f"   Full attention stopped at T={largest}: the next size was predicted to need "
                     f"{min(skipped[full].values()):.0f} MiB; the chunked version ran to "
                     f"T={max(memory[chunked])} in {memory[chunked][max(memory[chunked])]:.0f} MiB.")
        scores_128k = memory[full][largest] * (131072 / largest) ** mem_slope[full]
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
        t = max(seconds[chunked])
        if t in seconds[fused]:
            demo.say(f"   torch's fused C++ kernel (the same online softmax) is "
                     f"{seconds[chunked][t] / seconds[fused][t]:.1f}x faster than our Python loop at T={t}.")
    if demo.quick:
        demo.say("   (quick mode: small sizes only, the exponents are rough)")
    return r


# 2. chunked attention is exact
def exactness(demo: Demo, cfg: dict, args) -> dict:
    """Largest |chunked - full| vs chunk size, float32 and float64; --no-rescale adds the broken version."""
    series = experiments.exactness(cfg, seed=demo.seed, broken=args.no_rescale)
    broken = "chunked WITHOUT rescaling, float64"
    floor = 1e-18  # exact zeros cannot sit on a log axis
    fig, ax = plotting.new_figure(figsize=(7.5, 4.6))
    plotting.line_plot(ax, cfg["exact_chunks"], {n: [max(e, floor) for e in s] for n, s in series.items()},
                       logx=True, logy=True, styles={"lesson 03 full, float32": {"ls": ":", "marker": None}},
                       xlabel="chunk size (keys per step)", ylabel="max |out - torch SDPA| over all outputs",
                       title=f"Chunked attention is exact: error {max(series['chunked, float32']):.0e} "
                             f"(float32), {max(series['chunked, float64']):.0e} (float64)"
                             + (f";\nwithout rescaling: {max(series[broken]):.0e} (wrong)" if args.no_rescale
                                else ""))
    ax.set_xscale("log", base=2)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 0.12))  # between the rounding errors and float64
    demo.save_figure(fig, "exactness.png")

    demo.say(f"\n2. Chunked (online-softmax) attention vs torch's F.scaled_dot_product_attention, causal, "
             f"T={cfg['exact_T']}, chunk sizes {cfg['exact_chunks']}:")
    for name, errs in series.items():
        demo.say(f"   {name:<36} max error " + ", ".join(f"{e:.1e}" for e in errs))
    if args.no_rescale:
        demo.say(f"   --no-rescale: without the e^(m - m') correction the error is {max(series[broken]):.2f} "
                 "(wrong, not rounding): each chunk's sums were taken against a different max.")
    return {"T": cfg["exact_T"], "chunk_sizes": cfg["exact_chunks"], "max_abs_error": series}


# 3-5. small GPTs trained at a short context, read far beyond it
def train_models(demo: Demo, cfg: dict, args) -> tuple[dict, torch.Tensor]:
    """One small Llama-style GPT per positional encoding at block_size L, plus rope at 4 L (cached)."""
    models, val_data = experiments.train_models(cfg, train_len=args.train_len, corpus=args.corpus,
                                                seed=demo.seed, device=demo.device)
    demo.say(f"\n   Trained {len(models)} GPTs (Llama-style, 2 layers, d_model 64, 4 heads) on "
             f"{cfg['n_chars'] // 1000} kB of {args.corpus}, {cfg['steps']} steps of "
             f"{cfg['batch_size'] * args.train_len} tokens: "
             + ", ".join(f"{n} val {m['history'].final_val_loss:.2f}"
                         + (" (cached)" if m["cache_hit"] else "") for n, m in models.items()))
    val = {n: m["history"].final_val_loss for n, m in models.items() if "@" not in n}
    if "sinusoidal" in val and val["sinusoidal"] > min(val.values()) + 0.5:
        ratio = experiments.sinusoidal_table_ratio(models["sinusoidal"]["model"], demo.seed)
        demo.say(f"   sinusoidal trains {val['sinusoidal'] - min(val.values()):.2f} nats worse than the best "
                 f"(val {val['sinusoidal']:.2f}); its fixed table rows are {ratio:.2f}x the length of the "
                 f"token vectors at init (embeddings scaled by sqrt(d_model), as Vaswani et al. do).")
    if demo.quick:
        demo.say(f"   (quick mode: {cfg['steps']} steps, the models are barely trained; run without --quick "
                 "for the real curves)")
    return models, val_data


def context_collapse(demo: Demo, cfg: dict, args, models: dict, val_data: torch.Tensor) -> dict:
    """Loss at each position of inputs eval_factor x longer than the training context."""
    L = args.train_len
    c = experiments.context_collapse(cfg, L, models, val_data)
    length, per_window, inside, beyond, rise = (c[k] for k in ("length", "per_window", "inside", "beyond",
                                                               "rise"))
    width = max(1, L // 8)
    fig, ax = plotting.new_figure(figsize=(9, 5))
    for i, (name, losses) in enumerate(per_window.items()):
        binned = losses.mean(0)[: length // width * width].view(-1, width).mean(1)
        ax.plot(np.arange(binned.numel()) * width + width / 2, binned.numpy(),
                "-" if "@" not in name else "--", color=plotting.PALETTE[i],
                label=f"{name} (trained at {models[name]['block_size']})")
    for x, color, text in ((L, "black", f" training length {L}"), (4 * L, "gray", f" {4 * L}")):
        ax.axvline(x, color=color, ls=":", lw=1)
        ax.text(x, ax.get_ylim()[1], text, va="top", fontsize=8, color=color)
    ranked = sorted((n for n in rise if "@" not in n), key=lambda n: -rise[n][0])
    ax.set(xlabel="position in the input (tokens)",
           ylabel=f"next-token loss (nats, mean of {width} positions)",
           title=f"Loss past the training length {L} minus inside it: "
                 + ", ".join(f"{n} {rise[n][0]:+.2f}" for n in ranked) + " nats" + quick_note(demo))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    demo.save_figure(fig, "context_collapse.png")

    demo.say(f"\n3. Context collapse: loss at positions {L}..{length - 1} (beyond the training length) minus "
             f"loss at {L // 2}..{L - 1}, same {cfg['n_windows']} windows, mean ± standard error:")
    threshold, collapsed = 0.05, []
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
    result = {"train_len": L, "eval_len": length, "n_windows": cfg["n_windows"],
              "loss_per_position": {n: losses.mean(0) for n, losses in per_window.items()},
              "inside_mean_sem": inside, "beyond_mean_sem": beyond, "rise_mean_sem": rise,
              "collapsed": collapsed, "val_loss": {n: m["history"].final_val_loss for n, m in models.items()}}
    if "long" in c:
        long = c["long"]
        gain = result["train_long_gain_mean_sem"] = long["gain"]
        demo.say(f"   At positions {L}..{4 * L - 1}, rope trained at {4 * L} has loss "
                 f"{long['long_mean']:.3f} vs {long['short_mean']:.3f} for rope trained at {L} "
                 f"(extrapolating): {gain[0]:+.3f} ± {gain[1]:.3f} nats in its favour. Inside "
                 f"{L // 2}..{L - 1}: {long['short_in'][0]:+.3f} ± {long['short_in'][1]:.3f} (both saw the "
                 f"same tokens, in sequences of {4 * L} vs {L}).")
        if gain[0] > 3 * gain[1] and gain[0] > 0:
            demo.say("   Supports 'extrapolation is hard; better to train on long sequences'." + caveat)
        else:
            demo.say("   Does NOT support 'better to train on long sequences' in this run." + caveat)
    return result


def long_documents(demo: Demo, args, curves: dict) -> dict:
    """Mean loss on documents of growing length D, three ways to read a document longer than L."""
    L = args.train_len
    r = experiments.long_documents(L, curves)
    doc_lengths, strategies = r["doc_lengths"], r["mean_loss"]
    fig, axes = plotting.new_figure(1, len(strategies), figsize=(4.2 * len(strategies), 4.4))
    for ax, (name, series) in zip(np.atleast_1d(axes), strategies.items(), strict=True):
        plotting.line_plot(ax, doc_lengths, series, logx=True, xlabel="document length (tokens)",
                           ylabel="mean loss over the document (nats)", title=f"pos = {name}")
        ax.set_xscale("log", base=2)
        ax.axvline(L, color="black", ls=":", lw=1)
        ax.legend(fontsize=7)
    longest = doc_lengths[-1]
    gap, worst = experiments.window_gain(strategies, L)
    headline = (f"a window of {L} beats reading it all by {gap[worst]:.2f} nats for {worst}" if gap[worst] > 0
                else f"reading it all is never worse than a window of {L} here")
    fig.suptitle(f"{longest}-token documents: {headline}" + quick_note(demo), fontweight="bold")
    demo.save_figure(fig, "long_documents.png")

    demo.say(f"\n4. Loss on documents of growing length ({doc_lengths}), three ways to read one longer than "
             f"the training length {L} (from the per-position losses of the runs of experiment 5):")
    for name, series in strategies.items():
        demo.say(f"   {name:<11} " + "; ".join(f"{s}: {v[-1]:.3f}" for s, v in series.items())
                 + f"  (at {longest} tokens)")
    for name, series in strategies.items():
        best = experiments.best_strategy(series, L)
        demo.say(f"   {name}: best on {longest}-token documents is '{best[0]}' ({best[1]:.3f} nats)"
                 + (" (quick mode: barely trained models, differences are noise)" if demo.quick else ""))
    return r


def window_size(demo: Demo, cfg: dict, args, curves: dict) -> dict:
    """Loss vs window: inside the training length (what a small window forgets) and beyond it."""
    L = args.train_len
    r = experiments.window_size(L, curves, tolerance=0.02)  # 0.02 nats: "as good as full attention"
    windows, table, tolerance = r["windows"], r["loss"], r["tolerance"]
    cost, enough, saved = r["small_window_cost"], r["smallest_window_as_good"], r["window_L_saves_beyond"]
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
    best_saved = max(saved, key=saved.get)
    rope_enough = enough.get("rope")
    fig.suptitle((f"rope needs a window of only {rope_enough} (within {tolerance} nats of full attention); "
                  if rope_enough is not None else "")
                 + f"beyond the training length a window of {L} saves {best_saved} "
                   f"{saved[best_saved]:.2f} nats" + quick_note(demo), fontweight="bold")
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
                 f"attention (W={min(windows)} costs {cost[name]:+.3f}); beyond it, W={L} changes the loss "
                 f"by {-saved[name]:+.3f} nats vs full attention" + effect(name) + caveat)
    return r


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
    if args.train_len < 8:  # the other sizes are checked by their type (>= 1)
        parser.error("--train-len must be >= 8")
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    demo.results["settings"] = cfg
    demo.results["attention_cost"] = demo.timed("attention_cost", attention_cost, demo, cfg, args)
    demo.results["exactness"] = demo.timed("exactness", exactness, demo, cfg, args)
    models, val_data = demo.timed("train_models", train_models, demo, cfg, args)
    demo.results["context_collapse"] = demo.timed("context_collapse", context_collapse, demo, cfg, args,
                                                  models, val_data)
    curves = demo.timed("window_losses", experiments.window_losses, cfg, args.train_len, models, val_data,
                        demo.results["context_collapse"]["loss_per_position"])
    demo.results["long_documents"] = demo.timed("long_documents", long_documents, demo, args, curves)
    demo.results["window_size"] = demo.timed("window_size", window_size, demo, cfg, args, curves)
    seconds = demo.results["experiment_seconds"]
    demo.say("\n   Wall time per experiment (s): " + ", ".join(f"{k} {v}" for k, v in seconds.items()))
    demo.finish()


if __name__ == "__main__":
    main()
