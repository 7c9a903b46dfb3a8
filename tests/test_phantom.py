"""The phantom generator writes a faithful EchoNet-Dynamic folder.

The checks read the files back with an independent parser written here (csv module, the
EchoNet polygon rule, skimage.draw.polygon), not with the generator's own helpers, so a bug in
the generator's writer cannot hide behind the same bug in its reader.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.draw

from unilvseg.data import phantom
from unilvseg.data.phantom import MM_PER_PIXEL, default_data_path, generate_phantom, main

FILELIST_HEADER = "FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"
TRACINGS_HEADER = "FileName,X1,Y1,X2,Y2,Frame"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Four short videos: enough for every split and both tracing orders."""
    return generate_phantom(tmp_path_factory.mktemp("phantom") / "ds", videos=4, seed=11, min_frames=24, max_frames=36)


# ----------------------------------------------------------------------------- independent reader
def read_filelist(root: Path) -> dict[str, dict]:
    with open(root / "FileList.csv", newline="") as handle:
        return {row["FileName"]: row for row in csv.DictReader(handle)}


def read_tracings(root: Path) -> dict[str, dict[int, np.ndarray]]:
    """{FileName without .avi: {frame: rows (N, 4)}} in file order."""
    traced: dict[str, dict[int, list]] = {}
    with open(root / "VolumeTracings.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            assert row["FileName"].endswith(".avi"), row
            frames = traced.setdefault(row["FileName"][: -len(".avi")], {})
            frames.setdefault(int(row["Frame"]), []).append([float(row[k]) for k in ("X1", "Y1", "X2", "Y2")])
    return {name: {f: np.array(r) for f, r in frames.items()} for name, frames in traced.items()}


def polygon_mask(rows: np.ndarray, size: int = 112) -> np.ndarray:
    """EchoNet's rule: X1,Y1 of the chords (row 2..N), then X2,Y2 back; rounded; skimage fill."""
    chords = rows[1:]
    xs = np.concatenate([chords[:, 0], chords[::-1, 2]])
    ys = np.concatenate([chords[:, 1], chords[::-1, 3]])
    mask = np.zeros((size, size), dtype=np.uint8)
    rr, cc = skimage.draw.polygon(np.rint(ys), np.rint(xs), (size, size))
    mask[rr, cc] = 1
    return mask


def disk_volume_ml(rows: np.ndarray) -> float:
    axis = np.hypot(*(rows[0, 2:] - rows[0, :2]))
    diameters = np.hypot(rows[1:, 2] - rows[1:, 0], rows[1:, 3] - rows[1:, 1])
    return float(np.sum(np.pi / 4 * diameters**2 * axis / len(diameters)) * MM_PER_PIXEL**3 / 1000)


def read_avi(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return np.stack(frames)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.sum((a > 0) & (b > 0)) / (np.sum(a > 0) + np.sum(b > 0))


def ed_es(frames: dict[int, np.ndarray]) -> tuple[int, int]:
    areas = {f: polygon_mask(rows).sum() for f, rows in frames.items()}
    return max(areas, key=areas.get), min(areas, key=areas.get)


# ----------------------------------------------------------------------------- format
def test_csv_headers_and_file_layout(dataset):
    assert (dataset / "FileList.csv").read_text().splitlines()[0] == FILELIST_HEADER
    assert (dataset / "VolumeTracings.csv").read_text().splitlines()[0] == TRACINGS_HEADER
    filelist = read_filelist(dataset)
    assert len(filelist) == 4
    assert sorted(row["Split"] for row in filelist.values()) == ["TEST", "TRAIN", "TRAIN", "VAL"]
    for name, row in filelist.items():
        assert name.startswith("0X") and len(name) == 18 and int(name[2:], 16) >= 0
        assert (dataset / "Videos" / f"{name}.avi").is_file()
        assert (dataset / "ReferenceMasks" / f"{name}.npz").is_file()
        assert (int(row["FrameHeight"]), int(row["FrameWidth"]), float(row["FPS"])) == (112, 112, 50)
        assert 24 <= int(row["NumberOfFrames"]) <= 36
    assert (dataset / phantom.COMPLETE_MARKER).is_file()
    assert not list(dataset.rglob(".tmp-*"))


def test_each_traced_frame_is_a_long_axis_and_20_ordered_chords(dataset):
    for name, frames in read_tracings(dataset).items():
        assert len(frames) == 2, name
        for frame, rows in frames.items():
            assert rows.shape == (21, 4)
            apex, base = rows[0, :2], rows[0, 2:]
            axis = (base - apex) / np.linalg.norm(base - apex)
            chords = rows[1:, 2:] - rows[1:, :2]
            # Perpendicular to the long axis and ordered from apex to base.
            assert np.abs(chords @ axis).max() < 1e-3 * np.linalg.norm(chords, axis=1).max()
            position = (rows[1:, :2] + rows[1:, 2:]) / 2 @ axis
            assert np.all(np.diff(position) > 0)
            # X1 is the septal (image-left) end.
            assert np.all(rows[1:, 0] < rows[1:, 2])


def test_tracing_polygons_match_dense_reference_masks(dataset):
    filelist = read_filelist(dataset)
    for name, frames in read_tracings(dataset).items():
        masks = np.load(dataset / "ReferenceMasks" / f"{name}.npz")["masks"]
        assert masks.dtype == np.uint8 and masks.shape == (int(filelist[name]["NumberOfFrames"]), 112, 112)
        assert set(np.unique(masks)) <= {0, 1}
        assert masks.reshape(len(masks), -1).sum(axis=1).min() > 200  # an LV on every frame
        for frame, rows in frames.items():
            assert dice(polygon_mask(rows), masks[frame]) >= 0.95, (name, frame)


def test_ed_is_the_larger_tracing_and_file_order_varies(dataset):
    orders = set()
    for name, frames in read_tracings(dataset).items():
        ed, es = ed_es(frames)
        assert ed != es
        masks = np.load(dataset / "ReferenceMasks" / f"{name}.npz")["masks"]
        areas = masks.reshape(len(masks), -1).sum(axis=1)
        assert areas[ed] > areas[es]
        # ED and ES are the extremes of the traced beat (allow a pixel-grid wobble of 1 %).
        beat = areas[ed : es + 1]
        assert areas[ed] >= 0.99 * beat.max() and areas[es] <= 1.01 * beat.min()
        orders.add(list(frames)[0] == ed)
    assert orders == {True, False}, "expected both ED-first and ES-first videos"


def test_ef_and_volumes_follow_the_method_of_disks(dataset):
    tracings = read_tracings(dataset)
    for name, row in read_filelist(dataset).items():
        ef, edv, esv = float(row["EF"]), float(row["EDV"]), float(row["ESV"])
        assert 15 <= ef <= 80
        assert ef == pytest.approx(100 * (edv - esv) / edv, abs=2e-3)
        ed, es = ed_es(tracings[name])
        assert edv == pytest.approx(disk_volume_ml(tracings[name][ed]), abs=1e-3)
        assert esv == pytest.approx(disk_volume_ml(tracings[name][es]), abs=1e-3)


def test_videos_are_gray_mjpg_with_the_listed_frame_count(dataset):
    for name, row in read_filelist(dataset).items():
        path = dataset / "Videos" / f"{name}.avi"
        capture = cv2.VideoCapture(str(path))
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
        fps = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        assert fourcc == "MJPG" and fps == pytest.approx(50)
        video = read_avi(path)
        assert video.shape == (int(row["NumberOfFrames"]), 112, 112, 3)
        spread = video.astype(int).max(axis=-1) - video.astype(int).min(axis=-1)
        assert spread.max() <= 2  # three gray channels (JPEG chroma rounding aside)


def test_images_look_like_an_echo(dataset):
    """Black outside the fan, a dark LV cavity inside brighter myocardium, and motion."""
    for name, frames in read_tracings(dataset).items():
        video = read_avi(dataset / "Videos" / f"{name}.avi")[..., 0].astype(float)
        masks = np.load(dataset / "ReferenceMasks" / f"{name}.npz")["masks"].astype(bool)
        assert video[:, :8, :8].max() <= 3 and video[:, :8, -8:].max() <= 3  # top corners
        ed = ed_es(frames)[0]
        cavity = masks[ed]
        ring = cv2.dilate(cavity.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~cavity
        assert video[ed][ring].mean() > 2 * video[ed][cavity].mean()
        # LV on the image's right half, apex near the top.
        ys, xs = np.nonzero(cavity)
        assert xs.mean() > 56 and ys.min() < 45
        assert np.abs(np.diff(video, axis=0)).mean() > 1


def test_same_seed_same_data_other_seed_other_data(dataset, tmp_path):
    again = generate_phantom(tmp_path / "again", videos=4, seed=11, min_frames=24, max_frames=36)
    other = generate_phantom(tmp_path / "other", videos=4, seed=12, min_frames=24, max_frames=36)
    for csv_name in ("FileList.csv", "VolumeTracings.csv"):
        assert (again / csv_name).read_bytes() == (dataset / csv_name).read_bytes()
        assert (other / csv_name).read_bytes() != (dataset / csv_name).read_bytes()
    for path in (dataset / "ReferenceMasks").glob("*.npz"):
        np.testing.assert_array_equal(np.load(path)["masks"], np.load(again / "ReferenceMasks" / path.name)["masks"])
    name = next(iter(read_filelist(dataset)))
    np.testing.assert_array_equal(read_avi(dataset / "Videos" / f"{name}.avi"), read_avi(again / "Videos" / f"{name}.avi"))


def test_two_workers_give_the_same_data(dataset, tmp_path):
    parallel = generate_phantom(tmp_path / "parallel", videos=4, seed=11, min_frames=24, max_frames=36, workers=2)
    for csv_name in ("FileList.csv", "VolumeTracings.csv"):
        assert (parallel / csv_name).read_bytes() == (dataset / csv_name).read_bytes()


def test_default_data_path_generates_once_then_reuses(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("UNILVSEG_CACHE", str(tmp_path))
    monkeypatch.setattr(phantom, "generate_phantom", _short_phantom(phantom.generate_phantom))
    with caplog.at_level(logging.INFO, logger="unilvseg"):
        first = default_data_path(videos=3, seed=5)
    assert first == tmp_path / "phantom-v1-n3-s5"
    assert (first / phantom.COMPLETE_MARKER).is_file()
    assert len(read_filelist(first)) == 3
    generated = [r for r in caplog.records if r.levelno == logging.INFO and "phantom" in r.getMessage()]
    assert len(generated) == 1 and str(first) in generated[0].getMessage()
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind

    caplog.clear()
    stamp = (first / "FileList.csv").stat().st_mtime_ns
    monkeypatch.setattr(phantom, "generate_phantom", _must_not_run)
    with caplog.at_level(logging.INFO, logger="unilvseg"):
        assert default_data_path(videos=3, seed=5) == first
    assert not caplog.records
    assert (first / "FileList.csv").stat().st_mtime_ns == stamp


def test_interrupted_generation_leaves_no_cached_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("UNILVSEG_CACHE", str(tmp_path))

    def killed(out_dir, **kwargs):
        Path(out_dir, "Videos").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(phantom, "generate_phantom", killed)
    with pytest.raises(KeyboardInterrupt):
        default_data_path(videos=2, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_and_refuses_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--videos", "2", "--seed", "3", "--min_frames", "20", "--max_frames", "24"]
    assert main(argv) == 0
    assert len(read_filelist(out)) == 2 and len(list((out / "Videos").glob("*.avi"))) == 2
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "--overwrite" in err
    assert main(argv + ["--overwrite"]) == 0
    assert main(["--out", str(tmp_path / "x"), "--videos", "0"]) == 2
    assert "--videos 0" in capsys.readouterr().err


def test_package_loader_reads_the_same_tracings(dataset):
    from unilvseg.data import index as index_module
    from unilvseg.data import tracings as tracings_module

    index = index_module.load_index(dataset, split="all")
    mine = read_tracings(dataset)
    filelist = read_filelist(dataset)
    assert sorted(r.file_name for r in index.records) == sorted(filelist)
    for record in index.records:
        ed, es = ed_es(mine[record.file_name])
        assert (record.ed_frame, record.es_frame) == (ed, es)
        assert record.split == filelist[record.file_name]["Split"].lower()
        for rows, frame in ((record.ed_rows, ed), (record.es_rows, es)):
            np.testing.assert_array_equal(tracings_module.tracing_mask(rows, 112, 112), polygon_mask(mine[record.file_name][frame]))


def _short_phantom(generate):
    def short(out_dir, videos, seed, **kwargs):
        return generate(out_dir, videos=videos, seed=seed, min_frames=20, max_frames=24)

    return short


def _must_not_run(*args, **kwargs):
    raise AssertionError("the cached phantom was regenerated")


# ----------------------------------------------------------------------------- every structure
def test_label_maps_hold_every_structure_in_anatomical_order(dataset):
    import json

    from unilvseg.data.index import reference_masks
    from unilvseg.data.structures import STRUCTURES, reference_labels

    assert json.loads((dataset / "ReferenceMasks" / "labels.json").read_text()) == {str(v): k for k, v in STRUCTURES.items()}
    for name in read_filelist(dataset):
        labels, structures = reference_labels(dataset, name)
        lv_only = reference_masks(dataset, name)  # what LV-only readers get is unchanged
        assert structures == STRUCTURES and labels.shape == lv_only.shape and labels.dtype == np.uint8
        assert np.array_equal(labels == STRUCTURES["lv"], lv_only == 1)
        areas = {s: (labels == k).sum(axis=(1, 2)) for s, k in STRUCTURES.items()}
        assert all((area > 50).all() for area in areas.values()), {s: int(a.min()) for s, a in areas.items()}
        ys, xs = np.mgrid[0:112, 0:112]
        centre = {s: (float(xs[labels[0] == k].mean()), float(ys[labels[0] == k].mean())) for s, k in STRUCTURES.items()}
        # Apex towards the transducer (top), LV on the image's right, RV left of it, atria below.
        assert centre["rv"][0] < centre["lv"][0] and centre["ra"][0] < centre["la"][0]
        assert centre["la"][1] > centre["lv"][1] and centre["ra"][1] > centre["rv"][1]
        # The myocardium is the LV's wall: it lies around the cavity, not elsewhere in the frame.
        from scipy import ndimage

        near_cavity = ndimage.binary_dilation(labels[0] == STRUCTURES["lv"], iterations=12)  # walls up to ~10 px at ED
        assert (near_cavity & (labels[0] == STRUCTURES["myo"])).sum() > 0.9 * (labels[0] == STRUCTURES["myo"]).sum()
        # The LA fills while the LV empties: its largest area comes near the LV's smallest.
        lv, la = areas["lv"].astype(float), areas["la"].astype(float)
        assert np.corrcoef(lv, la)[0, 1] < -0.5


def test_lv_only_folders_have_no_label_maps(tmp_path, dataset):
    import shutil

    from unilvseg.data.structures import reference_labels

    copy = Path(shutil.copytree(dataset, tmp_path / "old"))
    (copy / "ReferenceMasks" / "labels.json").unlink()
    name = next(iter(read_filelist(copy)))
    assert reference_labels(copy, name) is None
    np.savez(copy / "ReferenceMasks" / f"{name}.npz", masks=np.zeros((3, 112, 112), np.uint8))
    (copy / "ReferenceMasks" / "labels.json").write_text('{"1": "lv"}')
    assert reference_labels(copy, name) is None  # an npz with only "masks": LV-only


def test_cached_phantom_without_label_maps_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("UNILVSEG_CACHE", str(tmp_path))
    monkeypatch.setattr(phantom, "generate_phantom", _short_phantom(phantom.generate_phantom))
    first = default_data_path(videos=3, seed=5)
    masks_before = {p.name: np.load(p)["masks"] for p in (first / "ReferenceMasks").glob("*.npz")}
    (first / "ReferenceMasks" / "labels.json").unlink()  # as a phantom generated before label maps
    again = default_data_path(videos=3, seed=5)
    assert again == first and (again / "ReferenceMasks" / "labels.json").is_file()
    for name, masks in masks_before.items():
        assert np.array_equal(np.load(again / "ReferenceMasks" / name)["masks"], masks)


def test_pathologies_change_their_chamber_and_leave_the_usual_phantom_alone(tmp_path):
    import pandas as pd

    from unilvseg.data.structures import reference_labels
    from unilvseg.evaluation.chambers import chamber_measurements

    plain = generate_phantom(tmp_path / "plain", videos=10, seed=4, min_frames=70, max_frames=90)
    sick = generate_phantom(tmp_path / "sick", videos=10, seed=4, min_frames=70, max_frames=90, pathologies=1.0)
    assert "Pathology" not in pd.read_csv(plain / "FileList.csv").columns
    table = pd.read_csv(sick / "FileList.csv", dtype={"FileName": str}).set_index("FileName")
    assert set(table["Pathology"]) <= set(phantom.PATHOLOGIES) and table["Pathology"].nunique() >= 3
    # Which measurement each pathology must move, and which way, for the same heart.
    moves = {"lv_dilated": ("lv_edv", 1.3), "lv_reduced_ef": ("lv_ef", -1), "la_enlarged": ("la_volume_max", 1.5),
             "rv_dilated_reduced": ("rv_eda", 1.3), "lv_hypertrophy": ("lv_mass", 1.5)}
    for name, row in table.iterrows():
        before = chamber_measurements(reference_labels(plain, name)[0], mm_per_pixel=MM_PER_PIXEL, fps=50)
        after = chamber_measurements(reference_labels(sick, name)[0], mm_per_pixel=MM_PER_PIXEL, fps=50)
        key, factor = moves[row["Pathology"]]
        if factor < 0:
            assert after[key] < 40.0, (name, row["Pathology"], before[key], after[key])  # EF drawn 15-38 %
        else:
            assert after[key] > factor * before[key], (name, row["Pathology"], before[key], after[key])
        if row["Pathology"] == "rv_dilated_reduced":
            assert after["rv_fac"] < 20 and after["rv_lv_area_ratio"] > before["rv_lv_area_ratio"]
