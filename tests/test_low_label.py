"""benchmarks/low_label.py helpers: n resolution, resumable stages, the report table and plot.

The benchmark itself trains 14+ networks; its end-to-end run is reported in
benchmarks/results/, not repeated here.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import cv2
import pandas as pd
import pytest

from unilvseg.errors import UserError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "low_label.py"


@pytest.fixture(scope="module")
def low_label():
    assert SCRIPT.is_file()
    return importlib.import_module("benchmarks.low_label")


def test_n_values_resolve_against_the_training_split(low_label):
    assert low_label.resolve_counts(["8", "2", "all", "4"], 30) == [(2, "2"), (4, "4"), (8, "8"), (30, "all")]
    # On a two-video training split, 2 and all are the same run.
    assert low_label.resolve_counts(["2", "all"], 2) == [(2, "2 (all)")]
    with pytest.raises(UserError, match="--n 9"):
        low_label.resolve_counts(["9"], 4)
    with pytest.raises(UserError, match="--n 'many'"):
        low_label.resolve_counts(["many"], 4)


def test_stages_are_skipped_only_when_finished_with_the_same_settings(low_label, tmp_path):
    calls = []

    def action():
        calls.append(1)
        (tmp_path / "stage").mkdir(exist_ok=True)
        (tmp_path / "stage" / "out.txt").write_text("done")
        return 0

    folder = tmp_path / "stage"
    target, _ = low_label.run_stage(folder, {"flags": ["a"]}, action, "out.txt")
    assert target.read_text() == "done" and len(calls) == 1
    assert json.loads((folder / "stage.json").read_text())["settings"] == {"flags": ["a"]}
    low_label.run_stage(folder, {"flags": ["a"]}, action, "out.txt")
    assert len(calls) == 1  # resumed, not rerun
    low_label.run_stage(folder, {"flags": ["b"]}, action, "out.txt")
    assert len(calls) == 2  # other settings: run again
    with pytest.raises(UserError, match="exit status 2"):
        low_label.run_stage(tmp_path / "failing", {}, lambda: 2, "out.txt")
    with pytest.raises(UserError, match="missing"):
        low_label.run_stage(tmp_path / "empty", {}, lambda: 0, "out.txt")


def result_rows(seeds=(0,)) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for n, label in ((2, "2"), (30, "all")):
            for k, method in enumerate(("scratch", "temporal_masking", "anatomical_position")):
                dice = 0.5 + 0.1 * k + 0.01 * n + 0.01 * seed
                row = {"method": method, "n": n, "n_label": label, "seed": seed, "weak_seconds": 10.0, "test_videos": 5}
                for key in ("overall", "ed", "es"):
                    row.update({f"dice_{key}": dice, f"dice_{key}_low": dice - 0.05, f"dice_{key}_high": dice + 0.04})
                rows.append(row)
    return pd.DataFrame(rows)


def test_report_table_shows_intervals_or_seed_spread(low_label):
    one = low_label.markdown_table(result_rows(), [0])
    lines = [line for line in one.splitlines() if line.startswith("| ") and "method" not in line]
    assert len(lines) == 6
    assert "| 2 | from scratch | 0.520 (0.470–0.560) |" in one
    assert "| all | anatomical-position SSL (4x4 grid) | 1.000 (0.950–1.040) |" in one
    two = low_label.markdown_table(result_rows(seeds=(0, 1)), [0, 1])
    assert "0.525 ± 0.007" in two and "Mean ± sd over seeds [0, 1]" in two


def test_dice_plot_is_written(low_label, tmp_path):
    path = low_label.plot(result_rows(), tmp_path / "plot.png", "test")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 200
    assert not list(tmp_path.glob(".tmp-*"))
