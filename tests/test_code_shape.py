"""Module layout promises of docs/design.md that a refactor could silently break."""

import subprocess
import sys


def _modules_loaded_by(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(m for m in sys.modules if m.startswith('unilvseg'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_labelfree_cli_does_not_import_train_cli():
    # cli.train dispatches to cli.labelfree (train_weak.py --labels pseudo); the reverse would be a cycle.
    assert "unilvseg.cli.train" not in _modules_loaded_by("unilvseg.cli.labelfree")


def test_prediction_pipeline_lives_in_the_library():
    from unilvseg.evaluation import predict

    assert callable(predict.run_prediction) and callable(predict.check_options)
    # The library must not need the command line to run.
    assert not any(m.startswith("unilvseg.cli") for m in _modules_loaded_by("unilvseg.evaluation.predict"))


def test_no_two_modules_import_each_other():
    """Two modules that import each other (even lazily, inside a function) are one idea split
    wrongly (docs/design.md): the shared piece goes into a third module both import. A package
    and its own submodules are exempt (an ``__init__`` may re-export them)."""
    import ast
    from pathlib import Path

    import unilvseg

    root = Path(unilvseg.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unilvseg"):
                found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("unilvseg")}
        imports[name] = found
    mutual = sorted(
        (a, b) for a in imports for b in imports[a]
        if a < b and b in imports and a in imports[b] and not (b.startswith(a + ".") or a.startswith(b + "."))
    )
    assert not mutual, f"modules importing each other: {mutual}"
