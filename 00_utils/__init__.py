"""Shared utilities of LLM Lab: the demo command line, plotting, built-in corpora, training loop.

The training loop's parts are written from scratch and proven equal to torch's: AdamW and gradient
clipping (`optim`), softmax and cross-entropy (`losses`), checkpoints (`checkpoint`).

Every lesson imports these instead of writing its own (DESIGN §1–4).

The names are imported on first use (PEP 562 `__getattr__`): `llm-lab list` and the runner import
this package without paying for torch and matplotlib (seconds). The `TYPE_CHECKING` block below
lists the same imports for editors and type checkers, so go-to-definition still lands in the file
that defines each name.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmlab.utils import plotting
    from llmlab.utils.checkpoint import load_checkpoint, save_checkpoint
    from llmlab.utils.cli import (
        Demo,
        corpus_arg,
        demo_parser,
        get_device,
        nonneg_int,
        positive_float,
        positive_int,
        set_seed,
        to_jsonable,
        unit_interval,
    )
    from llmlab.utils.data import (
        CORPORA,
        CharTokenizer,
        CorpusError,
        cache_dir,
        check_corpus,
        encode,
        get_batch,
        load_corpus,
        train_val_split,
    )
    from llmlab.utils.losses import cross_entropy, log_softmax, softmax
    from llmlab.utils.optim import AdamW, clip_grad_norm
    from llmlab.utils.train import (
        TRAINING_CODE_VERSION,
        History,
        TrainConfig,
        cached_training,
        estimate_loss,
        lr_at,
        make_optimizer,
        train,
    )

# name -> the submodule that defines it
_SOURCES = {
    "plotting": None,
    **dict.fromkeys(["Demo", "corpus_arg", "demo_parser", "get_device", "nonneg_int", "positive_float",
                     "positive_int", "set_seed", "to_jsonable", "unit_interval"], "cli"),
    **dict.fromkeys(["CORPORA", "CharTokenizer", "CorpusError", "cache_dir", "check_corpus", "encode",
                     "get_batch", "load_corpus", "train_val_split"], "data"),
    **dict.fromkeys(["TRAINING_CODE_VERSION", "History", "TrainConfig", "cached_training", "estimate_loss",
                     "lr_at", "make_optimizer", "train"], "train"),
    **dict.fromkeys(["load_checkpoint", "save_checkpoint"], "checkpoint"),
    **dict.fromkeys(["cross_entropy", "log_softmax", "softmax"], "losses"),
    **dict.fromkeys(["AdamW", "clip_grad_norm"], "optim"),
}

__all__ = [
    "TRAINING_CODE_VERSION", "AdamW", "clip_grad_norm", "cross_entropy", "load_checkpoint", "log_softmax",
    "save_checkpoint", "softmax",
    "CORPORA", "CharTokenizer", "CorpusError", "Demo", "History", "TrainConfig", "cache_dir",
    "cached_training", "check_corpus", "corpus_arg", "demo_parser", "encode", "estimate_loss", "get_batch",
    "get_device", "load_corpus", "lr_at", "make_optimizer", "nonneg_int", "plotting", "positive_float",
    "positive_int", "set_seed", "to_jsonable", "train", "train_val_split", "unit_interval",
]
assert sorted(__all__) == sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module 'llmlab.utils' has no attribute {name!r}")
    module = _SOURCES[name]
    if module is None:
        value = importlib.import_module(f"llmlab.utils.{name}")
    else:
        value = getattr(importlib.import_module(f"llmlab.utils.{module}"), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`llmlab.utils.train` is both a submodule and the function it defines. Importing a submodule
    makes Python set it as an attribute of the package; for that one name, keep the function (as
    the eager `from llmlab.utils.train import train` did), whoever imports the submodule first."""

    def __setattr__(self, name: str, value) -> None:
        if (isinstance(value, types.ModuleType) and _SOURCES.get(name) == name
                and value.__name__ == f"{__name__}.{name}"):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
