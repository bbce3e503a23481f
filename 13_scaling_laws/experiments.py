"""Lesson 13's measurements: every training run of the sweep (cached), the fits with bootstrap uncertainty,
memory measured against scaling.py's formulas, and the torchrun DDP run. demo.py prints, figures.py draws."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from llmlab.scaling_laws.scaling import (
    compute_optimal,
    count_params,
    fit_chinchilla,
    fit_isoflops,
    fit_power_law,
    training_memory,
)
from llmlab.transformer_block import GPT, gpt2_config
from llmlab.transformer_block.pretrained import lab_tokenizer
from llmlab.utils import TrainConfig, encode, load_corpus, train, train_val_split
from llmlab.utils.train import cached_training, make_optimizer

HERE = Path(__file__).resolve().parent
TRAIN_DDP = HERE / "train_ddp.py"


def load_data(n_chars: int, vocab_size: int, seed: int) -> dict:
    """The stories in lesson 01's BPE, split 90/10, and a digest of the tokens (for the cache key)."""
    text = load_corpus("stories", n_chars, seed=seed)
    tokenizer = lab_tokenizer(text, vocab_size)
    train_text, val_text = train_val_split(text, 0.1)
    train_ids, val_ids = encode(train_text, tokenizer), encode(val_text, tokenizer)
    digest = hashlib.sha256(train_ids.numpy().tobytes() + val_ids.numpy().tobytes()).hexdigest()[:16]
    return dict(vocab_size=len(tokenizer.vocab), train=train_ids, val=val_ids, digest=digest)


