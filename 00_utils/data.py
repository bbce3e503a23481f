"""Built-in corpora and the batching every training demo uses; nothing is fetched from a network.

Corpora (DESIGN §3), all deterministic for a given seed:
- ``stories``      simple English short stories from a grammar (`llmlab.utils.stories`): named
                   characters, places and objects that are referred back to. The default corpus:
                   tiny models learn its structure within seconds on a CPU.
- ``python-docs``  real English prose: the docstrings of the installed Python standard library.
- ``python-code``  real source code: the standard library's ``.py`` files.
- a path           any UTF-8 text file of your own (e.g. Shakespeare).

The two standard-library corpora depend on the Python version that is installed (the files are
read in a seeded random order); the stories depend only on the seed.

A language model is trained on (input, target) pairs where the target is the input shifted by one
token: `get_batch` cuts random windows of ``block_size + 1`` tokens out of one long 1-D tensor.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import os
import random
import sys
import sysconfig
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from llmlab.utils.stories import generate_stories

CORPORA = ("stories", "python-docs", "python-code")
# The least a text file must hold to train on: the demos hold out 10% for validation and cut
# windows of up to a few hundred characters out of it.
MIN_CORPUS_CHARS = 10_000
# Folders of the standard library that are not the library itself (tests, IDLE's GUI, vendored pip).
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "ensurepip",
              "lib2to3", "turtledemo", "pydoc_data", "encodings"}


class CorpusError(ValueError):
    """A corpus file that cannot be used: missing, unreadable, not UTF-8, or too short."""


class CorpusFile(str):
    """The path of a checked corpus file (a str) that carries the SHA-256 of the file's content:
    `cached_training` keys a model trained on it by what the file holds, not by its name."""

    sha256: str

    def __new__(cls, path: str | os.PathLike, sha256: str):
        self = super().__new__(cls, os.fspath(path))
        self.sha256 = sha256
        return self

    def cache_key(self) -> dict:
        return {"file_sha256": self.sha256}


def check_corpus(path: str | os.PathLike, min_chars: int = MIN_CORPUS_CHARS) -> str:
    """Check up front that `path` is a UTF-8 text file of at least `min_chars` characters.

    Returns the SHA-256 of its bytes; raises `CorpusError` naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file {str(path)!r} does not exist (or is not a file); "
                          f"a corpus is one of {', '.join(CORPORA)} or a path to a UTF-8 text file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"corpus file {str(path)!r} cannot be read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CorpusError(f"corpus file {str(path)!r} is not UTF-8 text: byte 0x{data[e.start]:02x} at "
                          f"offset {e.start} (line {line}) cannot be decoded; convert it, e.g. "
                          f"`iconv -f latin1 -t utf-8`") from None
    n = len(text.strip())
    if n < min_chars:
        what = "is empty" if n == 0 else f"holds only {n:,} characters"
        raise CorpusError(f"corpus file {str(path)!r} {what}; the demos need at least {min_chars:,} "
                          "characters of text to train and validate on")
    return hashlib.sha256(data).hexdigest()


