"""Shared fixtures and helpers: a tiny phantom data set, an isolated cache, hand-made datasets.

Helpers (``write_echonet``, ``write_avi``, ``tracing_rows``) are plain functions so tests can
``from conftest import ...`` them as well as use the fixtures.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

# Imported at collection, before any output capture: Lightning binds a stream handler to the
# sys.stderr of its import time, and a captured (later closed) stream would break its logging.
import lightning.pytorch  # noqa: F401, E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_MINI = SHARED_DATA / "echonet-real-mini"
REAL_EXTERNAL = SHARED_DATA / "echo-external"

_skip_without_real_data = pytest.mark.skipif(
    not REAL_MINI.is_dir(), reason=f"real echo data not present at {SHARED_DATA}"
)


def needs_real_data(test):
    """Decorator for tests that read ../shared/data: skipped when it is absent, and marked
    ``real_data`` so ``pytest -m "not real_data"`` leaves them out."""
    return pytest.mark.real_data(_skip_without_real_data(test))

FILELIST_COLUMNS = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
TRACING_COLUMNS = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test caches into a throw-away folder (never ~/.cache) and runs single-threaded."""
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNILVSEG_CACHE", str(tmp_path_factory.mktemp("unilvseg-cache")))
        yield


@pytest.fixture(autouse=True)
def _checkpoints_untrusted(monkeypatch):
    """--trust_checkpoint records itself in the environment for the whole process: a test that
    passes it must not make the next test's checkpoints trusted."""
    monkeypatch.setenv("UNILVSEG_TRUST_CHECKPOINT", "")  # recorded, so the original state returns afterwards
    yield


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> Path:
    """A 6-video phantom EchoNet folder (40-60 frames each), generated once per session.

    Read-only by convention: tests that modify files use ``phantom_copy``.
    """
    from unilvseg.data.phantom import generate_phantom

    out = tmp_path_factory.mktemp("phantom") / "echonet"
    return Path(generate_phantom(out, videos=6, seed=0, min_frames=40, max_frames=60))


@pytest.fixture
def phantom_copy(tiny_phantom, tmp_path) -> Path:
    """A private copy of ``tiny_phantom`` that a test may corrupt."""
    return Path(shutil.copytree(tiny_phantom, tmp_path / "phantom"))


def write_avi(path: str | Path, video: np.ndarray, fps: float = 50) -> Path:
    """Write uint8 (T, H, W) gray or (T, H, W, 3) RGB frames as an MJPG AVI (EchoNet's codec)."""
    video = np.asarray(video, dtype=np.uint8)
    if video.ndim == 3:
        video = np.repeat(video[..., None], 3, axis=-1)
    _, height, width, _ = video.shape
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height), True)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for frame in video:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV expects BGR
    finally:
        writer.release()
    return path


def tracing_rows(
    file_name: str, frame: int, centre: tuple[float, float], radii: tuple[float, float], chords: int = 20
) -> list[list]:
    """VolumeTracings rows of an upright ellipse: long axis, then ``chords`` horizontal chords.

    ``centre`` = (x, y), ``radii`` = (rx, ry); the long axis runs from the top to the bottom of
    the ellipse. FileName carries ``.avi`` as in EchoNet-Dynamic.
    """
    cx, cy = centre
    rx, ry = radii
    name = file_name if file_name.lower().endswith(".avi") else f"{file_name}.avi"
    rows = [[name, cx, cy - ry, cx, cy + ry, frame]]
    for y in cy - ry + (np.arange(chords) + 0.5) * 2 * ry / chords:
        half = rx * np.sqrt(max(0.0, 1 - ((y - cy) / ry) ** 2))
        rows.append([name, cx - half, y, cx + half, y, frame])
    return rows


def write_echonet(
    tmp_path: str | Path,
    videos: Mapping[str, np.ndarray],
    tracings: Iterable[Sequence] | str = (),
    filelist: Iterable[Mapping] | str | None = None,
    fps: float = 50,
) -> Path:
    """Build an EchoNet-Dynamic folder under ``tmp_path/"echonet"`` and return it.

    ``videos``: {FileName: uint8 (T, H, W) or (T, H, W, 3)} written to ``Videos/<name>.avi``.
    ``tracings``: VolumeTracings rows (FileName, X1, Y1, X2, Y2, Frame), or raw CSV text.
    ``filelist``: FileList rows as dicts (missing columns are filled from the video; Split
    defaults to TRAIN), raw CSV text, or None for one TRAIN row per video.
    """
    root = Path(tmp_path) / "echonet"
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    for name, video in videos.items():
        write_avi(root / "Videos" / f"{name}.avi", video, fps)

    if isinstance(tracings, str):
        (root / "VolumeTracings.csv").write_text(tracings)
    else:
        pd.DataFrame([list(r) for r in tracings], columns=TRACING_COLUMNS).to_csv(root / "VolumeTracings.csv", index=False)

    if isinstance(filelist, str):
        (root / "FileList.csv").write_text(filelist)
        return root
    rows = [{"FileName": name} for name in videos] if filelist is None else [dict(r) for r in filelist]
    for row in rows:
        video = videos.get(row["FileName"])
        shape = np.shape(video) if video is not None else (0, 112, 112)
        defaults = {"EF": 60.0, "ESV": 20.0, "EDV": 50.0, "FrameHeight": shape[1], "FrameWidth": shape[2],
                    "FPS": fps, "NumberOfFrames": shape[0], "Split": "TRAIN"}
        for key, value in defaults.items():
            row.setdefault(key, value)
    columns = FILELIST_COLUMNS + [c for r in rows for c in r if c not in FILELIST_COLUMNS]
    pd.DataFrame(rows, columns=list(dict.fromkeys(columns))).to_csv(root / "FileList.csv", index=False)
    return root


@pytest.fixture(scope="session")
def untrained_tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained weak-task checkpoint (3d_unet_tiny, 16-frame clips, 32x32 input, seed 3): its
    masks vary from frame to frame, which is all a plumbing test of prediction needs."""
    from unilvseg.tasks.weak import WeakSegmentationTask

    torch.manual_seed(3)
    task = WeakSegmentationTask(encoder="3d_unet_tiny", frames=16)
    path = tmp_path_factory.mktemp("checkpoint") / "weak.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "unilvseg_task": task.task_name,
                "unilvseg_data": {"size": [32, 32]}}, path)
    return path
