"""The demo command line and its bookkeeping: flags, seeding, device, output folder, results.json.

Every lesson's `demo.py` follows the same contract (DESIGN §2):

    python demo.py [--quick] [--out DIR] [--seed N] [--device auto|cpu|cuda|mps] [--show] [break flags]

`demo_parser` builds that parser; a lesson adds its break flags to it. `Demo` turns the parsed
arguments into a run: it seeds every RNG, picks the device, creates the output folder, and at the
end writes `results.json` with every number the demo reported, the config, the seed, the device
and the wall time, so that a reader (and `llm-lab run`'s gallery) can check each printed claim.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# torch and numpy are imported inside the functions that need them: `demo.py --help` and the
# runner parse flags without paying seconds for them.

from llmlab.utils.reference import hardware

DEVICES = ("auto", "cpu", "cuda", "mps")


# ---- argparse types: a bad flag value is a usage error (exit 2) that names the flag -------------

def int_in(low: int, high: int | None = None):
    """An argparse type: an int in [low, high] (no upper bound when `high` is None).

    The parser raises argparse.ArgumentTypeError for text that is not an int in range (argparse reports it as
    a usage error).
    """
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {value}")
        return value

    parse.__name__ = f"int {allowed}"
    return parse


def float_in(low: float | None = None, high: float | None = None, *, low_open: bool = False,
             high_open: bool = False):
    """An argparse type: a finite float in the interval from `low` to `high` (open ends optional).

    The parser raises argparse.ArgumentTypeError for text that is not a finite number in the interval
    (argparse reports it as a usage error).
    """
    if low is not None and high is not None:
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        allowed = f"{'<' if high_open else '<='} {high:g}"
    else:
        allowed = "finite"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {allowed}, got {text!r}") from None
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number {allowed}, got {text}")
        return value

    parse.__name__ = f"float {allowed}"
    return parse


positive_int = int_in(1)                           # steps, threads, sizes
nonneg_int = int_in(0)                             # seeds, counts that may be zero
positive_float = float_in(0.0, low_open=True)      # learning-rate scales, bases
nonneg_float = float_in(0.0)                       # loss coefficients
unit_interval = float_in(0.0, 1.0)                 # fractions and probabilities in [0, 1]


def corpus_arg(text: str) -> str:
    """An argparse type for ``--corpus``: a built-in corpus name, or a UTF-8 text file that is read
    now (a file that cannot be decoded or is too short to train on is a usage error naming it).

    A file comes back as a `CorpusFile` (a str: its path) that also carries the SHA-256 of its
    content, so that `cached_training` keys models trained on it by content, not by path.
    Raises argparse.ArgumentTypeError for a text that is neither a built-in corpus nor a readable, UTF-8, long
    enough file.
    """
    from llmlab.utils.data import CORPORA, CorpusError, CorpusFile, check_corpus

    if text in CORPORA:
        return text
    try:
        return CorpusFile(text, check_corpus(text))
    except CorpusError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (all devices).

    Raises TypeError unless seed is an int, ValueError for a seed < 0.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - legacy global RNG, still used by libraries
    torch.manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is absent is an error.

    Raises ValueError unless name is one of DEVICES, or for 'cuda' or 'mps' when that device is not available.
    """
    import torch

    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ValueError("device 'cuda' was asked for, but torch.cuda.is_available() is False")
    if name == "mps" and not mps:
        raise ValueError("device 'mps' was asked for, but torch.backends.mps.is_available() is False")
    return torch.device(name)


def demo_parser(description: str | None) -> argparse.ArgumentParser:
    """The standard demo flags of DESIGN §2; add the lesson's break flags to the result.

    Every flag's value is checked by its argparse type, so that a bad value is a usage error (exit 2)
    naming the flag, never a traceback minutes later. The typed helpers of this module are registered
    under their names, so a demo writes ``type="positive_int"`` without importing them:
    ``positive_int``, ``nonneg_int``, ``positive_float``, ``nonneg_float``, ``unit_interval`` and
    ``corpus`` (a built-in corpus or a checked UTF-8 file, see `corpus_arg`).
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, parse in TYPES.items():
        parser.register("type", name, parse)
    parser.add_argument("--quick", action="store_true",
                        help="the whole demo in ~20 s on a 2-core CPU (tests and CI use it)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder for PNGs and results.json (default: <lesson>/outputs)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto picks cuda, then mps, then cpu")
    parser.add_argument("--show", action="store_true", help="also open the figures in windows")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="CPU threads for torch (default 1: the lab's models are small, a second "
                             "thread saves little and costs a lot when the cores are busy)")
    return parser


def to_jsonable(value: Any) -> Any:
    """Tensors, arrays, numpy scalars, paths and dataclass-like objects -> plain JSON values."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.ndim == 0 else to_jsonable(value.tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSON has no inf/nan
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: to_jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    return repr(value)


# the argparse types a demo names by string (see `demo_parser`)
TYPES = {"positive_int": positive_int, "nonneg_int": nonneg_int, "positive_float": positive_float,
         "nonneg_float": nonneg_float, "unit_interval": unit_interval, "corpus": corpus_arg}

