"""Stage 2 of label-free segmentation: quality control of weak (or predicted) LV labels.

A frame's label passes when it is exactly one connected blob of plausible size (relative to the
ultrasound fan), plausible shape (solidity, elongation) and does not jump in area against the
neighbouring frames of the same clip. Only passing frames become pseudo-labels for training.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unilvseg.errors import UserError

_PLANE8 = np.zeros((3, 3, 3), dtype=bool)
_PLANE8[1] = True


@dataclass(frozen=True)
class QCResult:
    """``passed`` bool (T,); ``reasons[t]`` lists why frame t failed (empty when it passed);
    ``metrics`` holds the per-frame numbers behind the decisions."""

    passed: np.ndarray
    reasons: list[list[str]]
    metrics: dict[str, np.ndarray]

    @property
    def pass_rate(self) -> float:
        return float(self.passed.mean()) if self.passed.size else 0.0

    def to_frame(self):
        """One row per frame: passed, reasons ("" when passed) and every metric."""
        import pandas as pd

        table = pd.DataFrame({"frame": np.arange(len(self.passed)), "passed": self.passed})
        table["reasons"] = [";".join(reasons) for reasons in self.reasons]
        for name, values in self.metrics.items():
            table[name] = values
        return table


def convex_hull_areas(stack: np.ndarray, frames) -> np.ndarray:
    """Pixel count of the convex hull of each listed frame's mask (nan elsewhere).

    OpenCV's hull through pixel centres, filled with its boundary pixels: within a few percent
    of skimage's ``regionprops(...).area_convex`` and ~10x faster. Hulls have no vectorised
    form, so this is one cheap C call per frame.
    """
    import cv2

    hull_area = np.full(stack.shape[0], np.nan)
    canvas = np.zeros(stack.shape[1:], np.uint8)
    for index in frames:
        points = cv2.findNonZero(stack[index].astype(np.uint8))
        if points is None:
            continue
        canvas[:] = 0
        cv2.fillConvexPoly(canvas, cv2.convexHull(points), 1)
        hull_area[index] = np.count_nonzero(canvas)
    return hull_area


def _shape_moments(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: major / minor axis ratio from second moments, centroid x and y (nan when empty)."""
    frames, height, width = stack.shape
    frame, ys, xs = np.nonzero(stack)
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)

    def total(weights):
        return np.bincount(frame, weights=weights, minlength=frames)

    area = np.bincount(frame, minlength=frames).astype(np.float64)
    safe = np.maximum(area, 1)
    mean_x, mean_y = total(xs) / safe, total(ys) / safe
    cov_xx = total(xs * xs) / safe - mean_x**2 + 1 / 12  # + 1/12: a pixel's own extent
    cov_yy = total(ys * ys) / safe - mean_y**2 + 1 / 12
    cov_xy = total(xs * ys) / safe - mean_x * mean_y
    half_trace, det = 0.5 * (cov_xx + cov_yy), cov_xx * cov_yy - cov_xy**2
    root = np.sqrt(np.maximum(half_trace**2 - det, 0))
    ratio = np.sqrt((half_trace + root) / np.maximum(half_trace - root, 1e-6))
    empty = area == 0
    return tuple(np.where(empty, np.nan, value) for value in (ratio, mean_x, mean_y))


