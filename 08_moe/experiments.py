"""Lesson 08's experiments: the training runs and measurements behind demo.py, as functions that return
numbers and draw nothing (the demo draws each figure and says what the numbers show).

Small Llama-style lab GPTs (character tokens) are trained through llmlab.utils.train; the MoE models
replace each FFN with lesson 08's MoELayer (GPTConfig.n_experts). Every run records, step by step, what
each MoE layer did (RoutingRecorder); FLOPs per token are counted by torch's FlopCounterMode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from llmlab.moe.moe_layer import MoELayer
from llmlab.transformer_block import GPT, llama_config
from llmlab.utils import (
    CharTokenizer,
    TrainConfig,
    encode,
    estimate_loss,
    load_corpus,
    train,
    train_val_split,
)

# evaluation-only capacity factors of the capacity experiment; None = unlimited
CAPACITY_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, None)


class RoutingRecorder(nn.Module):
    """Wraps a GPT for llmlab.utils.train and records, at every training step, what each MoE layer did:
    the fraction of assignments per expert (n_layer, E), the router entropy and the dropped assignments."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model
        self.utilisation: list[np.ndarray] = []  # per step: (n_layer, E)
        self.entropy: list[float] = []  # per step: mean over layers, nats
        self.dropped: list[float] = []  # per step: fraction of assignments dropped

    def forward(self, idx, targets=None):
        out = self.model(idx, targets)
        if self.training:
            stats = [b.ffn.last_stats for b in self.model.blocks if isinstance(b.ffn, MoELayer)]
            if stats:
                self.utilisation.append(np.stack([s.tokens_per_expert.cpu().numpy() for s in stats]))
                self.entropy.append(float(np.mean([s.router_entropy for s in stats])))
                self.dropped.append(sum(s.n_dropped for s in stats) / sum(s.n_assignments for s in stats))
        return out


def load_data(cfg: dict, corpus: str, seed: int) -> dict:
    text = load_corpus(corpus, cfg["corpus_chars"], seed=seed)
    tokenizer = CharTokenizer.from_text(text)  # characters: the FFNs, not the vocabulary, dominate compute
    train_ids, val_ids = train_val_split(encode(text, tokenizer), 0.1)
    return dict(tokenizer=tokenizer, train=train_ids, val=val_ids, vocab_size=tokenizer.vocab_size)


