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
from typing import Any

import numpy as np
import torch

from llmlab.utils.reference import hardware

DEVICES = ("auto", "cpu", "cuda", "mps")


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (all devices)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - legacy global RNG, still used by libraries
    torch.manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
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
    """The standard demo flags of DESIGN §2; add the lesson's break flags to the result."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true",
                        help="the whole demo in ~20 s on a 2-core CPU (tests and CI use it)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder for PNGs and results.json (default: <lesson>/outputs)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto picks cuda, then mps, then cpu")
    parser.add_argument("--show", action="store_true", help="also open the figures in windows")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: the lab's models are small, a second "
                             "thread saves little and costs a lot when the cores are busy)")
    return parser


def to_jsonable(value: Any) -> Any:
    """Tensors, arrays, numpy scalars, paths and dataclass-like objects -> plain JSON values."""
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


class Demo:
    """One run of a lesson demo: seeded, on a device, writing into one output folder.

    >>> args = demo_parser(__doc__).parse_args(["--quick"])
    >>> demo = Demo(args, lesson_file=__file__)      # doctest: +SKIP
    >>> demo.results["bytes_per_token"] = 4.2        # every number the demo reports
    >>> demo.save_figure(fig, "compression.png")     # doctest: +SKIP
    >>> demo.finish()                                # writes results.json  # doctest: +SKIP
    """

    def __init__(self, args: argparse.Namespace, lesson_file: str | os.PathLike):
        self.args = args
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
        self.device = get_device(args.device)
        self.out_dir = Path(args.out) if args.out is not None else self.lesson_dir / "outputs"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {}
        self.figures: list[str] = []
        self.summary: list[str] = []  # every line said, kept in results.json: what the README may quote
        self._start = time.perf_counter()
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
