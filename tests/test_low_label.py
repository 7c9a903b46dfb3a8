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


def test_plan_runs_each_baseline_before_what_is_compared_with_it(low_label):
    args = low_label.build_parser().parse_args(["--n", "2", "8", "--variants", "probe_anatomical_position", "anatomical_position_5x"])
    runs = low_label.plan(args, low_label.resolve_counts(args.n, 30), low_label.resolve_counts(["4"], 30))
    assert [(n, m) for n, _, m in runs if n == 2] == [(2, "scratch"), (2, "temporal_masking"), (2, "anatomical_position")]
    at_four = [m for n, _, m in runs if n == 4]
    assert set(at_four) == {"probe_scratch", "probe_anatomical_position", "scratch_5x", "anatomical_position_5x"}
    for method in at_four:
        assert at_four.index(low_label.BASELINE[method]) <= at_four.index(method)


def test_paired_difference_is_the_mean_over_seeds_with_an_interval_over_seeds_and_videos(low_label):
    def counts(rows):  # rows: (intersection, predicted, true) for ED and ES of each video
        columns = ["IntersectionED", "PredAreaED", "TrueAreaED", "IntersectionES", "PredAreaES", "TrueAreaES"]
        return pd.DataFrame(rows, columns=columns, index=pd.Index(["a", "b"], name="FileName"))

    ours = [counts([[8, 10, 10, 4, 5, 5], [9, 10, 10, 3, 5, 5]]), counts([[10, 10, 10, 5, 5, 5], [7, 10, 10, 4, 5, 5]])]
    theirs = [counts([[5, 10, 10, 2, 5, 5], [5, 10, 10, 2, 5, 5]]), counts([[5, 10, 10, 2, 5, 5], [5, 10, 10, 2, 5, 5]])]
    # By hand, per seed: ours 2*(17+7)/60 = 48/60 and 2*(17+9)/60 = 52/60; theirs 2*14/60 = 28/60 both.
    result = low_label.paired_over_seeds(ours, [theirs[1], theirs[0]], samples=200, seed=0)
    assert result["overall"]["difference"] == pytest.approx((48 / 60 + 52 / 60) / 2 - 28 / 60)
    assert result["ed"]["difference"] == pytest.approx((2 * 17 / 40 + 2 * 17 / 40) / 2 - 2 * 10 / 40)
    assert result["ours"]["overall"]["estimate"] == pytest.approx(50 / 60)
    assert result["overall"]["low"] <= 22 / 60 <= result["overall"]["high"]
    assert low_label.pooled_dice(sum(ours))["es"] == pytest.approx(2 * 16 / 40)
    with pytest.raises(UserError, match="same videos"):
        low_label.paired_over_seeds(ours, [counts([[1, 1, 1, 1, 1, 1]] * 2).rename(index={"b": "c"})] * 2, samples=10, seed=0)


def test_plot_with_paired_differences_is_wider(low_label, tmp_path):
    paired = pd.DataFrame([{
        "n": 2, "n_label": "2", "method": "anatomical_position", "baseline": "scratch", "seeds": 1,
        "diff_overall": 0.05, "diff_overall_low": -0.01, "diff_overall_high": 0.1,
    }])
    alone = cv2.imread(str(low_label.plot(result_rows(), tmp_path / "a.png", "test")))
    both = cv2.imread(str(low_label.plot(result_rows(), tmp_path / "b.png", "test", paired, ["scratch", "anatomical_position"])))
    assert both.shape[1] > 1.8 * alone.shape[1]


@pytest.mark.slow
def test_benchmark_runs_end_to_end_and_pairs_every_method_with_its_baseline(low_label, tmp_path, monkeypatch):
    monkeypatch.setenv("UNILVSEG_CACHE", str(tmp_path / "cache"))
    code = low_label.main([
        "--phantom_videos", "12", "--seeds", "0", "--n", "2", "--methods", "scratch", "anatomical_position",
        "--variants", "probe_anatomical_position", "--variant_n", "2", "--budget_steps", "2", "--ssl_steps", "2",
        "--samples", "50", "--size", "32", "32", "--frames", "16",
        "--work_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "results"),
    ])
    assert code == 0
    runs = pd.read_csv(tmp_path / "results" / "low_label-phantom.csv")
    assert set(runs["method"]) == {"scratch", "anatomical_position", "probe_scratch", "probe_anatomical_position"}
    paired = pd.read_csv(tmp_path / "results" / "low_label-phantom-paired.csv").set_index("method")
    assert paired.loc["anatomical_position", "baseline"] == "scratch"
    assert paired.loc["probe_anatomical_position", "baseline"] == "probe_scratch"
    # One seed: the pooled difference is that seed's difference, which evaluate_bootstrap.py --compare also reports.
    per_seed = runs.set_index("method").loc["anatomical_position"]
    assert paired.loc["anatomical_position", "diff_overall"] == pytest.approx(per_seed["diff_overall"], abs=1e-9)
    assert per_seed["dice_overall"] - runs.set_index("method").loc["scratch", "dice_overall"] == pytest.approx(per_seed["diff_overall"], abs=1e-9)
    pretext = pd.read_csv(tmp_path / "results" / "low_label-phantom-pretext.csv")
    assert pretext["classes"].tolist() == [17]
    assert 0 < pretext["fan_only_accuracy"].iloc[0] <= 1
    assert "## Paired differences" in (tmp_path / "results" / "low_label-phantom.md").read_text()
