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
