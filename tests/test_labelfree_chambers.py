"""The four-chamber benchmark end to end on a tiny phantom (benchmarks.labelfree_chambers --smoke)."""

from __future__ import annotations

import pandas as pd
import pytest

from unilvseg.data.structures import STRUCTURES


@pytest.mark.slow
def test_smoke_writes_structure_measurement_and_flag_tables(tmp_path):
    from benchmarks.labelfree_chambers import main

    results = tmp_path / "results"
    assert main(["--smoke", "--run_dir", str(tmp_path / "run"), "--results_dir", str(results)]) == 0
    text = (results / "labelfree_chambers-phantom-smoke.md").read_text()
    for name in STRUCTURES:
        assert f"| {name} |" in text
    videos = pd.read_csv(results / "labelfree_chambers-phantom-smoke-videos.csv")
    assert len(videos) >= 1 and {"true_lv_ef", "pred_lv_ef", "true_flag_rv_systolic_function_reduced"} <= set(videos.columns)
    flags = pd.read_csv(results / "labelfree_chambers-phantom-smoke-flags.csv")
    # Without a body-surface area the index-based flags stay undecided, never silently "normal".
    assert flags.set_index("flag").loc["la_enlarged", "n"] == 0
    measures = pd.read_csv(results / "labelfree_chambers-phantom-smoke-measurements.csv")
    assert {"lv_ef", "la_volume_max", "rv_fac", "lv_mass"} <= set(measures["measurement"])
    # A second run reuses every stage (the checkpoint is not written again).
    final = tmp_path / "run" / "labelfree" / "checkpoints" / "final.ckpt"
    stamp = final.stat().st_mtime_ns
    assert main(["--smoke", "--run_dir", str(tmp_path / "run"), "--results_dir", str(results)]) == 0
    assert final.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_real_echo_mode_scores_ef_flag_pairing_and_plausibility_without_truth_label_maps(tiny_phantom, tmp_path):
    """--data_path mode (real echo: no truth label maps): EF against FileList, the EF < 50 flag
    beside a constant "normal" answer, the pairing with the LV-only scheme's EF, plausibility of
    every video, overlays in the run folder only."""
    import numpy as np

    from benchmarks.labelfree_chambers import main
    from unilvseg.evaluation.chambers import PLAUSIBILITY_FIELDS

    filelist = pd.read_csv(tiny_phantom / "FileList.csv")
    lv_only = tmp_path / "lv_only_ef.csv"
    # The LV-only side: seed 0 of scheme a_labelfree, one video off by 10 EF points.
    pd.DataFrame({"scheme": "a_labelfree", "seed": 0, "FileName": filelist["FileName"], "Split": filelist["Split"],
                  "EF_reference": filelist["EF"], "EF_predicted": filelist["EF"] + 10.0}).to_csv(lv_only, index=False)
    results, run = tmp_path / "results", tmp_path / "run"
    argv = ["--smoke", "--data_path", str(tiny_phantom), "--run_dir", str(run), "--results_dir", str(results),
            "--lv_only_ef", str(lv_only), "--lv_only_dense", str(tmp_path / "absent.csv"), "--overlays", "2"]
    assert main(argv) == 0
    stem = f"labelfree_chambers-{tiny_phantom.name}-smoke"
    text = (results / f"{stem}.md").read_text()
    videos = pd.read_csv(results / f"{stem}-videos.csv")
    assert len(videos) == len(filelist) and set(PLAUSIBILITY_FIELDS) <= set(videos.columns)
    assert videos["EF_lv_only"].notna().all()
    # The paired difference is the mean of |EF - ref| minus 10, whatever the network learned.
    expected = float(((videos["EF_predicted"] - videos["EF_reference"]).abs() - 10.0).mean())
    assert f"paired difference of the absolute errors {expected:+.2f}" in text
    assert 'constant "normal"' in text and "| predicted EF < 50 |" in text
    summary = pd.read_csv(results / f"{stem}-plausibility.csv")
    assert list(summary["field"]) == list(PLAUSIBILITY_FIELDS)
    assert np.isfinite(summary.set_index("field").loc["lv_present", "median"])
    assert len(list((run / "overlays").glob("*.gif"))) == 2 and not list(results.glob("*.gif"))
    assert main(["--data_path", str(tmp_path / "nowhere")]) == 2
