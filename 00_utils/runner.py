"""`llm-lab`: list the lessons, run their demos, and build a gallery page of every plot and number.

    llm-lab list
    llm-lab run                    # every lesson that has a demo, full runs
    llm-lab run 01 03 --quick      # some lessons (by number, folder or package name), quick mode
    llm-lab run --quick --out DIR  # gallery in DIR/index.html (default ./outputs)
    llm-lab figures 01             # copy a full run's PNGs into 01_tokenization/figures/ (README images)
    llm-lab exercise 03            # write exercises/03_attention_basics/: the lesson's code to write
    llm-lab check 03               # grade it with the lesson's tests (llmlab.utils.exercises)
    llm-lab run 03 --exercises exercises/03_attention_basics   # the demo on your code

Each demo runs in its own process (`python -m llmlab.<lesson>.demo --out DIR/<folder>`), so one
failing lesson does not stop the others; the exit status is non-zero if any failed. Its output is
streamed as it comes (progress bars redraw in place on a terminal; they are turned off when the
output goes to a file or a pipe). The gallery accumulates: a run updates its lessons' sections
(recorded in DIR/gallery.json) and keeps every other lesson's.

This module imports neither torch nor matplotlib: `llm-lab list` answers at once.
"""

from __future__ import annotations

import argparse
import ast
import collections
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from llmlab.utils import exercises as ex_mode  # stdlib only: no torch

# (folder, package, what it teaches)
LESSONS: list[tuple[str, str, str]] = [
    ("00_utils", "utils", "shared plotting, corpora, demo CLI, training loop and model cache"),
    ("01_tokenization", "tokenization", "byte-level BPE from scratch (== tiktoken), embeddings"),
    ("02_positional_embeddings", "positional_embeddings", "sinusoidal, learned, RoPE, ALiBi; extrapolation"),
    ("03_attention_basics", "attention_basics", "scaled dot-product and multi-head attention, causality"),
    ("04_transformer_block", "transformer_block", "the lab GPT (== HF GPT-2 / Llama), residual stream"),
    ("05_sampling", "sampling", "temperature, top-k, top-p, min-p (== HF logits warpers)"),
    ("06_kv_cache", "kv_cache", "KV cache: speedup and memory, sliding-window and int8 caches"),
    ("07_long_context", "long_context", "sliding-window and chunked (flash-style) attention"),
    ("08_moe", "moe", "mixture of experts: routing, load balancing, capacity"),
    ("09_gqa", "gqa", "grouped-query attention: KV-cache size vs quality"),
    ("10_normalization", "normalization", "LayerNorm, RMSNorm, GELU, SwiGLU; training ablations"),
    ("11_pretraining_objectives", "pretraining_objectives", "causal, masked and prefix LM"),
    ("12_finetuning_rlhf", "finetuning_rlhf", "SFT, instruction tuning, reward models, RLHF"),
    ("13_scaling_laws", "scaling_laws", "loss vs parameters and compute, Chinchilla"),
    ("14_quantization", "quantization", "PTQ, QAT, bit-width vs accuracy, GGUF export"),
    ("15_inference_stacks", "inference_stacks", "HF vs vLLM vs ExLlamaV2 throughput and latency"),
    ("16_synthetic_data", "synthetic_data", "generating, noising and deduplicating training data"),
]


