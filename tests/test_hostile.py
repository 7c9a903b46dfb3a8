"""Every hostile input of ``tests/hostile_cases.py`` through the real command, in-process.

Shared inputs (one tiny phantom, one tiny weak run, one tiny SSL run, one prediction folder)
are built once per module; each case damages its own copy in a private folder.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_cases import CASES, README, TRAIN_FAST, Case, Env, markdown, readme_section  # noqa: E402


def run_command(command: str, argv: list[str]) -> int:
    """The command's exit status; argument-parser exits count as statuses too."""
    from unilvseg.cli.evaluate import main as evaluate_main
    from unilvseg.cli.predict import main as predict_main
    from unilvseg.cli.train import main_ssl, main_weak

    entry = {"train_weak": main_weak, "train_ssl": main_ssl, "predict": predict_main, "evaluate": evaluate_main}[command]
    try:
        return entry([str(a) for a in argv])
    except SystemExit as exit_info:
        return exit_info.code if isinstance(exit_info.code, int) else 1


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def unilvseg_log():
    """Messages of the ``unilvseg`` logger."""
    logger = logging.getLogger("unilvseg")
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def shared(tiny_phantom, tmp_path_factory) -> dict:
    """A finished weak run, SSL run and prediction folder on the tiny phantom (built once)."""
    root = tmp_path_factory.mktemp("hostile-shared")
    weak_run, ssl_run, predictions = root / "weak_run", root / "ssl_run", root / "predictions"
    assert run_command("train_weak", ["--data_path", tiny_phantom, *TRAIN_FAST, "--run_dir", weak_run]) == 0
    assert run_command("train_ssl", ["--data_path", tiny_phantom, *TRAIN_FAST, "--run_dir", ssl_run, "--mask_ratio", "0.5"]) == 0
    assert run_command(
        "predict",
        ["--checkpoint", weak_run / "checkpoints" / "last.ckpt", "--data_path", tiny_phantom, "--split", "all",
         "--save_dir", predictions, "--device", "cpu", "--size", "32", "32"],
    ) == 0
    return {"phantom": tiny_phantom, "weak_run": weak_run, "ssl_run": ssl_run, "predictions": predictions}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_there_are_enough_cases_in_every_area():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 30
    areas = {case.area for case in CASES}
    assert {"FileList.csv", "VolumeTracings.csv", "videos", "checkpoints", "prediction folder", "flags"} <= areas
    assert {case.outcome for case in CASES} == {"error", "skip", "works"}
    assert all(case.expect for case in CASES if case.outcome == "error")


def test_readme_table_lists_every_case_and_matches_the_tests():
    """The table now lives in docs/reliability.md (``README`` is the old name of that path)."""
    from hostile_cases import DOCS

    table = markdown()
    for case in CASES:
        assert f"`{case.id}`" in table
    assert DOCS == README and DOCS.name == "reliability.md"
    assert readme_section(DOCS.read_text()) == table, "regenerate: python -m tests.hostile_cases --docs"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(case: Case, shared, tmp_path, capsys, unilvseg_log):
    env = Env(work=tmp_path / case.id, **shared)
    env.work.mkdir()
    shared_before = {name: snapshot(path) for name, path in shared.items()}
    argv = case.build(env)
    out_before = env.out.read_bytes() if env.out.is_file() else None
    capsys.readouterr()

    status = run_command(case.command, argv)

    captured = capsys.readouterr()
    log_text = "\n".join(unilvseg_log)
    detail = f"exit {status}\n--- stderr ---\n{captured.err[-3000:]}\n--- log ---\n{log_text[-3000:]}"
    assert "Traceback" not in captured.err, detail
    if case.outcome == "error":
        assert status == 2, detail
        errors = [line for line in captured.err.splitlines() if line.startswith("error:") or ": error:" in line]
        assert errors, detail
        assert any(case.expect in line for line in errors), f"expected {case.expect!r} in an error line\n{detail}"
        if out_before is not None:  # the output path was a file: left as it was
            assert env.out.read_bytes() == out_before
        else:
            assert not env.out.exists(), f"{env.out} left behind: {sorted(snapshot(env.out)) if env.out.is_dir() else 'file'}"
    else:
        assert status == 0, detail
        if case.expect:
            assert case.expect in log_text, f"expected {case.expect!r} in the log\n{detail}"
        if case.command.startswith("train"):
            assert (env.out / "checkpoints" / "last.ckpt").is_file() and (env.out / "metrics.csv").is_file()
        if case.check is not None:
            case.check(env)
    leftovers = [p for p in tmp_path.rglob(".tmp-*")]
    assert not leftovers, leftovers
    # Shared inputs are never modified by a case.
    assert {name: snapshot(path) for name, path in shared.items()} == shared_before