_DEVICE_MISSING = {
    "cuda": "this torch build or machine has no CUDA GPU (torch.cuda.is_available() is False)",
    "mps": "this machine has no Apple-silicon GPU (torch.backends.mps.is_available() is False)",
}


_active_corpus: str | None = None


def active_corpus(default: str = "stories") -> str:
    """The ``--corpus`` of the demo running in this process (the last `Demo` made), else `default`.

    Shared helpers that train a model for a demo (lesson 04's `lab_model`) train on the corpus the
    user chose without every demo passing it along.
    """
    return _active_corpus if _active_corpus is not None else default


def has_display() -> bool:
    """Whether figure windows can open: always on macOS and Windows, on Linux/BSD only with X11 or
    Wayland (a server, a container or an ssh session without forwarding has neither)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Demo:
    """One run of a lesson demo: seeded, on a device, writing into one output folder.

    >>> args = demo_parser(__doc__).parse_args(["--quick"])
    >>> demo = Demo(args, lesson_file=__file__)      # doctest: +SKIP
    >>> demo.results["bytes_per_token"] = 4.2        # every number the demo reports
    >>> demo.save_figure(fig, "compression.png")     # doctest: +SKIP
    >>> demo.finish()                                # writes results.json  # doctest: +SKIP

    Raises SystemExit(2) (a usage error) for an --device that is not available, ValueError unless args.threads
    (if set) is an int >= 1, and what set_seed raises for a bad args.seed.
    """

    def __init__(self, args: argparse.Namespace, lesson_file: str | os.PathLike):
        import torch

        self.args = args
        try:
            self.device = get_device(args.device)
        except ValueError:
            # a usage error, not a traceback: one line that says what to do instead
            print(f"{Path(sys.argv[0]).name}: error: --device {args.device}: {_DEVICE_MISSING[args.device]}; "
                  "use --device cpu, or --device auto (picks cuda, then mps, then cpu)", file=sys.stderr)
            raise SystemExit(2) from None
        global _active_corpus
        _active_corpus = getattr(args, "corpus", None)
        self.lesson_dir = Path(lesson_file).resolve().parent
        self.lesson = self.lesson_dir.name
        self.quick: bool = bool(args.quick)
        self.seed: int = int(args.seed)
        set_seed(self.seed)
        threads = getattr(args, "threads", 1)
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        # measured in lesson 01: a tiny model's step takes 5 ms on one thread, 6 ms on two, and 140 ms
        # on two when another process keeps a core busy (the threads wait for each other)
        self._saved_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        self.out_dir = Path(args.out) if args.out is not None else self.lesson_dir / "outputs"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {}
        self.figures: list[str] = []
        self.summary: list[str] = []  # every line said, kept in results.json: what the README may quote
        self._start = time.perf_counter()
        if args.show and not has_display():
            self.say("--show: no display found (DISPLAY and WAYLAND_DISPLAY are not set), so no windows "
                     f"will open; the figures are saved in {self.out_dir}")
            args.show = False
        if not args.show:
            import matplotlib

            matplotlib.use("Agg")  # headless-safe: never opens a window unless --show
        from llmlab.utils.plotting import apply_style

        apply_style()
        mode = "quick" if self.quick else "full"
        self.say(f"== {self.lesson}: {mode} run, seed {self.seed}, device {self.device} -> {self.out_dir}")

    def say(self, text: str = "") -> None:
        """Print one line of the summary (flushed, so it interleaves well with progress bars)."""
        self.summary.append(text)
        print(text, flush=True)

    def save_figure(self, fig, name: str) -> Path:
        """Save `fig` as `<out_dir>/<name>` (PNG) and close it unless --show; a quick run's figure says
        in its title that it is quick-mode."""
        from llmlab.utils.plotting import mark_quick_mode, save_figure

        if self.quick:
            mark_quick_mode(fig)
        path = save_figure(fig, self.out_dir / name, close=not self.args.show)
        self.figures.append(path.name)
        return path

    def timed(self, name: str, fn, *args, **kwargs):
        """Run one experiment, `fn(*args, **kwargs)`, and record its seconds in
        ``results["experiment_seconds"][name]``; returns what `fn` returns."""
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        self.results.setdefault("experiment_seconds", {})[name] = round(time.perf_counter() - start, 2)
        return value

    @property
    def wall_time_s(self) -> float:
        return time.perf_counter() - self._start

    def finish(self) -> Path:
        """Write results.json (the config, seed, device, wall time and every reported number)."""
        import torch

        config = {k: to_jsonable(v) for k, v in vars(self.args).items()}
        payload = {
            "lesson": self.lesson,
            "quick": self.quick,
            "seed": self.seed,
            "device": str(self.device),
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "wall_time_s": round(self.wall_time_s, 2),
            "threads": torch.get_num_threads(),
            "config": config,
            "figures": self.figures,
            "hardware": hardware(),
            "results": to_jsonable(self.results),
            "summary": self.summary,
        }
        path = self.out_dir / "results.json"
        path.write_text(json.dumps(payload, indent=2) + "\n")
        self.say(f"== done in {self.wall_time_s:.1f} s: {len(self.figures)} figures and results.json "
                 f"in {self.out_dir}")
        torch.set_num_threads(self._saved_threads)
        if self.args.show:
            import matplotlib.pyplot as plt

            plt.show()
        return path
