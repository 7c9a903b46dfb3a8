"""Full-video prediction: window averaging, outputs of predict.py, re-runs and interrupted runs."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REAL_EXTERNAL, REAL_MINI, needs_real_data, write_avi
from unilvseg.data.clips import ClipSampler
from unilvseg.data.index import load_index
from unilvseg.data.video import read_video
from unilvseg.errors import UserError
from unilvseg.evaluation.inference import predict_video, resize_stack
from unilvseg.evaluation.overlay import draw_outline, mask_outline, write_overlay
from unilvseg.evaluation.volumes import volumes_from_masks

FRAMES = 16


# -- fakes and fixtures --------------------------------------------------------------------------
class PositionNetwork(torch.nn.Module):
    """Logit = 0.25 * (position of the frame inside its window) - 2, the same at every pixel."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        b, _, h, w, t = x.shape
        position = torch.arange(t, dtype=torch.float32, device=x.device)
        return (0.25 * position - 2).expand(b, 1, h, w, t).clone()


class FirstChannelNetwork(torch.nn.Module):
    """Logit = the normalised input's first channel (checks normalisation and frame routing)."""

    def forward(self, x):
        return x[:, :1].clone()


def expected_overlap_average(n_frames: int, frames: int, stride: int) -> np.ndarray:
    """Per frame, the mean sigmoid(position logit) over every window slot that holds it, by loops.

    Windows start at 0, stride, 2*stride, ...; the last starts at n_frames - frames so it ends
    with the video; a video shorter than a window repeats its last frame.
    """
    last = max(n_frames - frames, 0)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    votes = [[] for _ in range(n_frames)]
    for start in starts:
        for position in range(frames):
            frame = min(start + position, n_frames - 1)
            votes[frame].append(1 / (1 + np.exp(-(0.25 * position - 2))))
    return np.array([np.mean(v) for v in votes], dtype=np.float32)


