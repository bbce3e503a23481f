"""Lesson 10's training experiments: the data, every training run, and experiments 3-5 of the demo.

The {LayerNorm, RMSNorm, none} x {GELU, SwiGLU, ReLU} x {pre, post}-norm grid of small GPTs with equal
parameter counts, trained with the shared loop; the seed-to-seed noise of their final losses (four cells
re-trained at more seeds), against which every comparison is judged; and a learning-rate sweep of four
representative blocks. Each experiment returns its numbers, draws its figure and prints its verdict:

 3. ablation_curves  training-loss curves of every cell and the steps each needs to a common target loss
 4. ablation_grid    final val loss, steps to target and time per step of the cells, against the seed noise
 5. lr_stability     final val loss vs peak learning rate; the largest learning rate that still trains
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch
from matplotlib.patches import Rectangle
from tqdm.auto import tqdm

from llmlab.normalization.layers import ffn_hidden_size
from llmlab.transformer_block import GPT, GPTConfig, trace
from llmlab.transformer_block.pretrained import lab_tokenizer
from llmlab.utils import Demo, TrainConfig, encode, get_batch, load_corpus, plotting, train, train_val_split
from llmlab.utils.verdicts import compare, effect, paired_effect

# ------------------------------------------------------------------------------------------------
# the grid's cells and their names

ACTIVATIONS = ("gelu", "swiglu", "relu")
NORM_LABEL = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm", "none": "no norm"}
ACT_LABEL = {"gelu": "GELU", "swiglu": "SwiGLU", "relu": "ReLU"}
# (label, norm, activation, prenorm): GPT-2's block, Llama's block, the 2017 Transformer's block, no norm
SWEEP_CONFIGS = (("pre-LN GELU (GPT-2)", "layernorm", "gelu", True),
                 ("pre-RMS SwiGLU (Llama)", "rmsnorm", "swiglu", True),
                 ("post-LN GELU (Vaswani)", "layernorm", "gelu", False),
                 ("no-norm GELU", "none", "gelu", True))
# cells re-trained with seeds + 1, + 2 (quick: + 1) to measure the seed-to-seed noise of the comparisons
# the lesson makes: a seed changes the initial weights and the order of the batches
NOISE_CELLS = (("layernorm", "gelu", True), ("rmsnorm", "swiglu", True),
               ("rmsnorm", "gelu", True), ("layernorm", "swiglu", True))
FAIL_MARGIN = 0.1  # a run "failed" if its val loss is not this many nats below the fail baseline


def cell_key(norm: str, activation: str, prenorm: bool) -> str:
    return f"{'pre' if prenorm else 'post'}-{norm}-{activation}"


def cell_label(norm: str, activation: str, prenorm: bool) -> str:
    if norm == "none":
        return f"no-norm {ACT_LABEL[activation]}"
    return f"{'pre' if prenorm else 'post'}-{NORM_LABEL[norm]} {ACT_LABEL[activation]}"


def run_label(run: dict) -> str:
    return cell_label(run["norm"], run["activation"], run["prenorm"])


def smooth(values, window: int) -> np.ndarray:
    """Moving average (the train loss of one batch is noisy); a NaN (diverged step) stays NaN."""
    y = np.asarray(values, dtype=float)
    if len(y) < window or window <= 1:
        return y
    return np.convolve(y, np.ones(window) / window, mode="valid")


def distinct_models(grid: dict) -> list[dict]:
    """The grid's runs, each once: without a norm there is nothing to place, so its post-norm cells are
    its pre-norm runs."""
    return list({id(r): r for r in grid.values()}.values())


def _fmt_loss(loss: float) -> str:
    return f"{loss:.2f}" if abs(loss) < 100 else f"{loss:.1e}"  # a run that exploded


def fmt_lr(lr: float | None) -> str:
    return "none" if lr is None else f"{lr:.0e}".replace("e-0", "e-")


# ------------------------------------------------------------------------------------------------
# data and the training runs the experiments share


def load_data(cfg: dict, corpus: str, seed: int, quick: bool) -> dict:
    """The corpus (the stories unless --corpus says otherwise) in lesson 01's BPE, the unigram baseline
    (the val loss of a model that ignores the context and predicts every token with its training
    frequency), and the loss above which a run counts as failed."""
    text = load_corpus(corpus, cfg["n_chars"], seed=seed)
    tokenizer = lab_tokenizer(text, cfg["vocab_size"])
    train_text, val_text = train_val_split(text, 0.1)
    train_data, val_data = encode(train_text, tokenizer), encode(val_text, tokenizer)
    vocab_size = len(tokenizer.vocab)
    counts = torch.bincount(train_data, minlength=vocab_size).double() + 1.0  # add-one: no log(0)
    unigram = float(-(counts / counts.sum()).log()[val_data].mean())
    data = dict(train=train_data, val=val_data, vocab_size=vocab_size, unigram_loss=unigram,
                uniform_loss=math.log(vocab_size))
    # a run "failed" when it learned (almost) nothing beyond the token frequencies; a quick run is too short
    # to get past them at all, so there it fails only when it is no better than uniform guessing
    data["fail_baseline"] = "uniform" if quick else "unigram"
    data["fail_baseline_loss"] = data["uniform_loss"] if quick else data["unigram_loss"]
    data["fail_threshold"] = data["fail_baseline_loss"] - FAIL_MARGIN
    return data


def make_config(cfg: dict, vocab_size: int, norm: str, activation: str, prenorm: bool,
                **overrides) -> GPTConfig:
    """The grid's GPT, with equal parameter counts across activations: a gated FFN has three matrices,
    so its hidden width is 2/3 of the plain MLP's (multiple_of=1: as equal as integers allow)."""
    sizes = {k: overrides.pop(k, cfg[k]) for k in ("d_model", "n_layer", "block_size")}
    return GPTConfig(vocab_size=vocab_size, n_head=cfg["n_head"], norm=norm, activation=activation,
                     prenorm=prenorm, pos="learned",
                     d_ff=ffn_hidden_size(4 * sizes["d_model"], activation, multiple_of=1), **sizes,
                     **overrides)