def running_median(values: np.ndarray, valid: np.ndarray, window: int) -> np.ndarray:
    """Median of ``values`` over a centred window, using only ``valid`` entries (nan if none)."""
    count = len(values)
    half = window // 2
    padded = np.full(count + 2 * half, np.nan)
    padded[half : half + count] = np.where(valid, values, np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan windows give nan, on purpose
        return np.nanmedian(windows, axis=1)


def quality_control(
    masks: np.ndarray,
    sector=None,
    min_area_frac: float = 0.03,
    max_area_frac: float = 0.45,
    min_solidity: float = 0.75,
    elongation_range: tuple[float, float] = (1.0, 4.0),
    max_area_jump: float = 0.35,
    max_centroid_shift: float = 0.12,
    max_length_ratio: float = 0.0,
    window: int = 9,
) -> QCResult:
    """Per-frame quality control of LV labels ``masks`` (T, H, W) of one clip.

    ``sector`` (a :class:`~unilvseg.labelfree.classical.SectorGeometry` or an (H, W) bool fan
    mask) sets the reference area; without it the whole image is the reference. A frame fails
    for: ``empty``; ``components=N`` (N != 1); ``area_small`` / ``area_large`` (area / reference
    outside [min_area_frac, max_area_frac]); ``solidity`` (< min_solidity); ``elongation``
    (major/minor outside ``elongation_range``); ``area_jump`` (area differs by more than
    ``max_area_jump`` relative to the running median of the single-blob frames within
    ``window`` frames); ``centroid_jump`` (centroid further than ``max_centroid_shift`` x
    sqrt(reference area) from the clip's median centroid: another chamber was picked);
    ``too_long`` (with ``max_length_ratio`` > 0 and a sector with an apex: the label runs along
    the LV axis further than ``max_length_ratio`` x the clip's short (25th-percentile) length,
    i.e. it carries the left atrium through the open mitral valve).
    """
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise UserError(f"masks must be (T, H, W); got shape {masks.shape}")
    if not 0 <= min_area_frac < max_area_frac:
        raise UserError(f"need 0 <= min_area_frac < max_area_frac, got {min_area_frac}, {max_area_frac}")
    if window < 1:
        raise UserError(f"window must be >= 1, got {window}")
    stack = masks > 0
    frames = stack.shape[0]
    if sector is None:
        reference = float(stack.shape[1] * stack.shape[2])
    else:
        fan = getattr(sector, "mask", sector)
        if fan.shape != stack.shape[1:]:
            raise UserError(f"sector mask {fan.shape} does not match masks {stack.shape[1:]}")
        reference = float(max(np.count_nonzero(fan), 1))

    labels, count = ndimage.label(stack, structure=_PLANE8)
    frame_of_label = np.zeros(count + 1, np.int64)
    frame_of_label[labels.ravel()] = np.repeat(np.arange(frames), stack.shape[1] * stack.shape[2])
    components = np.bincount(frame_of_label[1:], minlength=frames)[:frames]
    area = stack.sum(axis=(1, 2)).astype(np.float64)
    area_frac = area / reference
    single = components == 1
    with np.errstate(divide="ignore", invalid="ignore"):
        solidity = area / convex_hull_areas(stack, np.flatnonzero(single))
    elongation, centre_x, centre_y = _shape_moments(stack)
    odd_window = window | 1
    baseline = running_median(area, single, odd_window)
    with np.errstate(divide="ignore", invalid="ignore"):
        jump = np.abs(area / baseline - 1.0)
    # The LV barely moves within a clip, while a wrongly picked chamber often persists for
    # several frames (a whole systole), which a running median would follow: compare with the
    # clip-wide median centroid instead.
    if single.any():
        shift = np.hypot(centre_x - np.median(centre_x[single]), centre_y - np.median(centre_y[single]))
        shift = shift / np.sqrt(reference)
    else:
        shift = np.full(frames, np.nan)

    too_long = np.zeros(frames, bool)
    length_ratio = np.full(frames, np.nan)
    if max_length_ratio > 0 and getattr(sector, "apex", None) is not None and single.sum() >= 4:
        from unilvseg.labelfree.axis import lv_axis_coordinates

        along, _ = lv_axis_coordinates(stack[single], sector)
        inside = np.where(stack[single], along[None], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lengths = np.nanmax(inside, axis=(1, 2)) - np.nanmin(inside, axis=(1, 2)) + 1
        length_ratio[single] = lengths / np.quantile(lengths, 0.25)
        too_long = single & (length_ratio > max_length_ratio)

    checks = {
        "empty": area == 0,
        "components": (area > 0) & ~single,
        "area_small": (area > 0) & (area_frac < min_area_frac),
        "area_large": area_frac > max_area_frac,
        "solidity": single & (solidity < min_solidity),
        "elongation": single & ((elongation < elongation_range[0]) | (elongation > elongation_range[1])),
        "area_jump": single & np.isfinite(jump) & (jump > max_area_jump),
        "centroid_jump": single & np.isfinite(shift) & (shift > max_centroid_shift),
        "too_long": too_long,
    }
    failed = np.zeros(frames, bool)
    for flags in checks.values():
        failed |= flags
    reasons: list[list[str]] = [[] for _ in range(frames)]
    for name, flags in checks.items():
        for index in np.flatnonzero(flags):
            reasons[index].append(f"components={components[index]}" if name == "components" else name)
    metrics = {
        "area": area,
        "area_frac": area_frac,
        "components": components,
        "solidity": solidity,
        "elongation": elongation,
        "area_jump": jump,
        "centroid_shift": shift,
        "length_ratio": length_ratio,
    }
    return QCResult(~failed, reasons, metrics)