def lesson_dir(package: str) -> Path | None:
    """The folder of lesson `package` (the numbered folder in a source checkout), without importing
    it: importing a lesson imports torch."""
    try:
        spec = importlib.util.find_spec(f"llmlab.{package}")
    except (ModuleNotFoundError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def source_folder(package: str) -> Path | None:
    """The lesson's folder in the source checkout (through the links of a strict editable install)."""
    installed = lesson_dir(package)
    return None if installed is None else (installed / "__init__.py").resolve().parent


def demo_file(package: str) -> Path | None:
    """The lesson's demo.py, resolved through the links of a strict editable install."""
    folder = lesson_dir(package)
    path = folder / "demo.py" if folder is not None else None
    return path.resolve() if path is not None and path.exists() else None


def has_demo(package: str) -> bool:
    return demo_file(package) is not None


def missing_from_install() -> list[str]:
    """Lesson files that the strict editable install does not link yet (added after `make install`):
    Python cannot import them as `llmlab.<lesson>.<module>` until the install is redone."""
    missing = []
    for folder, package, _ in LESSONS:
        installed = lesson_dir(package)
        if installed is None or not (installed / "__init__.py").is_symlink():
            continue  # not a link tree: a normal or hook-based install sees the folder itself
        source = (installed / "__init__.py").resolve().parent
        missing += [f"{folder}/{path.name}" for path in sorted(source.glob("*.py"))
                    if not (installed / path.name).exists()]
    return missing


def warn_if_install_is_stale() -> None:
    missing = missing_from_install()
    if missing:
        print(f"llm-lab: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''} not in the editable "
              "install yet (new files); run `make install` so that `llmlab.*` imports find them",
              file=sys.stderr)


def resolve(names: list[str]) -> list[tuple[str, str, str]]:
    """Lessons by number ('01'), folder ('01_tokenization') or package ('tokenization').

    Raises SystemExit with a message naming an unknown lesson and the known ones.
    """
    chosen = []
    for name in names:
        matches = [row for row in LESSONS if name in (row[0], row[1], row[0][:2], row[0][:2].lstrip("0"))]
        if not matches:
            known = ", ".join(row[0] for row in LESSONS)
            raise SystemExit(f"llm-lab: unknown lesson {name!r}; known lessons: {known}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


# ---- what the gallery shows about each lesson, read from its files (never by importing them) ------

_FIGURE_LINE = re.compile(r"^(\s*)\d+\.\s+([\w.-]+\.png)\s+(.*)$")


def figure_captions(demo_path: Path | None) -> dict[str, str]:
    """figure file -> what it shows, from the numbered list in the demo's docstring:

        1. compression.png       bytes per token on held-out text as the merges grow
                                 (continuation lines are indented further)
    """
    if demo_path is None or not demo_path.exists():
        return {}
    try:
        doc = ast.get_docstring(ast.parse(demo_path.read_text(encoding="utf-8"))) or ""
    except (SyntaxError, UnicodeDecodeError, OSError):
        return {}
    captions: dict[str, str] = {}
    current, indent = None, 0
    for line in doc.splitlines():
        match = _FIGURE_LINE.match(line)
        if match:
            indent, current = len(match.group(1)), match.group(2)
            captions[current] = match.group(3).strip()
        elif current and line.strip() and len(line) - len(line.lstrip()) > indent + 2:
            captions[current] += " " + line.strip()
        else:
            current = None
    return captions


def key_numbers(results: dict, limit: int = 12) -> list[tuple[str, str]]:
    """The headline numbers of a results.json: a demo's ``key_insights`` first when it has them,
    then the measured values (floats) at the top two levels in the order the demo reported them.
    Settings, timings and counts (ints) stay in the full table."""
    skip = re.compile(r"(seconds|timings?|_s$|^settings$|^config$|^experiment_seconds$)", re.I)
    rows: list[tuple[str, str]] = []

    def add(key: str, value) -> None:
        if isinstance(value, bool) or len(rows) >= limit:
            return
        if isinstance(value, float):
            rows.append((key, f"{value:.4g}"))
        elif isinstance(value, (int, str)) and key.startswith("key_insights"):
            if not str(value).startswith("<"):
                rows.append((key, str(value)[:80]))

    def walk(prefix: str, value, depth: int) -> None:
        if isinstance(value, dict) and depth < 2:
            for key, inner in value.items():
                if not skip.search(str(key)):
                    walk(f"{prefix}.{key}" if prefix else str(key), inner, depth + 1)
        else:
            add(prefix, value)

    insights = results.get("key_insights")
    if isinstance(insights, dict):
        walk("key_insights", insights, 1)
    for key, value in results.items():
        if key != "key_insights" and not skip.search(key):
            walk(key, value, 1)
    return rows


def _flatten(value, prefix: str = "", limit: int = 80) -> list[tuple[str, str]]:
    """results.json -> (dotted key, short value) rows for the gallery's full table."""
    rows: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            rows.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k), limit))
    elif isinstance(value, list) and len(value) > 8:
        rows.append((prefix, f"[{len(value)} values]"))
    else:
        text = json.dumps(value)
        rows.append((prefix, text if len(text) < 120 else text[:117] + "..."))
    return rows[:limit] if not prefix else rows


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
     padding:0 1.2em;line-height:1.5;color:#222}
