"""The trained lab models that later lessons reuse: a small GPT on the built-in stories, cached.

Lessons 03, 05, 06, 07, 09, 14 and 15 need a model that has actually learned something — attention
maps of an untrained model are noise, and sampling from it shows nothing. `lab_model` trains one
GPT of this lesson on the `stories` corpus, tokenized with lesson 01's byte-level BPE, through the
shared training loop, and caches the weights (DESIGN §4) so that the next lesson loads it in a
second instead of retraining. The cache key is everything that determines the weights: the model
config, the tokenizer, the corpus and the training recipe.

    lab = lab_model("gpt2", quick=args.quick, device=demo.device)
    lab.model, lab.tokenizer, lab.history, lab.val_data
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch

from llmlab.tokenization import BPETokenizer
from llmlab.transformer_block import GPT, GPTConfig, gpt2_config, llama_config
from llmlab.utils import CORPORA, History, TrainConfig, cache_dir, cached_training, encode, load_corpus, train
from llmlab.utils import train_val_split as split
from llmlab.utils.cli import active_corpus

PRESETS = {"gpt2": gpt2_config, "llama": llama_config}

# The recipe: 1 MB of stories (quick: 100 kB), a 1024-token BPE, the preset's 4-layer 128-wide GPT,
# 800 steps of 16 x 128 tokens (~2 min on a 2-core CPU; quick: 60 steps of 8 x 128, a few seconds).
FULL = {"n_chars": 1_000_000, "steps": 800, "batch_size": 16}
QUICK = {"n_chars": 100_000, "steps": 60, "batch_size": 8}
VOCAB_SIZE = 1024
BLOCK_SIZE = 128


@dataclass
class LabModel:
    """A trained lab GPT with everything needed to use and evaluate it."""

    model: GPT
    tokenizer: BPETokenizer
    config: GPTConfig
    history: History
    train_data: torch.Tensor  # 1-D token ids
    val_data: torch.Tensor
    cache_hit: bool

    def encode(self, text: str, device: torch.device | str | None = None) -> torch.Tensor:
        """text -> (1, T) token ids on the model's device."""
        device = device or next(self.model.parameters()).device
        return encode(text, self.tokenizer)[None].to(device)

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return self.tokenizer.decode(ids)


def lab_tokenizer(text: str, vocab_size: int = VOCAB_SIZE) -> BPETokenizer:
    """Lesson 01's BPE trained on `text` (GPT-4 split pattern), cached by the text's hash."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = cache_dir() / "tokenizers" / f"bpe-{vocab_size}-{digest}.json"
    if path.exists():
        try:
            return BPETokenizer.load(path)
        except Exception:  # a file written by an older format: retrain
            pass
    tokenizer = BPETokenizer.train(text, vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(path)
    return tokenizer


def lab_model(preset: str = "gpt2", *, quick: bool = False, device: torch.device | str = "cpu",
              seed: int = 0, steps: int | None = None, progress: bool = True, corpus: str | None = None,
              **overrides) -> LabModel:
    """A GPT of `preset` ("gpt2" or "llama") trained on the stories, from the cache when possible.

    `corpus`: a built-in corpus name or a text file; None trains on the running demo's ``--corpus``
    (`active_corpus()`: the stories unless the user chose otherwise). The cache is keyed by the
    text's content, so an edited file trains a new model.

    `quick` uses the small recipe (seconds; the model is barely trained); the full one takes a
    couple of minutes on a 2-core CPU the first time, then loads from the cache.
    `overrides` change the model config (e.g. ``n_layer=2``, ``pos="alibi"``) — each distinct
    config is its own cached model.
    Raises ValueError for an unknown preset or a steps that is not an int >= 1, what load_corpus raises for a
    bad corpus and what the preset's config raises for bad overrides.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    recipe = dict(QUICK if quick else FULL)
    if steps is not None:
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        recipe["steps"] = steps
    corpus = active_corpus() if corpus is None else corpus
    text = load_corpus(corpus, recipe["n_chars"], seed=seed)
    tokenizer = lab_tokenizer(text)
    train_text, val_text = split(text, 0.1)
    train_data, val_data = encode(train_text, tokenizer), encode(val_text, tokenizer)
    config = PRESETS[preset](vocab_size=len(tokenizer.vocab), block_size=BLOCK_SIZE, **overrides)
    train_config = TrainConfig(steps=recipe["steps"], batch_size=recipe["batch_size"], block_size=BLOCK_SIZE,
                               lr=3e-3, warmup_steps=min(100, recipe["steps"] // 10),
                               eval_interval=max(1, recipe["steps"] // 5),
                               eval_iters=5 if quick else 20)
    corpus_key = {"name": corpus if corpus in CORPORA else "file",
                  "sha256": hashlib.sha256(text.encode()).hexdigest()}  # by content, not by path
    key = {"what": "lab_model", "config": config.cache_key(), "corpus": corpus_key, "recipe": recipe,
           "train": asdict(train_config), "tokenizer": {"kind": "bpe-gpt4-split", "vocab_size": VOCAB_SIZE},
           "seed": seed}

    def build() -> GPT:
        torch.manual_seed(seed)
        return GPT(config)

    def fit(model: GPT) -> History:
        return train(model, train_data, val_data, train_config, device=device, seed=seed,
                     progress=progress, desc=f"lab {preset}")

    model, history, hit = cached_training(key, build, fit)
    model.to(device).eval()
    return LabModel(model, tokenizer, config, history, train_data, val_data, hit)
