"""predict.py's biplane.csv (issue 24): biplane LV volumes of every heart whose A4C and A2C videos
were both predicted, from a three-view phantom (3 hearts, 60-90 frames: seed 0 gives two hearts
whose beats the ``beats`` rule finds and one it falls back to ``extremes`` for).

Two sources of masks:

* the phantom's reference masks written as predictions (``write_video_outputs``, as predict.py
  writes a finished video). These test the arithmetic without a network. The A2C masks start
  ``SHIFT`` frames later than the A4C's, so that frame t of one view is not frame t of the other,
  as in two real recordings. Pairing by frame index instead of by phase is then far off the 3D truth;
* a tiny random checkpoint run through predict.py. This tests the wiring: one process, two shards,
  a resumed run, a video that fails, and a folder without View/Heart columns.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unilvseg.data.index import load_index
from unilvseg.data.phantom import generate_phantom
from unilvseg.evaluation.biplane import BIPLANE_COLUMNS, write_biplane_table
from unilvseg.evaluation.predict import Layout, Settings, assemble_biplane, assemble_tables, video_fps, write_video_outputs
from unilvseg.evaluation.volumes import biplane_method_of_disks_batch, biplane_volumes, ejection_fraction

HEARTS, SEED, FRAMES = 3, 0, (60, 90)
SHIFT = 7  # frames the A2C "recording" starts after the A4C one (0.14 s at 50 fps: mid-systole from ED)


@pytest.fixture(scope="module")
def three_views(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("views") / "ds"
    return generate_phantom(root, videos=HEARTS, seed=SEED, min_frames=FRAMES[0], max_frames=FRAMES[1], views=("a4c", "a2c", "sax"))


@pytest.fixture(scope="module")
def checkpoint(untrained_tiny_checkpoint) -> Path:
    return untrained_tiny_checkpoint


def run_predict(*argv) -> int:
    from unilvseg.cli.predict import main

    return main([str(a) for a in argv] + ["--device", "cpu", "--batch_size", "1"])


@pytest.fixture(scope="module")
def predicted(three_views, checkpoint, tmp_path_factory) -> Path:
    """predict.py --split all on the three-view phantom, one process."""
    save = tmp_path_factory.mktemp("predicted") / "out"
    assert run_predict("--data_path", three_views, "--split", "all", "--checkpoint", checkpoint, "--save_dir", save) == 0
    return save


@pytest.fixture
def unilvseg_log(caplog):
    logger = logging.getLogger("unilvseg")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="unilvseg")
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def filelist(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "FileList.csv", dtype={"FileName": str, "Heart": str})


def hearts(root: Path) -> list[str]:
    table = filelist(root)
    return sorted(table.loc[table.View == "A4C", "Heart"])


def reference(root: Path, name: str) -> np.ndarray:
    with np.load(root / "ReferenceMasks" / f"{name}.npz") as archive:
        return archive["masks"]


def stored(save: Path, name: str) -> np.ndarray:
    with np.load(save / "masks" / f"{name}.npz") as archive:
        return archive["masks"]


def read_biplane(save: Path) -> pd.DataFrame:
    return pd.read_csv(save / "biplane.csv", dtype={"Heart": str, "FileName_A4C": str, "FileName_A2C": str, "BeatFrames": str,
                                                   "BeatEFs": str}, keep_default_na=False, na_values={"EFSD": [""]})


def settings(rule: str = "beats") -> Settings:
    return Settings(checkpoint="reference", frames=16, stride=8, batch_size=1, threshold=0.5, mean=[0.0] * 3, std=[1.0] * 3,
                    mm_per_pixel=1.4, size=(112, 112), overlay_format=None, ed_es_rule=rule)


def reference_predictions(root: Path, save: Path, rule: str = "beats", shift: int = SHIFT) -> Layout:
    """Every video's reference masks written as predict.py writes a finished video (the A2C's
    from frame ``shift`` on)."""
    layout = Layout(save)
    for record in load_index(root, require_tracings=False).records:
        masks = reference(root, record.file_name)
        write_video_outputs(layout, record, masks[shift:] if record.view == "a2c" else masks, None, settings(rule), only_missing=False)
    return layout


def expected_row(a4c: np.ndarray, a2c: np.ndarray, rule: str = "beats", fps: float = 50.0) -> dict:
    return biplane_volumes(a4c, a2c, rule=rule, fps_a4c=fps, fps_a2c=fps, mm_per_pixel=1.4)


def assert_row_is(row, expected: dict) -> None:
    np.testing.assert_allclose([row.EDV, row.ESV, row.EF], [expected["edv"], expected["esv"], expected["ef"]], atol=1e-3)
    assert row.Method == expected["method"] and row.EFRule == expected["rule"] and int(row.Beats) == expected["beats"]
    assert row.BeatFrames == " ".join("/".join(f"{ed}-{es}" for ed, es in pair) for pair in expected["beat_frames"])
    np.testing.assert_allclose(row.EFSD, expected["ef_sd"], atol=1e-3, equal_nan=True)


# -- the arithmetic, on the reference masks ---------------------------------------------------------
def test_each_heart_gets_biplane_volumes_of_its_own_two_views(three_views, checkpoint, tmp_path, unilvseg_log):
    """Reference masks as predictions, then predict.py (every video already done: only the merge
    runs). One row per heart, sorted; A4C with its own A2C, never the SAX; each row is
    biplane_volumes of those two mask videos; EF_A4C is volumes.csv's EF of the A4C video."""
    save = tmp_path / "pred"
    reference_predictions(three_views, save)
    assert run_predict("--data_path", three_views, "--split", "all", "--checkpoint", checkpoint, "--save_dir", save) == 0
    assert "predicted 0 video(s) (0 frames), 9 already done" in unilvseg_log.text
    assert "biplane.csv: 3 heart(s) with A4C and A2C predicted (3 biplane)" in unilvseg_log.text

    table = read_biplane(save)
    volumes = pd.read_csv(save / "volumes.csv", dtype={"FileName": str}).set_index("FileName")
    assert list(table.columns) == BIPLANE_COLUMNS
    assert list(table.Heart) == hearts(three_views)
    assert list(table.FileName_A4C) == list(table.Heart) and list(table.FileName_A2C) == [f"{h}_A2C" for h in table.Heart]
    rules = set()
    for row in table.itertuples():
        expected = expected_row(reference(three_views, row.FileName_A4C), reference(three_views, row.FileName_A2C)[SHIFT:])
        assert_row_is(row, expected)
        assert expected["method"] == "biplane"
        rules.add(expected["rule"])
        single = volumes.loc[row.FileName_A4C]
        np.testing.assert_allclose([row.EDV_A4C, row.ESV_A4C, row.EF_A4C], [single.EDV, single.ESV, single.EF], atol=1e-9)
        # Phase pairing: the paired A2C frames are the A4C's moved by the shift, not the same indices.
        pairs = [pair.split("/") for pair in row.BeatFrames.split()]
        ed4, ed2 = int(pairs[0][0].split("-")[0]), int(pairs[0][1].split("-")[0])
        assert ed4 != ed2
    assert any("beats" in rule.split(" / ")[0] for rule in rules) and any("fallback" in rule for rule in rules)  # both paths met


