"""The one small training loop every lesson uses, and the cache of trained lab models (DESIGN §4).

A language model is trained by minimising the cross-entropy of the next token. The loop is the
standard recipe of GPT-style pretraining at toy scale: AdamW (decoupled weight decay on matrices
only), a linear warmup then cosine decay of the learning rate, gradient-norm clipping, and a
periodic evaluation on held-out data. It records the history so the demos can plot loss curves,
and stops early (``History.diverged``) when the loss stops being finite, which the stability
ablations measure.

References: Loshchilov & Hutter 2019 (AdamW), Loshchilov & Hutter 2017 (cosine schedule),
Radford et al. 2019 / nanoGPT (the recipe).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from llmlab.utils.data import cache_dir, get_batch

BatchFn = Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainConfig:
    steps: int = 500
    batch_size: int = 32
    block_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    eval_interval: int = 100
    eval_iters: int = 20
    betas: tuple[float, float] = (0.9, 0.95)

    def __post_init__(self):
        for name in ("steps", "batch_size", "block_size", "eval_interval", "eval_iters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")


@dataclass
class History:
    """What happened during training: per-step train loss, periodic val loss, timings."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    step_time_s: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
    diverged: bool = False
    tokens_seen: int = 0

    @property
    def final_val_loss(self) -> float:
        return self.val_loss[-1] if self.val_loss else float("nan")

    @property
    def mean_step_time_s(self) -> float:
        times = self.step_time_s[1:] or self.step_time_s  # the first step includes warm-up costs
        return sum(times) / len(times) if times else float("nan")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms' gains or 1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


@torch.no_grad()
def estimate_loss(model: nn.Module, data: torch.Tensor, config: TrainConfig, *,
                  device: str | torch.device = "cpu", generator: torch.Generator | None = None,
                  batch_fn: BatchFn | None = None) -> float:
    """Mean loss over `config.eval_iters` random batches of `data` (model in eval mode)."""
    was_training = model.training
    model.eval()
    if generator is None:
        generator = torch.Generator().manual_seed(1234)  # the same batches at every evaluation
    losses = []
    for _ in range(config.eval_iters):
        if batch_fn is not None:
            x, y = batch_fn(generator)
            x, y = x.to(device), y.to(device)
        else:
            x, y = get_batch(data, config.batch_size, config.block_size, generator=generator, device=device)
        _, loss = model(x, y)
        losses.append(loss.item())
    model.train(was_training)
    return sum(losses) / len(losses)


def train(model: nn.Module, train_data: torch.Tensor | None, val_data: torch.Tensor | None,
          config: TrainConfig, *, device: str | torch.device = "cpu", seed: int = 0,
          progress: bool = True, desc: str = "train", batch_fn: BatchFn | None = None,
          val_batch_fn: BatchFn | None = None) -> History:
    """Train `model` (``forward(idx, targets) -> (logits, loss)``) for `config.steps` steps.

    Batches come from `get_batch` on `train_data` / `val_data`, or from `batch_fn(generator)` /
    `val_batch_fn(generator)` when a lesson needs other inputs (masked LM, fine-tuning pairs).
    The val loss is measured every `config.eval_interval` steps and after the last step.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if batch_fn is None and not isinstance(train_data, torch.Tensor):
        raise TypeError("train_data must be a 1-D tensor of token ids (or pass batch_fn)")
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    history = History()
    start = time.perf_counter()
    # disable=None: the bar redraws in place on a terminal and stays quiet when output goes to a file
    bar = tqdm(range(config.steps), desc=desc, disable=None if progress else True, leave=False,
               dynamic_ncols=True)

    def evaluate(step: int) -> None:
        if val_data is None and val_batch_fn is None:
            return
        loss = estimate_loss(model, val_data, config, device=device, batch_fn=val_batch_fn)
        history.eval_steps.append(step)
        history.val_loss.append(loss)

    for step in bar:
        t0 = time.perf_counter()
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if batch_fn is not None:
            x, y = batch_fn(generator)
            x, y = x.to(device), y.to(device)
        else:
            x, y = get_batch(train_data, config.batch_size, config.block_size, generator=generator,
                             device=device)
        _, loss = model(x, y)
        if not torch.isfinite(loss):
            history.diverged = True
            history.steps.append(step)
            history.train_loss.append(float("nan"))
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        history.steps.append(step)
        history.train_loss.append(loss.item())
        history.lr.append(lr)
        history.tokens_seen += x.numel()
        history.step_time_s.append(time.perf_counter() - t0)
        if (step + 1) % config.eval_interval == 0 and step + 1 < config.steps:
            evaluate(step + 1)
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{history.val_loss[-1]:.3f}")
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if not history.diverged:
        evaluate(len(history.steps))
        if history.val_loss and not math.isfinite(history.val_loss[-1]):
            history.diverged = True
    history.wall_time_s = time.perf_counter() - start
    model.eval()
    return history


def _canonical_key(value):
    """The key as JSON values; a corpus file (`CorpusFile`) becomes the hash of its content, so an
    edited file never reuses a model trained on its old text, and a moved one still finds it."""
    if hasattr(value, "cache_key") and callable(value.cache_key):
        return _canonical_key(value.cache_key())
    if isinstance(value, dict):
        return {str(k): _canonical_key(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical_key(v) for v in value]
    return value


def _key_json(key: dict) -> str:
    return json.dumps(_canonical_key(key), sort_keys=True, default=str)


def _key_digest(key: dict) -> str:
    return hashlib.sha256(_key_json(key).encode()).hexdigest()[:16]


def cached_training(key: dict, build: Callable[[], nn.Module], fit: Callable[[nn.Module], History], *,
                    use_cache: bool = True) -> tuple[nn.Module, History, bool]:
    """Train a lab model once and reuse it: returns (model, history, cache_hit).

    `key` must name everything that determines the weights (model config, corpus, tokenizer,
    training recipe, seed, a version of the training code); its JSON is hashed into the file name
    under `cache_dir()/models`. A corpus file enters the key by its content (see `CorpusFile`).
    `build()` makes the untrained model, `fit(model)` trains it in place and returns its History.
    Set ``LLMLAB_NO_CACHE=1`` (or `use_cache=False`) to always retrain.

    Errors are not hidden: an exception from `build` or `fit` propagates, and a cached file whose
    weights do not fit the model `build()` makes is an error (the key misses something that shapes
    the model). Only a file that cannot be read at all (truncated by a crash) is retrained, with a
    warning naming it.
    """
    if not isinstance(key, dict):
        raise TypeError(f"key must be a dict, got {type(key).__name__}")
    import os
    import pickle
    import warnings
    import zipfile

    use_cache = use_cache and os.environ.get("LLMLAB_NO_CACHE", "") in ("", "0")
    path = cache_dir() / "models" / f"{_key_digest(key)}.pt"
    model = build()
    if use_cache and path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            state, history = saved["state_dict"], History.from_dict(json.loads(saved["history"]))
        except (OSError, EOFError, KeyError, ValueError, RuntimeError, pickle.UnpicklingError,
                zipfile.BadZipFile) as e:
            warnings.warn(f"cached model {path} cannot be read ({type(e).__name__}: {e}); retraining",
                          stacklevel=2)
        else:
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                raise RuntimeError(f"the cached model {path} does not fit the model built for this key; "
                                   "the key must name everything that shapes the model (delete the file "
                                   f"to retrain): {e}") from e
            return model, history, True
    history = fit(model)
    if use_cache and not history.diverged:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "history": json.dumps(history.to_dict()),
                    "key": _key_json(key)}, tmp)
        tmp.replace(path)
    return model, history, False
