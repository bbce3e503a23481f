"""Exercise mode (llmlab.utils.exercises): the marks, the blanks, the workspace and the check.

The per-lesson tests run `llm-lab check` on a blanked workspace (every exercise must say "not implemented
yet") and on the solutions (every exercise must pass, each reached by at least one test): that runs each
lesson's test file once more, in a child process, with the workspace's modules in place of the lesson's.
"""

import ast
import json
import re
import sys
import types
from pathlib import Path

import pytest

from llmlab.utils import exercises as ex_mode
from llmlab.utils.runner import LESSONS, main, source_folder

ROOT = Path(__file__).resolve().parents[1]
TEACHING = LESSONS[1:]  # 01..16: every lesson but the shared utilities

TOY = '''"""A toy lesson module."""

from llmlab.utils.exercises import exercise


@exercise(2, "add them")
def add(a, b):
    """a + b, for ints."""
    if not isinstance(a, int):
        raise TypeError(f"a must be an int, got {a!r}")
    # the sum: the line a learner writes
    return a + b


class Box:
    """Holds a number."""

    def __init__(self, x):
        self.x = x

    @exercise(1, "twice x")
    def double(self):
        """2 x."""
        return 2 * self.x

    @staticmethod
    def untouched():
        return "not an exercise"
'''


@pytest.fixture
def toy(tmp_path):
    folder = tmp_path / "99_toy"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY)
    return folder


def load(source: str, name: str = "toy_module") -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)
    return module


def test_the_mark_does_nothing_at_run_time_and_checks_its_arguments():
    def f():
        """doc"""

    assert ex_mode.exercise(1, "hint")(f) is f
    with pytest.raises(TypeError, match="number must be an int >= 1"):
        ex_mode.exercise(0, "hint")
    with pytest.raises(TypeError, match="hint must be a non-empty str"):
        ex_mode.exercise(1, " ")


def test_marks_are_read_from_the_source_in_their_order(toy):
    found = ex_mode.find_exercises(toy)
    assert [(ex.id, ex.qualname, ex.module, ex.hint) for ex in found] == [
        ("99.1", "Box.double", "toy", "twice x"), ("99.2", "add", "toy", "add them")]
    assert found[1].fullname == "llmlab.toy.toy" and found[1].summary == "a + b, for ints."


def test_the_blank_keeps_signature_docstring_and_argument_checks_and_drops_the_rest(toy):
    found = ex_mode.find_exercises(toy)
    blank = ex_mode.blank_source(TOY, found, "ws")
    assert "return a + b\n" not in blank and "the line a learner writes" not in blank
    assert "return 2 * self.x" not in blank and '"""a + b, for ints."""' in blank
    assert "# Exercise 99.2 — hint: add them" in blank
    module = load(blank)
    with pytest.raises(NotImplementedError, match=r"exercise 99\.2 \(add\) is not implemented yet: write it "
                                                  r"in ws/toy\.py"):
        module.add(1, 2)
    with pytest.raises(TypeError, match="a must be an int"):  # the check stays: its test still holds
        module.add("1", 2)
    with pytest.raises(NotImplementedError, match=r"exercise 99\.1 \(Box\.double\)"):
        module.Box(3).double()
    assert module.Box.untouched() == "not an exercise"
    assert ex_mode.NOT_IMPLEMENTED.search(str(pytest.raises(NotImplementedError, module.add, 1, 2).value))
    # nothing but the exercises changed
    assert ast.dump(ast.parse(blank).body[0]) == ast.dump(ast.parse(TOY).body[0])


@pytest.mark.parametrize("source, message", [
    ('@exercise(n, "hint")\ndef f():\n    """doc"""\n    return 1\n', "the mark must read"),
    ('@exercise(1, hint="x")\ndef f():\n    """doc"""\n    return 1\n', "the mark must read"),
    ('@exercise(1, "hint")\ndef f(x):\n    return 1\n', "needs a docstring"),
    ('@exercise(1, "hint")\ndef f(x):\n    """doc"""\n    if x:\n        raise ValueError("x")\n',
     "nothing left to write"),
])
def test_a_mark_is_two_literals_on_a_documented_function_with_something_to_write(tmp_path, source, message):
    folder = tmp_path / "98_bad"
    folder.mkdir()
    (folder / "m.py").write_text(source)
    with pytest.raises(ValueError, match=message):
        ex_mode.find_exercises(folder)


def test_exercise_numbers_run_from_one_without_gaps(toy):
    (toy / "toy.py").write_text(TOY.replace("@exercise(2,", "@exercise(3,"))
    with pytest.raises(ValueError, match=r"numbers must be 1\.\.2 without gaps or repeats, got \[1, 3\]"):
        ex_mode.find_exercises(toy)