def test_biplane_meets_the_3d_truth_and_frame_index_pairing_does_not(three_views, tmp_path):
    """With each video's extremes (the phantom's truth is at its traced ED and ES frames), the
    biplane row of each heart meets FileList's 3D truth: EF within 1.5 points, EDV and ESV within
    3 % (measured: 1.1 points, 1.0 %, 2.3 %). Pairing A4C frame t with A2C frame t instead of by
    phase misses it by 15-28 EF points here, so this test would catch it."""
    layout = reference_predictions(three_views, tmp_path / "pred", rule="extremes")
    assemble_tables(layout)
    summary = assemble_biplane(layout, str(three_views), settings("extremes"))
    assert summary.rows == HEARTS and summary.methods == {"biplane": HEARTS}
    truth = filelist(three_views).set_index("FileName")
    table = read_biplane(layout.root).set_index("Heart")
    for heart, row in table.iterrows():
        assert_row_is(row, expected_row(reference(three_views, heart), reference(three_views, f"{heart}_A2C")[SHIFT:], rule="extremes"))
        true = truth.loc[heart]
        assert row.EF == pytest.approx(true.EF, abs=1.5)
        assert row.EDV == pytest.approx(true.EDV, rel=0.03) and row.ESV == pytest.approx(true.ESV, rel=0.03)
        a4c, a2c = reference(three_views, heart), reference(three_views, f"{heart}_A2C")[SHIFT:]
        (ed, es), _ = [tuple(int(f) for f in cell.split("-")) for cell in row.BeatFrames.split("/")]
        by_index = biplane_method_of_disks_batch(a4c[[ed, es]], a2c[[min(ed, len(a2c) - 1), min(es, len(a2c) - 1)]])
        assert abs(ejection_fraction(*by_index) - true.EF) > 5


