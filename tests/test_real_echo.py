"""Smoke run of the real-echo benchmark (benchmarks.real_echo --smoke) on ../shared/data/echonet-real."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

REAL = SHARED_DATA / "echonet-real"

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.slow,
    pytest.mark.skipif(not REAL.is_dir(), reason=f"real echo data not present at {REAL}"),
]


def test_smoke_trains_scores_and_reuses_every_scheme(tmp_path):
    from benchmarks.real_echo import LABELS, SCHEMES, main

    run_dir, results = tmp_path / "run", tmp_path / "results"
    argv = ["--smoke", "--data_path", str(REAL), "--run_dir", str(run_dir), "--results_dir", str(results)]
    assert main(argv) == 0

    for name in ("real_echo.md", "real_echo.csv", "real_echo_ef.csv", "real_echo_labelfree_stages.csv",
                 "real_echo_ef_bland_altman.png", "real_echo_ef_scatter.png"):
        assert (results / name).stat().st_size > 0, name
    table = pd.read_csv(results / "real_echo.csv")
    assert list(table["scheme"]) == list(SCHEMES)
    for scheme in SCHEMES:
        assert (run_dir / "checkpoints" / f"{scheme}.ckpt").is_file()
    assert (table["test_videos"] == 3).all() and (table["valtest_videos"] == 4).all()
    for prefix in ("test_dice", "valtest_dice"):
        for key in ("overall", "ed", "es"):
            point, low, high = (table[f"{prefix}_{key}{end}"].to_numpy() for end in ("", "_low", "_high"))
            assert np.isfinite(point).all() and ((0 <= point) & (point <= 1)).all(), (prefix, key)
            assert (low <= point + 1e-9).all() and (point <= high + 1e-9).all(), (prefix, key)

    # VAL+TEST Dice is the ratio of sums over the two evaluate_bootstrap.py outputs' pixel counts.
    for _, row in table.iterrows():
        folder = run_dir / "scores" / row["scheme"] / "evaluation"
        counts = pd.concat([pd.read_csv(folder / "test" / "test_dice.csv"), pd.read_csv(folder / "val" / "val_dice.csv")])
        inter = counts[["IntersectionED", "IntersectionES"]].to_numpy().sum()
        total = counts[["PredAreaED", "PredAreaES", "TrueAreaED", "TrueAreaES"]].to_numpy().sum()
        assert row["valtest_dice_overall"] == pytest.approx(2 * inter / total, abs=1e-4)

    # EF covers every video of the (smoke) folder with a reference EF, for every scheme.
    filelist = pd.read_csv(run_dir / "data" / "FileList.csv", dtype={"FileName": str})
    with_ef = set(filelist.loc[np.isfinite(filelist["EF"]), "FileName"].str.replace(".avi", "", regex=False))
    ef = pd.read_csv(results / "real_echo_ef.csv", dtype={"FileName": str})
    for scheme, part in ef.groupby("scheme"):
        assert set(part["FileName"]) == with_ef, scheme
        usable = part.dropna(subset=["EF_reference", "EF_predicted"])
        row = table.set_index("scheme").loc[scheme]
        assert row["ef_n_videos"] == len(usable)
        assert row["ef_mae"] == pytest.approx(np.abs(usable["EF_predicted"] - usable["EF_reference"]).mean(), abs=2e-3)
        assert row["ef_mae_low"] <= row["ef_mae"] + 1e-9 <= row["ef_mae_high"] + 2e-9
    text = (results / "real_echo.md").read_text()
    assert all(LABELS[scheme] in text for scheme in SCHEMES)
    assert "## Label-free stages on real echo" in text and "stage1_labels" in text

    # A second invocation reuses every finished stage: no checkpoint is written again.
    stamps = {path: path.stat().st_mtime_ns for path in run_dir.glob("*/checkpoints/*.ckpt")}
    assert len(stamps) >= 6
    assert main(argv) == 0
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