def test_the_workspace_never_overwrites_the_learners_edits_without_force(toy, tmp_path):
    workspace = tmp_path / "ws"
    assert ex_mode.write_workspace(toy, workspace) == {"toy.py": "written"}
    assert ex_mode.write_workspace(toy, workspace) == {"toy.py": "unchanged"}
    # an untouched blank may become the solutions
    assert ex_mode.write_workspace(toy, workspace, solutions=True) == {"toy.py": "written"}
    assert (workspace / "toy.py").read_text() == TOY
    edited = TOY.replace("return a + b", "return a + b  # mine")
    (workspace / "toy.py").write_text(edited)
    for solutions in (False, True):
        assert ex_mode.write_workspace(toy, workspace, solutions=solutions) == {"toy.py": "kept (edited)"}
        assert (workspace / "toy.py").read_text() == edited
    assert ex_mode.write_workspace(toy, workspace, force=True) == {"toy.py": "written"}
    assert "NotImplementedError" in (workspace / "toy.py").read_text()
    # a file the manifest does not know is the learner's too
    (workspace / ex_mode.MANIFEST).unlink()
    assert ex_mode.write_workspace(toy, workspace) == {"toy.py": "kept (edited)"}


def test_wrapped_exercises_report_every_call_and_behave_the_same(toy):
    module = load(TOY)
    calls = []
    ex_mode.wrap_exercises(module, ex_mode.find_exercises(toy), lambda ex, err: calls.append((ex.id, err)))
    assert module.add(1, 2) == 3 and module.Box(4).double() == 8
    with pytest.raises(TypeError):
        module.add("1", 2)
    assert [c[0] for c in calls] == ["99.2", "99.1", "99.2"] and isinstance(calls[-1][1], TypeError)
    assert module.add.__doc__ == "a + b, for ints." and module.Box.untouched() == "not an exercise"


def test_install_refuses_a_folder_that_is_not_a_workspace(tmp_path):
    with pytest.raises(ValueError, match="is not an exercise workspace"):
        ex_mode.install(tmp_path)


def test_the_import_hook_loads_the_workspace_module_under_the_lesson_name(toy, tmp_path):
    workspace = tmp_path / "ws"  # as if the toy module were a module of 00_utils: llmlab.utils.toy
    ex_mode.write_workspace(toy, workspace, solutions=True, lesson="00_utils", package="utils")
    (workspace / "toy.py").write_text(TOY + "\nFROM_WORKSPACE = True\n")
    finder = ex_mode.install(workspace)
    try:
        import llmlab.utils.toy as module  # no such module in the lesson: only the workspace has it

        assert module.FROM_WORKSPACE and module.add(2, 3) == 5
        assert Path(module.__file__) == (workspace / "toy.py").resolve()
        with pytest.raises(ValueError, match="imported before the workspace was installed"):
            ex_mode.install(workspace)
    finally:
        sys.meta_path.remove(finder)
        sys.modules.pop("llmlab.utils.toy", None)


