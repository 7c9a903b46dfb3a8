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
