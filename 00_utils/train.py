"""The one small training loop every lesson uses, and the cache of trained lab models (DESIGN §4).

A language model is trained by minimising the cross-entropy of the next token. The loop is the
standard recipe of GPT-style pretraining at toy scale: AdamW (decoupled weight decay on matrices
only), a linear warmup then cosine decay of the learning rate, gradient-norm clipping, and a
periodic evaluation on held-out data. The optimizer and the clipping are this lesson's from-scratch
versions (`optim.py`, proven equal to torch's in the tests); `TrainConfig(torch_optim=True)` swaps
in torch's fused AdamW and `clip_grad_norm_` for speed. Checkpoints (`checkpoint.py`) let a run
stop and resume bit for bit. It records the history so the demos can plot loss curves,
and stops early (``History.diverged``) when the loss stops being finite, which the stability
ablations measure.

References: Loshchilov & Hutter 2019 (AdamW), Loshchilov & Hutter 2017 (cosine schedule),
Radford et al. 2019 / nanoGPT (the recipe).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from llmlab.utils.checkpoint import load_checkpoint, save_checkpoint
from llmlab.utils.data import cache_dir, get_batch
from llmlab.utils.optim import AdamW, clip_grad_norm

# A version of the training code, part of every cached model's key: bump it whenever a change of the
# loop, the schedule or the optimizer changes the weights a recipe produces, so no stale model is reused.
# 2: lr_at reaches the minimum on the last step (was one past it); from-scratch AdamW and clipping.
TRAINING_CODE_VERSION = 2

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
    torch_optim: bool = False  # True: torch's fused AdamW and clip_grad_norm_ instead of ours (speed)

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
        if not isinstance(self.torch_optim, bool):
            raise TypeError(f"torch_optim must be a bool, got {type(self.torch_optim).__name__}")


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
    """The learning rate of step `step` (0-based): linear warmup, then cosine decay to the floor.

        warmup  (t < T_w):   lr * (t + 1) / T_w         step 0 already moves; step T_w - 1 is the peak
        decay   (t >= T_w):  lr * (r + (1 - r) * (1 + cos(pi * p)) / 2),   p = (t - t_peak) / (T - 1 - t_peak)

    with T = `config.steps`, T_w = `config.warmup_steps`, r = `config.min_lr_ratio` and t_peak =
    max(T_w - 1, 0), the step that gets the peak `lr`. The peak is held for one step only, and the
    last training step (T - 1) gets exactly lr * r (a 1-step run: the peak). Steps past the end stay
    at lr * r.
    Raises ValueError unless step is an int >= 0, TypeError unless config is a TrainConfig.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    peak = max(config.warmup_steps - 1, 0)
    span = config.steps - 1 - peak
    if step <= peak:  # no warmup: step 0 is the peak
        progress = 0.0
    else:
        progress = 1.0 if span <= 0 else min(1.0, (step - peak) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on biases, norms' gains or other 1-D parameters).

    Decay pulls weights towards 0; a norm's gain pulled towards 0 switches its features off and a
    bias has no scale to regularise, so GPT-2/nanoGPT decay only the >= 2-D weights.
    Ours (`llmlab.utils.optim.AdamW`) by default; torch's fused AdamW with `config.torch_optim`.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if not config.torch_optim:
        return AdamW(groups, lr=config.lr, betas=config.betas)
    try:
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=True)
    except RuntimeError:  # a device or dtype without a fused kernel
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
          val_batch_fn: BatchFn | None = None, checkpoint_path: str | os.PathLike | None = None,
          checkpoint_interval: int | None = None, resume_from: str | os.PathLike | None = None) -> History:
    """Train `model` (``forward(idx, targets) -> (logits, loss)``) for `config.steps` steps.

    Batches come from `get_batch` on `train_data` / `val_data`, or from `batch_fn(generator)` /
    `val_batch_fn(generator)` when a lesson needs other inputs (masked LM, fine-tuning pairs).
    The val loss is measured every `config.eval_interval` steps and after the last step.
    Checkpoints: with `checkpoint_path` and `checkpoint_interval` k, the state after every k-th step
    is written to `checkpoint_path` (model, optimizer, step, RNG states, history so far);
    `resume_from` loads such a file and continues from its step, exactly as the uninterrupted run.
    Raises TypeError for a model, train_data or config of the wrong type, ValueError for a
    checkpoint_interval that is not an int >= 1 or without checkpoint_path.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if batch_fn is None and not isinstance(train_data, torch.Tensor):
        raise TypeError("train_data must be a 1-D tensor of token ids (or pass batch_fn)")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    bad_interval = isinstance(checkpoint_interval, bool) or not isinstance(checkpoint_interval, int) \
        or checkpoint_interval < 1
    if checkpoint_interval is not None and bad_interval:
        raise ValueError(f"checkpoint_interval must be an int >= 1 or None, got {checkpoint_interval!r}")
    if (checkpoint_interval is None) != (checkpoint_path is None):
        raise ValueError("checkpoint_path and checkpoint_interval go together: pass both or neither")
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, config)
    clip = torch.nn.utils.clip_grad_norm_ if config.torch_optim else clip_grad_norm
    generator = torch.Generator().manual_seed(seed)
    history = History()
    first_step = 0
    if resume_from is not None:
        saved = load_checkpoint(resume_from, model, optimizer, generator=generator)
        first_step = saved["step"]
        history = History.from_dict(saved["extra"]["history"])
    start = time.perf_counter() - history.wall_time_s
    # disable=None: the bar redraws in place on a terminal and stays quiet when output goes to a file
    bar = tqdm(range(first_step, config.steps), desc=desc, disable=None if progress else True, leave=False,
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
        optimizer.zero_grad(set_to_none=True)  # else the gradients of all steps add up
        loss.backward()
        if config.grad_clip is not None:
            clip(model.parameters(), config.grad_clip)
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
        if checkpoint_interval is not None and (step + 1) % checkpoint_interval == 0:
            history.wall_time_s = time.perf_counter() - start
            save_checkpoint(checkpoint_path, model, optimizer, step + 1, generator=generator,
                            extra={"history": history.to_dict()})
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
    # the training code's version is part of every key: a changed loop never reuses old weights
    versioned = {**key, "training_code_version": TRAINING_CODE_VERSION}
    return hashlib.sha256(_key_json(versioned).encode()).hexdigest()[:16]


def cached_training(key: dict, build: Callable[[], nn.Module], fit: Callable[[nn.Module], History], *,
                    use_cache: bool = True) -> tuple[nn.Module, History, bool]:
    """Train a lab model once and reuse it: returns (model, history, cache_hit).

    `key` must name everything that determines the weights (model config, corpus, tokenizer,
    training recipe, seed); its JSON, plus `TRAINING_CODE_VERSION`, is hashed into the file name
    under `cache_dir()/models`. A corpus file enters the key by its content (see `CorpusFile`).
    `build()` makes the untrained model, `fit(model)` trains it in place and returns its History.
    Set ``LLMLAB_NO_CACHE=1`` (or `use_cache=False`) to always retrain.

    Errors are not hidden: an exception from `build` or `fit` propagates, and a cached file whose
    weights do not fit the model `build()` makes is an error (the key misses something that shapes
    the model). Only a file that cannot be read at all (truncated by a crash) is retrained, with a
    warning naming it.
    Raises TypeError unless key is a dict, RuntimeError when the cached model does not fit the model that
    build() returns.
    """
    if not isinstance(key, dict):
        raise TypeError(f"key must be a dict, got {type(key).__name__}")
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
