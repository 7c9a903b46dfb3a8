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
    # A4C only (the default): no views table, and the phantom has no View column.
    assert not list(results.glob("*views*"))
    assert "View" not in pd.read_csv(tmp_path / "run" / "data" / "FileList.csv", nrows=0).columns


@pytest.mark.slow
def test_smoke_views_writes_each_views_dice_and_biplane_volumes_of_every_test_heart(tmp_path):
    """--views a2c a4c sax: a Dice row for each view's structures, and one biplane row per TEST
    heart whose EF is biplane_volumes of the two stored predicted mask videos (read back here)."""
    import numpy as np

    from benchmarks.labelfree_chambers import main
    from unilvseg.evaluation.volumes import biplane_volumes

    results, run = tmp_path / "results", tmp_path / "run"
    argv = ["--smoke", "--views", "a2c", "a4c", "sax", "--run_dir", str(run), "--results_dir", str(results)]
    assert main(argv) == 0
    stem = "labelfree_chambers-phantom-smoke"
    text = (results / f"{stem}-views.md").read_text()
    expected = {"A4C": list(STRUCTURES), "A2C": ["lv", "myo", "la"], "SAX": ["lv", "myo", "rv"]}
    for view, structures in expected.items():
        for name in structures:
            assert f"| {view} | {name} |" in text
    dice = pd.read_csv(results / f"{stem}-views-dice.csv")
    assert sorted(zip(dice["view"], dice["structure"])) == sorted((v.lower(), s) for v, names in expected.items() for s in names)
    # SAX has no tracing: every frame only.
    sax = dice[dice["view"] == "sax"]
    assert sax["ed_dice"].isna().all() and sax["all_frames_dice"].notna().all()
    assert "≥ 0.90" in text and "≥ 0.85" in text and "≥ 0.75" in text and "≥ 0.80" in text
    # The A4C tables of the default run are written too.
    assert (results / f"{stem}.md").is_file() and (results / f"{stem}-flags.csv").is_file()

    filelist = pd.read_csv(run / "data" / "FileList.csv", dtype={"FileName": str, "Heart": str})
    test_hearts = sorted(filelist.loc[(filelist["Split"] == "TEST") & (filelist["View"] == "A4C"), "Heart"])
    assert test_hearts
    hearts = pd.read_csv(results / f"{stem}-views-biplane.csv", dtype={"Heart": str, "FileName_A4C": str, "FileName_A2C": str})
    assert sorted(hearts["Heart"]) == test_hearts
    section = text.split("## Biplane")[1]
    truth = filelist.set_index("FileName")
    for row in hearts.itertuples():
        with np.load(run / "predictions" / "masks" / f"{row.FileName_A4C}.npz") as a4c, \
                np.load(run / "a2c" / "predictions" / "masks" / f"{row.FileName_A2C}.npz") as a2c:
            # predict.py's defaults (beats rule, 1.4 mm per pixel) and FileList's FPS of each video.
            result = biplane_volumes(a4c["masks"], a2c["masks"], rule="beats", fps_a4c=truth.loc[row.FileName_A4C, "FPS"],
                                     fps_a2c=truth.loc[row.FileName_A2C, "FPS"], mm_per_pixel=1.4)
        np.testing.assert_allclose([row.biplane_EF, row.biplane_EDV, row.biplane_ESV], [result["ef"], result["edv"], result["esv"]],
                                   atol=1e-3)
        true_ef = truth.loc[row.Heart, "EF"]
        assert row.true_EF == pytest.approx(true_ef, abs=1e-4) and row.true_EDV == pytest.approx(truth.loc[row.Heart, "EDV"], abs=1e-4)
        # The heart's row of the table: EF truth, biplane EF (error) as printed, 2 decimals.
        cells = [cell.strip() for cell in section.split(f"\n| {row.Heart} |")[1].split("\n")[0].split("|")]
        assert cells[0] == result["method"]
        printed_ef, printed_error = cells[2].rstrip(")").split(" (")
        np.testing.assert_allclose([float(cells[1]), float(printed_ef), float(printed_error)],
                                   [true_ef, result["ef"], result["ef"] - true_ef], atol=0.0051)
    assert section.count("\n| 0X") == len(test_hearts)
    assert "paired" in section and "biplane EF within 3 points" in section
    # Every stage is reused by the same command (no view's checkpoint is written again).
    finals = [run / "labelfree" / "checkpoints" / "final.ckpt", run / "a2c" / "labelfree" / "checkpoints" / "final.ckpt",
              run / "sax" / "labelfree" / "checkpoints" / "final.ckpt"]
    stamps = [path.stat().st_mtime_ns for path in finals]
    assert main(argv) == 0
    assert [path.stat().st_mtime_ns for path in finals] == stamps


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
