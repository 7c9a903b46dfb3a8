"""The contraction diagnosis of benchmarks/real_echo_diagnosis.py on curves with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks import real_echo_diagnosis as diagnosis


def _curve(frames=200, fps=50.0, period_s=0.8, ed=1000.0, ratio=0.6):
    t = np.arange(frames) / fps
    phase = (t / period_s) % 1.0
    contraction = 0.5 - 0.5 * np.cos(2 * np.pi * phase)  # 0 at ED, 1 at mid-beat (ES)
    return ed * (1 - (1 - ratio) * contraction)


def test_expected_area_ratio_is_the_volume_ratio_to_the_two_thirds():
    assert diagnosis.expected_area_ratio(0.0) == 1.0
    assert diagnosis.expected_area_ratio(60.0) == pytest.approx(0.4 ** (2 / 3))
    # A shape-preserving ventricle: volume ~ area^1.5, so the area ratio of EF 48.8 % is 0.64.
    assert diagnosis.expected_area_ratio(100 * (1 - 0.64**1.5)) == pytest.approx(0.64)


def test_curve_statistics_find_the_ratio_and_the_period():
    stats = diagnosis.curve_statistics(_curve(ratio=0.6), fps=50.0)
    assert stats["beats"] >= 3
    assert stats["es_ed_ratio"] == pytest.approx(0.6, abs=0.01)
    assert stats["period_s"] == pytest.approx(0.8, abs=0.04)


def test_a_flattened_curve_is_measured_against_its_reference():
    reference = _curve(ratio=0.6)
    # A label twice as smooth in amplitude: ED 10 % too large, ES 30 % too large, same timing.
    flat = 1.1 * reference.max() - (reference.max() - reference) * (1.1 * 1000 - 0.78 * 1000) / (1000 - 600)
    result = diagnosis.against_reference(flat, reference, fps=50.0)
    assert result["ed_area_vs_ref"] == pytest.approx(1.1, abs=0.01)
    assert result["es_area_vs_ref"] == pytest.approx(1.3, abs=0.01)
    assert result["es_ed_ratio"] == pytest.approx(780 / 1100, abs=0.01) and result["es_ed_ratio_ref"] == pytest.approx(0.6, abs=0.01)
    assert result["frame_change_vs_ref"] == pytest.approx(320 / 400, abs=0.01)
    assert result["curve_r"] == pytest.approx(1.0)
    same = diagnosis.against_reference(reference, reference, fps=50.0)
    assert (same["ed_area_vs_ref"], same["es_area_vs_ref"], same["frame_change_vs_ref"]) == pytest.approx((1.0, 1.0, 1.0))


def test_qc_pass_rate_by_phase_splits_large_and_small_frames():
    areas = np.array([10, 20, 30, 40, 50, 60], float)
    passed = np.array([False, False, True, True, True, True])
    big, small = diagnosis.qc_by_phase(areas, passed)
    assert big == 1.0 and small == 0.0


@pytest.mark.slow
def test_ablation_measures_each_variant_and_the_best_checkpoint_beside_the_last(tiny_phantom, tmp_path):
    """benchmarks.real_echo_ablation end to end on a tiny phantom: one row per variant, an
    `@best` row where asked, and the result file names its command and commit."""
    from benchmarks.real_echo_ablation import main

    results = tmp_path / "results"
    argv = ["--data_path", str(tiny_phantom), "--variants", "published_pools", "qc_length", "--epochs", "2",
            "--limit_train_batches", "1", "--best_too", "published_pools", "--work_dir", str(tmp_path / "runs"),
            "--results_dir", str(results), "--tag", "t"]
    assert main(argv) == 0
    summary = pd.read_csv(results / "real_echo_ablation-t.csv")
    stages = list(summary["stage"])
    assert {"stage1", "qc", "published_pools", "qc_length"} <= set(stages)
    # The default hands on the last checkpoint; the best one is measured beside it where asked.
    best = tmp_path / "runs" / "published_pools" / "stages" / "early" / "checkpoints" / "best.ckpt"
    assert best.is_file() and "published_pools@best" in stages
    assert "qc_length@best" not in stages
    text = (results / "real_echo_ablation-t.md").read_text()
    assert "at commit " in text and "| published_pools | defaults |" in text
