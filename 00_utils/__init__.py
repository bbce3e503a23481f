"""Shared utilities of LLM Lab: the demo command line, plotting, built-in corpora, training loop.

Every lesson imports these instead of writing its own (DESIGN §1–4).
"""

from llmlab.utils import plotting
from llmlab.utils.cli import Demo, demo_parser, get_device, set_seed, to_jsonable
from llmlab.utils.data import (
    CORPORA,
    CharTokenizer,
    cache_dir,
    encode,
    get_batch,
    load_corpus,
    train_val_split,
)
from llmlab.utils.train import (
    History,
    TrainConfig,
    cached_training,
    estimate_loss,
    lr_at,
    make_optimizer,
    train,
)

__all__ = [
    "CORPORA", "CharTokenizer", "Demo", "History", "TrainConfig", "cache_dir", "cached_training",
    "demo_parser", "encode", "estimate_loss", "get_batch", "get_device", "load_corpus", "lr_at",
    "make_optimizer", "plotting", "set_seed", "to_jsonable", "train", "train_val_split",
]