def model_config(vocab_size: int, block_size: int, size: tuple[int, int]):
    """GPT-2-style (learned positions, tied embeddings); size = (n_layer, d_model), heads of width 16."""
    n_layer, d_model = size
    return gpt2_config(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                       n_head=max(1, d_model // 16), d_model=d_model)


def train_point(cfg: dict, data: dict, size: tuple[int, int], steps: int, *, seed: int, schedule: str,
                device, evals: int = 8) -> dict:
    """Train one (size, steps) point of the sweep through the shared loop, cached by everything that sets
    the weights. schedule: "cosine" (warmup + cosine decay over this run's own steps, matched to its
    budget) or "fixed" (warmup then a constant rate, the same for every run length)."""
    config = model_config(data["vocab_size"], cfg["block_size"], size)
    warmup = max(1, min(cfg["warmup"], steps // 10))
    tc = TrainConfig(steps=steps, batch_size=cfg["batch_size"], block_size=cfg["block_size"], lr=cfg["lr"],
                     warmup_steps=warmup, min_lr_ratio=1.0 if schedule == "fixed" else 0.1,
                     eval_interval=max(1, steps // evals), eval_iters=cfg["eval_iters"])
    key = dict(lesson="13_scaling_laws", config=dataclasses.asdict(config), recipe=dataclasses.asdict(tc),
               corpus=data["digest"], seed=seed)

    def build():
        torch.manual_seed(seed)
        return GPT(config)

    def fit(model):
        return train(model, data["train"], data["val"], tc, device=device, seed=seed, progress=False)

    _, history, hit = cached_training(key, build, fit)
    N = count_params(config, non_embedding=True)
    D = steps * cfg["batch_size"] * cfg["block_size"]
    return dict(size=list(size), N=N, N_total=count_params(config), D=D, C=6 * N * D, steps=steps,
                loss=history.final_val_loss, history=history, cached=hit,
                step_s=history.mean_step_time_s, config=config)


def isoflop_steps(C: float, N: int, tokens_per_step: int) -> int:
    """Steps that spend C = 6 N D training FLOPs on a model of N non-embedding parameters."""
    return max(1, round(C / (6 * N * tokens_per_step)))


# ----------------------------------------------------------------------------------------------------
# fits with bootstrap uncertainty


def bootstrap(fn, arrays: list[np.ndarray], n: int, seed: int) -> list:
    """fn on n resamples (with replacement) of the rows of arrays; failed fits are skipped."""
    rng = np.random.default_rng(seed)
    rows, out = len(arrays[0]), []
    for _ in range(n):
        pick = rng.integers(0, rows, rows)
        if len(np.unique(pick)) < 4:
            continue
        try:
            out.append(fn(*(a[pick] for a in arrays)))
        except (ValueError, FloatingPointError):
            continue
    return out


def interval(values) -> list[float]:
    """The 10th and 90th percentiles (an 80% bootstrap interval)."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    return [float("nan"), float("nan")] if len(values) == 0 else \
        [float(np.percentile(values, 10)), float(np.percentile(values, 90))]


def power_law_fit(N, L, *, n_boot: int, seed: int) -> dict:
    """L(N) = E + A / N^alpha on the sweep, its residuals and a bootstrap interval of alpha and E."""
    N, L = np.asarray(N, float), np.asarray(L, float)
    E, A, alpha = fit_power_law(N, L)
    residuals = np.log(L) - np.log(E + A * N ** -alpha)
    boots = bootstrap(lambda n, y: fit_power_law(n, y), [N, L], n_boot, seed)
    return dict(E=E, A=A, alpha=alpha, residuals=residuals.tolist(),
                rms_residual=float(np.sqrt(np.mean(residuals**2))),
                alpha_interval=interval([b[2] for b in boots]), E_interval=interval([b[0] for b in boots]),
                n_boot=len(boots))


def chinchilla_fit(N, D, L, C_ref: float, *, n_boot: int, seed: int) -> dict:
    """Approach 3 on every run, the compute-optimal tokens per parameter at C_ref, bootstrap intervals."""

    N, D, L = (np.asarray(a, float) for a in (N, D, L))
    fit = fit_chinchilla(N, D, L, n_starts=16)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a degenerate fit: inf residuals
        residuals = np.log(L) - np.log(fit["E"] + fit["A"] / N ** fit["alpha"] + fit["B"] / D ** fit["beta"])

    def tpp(f: dict) -> float:
        try:
            n, d = compute_optimal(C_ref, **f)
        except ValueError:  # a resample whose fit put a constant at 0 (no optimum)
            return float("nan")
        return d / n

    boots = bootstrap(lambda n, d, y: fit_chinchilla(n, d, y, n_starts=4), [N, D, L], n_boot, seed)
    return dict(fit=fit, residuals=residuals.tolist(), rms_residual=float(np.sqrt(np.mean(residuals**2))),
                tokens_per_param=tpp(fit), tokens_per_param_interval=interval([tpp(b) for b in boots]),
                alpha_interval=interval([b["alpha"] for b in boots]),
                beta_interval=interval([b["beta"] for b in boots]), n_boot=len(boots))


def isoflop_fit(C, N, L) -> dict:
    """Approach 2 (scaling.fit_isoflops) as JSON-ready lists, or the reason it failed."""
    try:
        fit = fit_isoflops(C, N, L)
    except ValueError as err:
        return dict(error=str(err))
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in fit.items()}


def loss_at_tokens(history, tokens: float, tokens_per_step: int) -> float:
    """The held-out loss of a run after `tokens` tokens, interpolated between its evaluations (in log
    tokens); NaN beyond the run."""
    seen = np.array(history.eval_steps, float) * tokens_per_step
    if tokens > seen[-1] * 1.0001 or tokens < seen[0]:
        return float("nan")
    return float(np.interp(np.log(tokens), np.log(seen), history.val_loss))


# ----------------------------------------------------------------------------------------------------
# memory


def measured_training_bytes(config, *, batch_size: int, seq_len: int, device) -> dict:
    """Bytes of one fp32 AdamW training step of GPT(config), by part: params, grads, optimizer states (the
    tensors themselves) and the activations autograd saves for the backward pass (unique storages, caught
    with saved_tensors_hooks); on CUDA also torch.cuda.max_memory_allocated of the step."""

    torch.manual_seed(0)
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    model = GPT(config).to(device)
    optimizer = make_optimizer(model, TrainConfig(batch_size=batch_size, block_size=seq_len))
    x = torch.randint(0, config.vocab_size, (batch_size, seq_len), device=device)
    saved: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:  # weights are saved too, but they are counted as params
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(x, x)
    loss.backward()
    optimizer.step()
    grads = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    states = sum(v.nbytes for s in optimizer.state.values() for v in s.values()
                 if torch.is_tensor(v) and v.dim() > 0)
    out = dict(params=sum(p.nbytes for p in model.parameters()), grads=grads, optimizer_states=states,
               activations=sum(saved.values()))
    out["total"] = sum(out.values())
    if device.type == "cuda":
        out["cuda_max_allocated"] = torch.cuda.max_memory_allocated(device) - base
    predicted = training_memory(config, batch_size=batch_size, seq_len=seq_len, dtype=torch.float32)
    return dict(measured=out, predicted={k: predicted[k] for k in out if k in predicted})


# ----------------------------------------------------------------------------------------------------
# data parallel: train_ddp.py under torchrun


def run_ddp(steps: int, dtype: str, *, nproc: int = 2, timeout: int = 240) -> dict:
    """train_ddp.py --check under `python -m torch.distributed.run` with nproc processes; its --out JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               str(TRAIN_DDP), "--check", "--steps", str(steps), "--dtype", dtype, "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if not out.exists():
            raise RuntimeError(f"train_ddp.py exited with {proc.returncode} and wrote no JSON:\n"
                               + proc.stderr[-2000:])
        result = json.loads(out.read_text())
    result["returncode"] = proc.returncode
    return result
