"""Exercise mode: re-implement a lesson's functions and have them graded by the lesson's own tests.

    llm-lab exercise --list                 every lesson's exercises, one line each
    llm-lab exercise 03                     exercises/03_attention_basics/: the lesson's modules with
                                            the exercises' bodies blanked
    llm-lab check 03                        run tests/test_03_*.py against that workspace
    llm-lab run 03 --exercises exercises/03_attention_basics   the demo, on your code

The mark. A function or method becomes an exercise by one decorator in the lesson's source, which
does nothing at run time (it returns the function unchanged):

    @exercise(2, "scores = q k^T * scale; -inf where the mask forbids; softmax over the keys; @ v")
    def scaled_dot_product_attention(q, k, v, ...):

The number orders a lesson's exercises from easy to hard (1, 2, ... across all its modules); the
string is the hint the workspace shows. The marks are read from the source with `ast` (nothing is
imported), so `--list` answers at once.

The blank. In the workspace the exercise keeps its signature, decorators and docstring (shapes,
equation, paper) and its argument checks: the body's statements up to the last one that raises a
ValueError/TypeError or calls a `check_*` / `_check_*` function stay, since the tests also check
the errors and their messages (DESIGN §7). The rest becomes the hint and
`raise NotImplementedError("exercise 03.2 …")`. `--solutions` writes the lesson's own code instead.

The check. `llm-lab check` runs the lesson's tests in a child process with an import hook
(`install`): `llmlab.<lesson>.<module>` resolves to the workspace's file, whoever imports it (the
lesson's package, its tests, later lessons' modules). While the tests run, each exercise is wrapped
to record which tests reach it and which found it unimplemented (`llmlab.utils.exercise_check`, a
pytest plugin); the report lists, per exercise, passed / failing tests with their first message /
not implemented yet / which other exercise its failing tests wait for (`_blame`).

This module imports neither torch nor pytest.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

__all__ = ["Exercise", "blank_source", "exercise", "find_exercises", "install", "read_json", "read_manifest",
           "wrap_exercises", "write_workspace"]

MANIFEST = ".llm-lab-exercise.json"  # what `llm-lab exercise` wrote: lesson, files and their hashes
WORKSPACE_ENV = "LLMLAB_EXERCISES"  # the child processes of `check` and `run --exercises` read it
NOT_IMPLEMENTED = re.compile(r"exercise (\d\d)\.(\d+) \(([\w.]+)\) is not implemented yet")


def exercise(number: int, hint: str) -> Callable:
    """Mark the decorated function or method as exercise `number` of its lesson, with a `hint`.

    Does nothing at run time: returns the function unchanged (the marks are read from the source).
    Raises TypeError unless number is an int >= 1 and hint a non-empty str.
    """
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise TypeError(f"number must be an int >= 1, got {number!r}")
    if not isinstance(hint, str) or not hint.strip():
        raise TypeError(f"hint must be a non-empty str, got {hint!r}")
    return lambda function: function


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One marked function: where it is, and which of its source lines the workspace blanks.

    lines are 1-based and inclusive: `keep_until` is the last line kept (the docstring's or the last
    argument check's), `end` the function's last line; the workspace replaces keep_until+1 .. end.
    """

    lesson: str  # "03_attention_basics"
    package: str  # "attention_basics"
    module: str  # "attention" (the file attention.py)
    qualname: str  # "scaled_dot_product_attention" or "MultiHeadAttention.forward"
    number: int
    hint: str
    summary: str  # the docstring's first paragraph, shortened
    indent: str  # the body's indentation
    keep_until: int
    end: int

    @property
    def id(self) -> str:
        """'03.2': lesson number . exercise number."""
        return f"{self.lesson[:2]}.{self.number}"

    @property
    def file(self) -> str:
        return f"{self.module}.py"

    @property
    def fullname(self) -> str:
        """The module that holds it: llmlab.attention_basics.attention."""
        return f"llmlab.{self.package}.{self.module}"


