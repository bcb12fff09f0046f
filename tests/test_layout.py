"""The code's layout rules that ruff and mypy do not check, read from the source with `ast`.

One name per class across the package; the state vocabulary defined in states.py only; the
direction of imports (nothing imports the CLI, states.py imports nothing of the exporter, the
simulator only what its docstring names, tests take helpers from tests.support and never from
another test module or bench/); and no file that edits sys.path (the repository
root is the import root: tests/support/__init__.py). Each rule is shown catching a broken
example too.
"""

from __future__ import annotations

import ast
import functools
from collections import Counter
from pathlib import Path

from tests.support.paths import ROOT

PACKAGE = ROOT / "zego_exporter"
STATE_NAMES = {"STATUS_STATES", "NOT_FOUND", "UNKNOWN", "STATES", "TERMINAL_STATES",
               "RUNNING_STATUSES", "state_of"}
# What the simulator may import of the exporter (its package docstring says so).
SIMULATOR_MAY_IMPORT = {"zego_exporter.signing", "zego_exporter.errors",
                        "zego_exporter.responses", "zego_exporter.states"}


@functools.cache
def modules(root: Path) -> dict[str, ast.Module]:
    return {str(path.relative_to(ROOT)): ast.parse(path.read_text(encoding="utf-8"))
            for path in sorted(root.rglob("*.py")) if ".venv" not in path.parts}


def class_names(trees: dict[str, ast.Module]) -> Counter[str]:
    return Counter(node.name for tree in trees.values() for node in ast.walk(tree)
                   if isinstance(node, ast.ClassDef))


def defined_names(tree: ast.Module) -> set[str]:
    """Names a module defines at its top level (assignments, functions, classes)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def imported_modules(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sys_path_edits(tree: ast.Module) -> list[int]:
    """Lines that assign to sys.path (or a slice of it) or call its insert/append/extend."""
    def is_sys_path(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "path"
                and isinstance(node.value, ast.Name) and node.value.id == "sys")

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if is_sys_path(target) or (isinstance(target, ast.Subscript)
                                           and is_sys_path(target.value)):
                    lines.append(node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("insert", "append", "extend")
              and is_sys_path(node.func.value)):
            lines.append(node.lineno)
    return sorted(lines)


def test_every_class_name_is_used_once_in_the_package() -> None:
    twice = {name: count for name, count in class_names(modules(PACKAGE)).items() if count > 1}
    assert twice == {}


def test_the_class_name_rule_catches_a_second_class_of_a_name() -> None:
    trees = {"a.py": ast.parse("class Handler:\n    pass\n"),
             "b.py": ast.parse("def f():\n    class Handler:\n        pass\n")}
    assert class_names(trees)["Handler"] == 2


def test_the_state_vocabulary_is_defined_in_states_py_only() -> None:
    trees = modules(PACKAGE)
    assert defined_names(trees["zego_exporter/states.py"]) >= STATE_NAMES
    elsewhere = {path: sorted(defined_names(tree) & STATE_NAMES)
                 for path, tree in trees.items() if path != "zego_exporter/states.py"}
    assert {path: names for path, names in elsewhere.items() if names} == {}
    assert defined_names(ast.parse("STATES, x = (), 1\nNOT_FOUND: str = 'x'\n")) >= {
        "STATES", "NOT_FOUND"}


def test_imports_flow_one_way() -> None:
    trees = modules(PACKAGE)
    for path, tree in trees.items():
        imported = imported_modules(tree)
        if path != "zego_exporter/__main__.py":
            assert "zego_exporter.cli" not in imported, path
        if path == "zego_exporter/states.py":
            assert not {m for m in imported if m.startswith("zego_exporter")}, path
        if path.startswith("zego_exporter/simulator/"):
            outside = {m for m in imported if m.startswith("zego_exporter.")
                       and not m.startswith("zego_exporter.simulator")
                       and not any(m == allowed or m.startswith(allowed + ".")
                                   for allowed in SIMULATOR_MAY_IMPORT)}
            assert outside == set(), path


def test_tests_import_helpers_from_tests_support_only() -> None:
    wrong = {path: sorted(m for m in imported_modules(tree) if m.split(".")[0] in {
                 "bench", "conftest"} or m.startswith(("test_", "tests.test_", "tests.conftest")))
             for path, tree in modules(ROOT / "tests").items()}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_no_file_edits_sys_path() -> None:
    edits = {path: lines for root in ("zego_exporter", "tests", "bench", "grafana", "deploy")
             for path, tree in modules(ROOT / root).items()
             if (lines := sys_path_edits(tree))}
    assert edits == {}
    broken = "import sys\nsys.path[:0] = ['tests']\nsys.path.insert(0, 'x')\nsys.path = []\n"
    assert sys_path_edits(ast.parse(broken)) == [2, 3, 4]
