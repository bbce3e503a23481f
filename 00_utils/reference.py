"""Reference runs: every number a lesson README states comes from a run, and a test checks it (DESIGN §8).

A lesson's reference run is one full `python demo.py` on an idle machine. Its `results.json` (every
number the demo reported, the lines it printed, the hardware) and its figures are committed in
`<lesson>/figures/` (`llm-lab figures NN` copies them from a full run; a lesson's benchmark script may
add its JSON there too), and the README's "Reference run" section quotes them. `unmatched_numbers` lists
the numbers of that section that the committed run does not contain, and tests/test_readme_numbers.py
asserts the list is empty, so a README cannot keep a number that no run produced.

    llm-lab run 06 && llm-lab figures 06                 # a full run, copied into 06_kv_cache/figures/
    python -m llmlab.utils.reference 06_kv_cache         # the numbers the README states but the run lacks

A README number matches when some number of the run rounds to it at the README's precision, directly,
as a percentage (x 100) or in milli-units (x 1000, seconds -> ms); or when the same digits appear in a
line the demo printed. Lesson references ("lesson 06", "§8") and years in citations ("et al. 2023") are
not measurements and are skipped; numbers from papers belong in the other sections, with their citation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["REFERENCE_DIR", "hardware", "load_reference", "readme_numbers", "reference_section",
           "run_numbers", "unmatched_numbers"]

REFERENCE_DIR = "figures"
SECTION_TITLE = "## Reference run"

# a number: optional sign, digits with optional thousands commas, optional decimals and exponent
_NUMBER = re.compile(r"(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"  # 1,031
                     r"|(?<![\w.])[-−]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")  # 0.675, 1.3e-5
# what is not a measurement: lesson numbers, sections, citations' years, versions, markdown targets
_SKIP = re.compile(
    r"(?:lessons?|Lesson|§|issue|#)\s*\d+(?:[–/-]\d+)*"  # lesson 06, §8, lessons 02/07
    r"|et al\.,?\s*\(?\d{4}"  # Vaswani et al. 2017
    r"|\]\([^)]*\)"  # the target of a markdown link or image
    r"|\b\d{2}_[a-z_]+"  # a lesson folder, 06_kv_cache
    r"|v?\d+\.\d+\.\d+"  # a version, 2.13.0
    r"|https?://\S+"
)


def hardware() -> dict:
    """What a timing depends on: CPU model, cores, load average, Python and torch versions, threads."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "system": platform.system(),
            "python": platform.python_version()}
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except ImportError:
        pass
    return info


def reference_section(readme: str) -> str:
    """The text of the README's "## Reference run" section (up to the next "## " heading), or ""."""
    start = readme.find(SECTION_TITLE)
    if start < 0:
        return ""
    end = readme.find("\n## ", start + len(SECTION_TITLE))
    return readme[start + len(SECTION_TITLE):end if end >= 0 else len(readme)]


def _parse(token: str) -> float:
    return float(token.replace(",", "").replace("−", "-"))


def _decimals(token: str) -> int:
    mantissa = re.split(r"[eE]", token)[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def readme_numbers(text: str) -> list[str]:
    """The number tokens of `text` that state a measurement (see the module docstring for what is skipped)."""
    cleaned = _SKIP.sub(" ", text).replace("..", " .. ")  # a printed range, 0.99..1.02: two numbers
    return [m.group(0) for m in _NUMBER.finditer(cleaned)]


def _leaves(value) -> Iterator:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def run_numbers(results: dict) -> tuple[list[float], set[str]]:
    """All numbers of a results.json: the numeric values, and the number tokens of its strings (the lines
    the demo printed, its verdicts)."""
    values, tokens = [], set()
    for leaf in _leaves(results):
        if isinstance(leaf, bool) or leaf is None:
            continue
        if isinstance(leaf, (int, float)):
            if math.isfinite(leaf):
                values.append(float(leaf))
        elif isinstance(leaf, str):
            tokens.update(t.replace("−", "-") for t in _NUMBER.findall(leaf.replace("..", " .. ")))
    return values, tokens


def _matches(token: str, values: list[float], tokens: set[str]) -> bool:
    if token.replace("−", "-") in tokens or token.lstrip("-−") in tokens:
        return True
    x = abs(_parse(token))
    if "e" in token.lower():  # 1.3e-5: compare to the precision of the mantissa
        tolerance = 0.5 * 10 ** (math.floor(math.log10(x)) - _decimals(token)) if x > 0 else 0.0
    else:
        tolerance = 0.5 * 10 ** -_decimals(token)
    tolerance += 1e-9 * max(1.0, x)
    return any(abs(abs(v) * scale - x) <= tolerance for v in values for scale in (1.0, 100.0, 1000.0))


def unmatched_numbers(readme: str, results: dict) -> list[str]:
    """The numbers of the README's "Reference run" section that the run's results.json does not contain."""
    values, tokens = run_numbers(results)
    return [t for t in readme_numbers(reference_section(readme)) if not _matches(t, values, tokens)]


def load_reference(lesson_dir: str | os.PathLike) -> dict:
    """The committed reference run of a lesson: <lesson>/figures/results.json, with any other JSON there
    (a benchmark script's output, e.g. benchmark.json) under "extra", keyed by file name.
    Raises FileNotFoundError when the lesson has no reference run."""
    folder = Path(lesson_dir) / REFERENCE_DIR
    results = json.loads((folder / "results.json").read_text())
    extra = {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))
             if p.name != "results.json"}
    return {**results, "extra": extra} if extra else results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lesson", help="the lesson folder, e.g. 06_kv_cache")
    args = parser.parse_args(argv)
    lesson_dir = Path(args.lesson)
    results = load_reference(lesson_dir)
    missing = unmatched_numbers((lesson_dir / "README.md").read_text(), results)
    listed = f": {', '.join(missing)}" if missing else ""
    print(f"{len(missing)} README numbers not in the reference run{listed}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
