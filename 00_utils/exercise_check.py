"""The pytest plugin behind `llm-lab check`: run a lesson's tests on an exercise workspace and record,
per test, its outcome, its first failure message and which exercises it reached.

    LLMLAB_EXERCISES=exercises/03_attention_basics LLMLAB_EXERCISE_REPORT=report.json \\
        python -m pytest tests/test_03_attention_basics.py -p llmlab.utils.exercise_check

The workspace is installed before the tests import anything (`exercises.install`): the lesson's
modules come from the workspace. Each exercise is wrapped when its module loads, so a call tells the
plugin "this test reached exercise 03.2" and a NotImplementedError from the blank tells it "03.2 is
not written yet". The report (JSON) is what `llm-lab check` prints from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmlab.utils import exercises as ex_mode
from llmlab.utils.runner import source_folder

_current: list[str | None] = [None]
_tests: dict[str, dict] = {}
_collect_errors: list[str] = []


def _entry(nodeid: str) -> dict:
    return _tests.setdefault(nodeid, {"outcome": "passed", "message": "", "reached": [], "returned": [],
                                      "unimplemented": []})


def _record(exercise: ex_mode.Exercise, error: BaseException | None) -> None:
    nodeid = _current[0]
    if nodeid is None:
        return
    entry = _entry(nodeid)
    if exercise.id not in entry["reached"]:
        entry["reached"].append(exercise.id)
    if error is None and exercise.id not in entry["returned"]:  # its body ran (not only its checks)
        entry["returned"].append(exercise.id)
    if isinstance(error, NotImplementedError):
        match = ex_mode.NOT_IMPLEMENTED.search(str(error))
        if match and f"{match.group(1)}.{match.group(2)}" == exercise.id \
                and exercise.id not in entry["unimplemented"]:
            entry["unimplemented"].append(exercise.id)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    workspace = Path(os.environ[ex_mode.WORKSPACE_ENV])
    manifest = ex_mode.read_manifest(workspace)
    folder = source_folder(manifest.get("package", ""))
    if folder is None:
        raise pytest.UsageError(f"{workspace}: no lesson for the package {manifest.get('package')!r}")
    by_module: dict[str, list[ex_mode.Exercise]] = {}
    for exercise in ex_mode.find_exercises(folder, manifest["lesson"], manifest["package"]):
        by_module.setdefault(exercise.fullname, []).append(exercise)

    def on_load(module) -> None:
        ex_mode.wrap_exercises(module, by_module.get(module.__name__, []), _record)

    try:
        ex_mode.install(workspace, on_load)
    except ValueError as err:
        raise pytest.UsageError(str(err)) from err


def pytest_collection_modifyitems(session, config, items) -> None:
    """`llm-lab check -k 03.6`: deselect the tests that the workspace's last check ran to their end without
    reaching 03.6; new tests, and tests an unwritten exercise stopped early, still run."""
    only = set(filter(None, os.environ.get("LLMLAB_EXERCISE_ONLY", "").split(",")))
    if not only:
        return
    reach = ex_mode.read_json(Path(os.environ[ex_mode.WORKSPACE_ENV], ex_mode.REACH))
    keep, skip = [], []
    for item in items:
        known = reach.get(item.nodeid)
        elsewhere = isinstance(known, dict) and known.get("complete") and not only & set(known["reached"])
        (skip if elsewhere else keep).append(item)
    if skip:
        config.hook.pytest_deselected(items=skip)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current[0] = item.nodeid
    _entry(item.nodeid)
    yield
    _current[0] = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    entry = _entry(item.nodeid)
    if report.skipped and report.when in ("setup", "call") and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
    if report.failed and entry["outcome"] != "failed":
        entry["outcome"] = "failed"
        text = call.excinfo.exconly() if call.excinfo is not None else report.longreprtext
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # the first line, and for torch's assert_close the largest difference rather than the count
        detail = next((line for line in lines[1:4] if line.startswith("Greatest absolute")), None)
        entry["message"] = " ".join(lines[:1] + [detail] if detail else lines[:2])[:300]
    if report.failed:
        # a module-scoped fixture's cached error is raised again without calling the exercise
        for match in ex_mode.NOT_IMPLEMENTED.finditer(report.longreprtext):
            exercise_id = f"{match.group(1)}.{match.group(2)}"
            for key in ("reached", "unimplemented"):
                if exercise_id not in entry[key]:
                    entry[key].append(exercise_id)


def pytest_collectreport(report) -> None:
    if report.failed:
        lines = [line for line in report.longreprtext.splitlines() if line.strip()]
        _collect_errors.append(f"{report.nodeid}: {lines[-1].strip() if lines else 'collection failed'}")


def pytest_sessionfinish(session, exitstatus) -> None:
    path = os.environ.get("LLMLAB_EXERCISE_REPORT")
    if path:
        Path(path).write_text(json.dumps({"tests": _tests, "collect_errors": _collect_errors,
                                          "exitstatus": int(exitstatus)}, indent=1), encoding="utf-8")