def test_a_heart_with_one_view_predicted_gets_no_row(three_views, tmp_path):
    """A heart whose A2C was not predicted (masks missing), and one whose A4C is unfinished (part
    missing), have no row; both are counted, and so is the one row left."""
    layout = reference_predictions(three_views, tmp_path / "pred")
    first, second, third = hearts(three_views)
    layout.masks(f"{first}_A2C").unlink()
    layout.part(second).unlink()
    records = load_index(three_views, require_tracings=False).records
    summary = write_biplane_table(layout, records, 1.4, "beats", video_fps, lambda record: None)
    assert summary.rows == 1 and summary.one_view_only == [first, second]
    assert "1 heart(s) with A4C and A2C predicted (1 biplane); 2 heart(s) with only one of the two views" in summary.describe()
    table = read_biplane(layout.root)
    assert list(table.Heart) == [third]
    assert_row_is(table.iloc[0], expected_row(reference(three_views, third), reference(three_views, f"{third}_A2C")[SHIFT:]))


def test_each_videos_fps_the_rule_and_the_spacing_reach_biplane_volumes(three_views, tmp_path, monkeypatch):
    """FileList's FPS of each video (here the A2Cs say 25), predict.py's --ed_es_rule and
    --mm_per_pixel are what biplane_volumes gets, once per heart, with that heart's two videos."""
    import unilvseg.evaluation.volumes as volumes

    root = Path(shutil.copytree(three_views, tmp_path / "ds"))
    table = filelist(root)
    table.loc[table.View == "A2C", "FPS"] = 25
    table.to_csv(root / "FileList.csv", index=False)
    layout = reference_predictions(root, tmp_path / "pred")
    calls = []
    real = volumes.biplane_volumes

    def spy(masks_a4c, masks_a2c, **kwargs):
        calls.append((len(masks_a4c), len(masks_a2c), kwargs))
        return real(masks_a4c, masks_a2c, **kwargs)

    monkeypatch.setattr(volumes, "biplane_volumes", spy)
    spacing = {**vars(settings("volume_peaks")), "mm_per_pixel": 0.9}
    assert assemble_biplane(layout, str(root), Settings(**spacing)).rows == HEARTS
    frames = table.set_index("FileName").NumberOfFrames
    assert calls == [(frames[h], frames[f"{h}_A2C"] - SHIFT, {"rule": "volume_peaks", "fps_a4c": 50.0, "fps_a2c": 25.0, "mm_per_pixel": 0.9})
                     for h in hearts(root)]


# -- the wiring, with a network -----------------------------------------------------------------------
def test_predicted_masks_one_process_two_shards_and_a_resumed_run(three_views, checkpoint, predicted, tmp_path, unilvseg_log):
    """biplane.csv of a predict.py run is biplane_volumes of the stored masks; two shards give the
    same file (written by the last to finish), and a resumed run with every video done writes it again."""
    table = read_biplane(predicted)
    assert list(table.Heart) == hearts(three_views)
    for row in table.itertuples():
        assert_row_is(row, expected_row(stored(predicted, row.FileName_A4C), stored(predicted, row.FileName_A2C)))

    sharded = tmp_path / "sharded"
    base = ["--data_path", three_views, "--split", "all", "--checkpoint", checkpoint, "--save_dir", sharded]
    assert run_predict(*base, "--shard", "0/2") == 0
    assert not (sharded / "biplane.csv").exists()  # the tables wait for the last shard
    assert run_predict(*base, "--shard", "1/2") == 0
    for name in ("biplane.csv", "volumes.csv", "size.csv"):
        assert (sharded / name).read_text() == (predicted / name).read_text(), name

    (sharded / "biplane.csv").unlink()
    unilvseg_log.clear()
    assert run_predict(*base) == 0
    assert "predicted 0 video(s) (0 frames), 9 already done" in unilvseg_log.text
    assert (sharded / "biplane.csv").read_text() == (predicted / "biplane.csv").read_text()
    assert not list(sharded.rglob(".tmp-*"))


def test_a_video_that_fails_leaves_its_heart_out(three_views, checkpoint, tmp_path, unilvseg_log):
    root = Path(shutil.copytree(three_views, tmp_path / "ds"))
    broken = hearts(root)[1]
    (root / "Videos" / f"{broken}_A2C.avi").write_bytes(b"not a video")
    save = tmp_path / "pred"
    assert run_predict("--data_path", root, "--split", "all", "--checkpoint", checkpoint, "--save_dir", save) == 0
    assert list(read_biplane(save).Heart) == [h for h in hearts(root) if h != broken]
    assert "2 heart(s) with A4C and A2C predicted (2 biplane); 1 heart(s) with only one of the two views predicted" in unilvseg_log.text


