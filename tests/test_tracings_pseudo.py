"""Weak training on tracings plus label-free pseudo-labels (train_weak.py --labels tracings+pseudo)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tracing_rows, write_echonet

from unilvseg.io import save_npz

FRAMES, SIZE = 12, 32
ED, ES = 2, 7
FAILED_QC = (5, 7, 9)  # frame 7 is traced (ES): the tracing must win over the failed pseudo-label


def _folder(tmp_path):
    """``traced`` (TRAIN, ED frame 2, ES frame 7), ``plain`` (TRAIN, untraced), ``checked`` (VAL, traced)."""
    rng = np.random.default_rng(0)
    videos = {name: rng.integers(0, 255, (FRAMES, SIZE, SIZE), dtype=np.uint8) for name in ("traced", "plain", "checked")}
    rows = []
    for name in ("traced", "checked"):
        rows += tracing_rows(name, ES, (16, 16), (5, 8)) + tracing_rows(name, ED, (16, 15), (8, 11))
    filelist = [{"FileName": "traced"}, {"FileName": "plain"}, {"FileName": "checked", "Split": "VAL"}]
    return write_echonet(tmp_path, videos, rows, filelist)


def _pseudo_labels(folder):
    """A finished label round: every frame a square (unlike any tracing), FAILED_QC frames failed."""
    label_dir = folder.parent / "labels" / "round1"
    square = np.zeros((FRAMES, SIZE, SIZE), np.uint8)
    square[:, 4:12, 20:28] = 1
    passed = np.ones(FRAMES, bool)
    passed[list(FAILED_QC)] = False
    for name in ("traced", "plain", "checked"):
        save_npz(label_dir / f"{name}.npz", masks=square, passed=passed)
    label_dir.joinpath("summary.json").write_text(json.dumps({"pass_rate": float(passed.mean())}))
    return label_dir, square[0], passed


def _records(folder):
    from unilvseg.data.index import load_index

    return load_index(folder, require_tracings=False).by_name()


def test_tracing_wins_on_traced_frames_and_failed_qc_frames_stay_unlabelled(tmp_path):
    from unilvseg.data.dataset import TracingsFirstTargets
    from unilvseg.data.tracings import tracing_mask
    from unilvseg.labelfree.pipeline import PseudoLabelTargets

    folder = _folder(tmp_path)
    label_dir, square, passed = _pseudo_labels(folder)
    records = _records(folder)
    targets = TracingsFirstTargets(PseudoLabelTargets(label_dir, (SIZE, SIZE)), (SIZE, SIZE))
    frame_index = np.arange(FRAMES)
    out = targets(records["traced"], frame_index, None, None)

    expected_labelled = passed.copy()
    expected_labelled[[ED, ES]] = True
    np.testing.assert_array_equal(out["labelled"], expected_labelled)
    assert not out["labelled"][5] and not out["labelled"][9]  # failed QC, untraced: not trained on
    traced = records["traced"]
    np.testing.assert_array_equal(out["mask"][ED], tracing_mask(traced.ed_rows, SIZE, SIZE))
    np.testing.assert_array_equal(out["mask"][ES], tracing_mask(traced.es_rows, SIZE, SIZE))
    assert out["mask"][ED].sum() > out["mask"][ES].sum() > 0
    for frame in sorted(set(range(FRAMES)) - {ED, ES}):
        np.testing.assert_array_equal(out["mask"][frame], square)
    expected_phase = np.zeros(FRAMES, np.int64)
    expected_phase[ED], expected_phase[ES] = 1, 2
    np.testing.assert_array_equal(out["phase"], expected_phase)

    # A clip without traced frames, in a traced video: pseudo-labels only.
    clip = np.array([3, 4, 5, 6])
    out = targets(traced, clip, None, None)
    np.testing.assert_array_equal(out["labelled"], passed[clip])
    assert not out["phase"].any()

    # An untraced video: exactly its pseudo-labels.
    pseudo = PseudoLabelTargets(label_dir, (SIZE, SIZE))(records["plain"], frame_index, None, None)
    out = targets(records["plain"], frame_index, None, None)
    for key in ("mask", "labelled", "phase"):
        np.testing.assert_array_equal(out[key], pseudo[key])


def test_clips_of_traced_videos_hold_a_traced_frame_and_untraced_videos_train_too(tmp_path):
    from unilvseg.data.clips import ClipSampler
    from unilvseg.data.dataset import EchoClipDataset, TracingsFirstTargets
    from unilvseg.labelfree.pipeline import PseudoLabelTargets

    folder = _folder(tmp_path)
    label_dir, _, _ = _pseudo_labels(folder)
    records = _records(folder)
    targets = TracingsFirstTargets(PseudoLabelTargets(label_dir, (SIZE, SIZE)), (SIZE, SIZE))
    dataset = EchoClipDataset(
        [records["traced"], records["plain"]], ClipSampler(4), clip="traced_or_random", targets=targets,
        size=(SIZE, SIZE), seed=0,
    )
    assert len(dataset) == 2
    starts = set()
    for epoch in range(8):
        traced, plain = dataset[(epoch, 0)], dataset[(epoch, 1)]
        assert {ED, ES} & set(traced["frame_index"].tolist())
        assert traced["phase"].max() > 0
        assert plain["file_name"] == "plain" and not plain["phase"].any()
        starts.add(int(plain["frame_index"][0]))
    assert len(starts) > 1  # untraced videos' clips are placed anywhere


def test_train_weak_builds_the_combined_data_and_refuses_bad_flags(tmp_path, capsys):
    from unilvseg.cli.train import build_weak, main_weak, weak_parser

    folder = _folder(tmp_path)
    label_dir, _, _ = _pseudo_labels(folder)
    base = ["--data_path", str(folder), "--encoder", "3d_unet_tiny", "--frames", "16", "--cache_dir", "null"]
    args = weak_parser().parse_args(base + ["--labels", "tracings+pseudo", "--pseudo_labels", str(label_dir)])
    _, datamodule = build_weak(args)
    train = datamodule.dataset("train", train=True)
    assert sorted(item.record.file_name for item in train.items) == ["plain", "traced"]
    assert [item.record.file_name for item in datamodule.dataset("val", train=False).items] == ["checked", "checked"]
    _, plain_weak = build_weak(weak_parser().parse_args(base))
    assert [item.record.file_name for item in plain_weak.dataset("train", train=True).items] == ["traced"]

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for flags, message in (
        (["--labels", "tracings+pseudo"], "needs --pseudo_labels"),
        (["--labels", "tracings+pseudo", "--pseudo_labels", str(unfinished)], "not a finished label round"),
        (["--pseudo_labels", str(label_dir)], "only with --labels tracings+pseudo"),
        (["--labels", "masks"], "--labels 'masks'"),
    ):
        assert main_weak(base + flags + ["--run_dir", str(tmp_path / "run")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_size_flag_sets_the_training_size_and_checks_it(tmp_path, capsys):
    from unilvseg.cli.train import build_weak, main_weak, weak_parser

    folder = _folder(tmp_path)
    base = ["--data_path", str(folder), "--encoder", "3d_unet_tiny", "--frames", "16", "--cache_dir", "null"]
    _, datamodule = build_weak(weak_parser().parse_args(base + ["--size", "48", "48"]))
    item = datamodule.dataset("train", train=True)[(0, 0)]
    assert item["video"].shape == (3, 48, 48, 16) and item["mask"].shape == (1, 48, 48, 16)
    assert item["mask"].sum() > 0  # the tracing, drawn at the training size
    assert main_weak(base + ["--size", "40", "40", "--run_dir", str(tmp_path / "run")]) == 2
    assert "image height" in capsys.readouterr().err and not (tmp_path / "run").exists()
