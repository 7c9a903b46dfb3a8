"""Stage 1 of label-free segmentation (after Ferreira et al.): weak LV labels without tracings.

Classical image processing finds the dark blood pools inside the ultrasound fan of each frame
and picks the left ventricle with the anatomical priors of an apical four-chamber view in
EchoNet orientation: transducer (fan apex) at the top, LV just below it on the image's right
of the fan bisector, RV on the left, atria further from the apex. Everything runs on the whole
(T, H, W) stack at once (3-D filters whose structuring elements never connect two frames), so a
200-frame 112x112 video takes a fraction of a second.

Run ``python -m unilvseg.labelfree.classical --data_path D`` to print per-video Dice of these
weak labels against ``ReferenceMasks/<name>.npz`` and the quality-control pass rate.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from unilvseg.errors import DataError, UserError
from unilvseg.labelfree.axis import lv_axis_coordinates

# In-plane 8-connectivity, no connection across time: labelling / morphology with it treats a
# (T, H, W) stack as T independent images in one vectorised call.
_PLANE8 = np.zeros((3, 3, 3), dtype=bool)
_PLANE8[1] = True
_PLANE4 = np.zeros((3, 3, 3), dtype=bool)
_PLANE4[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class SectorGeometry:
    """The ultrasound fan of a video.

    ``apex`` is (x, y) in pixels (may lie slightly above the image); ``axis_angle`` is the
    direction of the fan bisector in radians measured from the image's downward vertical,
    positive towards the image's right; ``radius`` is the largest apex-to-fan distance;
    ``half_angle`` is half the opening angle of the fan (radians).
    """

    mask: np.ndarray
    apex: tuple[float, float]
    axis_angle: float
    radius: float
    half_angle: float = math.radians(40.0)
    apex_from_edges: bool = True

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def polar(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel (distance from apex, angle from bisector; + = image right), each (H, W)."""
        height, width = self.mask.shape
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        dx, dy = xs - self.apex[0], ys - self.apex[1]
        distance = np.hypot(dx, dy)
        angle = np.arctan2(dx, dy) - self.axis_angle
        angle = (angle + np.pi) % (2 * np.pi) - np.pi
        return distance, angle