def test_a_folder_without_view_and_heart_columns_gets_no_biplane_csv(three_views, checkpoint, predicted, tmp_path, monkeypatch):
    """The same videos without View/Heart columns: no biplane.csv, and every other output is what
    the run with views wrote (CSVs and PNGs byte for byte, masks by content). Only FileList's
    header is read for biplane.csv (the index is never loaded for it)."""
    root = Path(shutil.copytree(three_views, tmp_path / "ds"))
    filelist(root).drop(columns=["View", "Heart", "Ellipticity"]).to_csv(root / "FileList.csv", index=False)
    save = tmp_path / "pred"
    assert run_predict("--data_path", root, "--split", "all", "--checkpoint", checkpoint, "--save_dir", save) == 0
    assert not (save / "biplane.csv").exists()
    files = sorted(p.relative_to(save) for p in save.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(predicted) for p in predicted.rglob("*") if p.is_file() and p.name != "biplane.csv")
    for path in files:
        if path.suffix == ".npz":
            np.testing.assert_array_equal(stored(save, path.stem), stored(predicted, path.stem))
        elif path.name != "run.json":  # names the data folder
            assert (save / path).read_bytes() == (predicted / path).read_bytes(), path

    import unilvseg.data.index

    def no_index(*args, **kwargs):
        raise AssertionError("the index was loaded for biplane.csv")

    monkeypatch.setattr(unilvseg.data.index, "load_index", no_index)
    assert assemble_biplane(Layout(save), str(root), settings()) is None
    assert assemble_biplane(Layout(save), None, settings()) is None  # --external_dir / --video_path
    assert not (save / "biplane.csv").exists()


# -- evaluate_bootstrap.py ----------------------------------------------------------------------------
def test_evaluation_reports_biplane_ef_beside_the_single_plane_one(three_views, tmp_path):
    """evaluate_bootstrap.py on a folder with biplane.csv: biplane EF agreement per heart against
    FileList's EF, and the A4C alone on the same hearts, with the same resamples; the other
    blocks are those of the same folder without biplane.csv."""
    from unilvseg.cli.evaluate import main as evaluate

    layout = reference_predictions(three_views, tmp_path / "pred", rule="extremes", shift=0)
    assemble_tables(layout)
    assemble_biplane(layout, str(three_views), settings("extremes"))
    assert evaluate(["--prediction_dir", str(layout.root), "--data_dir", str(three_views), "--output_dir", str(tmp_path / "eval"),
                     "--split", "all", "--samples", "200"]) == 0
    summary = pd.read_json(tmp_path / "eval" / "summary.json", typ="series")
    block = summary["ef_biplane"]
    table, truth = read_biplane(layout.root), filelist(three_views).set_index("FileName").EF
    biplane_error, single_error = table.EF - truth[table.Heart].to_numpy(), table.EF_A4C - truth[table.Heart].to_numpy()
    assert block["n_hearts"] == HEARTS and block["n_fallback"] == 0 and block["methods"] == {"biplane": HEARTS}
    assert block["biplane"]["mae"] == pytest.approx(np.abs(biplane_error).mean(), abs=1e-3)
    assert block["biplane"]["bias"] == pytest.approx(biplane_error.mean(), abs=1e-3)
    assert block["single_plane_a4c"]["mae"] == pytest.approx(np.abs(single_error).mean(), abs=1e-3)
    assert block["biplane"]["mae_low"] <= block["biplane"]["mae"] <= block["biplane"]["mae_high"]
    scored = pd.read_csv(tmp_path / "eval" / "all_ef_biplane.csv", dtype={"Heart": str})
    assert list(scored.Heart) == list(table.Heart)
    np.testing.assert_allclose(scored.ReferenceEF, truth[table.Heart])
    log_text = (tmp_path / "eval" / "log.csv").read_text()
    assert f"all ef biplane mae: {block['biplane']['mae']:.2f}" in log_text and "all ef single-plane A4C mae:" in log_text

    (layout.root / "biplane.csv").unlink()
    assert evaluate(["--prediction_dir", str(layout.root), "--data_dir", str(three_views), "--output_dir", str(tmp_path / "plain"),
                     "--split", "all", "--samples", "200"]) == 0
    plain = pd.read_json(tmp_path / "plain" / "summary.json", typ="series")
    assert "ef_biplane" not in plain and not (tmp_path / "plain" / "all_ef_biplane.csv").exists()
    assert plain["ef"] == summary["ef"] and plain["overall"] == summary["overall"]
    lines = (tmp_path / "eval" / "log.csv").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# EF biplane"))
    assert lines[start:start + 4] == [
        "# EF biplane: biplane.csv vs FileList EF on 3 all heart(s) with A4C and A2C predicted; the A4C alone on the same hearts beside it",
        *[line for line in lines[start + 1:start + 3] if line.startswith(("all ef biplane mae", "all ef single-plane A4C mae"))],
        "| EF agreement (n=3) | estimate | 95% CI |",
    ]
    assert lines[:start] + lines[start + 9:] == (tmp_path / "plain" / "log.csv").read_text().splitlines()
