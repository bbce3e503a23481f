"""Lesson 10's measurements of single layers: experiments 1-2 of the demo.

 1. norm_statistics       per-token mean and std of a trained model's residual stream (and of skewed
                          synthetic vectors) before and after LayerNorm and RMSNorm; their invariances
 2. activation_functions  ReLU, GELU, GELU-tanh and SiLU with their derivatives, SwiGLU's response
                          surface, and the share of a trained FFN's pre-activations that ReLU zeroes

Each experiment returns its numbers, draws its figure and prints what it found.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from llmlab.normalization.experiments_grid import run_label
from llmlab.normalization.layers import gelu, layer_norm, relu, rms_norm, silu, token_statistics
from llmlab.transformer_block import GPT, trace
from llmlab.utils import Demo, get_batch, plotting

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
        _, recorded = trace(model, idx)
    stream = recorded.hidden[-1].reshape(-1, model.config.d_model).float().cpu()  # (N, d): final norm's input
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