def _channels_equal(frames: np.ndarray) -> bool:
    probe = frames[:: max(1, len(frames) // 4)]  # a few frames decide; colour overlays are everywhere
    return bool((probe[..., 0] == probe[..., 1]).all() and (probe[..., 0] == probe[..., 2]).all())


def gray_stack(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) or (T, H, W, C) frames (or one (H, W) image) -> float32 (T, H, W) gray."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim == 4:
        if frames.shape[-1] not in (1, 3, 4):
            raise UserError(f"frames have {frames.shape[-1]} channels; expected (T, H, W) or (T, H, W, 1|3|4)")
        if frames.shape[-1] == 1 or _channels_equal(frames):
            frames = frames[..., 0]  # EchoNet stores gray in three identical channels
        else:
            frames = frames[..., :3].mean(axis=-1, dtype=np.float32)
    if frames.ndim != 3:
        raise UserError(f"frames must be (T, H, W) or (T, H, W, C); got shape {frames.shape}")
    if frames.shape[0] == 0 or frames.shape[1] < 8 or frames.shape[2] < 8:
        raise UserError(f"frames of shape {frames.shape} are empty or too small to segment")
    return frames.astype(np.float32, copy=False)


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx * xx + yy * yy) <= radius * radius + radius  # slightly rounder than a pure L2 disk


def _stack_morphology(stack: np.ndarray, radius: int, operation: str, outside: int = 0) -> np.ndarray:
    """Binary erosion/dilation of every frame of a (T, H, W) stack by a disk, in one OpenCV call.

    Frames are tiled vertically with ``radius`` rows of ``outside`` between them, so no frame
    sees its neighbour and the image border behaves as pixels of value ``outside`` (identical
    to scipy's ``binary_erosion(..., border_value=outside)`` per frame, about 8x faster).
    """
    import cv2

    if radius <= 0:
        return stack.astype(bool)
    frames, height, width = stack.shape
    tiled = np.full((frames, height + radius, width), outside, dtype=np.uint8)
    tiled[:, :height] = stack
    tiled = tiled.reshape(frames * (height + radius), width)
    kernel = _disk(radius).astype(np.uint8)
    apply = cv2.erode if operation == "erode" else cv2.dilate
    out = apply(tiled, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=outside)
    return out.reshape(frames, height + radius, width)[:, :height].astype(bool)


def stack_opening(stack: np.ndarray, radius: int) -> np.ndarray:
    return _stack_morphology(_stack_morphology(stack, radius, "erode", 0), radius, "dilate", 0)


def stack_closing(stack: np.ndarray, radius: int) -> np.ndarray:
    """Per-frame closing; the image border neither grows nor erodes masks that touch it."""
    return _stack_morphology(_stack_morphology(stack, radius, "dilate", 0), radius, "erode", 1) | stack


def stack_fill_holes(stack: np.ndarray) -> np.ndarray:
    """Per-frame hole filling: background components (4-connected) not touching the border."""
    background, count = ndimage.label(~stack, structure=_PLANE4)
    if count == 0:
        return stack.astype(bool)
    reaches_border = np.zeros(count + 1, bool)
    for edge in (background[:, 0, :], background[:, -1, :], background[:, :, 0], background[:, :, -1]):
        reaches_border[edge.ravel()] = True
    reaches_border[0] = True  # label 0 is the foreground itself
    return stack | ~reaches_border[background]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 8-connected component of a 2-D boolean mask (empty stays empty)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def detect_sector(frames: np.ndarray, intensity_threshold: float = 12.0, min_fraction: float = 0.1) -> SectorGeometry:
    """Find the ultrasound fan of a video.

    A pixel belongs to the fan when it is brighter than ``intensity_threshold`` in at least
    ``min_fraction`` of the frames, or when it flickers (speckle) over time: blood pools are dark
    but never constant, while burnt-in text and markers outside the fan are constant. The
    largest component is kept and its holes filled. The apex is the intersection of straight
    lines fitted to the fan's left and right edges (rows where the fan is not clipped by the
    image border); the axis bisects them. Without two usable edges (a fan filling the image)
    the apex falls back to the top centre of the mask and the axis to the vertical.
    """
    gray = gray_stack(frames)
    if gray.shape[0] > 64:  # evenly spaced frames already span several beats
        gray = gray[np.linspace(0, gray.shape[0] - 1, 64).round().astype(int)]
    height, width = gray.shape[1:]
    bright_fraction = (gray > intensity_threshold).mean(axis=0)
    flicker = gray.std(axis=0) > 0.5 * intensity_threshold if gray.shape[0] > 1 else np.zeros((height, width), bool)
    fan = (bright_fraction >= min_fraction) | flicker
    # Opening detaches thin overlays (scale ticks, ECG marker) touching the fan; closing and
    # hole filling bring back dark chambers enclosed by tissue.
    fan = ndimage.binary_opening(fan, structure=_disk(2))
    fan = largest_component(fan)
    fan = ndimage.binary_closing(fan, structure=_disk(3), border_value=0) | fan
    fan = ndimage.binary_fill_holes(fan)
    if fan.any():
        # A fan is convex; the hull brings back dark pools touching the fan's edge.
        from skimage.morphology import convex_hull_image

        fan = convex_hull_image(fan)
    if fan.sum() < 0.05 * height * width:
        # Nothing fan-like (e.g. an almost black video): use the whole image so the caller
        # still gets usable geometry; the weak labels will be empty and QC rejects them.
        fan = np.ones((height, width), bool)
    return _fan_geometry(fan)


def _fan_geometry(fan: np.ndarray) -> SectorGeometry:
    height, width = fan.shape
    rows = np.flatnonzero(fan.any(axis=1))
    top = int(rows[0])
    has = fan[rows]
    left = has.argmax(axis=1).astype(np.float64)
    right = (width - 1 - has[:, ::-1].argmax(axis=1)).astype(np.float64)
    ys = rows.astype(np.float64)
    widths = right - left
    # Straight edges run from the apex down to the widest row; below it the fan's arc bends.
    upto = int(np.argmax(widths >= widths.max() - 1)) + 1
    left_ok = (left > 0) & (np.arange(len(rows)) < upto)
    right_ok = (right < width - 1) & (np.arange(len(rows)) < upto)
    left_line = _robust_line(ys[left_ok], left[left_ok])
    right_line = _robust_line(ys[right_ok], right[right_ok])

    apex = None
    axis_angle, half_angle = 0.0, math.radians(40.0)
    if left_line is not None and right_line is not None:
        (a1, b1), (a2, b2) = left_line, right_line
        if b1 < -0.1 and b2 > 0.1:  # left edge runs left going down, right edge runs right
            apex_y = (a1 - a2) / (b2 - b1)
            apex_x = a1 + b1 * apex_y
            if -0.5 * height <= apex_y <= top + 0.25 * height and -0.25 * width <= apex_x <= 1.25 * width:
                apex = (float(apex_x), float(apex_y))
                left_dir = np.array([b1, 1.0]) / math.hypot(b1, 1.0)
                right_dir = np.array([b2, 1.0]) / math.hypot(b2, 1.0)
                bisector = left_dir + right_dir
                axis_angle = float(math.atan2(bisector[0], bisector[1]))
                half_angle = 0.5 * float(math.acos(np.clip(left_dir @ right_dir, -1.0, 1.0)))
    from_edges = apex is not None
    if from_edges:
        # The fan is the convex hull of what was seen plus its apex: the near field just under
        # the transducer is often black in every frame but still inside the fan.
        import cv2

        ys_fan, xs_fan = np.nonzero(fan)
        points = np.concatenate([np.stack([xs_fan, ys_fan], 1), np.round([apex]).astype(np.int64)]).astype(np.int32)
        hull = np.zeros((height, width), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)
        fan = fan | hull.astype(bool)
    if apex is None:
        top_xs = np.flatnonzero(fan[top])
        apex = (float(top_xs.mean()), float(top))
    ys_all, xs_all = np.nonzero(fan)
    radius = float(np.hypot(xs_all - apex[0], ys_all - apex[1]).max())
    return SectorGeometry(fan, apex, axis_angle, max(radius, 1.0), half_angle, from_edges)


def _robust_line(ys: np.ndarray, xs: np.ndarray, min_points: int = 6, tolerance: float = 1.5):
    """x = a + b*y least squares, refitted once without points more than ``tolerance`` px off."""
    if len(ys) < min_points:
        return None
    b, a = np.polyfit(ys, xs, 1)
    keep = np.abs(xs - (a + b * ys)) <= tolerance
    if keep.sum() >= min_points:
        b, a = np.polyfit(ys[keep], xs[keep], 1)
    return float(a), float(b)


@dataclass(frozen=True)
class WeakLabelParams:
    """Knobs of :func:`weak_lv_labels`; defaults tuned on EchoNet-like 112x112 A4C videos.

    Angles are degrees from the fan bisector (+ = image right), distances are fractions of the
    fan radius, areas fractions of the fan area.
    """

    sigma: float = 1.5  # in-plane Gaussian smoothing (pixels)
    temporal_median: bool = True  # median of 3 consecutive frames: blood speckle decorrelates
    threshold_scale: float = 0.8  # multiplies the per-frame in-fan Otsu threshold
    edge_margin: int = 2  # pixels eroded off the fan so its dark rim is not a "pool"
    near_field: float = 0.15  # ignore the (often black) near field closer than this to the apex
    opening_radius: int = 1  # removes speckle-sized dark specks
    core_radius: int = 4  # pools are eroded by this to cut bridges (open valve, dropout) ...
    regrow_radius: int = 5  # ... and the chosen core grows back this far inside the dark pool
    weak_threshold_scale: float = 1.0  # hysteresis: then it grows into pixels this dark ...
    weak_growth: int = 4  # ... for this many 1-pixel steps (hazy apex, near-field clutter)
    local_sigma: float = 14.0  # divide by the local mean at this scale (pixels) first; 0 = off
    neck_ratio: float = 0.75  # cut the pool where it narrows to this fraction (mitral annulus)
    closing_radius: int = 3
    min_area_frac: float = 0.01  # of the chosen core (eroded pool), relative to the fan
    max_area_frac: float = 0.45
    lv_angle: float = 3.0  # expected centroid angle of the LV
    lv_angle_sd: float = 14.0
    lv_distance: float = 0.43  # expected centroid distance of the LV from the apex
    lv_distance_sd: float = 0.12
    lv_apex_distance: float = 0.25  # the LV core reaches up to about here towards the apex
    lv_area_frac: float = 0.1  # typical core area
    max_lv_extent: float = 0.8  # pools reaching further are cut here (atria lie beyond)
    prior_weight: float = 4.0  # second pass: reward overlap with the video's consensus LV
    # The interventricular septum, found once per video as the bright ridge near the fan
    # bisector in the time-averaged image, bounds the LV on the image's left: a thin or
    # dropped-out septum otherwise joins the LV and RV into one pool. 0 turns it off.
    septum_max_angle: float = 25.0  # search this many degrees left of the bisector (half as far right)
    # Ridge / brighter-flank brightness. On 24 random untraced real videos, traced paths above
    # 1.5 lay on the septum and those below wandered; 1.5 is near the median of the 225 untraced.
    septum_min_contrast: float = 1.5
    # The mitral valve is open for about half of each beat, joining LV and LA. In the frames where
    # it is closed the LV pool stands alone, so the LV's length there (lower quartile of the
    # per-frame lengths) bounds every frame: systole shortens the LV by ~15 % (mitral annular
    # excursion ~1.2-1.5 cm of an ~8-9 cm ventricle: 1.2 x), and these labels run ~10 % small at
    # end-systole (measured on the phantom), so 1.2 / 0.9 = 1.33 x that length leaves ED intact
    # while an atrium (LV + LA ~1.6-1.8 x the LV length) is still cut off. 0 turns it off.
    valve_length_ratio: float = 1.33
    fill_holes: bool = True
    convex_hull: bool = False

    def __post_init__(self):
        if self.threshold_scale <= 0 or self.weak_threshold_scale <= 0:
            raise UserError(f"threshold scales must be > 0, got {self.threshold_scale}, {self.weak_threshold_scale}")
        if not 0 <= self.min_area_frac < self.max_area_frac:
            raise UserError(f"need 0 <= min_area_frac < max_area_frac, got {self.min_area_frac}, {self.max_area_frac}")
        radii = ("edge_margin", "opening_radius", "core_radius", "regrow_radius", "weak_growth", "closing_radius")
        negative = [name for name in radii if getattr(self, name) < 0]
        if negative or self.sigma < 0 or self.local_sigma < 0:
            raise UserError(f"WeakLabelParams: {', '.join(negative) or 'sigma/local_sigma'} must be >= 0")


def otsu_thresholds(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Otsu threshold of each frame of ``values`` (T, H, W), using only pixels in ``mask`` (H, W).

    All frames' 256-bin histograms come from one ``bincount`` over (frame * 256 + level).
    """
    frames = values.shape[0]
    levels = np.clip(values[:, mask], 0, 255).astype(np.int64)
    offsets = (np.arange(frames, dtype=np.int64) * 256)[:, None]
    hist = np.bincount((levels + offsets).ravel(), minlength=frames * 256).reshape(frames, 256).astype(np.float64)
    total = hist.sum(axis=1, keepdims=True)
    prob = hist / np.maximum(total, 1)
    omega = np.cumsum(prob, axis=1)
    mu = np.cumsum(prob * np.arange(256), axis=1)
    mu_total = mu[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_total * omega - mu) ** 2 / (omega * (1.0 - omega))
    between = np.nan_to_num(between, nan=-1.0, posinf=-1.0)
    return between.argmax(axis=1).astype(np.float32)


def gray_and_sector(frames: np.ndarray, sector: SectorGeometry | None = None) -> tuple[np.ndarray, SectorGeometry]:
    """The grey stack of ``frames`` and its fan (detected when ``sector`` is None), checked to
    match: the start of every label maker."""
    gray = gray_stack(frames)
    if sector is None:
        sector = detect_sector(gray)
    if sector.mask.shape != gray.shape[1:]:
        raise UserError(f"sector mask {sector.mask.shape} does not match frames {gray.shape[1:]}")
    return gray, sector


def _component_table(labels: np.ndarray, count: int, distance: np.ndarray, angle: np.ndarray) -> dict[str, np.ndarray]:
    """Per-component statistics of a labelled (T, H, W) stack (index 0 = background): area,
    frame, centroid ``x``/``y``, mean ``distance`` and ``angle`` from the fan apex, the ``near``est
    pixel's distance, ``elongation`` and ellipse ``fill``.

    Only foreground pixels are visited; every statistic is one ``bincount``.
    """
    frames, height, width = labels.shape
    flat = labels.ravel()
    foreground = np.flatnonzero(flat)
    label = flat[foreground]
    pixel = foreground % (height * width)
    ys, xs = (pixel // width).astype(np.float64), (pixel % width).astype(np.float64)
    n = count + 1

    def total(weights):
        return np.bincount(label, weights=weights, minlength=n)

    area = np.bincount(label, minlength=n).astype(np.float64)
    safe = np.maximum(area, 1)
    mean_x, mean_y = total(xs) / safe, total(ys) / safe
    cov_xx = total(xs * xs) / safe - mean_x**2 + 1 / 12
    cov_yy = total(ys * ys) / safe - mean_y**2 + 1 / 12
    cov_xy = total(xs * ys) / safe - mean_x * mean_y
    half_trace, det = 0.5 * (cov_xx + cov_yy), cov_xx * cov_yy - cov_xy**2
    root = np.sqrt(np.maximum(half_trace**2 - det, 0))
    major, minor = half_trace + root, np.maximum(half_trace - root, 1e-3)
    frame = np.zeros(n, dtype=np.int64)
    frame[label] = foreground // (height * width)
    pixel_distance = distance.ravel()[pixel]
    near = np.full(n, np.inf)
    np.minimum.at(near, label, pixel_distance)  # the LV reaches up towards the transducer
    return {
        "area": area,
        "frame": frame,
        "x": mean_x,
        "y": mean_y,
        "distance": total(pixel_distance) / safe,
        "angle": total(angle.ravel()[pixel]) / safe,
        "near": near,
        "elongation": np.sqrt(major / minor),
        # Area over that of the ellipse with the same second moments: 1 for a filled ellipse,
        # well below for a crescent (the SAX label maker's cavity test).
        "fill": area / (4 * math.pi * np.sqrt(np.maximum(det, 1e-6))),
    }


def _score_components(table, sector: SectorGeometry, params: WeakLabelParams) -> np.ndarray:
    """Log-prior score of every component being the LV (higher is better; -inf = impossible)."""
    area_frac = table["area"] / max(sector.area, 1)
    angle = np.degrees(table["angle"])
    distance = table["distance"] / sector.radius
    near = table["near"] / sector.radius
    score = (
        -0.5 * ((angle - params.lv_angle) / params.lv_angle_sd) ** 2
        - 0.5 * ((distance - params.lv_distance) / params.lv_distance_sd) ** 2
        - 0.5 * (np.maximum(near - params.lv_apex_distance, 0) / 0.08) ** 2
        - 0.5 * (np.log(np.maximum(area_frac, 1e-6) / params.lv_area_frac) / 0.7) ** 2
        + 0.5 * np.minimum(table["elongation"], 3.0)
    )
    plausible = (area_frac >= params.min_area_frac) & (area_frac <= params.max_area_frac)
    score[~plausible] = -np.inf
    score[0] = -np.inf
    return score


def _best_per_frame(labels: np.ndarray, table, score: np.ndarray) -> np.ndarray:
    """Mask (T, H, W) of each frame's best-scoring component (empty where none is finite)."""
    frames = labels.shape[0]
    best_score = np.full(frames, -np.inf)
    np.maximum.at(best_score, table["frame"], score)
    winner = np.isfinite(score) & (score == best_score[table["frame"]])
    # Ties: keep the lowest label per frame.
    chosen = np.zeros(len(score), bool)
    candidates = np.flatnonzero(winner)
    _, first = np.unique(table["frame"][candidates], return_index=True)
    chosen[candidates[first]] = True
    return chosen[labels]


def _gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    index = np.arange(size, dtype=np.float32)
    return np.exp(-((index[:, None] - index[None]) ** 2) / np.float32(2 * sigma * sigma))


def _wide_blur(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Unnormalised Gaussian blur of each (H, W) frame with zeros outside the image, as two
    matrix products (K_H @ frame @ K_W^T): for sigma ~ 14 px this is ~10x faster than
    ``ndimage.gaussian_filter``. Callers divide two such blurs, so the scale cancels."""
    height, width = stack.shape[-2:]
    return _gaussian_matrix(height, sigma) @ stack.astype(np.float32, copy=False) @ _gaussian_matrix(width, sigma).T


def _median_of_three(stack: np.ndarray) -> np.ndarray:
    """Temporal median over frames (t-1, t, t+1), edges repeated; min/max arithmetic is far
    cheaper than ``ndimage.median_filter``."""
    if stack.shape[0] < 3:
        return stack
    before = np.concatenate([stack[:1], stack[:-1]])
    after = np.concatenate([stack[1:], stack[-1:]])
    return np.maximum(np.minimum(before, stack), np.minimum(np.maximum(before, stack), after))


def dark_pools(gray: np.ndarray, sector: SectorGeometry, params: WeakLabelParams) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (T, H, W) maps ``(dark, weak)``: smoothed in-fan pixels darker than
    ``threshold_scale`` (``weak_threshold_scale``) x the frame's in-fan Otsu threshold; ``dark``
    (blood pools) is also opened to drop speckle-sized specks."""
    smooth = _median_of_three(gray) if params.temporal_median else gray
    if params.sigma > 0:
        smooth = ndimage.gaussian_filter(smooth, sigma=(0, params.sigma, params.sigma), mode="nearest")
    inner = sector.mask
    if params.edge_margin > 0:
        inner = ndimage.binary_erosion(sector.mask, structure=_disk(params.edge_margin), border_value=1)
    if params.near_field > 0:
        distance, _ = sector.polar()
        inner = inner & (distance >= params.near_field * sector.radius)
    if params.local_sigma > 0:
        # Normalised convolution: the local mean over fan pixels only, so the black outside
        # does not darken the fan's rim.
        fan = sector.mask.astype(np.float32)
        weight = _wide_blur(fan[None], params.local_sigma)
        local = _wide_blur(smooth * fan, params.local_sigma)
        smooth = np.clip(100.0 * smooth * (weight / np.maximum(local, 1e-3)), 0, 255)
    threshold = otsu_thresholds(smooth, inner) * params.threshold_scale
    dark = (smooth <= threshold[:, None, None]) & inner
    weak = (smooth <= (threshold * (params.weak_threshold_scale / params.threshold_scale))[:, None, None]) & inner
    if params.opening_radius > 0:
        dark = stack_opening(dark, params.opening_radius)
    return dark, weak


def weak_lv_labels(frames: np.ndarray, sector: SectorGeometry | None = None, params: WeakLabelParams | None = None):
    """Weak LV masks for every frame of an apical four-chamber video, with no tracing.

    1. Dark pools (:func:`dark_pools`): temporal median of 3, Gaussian smoothing, division by
       the local mean (evens out depth attenuation and near-field haze), per-frame Otsu on the
       fan's pixels, a small opening.
    2. Pools are eroded to cores, so the LV separates from the RV and atria where thin gaps
       join them; every core is scored by A4C priors (angle from the fan bisector, distance
       from the apex, reach towards the apex, area, elongation).
    3. Best core per frame; pass two re-scores with the overlap with pass one's consensus,
       because the LV stays in place while other pools come and go.
    4. The winner regrows inside its pool, then (hysteresis) a few pixels into fainter pool
       (the hazy apex), is cut at a neck across its long axis (open mitral valve joining the
       LA) and cleaned up by :func:`refine_mask`.

    Returns ``(masks uint8 (T, H, W), info)``; ``info`` holds ``sector``, per-frame ``score``
    of the chosen core (-inf where none) and ``prior`` (float (H, W), fraction of frames whose
    pass-one choice covers each pixel). Frames without a plausible pool get an empty mask
    (quality control rejects them).
    """
    params = params or WeakLabelParams()
    gray, sector = gray_and_sector(frames, sector)
    distance, angle = sector.polar()
    dark, weak = dark_pools(gray, sector, params)
    septum = find_septum(gray, sector, params)
    if septum is not None:
        lv_side = lv_side_of_septum(gray.shape[1:], septum)
        dark &= lv_side
        weak &= lv_side
    if params.max_lv_extent:
        within = distance <= params.max_lv_extent * sector.radius
        dark &= within
        weak &= within
    cores = dark
    if params.core_radius > 0:
        cores = _stack_morphology(dark, params.core_radius, "erode", 0)
    labels, count = ndimage.label(cores, structure=_PLANE8)
    table = _component_table(labels, count, distance, angle)
    score = _score_components(table, sector, params)
    first_pass = _best_per_frame(labels, table, score)

    # Pass two: the LV sits in the same place all clip long, so a core overlapping the
    # consensus of pass one wins over a better-shaped pool elsewhere in a few odd frames.
    prior = first_pass.mean(axis=0)
    if params.prior_weight > 0 and first_pass.any():
        overlap = np.bincount(labels.ravel(), weights=np.broadcast_to(prior, labels.shape).ravel(), minlength=count + 1)
        overlap /= np.maximum(table["area"], 1) * max(prior.max(), 1e-6)
        score = score + params.prior_weight * overlap
        chosen = _best_per_frame(labels, table, score)
    else:
        chosen = first_pass
    if params.core_radius > 0 and params.regrow_radius > 0:
        chosen = _stack_morphology(chosen, params.regrow_radius, "dilate", 0) & dark
    for _ in range(params.weak_growth):  # geodesic growth: stays inside the weak pool
        chosen = _stack_morphology(chosen, 1, "dilate", 0) & (weak | chosen)
    if params.neck_ratio > 0:
        chosen = cut_at_neck(chosen, sector, params.neck_ratio)
    if params.valve_length_ratio > 0:
        chosen = cut_at_valve_plane(chosen, sector, params.valve_length_ratio)
    masks = refine_mask(chosen, sector, params=params, select=True)
    best = np.full(gray.shape[0], -np.inf)
    np.maximum.at(best, table["frame"], score)
    info = {"sector": sector, "score": best, "prior": prior, "components": count, "septum": septum}
    return masks, info


def find_septum(gray: np.ndarray, sector: SectorGeometry, params: WeakLabelParams | None = None, trace: dict | None = None):
    """The interventricular septum of an A4C video as a line ``x = a + b * y``, or None.

    The septum is tissue with a blood pool on either side (RV left, LV right) that stays put, so
    it is a ridge of the time-averaged image (after local-mean normalisation, as in
    :func:`dark_pools`) that is brighter than both its flanks (6-14 px each side); the lateral
    walls and the far field have a dark side at most. Dynamic programming traces the
    strongest such ridge down the rows between 15 % and 55 % of the fan radius from the apex
    (one pixel sideways per row at most, each step penalised; from ``septum_max_angle`` left of the
    bisector to half that right of it, since the LV lies right of the septum), and a line is
    fitted robustly through it. It is trusted only when the traced ridge is clearly
    brighter than its flanks (``septum_min_contrast``); otherwise None, and the caller does
    without it. ``trace`` (a dict), when given, receives the traced ``rows``, ``path``,
    ``contrast`` and fitted ``line`` whether trusted or not (diagnostics).
    """
    params = params or WeakLabelParams()
    if params.septum_max_angle <= 0:
        return None
    gray = gray_stack(gray)
    height, width = gray.shape[1:]
    fan = sector.mask.astype(np.float32)
    mean = ndimage.gaussian_filter(gray.mean(axis=0), 1.5) * fan
    local = _wide_blur(mean[None], 14.0)[0] / np.maximum(_wide_blur(fan[None], 14.0)[0], 1e-3)
    image = np.where(sector.mask, mean / np.maximum(local, 1e-3), np.nan)
    # Mean of the pixels 6-14 px left and right of every pixel (NaN outside the fan): a septum
    # is ~1 cm thick (~7 px at EchoNet's ~1.4 mm per pixel), its ventricles 3-5 cm wide.
    reach = np.arange(6, 15)
    padded = np.pad(image, ((0, 0), (reach[-1], reach[-1])), constant_values=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN flanks outside the fan
        left = np.nanmean(np.stack([padded[:, reach[-1] - k : reach[-1] - k + width] for k in reach]), axis=0)
        right = np.nanmean(np.stack([padded[:, reach[-1] + k : reach[-1] + k + width] for k in reach]), axis=0)
    flanks = np.fmax(left, right)
    ridge = np.nan_to_num(image - flanks, nan=-1.0)
    distance, angle = sector.polar()
    wedge = (
        sector.mask
        & (distance >= 0.15 * sector.radius)
        & (distance <= 0.55 * sector.radius)
        # The LV lies right of the septum, so the septum cannot sit far right of the bisector.
        & (angle >= -math.radians(params.septum_max_angle))
        & (angle <= math.radians(0.5 * params.septum_max_angle))
    )
    rows = np.flatnonzero(wedge.sum(axis=1) >= 5)
    if len(rows) < 8:
        return None
    rows = np.arange(rows[0], rows[-1] + 1)
    # Each sideways step costs a little, so the path follows one straight-ish wall instead of
    # hopping between bright specks (3 = 3 % of the normalised local mean brightness, 100).
    step_cost = np.array([3.0, 0.0, 3.0])[:, None]
    gain = np.where(wedge[rows], ridge[rows], -np.inf)
    total = gain[0].copy()
    step = np.zeros(gain.shape, np.int8)
    for index in range(1, len(rows)):
        shifted = np.stack([np.r_[-np.inf, total[:-1]], total, np.r_[total[1:], -np.inf]]) - step_cost
        step[index] = shifted.argmax(axis=0) - 1
        total = shifted.max(axis=0) + gain[index]
    if not np.isfinite(total).any():
        return None
    path = np.empty(len(rows), np.int64)
    path[-1] = int(np.nanargmax(np.where(np.isfinite(total), total, -np.inf)))
    for index in range(len(rows) - 1, 0, -1):
        path[index - 1] = path[index] + step[index, path[index]]
    on_path = image[rows, path]
    contrast = float(np.nanmedian(on_path) / max(float(np.nanmedian(flanks[rows, path])), 1e-3))
    line = _robust_line(rows.astype(np.float64), path.astype(np.float64), min_points=8, tolerance=3.0)
    if trace is not None:
        trace.update(rows=rows, path=path, contrast=contrast, line=line)
    if line is None or not np.isfinite(contrast) or contrast < params.septum_min_contrast:
        return None
    return line


def lv_side_of_septum(shape: tuple[int, int], septum) -> np.ndarray:
    """Bool (H, W): pixels on the image's right of the septum line (all True without one)."""
    height, width = shape
    if septum is None:
        return np.ones(shape, bool)
    a, b = septum
    ys, xs = np.mgrid[0:height, 0:width]
    return xs >= a + b * ys


def cut_at_valve_plane(masks: np.ndarray, sector: SectorGeometry, length_ratio: float = 1.2, quantile: float = 0.25) -> np.ndarray:
    """Cut every frame of a video's LV masks at ``length_ratio`` x the LV's closed-valve length.

    Along the video's LV axis (fan apex -> time-averaged mask centroid) each frame has a near end
    and a length. In frames where the mitral valve is closed the LV stands alone, so a low
    quantile of the lengths is the LV's own (end-systolic) length; frames whose mask runs
    further carry the left atrium through the open valve. Pixels beyond ``near + length_ratio x
    that length`` go (a cut perpendicular to the LV axis: the mitral annulus plane).
    """
    stack = np.asarray(masks) > 0
    present = stack.any(axis=(1, 2))
    if length_ratio <= 0 or present.sum() < 4:
        return stack
    along, across = lv_axis_coordinates(stack, sector)
    chosen = stack[present]
    inside = np.where(chosen, along[None], np.nan)
    lengths = np.nanmax(inside, axis=(1, 2)) - np.nanmin(inside, axis=(1, 2)) + 1
    sideways = np.where(chosen, across[None], np.nan)
    widths = np.nanmax(sideways, axis=(1, 2)) - np.nanmin(sideways, axis=(1, 2)) + 1
    length = float(np.quantile(lengths, quantile))
    short = lengths <= length
    # Only trust the short frames as "the LV alone" when they are shaped like one: an A4C
    # ventricle is longer than wide even when dilated (sphericity index <= ~0.8, i.e. length /
    # width >= 1.25). A short, wide label is a wrong pick (e.g. near-field haze), not the LV.
    if np.median(lengths[short] / widths[short]) < 1.25:
        return stack
    near = np.nanmin(inside, axis=(1, 2))
    limit = float(np.median(near)) + length_ratio * length
    return stack & (along <= limit)[None]


def cut_at_neck(masks: np.ndarray, sector: SectorGeometry, neck_ratio: float = 0.75, min_fraction: float = 0.4) -> np.ndarray:
    """Cut each frame's mask across its long axis where it narrows to a neck.

    An open mitral valve joins the LV and LA into one pool shaped like an hourglass. Along the
    line from the fan apex through the mask's centroid, the width profile (pixels per 1-px
    slab) is compared with the widest slab on each side; the narrowest slab below
    ``neck_ratio`` x the smaller of those maxima, and further than ``min_fraction`` of the
    mask's length from its apical end, becomes the cut and everything beyond it goes.
    All frames at once: one ``bincount`` builds a (T, slabs) width table.
    """
    stack = np.asarray(masks) > 0
    frames = stack.shape[0]
    frame, ys, xs = np.nonzero(stack)
    if frame.size == 0:
        return stack
    area = np.bincount(frame, minlength=frames).astype(np.float64)
    safe = np.maximum(area, 1)
    ax, ay = sector.apex
    cx = np.bincount(frame, weights=xs, minlength=frames) / safe - ax
    cy = np.bincount(frame, weights=ys, minlength=frames) / safe - ay
    norm = np.maximum(np.hypot(cx, cy), 1e-6)
    ux, uy = cx / norm, cy / norm
    along = (xs - ax) * ux[frame] + (ys - ay) * uy[frame]
    present = np.flatnonzero(area)  # np.nonzero lists pixels frame by frame: segment minima
    start = np.zeros(frames)
    start[present] = np.minimum.reduceat(along, np.searchsorted(frame, present))
    slab = np.floor(along - start[frame]).astype(np.int64)
    slabs = int(slab.max()) + 1
    widths = np.bincount(frame * slabs + slab, minlength=frames * slabs).reshape(frames, slabs).astype(np.float64)
    widths = ndimage.uniform_filter1d(widths, 3, axis=1, mode="constant")
    above = np.maximum.accumulate(widths, axis=1)
    below = np.maximum.accumulate(widths[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = widths / np.minimum(above, below)
    length = (np.bincount(frame * slabs + slab, minlength=frames * slabs).reshape(frames, slabs) > 0)
    last = slabs - 1 - length[:, ::-1].argmax(axis=1)
    position = np.arange(slabs)[None]
    eligible = (position >= min_fraction * last[:, None]) & (position < last[:, None]) & np.isfinite(ratio)
    ratio = np.where(eligible, ratio, np.inf)
    cut = ratio.argmin(axis=1)
    has_neck = ratio[np.arange(frames), cut] < neck_ratio
    keep = ~has_neck[frame] | (slab < cut[frame])
    out = np.zeros_like(stack)
    out[frame[keep], ys[keep], xs[keep]] = True
    return out


def refine_mask(
    masks: np.ndarray,
    sector: SectorGeometry | None = None,
    params: WeakLabelParams | None = None,
    select: bool = True,
) -> np.ndarray:
    """Anatomical clean-up of LV masks (T, H, W) or (H, W); returns uint8 of the same shape.

    With ``select`` keep per frame the connected component that is most LV-like by the same
    priors as :func:`weak_lv_labels` (position relative to the apex and bisector when a sector
    is given, else simply the largest); then fill holes, close, and optionally take the convex
    hull. Stage 4 of label-free training applies this to network predictions.
    """
    params = params or WeakLabelParams()
    masks = np.asarray(masks)
    single = masks.ndim == 2
    stack = (masks[None] if single else masks) > 0
    if stack.ndim != 3:
        raise UserError(f"masks must be (T, H, W) or (H, W); got shape {masks.shape}")
    if sector is not None and sector.mask.shape != stack.shape[1:]:
        raise UserError(f"sector mask {sector.mask.shape} does not match masks {stack.shape[1:]}")
    if select and stack.any():
        labels, count = ndimage.label(stack, structure=_PLANE8)
        if sector is not None:
            distance, angle = sector.polar()
            table = _component_table(labels, count, distance, angle)
            score = _score_components(table, sector, replace(params, min_area_frac=0.0, max_area_frac=1.0))
            # Size matters more for predictions: a sliver near the apex must not beat the body.
            score = score + 2.0 * np.log(np.maximum(table["area"], 1))
        else:
            flat = labels.ravel()
            foreground = np.flatnonzero(flat)
            frame_of = np.zeros(count + 1, np.int64)
            frame_of[flat[foreground]] = foreground // (stack.shape[1] * stack.shape[2])
            table = {"frame": frame_of}
            score = np.bincount(flat[foreground], minlength=count + 1).astype(np.float64)
        score[0] = -np.inf
        stack = _best_per_frame(labels, table, score)
    if params.closing_radius > 0:
        stack = stack_closing(stack, params.closing_radius)
    if params.fill_holes:
        stack = stack_fill_holes(stack)
    if params.convex_hull:
        stack = _convex_hulls(stack)
    if sector is not None:
        stack &= sector.mask
    out = stack.astype(np.uint8)
    return out[0] if single else out


def snap_to_blood_pool(
    masks: np.ndarray,
    frames: np.ndarray,
    sector: SectorGeometry | None = None,
    pool_scale: float = 1.3,
    params: WeakLabelParams | None = None,
) -> np.ndarray:
    """Keep only the mask pixels that the image shows as blood; returns bool (T, H, W).

    A network's boundary is a smooth guess that follows its training labels; the endocardium in
    the image is a dark-to-bright edge. Pixels of ``masks`` brighter than ``pool_scale`` x the
    frame's in-fan Otsu threshold (after the same smoothing and local-mean normalisation as
    :func:`dark_pools`) are myocardium, valve or clutter, and go. Self-learning needs this: a 3-D
    network blurs the LV over time (phantom: +12 % area at end-systole, -2 % at end-diastole) and,
    retrained on its own masks, keeps the blur; the image does not. Run :func:`refine_mask` after
    it to re-select one LV blob and fill what speckle left open.
    """
    params = params or WeakLabelParams()
    if pool_scale <= 0:
        raise UserError(f"pool_scale must be > 0, got {pool_scale}")
    gray = gray_stack(frames)
    stack = np.asarray(masks) > 0
    if stack.shape != gray.shape:
        raise UserError(f"masks {stack.shape} do not match frames {gray.shape}")
    if sector is None:
        sector = detect_sector(gray)
    # The LV apex can lie in the near field and touch the fan's rim: keep both for snapping.
    _, pool = dark_pools(gray, sector, replace(params, weak_threshold_scale=pool_scale, near_field=0.0, edge_margin=0))
    return stack & pool


def _convex_hulls(stack: np.ndarray) -> np.ndarray:
    """Convex hull of each frame's mask (OpenCV; one cheap call per non-empty frame)."""
    import cv2

    out = np.zeros_like(stack, dtype=np.uint8)
    for index in np.flatnonzero(stack.any(axis=(1, 2))):
        ys, xs = np.nonzero(stack[index])
        hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32))
        cv2.fillConvexPoly(out[index], hull, 1)
    return out.astype(bool) | stack


def dice_per_frame(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of each frame of two (T, H, W) masks (1.0 where both are empty)."""
    from unilvseg.evaluation.metrics import dice_counts, dice_from_counts

    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape:
        raise UserError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
    return dice_from_counts(*dice_counts(prediction, truth), empty=1.0)


def evaluate_folder(data_path, max_videos: int | None = None, params: WeakLabelParams | None = None):
    """Stage-1 weak labels of each video under ``data_path/Videos`` scored against
    ``ReferenceMasks`` (when present) and quality control; returns a pandas DataFrame."""
    import pandas as pd

    from unilvseg.data.index import reference_masks
    from unilvseg.data.video import read_video
    from unilvseg.labelfree.qc import quality_control

    data_path = Path(data_path)
    videos_dir = data_path / "Videos" if (data_path / "Videos").is_dir() else data_path
    videos = sorted(videos_dir.glob("*.avi"))
    if not videos:
        raise UserError(f"--data_path {data_path}: no .avi videos in {videos_dir}")
    rows = []
    for path in videos[:max_videos]:
        frames = read_video(path)
        start, start_cpu = time.perf_counter(), time.process_time()
        masks, info = weak_lv_labels(frames, params=params)
        qc = quality_control(masks, info["sector"])
        row = {
            "video": path.stem,
            "frames": len(frames),
            "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - start_cpu,  # wall time is noisy on shared CPUs
            "qc_pass_rate": qc.pass_rate,
        }
        truth = reference_masks(data_path, path.stem)
        if truth is not None:
            if truth.shape != masks.shape:
                raise DataError(f"{data_path / 'ReferenceMasks' / path.stem}.npz: masks {truth.shape} vs video {masks.shape}")
            dice = dice_per_frame(masks, truth)
            row.update(
                dice_mean=float(dice.mean()),
                dice_median=float(np.median(dice)),
                frac_dice_ge_07=float((dice >= 0.7).mean()),
                dice_qc_passed=float(dice[qc.passed].mean()) if qc.passed.any() else float("nan"),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unilvseg.labelfree.classical",
        description="Stage-1 weak LV labels (no tracings): per-video Dice vs ReferenceMasks and QC pass rate.",
    )
    parser.add_argument("--data_path", required=True, help="EchoNet-format folder (Videos/, optional ReferenceMasks/)")
    parser.add_argument("--max_videos", type=int, default=None)
    parser.add_argument("--convex_hull", action="store_true", help="take each frame's convex hull")
    args = parser.parse_args(argv)
    try:
        if args.max_videos is not None and args.max_videos < 1:
            raise UserError(f"--max_videos must be >= 1, got {args.max_videos}")
        table = evaluate_folder(args.data_path, args.max_videos, WeakLabelParams(convex_hull=args.convex_hull))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    numeric = table.drop(columns=["video"]).mean(numeric_only=True)
    print("mean:", ", ".join(f"{key}={value:.3f}" for key, value in numeric.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
