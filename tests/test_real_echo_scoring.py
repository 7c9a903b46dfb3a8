"""Scoring helpers of benchmarks.real_echo on hand-made files (no training, no real data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import write_echonet


def test_ef_agreement_covers_every_predicted_video_with_a_reference_ef(tmp_path):
    from benchmarks.real_echo import ef_agreement_table

    videos = {name: np.zeros((4, 16, 16), np.uint8) for name in ("v1", "v2", "v3", "v4")}
    filelist = [{"FileName": "v1", "EF": 60.0}, {"FileName": "v2", "EF": 40.0}, {"FileName": "v3", "EF": 55.0},
                {"FileName": "v4", "EF": float("nan")}]
    folder = write_echonet(tmp_path, videos, filelist=filelist)
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    pd.DataFrame({"FileName": ["v1", "v2", "v3", "v4"], "EF": [50.0, 46.0, float("nan"), 30.0]}).to_csv(predictions / "volumes.csv", index=False)

    table, summary = ef_agreement_table(predictions, folder, samples=500, seed=0)
    assert list(table["FileName"]) == ["v1", "v2", "v3", "v4"]
    assert summary["n_videos"] == 2 and summary["n_missing"] == 2  # v3: no predicted EF, v4: no reference EF
    errors = np.array([50.0 - 60.0, 46.0 - 40.0])
    assert summary["mae"] == pytest.approx(np.abs(errors).mean())
    assert summary["bias"] == pytest.approx(errors.mean())
    assert summary["rmse"] == pytest.approx(np.sqrt((errors**2).mean()))
    reference = np.array([60.0, 40.0])
    assert summary["r2"] == pytest.approx(1 - (errors**2).sum() / ((reference - reference.mean()) ** 2).sum())
    assert summary["mae_low"] <= summary["mae"] <= summary["mae_high"]
    assert {summary["mae_low"], summary["mae_high"]} <= {6.0, 8.0, 10.0}  # means of resampled |errors| {10, 6}


def test_pooled_interval_is_the_ratio_of_sums_over_every_table(tmp_path):
    from benchmarks.real_echo import pooled_interval

    def table(folder, split, rows):
        folder.mkdir()
        columns = ["IntersectionED", "PredAreaED", "TrueAreaED", "IntersectionES", "PredAreaES", "TrueAreaES"]
        pd.DataFrame(rows, columns=columns).to_csv(folder / f"{split}_dice.csv", index=False)

    table(tmp_path / "test", "test", [[80, 100, 100, 30, 40, 50], [90, 100, 100, 40, 50, 50]])
    table(tmp_path / "val", "val", [[10, 50, 50, 5, 20, 20]])
    result = pooled_interval([tmp_path / "test", tmp_path / "val"], ["test", "val"], samples=300, seed=0)
    assert result["n_videos"] == 3
    assert result["ed"]["dice"] == pytest.approx(2 * 180 / 500)
    assert result["es"]["dice"] == pytest.approx(2 * 75 / 230)
    assert result["overall"]["dice"] == pytest.approx(2 * 255 / 730)
    for key in ("overall", "ed", "es"):
        assert result[key]["low"] <= result[key]["dice"] <= result[key]["high"]
    assert result["ed"]["low"] < result["ed"]["high"]  # the val video's low Dice makes resamples differ
