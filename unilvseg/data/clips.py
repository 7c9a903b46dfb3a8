"""Clip sampling: which frame indices make up a clip, for every mode.

A clip is ``frames`` indices spaced ``period`` apart. Videos shorter than a clip are padded by
repeating their last frame (indices are clamped), so every clip has the same length.
"""

from __future__ import annotations

import numpy as np

from unilvseg.errors import UserError


class ClipSampler:
    def __init__(self, frames: int = 32, period: int = 1):
        if frames < 1:
            raise UserError(f"--frames must be >= 1, got {frames}")
        if period < 1:
            raise UserError(f"--period must be >= 1, got {period}")
        self.frames = int(frames)
        self.period = int(period)

    @property
    def span(self) -> int:
        """Number of video frames a clip covers."""
        return (self.frames - 1) * self.period + 1

    def _indices(self, start: int, n_frames: int) -> np.ndarray:
        return np.minimum(start + self.period * np.arange(self.frames), n_frames - 1)

    def random_clip(self, n_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Self-supervised: a clip starting anywhere it fits."""
        start = int(rng.integers(0, max(n_frames - self.span, 0) + 1))
        return self._indices(start, n_frames)

    def clip_containing(self, n_frames: int, frame: int, rng: np.random.Generator) -> np.ndarray:
        """Training: a random clip that has ``frame`` on its sampled grid."""
        starts = frame - np.arange(self.frames) * self.period
        valid = (starts >= 0) & (starts + self.span <= n_frames)
        if not valid.any():
            # Video shorter than the clip: start as early as the grid through ``frame`` allows.
            valid = (starts >= 0) & (starts < self.period)
        candidates = starts[valid]
        start = int(rng.choice(candidates))
        return self._indices(start, n_frames)

    def centred_clip(self, n_frames: int, frame: int) -> np.ndarray:
        """Evaluation: the deterministic clip that places ``frame`` as centrally as the video allows."""
        centre = self.frames // 2
        start = frame - centre * self.period
        # Shift into the video while keeping ``frame`` on the grid.
        if start + self.span > n_frames:
            start -= int(np.ceil((start + self.span - n_frames) / self.period)) * self.period
        if start < 0:
            start += int(np.ceil(-start / self.period)) * self.period
        return self._indices(start, n_frames)

    def windows(self, n_frames: int, stride: int | None = None) -> np.ndarray:
        """Prediction: (n_windows, frames) index windows covering every frame of the video.

        Windows on the sampler's ``period`` grid, starting every ``stride`` frames, the last
        window aligned to the end so no frame is left out. With ``period`` > 1 one window sees
        only every period-th frame, so each start is repeated at the period - 1 following
        offsets to put every frame on some window's grid (clamped indices pad short videos).
        """
        stride = int(stride or self.frames)
        if stride < 1:
            raise UserError(f"--stride must be >= 1, got {stride}")
        span = self.span
        last = max(n_frames - span, 0)
        starts = np.arange(0, last + 1, stride)
        if starts[-1] != last:
            starts = np.append(starts, last)
        starts = np.unique(starts[:, None] + np.arange(self.period)[None])
        return np.minimum(starts[:, None] + self.period * np.arange(self.frames)[None], n_frames - 1)
