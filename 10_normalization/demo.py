"""Lesson 10 demo: normalization layers and activation functions, measured.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--norm all|layernorm|rmsnorm|none] [--lr-scale X] [--no-warmup] [--n-layer N]
                   [--steps N] [--corpus stories|python-docs|python-code|PATH]

Experiments (each prints its numbers and draws one figure into outputs/):
 1. norm_statistics.png  per-token mean and std of a trained model's residual stream (and of skewed
                         synthetic vectors) before and after LayerNorm and RMSNorm; their invariances
 2. activations.png      ReLU, GELU, GELU-tanh and SiLU with their derivatives, max |GELU - GELU_tanh|,
                         the SwiGLU unit's response surface (the share of hidden units a trained ReLU FFN
                         zeroes is printed)
 3. ablation_curves.png  training loss of {LayerNorm, RMSNorm, none} x {GELU, SwiGLU, ReLU} x {pre, post}
                         -norm: small GPTs with equal parameter counts (SwiGLU's hidden width x 2/3)
 4. ablation_grid.png    the cells' final val loss, steps to a common target loss and time per step, next to
                         the seed-to-seed noise (four cells re-trained at two more seeds)
 5. lr_stability.png     final val loss vs learning rate for four representative configs; failed runs marked
 6. kernels.png          a training step with kernels="lab" (the formulas) vs kernels="torch" (fused), and
                         each operation alone
Break flags:
 --norm X        train only the grid rows with norm X (none: the no-norm models alone)
 --lr-scale X    multiply every learning rate (e.g. 10: which cells stop training first?)
 --no-warmup     start at the full learning rate (post-norm needs warmup: Xiong et al. 2020)
 --n-layer N     deeper grid models (default 2)
 --steps N       training steps per run
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import compare, effect, paired_effect

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import NullFormatter
    from tqdm.auto import tqdm

    from llmlab.attention_basics import scaled_dot_product_attention
    from llmlab.normalization.layers import (
        ffn_hidden_size,
        gelu,
        layer_norm,
        relu,
        rms_norm,
        silu,
        token_statistics,
    )
    from llmlab.transformer_block import GPT, GPTConfig
    from llmlab.transformer_block.pretrained import lab_tokenizer
    from llmlab.utils import (
        Demo,
        TrainConfig,
        encode,
        get_batch,
        load_corpus,
        plotting,
        train,
        train_val_split,
    )


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, torch, F, Rectangle, NullFormatter, tqdm, scaled_dot_product_attention, ffn_hidden_size
    global gelu, layer_norm, relu, rms_norm, silu, token_statistics, GPT, GPTConfig, lab_tokenizer, Demo
    global TrainConfig, encode, get_batch, load_corpus, plotting, train, train_val_split
    import numpy as np
    import torch
    import torch.nn.functional as F
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import NullFormatter
    from tqdm.auto import tqdm

    from llmlab.attention_basics import scaled_dot_product_attention
    from llmlab.normalization.layers import (
        ffn_hidden_size,
        gelu,
        layer_norm,
        relu,
        rms_norm,
        silu,
        token_statistics,
    )
    from llmlab.transformer_block import GPT, GPTConfig
    from llmlab.transformer_block.pretrained import lab_tokenizer
    from llmlab.utils import (
        Demo,
        TrainConfig,
        encode,
        get_batch,
        load_corpus,
        plotting,
        train,
        train_val_split,
    )


NORMS = ("layernorm", "rmsnorm", "none")
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
SHAZEER_2020 = "Shazeer 2020, Table 1 (T5, 65k steps): log-perplexity ReLU 1.997, GELU 1.983, SwiGLU 1.944"


def settings(quick: bool) -> dict:
    if quick:
        return dict(n_chars=100_000, vocab_size=512, d_model=32, n_layer=2, n_head=4, block_size=32,
                    batch_size=8, steps=20, lr=3e-3, warmup=4, eval_iters=4, extra_seeds=1,
                    sweep_lrs=[3e-3, 3e-2], sweep_configs=2,
                    kernel_models=[dict(d_model=32, n_layer=2, block_size=32, batch_size=8, steps=4)],
                    op_reps=5)
    return dict(n_chars=400_000, vocab_size=512, d_model=64, n_layer=2, n_head=4, block_size=64,
                batch_size=16, steps=250, lr=3e-3, warmup=25, eval_iters=10, extra_seeds=2,
                sweep_lrs=[3e-3, 1e-2, 3e-2, 1e-1], sweep_configs=4,
                kernel_models=[dict(d_model=64, n_layer=2, block_size=64, batch_size=16, steps=10),
                               dict(d_model=128, n_layer=4, block_size=128, batch_size=16, steps=5)],
                op_reps=20)


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _fmt_loss(loss: float) -> str:
    return f"{loss:.2f}" if abs(loss) < 100 else f"{loss:.1e}"  # a run that exploded


def _fmt_lr(lr: float | None) -> str:
    return "none" if lr is None else f"{lr:.0e}".replace("e-0", "e-")


# ------------------------------------------------------------------------------------------------
# data and the training runs the experiments share


def load_data(cfg: dict, corpus: str, seed: int) -> dict:
    """The corpus (the stories unless --corpus says otherwise) in lesson 01's BPE, and the unigram
    baseline: the val loss of a model that ignores the context and predicts every token with its training
    frequency."""
    text = load_corpus(corpus, cfg["n_chars"], seed=seed)
    tokenizer = lab_tokenizer(text, cfg["vocab_size"])
    train_text, val_text = train_val_split(text, 0.1)
    train_data, val_data = encode(train_text, tokenizer), encode(val_text, tokenizer)
    vocab_size = len(tokenizer.vocab)
    counts = torch.bincount(train_data, minlength=vocab_size).double() + 1.0  # add-one: no log(0)
    unigram = float(-(counts / counts.sum()).log()[val_data].mean())
    return dict(train=train_data, val=val_data, vocab_size=vocab_size, unigram_loss=unigram,
                uniform_loss=math.log(vocab_size))


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
    start = time.perf_counter()
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
        bar.set_postfix_str(f"{key} lr {_fmt_lr(run_lr)}")
        if math.isclose(run_lr, lr) and key in grid:  # this point is a grid cell already: reuse it
            lr_runs[(label, run_lr)] = grid[key]
        else:
            lr_runs[(label, run_lr)] = train_cell(demo, cfg, data, norm, act, pre, lr=run_lr, seed=demo.seed)
        bar.update()
    bar.close()
    return dict(grid=grid, noise=noise, lr_runs=lr_runs, sweep=sweep, seconds=time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------
# 1. what each norm does to the statistics of a token


def _stats(x: torch.Tensor) -> dict:
    mean, std, rms = token_statistics(x)
    return dict(mean=mean, std=std, rms=rms)


def _scatter_stats(ax, name: str, before: dict, ln: dict, rms: dict, cos: torch.Tensor) -> None:
    """Per-token (mean, std) before and after each norm; rms^2 = mean^2 + std^2 puts RMSNorm on the arc."""
    ax.scatter(before["mean"], before["std"], s=6, alpha=0.35, color=plotting.PALETTE[7], label="before")
    ax.scatter(rms["mean"], rms["std"], s=8, alpha=0.5, color=plotting.PALETTE[1], label="after RMSNorm")
    ax.scatter(ln["mean"], ln["std"], s=60, marker="*", color=plotting.PALETTE[0], label="after LayerNorm",
               zorder=5)
    # the axes fit the points; the arc mean^2 + std^2 = 1 (rms = 1) is drawn where it is inside them
    means = torch.cat([before["mean"], rms["mean"], ln["mean"]])
    stds = torch.cat([before["std"], rms["std"], ln["std"]])
    x_lo, x_hi = float(means.min()), float(means.max())
    pad = 0.08 * (x_hi - x_lo) + 1e-3
    y_lo, y_hi = float(stds.min()) / 1.5, float(stds.max()) * 1.5
    arc_mean = np.linspace(max(-1.0, x_lo - pad), min(1.0, x_hi + pad), 400)
    arc_std = np.sqrt(np.clip(1 - arc_mean**2, 0, None))
    keep = arc_std >= y_lo
    ax.plot(arc_mean[keep], arc_std[keep], "--", color=plotting.PALETTE[1], lw=1,
            label="mean$^2$ + std$^2$ = 1 (rms = 1)")
    ax.set_xlim(x_lo - pad, x_hi + pad)
    ax.set_yscale("log")
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("per-token mean over the d channels")
    ax.set_ylabel("per-token std (log)")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"{name} ({len(cos)} tokens): LayerNorm -> one point,\nRMSNorm -> the unit arc; "
                 f"cos(LN(x), RMS(x)) median {float(cos.median()):.4f}", fontsize=10)


def norm_statistics(demo: Demo, cfg: dict, data: dict, run: dict) -> dict:
    """Per-token mean/std of real residual-stream vectors and of skewed synthetic ones, before and after
    LayerNorm and RMSNorm (without gain and bias: the normalisation itself); invariances measured."""
    model = run["model"]
    generator = torch.Generator().manual_seed(demo.seed + 1)
    idx, _ = get_batch(data["val"], cfg["batch_size"], cfg["block_size"], generator=generator,
                       device=demo.device)
    with torch.no_grad():
        _, _, trace = model(idx, return_hidden=True)
    stream = trace.hidden[-1].reshape(-1, model.config.d_model).float().cpu()  # (N, d): final norm's input
    n_tokens, dim = stream.shape
    # synthetic: skewed (log-normal) vectors, each token with its own offset and scale
    g = torch.Generator().manual_seed(demo.seed)
    z = torch.randn(n_tokens, dim, generator=g).exp()  # (N, d): all positive, a long right tail
    z = (z - z.mean(-1, keepdim=True)) / z.std(-1, correction=0, keepdim=True)  # (N, d): mean 0, std 1
    offset = 2.0 * torch.randn(n_tokens, 1, generator=g)  # (N, 1)
    scale = torch.randn(n_tokens, 1, generator=g).exp()  # (N, 1)
    sources = {"residual stream": stream, "skewed synthetic": offset + scale * z}

    out: dict = {"model": run_label(run), "n_tokens": n_tokens, "d_model": dim}
    fig, axes = plotting.new_figure(1, 3, figsize=(16, 4.8))
    for ax, (name, x) in zip(axes[:2], sources.items()):
        before, ln, rms = _stats(x), _stats(layer_norm(x)), _stats(rms_norm(x))
        cos = F.cosine_similarity(layer_norm(x), rms_norm(x), dim=-1)  # (N,)
        mean_share = before["mean"] ** 2 / before["rms"] ** 2  # (N,): the part of rms^2 that is the mean
        out[name] = dict(
            before_median_mean=float(before["mean"].median()),
            before_median_rms=float(before["rms"].median()),
            before_std_range=[float(before["std"].min()), float(before["std"].max())],
            layernorm_max_abs_mean=float(ln["mean"].abs().max()),
            layernorm_std_range=[float(ln["std"].min()), float(ln["std"].max())],
            rmsnorm_rms_range=[float(rms["rms"].min()), float(rms["rms"].max())],
            rmsnorm_max_abs_mean=float(rms["mean"].abs().max()),
            median_mean_share_of_rms2=float(mean_share.median()),
            median_cos_layernorm_vs_rmsnorm=float(cos.median()),
            min_cos_layernorm_vs_rmsnorm=float(cos.min()))
        _scatter_stats(ax, name, before, ln, rms, cos)

    # invariances on the real stream: scale every token by a, or add c to every channel of every token.
    # In float64 with a tiny eps they are the equations' own; the default eps (added to the variance)
    # breaks them a little for tokens whose variance is small, as the float32 numbers show.
    a, c = 3.7, 5.0

    def changes(x: torch.Tensor, eps: float | None) -> dict:
        ln_eps, rms_eps = (1e-5, 1e-6) if eps is None else (eps, eps)
        return {"LayerNorm(a x)": (layer_norm(a * x, eps=ln_eps) - layer_norm(x, eps=ln_eps)).abs().max(),
                "LayerNorm(x + c)": (layer_norm(x + c, eps=ln_eps) - layer_norm(x, eps=ln_eps)).abs().max(),
                "RMSNorm(a x)": (rms_norm(a * x, eps=rms_eps) - rms_norm(x, eps=rms_eps)).abs().max(),
                "RMSNorm(x + c)": (rms_norm(x + c, eps=rms_eps) - rms_norm(x, eps=rms_eps)).abs().max()}

    errors = {k: float(v) for k, v in changes(stream.double(), 1e-30).items()}
    default_eps = {k: float(v) for k, v in changes(stream, None).items()}
    invariant = {k: v < 1e-9 for k, v in errors.items()}
    out["invariance"] = dict(scale=a, shift=c, max_abs_change_float64=errors,
                             max_abs_change_float32_default_eps=default_eps, invariant=invariant)
    ax = axes[2]
    colors = [plotting.PALETTE[2] if invariant[k] else plotting.PALETTE[3] for k in errors]
    bars = plotting.bar_plot(ax, list(errors), [max(v, 1e-18) for v in errors.values()], colors=colors,
                             annotate=False, ylabel=f"max |f(changed x) - f(x)|, a={a}, c={c} (log)")
    ax.bar_label(bars, labels=[f"{v:.1e}" if v > 0 else "0 (exact)" for v in errors.values()], fontsize=8,
                 padding=2)
    ax.set_yscale("log")
    ax.set_title("Invariances (float64): LayerNorm ignores scale and shift,\nRMSNorm only scale "
                 "(green = invariant)",
                 fontsize=10)
    demo.save_figure(fig, "norm_statistics.png")

    real = out["residual stream"]
    demo.say(f"1. Norm statistics on {n_tokens} residual-stream vectors (the final norm's input) of the "
             f"trained {out['model']} model, d={dim}: per-token std {real['before_std_range'][0]:.2f}.."
             f"{real['before_std_range'][1]:.2f}, median mean {real['before_median_mean']:+.2f}, median rms "
             f"{real['before_median_rms']:.2f}.")
    demo.say(f"   After LayerNorm every token has mean 0 (max |mean| {real['layernorm_max_abs_mean']:.1e}) "
             f"and std {real['layernorm_std_range'][0]:.4f}..{real['layernorm_std_range'][1]:.4f}; after "
             f"RMSNorm rms {real['rmsnorm_rms_range'][0]:.4f}..{real['rmsnorm_rms_range'][1]:.4f} but the "
             f"mean stays (max |mean| {real['rmsnorm_max_abs_mean']:.2f}).")
    for name in sources:
        s = out[name]
        cos = s["median_cos_layernorm_vs_rmsnorm"]
        verdict = ("RMSNorm gives nearly LayerNorm's output, centring changes little" if cos > 0.99 else
                   "centring changes the output: RMSNorm is not LayerNorm here")
        demo.say(f"   {name}: the mean is {100 * s['median_mean_share_of_rms2']:.2f}% of a token's rms^2 "
                 f"(median); cos(LayerNorm, RMSNorm) median {cos:.4f}, min "
                 f"{s['min_cos_layernorm_vs_rmsnorm']:.3f}: {verdict}.")
    demo.say("   Invariances (max abs change, float64): " + ", ".join(
        f"{k} {v:.1e}{'' if invariant[k] else ' (NOT invariant)'}" for k, v in errors.items())
        + "; with the default eps in float32: " + ", ".join(f"{v:.1e}" for v in default_eps.values()) + ".")
    return out


# ------------------------------------------------------------------------------------------------
# 2. activation functions


def _ffn_preactivations(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """The inputs of every FFN's non-linearity on a batch, all layers stacked: (n_layer * B * T, d_ff)."""
    captured = []
    hooks = [block.ffn.act_fn.register_forward_hook(lambda m, inp, out: captured.append(inp[0].detach()))
             for block in model.blocks]
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat([h.reshape(-1, h.shape[-1]) for h in captured]).float().cpu()


def _plot_surface(fig, ax) -> None:
    """What one SwiGLU hidden unit passes on: silu(gate) * up, over a grid of (gate, up)."""
    g = torch.linspace(-3, 3, 241)
    gate, up = torch.meshgrid(g, g, indexing="xy")  # (241, 241) each
    surface = silu(gate) * up  # (241, 241)
    vmax = float(surface.abs().max())
    im = ax.imshow(surface, origin="lower", extent=(-3, 3, -3, 3), cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                   aspect="auto")
    ax.contour(gate, up, surface, levels=[-2, -1, -0.25, 0.25, 1, 2], colors="k", linewidths=0.6)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label("silu(gate) * up")
    ax.grid(False)
    ax.set_xlabel("gate = x W1 (through SiLU)")
    ax.set_ylabel("up = x W3 (linear)")
    ax.set_title("A SwiGLU unit: the gate opens for gate > 0, 'up' sets\nsign and size (a product: "
                 "quadratic in x)", fontsize=10)


def activation_functions(demo: Demo, cfg: dict, data: dict, grid: dict) -> dict:
    """The activations and their derivatives (autograd), the tanh-GELU error, SwiGLU's surface, and how
    many of a trained FFN's hidden pre-activations ReLU zeroes."""
    x = torch.linspace(-6, 6, 12_001, dtype=torch.float64, requires_grad=True)
    functions = {"ReLU": relu, "GELU (exact, erf)": gelu, "GELU (tanh approx.)": lambda t: gelu(t, "tanh"),
                 "SiLU = x sigmoid(x)": silu}
    values, slopes = {}, {}
    for name, fn in functions.items():
        y = fn(x)
        (slopes[name],) = torch.autograd.grad(y.sum(), x)
        values[name] = y.detach()
    xs = x.detach()
    diff = (values["GELU (exact, erf)"] - values["GELU (tanh approx.)"]).abs()
    i_max = int(diff.argmax())
    out = dict(max_abs_gelu_minus_tanh=float(diff[i_max]), at_x=float(xs[i_max]), x_range=[-6.0, 6.0],
               grid_points=xs.numel())
    for name, key in (("GELU (exact, erf)", "gelu"), ("SiLU = x sigmoid(x)", "silu")):
        j, k = int(values[name].argmin()), int(slopes[name].argmax())
        out[f"{key}_min"] = dict(value=float(values[name][j]), at_x=float(xs[j]))
        out[f"{key}_max_slope"] = dict(value=float(slopes[name][k]), at_x=float(xs[k]))
    gap = (values["GELU (exact, erf)"] - values["ReLU"]).abs()
    out["max_abs_gelu_minus_relu"] = dict(value=float(gap.max()), at_x=float(xs[int(gap.argmax())]))

    # trained FFNs: the share of hidden pre-activations below 0, where ReLU's output and gradient are 0
    generator = torch.Generator().manual_seed(demo.seed + 2)
    idx, _ = get_batch(data["val"], cfg["batch_size"], cfg["block_size"], generator=generator,
                       device=demo.device)
    sparsity = {}
    for key in ("pre-layernorm-relu", "pre-layernorm-gelu", "pre-rmsnorm-relu", "pre-rmsnorm-gelu"):
        if key in grid:
            pre = _ffn_preactivations(grid[key]["model"], idx)  # (N, d_ff)
            sparsity[key] = dict(fraction_negative=float((pre < 0).float().mean()),
                                 never_positive_units=int((pre.amax(0) < 0).sum()), units=pre.shape[1])
    out["trained_ffn_sparsity"] = sparsity

    fig, axes = plotting.new_figure(2, 2, figsize=(12, 9))
    window = (xs >= -4) & (xs <= 4)
    for ax, curves, ylabel in ((axes[0, 0], values, "activation(x)"),
                               (axes[0, 1], slopes, "d activation / dx (autograd)")):
        for name in functions:
            ax.plot(xs[window], curves[name][window], label=name, lw=1.6, ls="--" if "tanh" in name else "-")
        ax.set_xlabel("x")
        ax.set_ylabel(ylabel)
        ax.legend()
    gmin, smin = out["gelu_min"], out["silu_min"]
    axes[0, 0].set_title(f"Smooth ReLUs: GELU dips to {gmin['value']:.3f} at x={gmin['at_x']:.2f},\n"
                         f"SiLU to {smin['value']:.3f} at x={smin['at_x']:.2f}", fontsize=10)
    axes[0, 1].set_title(f"Derivatives: ReLU's jumps 0 -> 1; GELU's peaks at "
                         f"{out['gelu_max_slope']['value']:.3f},\nSiLU's at "
                         f"{out['silu_max_slope']['value']:.3f}; both are non-zero for x < 0", fontsize=10)
    ax = axes[1, 0]
    ax.semilogy(xs, diff.clamp_min(1e-12), color=plotting.PALETTE[3])
    ax.plot([out["at_x"]], [out["max_abs_gelu_minus_tanh"]], "o", color="black")
    ax.annotate(f"max {out['max_abs_gelu_minus_tanh']:.2e} at x = {out['at_x']:.2f}",
                (out["at_x"], out["max_abs_gelu_minus_tanh"]), xytext=(10, -4), textcoords="offset points",
                fontsize=9)
    ax.set_xlabel("x")
    ax.set_ylabel("|GELU(x) - GELU_tanh(x)| (log)")
    ax.set_title(f"GPT-2's tanh formula is within {out['max_abs_gelu_minus_tanh']:.1e} of the exact GELU",
                 fontsize=10)
    _plot_surface(fig, axes[1, 1])
    demo.save_figure(fig, "activations.png")

    relu_gap = out["max_abs_gelu_minus_relu"]
    demo.say(f"2. Activations: max |GELU - GELU_tanh| = {out['max_abs_gelu_minus_tanh']:.2e} at x = "
             f"{out['at_x']:.2f} ({xs.numel():,} points in [-6, 6]); GELU is never more than "
             f"{relu_gap['value']:.3f} from ReLU (at x = {relu_gap['at_x']:.2f}).")
    demo.say(f"   GELU's minimum {gmin['value']:.4f} at x = {gmin['at_x']:.3f}, SiLU's {smin['value']:.4f} "
             f"at x = {smin['at_x']:.3f}; their slopes peak at {out['gelu_max_slope']['value']:.3f} and "
             f"{out['silu_max_slope']['value']:.3f}.")
    for key, s in sparsity.items():
        tail = (f" (ReLU: output and gradient exactly 0); {s['never_positive_units']} of {s['units']} units "
                "never fire on this batch" if key.endswith("relu") else " (GELU still passes a gradient)")
        demo.say(f"   trained {key}: {100 * s['fraction_negative']:.1f}% of FFN pre-activations < 0{tail}")
    return out


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
    models = list({id(r): r for r in grid.values()}.values())
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
            _, _, trace = model(idx, return_hidden=True)
            block = model.blocks[0]
            x = trace.hidden[0]  # (B, T, d_model): the embeddings, block 0's input
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
    models = list({id(r): r for r in grid.values()}.values())  # without a norm, pre = post: one model
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
    models = list({id(r): r for r in grid.values()}.values())
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
             f"{cfg['batch_size']}x{cfg['block_size']} tokens at lr {_fmt_lr(cfg['lr'])}; all training runs "
             f"took {training['seconds']:.0f} s.")
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
            demo.say(f"   no norm - normed ({'pre' if p else 'post'}-norm rows, lr {_fmt_lr(cfg['lr'])}): "
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
    ax.set_xticks(lrs, labels=[_fmt_lr(lr) for lr in lrs])
    ax.set_xlabel("peak learning rate (log; linear warmup, then cosine decay)")
    ax.set_ylabel(f"final val loss after {cfg['steps']} steps (nats; clipped at {top:.2f})")
    ax.set_ylim(top=top + 0.25)
    ax.legend(fontsize=8, loc="center left")
    summary = ", ".join(f"{label.split(' (')[0]} {_fmt_lr(v['max_stable_lr'])}"
                        for label, v in out["configs"].items())
    ax.set_title(f"Largest lr that still trains: {summary}", fontsize=10)
    demo.save_figure(fig, "lr_stability.png")

    demo.say(f"5. Learning-rate sweep ({', '.join(_fmt_lr(lr) for lr in lrs)}; {cfg['steps']} steps each; "
             f"failed = val loss above {fail_line:.2f}, NaN = diverged):")
    for label, v in out["configs"].items():
        cells = ", ".join(f"{_fmt_lr(lr)} {'NaN' if d else ('FAILED ' if f else '') + _fmt_loss(loss)}"
                          for lr, loss, f, d in zip(lrs, v["final_val_loss"], v["failed"], v["diverged"]))
        demo.say(f"   {label:<24} {cells}; largest lr that trains {_fmt_lr(v['max_stable_lr'])}, best lr "
                 f"{_fmt_lr(v['best_lr'])}")
    stable = {label: v["max_stable_lr"] or 0.0 for label, v in out["configs"].items()}
    pre, post = SWEEP_CONFIGS[0][0], SWEEP_CONFIGS[2][0]
    if pre in stable and post in stable:
        if stable[post] < stable[pre]:
            sentence = (f"post-norm stops training at a lower lr than pre-norm ({_fmt_lr(stable[post])} vs "
                        f"{_fmt_lr(stable[pre])} still trains): pre-norm is the more stable placement here")
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
                 f"{_fmt_lr(best[label]['best_lr'])}{edge}) vs {gpt2} {best[gpt2]['best_loss']:.3f} (lr "
                 f"{_fmt_lr(best[gpt2]['best_lr'])}): "
                 f"{delta:+.3f} -> " + _verdict(delta, noise, demo.quick, "better", "worse"))
    return out


