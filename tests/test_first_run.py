"""What a new user meets first: flag errors, corpus errors, the model cache, the runner and its gallery,
and how fast `llm-lab list` and the runner start (issue 10)."""

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from llmlab.utils import (
    CorpusError,
    Demo,
    History,
    cached_training,
    check_corpus,
    demo_parser,
    load_corpus,
    runner,
)
from llmlab.utils.cli import corpus_arg, float_in, int_in
from llmlab.utils.data import MIN_CORPUS_CHARS, CorpusFile

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- demo flags

# (lesson package, flag, a value out of its range): every typed flag of every demo
BAD_FLAGS = [
    ("tokenization", "--seed", "-1"),
    ("tokenization", "--threads", "0"),
    ("positional_embeddings", "--steps", "0"),
    ("positional_embeddings", "--train-len", "zero"),
    ("positional_embeddings", "--rope-base", "-3"),
    ("attention_basics", "--seed", "1.5"),
    ("transformer_block", "--depth", "0"),
    ("kv_cache", "--window", "-4"),
    ("long_context", "--window", "0"),
    ("long_context", "--chunk-size", "0"),
    ("long_context", "--mem-budget-mb", "0"),
    ("moe", "--capacity-factor", "0"),
    ("moe", "--aux-coef", "-0.1"),
    ("moe", "--z-loss", "nan"),
    ("moe", "--steps", "0"),
    ("gqa", "--uptrain-frac", "1.5"),
    ("gqa", "--context", "0"),
    ("gqa", "--batch", "0"),
    ("normalization", "--lr-scale", "0"),
    ("normalization", "--n-layer", "0"),
    ("normalization", "--steps", "-5"),
]


