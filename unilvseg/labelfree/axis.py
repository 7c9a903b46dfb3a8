"""The LV's frame of reference in a video: its long axis from the fan apex.

Shared by the weak-label makers (``unilvseg.labelfree.classical``, ``four_chamber``) and quality
control (``unilvseg.labelfree.qc``), which must not import each other.
"""

from __future__ import annotations

import math

import numpy as np


def lv_axis_coordinates(masks: np.ndarray, sector: SectorGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel coordinates (H, W) in a video's LV frame: ``along`` the axis from the fan apex
    to the LV labels' time-averaged centroid, ``across`` it (+ towards the image's right, the
    lateral wall). ``masks`` (T, H, W) must hold an LV in at least one frame."""
    stack = np.asarray(masks) > 0
    consensus = stack[stack.any(axis=(1, 2))].mean(axis=0)
    ys, xs = np.mgrid[0 : stack.shape[1], 0 : stack.shape[2]]
    ax, ay = sector.apex
    total = max(float(consensus.sum()), 1e-6)
    cx, cy = float((consensus * xs).sum() / total) - ax, float((consensus * ys).sum() / total) - ay
    norm = max(math.hypot(cx, cy), 1e-6)
    along = ((xs - ax) * cx + (ys - ay) * cy) / norm
    across = ((xs - ax) * cy - (ys - ay) * cx) / norm
    return along, across
