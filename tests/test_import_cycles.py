"""The lessons' modules import each other without cycles, deferred or not (DESIGN §1).

A lesson may import a primitive from a later lesson (the GPT of lesson 04 uses lesson 09's attention and
lesson 10's norms), so the order of the folders is no guide; what must hold is that the graph of
`llmlab` imports between modules has no cycle, and that no library module hides an import of another
lesson inside a function body, where a cycle would only show at call time. (Demo scripts import their
libraries inside `load_libraries` on purpose, so that `--help` answers before torch loads; they are not
imported by any module and are left out.)
"""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# "03_attention_basics" -> "llmlab.attention_basics" (pyproject.toml maps each folder this way, DESIGN §1)
FOLDER_TO_PACKAGE = {path.name: "llmlab." + path.name[3:] for path in sorted(ROOT.iterdir())
                     if path.is_dir() and re.fullmatch(r"\d\d_\w+", path.name)}
SCRIPTS = ("demo.py", "benchmark.py", "benchmark_train.py")  # run as programs, never imported by a module


def library_modules() -> dict[str, Path]:
    """Every importable lesson module, as dotted name -> file."""
    modules = {}
    for folder, package in FOLDER_TO_PACKAGE.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name in SCRIPTS or path.name.startswith("train_"):
                continue
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def llmlab_imports(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """(node, imported module) for every `import llmlab...` / `from llmlab... import ...` in tree."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmlab"):
            found.append((node, node.module))
        elif isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names if alias.name.startswith("llmlab")]
    return found


def lesson_of(module: str) -> str:
    return ".".join(module.split(".")[:2])  # llmlab.transformer_block.model -> llmlab.transformer_block


MODULES = library_modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_lesson_module_imports(module):
    importlib.import_module(module)


def test_no_module_imports_another_lesson_inside_a_function():
    hidden = []
    for module, path in MODULES.items():
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f"{module}.{function.name} imports {name}" for _, name in llmlab_imports(function)
                           if lesson_of(name) != lesson_of(module)]
    assert not hidden, "deferred imports of another lesson hide an import cycle: " + "; ".join(hidden)


def test_the_graph_of_imports_between_modules_has_no_cycle():
    graph = {module: {name for _, name in llmlab_imports(ast.parse(path.read_text()))} - {module}
             for module, path in MODULES.items()}  # module -> the llmlab modules it imports
    state = {}  # module -> "visiting" | "done"

    def visit(module, path):
        if state.get(module) == "visiting":
            pytest.fail("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if state.get(module) != "done":
            state[module] = "visiting"
            for target in sorted(graph.get(module, ())):
                visit(target, path + [module])
            state[module] = "done"

    for module in sorted(graph):
        visit(module, [])
