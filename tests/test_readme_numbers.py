"""Every number of a README's "Reference run" section, and of the top README's results table, comes from
the lesson's committed reference run (<lesson>/figures/results.json), DESIGN §8."""

import re
from pathlib import Path

import pytest

from llmlab.utils.reference import (
    REFERENCE_DIR,
    load_reference,
    readme_numbers,
    reference_section,
    unmatched_numbers,
)

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p.parent.name for p in ROOT.glob("[0-9][0-9]_*/README.md")
                 if reference_section(p.read_text()))
# Lessons whose code changed what their reference run measures and whose run has not been redone yet:
# their README numbers are known to be stale, so the check is expected to fail (strict: a re-run lesson
# must be taken off this list). Empty: every lesson's README matches its committed run.
PENDING: set[str] = set()


def reference_results(lesson: str) -> dict:
    path = ROOT / lesson / REFERENCE_DIR / "results.json"
    if not path.is_file():
        pytest.fail(f"{lesson} has no committed reference run ({path.relative_to(ROOT)}): "
                    f"run `make figures LESSON={lesson[:2]}`")
    return load_reference(ROOT / lesson)


def pending(*values, lesson: str):
    """A parameter expected to fail while `lesson` waits for its reference run."""
    if lesson not in PENDING:
        return pytest.param(*values)
    stale = pytest.mark.xfail(strict=True, reason="reference run pending (issue 8)")
    return pytest.param(*values, marks=stale)


@pytest.mark.parametrize("lesson", [pending(name, lesson=name) for name in LESSONS])
def test_every_number_of_the_reference_run_section_is_in_the_reference_results(lesson):
    results = reference_results(lesson)
    assert not results["quick"], "a reference run is a full run"
    missing = unmatched_numbers((ROOT / lesson / "README.md").read_text(), results)
    assert not missing, f"{lesson}/README.md states numbers its reference run lacks: {missing}"


def top_readme_rows() -> list[tuple[str, str]]:
    """(lesson number, rest of the row) of each row of the top README's "Measured results" table."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Measured results"):]
    section = section[:section.find("\n## ", 3)]
    rows = []
    for line in section.splitlines():
        match = re.match(r"\|\s*(\d\d)\s*\|(.*)\|\s*$", line)
        if match:
            rows.append((match.group(1), match.group(2)))
    return rows


def lesson_folder(number: str) -> str:
    return next(p.name for p in ROOT.glob(f"{number}_*") if p.is_dir())


@pytest.mark.parametrize("number, row", [pending(n, row, lesson=lesson_folder(n))
                                         for n, row in top_readme_rows()])
def test_every_number_of_the_top_readme_results_table_is_in_the_lessons_reference_results(number, row):
    results = reference_results(lesson_folder(number))
    missing = unmatched_numbers(f"## Reference run\n{row}\n", results)
    assert not missing, f"README.md's row for lesson {number} states numbers its run lacks: {missing}"


# ----------------------------------------------------------------------------------------------------
# the matcher itself


RUN = {"quick": False, "results": {"speedup": 2.734, "nll": 0.67512, "agree": 0.9991, "step_s": 0.00041,
                                   "tokens": [1031, 3732], "tiny": 1.31e-5},
       "summary": ["KV cache: 19.1x faster at 1000 tokens", "entropy 0.99..1.02 nats"]}


def test_numbers_of_the_run_match_at_the_readmes_precision_and_as_percent_or_milli_units():
    section = ("## Reference run\nspeedup 2.7× (2.73), NLL 0.675, 99.9% same token, 0.41 ms a step, 1,031 "
               "and 3732 tokens, |Δ| 1.3e-5, printed: 19.1×, 0.99..1.02, lesson 06, Vaswani et al. 2017\n"
               "## Next\n7.7")
    assert unmatched_numbers(section, RUN) == []


def test_a_number_the_run_does_not_contain_is_reported():
    section = "## Reference run\nspeedup 2.8×, NLL 0.676, 46× at 1000 tokens, 1.4e-5\n"
    assert unmatched_numbers(section, RUN) == ["2.8", "0.676", "46", "1.4e-5"]


def test_only_the_reference_run_section_is_read_and_lesson_numbers_are_not_measurements():
    readme = ("# 06\n3.14\n## Reference run\nsee lesson 09 and §8, [plot](reference/speed_2.png)\n"
              "## Questions\n42")
    assert readme_numbers(reference_section(readme)) == []
    assert unmatched_numbers(readme, RUN) == []
