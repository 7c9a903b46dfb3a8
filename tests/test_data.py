"""Data layer: EchoNet format, index, video decoding and cache, clips, augmentation, datasets."""

from __future__ import annotations

import ast
import inspect
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REAL_MINI, needs_real_data, tracing_rows, write_avi, write_echonet
from unilvseg.data import augment as augment_module
from unilvseg.data.augment import NO_AUGMENT, ClipAugment
from unilvseg.data.clips import ClipSampler
from unilvseg.data.dataset import ECHONET_MEAN, ECHONET_STD, EchoClipDataset, EchoNetDataModule, TracingTargets, collate_clips
from unilvseg.data.index import index_video_folder, load_index
from unilvseg.data.tracings import ed_es_frames, polygon_area, polygon_from_rows, read_tracings, tracing_mask
from unilvseg.data.video import FrameCache, read_video
from unilvseg.errors import DataError, UserError

SIZE = 112
BIG = dict(centre=(56.0, 50.0), radii=(22.0, 32.0))  # ED: large LV
SMALL = dict(centre=(56.0, 52.0), radii=(13.0, 24.0))  # ES: small LV


# ----------------------------------------------------------------------------- helpers


def ellipse_video(n_frames: int = 24, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """uint8 (T, H, W): a bright off-centre blob with a tail (so rotations are visible) on noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    phase = np.linspace(0, 2 * np.pi, n_frames, endpoint=False)[:, None, None]
    rx, ry = 16 + 5 * np.cos(phase), 26 + 5 * np.cos(phase)
    blob = ((xx - 60) / rx) ** 2 + ((yy - 50) / ry) ** 2 <= 1
    tail = (np.abs(yy - 85) < 4) & (xx > 60) & (xx < 95)
    video = np.where(blob | tail[None], 210, 25).astype(np.int16) + rng.integers(-8, 9, blob.shape)
    return np.clip(video, 0, 255).astype(np.uint8)


def traced_dataset(tmp_path, names=("a", "b", "c"), splits=None, n_frames=24, ed=5, es=14, extra_rows=()):
    """Hand-made EchoNet folder with every listed video traced at (ed, es), ES rows written first."""
    videos = {name: ellipse_video(n_frames, seed=i) for i, name in enumerate(names)}
    rows = []
    for name in names:
        rows += tracing_rows(name, es, **SMALL) + tracing_rows(name, ed, **BIG)
    splits = splits or ["TRAIN"] * len(names)
    filelist = [{"FileName": n, "Split": s} for n, s in zip(names, splits)]
    return write_echonet(tmp_path, videos, rows + list(extra_rows), filelist)


def coords(rows) -> np.ndarray:
    """(N, 4) X1, Y1, X2, Y2 of VolumeTracings rows."""
    return np.array([r[1:5] for r in rows], dtype=float)


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def orourke_raster(xs, ys, height, width) -> np.ndarray:
    """Independent rasteriser: O'Rourke's crossing test at every pixel centre, boundary inside."""
    r, c = np.mgrid[0:height, 0:width]
    x0 = np.asarray(xs, float)[None, None] - c[..., None]
    y0 = np.asarray(ys, float)[None, None] - r[..., None]
    x1, y1 = np.roll(x0, 1, -1), np.roll(y0, 1, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_x = (x0 * y1 - x1 * y0) / (y1 - y0)
    right = np.count_nonzero(((y0 > 0) != (y1 > 0)) & (cross_x > 0), -1)
    left = np.count_nonzero(((y0 < 0) != (y1 < 0)) & (cross_x < 0), -1)
    vertex = ((x0 == 0) & (y0 == 0)).any(-1)
    return (vertex | (right % 2 != left % 2) | (right % 2 == 1)).astype(np.uint8)


# ----------------------------------------------------------------------------- tracings


def test_polygon_runs_down_x1_ends_and_back_up_x2_ends():
    rows = np.array([[5, 0, 5, 10], [1, 2, 9, 2], [2, 5, 8, 5], [3, 8, 7, 8]], float)  # long axis first
    xs, ys = polygon_from_rows(rows)
    np.testing.assert_array_equal(xs, [1, 2, 3, 7, 8, 9])
    np.testing.assert_array_equal(ys, [2, 5, 8, 8, 5, 2])
    assert polygon_area(rows) == pytest.approx(0.5 * ((8 + 4) * 6))  # trapezoid 8 wide at top, 4 at bottom


def test_tracing_mask_matches_independent_rasteriser():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(4, 22))
        rows = coords(tracing_rows("v", 0, (rng.uniform(30, 80), rng.uniform(30, 80)), (rng.uniform(5, 25), rng.uniform(8, 30)), chords=n))
        rows[1:] += rng.normal(0, 1.5, rows[1:].shape)  # irregular, like a clinician's tracing
        xs, ys = polygon_from_rows(rows)
        expected = orourke_raster(np.rint(xs), np.rint(ys), SIZE, SIZE)
        np.testing.assert_array_equal(tracing_mask(rows, SIZE, SIZE), expected)
    # Clipped at the image border rather than wrapping around.
    rows = coords(tracing_rows("v", 0, (105.0, 100.0), (20.0, 20.0)))
    mask = tracing_mask(rows, SIZE, SIZE)
    assert mask.shape == (SIZE, SIZE) and mask[:, :60].sum() == 0 and mask[-1, -1] == 1


@pytest.mark.parametrize("es_first", [True, False])
def test_ed_es_decided_by_area_whatever_the_row_order(tmp_path, es_first):
    video = ellipse_video()
    ed_rows, es_rows = tracing_rows("a", 4, **BIG), tracing_rows("a", 15, **SMALL)
    rows = es_rows + ed_rows if es_first else ed_rows + es_rows
    root = write_echonet(tmp_path, {"a": video}, rows)
    traced = read_tracings(root)["a"]
    assert ed_es_frames(traced) == (4, 15)
    record = load_index(root).records[0]
    assert (record.ed_frame, record.es_frame) == (4, 15)
    assert tracing_mask(record.ed_rows, SIZE, SIZE).sum() > tracing_mask(record.es_rows, SIZE, SIZE).sum()


def test_nan_coordinates_drop_that_frame_and_say_which_rows(tmp_path):
    rows = tracing_rows("a", 2, **BIG) + tracing_rows("a", 9, **SMALL) + tracing_rows("a", 12, **SMALL)
    rows[23][3] = float("nan")  # a chord of frame 9 (rows 22..42 are frame 9; +2 = file lines)
    root = write_echonet(tmp_path, {"a": ellipse_video()}, rows)
    traced = read_tracings(root)["a"]
    assert sorted(traced.frames) == [2, 12]
    assert any("NaN" in p and "frame 9" in p and "23-43" in p for p in traced.problems), traced.problems
    record = load_index(root).records[0]
    assert (record.ed_frame, record.es_frame) == (2, 12)


def test_tracing_rows_parsed_exactly_on_hand_made_cases(tmp_path):
    """Hand-made VolumeTracings: frame 0 is valid, negative / fractional frames and a frame with
    only 2 chords are dropped with the file lines named, later frames of the same video are still
    read, a text coordinate is a problem not a crash, FileNames keep leading zeros and lose any
    .avi/.AVI extension, and a clean video reports no problem."""
    square = [[2, 0, 2, 2], [0, 0, 4, 0], [0, 1, 4, 1], [0, 2, 4, 2]]  # long axis + 3 chords: 4 x 2 box
    lines = ["FileName,X1,Y1,X2,Y2,Frame"]
    lines += [f"0042.AVI,{x1},{y1},{x2},{y2},-1" for x1, y1, x2, y2 in square]  # file lines 2-5
    lines += [f"0042.AVI,{x1},{y1},{x2},{y2},2.5" for x1, y1, x2, y2 in square]  # 6-9
    lines += [f"0042.AVI,{x1},{y1},{x2},{y2},3" for x1, y1, x2, y2 in square[:3]]  # 10-12: 2 chords
    lines += ["0042.AVI,abc,0,4,0,4"] + [f"0042.AVI,{x1},{y1},{x2},{y2},4" for x1, y1, x2, y2 in square[1:]]  # 13-16
    lines += [f"0042.AVI,{x1},{y1},{x2},{y2},0" for x1, y1, x2, y2 in square]  # 17-20
    lines += ["b.avi,1,1,2,2,", "b.avi,1,1,2,2,x"]  # lines 21-22: no frame number, text frame
    lines += [f"b.avi,{x1},{y1},{x2},{y2},7" for x1, y1, x2, y2 in square]  # 23-26
    lines += [f"0077,{x1},{y1},{x2},{y2},1" for x1, y1, x2, y2 in square + square[-1:]]  # 27-31, one duplicate
    root = tmp_path / "tr"
    root.mkdir()
    (root / "VolumeTracings.csv").write_text("\n".join(lines) + "\n")
    traced = read_tracings(root)
    assert sorted(traced) == ["0042", "0077", "b"]  # an all-digit FileName keeps its leading zeros
    assert traced["0077"].problems == ["rows 27-31: 1 duplicate row(s) at frame 1 dropped"]
    assert traced["b"].problems == ["rows 21-22: Frame is missing or not a number"]
    video = traced["0042"]
    assert list(video.frames) == [0]
    np.testing.assert_array_equal(video.frames[0], np.array(square, dtype=float))
    assert video.problems == [
        "rows 2-5: Frame -1 is not a non-negative integer",
        "rows 6-9: Frame 2.5 is not a non-negative integer",
        "rows 10-12: frame 3 has 3 rows; a tracing needs a long axis and at least 3 chords",
        "rows 13-16: NaN/inf or non-numeric coordinates at frame 4",
    ]
    assert list(traced["b"].frames) == [7]  # read after the rows without a frame
    # Polygon down the X1 ends and up the X2 ends: (0,0) (0,1) (0,2) (4,2) (4,1) (4,0), area 8.
    xs, ys = polygon_from_rows(np.array(square, dtype=float))
    assert xs.tolist() == [0, 0, 0, 4, 4, 4] and ys.tolist() == [0, 1, 2, 2, 1, 0]
    assert polygon_area(np.array(square, dtype=float)) == 8.0
    mask = tracing_mask(np.array(square, dtype=float), 5, 6)
    assert mask.dtype == np.uint8 and mask.sum() == 15  # boundary pixels included: 5 x 3
    from unilvseg.data.tracings import _csv_rows

    assert (_csv_rows(np.array([0])), _csv_rows(np.array([3, 4])), _csv_rows(np.array([3, 4, 5]))) == ("2", "5-6", "5-7")
    # A trapezoid (chord widths 2, 4, 6): area 8 by the shoelace formula, by hand.
    trapezoid = np.array([[0, 0, 0, 2], [0, 0, 2, 0], [0, 1, 4, 1], [0, 2, 6, 2]], dtype=float)
    assert polygon_area(trapezoid) == 8.0


def test_tracing_file_errors_name_the_file_and_the_problem(tmp_path):
    empty_dir = tmp_path / "none"
    empty_dir.mkdir()
    with pytest.raises(DataError, match=r"none/VolumeTracings.csv: VolumeTracings.csv not found$"):
        read_tracings(empty_dir)
    (empty_dir / "VolumeTracings.csv").write_text("")
    with pytest.raises(DataError, match=r"VolumeTracings.csv: file is empty \(expected header FileName,X1,Y1,X2,Y2,Frame\)$"):
        read_tracings(empty_dir)
    (empty_dir / "VolumeTracings.csv").write_text("Name,A\nx,1\n")
    with pytest.raises(DataError, match=r"VolumeTracings.csv: header is Name,A; expected exactly FileName,X1,Y1,X2,Y2,Frame$"):
        read_tracings(empty_dir)
    # A column of all-digit FileNames must stay text: 0077, not 77.
    (empty_dir / "VolumeTracings.csv").write_text("FileName,X1,Y1,X2,Y2,Frame\n" + "".join(f"0077,{i},0,{i + 4},0,3\n" for i in range(4)))
    assert list(read_tracings(empty_dir)) == ["0077"]
    (empty_dir / "VolumeTracings.csv").write_bytes(b"FileName,X1,Y1,X2,Y2,Frame\n\xff\xfe,1,1,2,2,3\n")
    with pytest.raises(DataError, match=r"VolumeTracings.csv: cannot parse CSV \("):
        read_tracings(empty_dir)


def test_duplicate_rows_are_dropped_without_changing_the_mask(tmp_path):
    clean = tracing_rows("a", 2, **BIG) + tracing_rows("a", 9, **SMALL)
    doubled = clean[:5] + [clean[4]] + clean[5:]
    root = write_echonet(tmp_path, {"a": ellipse_video()}, doubled)
    traced = read_tracings(root)["a"]
    assert any("duplicate" in p for p in traced.problems)
    expected = coords([r for r in clean if r[5] == 2])
    np.testing.assert_array_equal(traced.frames[2], expected)
    np.testing.assert_array_equal(tracing_mask(traced.frames[2], SIZE, SIZE), tracing_mask(expected, SIZE, SIZE))


def test_wrong_tracing_header_names_the_file(tmp_path):
    root = write_echonet(tmp_path, {"a": ellipse_video()}, "FileName,X1,Y1,X2,Y2,FrameNumber\na.avi,1,2,3,4,0\n")
    with pytest.raises(DataError, match=r"VolumeTracings\.csv.*header"):
        load_index(root)


# ----------------------------------------------------------------------------- index


def test_split_filter_ignores_case(tmp_path):
    root = traced_dataset(tmp_path, names=("a", "b", "c", "d"), splits=["Train", "TRAIN", "val", "Test "])
    assert [r.file_name for r in load_index(root, split="train").records] == ["a", "b"]
    assert [r.file_name for r in load_index(root, split="VAL").records] == ["c"]
    index = load_index(root)
    assert [r.split for r in index.records] == ["train", "train", "val", "test"]
    assert [r.file_name for r in index.split("Test").records] == ["d"]
    assert len(index.split("ALL")) == 4


def test_untraced_video_skipped_for_weak_but_kept_for_ssl(tmp_path):
    videos = {"a": ellipse_video(), "b": ellipse_video(seed=1)}
    rows = tracing_rows("a", 14, **SMALL) + tracing_rows("a", 5, **BIG)
    root = write_echonet(tmp_path, videos, rows)
    weak = load_index(root, require_tracings=True)
    assert [r.file_name for r in weak.records] == ["a"]
    assert weak.skipped["untraced"] == ["b"]
    ssl = load_index(root, require_tracings=False)
    assert [r.file_name for r in ssl.records] == ["a", "b"]
    assert ssl.by_name()["a"].traced and not ssl.by_name()["b"].traced


def test_missing_and_empty_videos_are_counted_skips(tmp_path):
    root = traced_dataset(tmp_path, names=("a",))
    (root / "Videos" / "empty.avi").write_bytes(b"")
    filelist = (root / "FileList.csv").read_text() + "ghost,60,20,50,112,112,50,24,TRAIN\nempty,60,20,50,112,112,50,24,TRAIN\n"
    (root / "FileList.csv").write_text(filelist)
    for require in (True, False):
        index = load_index(root, require_tracings=require)
        assert [r.file_name for r in index.records] == ["a"]
        assert index.skipped["missing_video"] == ["ghost"]
        assert index.skipped["empty_video"] == ["empty"]


def test_traced_frame_past_the_end_is_not_used(tmp_path):
    # Frame 30 is beyond NumberOfFrames=24: with only one frame left the video cannot be traced.
    rows = tracing_rows("a", 5, **BIG) + tracing_rows("a", 30, **SMALL)
    # Video b has a valid ED/ES pair plus an even smaller tracing past the end, which must not win ES.
    rows += tracing_rows("b", 5, **BIG) + tracing_rows("b", 12, **SMALL) + tracing_rows("b", 40, (56.0, 52.0), (5.0, 9.0))
    root = write_echonet(tmp_path, {"a": ellipse_video(), "b": ellipse_video(seed=1)}, rows)
    index = load_index(root)
    assert [r.file_name for r in index.records] == ["b"]
    assert index.skipped["bad_tracing"] == ["a"]
    assert (index.records[0].ed_frame, index.records[0].es_frame) == (5, 12)
    assert "a" in load_index(root, require_tracings=False).by_name()


def test_filelist_without_split_names_file_and_column(tmp_path):
    root = traced_dataset(tmp_path, names=("a",))
    (root / "FileList.csv").write_text("FileName,EF,NumberOfFrames\na,60,24\n")
    with pytest.raises(DataError, match=r"FileList\.csv.*'Split'"):
        load_index(root)


def test_unknown_split_value_and_argument(tmp_path):
    root = traced_dataset(tmp_path, names=("a", "b"), splits=["TRAIN", "TRAINING"])
    with pytest.raises(DataError, match=r"(?i)FileList\.csv.*training.*line\(s\) \[3\]"):
        load_index(root)
    root = traced_dataset(tmp_path / "ok", names=("a",))
    with pytest.raises(DataError, match="dev"):
        load_index(root, split="dev")


def test_duplicate_filename_is_an_error(tmp_path):
    root = traced_dataset(tmp_path, names=("a",))
    (root / "FileList.csv").write_text("FileName,Split\na,TRAIN\nb,VAL\na.avi,TEST\n")
    with pytest.raises(DataError, match=r"FileList\.csv.*more than once.*'a'"):
        load_index(root)


def test_missing_folder_and_file_as_data_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_index(tmp_path / "nowhere")
    a_file = tmp_path / "file.csv"
    a_file.write_text("x")
    with pytest.raises(DataError, match="is a file"):
        load_index(a_file)
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(DataError, match="FileList.csv not found"):
        load_index(tmp_path / "empty_folder")


def test_video_folder_index(tmp_path):
    write_avi(tmp_path / "x.avi", ellipse_video(8))
    write_avi(tmp_path / "y.avi", ellipse_video(8, seed=1))
    (tmp_path / "notes.txt").write_text("not a video")
    index = index_video_folder(tmp_path)
    assert [(r.file_name, r.split) for r in index.records] == [("x", "external"), ("y", "external")]
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match="no video files"):
        index_video_folder(tmp_path / "sub")
    with pytest.raises(DataError, match="not a folder"):
        index_video_folder(tmp_path / "missing")


# ----------------------------------------------------------------------------- video + cache


def test_read_video_round_trip_is_gray_rgb_uint8(tmp_path):
    original = ellipse_video(10)
    video = read_video(write_avi(tmp_path / "v.avi", original))
    assert video.shape == (10, SIZE, SIZE, 3) and video.dtype == np.uint8
    assert np.abs(video[..., 0].astype(int) - original).mean() < 6  # MJPG is lossy, not wrong
    smaller = read_video(tmp_path / "v.avi", size=(56, 56))
    assert smaller.shape == (10, 56, 56, 3)


@pytest.mark.parametrize("damage", ["truncated", "zero_frames", "not_a_video", "empty_file"])
def test_unreadable_video_is_data_error_naming_file(tmp_path, damage):
    path = tmp_path / "broken.avi"
    if damage == "truncated":
        data = write_avi(tmp_path / "good.avi", ellipse_video(20)).read_bytes()
        path.write_bytes(data[:4000])  # header and a sliver of the first frame
    elif damage == "zero_frames":
        write_avi(path, np.zeros((0, SIZE, SIZE), np.uint8))
    elif damage == "not_a_video":
        path.write_text("FileName,Split\n" * 200)
    else:
        path.write_bytes(b"")
    with pytest.raises(DataError, match="broken.avi"):
        read_video(path)
    with pytest.raises(DataError, match="broken.avi"):
        FrameCache(tmp_path / "cache").frames(path)


def test_broken_video_becomes_a_counted_skip_in_the_batch(tmp_path, caplog):
    root = traced_dataset(tmp_path, names=("a", "b"))
    (root / "Videos" / "b.avi").write_text("this is not an AVI file" * 100)
    index = load_index(root)
    dataset = EchoClipDataset(index, ClipSampler(8), clip="traced_random", targets="tracings",
                              cache=FrameCache(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="unilvseg"):
        items = [dataset[0], dataset[1]]
    assert items[1] is None and items[0] is not None
    assert "b.avi" in caplog.text
    batch = collate_clips(items)
    assert batch["skipped"].item() == 1
    assert batch["video"].shape == (1, 3, SIZE, SIZE, 8)
    empty = collate_clips([None, None])
    assert set(empty) == {"skipped"} and empty["skipped"].item() == 2


def test_frame_cache_builds_once_memory_maps_and_matches_decoder(tmp_path, monkeypatch):
    path = write_avi(tmp_path / "v.avi", ellipse_video(12))
    cache = FrameCache(tmp_path / "cache")
    decoded = read_video(path)
    first = cache.frames(path)
    np.testing.assert_array_equal(first, decoded)
    entries = list((tmp_path / "cache").glob("*.npy"))
    assert len(entries) == 1

    from unilvseg.data import video as video_module

    def no_decoding(*args, **kwargs):
        raise AssertionError("cache hit must not decode the video again")

    monkeypatch.setattr(video_module, "decode_video", no_decoding)
    second = cache.frames(path)
    assert isinstance(cache.stored_frames(path), np.memmap)
    np.testing.assert_array_equal(second, decoded)
    assert list((tmp_path / "cache").glob("*.npy")) == entries
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_frame_cache_is_invalidated_when_the_video_changes(tmp_path):
    path = write_avi(tmp_path / "v.avi", ellipse_video(12))
    cache = FrameCache(tmp_path / "cache")
    old_entry = cache.entry(path)
    old = np.array(cache.frames(path))
    write_avi(path, 255 - ellipse_video(16, seed=5))  # rewritten in place: new size and mtime
    new_entry = cache.entry(path)
    assert new_entry != old_entry
    fresh = cache.frames(path)
    assert new_entry.is_file()
    assert fresh.shape[0] == 16 and not np.array_equal(fresh[:12], old)
    np.testing.assert_array_equal(fresh, read_video(path))


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    path = write_avi(tmp_path / "v.avi", ellipse_video(6))
    cache = FrameCache(tmp_path / "cache")
    cache.frames(path)
    cache.entry(path).write_bytes(b"garbage")
    np.testing.assert_array_equal(cache.frames(path), read_video(path))


def test_default_cache_lives_under_unilvseg_cache(tmp_path):
    assert Path(os.environ["UNILVSEG_CACHE"]) != Path.home() / ".cache" / "unilvseg"
    path = write_avi(tmp_path / "v.avi", ellipse_video(4))
    entry = FrameCache().entry(path)
    assert Path(os.environ["UNILVSEG_CACHE"]) in entry.parents


# ----------------------------------------------------------------------------- clips


@pytest.mark.parametrize("period", [1, 2])
def test_clip_containing_has_the_frame_on_its_grid(period):
    sampler = ClipSampler(frames=8, period=period)
    rng = np.random.default_rng(0)
    n_frames = 40
    for frame in (0, 1, 7, 20, 38, 39):
        starts = set()
        for _ in range(30):
            clip = sampler.clip_containing(n_frames, frame, rng)
            assert len(clip) == 8 and frame in clip
            assert (np.diff(clip) == period).all()  # long video: no padding
            assert clip.min() >= 0 and clip.max() < n_frames
            starts.add(int(clip[0]))
        if period <= frame < n_frames - period:
            assert len(starts) > 1  # random placement wherever there is a choice


@pytest.mark.parametrize("period", [1, 2])
def test_centred_clip_is_central_and_deterministic(period):
    sampler = ClipSampler(frames=8, period=period)
    clip = sampler.centred_clip(60, 30)
    assert clip[4] == 30 and (np.diff(clip) == period).all()
    np.testing.assert_array_equal(clip, sampler.centred_clip(60, 30))
    for frame in (0, 1, 58, 59):  # near the ends the clip shifts inwards but keeps the frame
        clip = sampler.centred_clip(60, frame)
        assert frame in clip and clip.min() >= 0 and clip.max() <= 59 and (np.diff(clip) == period).all()


@pytest.mark.parametrize("period", [1, 2])
def test_short_videos_are_padded_with_the_last_frame(period):
    sampler = ClipSampler(frames=16, period=period)
    rng = np.random.default_rng(1)
    for frame in range(10):
        for clip in (sampler.clip_containing(10, frame, rng), sampler.centred_clip(10, frame)):
            assert len(clip) == 16 and frame in clip
            assert clip.max() == 9 and (clip[clip < 9] % period == clip[0] % period).all()
            assert (np.diff(clip) >= 0).all()
    clip = sampler.random_clip(5, rng)
    assert len(clip) == 16 and clip.max() == 4 and clip[-1] == 4


def test_random_clip_stays_inside_and_varies():
    sampler = ClipSampler(frames=8, period=2)
    rng = np.random.default_rng(2)
    clips = np.stack([sampler.random_clip(50, rng) for _ in range(50)])
    assert clips.min() >= 0 and clips.max() <= 49 and (np.diff(clips, axis=1) == 2).all()
    assert len(set(clips[:, 0])) > 5


@pytest.mark.parametrize("period", [1, 2, 3])
@pytest.mark.parametrize("n_frames", [5, 16, 17, 40, 101])
@pytest.mark.parametrize("stride", [None, 5])
def test_windows_cover_every_frame(period, n_frames, stride):
    sampler = ClipSampler(frames=16, period=period)
    windows = sampler.windows(n_frames, stride)
    assert windows.ndim == 2 and windows.shape[1] == 16
    assert windows.min() >= 0 and windows.max() == n_frames - 1
    assert set(np.unique(windows)) == set(range(n_frames))


def test_bad_sampler_arguments_are_user_errors():
    with pytest.raises(UserError, match="--frames"):
        ClipSampler(frames=0)
    with pytest.raises(UserError, match="--period"):
        ClipSampler(period=0)
    with pytest.raises(UserError, match="--stride"):
        ClipSampler(8).windows(20, stride=-1)


def test_sampler_exact_indices_on_hand_worked_cases():
    """Exact clips and windows (from the mutation run: coverage alone let extra windows, late
    starts and float indices through)."""
    default = ClipSampler()
    assert (default.frames, default.period, default.span) == (32, 1, 32)
    single = ClipSampler(frames=1)
    assert single.windows(3).tolist() == [[0], [1], [2]]
    # Odd clip length: frame 30 sits at slot 2 of 5; integer indices.
    clip = ClipSampler(frames=5).centred_clip(60, 30)
    assert clip.tolist() == [28, 29, 30, 31, 32] and clip.dtype.kind == "i"
    sampler = ClipSampler(frames=16)
    assert sampler.windows(16).tolist() == [list(range(16))]  # exactly one window
    np.testing.assert_array_equal(sampler.windows(40)[:, 0], [0, 16, 24])  # last aligned to the end
    np.testing.assert_array_equal(sampler.windows(31)[:, 0], [0, 15])
    np.testing.assert_array_equal(sampler.windows(20, stride=1)[:, 0], [0, 1, 2, 3, 4])
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert sampler.random_clip(16, rng)[0] == 0 and sampler.random_clip(10, rng)[0] == 0  # no room: start 0
        # Short video (10 frames < span 31 at period 2): the grid through frame 5 starts at 1, never 3.
        assert ClipSampler(frames=16, period=2).clip_containing(10, 5, rng)[0] == 1
        assert ClipSampler(frames=16, period=2).clip_containing(10, 4, rng)[0] == 0  # not 2


# ----------------------------------------------------------------------------- augmentation


def _clip_and_mask(n_frames=6):
    video = torch.from_numpy(ellipse_video(n_frames)).float().div(255)
    clip = video[:, None].repeat(1, 3, 1, 1)  # (T, 3, H, W)
    mask = (video > 0.5).to(torch.uint8)[:, None]  # LV = the video's own bright pixels
    return clip, mask


def test_augmentation_moves_video_and_mask_together():
    clip, mask = _clip_and_mask()
    augment = ClipAugment(rotation=20, pad=12, brightness=0.0, contrast=0.0)
    moved = 0
    for seed in range(5):
        video_out, mask_out = augment(clip, mask, np.random.default_rng(seed))
        assert video_out.shape == clip.shape and mask_out.shape == mask.shape and mask_out.dtype == mask.dtype
        bright = (video_out[:, 0] > 0.5).numpy()
        for t in range(len(clip)):
            assert dice(bright[t], mask_out[t, 0].numpy()) > 0.95
        moved += dice(mask_out.numpy(), mask.numpy()) < 0.95
    assert moved >= 3  # the transform really moves things


def test_one_transform_for_all_frames():
    frame = torch.from_numpy(ellipse_video(1)).float().div(255)[0]
    clip = frame.expand(5, 3, SIZE, SIZE).clone()
    masks = (frame > 0.5).to(torch.uint8).expand(5, 1, SIZE, SIZE).clone()
    video_out, mask_out = ClipAugment()(clip, masks, np.random.default_rng(7))
    assert not torch.equal(video_out[0], clip[0])
    for t in range(1, 5):
        assert torch.equal(video_out[t], video_out[0]) and torch.equal(mask_out[t], mask_out[0])


def test_pad_crop_is_an_exact_integer_shift():
    clip = torch.zeros(2, 3, 40, 50)
    clip[:, :, 20, 25] = 1.0
    masks = (clip[:, :1] > 0).to(torch.uint8)
    shifts = set()
    for seed in range(20):
        video_out, mask_out = ClipAugment(rotation=0, pad=4, brightness=0, contrast=0)(clip, masks, np.random.default_rng(seed))
        # float32 affine grids leave ~1e-7 bilinear leakage; the point itself must move whole.
        ys, xs = torch.nonzero(video_out[0, 0] > 1e-4, as_tuple=True)
        assert len(ys) == 1 and video_out[0, 0, ys[0], xs[0]] == pytest.approx(1.0, abs=1e-4)
        assert video_out.sum() == pytest.approx(clip.sum().item(), abs=1e-3)
        dy, dx = int(ys[0]) - 20, int(xs[0]) - 25
        assert abs(dy) <= 4 and abs(dx) <= 4
        assert mask_out[0, 0, ys[0], xs[0]] == 1 and mask_out.sum() == 2
        shifts.add((dy, dx))
    assert len(shifts) > 5


def test_disabled_augmentation_is_identity():
    clip, mask = _clip_and_mask(3)
    for augment in (NO_AUGMENT, ClipAugment(0, 0, 0, 0)):
        assert not augment.enabled
        video_out, mask_out = augment(clip, mask, np.random.default_rng(0))
        assert torch.equal(video_out, clip) and torch.equal(mask_out, mask)


def test_brightness_contrast_keep_range():
    clip, _ = _clip_and_mask(3)
    video_out, none = ClipAugment(rotation=0, pad=0, brightness=0.3, contrast=0.4)(clip, None, np.random.default_rng(4))
    assert none is None and video_out.min() >= 0 and video_out.max() <= 1
    assert not torch.allclose(video_out, clip)


def test_augment_module_has_no_python_loops():
    tree = ast.parse(inspect.getsource(augment_module))
    loops = [type(node).__name__ for node in ast.walk(tree)
             if isinstance(node, (ast.For, ast.While, ast.ListComp, ast.GeneratorExp, ast.DictComp, ast.SetComp))]
    assert loops == []


# ----------------------------------------------------------------------------- datasets


def test_ssl_item_is_normalised_video_of_the_sampled_frames(tmp_path):
    root = traced_dataset(tmp_path, names=("a",))
    index = load_index(root, require_tracings=False)
    dataset = EchoClipDataset(index, ClipSampler(8, period=2), clip="random", cache=FrameCache(tmp_path / "cache"))
    torch.manual_seed(0)
    item = dataset[0]
    assert set(item) == {"video", "file_name", "frame_index"}
    assert item["video"].shape == (3, SIZE, SIZE, 8) and item["video"].dtype == torch.float32
    assert item["frame_index"].dtype == torch.int64 and (torch.diff(item["frame_index"]) == 2).all()
    frames = read_video(root / "Videos" / "a.avi")[item["frame_index"].numpy()]
    mean, std = np.array(ECHONET_MEAN), np.array(ECHONET_STD)
    expected = ((frames / 255.0 - mean) / std).transpose(3, 1, 2, 0)
    np.testing.assert_allclose(item["video"].numpy(), expected, atol=1e-5)


def test_weak_training_items_carry_the_tracings(tmp_path):
    root = traced_dataset(tmp_path, names=("a",))
    record = load_index(root).records[0]
    dataset = EchoClipDataset([record], ClipSampler(8), clip="traced_random", targets="tracings",
                              cache=FrameCache(tmp_path / "cache"))
    ed_mask, es_mask = (tracing_mask(r, SIZE, SIZE) for r in (record.ed_rows, record.es_rows))
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        item = dataset[0]
        assert item["mask"].shape == (1, SIZE, SIZE, 8) and item["mask"].dtype == torch.float32
        assert item["labelled"].dtype == torch.bool and item["phase"].dtype == torch.int64
        index = item["frame_index"].numpy()
        assert item["labelled"].any()
        for t in range(8):
            mask = item["mask"][0, :, :, t].numpy()
            if index[t] == record.ed_frame:
                assert item["labelled"][t] and item["phase"][t] == 1 and np.array_equal(mask, ed_mask)
                seen.add("ED")
            elif index[t] == record.es_frame:
                assert item["labelled"][t] and item["phase"][t] == 2 and np.array_equal(mask, es_mask)
                seen.add("ES")
            else:
                assert not item["labelled"][t] and item["phase"][t] == 0 and mask.sum() == 0
    assert seen == {"ED", "ES"}


def test_weak_eval_gives_ed_then_es_item_per_video(tmp_path):
    root = traced_dataset(tmp_path, names=("a", "b", "c"), splits=["TRAIN", "VAL", "VAL"])
    module = EchoNetDataModule(root, scheme="weak", frames=8, cache_dir=tmp_path / "cache")
    dataset = module.dataset("val", train=False)
    assert len(dataset) == 4
    items = [dataset[i] for i in range(4)]
    assert [item["file_name"] for item in items] == ["b", "b", "c", "c"]
    for item, (code, frame) in zip(items, [(1, 5), (2, 14)] * 2):
        assert item["phase"].tolist().count(code) == 1 and item["labelled"].sum() == 1
        (t,) = torch.nonzero(item["phase"]).flatten().tolist()
        assert item["phase"][t] == code and item["frame_index"][t] == frame and t == 4  # centred
    # Deterministic: evaluation items do not depend on the random state.
    torch.manual_seed(123)
    assert torch.equal(dataset[0]["video"], items[0]["video"])


def test_dense_scheme_uses_the_supplied_targets(tmp_path):
    root = traced_dataset(tmp_path, names=("a", "b"))
    calls = []

    def bright_targets(record, frame_index, frames, phase):
        calls.append(record.file_name)
        return {"mask": (frames[..., 0] > 128).astype(np.uint8), "labelled": np.ones(len(frame_index), bool)}

    module = EchoNetDataModule(root, scheme="dense", frames=8, train_targets=bright_targets, augment=True,
                               cache_dir=tmp_path / "cache")
    batch = next(iter(module.train_dataloader()))
    assert batch["mask"].shape == (2, 1, SIZE, SIZE, 8) and batch["video"].shape == (2, 3, SIZE, SIZE, 8)
    assert batch["labelled"].all() and (batch["phase"] == 0).all() and batch["skipped"].item() == 0
    assert sorted(calls) == ["a", "b"]
    # The pseudo-labels stay on the (augmented) bright pixels.
    bright = (batch["video"][:, 0] * ECHONET_STD[0] + ECHONET_MEAN[0]) > 0.5
    assert dice(bright.numpy(), batch["mask"][:, 0].numpy()) > 0.9


def test_datamodule_weak_batch_and_ssl_keeps_untraced(tmp_path):
    root = traced_dataset(tmp_path, names=("a", "b"))
    write_avi(root / "Videos" / "u.avi", ellipse_video(24, seed=9))
    (root / "FileList.csv").write_text((root / "FileList.csv").read_text() + "u,60,20,50,112,112,50,24,TRAIN\n")
    weak = EchoNetDataModule(root, scheme="weak", frames=8, batch_size=3, cache_dir=tmp_path / "cache")
    batch = next(iter(weak.train_dataloader()))
    assert batch["video"].shape == (2, 3, SIZE, SIZE, 8) and batch["labelled"].any(dim=1).all()
    assert weak.index.skipped["untraced"] == ["u"]
    ssl = EchoNetDataModule(root, scheme="ssl", frames=8, batch_size=3, cache_dir=tmp_path / "cache")
    batch = next(iter(ssl.train_dataloader()))
    assert sorted(batch["file_name"]) == ["a", "b", "u"] and "mask" not in batch


def test_train_videos_subset_is_seeded(tmp_path):
    root = traced_dataset(tmp_path, names=tuple("abcdef"), splits=["TRAIN"] * 5 + ["VAL"])

    def names(**kwargs):
        module = EchoNetDataModule(root, scheme="weak", frames=8, cache_dir=tmp_path / "cache", **kwargs)
        return [r.file_name for r in module.records("train")]

    assert names() == list("abcde")
    two = names(train_videos=2)
    assert len(two) == 2 and set(two) <= set("abcde") and two == names(train_videos=2)
    assert {tuple(names(train_videos=2, subset_seed=s)) for s in range(6)} != {tuple(two)}
    assert names(train_videos=50) == list("abcde")
    with pytest.raises(UserError, match="--train_videos"):
        names(train_videos=0)


def test_external_dirs_join_ssl_training_only(tmp_path):
    root = traced_dataset(tmp_path, names=("a",))
    external = tmp_path / "external"  # synthetic: the same test with or without ../shared
    write_avi(external / "Example1.avi", ellipse_video(30, seed=3))
    write_avi(external / "Example2.avi", ellipse_video(12, seed=4))
    ssl = EchoNetDataModule(root, scheme="ssl", frames=8, external_dirs=[external], cache_dir=tmp_path / "cache")
    records = ssl.records("train")
    assert [r.split for r in records] == ["train"] + ["external"] * len(list(external.glob("*.avi")))
    dataset = ssl.dataset("train", train=True)
    item = dataset[len(dataset) - 1]
    assert item["file_name"] == records[-1].file_name and item["video"].shape == (3, SIZE, SIZE, 8)
    weak = EchoNetDataModule(root, scheme="weak", frames=8, external_dirs=[external], cache_dir=tmp_path / "cache")
    assert [r.split for r in weak.records("train")] == ["train"]


def test_bad_datamodule_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="scheme"):
        EchoNetDataModule(tmp_path, scheme="supervised")
    with pytest.raises(UserError, match="--std"):
        EchoNetDataModule(tmp_path, std=(0.2, 0.0, 0.2))
    with pytest.raises(UserError, match="--mean"):
        EchoNetDataModule(tmp_path, mean=(0.1, 0.1))


# ----------------------------------------------------------------------------- phantom + real data


def test_tiny_phantom_loads_in_every_scheme(tiny_phantom):
    index = load_index(tiny_phantom)
    assert len(index) >= 4 and all(r.traced for r in index.records)
    module = EchoNetDataModule(tiny_phantom, scheme="weak", frames=8, batch_size=2)
    batch = next(iter(module.train_dataloader()))
    assert batch["video"].shape[1:] == (3, SIZE, SIZE, 8) and batch["labelled"].any(dim=1).all()
    for record in index.records[:2]:
        ref = np.load(tiny_phantom / "ReferenceMasks" / f"{record.file_name}.npz")["masks"]
        for frame, rows in ((record.ed_frame, record.ed_rows), (record.es_frame, record.es_rows)):
            assert dice(tracing_mask(rows, SIZE, SIZE), ref[frame]) > 0.9
        assert ref[record.ed_frame].sum() > ref[record.es_frame].sum()


@needs_real_data
def test_real_videos_load_and_tracings_match_reference_masks():
    index = load_index(REAL_MINI)
    assert len(index) == 4 and index.skip_summary() == "none"
    assert sorted(r.split for r in index.records) == ["test", "train", "train", "val"]
    cache = FrameCache(None)
    for record in index.records:
        video = cache.frames(record.path)
        assert video.shape == (record.n_frames, SIZE, SIZE, 3) and video.dtype == np.uint8
        reference = np.load(REAL_MINI / "ReferenceMasks" / f"{record.file_name}.npz")["masks"]
        assert reference.shape[0] == len(video)
        ed = tracing_mask(record.ed_rows, record.height, record.width)
        es = tracing_mask(record.es_rows, record.height, record.width)
        assert dice(ed, reference[record.ed_frame]) >= 0.9
        assert dice(es, reference[record.es_frame]) >= 0.9
        assert ed.sum() > es.sum()


@needs_real_data
def test_real_data_weak_eval_items(tmp_path):
    module = EchoNetDataModule(REAL_MINI, scheme="weak", frames=16, cache_dir=tmp_path / "cache")
    dataset = module.dataset("test", train=False)
    assert len(dataset) == 2
    record = module.records("test")[0]
    for i, (code, frame) in enumerate([(1, record.ed_frame), (2, record.es_frame)]):
        item = dataset[i]
        (t,) = torch.nonzero(item["phase"]).flatten().tolist()
        assert item["phase"][t] == code and item["frame_index"][t] == frame
        assert item["mask"][0, :, :, t].sum() > 100


def test_long_stacks_beyond_opencv_channel_limit_warp_the_same():
    from unilvseg.data.augment import Transform, _warp_stack_torch, warp_stack

    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (40, 50, 600), dtype=np.uint8)  # 200 RGB frames
    matrix = Transform(angle=0.3, shift=(3, -2)).matrix(40, 50)
    assert warp_stack(stack, matrix).shape == stack.shape  # no OpenCV channel error
    small = stack[..., :12]
    for nearest in (False, True):
        opencv, torch_path = warp_stack(small, matrix, nearest).astype(int), _warp_stack_torch(small, matrix, nearest).astype(int)
        interior = np.abs(opencv - torch_path)[3:-3, 3:-3]
        # OpenCV interpolates with 1/32-pixel fixed-point weights; nearest may round a tie the other way.
        assert np.median(interior) <= 1 and (interior <= 8).mean() > 0.97


def test_nearest_resize_of_masks_keeps_them_centred():
    from unilvseg.data.video import resize_frames

    mask = np.zeros((1, 112, 112), np.uint8)
    mask[0, 40:80, 30:70] = 1
    small = resize_frames(mask, (64, 64), nearest=True)[0]
    ys, xs = np.nonzero(small)
    # Pixel centres of the 64-grid in 112-grid coordinates: (i + 0.5) * 112 / 64 - 0.5.
    centre = ((ys.mean() + 0.5) * 112 / 64 - 0.5, (xs.mean() + 0.5) * 112 / 64 - 0.5)
    assert abs(centre[0] - 59.5) < 0.45 and abs(centre[1] - 49.5) < 0.45
    back = resize_frames(small[None], (112, 112), nearest=True)[0]
    ys, xs = np.nonzero(back)
    assert abs(ys.mean() - 59.5) < 0.6 and abs(xs.mean() - 49.5) < 0.6


def test_loader_path_and_tensor_path_apply_the_same_transform():
    """``clip_from_frames`` (uint8 straight from the cache, what the dataset runs) and the tensor
    ``__call__`` (float clips) draw and apply the same transform; the tests above hold for both."""
    clip, mask = _clip_and_mask(4)
    frames = (clip.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()  # (T, H, W, 3)
    augment = ClipAugment()
    for seed in range(4):
        video_a, mask_a = augment(clip, mask, np.random.default_rng(seed))  # (T, 3, H, W)
        video_b, mask_b = augment.clip_from_frames(frames, mask.numpy(), np.random.default_rng(seed))  # (3, H, W, T)
        assert video_b.shape == (3, SIZE, SIZE, 4) and mask_b.shape == (1, SIZE, SIZE, 4)
        assert torch.equal(mask_b.permute(3, 0, 1, 2), mask_a)
        # uint8 interpolation rounds to 1/255 (and OpenCV's 1/32-pixel weights): a few levels at most.
        assert (video_b.permute(3, 0, 1, 2) - video_a).abs().max() < 6 / 255


# ----------------------------------------------------------------------------- padding and resizing


def test_padded_clip_labels_a_last_traced_frame_once(tmp_path):
    """A 6-frame video traced at its last frame, in a 10-frame clip: the padded indices repeat
    frame 5 five times, but the loss must see that tracing once (phase ED, one labelled slot)."""
    video = ellipse_video(6)
    rows = tracing_rows("short", 2, **SMALL) + tracing_rows("short", 5, **BIG)
    root = write_echonet(tmp_path, {"short": video}, rows)
    record = load_index(root).records[0]
    assert (record.ed_frame, record.es_frame) == (5, 2)
    frame_index = ClipSampler(10).centred_clip(6, 5)
    assert list(frame_index) == [0, 1, 2, 3, 4, 5, 5, 5, 5, 5]
    targets = TracingTargets((SIZE, SIZE))(record, frame_index, None, None)
    assert np.flatnonzero(targets["labelled"]).tolist() == [2, 5]
    assert targets["phase"].tolist() == [0, 0, 2, 0, 0, 1, 0, 0, 0, 0]
    assert targets["mask"][6:].sum() == 0 and targets["mask"][5].sum() > 0


@pytest.mark.parametrize("height,width,gray,crlf_bom", [(64, 64, True, False), (120, 160, False, True), (160, 120, True, True)])
def test_frames_and_tracing_masks_are_resized_together(tmp_path, height, width, gray, crlf_bom):
    """Odd video sizes (the hostile 'works' cases): the LV drawn in the video and its tracing
    land on the same pixels of the 112x112 clip. An off-centre, elongated LV catches a transposed
    or unscaled mask; BOM/CRLF CSVs must give the same tracing."""
    centre, radii = (0.4 * width, 0.55 * height), (0.18 * width, 0.3 * height)
    yy, xx = np.mgrid[:height, :width]
    inside = ((xx - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 <= 1
    frames = np.where(inside, 220, 20).astype(np.uint8)[None].repeat(12, axis=0)
    video = frames if gray else np.stack([frames, frames, frames], axis=-1)
    rows = tracing_rows("odd", 3, centre, (radii[0] * 0.6, radii[1] * 0.6)) + tracing_rows("odd", 8, centre, radii)
    if crlf_bom:
        text = "\ufeff" + "\r\n".join(["FileName,X1,Y1,X2,Y2,Frame"] + [",".join(map(str, r)) for r in rows]) + "\r\n"
        root = write_echonet(tmp_path, {"odd": video}, text)
    else:
        root = write_echonet(tmp_path, {"odd": video}, rows)
    record = load_index(root).records[0]
    assert (record.height, record.width, record.ed_frame) == (height, width, 8)
    dataset = EchoClipDataset([record], ClipSampler(4), clip="traced_centred", targets="tracings",
                              cache=FrameCache(tmp_path / "cache"), mean=(0, 0, 0), std=(1, 1, 1))
    items = [dataset[i] for i in range(len(dataset))]
    item = next(i for i in items if (i["phase"] == 1).any())
    slot = int(np.flatnonzero(item["phase"].numpy() == 1)[0])
    mask = item["mask"][0, :, :, slot].numpy() > 0
    bright = item["video"][0, :, :, slot].numpy() > 0.5
    assert mask.shape == bright.shape == (SIZE, SIZE)
    assert dice(mask, bright) > 0.95
    # The same tracing rasterised at the video's own size and resized by hand.
    own = tracing_mask(record.ed_rows, height, width)
    import cv2

    by_hand = cv2.resize(own.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 0
    assert dice(mask, by_hand) > 0.97
