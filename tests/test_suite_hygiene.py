"""The suite's own rules, checked on its source: every test that reads ../shared/data carries
the ``real_data`` marker (and skips without the data); the package's own modules are imported,
never ``importorskip``-ed (an ImportError must fail, not skip)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import needs_real_data

TESTS = Path(__file__).resolve().parent
REAL_DATA_NAMES = {"REAL_MINI", "REAL_EXTERNAL", "SHARED_DATA"}


def _test_functions():
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield path.name, node


def _decorator_names(node) -> set[str]:
    return {ast.unparse(d) for d in node.decorator_list}


def test_every_real_data_test_is_marked_and_skips_without_the_data():
    unmarked = []
    for file_name, node in _test_functions():
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if names & REAL_DATA_NAMES and not _decorator_names(node) & {"needs_real_data", "pytest.mark.real_data"}:
            unmarked.append(f"{file_name}::{node.name}")
    assert unmarked == []

    @needs_real_data
    def probe():
        pass

    marks = {mark.name: mark for mark in probe.pytestmark}
    assert set(marks) == {"real_data", "skipif"}
    assert "real echo data not present" in marks["skipif"].kwargs["reason"]


def test_package_modules_are_imported_not_importorskipped():
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("importorskip") and node.args
                    and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("unilvseg")):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("name", ["test_labelfree_pipeline.py", "test_task_values.py", "test_evaluation.py"])
def test_no_assertion_hides_behind_an_if(name):
    """``if x is not None: assert ...`` passes whenever the condition is false: a test says what
    its data is instead of guarding its assertions."""
    guarded = []
    for file_name, test in _test_functions():
        if file_name != name:
            continue
        for node in ast.walk(test):
            if isinstance(node, ast.If) and any(isinstance(child, ast.Assert) for child in node.body):
                guarded.append(f"{test.name}:{node.lineno}")
    assert guarded == []