def flops_per_token(model: GPT, block_size: int, device) -> float:
    """Forward FLOPs per token of the whole model, counted by torch's FlopCounterMode (matmuls only)."""
    idx = torch.zeros(1, block_size, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(idx)
    model.train(was_training)
    return counter.get_total_flops() / block_size


def train_run(cfg: dict, data: dict, name: str, *, seed: int, device, **overrides) -> dict:
    """Train one lab GPT (`overrides` go to llama_config) and measure it: final val loss, ms per training
    step, FLOPs per token, parameters (total, FFN, active FFN)."""
    config = llama_config(vocab_size=data["vocab_size"], block_size=cfg["block_size"], n_layer=cfg["n_layer"],
                          n_head=cfg["n_head"], d_model=cfg["d_model"], **overrides)
    torch.manual_seed(seed)
    model = GPT(config)
    recorder = RoutingRecorder(model)
    tc = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], block_size=cfg["block_size"],
                     lr=3e-3, warmup_steps=max(1, cfg["steps"] // 10),
                     eval_interval=max(1, cfg["steps"] // cfg["n_evals"]), eval_iters=cfg["eval_iters"])
    history = train(recorder, data["train"], data["val"], tc, device=device, seed=seed, progress=True,
                    desc=name)
    moe = model.blocks[0].ffn if config.n_experts else None
    ffn_params = sum(p.numel() for b in model.blocks for p in b.ffn.parameters())
    active_ffn = sum(b.ffn.cost().active_params for b in model.blocks) if moe is not None else ffn_params
    return dict(
        name=name, model=model, config=config, history=history, recorder=recorder, train_config=tc,
        final_val_loss=history.final_val_loss, ms_per_step=1000 * history.mean_step_time_s,
        flops_per_token=flops_per_token(model, cfg["block_size"], device),
        total_params=model.num_parameters(), ffn_params=ffn_params, active_ffn_params=active_ffn,
    )


def train_all(cfg: dict, data: dict, *, seed: int, device) -> dict:
    """Every training run the experiments need, once: dense; MoE top-1 (equal FLOPs per token); a dense FFN
    as wide as all experts (equal total parameters); MoE top-2; MoE without the balancing loss; the other
    expert counts of the sweep; and (full runs) the dense model again with another seed, for the noise."""
    E, cf = cfg["n_experts"], cfg["capacity_factor"]
    moe = dict(n_experts=E, moe_capacity_factor=cf, moe_aux_loss_coef=cfg["aux_coef"],
               moe_z_loss_coef=cfg["z_coef"])
    ffn_dim = llama_config(d_model=cfg["d_model"]).ffn_dim
    no_aux = "" if cfg["aux_coef"] > 0 else ", aux-coef 0"  # the names follow the flag

    def run(name: str, seed_offset: int = 0, **overrides) -> dict:
        return train_run(cfg, data, name, seed=seed + seed_offset, device=device, **overrides)

    runs = {
        "dense": run("dense"),
        "moe_top1": run(f"MoE {E}x top-1{no_aux}", moe_top_k=1, **moe),
        "dense_wide": run(f"dense d_ff x{E}", d_ff=E * ffn_dim),
        "moe_top2": run(f"MoE {E}x top-2{no_aux}", moe_top_k=min(2, E), **moe),
        "moe_no_aux": run(f"MoE {E}x top-1, no balance loss", moe_top_k=1,
                          **(moe | dict(moe_aux_loss_coef=0.0))),
    }
    for n in cfg["expert_sweep"]:
        if n != E:
            runs[f"moe_e{n}"] = run(f"MoE {n}x top-1", moe_top_k=1, **(moe | dict(n_experts=n)))
    if cfg["noise_run"]:  # the seed-to-seed noise of a final val loss: the dense model with another seed
        runs["dense_seed2"] = run("dense (seed + 1)", seed_offset=1)
    return runs


def summary(run: dict) -> dict:
    return {k: run[k] for k in ("final_val_loss", "ms_per_step", "flops_per_token", "total_params",
                                "ffn_params", "active_ffn_params")}


def imbalance(run: dict, last_fraction: float = 0.25) -> float:
    """max over layers and experts of (fraction of assignments) x E, averaged over the last quarter of the
    steps: 1.0 = perfectly balanced, E = every token on one expert."""
    util = np.stack(run["recorder"].utilisation)  # (steps, n_layer, E)
    tail = util[-max(1, int(len(util) * last_fraction)):].mean(axis=0)  # (n_layer, E)
    return float(tail.max() * util.shape[-1])


def capacity_sweep(run: dict, val_data, cfg: dict, device, factors=CAPACITY_FACTORS) -> dict:
    """Evaluate a trained MoE model at each capacity factor (no retraining): the fraction of assignments
    dropped and the val loss, both over the same evaluation batches. The model is left as it was."""
    tc = TrainConfig(steps=1, batch_size=cfg["batch_size"], block_size=cfg["block_size"],
                     eval_iters=cfg["eval_iters"])
    model = run["model"]
    layers = [b.ffn for b in model.blocks]
    saved = [layer.capacity_factor for layer in layers]
    dropped, losses = [], []
    counts = {"dropped": 0, "assignments": 0}

    def record(layer, inputs, output):  # every forward of every layer, every batch
        counts["dropped"] += layer.last_stats.n_dropped
        counts["assignments"] += layer.last_stats.n_assignments

    hooks = [layer.register_forward_hook(record) for layer in layers]
    for f in factors:
        for layer in layers:
            layer.capacity_factor = f
        counts.update(dropped=0, assignments=0)
        losses.append(estimate_loss(model, val_data, tc, device=device))
        dropped.append(counts["dropped"] / counts["assignments"])  # over the same batches as the loss
    for hook in hooks:
        hook.remove()
    for layer, f in zip(layers, saved):
        layer.capacity_factor = f
    return dict(capacity_factor=[str(f) for f in factors], dropped_fraction=dropped, val_loss=losses)