def random_video(n_frames: int, height: int = 8, width: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n_frames, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def weak_checkpoint(tiny_phantom, tmp_path_factory) -> Path:
    """A real weak-segmentation checkpoint: 3d_unet_tiny fitted for one step on the phantom."""
    import lightning as L

    from unilvseg.data.dataset import EchoNetDataModule
    from unilvseg.tasks.weak import WeakSegmentationTask

    L.seed_everything(0, verbose=False)
    task = WeakSegmentationTask(encoder="3d_unet_tiny", frames=FRAMES)
    data = EchoNetDataModule(tiny_phantom, scheme="weak", frames=FRAMES, batch_size=2, augment=False, cache_dir=None)
    trainer = L.Trainer(
        max_steps=1, limit_val_batches=0, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(task, datamodule=data)
    path = tmp_path_factory.mktemp("checkpoints") / "weak.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def ssl_checkpoint(tmp_path_factory) -> Path:
    from unilvseg.tasks.ssl import TemporalMaskingTask

    task = TemporalMaskingTask(encoder="3d_unet_tiny", frames=FRAMES)
    path = tmp_path_factory.mktemp("checkpoints") / "ssl.ckpt"
    torch.save(
        {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "unilvseg_task": task.task_name}, path
    )
    return path


def run_predict(*argv, native_size: bool = False) -> int:
    """predict.py on CPU; the network sees 32x32 frames unless ``native_size`` (15x less work,
    and the masks still come back at the videos' own 112x112)."""
    from unilvseg.cli.predict import main

    fast = [] if native_size else ["--size", "32", "32"]
    return main([str(a) for a in argv] + ["--device", "cpu"] + fast)


@pytest.fixture
def unilvseg_log(caplog):
    """caplog for the ``unilvseg`` logger."""
    import logging

    logger = logging.getLogger("unilvseg")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def external_folder(tiny_phantom: Path, folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for video in sorted((tiny_phantom / "Videos").glob("*.avi"))[:count]:
        shutil.copy(video, folder / video.name)
    return folder


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".tmp-*")]


# -- the core: predict_video ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "n_frames,frames,stride,batch_size",
    [(37, 16, 8, 3), (40, 16, 16, 2), (50, 16, 5, 4), (10, 16, 8, 2), (16, 16, 3, 1), (33, 8, 3, 7)],
)
def test_overlapping_windows_average_probabilities_exactly(n_frames, frames, stride, batch_size):
    network = PositionNetwork()
    probabilities = predict_video(network, random_video(n_frames), frames, stride, batch_size, device="cpu")
    assert probabilities.shape == (n_frames, 8, 8) and probabilities.dtype == np.float32
    expected = expected_overlap_average(n_frames, frames, stride)
    np.testing.assert_allclose(probabilities, np.broadcast_to(expected[:, None, None], probabilities.shape), rtol=0, atol=1e-6)
    # Windows were batched: no forward pass bigger than batch_size, all windows seen once.
    n_windows = len(ClipSampler(frames).windows(n_frames, stride))
    assert all(shape[0] <= batch_size for shape in network.calls)
    assert sum(shape[0] for shape in network.calls) == n_windows
    assert len(network.calls) == -(-n_windows // batch_size)


def test_batch_size_does_not_change_the_result():
    video = random_video(45, seed=1)
    one = predict_video(FirstChannelNetwork(), video, 16, 5, batch_size=1, device="cpu")
    many = predict_video(FirstChannelNetwork(), video, 16, 5, batch_size=6, device="cpu")
    np.testing.assert_array_equal(one, many)


@pytest.mark.parametrize("n_frames", [1, 7, 16, 17, 31, 64, 65, 100])
@pytest.mark.parametrize("stride", [1, 5, 8, 16])
def test_every_frame_is_covered(n_frames, stride):
    windows = ClipSampler(16).windows(n_frames, stride)
    assert set(windows.ravel().tolist()) == set(range(n_frames))
    assert (windows.max(axis=1) <= n_frames - 1).all()


def test_stride_longer_than_a_clip_is_refused():
    with pytest.raises(UserError, match="--stride 17"):
        predict_video(PositionNetwork(), random_video(40), 16, 17, device="cpu")
    with pytest.raises(UserError, match="--stride 0"):
        predict_video(PositionNetwork(), random_video(40), 16, 0, device="cpu")


def test_normalisation_reaches_the_network_frame_by_frame():
    values = np.arange(20, dtype=np.uint8) * 12  # each frame a different gray level
    video = np.broadcast_to(values[:, None, None, None], (20, 8, 8, 3)).copy()
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    probabilities = predict_video(FirstChannelNetwork(), video, 8, 3, 4, mean, std, device="cpu")
    expected = 1 / (1 + np.exp(-((values / 255.0 - mean[0]) / std[0])))
    np.testing.assert_allclose(probabilities[:, 3, 5], expected, atol=1e-5)


def test_other_video_sizes_are_resized_for_the_network_and_back():
    height, width, n_frames = 60, 44, 20
    # The first channel is a left-to-right ramp: the network's output must keep that direction.
    ramp = np.linspace(0, 255, width).astype(np.uint8)
    video = np.broadcast_to(ramp[None, None, :, None], (n_frames, height, width, 3)).copy()
    seen = []

    class Recorder(FirstChannelNetwork):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return super().forward(x)

    probabilities = predict_video(Recorder(), video, 8, 4, 2, device="cpu", size=(32, 32))
    assert probabilities.shape == (n_frames, height, width)
    assert all(shape[2:] == (32, 32, 8) for shape in seen)
    row = probabilities[5, height // 2]
    assert row[-1] > row[width // 2] > row[0]
    expected = 1 / (1 + np.exp(-ramp.astype(np.float64) / 255.0))
    np.testing.assert_allclose(row, expected, atol=0.03)  # area-down then linear-up interpolation


def test_resize_stack_matches_per_frame_cv2():
    video = random_video(5, 30, 20)
    resized = resize_stack(video, (12, 16), cv2.INTER_AREA)
    reference = np.stack([cv2.resize(frame, (16, 12), interpolation=cv2.INTER_AREA) for frame in video])
    np.testing.assert_array_equal(resized, reference)
    assert resize_stack(video, (30, 20)) is video


# -- overlays ------------------------------------------------------------------------------------
def test_outline_is_the_mask_border(tmp_path):
    masks = np.zeros((3, 10, 12), dtype=np.uint8)
    masks[1, 2:7, 3:9] = 1  # a 5 x 6 rectangle: its border ring has 2*5 + 2*6 - 4 = 18 pixels
    masks[2, :4, :4] = 1  # touching the image corner: the image edge is outlined too
    outline = mask_outline(masks)
    assert outline[0].sum() == 0
    assert outline[1].sum() == 18 and not outline[1, 3:6, 4:8].any()
    assert outline[2].sum() == 12 and outline[2, 0, 0] and not outline[2, 1:3, 1:3].any()
    frames = np.full((3, 10, 12, 3), 40, dtype=np.uint8)
    painted = draw_outline(frames, masks, colour=(255, 0, 0))
    changed = (painted != frames).any(axis=-1)
    np.testing.assert_array_equal(changed, outline)
    assert (painted[outline] == (255, 0, 0)).all()
    gif = write_overlay(tmp_path / "o.gif", frames, masks, fps=25)
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames == 3 and image.size == (12, 10)


# -- predict.py end to end -----------------------------------------------------------------------
def test_predict_writes_every_output(tiny_phantom, weak_checkpoint, tmp_path):
    save = tmp_path / "out"
    assert run_predict("--data_path", tiny_phantom, "--split", "all", "--checkpoint", weak_checkpoint,
                       "--save_dir", save, "--overlay", "--batch_size", "4") == 0
    index = load_index(tiny_phantom, require_tracings=False)
    size = pd.read_csv(save / "size.csv", keep_default_na=False, dtype={"Traced": str})
    volumes = pd.read_csv(save / "volumes.csv")
    assert list(size.columns) == ["FileName", "Frame", "Area", "Traced"]
    assert list(volumes.columns) == [
        "FileName", "EDV", "ESV", "EF", "EDFrame", "ESFrame", "EFSD", "Beats", "EFRule", "BeatEFs", "BeatFrames",
    ]
    total = 0
    for record in index.records:
        video = read_video(record.path)
        total += len(video)
        with np.load(save / "masks" / f"{record.file_name}.npz") as stored:
            masks = stored["masks"]
        assert masks.shape == video.shape[:3] and masks.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1}
        rows = size[size.FileName == record.file_name]
        np.testing.assert_array_equal(rows.Frame, np.arange(len(video)))
        np.testing.assert_array_equal(rows.Area, masks.sum(axis=(1, 2)))
        traced = rows[rows.Traced != ""]
        assert dict(zip(traced.Traced, traced.Frame)) == {"ED": record.ed_frame, "ES": record.es_frame}
        for phase, frame in record.traced_frames.items():
            png = cv2.imread(str(save / f"{record.file_name}_{frame}_{phase}.png"), cv2.IMREAD_UNCHANGED)
            assert png.shape == video.shape[1:3] and set(np.unique(png)) <= {0, 255}
            np.testing.assert_array_equal(png, masks[frame] * 255)
        overlay = read_video(save / "overlays" / f"{record.file_name}.avi")
        assert overlay.shape == video.shape
        row = volumes[volumes.FileName == record.file_name].iloc[0]
        expected = volumes_from_masks(masks, fps=record.fps)  # the evaluation module's definition of ED/ES/EF
        assert (int(row.EDFrame), int(row.ESFrame)) == (expected["ed_frame"], expected["es_frame"])
        assert row.EFRule == expected["rule"] and int(row.Beats) == expected["beats"]
        np.testing.assert_allclose([row.EDV, row.ESV, row.EF], [expected["edv"], expected["esv"], expected["ef"]], atol=1e-3)
    assert len(size) == total
    assert len(volumes) == len(index.records)
    assert not temporaries(save)


def test_rerun_skips_done_videos_and_overwrite_redoes_them(tiny_phantom, weak_checkpoint, tmp_path):
    save = tmp_path / "out"
    base = ["--data_path", tiny_phantom, "--split", "val", "--checkpoint", weak_checkpoint, "--save_dir", save]
    assert run_predict(*base) == 0
    (record,) = load_index(tiny_phantom, split="val", require_tracings=False).records
    outputs = [save / "masks" / f"{record.file_name}.npz", save / f"{record.file_name}_{record.ed_frame}_ED.png"]
    old = 1_000_000_000  # an mtime no write of this test can produce
    for path in outputs:
        os.utime(path, (old, old))
    size_before = (save / "size.csv").read_text()

    assert run_predict(*base) == 0
    assert all(path.stat().st_mtime == old for path in outputs)
    assert (save / "size.csv").read_text() == size_before

    assert run_predict(*base, "--overwrite") == 0
    assert all(path.stat().st_mtime > old for path in outputs)
    assert (save / "size.csv").read_text() == size_before  # same checkpoint, same masks


def test_settings_change_needs_overwrite(tiny_phantom, weak_checkpoint, tmp_path, capsys):
    save = tmp_path / "out"
    folder = external_folder(tiny_phantom, tmp_path / "videos", count=1)
    assert run_predict("--external_dir", folder, "--checkpoint", weak_checkpoint, "--save_dir", save) == 0
    assert run_predict("--external_dir", folder, "--checkpoint", weak_checkpoint, "--save_dir", save, "--stride", "4") == 2
    assert "stride: 8 -> 4" in capsys.readouterr().err
    assert run_predict("--external_dir", folder, "--checkpoint", weak_checkpoint, "--save_dir", save, "--stride", "4", "--overwrite") == 0


def test_external_folder_with_a_broken_video(tiny_phantom, weak_checkpoint, tmp_path, unilvseg_log):
    folder = external_folder(tiny_phantom, tmp_path / "videos", count=2)
    (folder / "broken.avi").write_bytes(b"this is not a video" * 10)
    save = tmp_path / "out"
    assert run_predict("--external_dir", folder, "--checkpoint", weak_checkpoint, "--save_dir", save) == 0
    names = sorted(p.stem for p in folder.glob("0X*.avi"))
    assert sorted(p.stem for p in (save / "masks").glob("*.npz")) == names
    size = pd.read_csv(save / "size.csv", keep_default_na=False, dtype={"Traced": str})
    assert len(size) == sum(len(read_video(folder / f"{n}.avi")) for n in names)
    assert (size.Traced == "").all() and not list(save.glob("*.png"))
    assert "skipping broken" in unilvseg_log.text and "could not be decoded (1): broken" in unilvseg_log.text


def test_nothing_predictable_is_an_error(weak_checkpoint, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.avi").write_bytes(b"garbage" * 20)
    assert run_predict("--external_dir", folder, "--checkpoint", weak_checkpoint, "--save_dir", tmp_path / "out") == 2
    assert "error: no video could be predicted" in capsys.readouterr().err


def test_single_video_to_npz_at_its_own_size(weak_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (20, 96, 80), dtype=np.uint8)
    path = write_avi(tmp_path / "odd.avi", video)
    out = tmp_path / "pred" / "odd.npz"
    assert run_predict("--video_path", path, "--save_path", out, "--checkpoint", weak_checkpoint, "--overlay",
                       "--overlay_format", "gif", native_size=True) == 0
    with np.load(out) as stored:
        assert stored["masks"].shape == (20, 96, 80) and stored["masks"].dtype == np.uint8
        np.testing.assert_array_equal(stored["areas"], stored["masks"].sum(axis=(1, 2)))
        assert {"edv", "esv", "ef", "ed_frame", "es_frame"} <= set(stored.files)
    assert (tmp_path / "pred" / "odd.gif").is_file()


def test_default_source_is_the_phantom(tiny_phantom, weak_checkpoint, tmp_path, monkeypatch):
    from unilvseg.data import phantom

    monkeypatch.setattr(phantom, "default_data_path", lambda *a, **k: tiny_phantom)
    save = tmp_path / "out"
    assert run_predict("--checkpoint", weak_checkpoint, "--save_dir", save) == 0
    (record,) = load_index(tiny_phantom, split="test", require_tracings=False).records
    assert [p.stem for p in (save / "masks").glob("*.npz")] == [record.file_name]


def test_interrupted_run_is_completed_and_cleaned(tiny_phantom, weak_checkpoint, tmp_path):
    folder = external_folder(tiny_phantom, tmp_path / "videos", count=2)
    save = tmp_path / "out"
    args = ["--external_dir", folder, "--checkpoint", weak_checkpoint, "--save_dir", save]
    assert run_predict(*args) == 0
    first, second = sorted(p.stem for p in folder.glob("*.avi"))
    complete_size = (save / "size.csv").read_text()
    # A run killed mid-way: first video's part never written, second video not finished at all,
    # half-written temporaries lying around, summary tables out of date.
    (save / "parts" / f"{first}.csv").unlink()
    (save / "masks" / f"{second}.npz").unlink()
    (save / "parts" / f"{second}.csv").unlink()
    (save / "masks" / f".tmp-{second}.npz-1234abcd.npz").write_bytes(b"partial")
    (save / "parts" / f".tmp-{second}.csv-99887766.csv").write_text("FileName,Fr")
    (save / "size.csv").write_text("FileName,Frame,Area,Traced\n")
    old = 1_000_000_000
    os.utime(save / "masks" / f"{first}.npz", (old, old))

    assert run_predict(*args) == 0
    assert not temporaries(save)
    assert (save / "masks" / f"{first}.npz").stat().st_mtime == old  # restored from masks, not redone
    assert (save / "parts" / f"{first}.csv").is_file() and (save / "masks" / f"{second}.npz").is_file()
    assert (save / "size.csv").read_text() == complete_size
    assert len(pd.read_csv(save / "volumes.csv")) == 2


def test_ssl_checkpoint_is_a_clear_error(tiny_phantom, ssl_checkpoint, tmp_path, capsys):
    assert run_predict("--data_path", tiny_phantom, "--checkpoint", ssl_checkpoint, "--save_dir", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "temporal_masking" in err and "train_weak.py" in err
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint_is_a_clear_error(tiny_phantom, tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    assert run_predict("--data_path", tiny_phantom, "--checkpoint", missing, "--save_dir", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.ckpt" in err and "not found" in err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--external_dir", "x", "--video_path", "y.avi", "--save_dir", "s"], "only one of"),
        (["--video_path", "y.avi", "--save_path", "y.txt"], "must end in .npz"),
        (["--save_path", "y.npz"], "--save_path needs --video_path"),
        (["--data_path", "d"], "--save_dir is required"),
        (["--save_dir", "s", "--stride", "17"], "--stride 17"),
        (["--save_dir", "s", "--threshold", "1.5"], "--threshold"),
        (["--save_dir", "s", "--external_dir", "x", "--split", "val"], "--split applies"),
        (["--save_dir", "s", "--device", "tpu"], "--device 'tpu'"),
    ],
)
def test_flag_mistakes_are_clear_errors(weak_checkpoint, tmp_path, capsys, extra, message, monkeypatch):
    from unilvseg.cli.predict import main

    monkeypatch.chdir(tmp_path)
    assert main(["--checkpoint", str(weak_checkpoint), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_help_documents_the_pixel_spacing(capsys):
    from unilvseg.cli.predict import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "mm per pixel" in text and "--mm_per_pixel" in text and "EF is a ratio" in text


@needs_real_data
def test_real_echonet_and_external_videos(weak_checkpoint, tmp_path):
    save = tmp_path / "real"
    assert run_predict("--data_path", REAL_MINI, "--split", "all", "--checkpoint", weak_checkpoint, "--save_dir", save) == 0
    index = load_index(REAL_MINI, require_tracings=False)
    size = pd.read_csv(save / "size.csv", keep_default_na=False, dtype={"Traced": str})
    assert len(size) == sum(len(read_video(r.path)) for r in index.records)
    assert (size.Traced == "ED").sum() == (size.Traced == "ES").sum() == len(index.records)
    external = tmp_path / "external"
    assert run_predict("--external_dir", REAL_EXTERNAL, "--checkpoint", weak_checkpoint, "--save_dir", external) == 0
    with np.load(external / "masks" / "Example1.npz") as stored:
        assert stored["masks"].shape == read_video(REAL_EXTERNAL / "Example1.avi").shape[:3]


class _NanUnderAutocast(torch.nn.Module):
    """Logit 1 everywhere, except NaN when run under CPU autocast (a misbehaving bf16 kernel)."""

    def forward(self, x):
        b, _, h, w, t = x.shape
        value = float("nan") if torch.is_autocast_enabled("cpu") else 1.0
        return torch.full((b, 1, h, w, t), value)


def test_non_finite_bf16_windows_are_recomputed_in_float32(caplog):
    from unilvseg.evaluation.inference import predict_video

    video = np.zeros((10, 16, 16, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="unilvseg"):
        probabilities = predict_video(_NanUnderAutocast(), video, 4, stride=4, device="cpu", amp=True)
    assert np.isfinite(probabilities).all() and np.allclose(probabilities, 1 / (1 + np.exp(-1.0)))
    assert "recomputed in float32" in caplog.text


def test_default_precision_is_float32_on_cpu_and_bf16_only_where_native(monkeypatch):
    from unilvseg import hardware

    assert hardware.default_precision("cpu") == "32-true"  # CPU training stays reproducible
    monkeypatch.setenv(hardware.CPU_BF16_ENV, "0")
    assert not hardware.bf16_is_fast("cpu")
    monkeypatch.setenv(hardware.CPU_BF16_ENV, "1")
    assert hardware.bf16_is_fast("cpu")
    from unilvseg.evaluation.inference import default_batch_size

    assert default_batch_size("cpu") == 1 and default_batch_size("cuda") == 8


def test_ed_es_rule_flag_is_recorded_and_guarded(tiny_phantom, weak_checkpoint, tmp_path):
    save = tmp_path / "out"
    base = ["--data_path", tiny_phantom, "--split", "val", "--checkpoint", weak_checkpoint, "--save_dir", save]
    assert run_predict(*base, "--ed_es_rule", "extremes") == 0
    (record,) = load_index(tiny_phantom, split="val", require_tracings=False).records
    with np.load(save / "masks" / f"{record.file_name}.npz") as stored:
        masks = stored["masks"]
    row = pd.read_csv(save / "volumes.csv").iloc[0]
    expected = volumes_from_masks(masks, rule="extremes", fps=record.fps)
    assert row.EFRule == "extremes" and (int(row.EDFrame), int(row.ESFrame)) == (expected["ed_frame"], expected["es_frame"])
    assert json.loads((save / "run.json").read_text())["ed_es_rule"] == "extremes"
    # Another rule on the same folder changes the outputs: refused without --overwrite.
    assert run_predict(*base) == 2
    # A part written before the beat columns existed (an older run) still assembles.
    part = save / "parts" / f"{record.file_name}.csv"
    pd.read_csv(part).drop(columns=["EFSD", "Beats", "EFRule", "BeatEFs", "BeatFrames"]).to_csv(part, index=False)
    assert run_predict(*base, "--ed_es_rule", "extremes") == 0
    assert pd.read_csv(save / "volumes.csv").iloc[0].EF == pytest.approx(row.EF, abs=1e-3)


def test_prediction_folder_feeds_ef_agreement_and_evaluation(tiny_phantom, weak_checkpoint, tmp_path):
    """predict.py's folder is what benchmarks.ef_agreement --prediction_dir and the EF part of
    evaluate_bootstrap.py read: the same EF for every video, traced or not."""
    from benchmarks.ef_agreement import main as ef_agreement
    from unilvseg.evaluation.evaluate import evaluate_predictions

    save = tmp_path / "pred"
    assert run_predict("--data_path", tiny_phantom, "--split", "all", "--checkpoint", weak_checkpoint, "--save_dir", save) == 0
    assert ef_agreement(["--data_path", str(tiny_phantom), "--prediction_dir", str(save), "--out", str(tmp_path), "--tag", "p", "--samples", "50"]) == 0
    scored = pd.read_csv(tmp_path / "ef_agreement-p.csv")
    written = pd.read_csv(save / "volumes.csv").set_index("FileName")
    beats = scored[scored.Rule == "beats"].set_index("FileName")
    assert set(beats.index) == set(written.index) == {r.file_name for r in load_index(tiny_phantom, require_tracings=False).records}
    np.testing.assert_allclose(beats.EF, written.EF.reindex(beats.index), atol=1e-3, equal_nan=True)
    summary = evaluate_predictions(tiny_phantom, save, tmp_path / "eval", split="all", samples=50)
    assert summary["ef"]["n_videos"] + summary["ef"]["n_missing"] == len(written)


# -- settings that change the numbers: threshold, pixel spacing, the checkpoint's normalisation ---


def test_threshold_decides_which_probabilities_are_lv():
    from unilvseg.evaluation.inference import masks_from_probabilities

    probabilities = np.array([[[0.2, 0.5, 0.51, 0.9]]])
    assert masks_from_probabilities(probabilities).tolist() == [[[0, 0, 1, 1]]]  # strictly above 0.5
    assert masks_from_probabilities(probabilities, 0.3).tolist() == [[[0, 1, 1, 1]]]
    assert masks_from_probabilities(probabilities, 0.85).tolist() == [[[0, 0, 0, 1]]]


@pytest.mark.parametrize("mm_per_pixel", [1.4, 0.7, 2.0])
def test_volume_rows_against_ellipsoids_at_each_pixel_spacing(mm_per_pixel):
    """volumes.csv rows from masks of known shape: ED = the 24x12 ellipse (frame 4), ES = the
    15x7 one (frame 13), volumes 4/3 pi a b^2 mm_per_pixel^3. Radii change smoothly between
    knots (a heart at 50 fps; a jump from frame to frame would read as a missed-gain glitch)."""
    from types import SimpleNamespace

    from unilvseg.evaluation.predict import video_rows

    knots = [(0, 20, 10), (4, 24, 12), (13, 15, 7), (18, 18, 9)]
    frames = np.arange(19)
    radii = list(zip(np.interp(frames, [k[0] for k in knots], [k[1] for k in knots]),
                     np.interp(frames, [k[0] for k in knots], [k[2] for k in knots])))
    yy, xx = np.mgrid[:112, :112]
    masks = np.stack([(((xx - 56.3) / b) ** 2 + ((yy - 55.7) / a) ** 2 <= 1) for a, b in radii]).astype(np.uint8)
    record = SimpleNamespace(file_name="V", traced_frames={"ED": 4, "ES": 13})
    rows = video_rows(record, masks, mm_per_pixel, ed_es_rule="extremes", fps=50.0)
    row = rows.iloc[0]
    volume = lambda a, b: 4 / 3 * np.pi * a * b * b * mm_per_pixel**3 / 1000  # noqa: E731
    assert (int(row.EDFrame), int(row.ESFrame)) == (4, 13)
    # Measured: EDV +0.36 %, ESV +1.5 % (a 7-pixel radius is coarse), EF -0.24 points.
    assert row.EDV == pytest.approx(volume(24, 12), rel=0.01) and row.ESV == pytest.approx(volume(15, 7), rel=0.025)
    assert row.EF == pytest.approx(100 * (1 - (15 * 7 * 7) / (24 * 12 * 12)), abs=0.5)
    traced = [""] * 19
    traced[4], traced[13] = "ED", "ES"
    assert list(rows.Traced) == traced and list(rows.Area) == list(masks.sum(axis=(1, 2)))


def test_normalisation_comes_from_the_checkpoint_unless_given():
    from types import SimpleNamespace

    from unilvseg.evaluation.predict import _make_settings

    args = SimpleNamespace(stride=None, size=None, checkpoint="x.ckpt", batch_size=2, threshold=0.4, mean=None, std=None,
                           mm_per_pixel=0.9, overlay=False, overlay_format="avi", amp="off")
    hparams = {"frames": 16, "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6], "size": [64, 48]}
    settings = _make_settings(args, hparams)
    assert (settings.mean, settings.std) == ([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    assert (settings.threshold, settings.mm_per_pixel, settings.size) == (0.4, 0.9, (64, 48))
    args.mean, args.std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    settings = _make_settings(args, hparams)
    assert (settings.mean, settings.std) == ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    from unilvseg.data.dataset import ECHONET_MEAN, ECHONET_STD

    older = _make_settings(SimpleNamespace(**{**vars(args), "mean": None, "std": None}), {"frames": 16})
    assert older.mean == pytest.approx(list(ECHONET_MEAN)) and older.std == pytest.approx(list(ECHONET_STD))


def test_two_shards_in_one_folder_give_the_one_process_outputs(tiny_phantom, tmp_path):
    """predict.py --shard 0/2 and 1/2 running at the same time into one --save_dir: every video
    predicted once, outputs identical to one process, tables written once both are done."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    checkpoint = tmp_path / "weak.ckpt"
    from unilvseg.tasks.weak import WeakSegmentationTask

    torch.manual_seed(3)
    task = WeakSegmentationTask(encoder="3d_unet_tiny", frames=16)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "unilvseg_task": task.task_name,
                "unilvseg_data": {"size": [32, 32]}}, checkpoint)
    base = [sys.executable, "predict.py", "--checkpoint", str(checkpoint), "--data_path", str(tiny_phantom), "--split", "all",
            "--device", "cpu", "--batch_size", "1"]
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert subprocess.run(base + ["--save_dir", str(single)], cwd=repo, capture_output=True).returncode == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    shards = [subprocess.Popen(base + ["--save_dir", str(sharded), "--shard", f"{k}/2"], cwd=repo, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in range(2)]
    logs = [shard.communicate(timeout=300)[0] for shard in shards]
    assert all(shard.returncode == 0 for shard in shards), logs
    predicted = [re.findall(r"\] (\S+): \d+ frames in", log) for log in logs]
    names = sorted(p.stem for p in (single / "masks").glob("*.npz"))
    assert sorted(predicted[0] + predicted[1]) == names and not set(predicted[0]) & set(predicted[1])
    for name in names:
        assert np.array_equal(np.load(single / "masks" / f"{name}.npz")["masks"], np.load(sharded / "masks" / f"{name}.npz")["masks"])
    for table in ("size.csv", "volumes.csv"):
        assert (single / table).read_text() == (sharded / table).read_text(), table
    with pytest.raises(UserError, match="need 0 <= K < N"):
        from unilvseg.evaluation.predict import parse_shard

        parse_shard("2/2")