def _called(call: ast.Call) -> str:
    """The name a call calls: f(...) -> 'f', a.b.f(...) -> 'f'."""
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _mark(node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Call | None:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and _called(decorator) == "exercise":
            return decorator
    return None


def _is_check(statement: ast.stmt) -> bool:
    """An argument check: the statement raises ValueError/TypeError or calls a check_* function."""
    for node in ast.walk(statement):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in ("ValueError", "TypeError"):
                return True
        if isinstance(node, ast.Call) and _called(node).startswith(("check_", "_check")):
            return True
    return False


def _first_paragraph(doc: str, limit: int = 90) -> str:
    """The docstring's first paragraph on one line, cut at a word boundary to at most `limit` characters."""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    return paragraph if len(paragraph) <= limit else paragraph[: limit - 1].rsplit(" ", 1)[0] + " …"


def _exercises_in(path: Path, lesson: str, package: str) -> list[Exercise]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                mark = _mark(node)
                if mark is None:
                    continue
                where = f"{path.name}:{node.lineno} {prefix}{node.name}"
                args = mark.args
                if (len(args) != 2 or mark.keywords or not all(isinstance(a, ast.Constant) for a in args)
                        or not isinstance(args[0].value, int) or not isinstance(args[1].value, str)):
                    raise ValueError(f"{where}: the mark must read @exercise(<int>, '<hint>') with literals")
                doc = ast.get_docstring(node)
                if not doc:
                    raise ValueError(f"{where}: an exercise needs a docstring (it is what the learner reads)")
                statements = node.body[1:]  # after the docstring
                checks = [i for i, s in enumerate(statements) if _is_check(s)]
                kept = statements[: checks[-1] + 1] if checks else []
                if len(kept) == len(statements):
                    raise ValueError(f"{where}: nothing left to write after the argument checks")
                last_kept = kept[-1] if kept else node.body[0]
                found.append(Exercise(
                    lesson=lesson, package=package, module=path.stem, qualname=prefix + node.name,
                    number=args[0].value, hint=args[1].value, summary=_first_paragraph(doc),
                    indent=" " * node.body[0].col_offset, keep_until=last_kept.end_lineno,
                    end=node.end_lineno))

    visit(tree.body, "")
    return found


def find_exercises(folder: Path, lesson: str | None = None, package: str | None = None) -> list[Exercise]:
    """The exercises marked in the modules of one lesson folder, ordered by their number.

    lesson/package default to the folder's name and the name after its number ("03_attention_basics",
    "attention_basics"). Raises ValueError for a malformed mark, an exercise without a docstring or
    without a body to write, or numbers that are not 1, 2, ... without gaps or repeats.
    """
    folder = Path(folder)
    lesson = lesson or folder.name
    package = package or lesson[3:]
    found = [ex for path in sorted(folder.glob("*.py")) if path.name != "demo.py"
             for ex in _exercises_in(path, lesson, package)]
    found.sort(key=lambda ex: ex.number)
    numbers = [ex.number for ex in found]
    if numbers != list(range(1, len(found) + 1)):
        raise ValueError(f"{lesson}: exercise numbers must be 1..{len(found)} without gaps or repeats, "
                         f"got {numbers}")
    return found


def blank_source(source: str, exercises: list[Exercise], workspace: str = "the workspace") -> str:
    """`source` with each exercise's body (after its docstring and argument checks) replaced by its hint
    and `raise NotImplementedError("exercise NN.k (name) is not implemented yet ...")`."""
    lines = source.splitlines(keepends=True)
    for ex in sorted(exercises, key=lambda ex: -ex.keep_until):  # bottom up: line numbers stay valid
        hint = textwrap.wrap(f"Exercise {ex.id} — hint: {ex.hint}", width=100 - len(ex.indent) - 2)
        message = (f"exercise {ex.id} ({ex.qualname}) is not implemented yet: write it in "
                   f"{workspace}/{ex.file}")
        body = [f"{ex.indent}# {line}\n" for line in hint]
        body.append(f"{ex.indent}raise NotImplementedError({message!r})\n")
        lines[ex.keep_until: ex.end] = body
    return "".join(lines)


def _shown(path: Path, root: Path) -> str:
    """path relative to root (the checkout) when it is inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_json(path: Path) -> dict:
    """A JSON object from `path` ({} when the file is missing, unreadable or not an object)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def read_manifest(workspace: Path) -> dict:
    """The workspace's manifest ({} when there is none or it is unreadable)."""
    return read_json(Path(workspace) / MANIFEST)


def write_workspace(folder: Path, workspace: Path, *, solutions: bool = False, force: bool = False,
                    lesson: str | None = None, package: str | None = None) -> dict[str, str]:
    """Write the lesson's modules that hold exercises into `workspace`, blanked (or, with `solutions`,
    as the lesson has them). Returns {file name: "written" | "unchanged" | "kept (edited)"}.

    A file that exists and differs from what this function last wrote there (the manifest's hash) is
    the learner's work: it is kept unless `force`. Raises ValueError when the lesson has no exercises.
    """
    folder, workspace = Path(folder), Path(workspace)
    exercises = find_exercises(folder, lesson, package)
    if not exercises:
        raise ValueError(f"{folder.name} has no exercises")
    workspace.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(workspace)
    written_before = manifest.get("files", {}) if manifest.get("lesson") == exercises[0].lesson else {}
    status: dict[str, str] = {}
    files: dict[str, str] = {}
    for module in dict.fromkeys(ex.module for ex in exercises):
        name = f"{module}.py"
        source = (folder / name).read_text(encoding="utf-8")
        if not solutions:
            source = blank_source(source, [ex for ex in exercises if ex.module == module],
                                  _shown(workspace, folder.parent))
        target = workspace / name
        if target.exists():
            current = _sha256(target)
            edited = current != written_before.get(name)
            if edited and not force:
                status[name] = "kept (edited)"
                files[name] = written_before.get(name, "")
                continue
            if target.read_text(encoding="utf-8") == source:
                status[name] = "unchanged"
                files[name] = current
                continue
        target.write_text(source, encoding="utf-8")
        status[name] = "written"
        files[name] = _sha256(target)
    manifest = {"lesson": exercises[0].lesson, "package": exercises[0].package, "files": files,
                "exercises": [ex.id for ex in exercises]}
    (workspace / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return status


# ---- the import hook: llmlab.<lesson>.<module> -> the workspace's file --------------------------------


class _WorkspaceLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname: str, path: str, on_load: Callable | None):
        super().__init__(fullname, path)
        self.on_load = on_load

    def exec_module(self, module) -> None:
        super().exec_module(module)
        if self.on_load is not None:
            self.on_load(module)


class WorkspaceFinder(importlib.abc.MetaPathFinder):
    """Finds `llmlab.<package>.<module>` in the workspace for each module file it holds."""

    def __init__(self, workspace: Path, package: str, on_load: Callable | None = None):
        self.modules = {f"llmlab.{package}.{path.stem}": path.resolve()
                        for path in sorted(Path(workspace).glob("*.py"))}
        self.on_load = on_load

    def find_spec(self, fullname, path=None, target=None):
        file = self.modules.get(fullname)
        if file is None:
            return None
        loader = _WorkspaceLoader(fullname, str(file), self.on_load)
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def install(workspace: Path, on_load: Callable | None = None) -> WorkspaceFinder:
    """Make `llmlab.<lesson>.<module>` imports load the workspace's modules (call before anything
    imports the lesson). `on_load(module)` runs after each such module is executed.
    Raises ValueError when the workspace has no manifest (not written by `llm-lab exercise`) or one
    of its modules is imported already."""
    workspace = Path(workspace)
    manifest = read_manifest(workspace)
    if not manifest.get("package"):
        raise ValueError(f"{workspace} is not an exercise workspace (no {MANIFEST}); "
                         "create one with `llm-lab exercise NN`")
    finder = WorkspaceFinder(workspace, manifest["package"], on_load)
    loaded = sorted(set(finder.modules) & set(sys.modules))
    if loaded:
        raise ValueError(f"{', '.join(loaded)} imported before the workspace was installed")
    sys.meta_path.insert(0, finder)
    return finder


def wrap_exercises(module, exercises: list[Exercise], record: Callable[[Exercise, BaseException | None], None]
                   ) -> None:
    """Replace each exercise of `module` by a wrapper that calls `record(exercise, error)` on every call
    (error: the exception it raised, or None). Used by the check to know which tests reach which
    exercise."""
    for ex in exercises:
        owner = module
        *path, name = ex.qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        raw = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        kind = type(raw) if isinstance(raw, (staticmethod, classmethod)) else None
        function = raw.__func__ if kind else raw

        wrapper = _recording(function, ex, record)
        setattr(owner, name, kind(wrapper) if kind else wrapper)


def _recording(function: Callable, ex: Exercise, record: Callable) -> Callable:
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            result = function(*args, **kwargs)
        except BaseException as error:
            record(ex, error)
            raise
        record(ex, None)
        return result

    return wrapper


# ---- the commands: llm-lab exercise / check ----------------------------------------------------------

# the last check's tests: the exercises each reached, and whether it ran to its end (no exercise stopped it
# with NotImplementedError); `check -k` skips the complete ones that did not reach the chosen exercises
REACH = ".llm-lab-check.json"


def default_workspace(lesson: str, folder: Path | None) -> Path:
    """exercises/<lesson>/ at the root of the source checkout (git-ignored), given the lesson's folder."""
    root = folder.parent if folder is not None else Path.cwd()
    return root / "exercises" / lesson


def cmd_list(lessons: list[tuple[str, str, Path | None]]) -> int:
    """Print each lesson's exercises; lessons: (lesson, package, source folder)."""
    for lesson, package, folder in lessons:
        found = find_exercises(folder, lesson, package) if folder is not None else []
        print(f"{lesson} ({len(found)} exercises)")
        for ex in found:
            print(f"  {ex.id:<6} {ex.file + ':' + ex.qualname:<48} {ex.summary}")
    return 0


def cmd_exercise(lesson: str, package: str, folder: Path | None, workspace: Path | None, solutions: bool,
                 force: bool) -> int:
    if folder is None:
        print(f"llm-lab: lesson {lesson} is not installed (run `make install`)", file=sys.stderr)
        return 2
    workspace = workspace or default_workspace(lesson, folder)
    manifest = read_manifest(workspace)
    if manifest.get("lesson") not in (None, lesson):
        print(f"llm-lab: {workspace} holds lesson {manifest['lesson']}; choose another --dir",
              file=sys.stderr)
        return 2
    try:
        status = write_workspace(folder, workspace, solutions=solutions, force=force, lesson=lesson,
                                 package=package)
    except ValueError as err:
        print(f"llm-lab: {err}", file=sys.stderr)
        return 2
    for name, what in status.items():
        print(f"  {workspace / name}: {what}")
    if any(what.startswith("kept") for what in status.values()):
        print("llm-lab: edited files are kept; pass --force to overwrite them with a fresh copy",
              file=sys.stderr)
    found = find_exercises(folder, lesson, package)
    print(f"\n{lesson}: {len(found)} exercises{' (the solutions)' if solutions else ''}, easiest first:")
    for ex in found:
        print(f"  {ex.id:<6} {ex.file}:{ex.qualname} — {ex.summary}")
    where = "" if workspace == default_workspace(lesson, folder) else f" --dir {workspace}"
    if solutions:
        print(f"\nThe lesson's own code is in {workspace}/; grade it: llm-lab check {lesson[:2]}{where}")
        return 0
    print(f"\nWrite them in {workspace}/, then grade them with the lesson's tests:\n"
          f"  llm-lab check {lesson[:2]}{where}"
          f"\nand run the demo on your code:\n  llm-lab run {lesson[:2]} --exercises {workspace}")
    return 0


def _select(found: list[Exercise], name: str | None) -> list[Exercise]:
    """-k NAME: exercises whose id ('03.2' or '2'), name or qualname matches; [] when none does."""
    if not name:
        return found
    wanted = name.lower()
    return [ex for ex in found if wanted in (ex.id, str(ex.number), ex.qualname.lower(),
                                               ex.qualname.rsplit(".", 1)[-1].lower())]


def cmd_check(lesson: str, package: str, folder: Path | None, workspace: Path | None, name: str | None,
              verbose: bool) -> int:
    import subprocess
    import tempfile
    import time

    workspace = workspace or default_workspace(lesson, folder)
    manifest = read_manifest(workspace)
    if folder is None or manifest.get("lesson") != lesson:
        where = "" if workspace == default_workspace(lesson, folder) else f" --dir {workspace}"
        print(f"llm-lab: {workspace} is not an exercise workspace of {lesson}; create it with "
              f"`llm-lab exercise {lesson[:2]}{where}`", file=sys.stderr)
        return 2
    test_file = folder.parent / "tests" / f"test_{lesson}.py"
    if not test_file.exists():
        print(f"llm-lab: no {test_file}: the check needs the source checkout's tests", file=sys.stderr)
        return 2
    for path in sorted(workspace.glob("*.py")):  # a typo would otherwise show as "no test reached it"
        try:
            compile(path.read_text(encoding="utf-8"), str(path), "exec")
        except SyntaxError as err:
            line = f"\n    {err.text.rstrip()}" if err.text else ""
            print(f"llm-lab: {path}:{err.lineno}: {err.msg}{line}\nFix it, then check again.",
                  file=sys.stderr)
            return 1
    found = find_exercises(folder, lesson, package)
    chosen = _select(found, name)
    selection = [str(test_file)]
    only = ""
    if name and chosen:  # the plugin skips the tests that the last check saw finish without reaching them
        only = ",".join(ex.id for ex in chosen)
    elif name:  # not an exercise: a pytest -k expression over the test names
        selection += ["-k", name]
        chosen = found
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        env = dict(os.environ, **{WORKSPACE_ENV: str(workspace.resolve()),
                                  "LLMLAB_EXERCISE_REPORT": str(report_path), "LLMLAB_EXERCISE_ONLY": only})
        cmd = [sys.executable, "-m", "pytest", *selection, "-p", "llmlab.utils.exercise_check",
               "-p", "no:cacheprovider", "-q", "--tb=short" if verbose else "--tb=no", "-o", "addopts="]
        print(f"llm-lab check {lesson[:2]}: {workspace} with {test_file.relative_to(folder.parent)} ...",
              flush=True)
        start = time.perf_counter()
        result = subprocess.run(cmd, cwd=folder.parent, env=env, text=True,
                                stdout=None if verbose else subprocess.PIPE, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        if not report_path.exists():
            print(result.stdout or "", end="")
            print(f"llm-lab: the tests did not run (pytest exit {result.returncode})", file=sys.stderr)
            return 2
        report = json.loads(report_path.read_text(encoding="utf-8"))
    tests = report["tests"]
    reach = read_json(workspace / REACH)
    reach.update({nodeid: {"reached": entry["reached"], "complete": not entry["unimplemented"]}
                  for nodeid, entry in tests.items()})
    (workspace / REACH).write_text(json.dumps(reach, indent=1) + "\n", encoding="utf-8")
    return _print_report(chosen, tests, report["collect_errors"], seconds, still_blank(workspace))


def still_blank(workspace: Path) -> set[str]:
    """The ids of the exercises whose blank (`raise NotImplementedError("exercise NN.k ...")`) is still in
    the workspace's files: not implemented, whether or not a test reached them."""
    found = set()
    for path in Path(workspace).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args \
                    and isinstance(node.exc.args[0], ast.Constant):
                match = NOT_IMPLEMENTED.search(str(node.exc.args[0].value))
                if match:
                    found.add(f"{match.group(1)}.{match.group(2)}")
    return found


def _print_failures(failed: list[str], tests: dict[str, dict], limit: int = 8) -> None:
    """The failing tests, the cases of one parametrized test on one line, each with its first message."""
    groups: dict[str, list[str]] = {}
    for nodeid in failed:
        groups.setdefault(nodeid.split("::", 1)[-1].split("[", 1)[0], []).append(nodeid)
    for name, nodeids in list(groups.items())[:limit]:
        cases = f" ({len(nodeids)} cases)" if len(nodeids) > 1 else ""
        message = tests[nodeids[0]]["message"]
        print(f"      {name}{cases}: {message if len(message) <= 160 else message[:159] + '…'}")
    if len(groups) > limit:
        print(f"      … and {len(groups) - limit} more tests")


def _blame(reached: list[str], tests: dict[str, dict], failed: set[str], unimplemented: set[str]) -> set[str]:
    """Which of the exercises a failing test reached are to blame, the others only wait for them:
    1. the ones not written yet; else 2. the ones failing a test that reaches nothing else; else 3. of those
    not "cleared" (by a passing test that reaches them alone and runs their body, not only their argument
    checks), the most suspicious by the Ochiai score ef / sqrt(ef + ep) over all tests (ef, ep: failed and
    passed tests that reach it; spectrum-based fault localisation, Abreu et al. 2007), ties all blamed."""
    def alone(i: str) -> list[str]:
        return [t for t, e in tests.items() if e["reached"] == [i]]

    if not reached:  # a test of the lesson's other code: nothing to blame here
        return set()
    if set(reached) & unimplemented:
        return set(reached) & unimplemented
    wrong = {i for i in reached if any(t in failed for t in alone(i))}
    if wrong:
        return wrong
    cleared = {i for i in reached
               if any(t not in failed and i in tests[t].get("returned", []) for t in alone(i))}
    suspects = [i for i in reached if i not in cleared] or list(reached)

    def ochiai(i: str) -> float:
        ef = sum(i in tests[t]["reached"] for t in failed)
        ep = sum(i in e["reached"] and t not in failed for t, e in tests.items())
        return ef / math.sqrt(ef + ep) if ef else 0.0

    best = max(ochiai(i) for i in suspects)
    return {i for i in suspects if ochiai(i) >= best - 1e-12}


def _print_report(chosen: list[Exercise], tests: dict[str, dict], collect_errors: list[str],
                  seconds: float, blank: set[str]) -> int:
    width = max((len(f"{ex.id} {ex.qualname}") for ex in chosen), default=20) + 2
    reached = {ex.id: [t for t, e in tests.items() if ex.id in e["reached"]] for ex in chosen}
    failed = {t for t, e in tests.items() if e["outcome"] == "failed"}
    unimplemented = blank | {i for e in tests.values() for i in e["unimplemented"]}
    blamed = {t: _blame(tests[t]["reached"], tests, failed, unimplemented) for t in failed}
    done = 0
    for ex in chosen:
        mine = reached[ex.id]
        own = [t for t in mine if t in failed and ex.id in blamed[t]]
        blockers = {i for t in mine if t in failed and ex.id not in blamed[t] for i in blamed[t]}
        label = f"{ex.id} {ex.qualname}".ljust(width)
        if ex.id in unimplemented:
            print(f"  {label}not implemented yet")
        elif own:
            print(f"  {label}FAILED {len(own)} of {len(mine)} tests:")
            _print_failures(own, tests)
        elif blockers:
            blockers = sorted(blockers)
            shared = sum(t in failed for t in mine)
            passing = len(mine) - shared
            print(f"  {label}{passing} test{' passes' if passing == 1 else 's pass'}; {shared} more wait for "
                  + ", ".join(f"{i} ({'not implemented yet' if i in unimplemented else 'failing'})"
                              for i in blockers))
        elif mine:
            print(f"  {label}passed ({len(mine)} test{'s' if len(mine) > 1 else ''})")
            done += 1
        else:
            print(f"  {label}no test reached it")
    others = [t for t, e in tests.items() if not e["reached"]]
    other_failed = [t for t in others if tests[t]["outcome"] == "failed"]
    if others:
        print(f"  other tests (reach no exercise): {len(others) - len(other_failed)} of {len(others)} pass"
              + (":" if other_failed else ""))
        _print_failures(other_failed, tests)
    for error in collect_errors:
        print(f"  could not import the tests: {error.replace('E   ', '')} (run with -v for the traceback)")
    ok = done == len(chosen) and not other_failed and not collect_errors
    print(f"{done} of {len(chosen)} exercises pass ({len(tests)} tests run, {seconds:.0f} s)"
          + (": all done." if ok else "."))
    return 0 if ok else 1


README_SECTION = "## Do it yourself"


def readme_section(lesson: str, exercises: list[Exercise]) -> str:
    """The "Do it yourself" section of a lesson README: the commands and a table of its exercises."""
    n = lesson[:2]
    rows = "\n".join(f"| {ex.id} | `{ex.module}.{ex.qualname}` | {ex.summary.replace('|', chr(92) + '|')} |"
                     for ex in exercises)
    text = (f"`llm-lab exercise {n}` writes this lesson's modules to `exercises/{lesson}/` with the bodies "
            f"of the {len(exercises)} functions below blanked: their signatures, docstrings and argument "
            f"checks stay; a hint takes the place of the code. Write them in order; `llm-lab check {n}` "
            f"grades them with this lesson's own tests (the ones that prove the lesson's code equal to its "
            f"references), and `llm-lab run {n} --exercises exercises/{lesson}` runs the demo on your code. "
            f"The top README's \"Do it yourself\" says more.")
    return (f"{README_SECTION}\n\n{textwrap.fill(text, width=100, break_on_hyphens=False)}\n\n"
            f"| exercise | function | what it is |\n|---|---|---|\n{rows}\n")


def update_readme(folder: Path) -> bool:
    """Write (or rewrite) the "Do it yourself" section of the lesson's README from its marks (a new one goes
    at the end, after "Questions to try"). Returns whether the file changed."""
    folder = Path(folder)
    path = folder / "README.md"
    text = path.read_text(encoding="utf-8")
    section = readme_section(folder.name, find_exercises(folder))
    if README_SECTION in text:
        before, rest = text.split(README_SECTION, 1)
        after = rest.split("\n## ", 1)[1] if "\n## " in rest else ""
        new = before + section + ("\n## " + after if after else "")
    else:
        new = text.rstrip("\n") + "\n\n" + section
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    """`python -m llmlab.utils.exercises WORKSPACE -m MODULE [ARGS...]`: run MODULE (a demo) as __main__
    with the workspace installed (what `llm-lab run NN --exercises DIR` does).
    `python -m llmlab.utils.exercises --readme`: rewrite the lesson READMEs' exercise tables (the marks)."""
    import runpy

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--readme"]:
        root = Path(__file__).resolve().parent.parent
        for folder in sorted(root.glob("[0-9][0-9]_*")):
            if folder.name != "00_utils" and find_exercises(folder) and update_readme(folder):
                print(f"updated {folder.name}/README.md")
        return 0
    if len(argv) < 3 or argv[1] != "-m":
        print("usage: python -m llmlab.utils.exercises WORKSPACE -m MODULE [ARGS...]\n"
              "       python -m llmlab.utils.exercises --readme", file=sys.stderr)
        return 2
    try:
        install(Path(argv[0]))
    except ValueError as err:
        print(f"llm-lab: {err}", file=sys.stderr)
        return 2
    os.environ[WORKSPACE_ENV] = str(Path(argv[0]).resolve())
    sys.argv = [argv[2], *argv[3:]]
    try:
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    except NotImplementedError as err:
        match = NOT_IMPLEMENTED.search(str(err))
        if match is None:
            raise
        lesson, number, name = match.groups()
        print(f"\nllm-lab: the demo stopped at exercise {lesson}.{number} ({name}), not implemented yet in "
              f"{argv[0]}; `llm-lab check {lesson}` shows what is left", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
