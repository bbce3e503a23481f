"""Smoke test of every lesson demo: `python demo.py --quick` runs from its folder and writes its outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMOS = sorted(p.parent.name for p in ROOT.glob("[0-9][0-9]_*/demo.py"))


@pytest.mark.slow
@pytest.mark.parametrize("lesson", DEMOS)
def test_demo_runs_quick_and_writes_plots_and_results(lesson, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "demo.py", "--quick", "--out", str(tmp_path), "--device", "cpu"],
                          cwd=ROOT / lesson, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{lesson} demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    pngs = sorted(tmp_path.glob("*.png"))
    assert pngs, f"{lesson} demo wrote no PNG"
    results = json.loads((tmp_path / "results.json").read_text())
    for key in ("lesson", "seed", "device", "wall_time_s", "config", "results", "figures"):
        assert key in results, f"results.json of {lesson} lacks {key!r}"
    assert results["lesson"] == lesson
    assert results["results"], f"{lesson} reported no numbers"
    assert set(results["figures"]) == {p.name for p in pngs}


def test_every_lesson_with_a_demo_has_a_readme_and_tests():
    for lesson in DEMOS:
        assert (ROOT / lesson / "README.md").exists(), f"{lesson} has no README.md"
        assert list((ROOT / "tests").glob(f"test_{lesson[:2]}_*.py")), f"{lesson} has no tests"
