"""Go-to-definition, as an editor does it: `llmlab.<lesson>` imports resolve to the numbered folders.

Learners follow a concept from a later lesson back to the one that teaches it by jumping to its
definition (DESIGN §1). Editors resolve imports statically (Jedi here, the engine of several editors'
Python support; Pylance/pyright work the same way): they read the interpreter's `sys.path` and the
files on it, and never run setuptools' import hooks. The README's set-up (`make`) installs the
project editable in strict mode, a tree of links to the lesson files that static tools can read;
this test checks that every public name each lesson exports lands in that lesson's folder.
"""

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

jedi = pytest.importorskip("jedi", reason="jedi is a dev dependency: pip install -e '.[dev]'")

from llmlab.utils.runner import LESSONS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def exported_names(folder: str, package: str) -> list[str]:
    """The names in `__all__` that the lesson's __init__ imports from its own modules."""
    tree = ast.parse((ROOT / folder / "__init__.py").read_text(encoding="utf-8"))
    exported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            exported |= {elt.value for elt in node.value.elts if isinstance(elt, ast.Constant)}
    own: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"llmlab.{package}."):
            own.extend(alias.asname or alias.name for alias in node.names)
    return sorted(name for name in dict.fromkeys(own) if name in exported)


LESSON_NAMES = [(folder, package, exported_names(folder, package)) for folder, package, _ in LESSONS
                if (ROOT / folder / "__init__.py").exists()]
LESSON_NAMES = [row for row in LESSON_NAMES if row[2]]


def _statically_visible() -> bool:
    """Whether some sys.path entry holds llmlab/<lesson> as files (a static tool can follow it), as
    opposed to an import hook (setuptools' default editable mode) that only a running Python sees."""
    return any((Path(entry) / "llmlab" / "utils" / "__init__.py").exists() for entry in sys.path if entry)


@pytest.fixture(scope="module")
def environment():
    if not _statically_visible():
        installed_by_make = Path(sys.prefix, ".llm-lab-installed").exists()
        reason = ("llmlab is installed through an import hook that static tools cannot follow "
                  "(pip install -e . without editable_mode=strict); run `make install`")
        if installed_by_make or importlib.util.find_spec("llmlab.utils") is None:
            pytest.fail(reason)  # the README's set-up must make go-to-definition work
        pytest.skip(reason)
    return jedi.create_environment(sys.executable, safe=False)


def test_every_lesson_exports_names():
    assert [row[0] for row in LESSON_NAMES][:11] == [row[0] for row in LESSONS][:11]


@pytest.mark.parametrize(("folder", "package", "names"), LESSON_NAMES, ids=[row[0] for row in LESSON_NAMES])
def test_go_to_definition_lands_in_the_lessons_folder(folder, package, names, environment, tmp_path):
    # a file outside the repository, as in a learner's own script or a later lesson
    source = f"from llmlab.{package} import {', '.join(names)}\n" + "\n".join(names) + "\n"
    script = jedi.Script(source, path=tmp_path / "reader.py", environment=environment)
    for line, name in enumerate(names, start=2):
        found = script.goto(line, 0, follow_imports=True)
        assert found, f"llmlab.{package}.{name}: go-to-definition found nothing"
        target = Path(found[0].module_path).resolve()  # the install links to the lesson's file
        assert target.is_relative_to(ROOT / folder), (
            f"llmlab.{package}.{name} resolves to {target}, not into {folder}/")