def cache_dir() -> Path:
    """The lab's cache folder: ``$LLMLAB_CACHE`` or ``~/.cache/llm-lab`` (never inside the repo)."""
    path = Path(os.environ.get("LLMLAB_CACHE", Path.home() / ".cache" / "llm-lab"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stdlib_files(seed: int) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    random.Random(seed).shuffle(files)  # a varied mix of modules at every size
    return files


def _docstrings(source: str) -> list[str]:
    """The module, class and function docstrings of one file, dedented."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old escape sequences in the std-lib's own sources
        tree = ast.parse(source)
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc and len(doc) >= 40:  # skip one-word stubs; keep sentences
                docs.append(inspect.cleandoc(doc))
    return docs


def _stdlib_corpus(kind: str, max_chars: int | None, seed: int) -> str:
    key = hashlib.sha1(f"{kind}|{sys.version}|{seed}".encode()).hexdigest()[:12]
    cached = cache_dir() / "corpora" / f"{kind}-{key}.txt"
    if cached.exists():
        text = cached.read_text(encoding="utf-8")
        if max_chars is None or len(text) >= max_chars:
            return text if max_chars is None else text[:max_chars]
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    total = 0
    for path in _stdlib_files(seed):
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if kind == "python-docs":
            try:
                pieces = _docstrings(source)
            except SyntaxError:
                continue
        else:
            pieces = [f"# file: {path.relative_to(root).as_posix()}\n{source.strip()}"]
        for piece in pieces:
            parts.append(piece)
            total += len(piece) + 2
        if max_chars is not None and total >= max_chars:
            break
    text = "\n\n".join(parts) + "\n"
    if max_chars is None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(text, encoding="utf-8")
    return text if max_chars is None else text[:max_chars]


def load_corpus(name_or_path: str | os.PathLike, max_chars: int | None = None, *, seed: int = 0) -> str:
    """The text of a built-in corpus (`CORPORA`) or of a UTF-8 file, cut to `max_chars` characters.

    ``stories`` needs `max_chars` (it is generated to any size); the standard-library corpora and
    files return everything when `max_chars` is None.
    Raises TypeError for a name_or_path or max_chars of the wrong type, ValueError for an unknown name,
    max_chars <= 0 or no max_chars for 'stories', CorpusError (a ValueError) for a file that cannot be
    read, is not UTF-8 or is too short.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a corpus name or a path, got {type(name_or_path).__name__}")
    if max_chars is not None:
        if not isinstance(max_chars, int) or isinstance(max_chars, bool):
            raise TypeError(f"max_chars must be an int or None, got {type(max_chars).__name__}")
        if max_chars <= 0:
            raise ValueError(f"max_chars must be > 0, got {max_chars}")
    name = os.fspath(name_or_path)
    if name == "stories":
        if max_chars is None:
            raise ValueError("max_chars must be given for the generated 'stories' corpus (it has any size)")
        return generate_stories(max_chars, seed=seed)
    if name in ("python-docs", "python-code"):
        return _stdlib_corpus(name, max_chars, seed)
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"name_or_path must be one of {CORPORA} or an existing file, got {name!r}")
    try:
        with path.open(encoding="utf-8") as f:
            return f.read() if max_chars is None else f.read(max_chars)
    except UnicodeDecodeError as e:
        raise CorpusError(f"corpus file {name!r} is not UTF-8 text ({e.reason} at byte {e.start}); "
                          "convert it, e.g. `iconv -f latin1 -t utf-8`") from None


def train_val_split(data, val_fraction: float = 0.1):
    """Split a str, list or 1-D tensor into (train, val): the last `val_fraction` is held out.

    Raises ValueError for a val_fraction outside (0, 1) or fewer than 2 elements, TypeError for data that
    is not a str, sequence or tensor.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not isinstance(data, (str, Sequence, torch.Tensor)):
        raise TypeError(f"data must be a str, a sequence or a tensor, got {type(data).__name__}")
    n = len(data)
    if n < 2:
        raise ValueError(f"data must have at least 2 elements to split, got {n}")
    cut = min(max(1, int(round(n * (1.0 - val_fraction)))), n - 1)
    return data[:cut], data[cut:]


class CharTokenizer:
    """Character-level tokenizer: one id per distinct character of the text it was built from.

    Raises ValueError unless chars are distinct single characters.
    """

    def __init__(self, chars: Sequence[str]):
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("chars must be distinct single characters")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Raises TypeError unless text is a str, ValueError if it is empty."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("text must not be empty")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Raises TypeError unless text is a str, ValueError for a character not in the vocabulary."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"text contains the character {e.args[0]!r}, not in the vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        """Raises ValueError for an id outside [0, vocab_size)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        for i in ids:
            if not 0 <= i < len(self.chars):
                raise ValueError(f"ids must be in [0, {len(self.chars)}), got {i}")
        return "".join(self.chars[i] for i in ids)


def encode(text: str, tokenizer) -> torch.Tensor:
    """Encode text with any tokenizer that has `.encode(str) -> list[int]`, as a 1-D long tensor.

    Raises TypeError unless tokenizer has an encode method.
    """
    if not hasattr(tokenizer, "encode"):
        raise TypeError(f"tokenizer must have an encode method, got {type(tokenizer).__name__}")
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)


def get_batch(data: torch.Tensor, batch_size: int, block_size: int, *,
              generator: torch.Generator | None = None, device: str | torch.device = "cpu"):
    """Random windows for next-token prediction: x = data[i : i+T], y = data[i+1 : i+T+1].

    Returns (x, y), both (batch_size, block_size) long tensors on `device`.
    Raises TypeError unless data is a 1-D tensor of ids, ValueError for batch_size or block_size < 1 or
    block_size >= len(data).
    """
    if not isinstance(data, torch.Tensor) or data.ndim != 1:
        raise TypeError("data must be a 1-D tensor of token ids")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if len(data) < block_size + 1:
        raise ValueError(f"block_size must be < len(data) = {len(data)}, got {block_size}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    windows = data[starts[:, None] + offsets]  # (B, T+1)
    x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # (B, T) each
    return x.to(device), y.to(device)
