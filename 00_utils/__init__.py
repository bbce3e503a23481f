"""Shared utilities of LLM Lab: the demo command line, plotting, built-in corpora, training loop.

The training loop's parts are written from scratch and proven equal to torch's: AdamW and gradient
clipping (`optim`), softmax and cross-entropy (`losses`), checkpoints (`checkpoint`).

Every lesson imports these instead of writing its own (DESIGN §1–4).
"""

from llmlab.utils import plotting
from llmlab.utils.checkpoint import load_checkpoint, save_checkpoint
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

__all__ = [
    "CORPORA", "TRAINING_CODE_VERSION", "AdamW", "CharTokenizer", "Demo", "History", "TrainConfig",
    "cache_dir", "cached_training", "clip_grad_norm", "cross_entropy", "demo_parser", "encode",
    "estimate_loss", "get_batch", "get_device", "load_checkpoint", "load_corpus", "log_softmax", "lr_at",
    "make_optimizer", "plotting", "save_checkpoint", "set_seed", "softmax", "to_jsonable", "train",
    "train_val_split",
]
