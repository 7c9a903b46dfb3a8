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


def test_smoke_with_seeds_reports_over_seeds_paired_and_dense(tmp_path):
    """--seeds: one run folder per seed; mean ± sd over seeds, intervals over seeds and videos,
    paired differences to b' and every-frame figures for the scheme that never saw the masks."""
    from benchmarks.real_echo import main

    run_dir, results = tmp_path / "run", tmp_path / "results"
    argv = ["--smoke", "--data_path", str(REAL), "--run_dir", str(run_dir), "--results_dir", str(results),
            "--schemes", "a_labelfree", "b_scratch", "d_tracings_pseudo", "--seeds", "0", "1"]
    assert main(argv) == 0
    runs = pd.read_csv(results / "real_echo.csv")
    assert sorted(zip(runs["scheme"], runs["seed"])) == sorted((s, k) for s in ("a_labelfree", "b_scratch", "d_tracings_pseudo") for k in (0, 1))
    assert (run_dir / "seed1" / "checkpoints" / "b_scratch.ckpt").is_file()
    seeds = pd.read_csv(results / "real_echo_seeds.csv").set_index("scheme")
    for scheme, group in runs.groupby("scheme"):
        row = seeds.loc[scheme]
        assert row["valtest_dice_overall_mean"] == pytest.approx(group["valtest_dice_overall"].mean(), abs=1e-4)
        # The seeds-and-videos estimate is the mean over seeds of each seed's pooled Dice.
        assert row["valtest_dice_overall_seeds_videos"] == pytest.approx(group["valtest_dice_overall"].mean(), abs=1e-4)
        assert row["valtest_dice_overall_low"] <= row["valtest_dice_overall_seeds_videos"] <= row["valtest_dice_overall_high"]
        assert row["ef_mae_low"] <= row["ef_mae_seeds_videos"] <= row["ef_mae_high"]
    paired = pd.read_csv(results / "real_echo_paired.csv").set_index("scheme")
    assert set(paired.index) == {"a_labelfree", "d_tracings_pseudo"}
    by = runs.pivot_table(index="seed", columns="scheme", values="valtest_dice_overall")
    assert paired.loc["a_labelfree", "diff_overall"] == pytest.approx((by["a_labelfree"] - by["b_scratch"]).mean(), abs=1e-4)
    dense = pd.read_csv(results / "real_echo_dense.csv")
    assert set(dense["scheme"]) == {"a_labelfree"} and dense["FileName"].nunique() == 3 and set(dense["seed"]) == {0, 1}
    assert ((dense["dice"] >= 0) & (dense["dice"] <= 1)).all()
    text = (results / "real_echo.md").read_text()
    assert "## Over seeds (2 seeds" in text and "Paired with b'" in text and "## Every frame against the dense references" in text
