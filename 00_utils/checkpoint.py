"""Checkpoints: everything needed to stop training and resume it exactly (DESIGN §4).

Resuming must continue as if training had never stopped. That needs more than the weights: the
optimizer's moments (AdamW's m and v, and its step count for the bias correction), the step number
(for the learning-rate schedule), and the state of every random number generator that the loop
draws from — the batch sampler's `torch.Generator` and torch's global CPU generator (dropout,
`torch.randint` without a generator); the CUDA generators when CUDA is in use. With all of that
restored, N steps == k steps + save + load + N - k steps, bit for bit on a CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

CHECKPOINT_FORMAT = "llmlab-checkpoint"


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, *,
                    generator: torch.Generator | None = None, extra: dict | None = None) -> Path:
    """Write model, optimizer, `step` (steps done), the RNG states and `extra` (plain data) to `path`.

    The file is written to a temporary name first and then renamed, so a crash never leaves half a
    checkpoint under `path`.
    Raises TypeError for a path that is not a str or os.PathLike, a model or optimizer of the wrong type,
    a generator or extra of the wrong type; ValueError for a step that is not an int >= 0.
    """
    path = _check_path(path)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict or None, got {type(extra).__name__}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "generator": generator.get_state() if generator is not None else None,
        "extra": extra or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, *,
                    generator: torch.Generator | None = None, restore_rng: bool = True) -> dict:
    """Load a checkpoint of `save_checkpoint` into `model` (and `optimizer`, `generator`) in place.

    Restores torch's global RNG state (and CUDA's, if saved and available) unless `restore_rng=False`.
    Returns {"step": steps done, "extra": the saved extra dict}.
    Raises TypeError for a path, model, optimizer or generator of the wrong type; ValueError when path is
    not a file written by save_checkpoint, or holds no generator state but a generator is given.
    """
    path = _check_path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"path {str(path)!r} is not a checkpoint written by save_checkpoint")
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])  # moves the moments to the parameters' device
    if generator is not None:
        if payload["generator"] is None:
            raise ValueError(f"path {str(path)!r} holds no generator state (saved without generator=)")
        generator.set_state(payload["generator"])
    if restore_rng:
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
    return {"step": payload["step"], "extra": payload["extra"]}


def _check_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)