def train_cell(demo: Demo, cfg: dict, data: dict, norm: str, activation: str, prenorm: bool, *,
               lr: float, seed: int) -> dict:
    """Train one small GPT with the shared loop; return its model, history and summary numbers."""
    config = make_config(cfg, data["vocab_size"], norm, activation, prenorm)
    torch.manual_seed(seed)
    model = GPT(config)
    # the val loss once, at the end: the curves are the per-step train loss
    train_config = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], block_size=cfg["block_size"],
                               lr=lr, warmup_steps=cfg["warmup"], eval_iters=cfg["eval_iters"],
                               eval_interval=cfg["steps"])
    history = train(model, data["train"], data["val"], train_config, device=demo.device, seed=seed,
                    progress=False)
    final = history.final_val_loss
    failed = history.diverged or not math.isfinite(final) or final > data["fail_threshold"]
    step_ms = 1000 * statistics.median(history.step_time_s) if history.step_time_s else math.nan
    return dict(model=model, history=history, norm=norm, activation=activation, prenorm=prenorm, lr=lr,
                seed=seed, params=model.num_parameters(), d_ff=config.ffn_dim,
                ffn_params=sum(p.numel() for p in model.blocks[0].ffn.parameters()),
                final_val_loss=final, diverged=history.diverged, failed=failed, median_step_ms=step_ms)


def run_training(demo: Demo, cfg: dict, data: dict, norms: tuple[str, ...]) -> dict:
    """Every training run of the demo: the grid, the seed-noise re-runs and the learning-rate sweep."""
    lr = cfg["lr"]
    grid_cells = [(n, a, p) for p in (True, False) for n in norms for a in ACTIVATIONS]
    noise_cells = [c for c in NOISE_CELLS if c in grid_cells] or grid_cells[:1]
    sweep = [c for c in SWEEP_CONFIGS[: cfg["sweep_configs"]] if c[1] in norms]
    sweep_runs = [(label, n, a, p, r) for label, n, a, p in sweep for r in cfg["sweep_lrs"]]
    extra_seeds = [demo.seed + i for i in range(1, cfg["extra_seeds"] + 1)]
    total = len(grid_cells) + len(noise_cells) * len(extra_seeds) + len(sweep_runs)
    bar = tqdm(total=total, desc="training runs", leave=False, dynamic_ncols=True,
               disable=None)  # quiet when output is not a terminal
    grid, noise, lr_runs = {}, {seed: {} for seed in extra_seeds}, {}
    for norm, act, pre in grid_cells:
        key = cell_key(norm, act, pre)
        bar.set_postfix_str(key)
        if norm == "none" and not pre:  # without a norm there is nothing to place: post-norm IS pre-norm
            grid[key] = grid[cell_key(norm, act, True)]
        else:
            grid[key] = train_cell(demo, cfg, data, norm, act, pre, lr=lr, seed=demo.seed)
        bar.update()
    for seed in extra_seeds:
        for norm, act, pre in noise_cells:
            key = cell_key(norm, act, pre)
            bar.set_postfix_str(f"{key} seed {seed}")
            noise[seed][key] = train_cell(demo, cfg, data, norm, act, pre, lr=lr, seed=seed)
            bar.update()
    for label, norm, act, pre, run_lr in sweep_runs:
        key = cell_key(norm, act, pre)
        bar.set_postfix_str(f"{key} lr {fmt_lr(run_lr)}")
        if math.isclose(run_lr, lr) and key in grid:  # this point is a grid cell already: reuse it
            lr_runs[(label, run_lr)] = grid[key]
        else:
            lr_runs[(label, run_lr)] = train_cell(demo, cfg, data, norm, act, pre, lr=run_lr, seed=demo.seed)
        bar.update()
    bar.close()
    return dict(grid=grid, noise=noise, lr_runs=lr_runs, sweep=sweep)


