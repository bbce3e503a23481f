"""Speed of the from-scratch training step against torch's fused one, side by side (DESIGN §5).

One training step of the lab GPT (lesson 04's `gpt2` preset at the lab model's size): forward, the
loss, backward, gradient clipping, the AdamW update. "ours" uses this lesson's `cross_entropy`,
`clip_grad_norm` and `AdamW`; "torch" uses `F.cross_entropy`, `clip_grad_norm_` and
`torch.optim.AdamW(fused=True)`. The model's own forward is the same for both. Steps alternate in
rounds (ours, torch, ours, torch, ...) so that machine load hits both alike; the summary is the ratio
of the median step times, for the whole step and for the optimizer part (clip + update) alone.

    python benchmark_train.py [--quick] [--rounds N] [--device auto|cpu|cuda|mps]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from llmlab.transformer_block import GPT, gpt2_config
from llmlab.utils import AdamW, clip_grad_norm, cross_entropy, get_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def make_setup(device: torch.device, *, quick: bool, seed: int = 0):
    """The lab GPT (vocab 1024, 4 layers, d_model 128, 128-token context) and a batch of 16 x 128."""
    torch.manual_seed(seed)
    config = gpt2_config(vocab_size=1024, block_size=128, n_layer=2 if quick else 4)
    model = GPT(config).to(device)
    batch = 4 if quick else 16
    x = torch.randint(0, config.vocab_size, (batch, config.block_size), device=device)
    y = torch.randint(0, config.vocab_size, (batch, config.block_size), device=device)
    return model, x, y


def timed_step(model, optimizer, x, y, *, ours: bool, device: torch.device) -> tuple[float, float]:
    """(seconds of the whole step, seconds of clip + optimizer update)."""
    loss_fn = cross_entropy if ours else F.cross_entropy
    clip = clip_grad_norm if ours else torch.nn.utils.clip_grad_norm_
    _sync(device)
    t0 = time.perf_counter()
    logits, _ = model(x)
    loss = loss_fn(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _sync(device)
    t1 = time.perf_counter()
    clip(model.parameters(), 1.0)
    optimizer.step()
    _sync(device)
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller model and a few rounds")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 30; quick 5)")
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 30)
    if rounds < 1 or args.steps_per_round < 1:
        parser.error("--rounds and --steps-per-round must be >= 1")
    device = torch.device(get_device(args.device))

    runs = {}
    for name, ours in (("ours", True), ("torch", False)):
        model, x, y = make_setup(device, quick=args.quick)
        params = [{"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": 0.1},
                  {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}]
        optimizer = (AdamW(params, lr=3e-3, betas=(0.9, 0.95)) if ours
                     else torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.95), fused=device.type != "mps"))
        timed_step(model, optimizer, x, y, ours=ours, device=device)  # warm-up: allocations, lazy state
        runs[name] = {"model": model, "optimizer": optimizer, "x": x, "y": y, "ours": ours,
                      "step": [], "update": []}
    for _ in range(rounds):
        for run in runs.values():
            for _ in range(args.steps_per_round):
                step, update = timed_step(run["model"], run["optimizer"], run["x"], run["y"],
                                          ours=run["ours"], device=device)
                run["step"].append(step)
                run["update"].append(update)
    med = {name: {k: statistics.median(run[k]) for k in ("step", "update")} for name, run in runs.items()}
    result = {
        "device": str(device), "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "load_avg_1min": os.getloadavg()[0],
        "quick": args.quick, "steps_each": rounds * args.steps_per_round,
        "ours_step_ms": 1e3 * med["ours"]["step"], "torch_step_ms": 1e3 * med["torch"]["step"],
        "ours_update_ms": 1e3 * med["ours"]["update"], "torch_update_ms": 1e3 * med["torch"]["update"],
    }
    result["step_ratio"] = result["ours_step_ms"] / result["torch_step_ms"]
    result["update_ratio"] = result["ours_update_ms"] / result["torch_update_ms"]
    r = result
    print(f"lab GPT training step on {device} ({r['threads']} threads, load {r['load_avg_1min']:.2f}), "
          f"median of {r['steps_each']} steps each, alternating:")
    print(f"  whole step      ours {r['ours_step_ms']:8.2f} ms   torch fused {r['torch_step_ms']:8.2f} ms"
          f"   ratio {r['step_ratio']:.2f}x")
    print(f"  clip + update   ours {r['ours_update_ms']:8.2f} ms   torch fused {r['torch_update_ms']:8.2f} ms"
          f"   ratio {r['update_ratio']:.2f}x")
    return result


if __name__ == "__main__":
    main()