# ---- every lesson ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lesson, package", [row[:2] for row in TEACHING], ids=[row[0] for row in TEACHING])
def test_every_lesson_has_three_to_eight_exercises_listed_in_its_readme(lesson, package):
    found = ex_mode.find_exercises(source_folder(package), lesson, package)
    assert 3 <= len(found) <= 8, f"{lesson} has {len(found)} exercises"
    readme = (ROOT / lesson / "README.md").read_text(encoding="utf-8")
    assert "## Do it yourself" in readme, f"{lesson}/README.md lists no exercises"
    section = readme.split("## Do it yourself", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| (\d\d\.\d+) \| `([\w.]+)` \|", section, re.M)
    assert listed == [(ex.id, f"{ex.module}.{ex.qualname}") for ex in found], \
        f"{lesson}/README.md's exercise table is not the marks' list: run " \
        "`python -m llmlab.utils.exercises --readme`"


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("lesson, package", [row[:2] for row in TEACHING], ids=[row[0] for row in TEACHING])
def test_blanked_exercises_are_not_implemented_and_the_solutions_pass(lesson, package, tmp_path, capsys):
    workspace = tmp_path / lesson
    found = ex_mode.find_exercises(source_folder(package), lesson, package)
    assert run_cli(capsys, "exercise", lesson[:2], "--dir", str(workspace))[0] == 0
    code, out = run_cli(capsys, "check", lesson[:2], "--dir", str(workspace))
    assert code == 1 and "could not import the tests" not in out, out
    for ex in found:
        name = re.escape(f"{ex.id} {ex.qualname}")
        assert re.search(rf"^  {name} +not implemented yet$", out, re.M), out
    assert re.search(r"other tests \(reach no exercise\): (\d+) of \1 pass$", out, re.M) or \
        "other tests" not in out, out

    assert run_cli(capsys, "exercise", lesson[:2], "--dir", str(workspace), "--solutions")[0] == 0
    code, out = run_cli(capsys, "check", lesson[:2], "--dir", str(workspace))
    assert code == 0 and f"{len(found)} of {len(found)} exercises pass" in out, out
    for ex in found:
        name = re.escape(f"{ex.id} {ex.qualname}")
        assert re.search(rf"^  {name} +passed \(\d+ tests?\)$", out, re.M), out


def test_a_wrong_body_fails_naming_the_tests_and_k_reruns_only_its_tests(tmp_path, capsys):
    workspace = tmp_path / "ws"
    run_cli(capsys, "exercise", "03", "--dir", str(workspace), "--solutions")
    path = workspace / "attention.py"
    source = path.read_text()
    scaled = "(q.to(compute_dtype) @ k.to(compute_dtype).transpose(-2, -1)) * scale"
    assert source.count(scaled) == 1
    path.write_text(source.replace(scaled, "(q.to(compute_dtype) @ k.to(compute_dtype).transpose(-2, -1))"))
    code, out = run_cli(capsys, "check", "03", "--dir", str(workspace))
    assert code == 1
    assert re.search(r"^  03\.7 scaled_dot_product_attention +FAILED \d+ of \d+ tests:$", out, re.M), out
    assert re.search(r"^      test_matches_torch_sdpa_without_mask: AssertionError: Tensor-likes are not "
                     r"close!", out, re.M), out
    # an exercise whose own tests pass is not blamed for the tests it shares with the wrong one
    assert re.search(r"^  03\.2 causal_mask +\d+ tests pass; \d+ more wait for 03\.7 \(failing\)$", out, re.M)
    total = int(re.search(r"\((\d+) tests run, ", out).group(1))
    reach = json.loads((workspace / ex_mode.REACH).read_text())
    code, out = run_cli(capsys, "check", "03", "--dir", str(workspace), "-k", "03.7")
    assert code == 1 and "03.2" not in out and "0 of 1 exercises pass" in out, out
    ran = int(re.search(r"\((\d+) tests run, ", out).group(1))
    assert ran == sum("03.7" in entry["reached"] for entry in reach.values()) < total
    # the learner's edit survives `exercise` again
    code, out = run_cli(capsys, "exercise", "03", "--dir", str(workspace))
    assert "kept (edited)" in out and scaled not in path.read_text()


def test_a_broken_helper_that_is_no_exercise_fails_the_other_tests(tmp_path, capsys):
    workspace = tmp_path / "ws"
    run_cli(capsys, "exercise", "03", "--dir", str(workspace), "--solutions")
    path = workspace / "attention.py"
    entropy = "return entropy(w.log()) / math.log(base)"
    assert path.read_text().count(entropy) == 1
    path.write_text(path.read_text().replace(entropy, "return 2 * entropy(w.log()) / math.log(base)"))
    code, out = run_cli(capsys, "check", "03", "--dir", str(workspace))
    assert code == 1, out
    assert re.search(r"^  other tests \(reach no exercise\): (\d+) of 20 pass:$", out, re.M), out
    assert "test_jensen_shannon_matches_scipy (2 cases): AssertionError" in out


def test_the_demo_runs_on_the_workspace(tmp_path, capsys):
    workspace = tmp_path / "ws"
    run_cli(capsys, "exercise", "03", "--dir", str(workspace))
    code, out = run_cli(capsys, "run", "03", "--quick", "--out", str(tmp_path / "out"), "--exercises",
                        str(workspace))
    assert code == 1, out
    assert re.search(r"the demo stopped at exercise 03\.\d \(\w+\), not implemented yet", out), out
    run_cli(capsys, "exercise", "03", "--dir", str(workspace), "--solutions", "--force")
    path = workspace / "attention.py"
    path.write_text(path.read_text() + '\nprint("attention.py from the workspace")\n')
    code, out = run_cli(capsys, "run", "03", "--quick", "--out", str(tmp_path / "out"), "--exercises",
                        str(workspace))
    assert code == 0 and "attention.py from the workspace" in out, out
    assert (tmp_path / "out" / "exercises" / "03_attention_basics" / "results.json").exists()
    code, out = run_cli(capsys, "run", "04", "--exercises", str(workspace))
    assert code == 2 and "holds 03_attention_basics" in out


def test_check_and_exercise_explain_what_is_missing(tmp_path, capsys):
    code, out = run_cli(capsys, "check", "03", "--dir", str(tmp_path / "nothing"))
    assert code == 2 and "is not an exercise workspace of 03_attention_basics" in out
    run_cli(capsys, "exercise", "03", "--dir", str(tmp_path / "ws"))
    code, out = run_cli(capsys, "exercise", "04", "--dir", str(tmp_path / "ws"))
    assert code == 2 and "holds lesson 03_attention_basics" in out
    path = tmp_path / "ws" / "attention.py"
    path.write_text(path.read_text() + "\ndef broken(:\n")  # a typo: named before any test runs
    code, out = run_cli(capsys, "check", "03", "--dir", str(tmp_path / "ws"))
    assert code == 1, out
    assert re.search(r"attention\.py:\d+: .*\n    def broken\(:\nFix it, then check again", out), out
    with pytest.raises(SystemExit):
        main(["exercise"])
    code, out = run_cli(capsys, "exercise", "--list", "03")
    assert code == 0 and "03.7   attention.py:scaled_dot_product_attention" in out