# ------------------------------------------------------------------------------------------------
# 3-4. the {norm} x {activation} x {placement} grid


def _rows(norms) -> list[tuple[str, bool, str]]:
    """(norm, prenorm, label) of the grid's rows: pre-norm rows first."""
    rows = []
    for prenorm in (True, False):
        for norm in norms:
            same = " (= pre)" if norm == "none" and not prenorm else ""
            rows.append((norm, prenorm, f"{'pre' if prenorm else 'post'}-norm {NORM_LABEL[norm]}{same}"))
    return rows


def steps_to_reach(history, target: float, window: int) -> int | None:
    """First step at which the smoothed train loss is <= target (None if never)."""
    hits = np.nonzero(smooth(history.train_loss, window) <= target)[0]
    return int(hits[0] + window - 1) if hits.size else None


def ablation_curves(demo: Demo, cfg: dict, data: dict, training: dict, norms) -> dict:
    """Train-loss curves of every cell; convergence speed = steps to reach the loss that the GPT-2-style
    cell (pre-norm LayerNorm GELU, else the first cell) reaches halfway through training."""
    grid = training["grid"]
    window = max(3, cfg["steps"] // 25)
    target_key = "pre-layernorm-gelu" if "pre-layernorm-gelu" in grid else next(iter(grid))
    target_curve = smooth(grid[target_key]["history"].train_loss, window)
    target = float(target_curve[min(len(target_curve) - 1, max(0, cfg["steps"] // 2 - window + 1))])
    reach = {k: steps_to_reach(r["history"], target, window) for k, r in grid.items()}

    fig, axes = plotting.new_figure(2, len(norms), figsize=(4.6 * len(norms) + 0.5, 7.6))
    axes = np.asarray(axes).reshape(2, len(norms))
    for i, prenorm in enumerate((True, False)):
        for j, norm in enumerate(norms):
            ax = axes[i, j]
            for c, act in enumerate(ACTIVATIONS):
                run = grid[cell_key(norm, act, prenorm)]
                curve = smooth(run["history"].train_loss, window)
                steps = np.arange(len(curve)) + window - 1
                tag = "FAILED" if run["failed"] else f"val {run['final_val_loss']:.2f}"
                ax.plot(steps, curve, color=plotting.PALETTE[c], label=f"{ACT_LABEL[act]} ({tag})")
                finite = np.nonzero(np.isfinite(curve))[0]
                if run["diverged"] and finite.size:  # where the loss stopped being finite
                    ax.plot(steps[finite[-1]], curve[finite[-1]], "x", color=plotting.PALETTE[c], ms=10)
            ax.axhline(data["unigram_loss"], color="gray", ls="--", lw=1, label="unigram baseline")
            ax.axhline(target, color="black", ls=":", lw=1)
            same = " (= pre-norm: nothing to place)" if norm == "none" and not prenorm else ""
            ax.set_title(f"{'pre' if prenorm else 'post'}-norm, {NORM_LABEL[norm]}{same}", fontsize=10)
            ax.set_xlabel("training step")
            ax.set_ylabel(f"train loss (nats, moving avg of {window})")
            ax.legend(fontsize=8)
    # one y-range for every panel, so that the panels compare at a glance
    lowest = min(float(np.nanmin(smooth(r["history"].train_loss, window))) for r in grid.values())
    for ax in axes.flat:
        ax.set_ylim(lowest - 0.1, data["fail_baseline_loss"] + 0.6)
    models = distinct_models(grid)
    working = [r for r in models if not r["failed"]]
    if working:
        title = (f"{len(models)} small GPTs, {cfg['steps']} steps each: "
                 f"{extremes_text(working, _seed_noise(training))}, {len(models) - len(working)} failed")
    else:
        title = f"{len(models)} small GPTs, {cfg['steps']} steps each: every run failed"
    fig.suptitle(f"{title}\n(dotted: the loss {run_label(grid[target_key])} reaches at step "
                 f"{cfg['steps'] // 2}; the steps each model needs to get there = its convergence speed)",
                 fontweight="bold")
    demo.save_figure(fig, "ablation_curves.png")
    return dict(target_cell=target_key, target_loss=target, smoothing_window=window, steps_to_target=reach,
                init_ffn_output_rms=init_ffn_output_rms(demo, cfg, data))


def _seed_runs(training: dict) -> dict[str, list[float]]:
    """Each re-trained working cell's final val loss at every seed (the grid's seed first)."""
    grid, extra = training["grid"], training["noise"]
    runs = {}
    for key in next(iter(extra.values()), {}):
        cells = [grid[key], *(by_seed[key] for by_seed in extra.values())]
        if not any(r["failed"] for r in cells):
            runs[key] = [r["final_val_loss"] for r in cells]
    return runs


def _seed_noise(training: dict) -> float:
    """The most one working cell's final val loss moves across the seeds (max - min over >= 2 seeds; NaN:
    no cell re-trained)."""
    return max((max(losses) - min(losses) for losses in _seed_runs(training).values()), default=math.nan)


def extremes_text(working: list[dict], noise: float) -> str:
    """Best and worst working runs, each named only when it differs from the runner-up beyond the seed
    noise (llmlab.utils.verdicts.compare); NaN noise (no second seed) names neither."""
    ranked = sorted(working, key=lambda r: r["final_val_loss"])
    if len(ranked) < 2:
        return f"one working model, {run_label(ranked[0])} (val {ranked[0]['final_val_loss']:.2f})"
    parts = []
    for word, extreme, (end, next_) in (("best", "lowest", ranked[:2]),
                                        ("worst working", "highest", ranked[:-3:-1])):
        outcome = compare(end["final_val_loss"], next_["final_val_loss"], noise)
        a, b = end["final_val_loss"], next_["final_val_loss"]
        if outcome in ("a", "b"):
            parts.append(f"{word} {run_label(end)} (val {a:.2f})")
        else:
            why = "no seed-noise estimate" if outcome == "inconclusive" else "no measurable difference"
            parts.append(f"{extreme} {run_label(end)} {a:.2f} and {run_label(next_)} {b:.2f}: {why}")
    return "; ".join(parts)


def init_ffn_output_rms(demo: Demo, cfg: dict, data: dict) -> dict:
    """The rms of the first block's FFN output at initialisation, per activation (pre-norm LayerNorm):
    a gated unit multiplies two projections, so with small weights (GPTConfig.init="gpt2") it starts much
    smaller than a plain MLP; the fan-in init keeps both at the same scale."""
    generator = torch.Generator().manual_seed(demo.seed + 4)
    idx, _ = get_batch(data["val"], cfg["batch_size"], cfg["block_size"], generator=generator,
                       device=demo.device)
    out = {}
    for act in ACTIVATIONS:
        torch.manual_seed(demo.seed)
        model = GPT(make_config(cfg, data["vocab_size"], "layernorm", act, True)).to(demo.device)
        with torch.no_grad():
            _, recorded = trace(model, idx)
            block = model.blocks[0]
            x = recorded.hidden[0]  # (B, T, d_model): the embeddings, block 0's input
            x = x + block.attn(block.norm1(x))[0]  # (B, T, d_model): after block 0's attention
            ffn_out = block.ffn(block.norm2(x))  # (B, T, d_model): what the FFN adds to the stream
        out[act] = float(ffn_out.pow(2).mean().sqrt())
    return out


def _mean_loss(runs: dict, cells) -> float:
    """Mean final val loss of these (norm, activation, prenorm) cells of `runs`; nan if one is missing
    or failed."""
    keys = [cell_key(*c) for c in cells]
    if not keys or any(k not in runs or runs[k]["failed"] for k in keys):
        return math.nan
    return sum(runs[k]["final_val_loss"] for k in keys) / len(keys)


def _paired(training: dict, cells_a, cells_b) -> list[float] | None:
    """mean loss(a) - mean loss(b) at each seed, or None. Within one seed both sides see the same
    batches in the same order and start from the same weights (the same layers are created in the same
    order), so how much the difference moves between seeds is its noise."""
    diffs = [_mean_loss(runs, cells_a) - _mean_loss(runs, cells_b)
             for runs in (training["grid"], *training["noise"].values())]
    return diffs if all(math.isfinite(d) for d in diffs) else None


def _verdict(delta: float, noise: float, quick: bool, better: str, worse: str) -> str:
    """Is a seed-0 loss difference larger than the most one cell's loss moved across the seeds?"""
    if not math.isfinite(delta):
        return "not measured (a run failed or a cell is missing)"
    if quick:
        return "inconclusive: quick mode, the models are barely trained"
    outcome = effect(delta, noise)
    if outcome == "inconclusive":  # no seed-noise estimate: a difference of any size names no winner
        return "inconclusive: this run has no seed-noise estimate"
    if outcome == "tie":
        return f"within the seed-to-seed noise of one cell ({noise:.3f}): no measurable difference"
    ratio = abs(delta) / noise if noise > 0 else math.inf
    side = better if outcome == "better" else worse
    return f"{side}, by {ratio:.1f}x the seed noise of one cell ({noise:.3f})"


def _paired_verdict(diffs: list[float] | None, seeds: list[int], quick: bool, better: str,
                    worse: str) -> str:
    """A difference measured at every seed counts if it has one sign and is larger than its own spread."""
    if diffs is None:
        return "not measured (a run failed, or a cell was not re-trained with the other seeds)"
    numbers = ", ".join(f"{d:+.3f} at seed {s}" for d, s in zip(diffs, seeds))
    if quick:
        return f"{numbers} -> inconclusive: quick mode, the models are barely trained"
    outcome = paired_effect(diffs)
    if outcome in ("better", "worse"):
        side = better if outcome == "better" else worse
        return f"{numbers} -> {side} at every seed (the difference moves {max(diffs) - min(diffs):.3f})"
    if outcome == "inconclusive":
        return f"{numbers} -> inconclusive: a difference is not a number"
    return f"{numbers} -> not distinguishable from seed noise: no measurable difference"


def _grid_heatmaps(demo: Demo, rows, grid: dict, curves: dict, noise: float, n_pairs: int,
                   n_seeds: int) -> float:
    """Three heatmaps over the cells (val loss, steps to target, ms per step); returns the loss spread."""
    keys = [[cell_key(n, a, p) for a in ACTIVATIONS] for n, p, _ in rows]
    failed = np.array([[grid[k]["failed"] for k in row] for row in keys])
    loss = np.where(failed, np.nan, np.array([[grid[k]["final_val_loss"] for k in row] for row in keys]))
    reach = np.array([[curves["steps_to_target"][k] or np.nan for k in row] for row in keys], dtype=float)
    step_ms = np.array([[grid[k]["median_step_ms"] for k in row] for row in keys])
    fig, axes = plotting.new_figure(1, 3, figsize=(17, 4.8))
    col_names = [ACT_LABEL[a] for a in ACTIVATIONS]
    panels = ((loss, "final val loss (nats)", "viridis_r", "{:.3f}", "final val loss (lower is better)"),
              (reach, "steps", "magma_r", "{:.0f}", f"steps to reach train loss {curves['target_loss']:.2f}"),
              (step_ms, "ms", "cividis", "{:.1f}", "median time per training step"))
    for ax, (values, unit, cmap, fmt, title) in zip(axes, panels):
        finite = values[np.isfinite(values)]
        im = plotting.heatmap(ax, np.nan_to_num(values, nan=finite.max() if finite.size else 0.0),
                              row_labels=[r[2] for r in rows], col_labels=col_names, cbar_label=unit,
                              cmap=cmap, vmin=finite.min() if finite.size else None,
                              vmax=finite.max() if finite.size else None)
        ax.set_xticks(range(len(col_names)), labels=col_names, rotation=0)
        for i in range(len(rows)):
            for j in range(len(ACTIVATIONS)):
                value = values[i, j]
                if not np.isfinite(value):  # failed or never reached: grey, outside the colour scale
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color="lightgray"))
                    text, color = ("FAILED" if failed[i, j] else "never"), "black"
                else:
                    r, g, b, _ = im.cmap(im.norm(value))
                    text, color = fmt.format(value), "black" if 0.3 * r + 0.6 * g + 0.1 * b > 0.5 else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
        ax.set_title(title, fontsize=10)
    models = distinct_models(grid)
    working = [r["final_val_loss"] for r in models if not r["failed"]]
    spread = max(working) - min(working) if working else math.nan
    noise_text = (f"one cell's loss moves by up to {noise:.3f} nats with the seed ({n_seeds} seeds, "
                  f"{n_pairs} cells)" if math.isfinite(noise) else "no seed-noise estimate")
    fig.suptitle(f"Final val loss spans {spread:.3f} nats over the {len(working)} working models; "
                 f"{noise_text}", fontweight="bold")
    demo.save_figure(fig, "ablation_grid.png")
    return spread


def ablation_grid(demo: Demo, cfg: dict, training: dict, curves: dict, norms) -> dict:
    """The grid's numbers, the seed noise, and the curriculum's comparisons, each against the noise."""
    grid, quick = training["grid"], demo.quick
    rows = _rows(norms)
    seed_runs = _seed_runs(training)
    seeds = [demo.seed, *training["noise"]]
    noise = _seed_noise(training)
    spread = _grid_heatmaps(demo, rows, grid, curves, noise, len(seed_runs), len(seeds))

    normed = [n for n in ("layernorm", "rmsnorm") if n in norms]
    both = [(a, p) for a in ACTIVATIONS for p in (True, False)]

    def mean(cells) -> float:
        return _mean_loss(grid, cells)

    # paired at every seed: the pre-norm cells that were re-trained
    swiglu_vs_gelu = _paired(training, [(n, "swiglu", True) for n in normed],
                             [(n, "gelu", True) for n in normed])
    rms_vs_ln = _paired(training, [("rmsnorm", a, True) for a in ("gelu", "swiglu")],
                        [("layernorm", a, True) for a in ("gelu", "swiglu")])
    # seed 0 only, against the seed noise of one cell
    swiglu_vs_relu = mean([(n, "swiglu", True) for n in normed]) - mean([(n, "relu", True) for n in normed])
    rms_vs_ln_all = mean([("rmsnorm", a, p) for a, p in both]) - mean([("layernorm", a, p) for a, p in both])
    no_norm = {p: mean([("none", a, p) for a in ACTIVATIONS]) - mean([(n, a, p) for n in normed
                                                                     for a in ACTIVATIONS])
               for p in (True, False)}
    post_minus_pre = {n: mean([(n, a, False) for a in ACTIVATIONS])
                      - mean([(n, a, True) for a in ACTIVATIONS]) for n in normed}
    ms = {n: float(np.mean([grid[cell_key(n, a, p)]["median_step_ms"] for a, p in both])) for n in norms}
    models = distinct_models(grid)
    first = norms[0]
    out = dict(
        final_val_loss={k: r["final_val_loss"] for k, r in grid.items()},
        failed={k: r["failed"] for k, r in grid.items()},
        median_step_ms={k: r["median_step_ms"] for k, r in grid.items()},
        params={k: r["params"] for k, r in grid.items()},
        ffn_params_per_block={a: grid[cell_key(first, a, True)]["ffn_params"] for a in ACTIVATIONS},
        d_ff={a: grid[cell_key(first, a, True)]["d_ff"] for a in ACTIVATIONS},
        seeds=seeds, seed_runs=seed_runs, seed_noise=noise, spread_working_models=spread,
        distinct_models=len(models), failed_models=sum(r["failed"] for r in models),
        swiglu_minus_gelu_by_seed=swiglu_vs_gelu, rmsnorm_minus_layernorm_by_seed=rms_vs_ln,
        swiglu_minus_relu=swiglu_vs_relu, rmsnorm_minus_layernorm_all_cells=rms_vs_ln_all,
        no_norm_minus_norm={"pre": no_norm[True], "post": no_norm[False]}, post_minus_pre=post_minus_pre,
        mean_step_ms_by_norm=ms,
    )
    out["verdicts"] = dict(
        swiglu_vs_gelu=_paired_verdict(swiglu_vs_gelu, seeds, quick, "SwiGLU better", "SwiGLU worse"),
        rmsnorm_vs_layernorm=_paired_verdict(rms_vs_ln, seeds, quick, "RMSNorm better", "RMSNorm worse"))

    ffn, d_ff = out["ffn_params_per_block"], out["d_ff"]
    demo.say(f"3-4. Grid: {len(grid)} cells = {len(models)} distinct GPTs (d_model {cfg['d_model']}, "
             f"{cfg['n_layer']} layers, context {cfg['block_size']}), {cfg['steps']} steps of "
             f"{cfg['batch_size']}x{cfg['block_size']} tokens at lr {fmt_lr(cfg['lr'])}; all training runs "
             f"took {demo.results['experiment_seconds']['training']:.0f} s.")
    demo.say(f"   Equal parameters: FFN per block GELU/ReLU {ffn['gelu']:,} (d_ff {d_ff['gelu']}) vs SwiGLU "
             f"{ffn['swiglu']:,} (d_ff {d_ff['swiglu']} = 2/3 of {d_ff['gelu']}), "
             f"{100 * (ffn['swiglu'] / ffn['gelu'] - 1):+.2f}%; whole model ({NORM_LABEL[first]}) "
             + ", ".join(f"{ACT_LABEL[a]} {grid[cell_key(first, a, True)]['params']:,}" for a in ACTIVATIONS)
             + ".")
    demo.say("   final val loss (steps to reach train loss "
             f"{curves['target_loss']:.2f}; unigram baseline {demo.results['data']['unigram_loss']:.3f}):")
    for n, p, name in rows:
        if n == "none" and not p:
            demo.say(f"   {name:<26}= the pre-norm no-norm models (without a norm, pre = post)")
            continue
        cells = []
        for act in ACTIVATIONS:
            r = grid[cell_key(n, act, p)]
            loss = "FAILED" if r["failed"] else f"{r['final_val_loss']:.3f}"
            reach = curves["steps_to_target"][cell_key(n, act, p)]
            cells.append(f"{ACT_LABEL[act]} {loss} ({reach or 'never'})")
        demo.say(f"   {name:<26}" + "   ".join(cells))
    demo.say(f"   Seed noise: one cell's loss moves by up to {noise:.3f} nats across seeds "
             f"{', '.join(map(str, seeds))} ({len(seed_runs)} cells); differences within one seed are paired "
             "(same batches, same initial weights)." if seed_runs
             else "   Seed noise: no working cell was re-trained with another seed.")
    demo.say("   SwiGLU - GELU (pre-norm, LayerNorm and RMSNorm, equal params): "
             + out["verdicts"]["swiglu_vs_gelu"])
    init = curves["init_ffn_output_rms"]
    reach = {a: [curves["steps_to_target"][cell_key(n, a, True)] for n in normed] for a in ("gelu", "swiglu")}
    pairs = list(zip(reach["gelu"], reach["swiglu"]))
    later = all(s is None or (g is not None and s > g) for g, s in pairs)
    ratio = init["gelu"] / init["swiglu"]
    why = (f"{ratio:.1f}x less: silu(x W1) * x W3 multiplies two small projections" if ratio > 2 else
           f"ratio {ratio:.2f}: with the fan-in init (GPTConfig.init) neither projection starts small")
    demo.say(f"   At initialisation the SwiGLU FFN adds rms {init['swiglu']:.1e} to the stream vs GELU's "
             f"{init['gelu']:.1e} ({why})" + ("; steps to the target, GELU vs SwiGLU (pre-norm): "
             + ", ".join(f"{g or 'never'} vs {s or 'never'}" for g, s in pairs)
             + (" -> SwiGLU gets there later in every pair" if later else
                " -> SwiGLU is not later in every pair") + " (one seed: no noise estimate)" if pairs
             else ""))
    demo.say(f"   SwiGLU - ReLU (pre-norm, seed {seeds[0]}): {swiglu_vs_relu:+.3f} nats -> "
             + _verdict(swiglu_vs_relu, noise, quick, "SwiGLU better", "SwiGLU worse"))
    demo.say("   RMSNorm - LayerNorm (pre-norm, GELU and SwiGLU): " + out["verdicts"]["rmsnorm_vs_layernorm"]
             + f"; over all {len(both)} seed-{seeds[0]} pairs {rms_vs_ln_all:+.3f}")
    demo.say("   mean time per training step: "
             + ", ".join(f"{NORM_LABEL[n]} {v:.1f} ms" for n, v in ms.items())
             + " (noisy on a shared machine: 6. measures interleaved)")
    for p in (True, False):
        if "none" in norms and normed:
            demo.say(f"   no norm - normed ({'pre' if p else 'post'}-norm rows, lr {fmt_lr(cfg['lr'])}): "
                     f"{no_norm[p]:+.3f} nats -> " + _verdict(no_norm[p], noise, quick, "no norm better",
                                                              "no norm worse"))
    for n, d in post_minus_pre.items():
        demo.say(f"   post-norm - pre-norm ({NORM_LABEL[n]}): {d:+.3f} nats -> "
                 + _verdict(d, noise, quick, "post-norm better", "post-norm worse"))
    return out


# ------------------------------------------------------------------------------------------------
# 5. stability as the learning rate grows


def lr_stability(demo: Demo, cfg: dict, data: dict, training: dict) -> dict:
    """Final val loss vs peak learning rate for the sweep's configs; the largest lr that still trains."""
    lrs, fail_line = cfg["sweep_lrs"], data["fail_threshold"]
    top = data["fail_baseline_loss"] + 0.4  # a NaN or exploded run is drawn here, its value written by it
    out: dict = {"lrs": lrs, "fail_threshold": fail_line, "configs": {}}
    fig, ax = plotting.new_figure(figsize=(9, 5.2))
    for c, (label, *_) in enumerate(training["sweep"]):
        runs = [training["lr_runs"][(label, lr)] for lr in lrs]
        finals = [r["final_val_loss"] for r in runs]
        losses = [v if math.isfinite(v) and v <= top else top for v in finals]
        ok = [not r["failed"] for r in runs]
        color = plotting.PALETTE[c]
        for lr, v in zip(lrs, finals):
            if not (math.isfinite(v) and v <= top):
                ax.annotate("NaN" if not math.isfinite(v) else f"loss {v:.1e}", (lr, top), ha="right",
                            xytext=(-10, -4 - 10 * c), textcoords="offset points", fontsize=8, color=color)
        ax.plot(lrs, losses, "-", color=color, alpha=0.6)
        ax.plot([lr for lr, k in zip(lrs, ok) if k], [v for v, k in zip(losses, ok) if k], "o", color=color,
                label=label)
        ax.plot([lr for lr, k in zip(lrs, ok) if not k], [v for v, k in zip(losses, ok) if not k], "X",
                color=color, ms=11, markeredgecolor="black")
        working = [(r["final_val_loss"], lr) for r, lr in zip(runs, lrs) if not r["failed"]]
        out["configs"][label] = dict(
            final_val_loss=[r["final_val_loss"] for r in runs], failed=[r["failed"] for r in runs],
            diverged=[r["diverged"] for r in runs],
            max_stable_lr=max((lr for _, lr in working), default=None),
            best_lr=min(working)[1] if working else None, best_loss=min(working)[0] if working else None)
    ax.axhline(fail_line, color="gray", ls="--", lw=1)
    ax.text(lrs[0], fail_line - 0.03, f"failed above this line: less than {FAIL_MARGIN} nats better than the "
            f"{data['fail_baseline']} baseline ({data['fail_baseline_loss']:.2f})", fontsize=8, color="gray",
            va="top")
    ax.plot([], [], "X", color="gray", markeredgecolor="black", ms=10, label="failed run")
    ax.set_xscale("log")
    ax.set_xticks(lrs, labels=[fmt_lr(lr) for lr in lrs])
    ax.set_xlabel("peak learning rate (log; linear warmup, then cosine decay)")
    ax.set_ylabel(f"final val loss after {cfg['steps']} steps (nats; clipped at {top:.2f})")
    ax.set_ylim(top=top + 0.25)
    ax.legend(fontsize=8, loc="center left")
    summary = ", ".join(f"{label.split(' (')[0]} {fmt_lr(v['max_stable_lr'])}"
                        for label, v in out["configs"].items())
    ax.set_title(f"Largest lr that still trains: {summary}", fontsize=10)
    demo.save_figure(fig, "lr_stability.png")

    demo.say(f"5. Learning-rate sweep ({', '.join(fmt_lr(lr) for lr in lrs)}; {cfg['steps']} steps each; "
             f"failed = val loss above {fail_line:.2f}, NaN = diverged):")
    for label, v in out["configs"].items():
        cells = ", ".join(f"{fmt_lr(lr)} {'NaN' if d else ('FAILED ' if f else '') + _fmt_loss(loss)}"
                          for lr, loss, f, d in zip(lrs, v["final_val_loss"], v["failed"], v["diverged"]))
        demo.say(f"   {label:<24} {cells}; largest lr that trains {fmt_lr(v['max_stable_lr'])}, best lr "
                 f"{fmt_lr(v['best_lr'])}")
    stable = {label: v["max_stable_lr"] or 0.0 for label, v in out["configs"].items()}
    pre, post = SWEEP_CONFIGS[0][0], SWEEP_CONFIGS[2][0]
    if pre in stable and post in stable:
        if stable[post] < stable[pre]:
            sentence = (f"post-norm stops training at a lower lr than pre-norm ({fmt_lr(stable[post])} vs "
                        f"{fmt_lr(stable[pre])} still trains): pre-norm is the more stable placement here")
        elif stable[post] == stable[pre]:
            sentence = "post-norm and pre-norm train up to the same lr of this sweep: no stability gap seen"
        else:
            sentence = "post-norm trains at a larger lr than pre-norm here, against the usual claim"
        out["post_vs_pre"] = sentence
        demo.say(f"   {sentence}.")
    # each config at its own best lr: is a deficit in the grid (one lr for all) only a learning-rate mismatch?
    noise = demo.results["grid"]["seed_noise"]
    best = {label: v for label, v in out["configs"].items() if v["best_lr"] is not None}
    gpt2 = SWEEP_CONFIGS[0][0]
    out["best_lr_minus_gpt2"] = {}
    for label in best:
        if label == gpt2 or gpt2 not in best:
            continue
        delta = best[label]["best_loss"] - best[gpt2]["best_loss"]
        out["best_lr_minus_gpt2"][label] = delta
        at_edge = best[label]["best_lr"] == max(lrs)
        edge = " = the sweep's largest: a larger one may do better still" if at_edge else ""
        demo.say(f"   at their own best lr: {label} {best[label]['best_loss']:.3f} (lr "
                 f"{fmt_lr(best[label]['best_lr'])}{edge}) vs {gpt2} {best[gpt2]['best_loss']:.3f} (lr "
                 f"{fmt_lr(best[gpt2]['best_lr'])}): "
                 f"{delta:+.3f} -> " + _verdict(delta, noise, demo.quick, "better", "worse"))
    return out


