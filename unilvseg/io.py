"""Atomic writers: every output goes to a temporary file in the target folder and is renamed
onto its final name only when complete, so a killed process never leaves a half-written file
under a finished-looking name."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Iterator

import numpy as np

TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield tmp
        with contextlib.suppress(OSError):
            # Flush file contents to disk before the rename makes them visible.
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(text: str, path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(obj, path) -> Path:
    return write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", path)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_csv(frame, path, **kwargs) -> Path:
    """Write a pandas DataFrame as CSV atomically (index off unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


def save_npz(path, **arrays) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return Path(path)


def save_npy(path, array) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)
    return Path(path)


def save_png(path, image) -> Path:
    import cv2

    with atomic_path(path) as tmp:
        ok, buffer = cv2.imencode(".png", np.ascontiguousarray(image))
        if not ok:
            raise OSError(f"could not encode PNG for {path}")
        tmp.write_bytes(buffer.tobytes())
    return Path(path)


def torch_save(obj, path) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def remove_stale_temporaries(folder, recursive: bool = True, min_age_s: float = 0.0) -> int:
    """Delete temporaries left by a killed writer in ``folder`` (and its subfolders unless
    ``recursive`` is False); returns how many. ``min_age_s`` spares temporaries written more
    recently: where other processes write into the same folder (sharded prediction), a fresh
    temporary is another live writer's, not a leftover."""
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    now = time.time()
    for tmp in (folder.rglob if recursive else folder.glob)(f"{TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if min_age_s > 0 and now - tmp.stat().st_mtime < min_age_s:
                continue
        if tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed
