"""Adam + L2 against AdamW at the same learning rate and decay coefficient, on a tiny GPT.

Adam + L2 adds wd * w to the gradient, and the Adam step then divides it by sqrt(v): the decay a
weight gets depends on how large its gradients are. AdamW shrinks every weight by (1 - lr * wd) per
step, whatever its gradients (Loshchilov & Hutter 2019). Same model, data, schedule and seeds for
every variant; the only difference is `AdamW(decoupled_weight_decay=...)` and `weight_decay`.
Reports the held-out loss and the root-mean-square of the weight matrices after training, averaged
over seeds (± the spread between seeds), and writes them to `outputs/adamw_vs_l2.json`.

    python adamw_vs_l2.py [--quick] [--seeds 3] [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from llmlab.transformer_block import GPT, gpt2_config
from llmlab.utils import (
    AdamW,
    CharTokenizer,
    TrainConfig,
    clip_grad_norm,
    encode,
    estimate_loss,
    get_batch,
    load_corpus,
    lr_at,
    train_val_split,
)

VARIANTS = {  # name -> (weight_decay, decoupled)
    "no decay": (0.0, True),
    "AdamW wd=0.1": (0.1, True),
    "Adam+L2 wd=0.1": (0.1, False),
    "AdamW wd=1": (1.0, True),
    "Adam+L2 wd=1": (1.0, False),
}


def run(name: str, seed: int, data: dict, config: TrainConfig, vocab_size: int) -> dict:
    weight_decay, decoupled = VARIANTS[name]
    torch.manual_seed(seed)
    model = GPT(gpt2_config(vocab_size=vocab_size, block_size=config.block_size, n_layer=2, n_head=4,
                            d_model=64))
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]
    optimizer = AdamW(groups, lr=config.lr, betas=config.betas, decoupled_weight_decay=decoupled)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        x, y = get_batch(data["train"], config.batch_size, config.block_size, generator=generator)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(model.parameters(), config.grad_clip)
        optimizer.step()
    val = estimate_loss(model, data["val"], config)
    rms = torch.sqrt(sum((p.detach() ** 2).sum() for p in matrices) / sum(p.numel() for p in matrices))
    return {"val_loss": val, "weight_rms": float(rms)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 steps, 1 seed")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "outputs")
    args = parser.parse_args(argv)
    seeds = args.seeds or (1 if args.quick else 3)
    steps = args.steps or (60 if args.quick else 400)
    if seeds < 1 or steps < 1:
        parser.error("--seeds and --steps must be >= 1")
    torch.set_num_threads(1)
    text = load_corpus("stories", 200_000)
    tokenizer = CharTokenizer.from_text(text)
    train_text, val_text = train_val_split(text, 0.1)
    data = {"train": encode(train_text, tokenizer), "val": encode(val_text, tokenizer)}
    config = TrainConfig(steps=steps, batch_size=16, block_size=64, lr=3e-3, warmup_steps=steps // 10,
                         eval_iters=20)
    start = time.perf_counter()
    results = {}
    for name in VARIANTS:
        runs = [run(name, seed, data, config, tokenizer.vocab_size) for seed in range(seeds)]
        summary = {}
        for key in ("val_loss", "weight_rms"):
            values = [r[key] for r in runs]
            summary[key] = statistics.mean(values)
            summary[key + "_spread"] = (max(values) - min(values)) / 2
            summary[key + "_per_seed"] = values
        results[name] = summary
        print(f"{name:16s} val loss {summary['val_loss']:.4f} ± {summary['val_loss_spread']:.4f}   "
              f"weight RMS {summary['weight_rms']:.4f} ± {summary['weight_rms_spread']:.4f}")
    payload = {"config": {"steps": steps, "seeds": seeds, "lr": config.lr, "batch_size": config.batch_size,
                          "block_size": config.block_size,
                          "model": "gpt2 preset, 2 layers, d_model 64, characters"},
               "results": results, "wall_time_s": time.perf_counter() - start,
               "machine": platform.processor() or platform.machine()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adamw_vs_l2.json").write_text(json.dumps(payload, indent=2))
    return payload


if __name__ == "__main__":
    main()
