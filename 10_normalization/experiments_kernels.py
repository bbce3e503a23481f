"""Lesson 10's cost of the from-scratch formulas: experiment 6 of the demo.

 6. kernel_costs  one AdamW step of the same GPT with kernels="lab" (the lesson's formulas) vs
                  kernels="torch" (fused kernels), and each operation alone, forward + backward

The variants run interleaved (a, b, b, a, ...), so that a drifting machine load hits each alike; the
figure and the printed numbers are the medians.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch
import torch.nn.functional as F
from matplotlib.ticker import NullFormatter

from llmlab.attention_basics import scaled_dot_product_attention
from llmlab.normalization.experiments_grid import make_config
from llmlab.normalization.layers import gelu, layer_norm, rms_norm, silu
from llmlab.transformer_block import GPT
from llmlab.utils import Demo, get_batch, plotting


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()



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
    plotting.grouped_bar_plot(ax2, [f"{n}\n{o['ratio']:.1f}x" for n, o in ops.items()],
                              {"lab formula": [o["lab_us"] for o in ops.values()],
                               "torch kernel": [o["torch_us"] for o in ops.values()]},
                              horizontal=True, colors=[plotting.PALETTE[1], plotting.PALETTE[0]])
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