@pytest.mark.parametrize(("package", "flag", "value"), BAD_FLAGS, ids=[f"{p}{f}" for p, f, _ in BAD_FLAGS])
def test_a_bad_flag_value_is_a_usage_error_naming_the_flag(package, flag, value, capsys):
    demo = importlib.import_module(f"llmlab.{package}.demo")
    with pytest.raises(SystemExit) as exit_info:
        demo.main([flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}:" in err and "usage:" in err


def test_typed_helpers_accept_their_range_and_name_it_otherwise():
    assert int_in(1)("3") == 3
    assert float_in(0.0, 1.0)("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"integer >= 1, got 0"):
        int_in(1)("0")
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \(0, 1\]"):
        float_in(0.0, 1.0, low_open=True)("0")
    with pytest.raises(argparse.ArgumentTypeError, match="finite"):
        float_in(0.0)("inf")


def test_device_cuda_without_cuda_is_a_one_line_usage_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = demo_parser(None).parse_args(["--device", "cuda", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        Demo(args, lesson_file=tmp_path / "demo.py")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cuda" in err and "--device cpu" in err


def test_show_without_a_display_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    args = demo_parser(None).parse_args(["--show", "--device", "cpu", "--out", str(tmp_path)])
    demo = Demo(args, lesson_file=tmp_path / "demo.py")
    assert "no display" in capsys.readouterr().out and not demo.args.show


# ---------------------------------------------------------------- corpus files

def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_corpus_file_errors_name_the_file_and_the_problem(tmp_path):
    latin1 = _write(tmp_path / "latin1.txt", "un été à Paris ".encode("latin-1") * 1000)
    empty = _write(tmp_path / "empty.txt", b"")
    short = _write(tmp_path / "short.txt", b"just a line\n")
    with pytest.raises(CorpusError, match=r"latin1\.txt.*not UTF-8.*offset"):
        check_corpus(latin1)
    with pytest.raises(CorpusError, match=r"empty\.txt' is empty.*10,000"):
        check_corpus(empty)
    with pytest.raises(CorpusError, match=r"short\.txt' holds only 11 characters.*at least 10,000"):
        check_corpus(short)
    with pytest.raises(CorpusError, match=r"missing\.txt.*does not exist"):
        check_corpus(tmp_path / "missing.txt")
    with pytest.raises(CorpusError, match=r"latin1\.txt.*not UTF-8"):
        load_corpus(latin1)


def test_corpus_flag_checks_the_file_before_any_work(tmp_path, capsys):
    parser = demo_parser(None)
    parser.add_argument("--corpus", type="corpus", default="stories")
    assert parser.parse_args([]).corpus == "stories"
    good = _write(tmp_path / "good.txt", b"once upon a time\n" * (MIN_CORPUS_CHARS // 10))
    value = parser.parse_args(["--corpus", str(good)]).corpus
    assert isinstance(value, CorpusFile) and value == str(good) and len(value.sha256) == 64
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--corpus", str(_write(tmp_path / "tiny.txt", b"abc"))])
    assert exit_info.value.code == 2 and "argument --corpus: corpus file" in capsys.readouterr().err
    assert corpus_arg("python-docs") == "python-docs"


# (lesson package, its corpus flag): every demo that trains or tokenizes takes a built-in corpus or a file
CORPUS_FLAGS = [
    ("tokenization", "--train-corpus"),
    ("positional_embeddings", "--corpus"),
    ("attention_basics", "--corpus"),
    ("transformer_block", "--corpus"),
    ("sampling", "--corpus"),
    ("kv_cache", "--corpus"),
    ("long_context", "--corpus"),
    ("moe", "--corpus"),
    ("gqa", "--corpus"),
    ("normalization", "--corpus"),
]


@pytest.mark.parametrize(("package", "flag"), CORPUS_FLAGS, ids=[p for p, _ in CORPUS_FLAGS])
def test_every_demos_corpus_flag_names_a_bad_file(package, flag, tmp_path, capsys):
    demo = importlib.import_module(f"llmlab.{package}.demo")
    tiny = _write(tmp_path / "tiny_corpus.txt", b"too short to train on\n")
    with pytest.raises(SystemExit) as exit_info:
        demo.main([flag, str(tiny)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}:" in err and "tiny_corpus.txt" in err and "usage:" in err


def test_lesson01_trains_its_tokenizer_on_a_corpus_file(tmp_path):
    demo = importlib.import_module("llmlab.tokenization.demo")
    demo.load_libraries()
    text = "".join(f"line {i}: the lazy dog sleeps.\n" for i in range(600))
    path = str(_write(tmp_path / "mine.txt", text.encode()))
    data = demo.load_data({"train_chars": 4000, "heldout_chars": 1000}, path, seed=0)
    assert data["train"] == text[:4000] and data[path] == text[4000:5000]
    assert {"python-docs", "python-code", "stories"} <= set(data)  # the held-out texts of the comparison
    short = demo.load_data({"train_chars": 100_000, "heldout_chars": 10_000}, path, seed=0)
    cut = int(0.9 * len(text))  # a file shorter than the recipe: 90% trains, 10% is held out
    assert short["train"] == text[:cut] and short[path] == text[cut:]


def test_lesson08_trains_on_the_corpus_file(tmp_path):
    demo = importlib.import_module("llmlab.moe.demo")
    demo.load_libraries()
    path = _write(tmp_path / "mine.txt", b"zyx wvu " * 2000)
    data = demo.load_data({"corpus_chars": 5000}, str(path), seed=0)
    assert data["tokenizer"].decode(data["train"][:8].tolist()) == "zyx wvu "


# ---------------------------------------------------------------- the model cache

class _Tiny(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n))


def _fit(model):
    with torch.no_grad():
        model.w.add_(1.0)
    return History(steps=[0], train_loss=[1.0], val_loss=[1.0], eval_steps=[1])


def test_models_trained_on_a_file_are_cached_by_its_content_not_its_path(tmp_path):
    text = b"the cat sat on the mat.\n" * 500
    a = _write(tmp_path / "a.txt", text)
    b = _write(tmp_path / "b.txt", text)  # same text, another name: the same model
    key = lambda path: {"what": "test-content-key", "corpus": CorpusFile(path, check_corpus(path))}
    assert cached_training(key(a), _Tiny, _fit)[2] is False
    assert cached_training(key(a), _Tiny, _fit)[2] is True
    assert cached_training(key(b), _Tiny, _fit)[2] is True
    _write(a, text + b"an edit\n")  # the same path, new content: retrain
    assert cached_training(key(a), _Tiny, _fit)[2] is False


def test_cached_training_does_not_hide_errors(tmp_path):
    def broken_fit(model):
        raise ZeroDivisionError("a bug in the training code")

    with pytest.raises(ZeroDivisionError):
        cached_training({"what": "test-raises"}, _Tiny, broken_fit)
    cached_training({"what": "test-shape"}, _Tiny, _fit)
    with pytest.raises(RuntimeError, match="does not fit the model built for this key"):
        cached_training({"what": "test-shape"}, lambda: _Tiny(5), _fit)


def test_an_unreadable_cache_file_is_retrained_with_a_warning():
    from llmlab.utils.data import cache_dir
    from llmlab.utils.train import _key_digest

    key = {"what": "test-corrupt"}
    path = cache_dir() / "models" / f"{_key_digest(key)}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, hit = cached_training(key, _Tiny, _fit)
    assert hit is False and any(str(path) in str(w.message) for w in caught)


# ---------------------------------------------------------------- runner and gallery

def _fake_run(out_root: Path, quick: bool = True):
    """A stand-in for one demo process: writes a PNG and results.json like a real demo."""
    def run_demo(cmd):
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.new("RGB", (40, 30), (76, 114, 176)).save(out / "fig.png")
        (out / "results.json").write_text(json.dumps({
            "quick": quick, "seed": 0, "device": "cpu", "torch": "x", "figures": ["fig.png"],
            "results": {"val_loss": 1.234567, "timings_s": {"all": 3.0}, "speedup": {"at_100": 2.5}}}))
        return 0, None
    return run_demo


def test_gallery_accumulates_lessons_across_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_demo", _fake_run(tmp_path))
    assert runner.main(["run", "01", "--quick", "--out", str(tmp_path)]) == 0
    assert runner.main(["run", "03", "--quick", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text()
    assert "id='01_tokenization'" in page and "id='03_attention_basics'" in page
    assert "Quick mode: indicative only" in page
    assert "1.235" in page and "speedup.at_100" in page  # key numbers from results.json
    assert "01_tokenization/fig.png" in page and "README.md" in page
    manifest = json.loads((tmp_path / "gallery.json").read_text())
    assert set(manifest) == {"01_tokenization", "03_attention_basics"}


def test_a_run_of_nothing_is_an_error_and_keeps_the_gallery(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "run_demo", _fake_run(tmp_path))
    runner.main(["run", "01", "--quick", "--out", str(tmp_path)])
    before = (tmp_path / "index.html").read_text()
    assert runner.main(["run", "00", "--quick", "--out", str(tmp_path)]) == 2  # 00_utils has no demo
    assert "nothing to run" in capsys.readouterr().err
    assert (tmp_path / "index.html").read_text() == before


def test_full_runs_drop_the_quick_banner(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_demo", _fake_run(tmp_path, quick=False))
    runner.main(["run", "01", "--out", str(tmp_path)])
    assert "Quick mode" not in (tmp_path / "index.html").read_text()


def test_demo_output_is_streamed_and_its_tail_kept(capfd):
    code = "import sys\nfor i in range(3): print('line', i)\nsys.exit(3)"
    returncode, tail = runner.run_demo([sys.executable, "-c", code])
    assert returncode == 3 and "line 2" in capfd.readouterr().out
    assert tail is None or "line 0" in tail


def test_every_demo_figure_has_a_caption_in_its_docstring():
    for folder, package, _ in runner.LESSONS:
        path = runner.demo_file(package)
        if path is None:
            continue
        captions = runner.figure_captions(path)
        assert captions, f"{folder}: no numbered list of figures in demo.py's docstring"
        assert all(len(text) > 20 for text in captions.values()), folder


def test_figures_copies_a_full_run_and_refuses_a_quick_one(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_demo", _fake_run(tmp_path / "out", quick=True))
    runner.main(["run", "01", "--quick", "--out", str(tmp_path / "out")])
    root = tmp_path / "repo"
    (root / "01_tokenization").mkdir(parents=True)
    assert runner.cmd_figures(["01"], tmp_path / "out", False, root=root) == 2
    assert not (root / "01_tokenization" / "figures").exists()
    assert runner.cmd_figures(["01"], tmp_path / "out", True, root=root) == 0
    assert (root / "01_tokenization" / "figures" / "fig.png").exists()


# ---------------------------------------------------------------- startup

def test_the_runner_and_the_demo_flags_do_not_import_torch():
    code = ("import sys\nfrom llmlab.utils import runner, demo_parser\nrunner.main(['list'])\n"
            "demo_parser('x').parse_args(['--seed', '3'])\n"
            "heavy = [m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "01_tokenization" in proc.stdout and "[demo]" in proc.stdout


DEMO_FILES = sorted(ROOT.glob("[0-9][0-9]_*/demo.py"))
HEAVY = ("torch", "matplotlib", "numpy", "transformers", "tiktoken", "scipy")


@pytest.mark.parametrize("path", DEMO_FILES, ids=[p.parent.name for p in DEMO_FILES])
def test_demo_help_imports_no_heavy_library(path):
    """`python demo.py --help` builds the parser and prints it without importing torch, matplotlib,
    numpy or a lesson's modules (they take seconds): the demo imports them once the flags are parsed."""
    code = ("import runpy, sys\n"
            "path = sys.argv[1]\n"
            "sys.argv = ['demo.py', '--help']\n"
            "try:\n"
            "    runpy.run_path(path, run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert e.code in (None, 0), e.code\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "lessons = [m for m in sys.modules\n"
            "           if m.startswith('llmlab.') and not m.startswith('llmlab.utils')]\n"
            "print('HEAVY', heavy + lessons)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=path.parent, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and "--quick" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []", proc.stdout[-500:]


def test_flag_choices_named_before_the_imports_match_the_library():
    from llmlab.normalization import NORMS
    from llmlab.transformer_block import demo
    from llmlab.transformer_block.pretrained import PRESETS

    assert demo.PRESET_NAMES == tuple(PRESETS) and demo.NORM_NAMES == tuple(NORMS)


# ---------------------------------------------------------------- lesson READMEs

SKELETON = ("## What you learn", "## The maths", "## Run it", "## What each figure shows", "## Reference run",
            "## Questions to try")


@pytest.mark.parametrize("package", [p for _, p, _ in runner.LESSONS if runner.has_demo(p)])
def test_lesson_readme_follows_the_skeleton_and_embeds_committed_figures(package):
    folder = runner.demo_file(package).parent
    text = (folder / "README.md").read_text(encoding="utf-8")
    headings = [line.strip() for line in text.splitlines() if line.startswith("## ")]
    assert [h for h in SKELETON if h in headings] == list(SKELETON), f"{folder.name}: {headings}"
    assert f"cd {folder.name}" in text and f"pytest ../tests/test_{folder.name[:2]}_" in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert all(path.startswith("figures/") for path in images), images  # outputs/ is not committed
    names = set(runner.figure_captions(folder / "demo.py")) | {"no_regex.png"}
    assert {path.removeprefix("figures/") for path in images} <= names


def test_the_lab_model_trains_on_the_demos_corpus_file_and_keys_it_by_content(tmp_path, monkeypatch):
    from llmlab.transformer_block.pretrained import lab_model
    from llmlab.utils import cli

    monkeypatch.setattr(cli, "_active_corpus", None)  # restored afterwards: later tests use the stories

    corpus = _write(tmp_path / "mine.txt", b"the quick brown fox jumps over the lazy dog. " * 300)
    parser = demo_parser(None)
    parser.add_argument("--corpus", type="corpus", default="stories")
    args = parser.parse_args(["--corpus", str(corpus), "--device", "cpu", "--out", str(tmp_path / "out")])
    Demo(args, lesson_file=tmp_path / "demo.py")  # the running demo's --corpus is the lab model's text
    first = lab_model("gpt2", quick=True, steps=2, progress=False)
    assert "quick brown fox" in first.decode(first.train_data[:30]) and not first.cache_hit
    assert lab_model("gpt2", quick=True, steps=2, progress=False).cache_hit
    _write(corpus, b"a different text, the same file name. " * 300)
    assert not lab_model("gpt2", quick=True, steps=2, progress=False).cache_hit


# ---------------------------------------------------------------- the Makefile's set-up

def _make_plan(tmp_path, *args, path_prefix=""):
    """The commands `make` would run (`make -n`), for a venv that does not exist yet."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = path_prefix + env.get("PATH", "")
    proc = subprocess.run(["make", "-n", *args, f"VENV={tmp_path / 'venv'}", "SYSTEM_PY=system-python3"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_installs_only_into_its_venv_never_the_system_python(tmp_path):
    plan = _make_plan(tmp_path, "demo")
    venv_python = f"{tmp_path / 'venv'}/bin/python"
    assert f'system-python3 -m venv "{tmp_path / "venv"}"' in plan
    for line in plan.splitlines():
        if "pip install" in line:  # PEP 668: a system Python refuses pip installs
            assert f"{venv_python} -m pip install" in line, line
    assert "editable_mode=strict" in plan and f"{venv_python} -m llmlab.utils.runner run --quick" in plan


def test_make_picks_the_cpu_torch_wheel_without_an_nvidia_gpu(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "nvidia-smi").chmod(0o755)
    with_gpu = _make_plan(tmp_path, "install", path_prefix=f"{fake_bin}{os.pathsep}")
    assert "--index-url" not in with_gpu and '-m pip install  "torch"' in with_gpu
    if sys.platform != "darwin" and not shutil.which("nvidia-smi"):
        assert "--index-url https://download.pytorch.org/whl/cpu" in _make_plan(tmp_path, "install")
    override = _make_plan(tmp_path, "install", "TORCH_SPEC=torch==2.13.0", "TORCH_INDEX=")
    assert '-m pip install  "torch==2.13.0"' in override


def test_a_lesson_file_added_after_the_install_is_reported(tmp_path, monkeypatch):
    source, tree = tmp_path / "05_lesson", tmp_path / "build" / "lesson"
    source.mkdir()
    tree.mkdir(parents=True)
    for name in ("__init__.py", "old.py", "new.py"):
        (source / name).write_text("")
    for name in ("__init__.py", "old.py"):  # what `pip install -e . editable_mode=strict` linked
        (tree / name).symlink_to(source / name)
    monkeypatch.setattr(runner, "LESSONS", [("05_lesson", "lesson", "a lesson")])
    monkeypatch.setattr(runner, "lesson_dir", lambda package: tree)
    assert runner.missing_from_install() == ["05_lesson/new.py"]