# ------------------------------------------------------------------------------------------------
# 6. what the from-scratch formulas cost: kernels="lab" vs kernels="torch"


def _median_times(fns: dict, reps: int, device: torch.device) -> dict:
    """Median seconds of each callable, interleaved (a, b, b, a, ...) so that a drifting machine load
    hits every variant alike; one warm-up call each first."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for rep in range(reps):
        for name in fns if rep % 2 == 0 else reversed(fns):
            _sync(device)
            t0 = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def _train_step(model: GPT, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def step() -> None:
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def _forward_backward(fn):
    def run() -> None:
        result = fn()
        result.backward(torch.ones_like(result))
    return run


def _time_models(demo: Demo, cfg: dict, data: dict) -> dict:
    """One AdamW step of the same GPT on the same batch, kernels='lab' vs kernels='torch'."""
    generator = torch.Generator().manual_seed(demo.seed + 3)
    out = {}
    for size in cfg["kernel_models"]:
        config = make_config(cfg, data["vocab_size"], "layernorm", "gelu", True, kernels="lab",
                             d_model=size["d_model"], n_layer=size["n_layer"], block_size=size["block_size"])
        torch.manual_seed(demo.seed)
        models = {"lab": GPT(config).to(demo.device),
                  "torch": GPT(dataclasses.replace(config, kernels="torch")).to(demo.device)}
        models["torch"].load_state_dict(models["lab"].state_dict())  # the same weights
        x, y = get_batch(data["train"], size["batch_size"], size["block_size"], generator=generator,
                         device=demo.device)
        with torch.no_grad():
            losses = {k: float(m(x, y)[1]) for k, m in models.items()}
        steps = {k: _train_step(m, torch.optim.AdamW(m.parameters(), lr=1e-4), x, y)
                 for k, m in models.items()}
        t = _median_times(steps, size["steps"], demo.device)
        name = f"d{size['d_model']} L{size['n_layer']} {size['batch_size']}x{size['block_size']}"
        out[name] = dict(lab_ms=1000 * t["lab"], torch_ms=1000 * t["torch"], ratio=t["lab"] / t["torch"],
                         abs_loss_difference=abs(losses["lab"] - losses["torch"]),
                         params=models["lab"].num_parameters(), steps=size["steps"])
    return out


def _time_ops(demo: Demo, cfg: dict) -> tuple[dict, dict]:
    """Each operation alone (forward + backward), lab formula vs torch kernel, at the last model's shapes."""
    size = cfg["kernel_models"][-1]
    n_tok, d, n_head = size["batch_size"] * size["block_size"], size["d_model"], cfg["n_head"]
    g = torch.Generator().manual_seed(demo.seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(demo.device).requires_grad_()

    h, w, b, hidden = rand(n_tok, d), rand(d), rand(d), rand(n_tok, 4 * d)
    q, k, v = (rand(size["batch_size"], n_head, size["block_size"], d // n_head) for _ in range(3))
    ops = {
        "LayerNorm": (lambda: layer_norm(h, w, b), lambda: F.layer_norm(h, (d,), w, b)),
        "RMSNorm": (lambda: rms_norm(h, w), lambda: F.rms_norm(h, (d,), w, 1e-6)),
        "GELU (tanh)": (lambda: gelu(hidden, "tanh"), lambda: F.gelu(hidden, approximate="tanh")),
        "SiLU": (lambda: silu(hidden), lambda: F.silu(hidden)),
        "causal attention": (lambda: scaled_dot_product_attention(q, k, v, causal=True)[0],
                             lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
    }
    out = {}
    for name, (lab_fn, torch_fn) in ops.items():
        t = _median_times({"lab": _forward_backward(lab_fn), "torch": _forward_backward(torch_fn)},
                          cfg["op_reps"], demo.device)
        out[name] = dict(lab_us=1e6 * t["lab"], torch_us=1e6 * t["torch"], ratio=t["lab"] / t["torch"])
    return out, dict(tokens=n_tok, d_model=d, hidden=4 * d, n_head=n_head, block_size=size["block_size"])


def kernel_costs(demo: Demo, cfg: dict, data: dict) -> dict:
    """What the from-scratch formulas cost against torch's fused kernels: per training step and per op."""
    models = _time_models(demo, cfg, data)
    ops, shapes = _time_ops(demo, cfg)
    threads = torch.get_num_threads()
    ln_rms_lab = ops["LayerNorm"]["lab_us"] / ops["RMSNorm"]["lab_us"]
    ln_rms_torch = ops["LayerNorm"]["torch_us"] / ops["RMSNorm"]["torch_us"]
    out = dict(models=models, ops=ops, op_shapes=shapes, threads=threads, device=str(demo.device),
               layernorm_over_rmsnorm_lab=ln_rms_lab, layernorm_over_rmsnorm_torch=ln_rms_torch)

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(13, 4.8))
    names = list(models)
    ratios = [models[n]["ratio"] for n in names]
    ax1.axhspan(1.5, 2.0, color="gray", alpha=0.15, label="GPTConfig's docstring: ~1.5-2x")
    ax1.axhline(1.0, color="black", lw=1, label="1x = no difference")
    plotting.bar_plot(ax1, names, ratios, fmt="{:.2f}x", colors=[plotting.PALETTE[1]] * len(names),
                      ylabel='time per step: kernels="lab" / kernels="torch"',
                      xlabel="model (d_model, layers, batch x context): median ms per AdamW step")
    ax1.set_xticks(range(len(names)), rotation=0, ha="center", fontsize=8,
                   labels=[f"{n}\nlab {models[n]['lab_ms']:.1f} ms, torch {models[n]['torch_ms']:.1f} ms"
                           for n in names])
    ax1.set_ylim(0, max(2.2, max(ratios) * 1.15))
    ax1.legend(fontsize=8, loc="upper left")
    span = f"{ratios[0]:.2f}x" if len(ratios) == 1 else f"{min(ratios):.2f}-{max(ratios):.2f}x"
    thread_text = f"{threads} thread" + ("s" if threads > 1 else "")
    ax1.set_title(f"A training step with the lab formulas takes {span} the fused kernels' time\n(median of "
                  f"{'/'.join(str(m['steps']) for m in models.values())} steps, same weights and batch, "
                  f"{thread_text}, {demo.device})", fontsize=10)
    pos = np.arange(len(ops))
    ax2.barh(pos - 0.2, [o["lab_us"] for o in ops.values()], 0.4, label="lab formula",
             color=plotting.PALETTE[1])
    ax2.barh(pos + 0.2, [o["torch_us"] for o in ops.values()], 0.4, label="torch kernel",
             color=plotting.PALETTE[0])
    ax2.set_yticks(pos, labels=[f"{n}\n{o['ratio']:.1f}x" for n, o in ops.items()])
    ax2.invert_yaxis()
    ax2.set_xscale("log")
    ax2.xaxis.set_minor_formatter(NullFormatter())  # the minor labels of a short log axis overlap
    ax2.set_xlabel(f"median µs, forward + backward (log; {shapes['tokens']} tokens, d={shapes['d_model']})")
    ax2.legend(fontsize=8)
    ax2.set_title(f"Per operation (lab/torch below each name); lab LayerNorm takes {ln_rms_lab:.2f}x\n"
                  f"lab RMSNorm's time, torch's LayerNorm {ln_rms_torch:.2f}x torch's RMSNorm", fontsize=10)
    demo.save_figure(fig, "kernels.png")

    demo.say(f"6. kernels='lab' vs 'torch' (same weights and batch, the median of several interleaved AdamW "
             f"steps, {thread_text}; GPTConfig's docstring claims ~1.5-2x):")
    for name, m in models.items():
        demo.say(f"   {name}: lab {m['lab_ms']:.1f} ms vs torch {m['torch_ms']:.1f} ms per step = "
                 f"{m['ratio']:.2f}x (median of {m['steps']}); the two losses differ by "
                 f"{m['abs_loss_difference']:.1e}")
    demo.say("   per op (fwd+bwd), lab/torch: " + ", ".join(f"{n} {o['ratio']:.1f}x" for n, o in ops.items())
             + f"; LayerNorm/RMSNorm time: lab {ln_rms_lab:.2f}x, torch {ln_rms_torch:.2f}x.")
    return out


# ------------------------------------------------------------------------------------------------
# the curriculum's claims, checked against this run's numbers


def _status(diffs: list[float] | None, quick: bool) -> str:
    """'supported' when a paired difference (negative = the claim's side is better) holds at every seed."""
    if diffs is None:
        return "not measured"
    if quick:
        return "inconclusive"
    outcome = paired_effect(diffs)
    if outcome == "better":
        return "supported"
    if outcome == "worse":
        return "NOT supported on this budget (the opposite holds)"
    return "not shown (within seed noise)" if outcome == "tie" else "inconclusive"


def _norm_claim(results: dict, quick: bool) -> str:
    """Without a norm: worse at the grid's lr? at its own best lr? does it collapse where pre-LN trains?"""
    grid, sweep = results["grid"], results["lr_stability"]
    noise, at_grid_lr = grid["seed_noise"], grid["no_norm_minus_norm"]["pre"]
    grid_lr = _fmt_lr(results["config"]["lr"])
    if quick or not (math.isfinite(at_grid_lr) and math.isfinite(noise)):
        return (f"inconclusive (no norm - normed at lr {grid_lr}: {at_grid_lr:+.3f})"
                + (": quick mode" if quick else ""))
    label, gpt2 = SWEEP_CONFIGS[3][0], SWEEP_CONFIGS[0][0]
    at_best = sweep.get("best_lr_minus_gpt2", {}).get(label, math.nan)
    configs = sweep["configs"]
    collapse = [lr for i, lr in enumerate(sweep["lrs"]) if label in configs and gpt2 in configs
                and configs[label]["failed"][i] and not configs[gpt2]["failed"][i]]
    text = (f"no norm - normed {at_grid_lr:+.3f} nats at lr {grid_lr}; at each one's best lr, no-norm GELU - "
            f"pre-LN GELU {at_best:+.3f} (no-norm's best lr {_fmt_lr(configs.get(label, {}).get('best_lr'))})"
            + (f"; no norm fails at lr {', '.join(map(_fmt_lr, collapse))} where pre-LN still trains"
               if collapse else ""))
    if at_grid_lr > noise and math.isfinite(at_best) and at_best > noise:
        return "supported: no norm is worse even at its own best lr; " + text
    if at_grid_lr > noise or collapse:
        own = ("better" if at_best < -noise else "as good (within noise)") if math.isfinite(at_best) \
            else "unmeasured"
        return (f"supported only as 'a norm widens the range of learning rates that work': at this depth "
                f"({results['config']['n_layer']} layers) the no-norm model at its own best lr is {own}; "
                + text)
    return "NOT supported on this budget: " + text


def key_insights(demo: Demo, results: dict) -> dict:
    """Each of the curriculum's lesson-10 claims next to the numbers of this run that test it."""
    stats, grid, acts = results["norm_statistics"]["residual stream"], results["grid"], results["activations"]
    noise, quick = grid["seed_noise"], demo.quick
    std_error = max(abs(s - 1) for s in stats["layernorm_std_range"])
    ln_ok = stats["layernorm_max_abs_mean"] < 1e-4 and std_error < 1e-2
    relu_gap = acts["max_abs_gelu_minus_relu"]
    claims = {
        "LayerNorm: normalize to mean=0, std=1 per example":
            f"{'supported' if ln_ok else 'NOT supported'}: max |mean| {stats['layernorm_max_abs_mean']:.1e}, "
            f"std {stats['layernorm_std_range'][0]:.4f}..{stats['layernorm_std_range'][1]:.4f}",
        "RMSNorm: simpler, no centering":
            f"the mean stays (max |mean| {stats['rmsnorm_max_abs_mean']:.2f}); lab LayerNorm takes "
            f"{results['kernels']['layernorm_over_rmsnorm_lab']:.2f}x lab RMSNorm's time (torch's fused "
            f"LayerNorm {results['kernels']['layernorm_over_rmsnorm_torch']:.2f}x torch's RMSNorm); val loss "
            f"RMSNorm - LayerNorm {grid['verdicts']['rmsnorm_vs_layernorm']}",
        "GELU: smooth approximation of ReLU":
            f"max |GELU - ReLU| {relu_gap['value']:.3f} (at x = {relu_gap['at_x']:.2f}), and a continuous "
            f"slope (peak {acts['gelu_max_slope']['value']:.3f}) where ReLU's jumps",
        "SwiGLU: better than standard MLPs":
            f"{_status(grid['swiglu_minus_gelu_by_seed'], quick)}: SwiGLU - GELU at equal parameters after "
            f"{results['config']['steps']} steps: {grid['verdicts']['swiglu_vs_gelu']} ({SHAZEER_2020})",
    }
    spread, failed = grid["spread_working_models"], grid["failed_models"]
    if quick:
        combo = "inconclusive: quick mode, the models are barely trained"
    elif math.isfinite(noise) and noise > 0 and math.isfinite(spread):
        combo = (f"{'supported' if spread > noise or failed else 'NOT supported'}: the working models' final "
                 f"losses span {spread:.3f} nats = {spread / noise:.1f}x the seed noise, and {failed} of "
                 f"{grid['distinct_models']} models failed")
    else:
        combo = f"final losses span {spread:.3f} nats; {failed} models failed; no seed-noise estimate"
    claims["Different combinations affect convergence speed and final performance"] = combo
    claims["Normalization prevents training collapse (Key Learnings)"] = _norm_claim(results, quick)
    demo.say("Key insights of the curriculum, checked against this run:")
    for claim, evidence in claims.items():
        demo.say(f" - {claim}: {evidence}.")
    return claims


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--norm", choices=("all",) + NORMS, default="all",
                        help="train only the grid rows with this norm (default all)")
    parser.add_argument("--lr-scale", type="positive_float", default=1.0,
                        help="break: multiply every learning rate by this factor")
    parser.add_argument("--no-warmup", action="store_true",
                        help="break: no learning-rate warmup (post-norm needs it)")
    parser.add_argument("--n-layer", type="positive_int", default=None,
                        help="layers of the grid's models (default 2)")
    parser.add_argument("--steps", type="positive_int", default=None, help="training steps per run")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="training text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    if not (args.lr_scale > 0 and math.isfinite(args.lr_scale)):
        parser.error(f"--lr-scale must be a positive number, got {args.lr_scale}")
    for name in ("n_layer", "steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return _run(args)  # Demo runs torch on --threads threads (default 1)


def _run(args) -> dict:
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    cfg["lr"] *= args.lr_scale
    cfg["sweep_lrs"] = [lr * args.lr_scale for lr in cfg["sweep_lrs"]]
    cfg["warmup"] = 0 if args.no_warmup else cfg["warmup"]
    cfg["n_layer"] = args.n_layer or cfg["n_layer"]
    cfg["steps"] = args.steps or cfg["steps"]
    norms = NORMS if args.norm == "all" else (args.norm,)
    results = demo.results
    results["config"] = {k: v for k, v in cfg.items() if k != "kernel_models"} | {"norms": list(norms)}
    timings = results["timings_s"] = {}

    start = time.perf_counter()
    data = load_data(cfg, args.corpus, demo.seed)
    # a run "failed" when it learned (almost) nothing beyond the token frequencies; a quick run is too short
    # to get past them at all, so there it fails only when it is no better than uniform guessing
    data["fail_baseline"] = "uniform" if demo.quick else "unigram"
    data["fail_baseline_loss"] = data["uniform_loss"] if demo.quick else data["unigram_loss"]
    data["fail_threshold"] = data["fail_baseline_loss"] - FAIL_MARGIN
    results["data"] = dict(corpus=args.corpus, chars=cfg["n_chars"], vocab_size=data["vocab_size"],
                           train_tokens=len(data["train"]), val_tokens=len(data["val"]),
                           unigram_loss=data["unigram_loss"], uniform_loss=data["uniform_loss"],
                           fail_threshold=data["fail_threshold"])
    timings["data"] = round(time.perf_counter() - start, 2)
    demo.say(f"Data: {cfg['n_chars']:,} chars of {args.corpus}, BPE {data['vocab_size']} tokens: "
             f"{len(data['train']):,} train / {len(data['val']):,} val tokens; a context-free unigram model "
             f"scores {data['unigram_loss']:.3f} nats on val, uniform guessing {data['uniform_loss']:.3f}.")
    if demo.quick:
        demo.say(f"Quick mode: {cfg['steps']} steps per run, the models are barely trained (a run fails only "
                 f"if within {FAIL_MARGIN} of uniform guessing); the training comparisons are not evidence.")
    training = run_training(demo, cfg, data, norms)
    timings["training"] = round(training["seconds"], 2)
    grid = training["grid"]
    stats_cell = next(k for k in ("pre-layernorm-gelu", "pre-rmsnorm-gelu", "pre-none-gelu") if k in grid)

    def run(name, experiment, *inputs):
        t0 = time.perf_counter()
        results[name] = experiment(demo, *inputs)
        timings[name] = round(time.perf_counter() - t0, 2)
        return results[name]

    run("norm_statistics", norm_statistics, cfg, data, grid[stats_cell])
    run("activations", activation_functions, cfg, data, grid)
    curves = run("ablation_curves", ablation_curves, cfg, data, training, norms)
    run("grid", ablation_grid, cfg, training, curves, norms)
    run("lr_stability", lr_stability, cfg, data, training)
    run("kernels", kernel_costs, cfg, data)
    results["key_insights"] = key_insights(demo, results)
    demo.finish()
    return results


if __name__ == "__main__":
    main()