h1{margin-bottom:.2em} h2{margin-top:2.2em;border-bottom:2px solid #4C72B0;padding-bottom:.2em}
.banner{background:#fff4d6;border:1px solid #e0b84c;padding:.7em 1em;border-radius:6px;margin:1em 0}
.badge{font-size:.75em;padding:.15em .6em;border-radius:1em;margin-left:.6em;vertical-align:middle;
       font-weight:600}
.badge.quick{background:#fff4d6;color:#8a6100;border:1px solid #e0b84c}
.badge.full{background:#e3f3e6;color:#236b2f;border:1px solid #8ccf98}
.badge.fail{background:#fde2e2;color:#a01010;border:1px solid #e99}
.about{font-size:1.05em;margin:.3em 0} .meta{color:#666;font-size:.9em}
figure{margin:1.6em 0} figure img{width:100%;max-width:1000px;border:1px solid #ddd;border-radius:4px;
       cursor:zoom-in} figcaption{color:#333;font-size:.95em;margin-top:.3em}
figcaption code{font-weight:600}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f5f7fb} .num{font-variant-numeric:tabular-nums}
pre.fail{background:#fff5f5;border:1px solid #e99;padding:.6em;overflow-x:auto;font-size:.8em}
nav ul{columns:2;list-style:none;padding-left:0} nav li{margin:.15em 0}
details{margin:.6em 0} summary{cursor:pointer;color:#4C72B0}
"""


def write_gallery(out: Path, runs: dict[str, dict]) -> Path:
    """<out>/index.html: every lesson that has run, in curriculum order, readable from file://.

    `runs` maps a lesson folder to what the runner recorded of its last run (gallery.json): the
    exit status, seconds, quick or full, and the tail of its output when it failed.
    """
    order = [row for row in LESSONS if row[0] in runs]
    any_quick = any(runs[folder].get("quick") for folder, _, _ in order)
    parts = ["<!doctype html><html lang='en'><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>LLM Lab — results gallery</title>", f"<style>{_CSS}</style>",
             "<h1>LLM Lab — results gallery</h1>",
             "<p>Each section is one lesson's last demo run: what the lesson teaches, its figures with what "
             "each shows (click a figure to open it full size), and the numbers the run measured, all read "
             "from the run's <code>results.json</code>. The lesson's README explains the maths and what to "
             f"expect. Updated {html.escape(time.strftime('%Y-%m-%d %H:%M'))}.</p>"]
    if any_quick:
        parts.append("<div class='banner'><b>Quick mode: indicative only.</b> Sections marked "
                     "<i>quick</i> come from <code>--quick</code> runs: tiny models trained for seconds, so "
                     "their numbers and curves only hint at the lesson's findings. Run a lesson in full "
                     "(<code>make demo LESSON=01</code> or <code>python demo.py</code> in its folder) "
                     "for the numbers its README quotes.</div>")
    parts.append("<nav><ul>")
    for folder, _, about in order:
        run = runs[folder]
        badge = ("fail", "failed") if run["returncode"] != 0 else \
            ("quick", "quick") if run.get("quick") else ("full", "full run")
        parts.append(f"<li><a href='#{folder}'>{folder}</a><span class='badge {badge[0]}'>{badge[1]}</span>"
                     f" — {html.escape(about)}</li>")
    parts.append("</ul></nav>")
    for folder, package, about in order:
        run = runs[folder]
        ok = run["returncode"] == 0
        badge = ("fail", f"failed (exit {run['returncode']})") if not ok else \
            ("quick", "quick mode: indicative only") if run.get("quick") else ("full", "full run")
        parts.append(f"<h2 id='{folder}'>{folder}<span class='badge {badge[0]}'>{badge[1]}</span></h2>")
        parts.append(f"<p class='about'>{html.escape(about)}.</p>")
        source = lesson_dir(package)
        readme = (source / "README.md").resolve() if source is not None else None
        links = (f" · <a href='{readme.as_uri()}'>the lesson (README)</a>"
                 if readme is not None and readme.exists() else "")
        results_path = out / folder / "results.json"
        data = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {}
        meta = [f"ran {html.escape(run.get('when', '?'))}", f"{run['seconds']:.0f} s"]
        if data:
            meta.append(f"seed {data.get('seed')}, {html.escape(str(data.get('device')))}, "
                        f"torch {html.escape(str(data.get('torch')))}")
        parts.append(f"<p class='meta'>{' · '.join(meta)}{links} · "
                     f"<a href='{folder}/results.json'>results.json</a></p>")
        if not ok:
            tail = run.get("tail") or "(the output went to the terminal; run the lesson again to see it)"
            parts.append(f"<pre class='fail'>{html.escape(tail)}</pre>")
        if not data:
            continue
        numbers = key_numbers(data.get("results", {}))
        if numbers:
            parts.append("<table><tr><th>key number</th><th>value</th></tr>")
            parts.extend(f"<tr><td><code>{html.escape(k)}</code></td>"
                         f"<td class='num'>{html.escape(v)}</td></tr>" for k, v in numbers)
            parts.append("</table>")
        captions = figure_captions(demo_file(package))
        for i, fig in enumerate(data.get("figures", []), 1):
            caption = captions.get(fig, "")
            src = f"{folder}/{fig}"
            parts.append(f"<figure><a href='{src}' target='_blank'><img src='{src}' loading='lazy' "
                         f"alt='{html.escape(caption or fig)}'></a><figcaption>{i}. <code>{fig}</code>"
                         f"{' — ' + html.escape(caption) if caption else ''}</figcaption></figure>")
        rows = _flatten(data.get("results", {}))
        parts.append("<details><summary>every number of this run (results.json)</summary><table>")
        parts.extend(f"<tr><td><code>{html.escape(k)}</code></td><td class='num'>{html.escape(v)}</td></tr>"
                     for k, v in rows)
        parts.append("</table></details>")
    path = out / "index.html"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def read_manifest(out: Path) -> dict[str, dict]:
    path = out / "gallery.json"
    if not path.exists():
        return {}
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        print(f"llm-lab: {path} is unreadable; starting a new gallery", file=sys.stderr)
        return {}
    return runs if isinstance(runs, dict) else {}


def cmd_list() -> int:
    for folder, package, about in LESSONS:
        status = "demo" if has_demo(package) else "    "
        print(f"{folder:<28} llmlab.{package:<24} [{status}] {about}")
    return 0


def run_demo(cmd: list[str]) -> tuple[int, str | None]:
    """Run one demo with its output streamed live. On a terminal the child writes to it directly
    (progress bars redraw in place) and no tail is kept; otherwise lines are passed through as they
    come, progress bars are off (TQDM_DISABLE) and the last lines are kept for the gallery."""
    if sys.stdout.isatty():
        return subprocess.run(cmd).returncode, None
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    tail: collections.deque[str] = collections.deque(maxlen=40)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line)
    return proc.returncode, "".join(tail)


def cmd_run(names: list[str], quick: bool, out: Path, seed: int, device: str,
            exercises: Path | None = None) -> int:
    """Run the demos; with `exercises` (a workspace of `llm-lab exercise`), one lesson's demo on the
    learner's modules."""
    lessons = resolve(names) if names else [row for row in LESSONS if has_demo(row[1])]
    if exercises is not None:
        manifest = ex_mode.read_manifest(exercises)
        if len(lessons) != 1 or manifest.get("lesson") != lessons[0][0]:
            print(f"llm-lab: --exercises runs one lesson's demo on its workspace; {exercises} holds "
                  f"{manifest.get('lesson') or 'no exercise workspace'}", file=sys.stderr)
            return 2
        out = out / "exercises"  # a gallery of its own: a run on your code never replaces the lesson's
    missing = [row[0] for row in lessons if not has_demo(row[1])]
    lessons = [row for row in lessons if has_demo(row[1])]
    if not lessons:
        print(f"llm-lab: nothing to run: {', '.join(missing) or 'no lesson'} has no demo yet "
              "(`llm-lab list` shows which lessons have one); the gallery is unchanged", file=sys.stderr)
        return 2
    if missing:
        print(f"llm-lab: no demo yet in {', '.join(missing)}; skipping", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    runs = read_manifest(out)
    done = []
    for folder, package, _ in lessons:
        cmd = [sys.executable, "-m", f"llmlab.{package}.demo", "--out", str(out / folder),
               "--seed", str(seed), "--device", device] + (["--quick"] if quick else [])
        if exercises is not None:  # the same demo with the workspace's modules in place of the lesson's
            cmd[1:2] = ["-m", "llmlab.utils.exercises", str(exercises), "-m"]
        print(f"\n### {folder}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        returncode, tail = run_demo(cmd)
        seconds = time.perf_counter() - start
        runs[folder] = {"returncode": returncode, "seconds": round(seconds, 1), "quick": quick,
                        "when": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(cmd[1:])}
        if returncode != 0 and tail:
            runs[folder]["tail"] = tail[-3000:]
        done.append((folder, returncode))
        # after every lesson, so that an interrupted run keeps what finished
        (out / "gallery.json").write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
        gallery = write_gallery(out, runs)
    failed = [folder for folder, code in done if code != 0]
    kept = len(runs) - len(done)
    print(f"\nllm-lab: {len(done) - len(failed)} of {len(done)} demos ran; gallery: {gallery}"
          + (f" (with {kept} lesson{'s' if kept > 1 else ''} from earlier runs)" if kept > 0 else ""))
    if failed:
        print(f"llm-lab: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _small_png(source: Path, target: Path) -> int:
    """Copy a figure as a 256-colour palette PNG: a plot has few colours, so it looks the same at
    about a third of the bytes (what the repository keeps for every reference run). Returns bytes."""
    try:
        from PIL import Image  # Pillow comes with matplotlib
    except ImportError:
        shutil.copyfile(source, target)
    else:
        with Image.open(source) as image:
            image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                          dither=Image.Dither.NONE).save(target, optimize=True)
    return target.stat().st_size


def cmd_figures(names: list[str], out: Path, allow_quick: bool, root: Path | None = None) -> int:
    """Copy a run's PNGs and results.json into each lesson's `figures/` folder under `root` (default: this
    source checkout): the images its README embeds and the numbers its "Reference run" section quotes
    (tests/test_readme_numbers.py; the outputs/ folders are not committed). Refuses quick-mode runs
    unless `allow_quick`."""
    root = Path(__file__).resolve().parent.parent if root is None else root
    lessons = resolve(names) if names else [row for row in LESSONS
                                            if (out / row[0] / "results.json").exists()]
    if not lessons:
        print(f"llm-lab: no results in {out}; run `llm-lab run LESSON` first", file=sys.stderr)
        return 2
    status = 0
    for folder, _, _ in lessons:
        results = out / folder / "results.json"
        target = root / folder / "figures"
        if not results.exists():
            print(f"llm-lab: {folder}: no {results}; run `llm-lab run {folder[:2]}` first", file=sys.stderr)
            status = 2
            continue
        if not (root / folder).is_dir():
            print(f"llm-lab: {root / folder} is not a source checkout's lesson folder", file=sys.stderr)
            return 2
        data = json.loads(results.read_text(encoding="utf-8"))
        if data.get("quick") and not allow_quick:
            print(f"llm-lab: {folder}: {results} is a --quick run; the README's figures come from the full "
                  "reference run (pass --allow-quick to copy it anyway)", file=sys.stderr)
            status = 2
            continue
        target.mkdir(exist_ok=True)
        for old in target.glob("*.png"):  # the previous reference run's
            old.unlink()
        shutil.copyfile(results, target / "results.json")  # what the README's numbers are checked against
        sizes = [_small_png(out / folder / name, target / name) for name in data.get("figures", [])]
        print(f"llm-lab: {folder}: {len(sizes)} figures ({sum(sizes) / 1e6:.1f} MB) -> {target}")
    return status


def main(argv: list[str] | None = None) -> int:
    from llmlab.utils.cli import nonneg_int  # a light module: no torch at import time

    parser = argparse.ArgumentParser(prog="llm-lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the lessons and which have a demo")
    run = sub.add_parser("run", help="run lesson demos and update the gallery (outputs/index.html)")
    run.add_argument("lessons", nargs="*", help="lesson numbers, folders or package names (default: all)")
    run.add_argument("--quick", action="store_true", help="quick mode (~20 s per lesson)")
    run.add_argument("--out", type=Path, default=Path("outputs"), help="gallery folder (default ./outputs)")
    run.add_argument("--seed", type=nonneg_int, default=0)
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    run.add_argument("--exercises", type=Path, metavar="DIR",
                     help="run one lesson's demo on an exercise workspace (your modules)")
    figures = sub.add_parser("figures", help="copy a full run's PNGs into <lesson>/figures/ (README images)")
    figures.add_argument("lessons", nargs="*", help="lessons (default: every lesson with results in --out)")
    figures.add_argument("--out", type=Path, default=Path("outputs"),
                         help="the run's folder (default ./outputs)")
    figures.add_argument("--allow-quick", action="store_true", help="also copy a --quick run's figures")
    exercise = sub.add_parser("exercise", help="write a lesson's exercises (blanked code) to a workspace")
    exercise.add_argument("lessons", nargs="*",
                          help="a lesson number, folder or package name (several with --list)")
    exercise.add_argument("--list", action="store_true", help="list the exercises of every lesson (or one)")
    exercise.add_argument("--dir", type=Path, help="the workspace (default exercises/<lesson>/)")
    exercise.add_argument("--solutions", action="store_true", help="write the lesson's own code instead")
    exercise.add_argument("--force", action="store_true", help="overwrite files you have edited")
    check = sub.add_parser("check", help="grade an exercise workspace with the lesson's tests")
    check.add_argument("lesson", help="lesson number, folder or package name")
    check.add_argument("--dir", type=Path, help="the workspace (default exercises/<lesson>/)")
    check.add_argument("-k", dest="name", metavar="NAME",
                       help="one exercise (id like 03.2, or its name), else a pytest -k expression")
    check.add_argument("-v", "--verbose", action="store_true", help="show pytest's output and tracebacks")
    args = parser.parse_args(argv)
    if args.command == "exercise":
        if args.list:
            rows = resolve(args.lessons) if args.lessons else LESSONS[1:]
            return ex_mode.cmd_list([(lesson, pkg, source_folder(pkg)) for lesson, pkg, _ in rows])
        if len(args.lessons) != 1:
            parser.error("exercise: name one lesson (e.g. `llm-lab exercise 03`), or pass --list")
        (lesson, package, _), *_ = resolve(args.lessons)
        return ex_mode.cmd_exercise(lesson, package, source_folder(package), args.dir, args.solutions,
                                    args.force)
    if args.command == "check":
        (lesson, package, _), *_ = resolve([args.lesson])
        return ex_mode.cmd_check(lesson, package, source_folder(package), args.dir, args.name, args.verbose)
    if args.command in ("list", "run"):
        warn_if_install_is_stale()
    if args.command == "list":
        return cmd_list()
    if args.command == "figures":
        return cmd_figures(args.lessons, args.out, args.allow_quick)
    return cmd_run(args.lessons, args.quick, args.out, args.seed, args.device, args.exercises)


if __name__ == "__main__":
    raise SystemExit(main())
