"""Weak labels of a parasternal short-axis (SAX) video: LV cavity, LV myocardium and RV.

Ferreira et al. label their short-axis videos from an edge map (HED); no pretrained edge
network can be used here, so the edge map is classical: the radial derivative of the smoothed,
local-mean-normalised image (the same normalisation :func:`~unilvseg.labelfree.classical.dark_pools`
uses), read along rays from the LV's centre. A mid-ventricular short-axis section shows the LV
as a dark, roughly elliptical pool ringed by bright myocardium, with the RV a dark crescent
against its septal side (the image's left, in the standard orientation). So, per frame:

1. **LV cavity**: the dark pools of :func:`~unilvseg.labelfree.classical.dark_pools` (holes such
   as the papillary muscles filled), eroded to cores, scored by position (near the fan's centre
   line, at mid-depth), size, how well a filled ellipse describes them (an LV section is
   convex; the RV crescent and the gaps between tissues are not) and how much of the pixels just
   outside the pool are bright (``enclosure_weight``: a cavity is ringed by myocardium, a dark
   patch of tissue or near field is not); a second pass rewards the video's consensus position,
   the chosen core regrows inside its pool and takes its convex hull (papillary muscles against
   the wall count as cavity). Along ``rays`` rays from its centre, the endocardium is the
   strongest dark-to-bright edge within ``endo_window`` pixels of that pool's boundary.
2. **Myocardium**: on each ray, the epicardium is the strongest bright-to-dark edge between
   ``min_wall`` and ``max_wall`` cavity radii beyond the endocardium. Where that edge is weak
   (dropout, tissue as bright as the wall) the wall takes the thickness measured on the frame's
   strong rays, or, with too few of them, ``wall_fraction`` of the video's end-diastolic cavity
   radius (an anatomical ~1 cm wall on a ~2.2 cm radius). Radii are smoothed over neighbouring
   rays and frames.
3. **RV**: on the rays within ``rv_arc`` degrees of the septal side (``rv_side``: the image's
   left), a ray crosses the RV when it enters a dark pool within ``rv_gap`` pixels of the
   epicardium and that pool ends, within ``rv_reach`` cavity diameters, at a strong dark-to-bright
   edge (the RV free wall) or at the fan's edge (an RV the sector clips). The RV is the zone
   between the epicardium and those edges (the largest piece per frame): a dark pool alone leaks
   into dark tissue beyond the thin free wall, the edge stops it.

A short-axis section has no long axis: nothing here (nor quality control for ``--view sax``)
uses one. Labels follow ``unilvseg.data.structures.STRUCTURES`` (lv 1, myo 2, rv 4); frames
without a plausible LV pool stay empty (quality control rejects them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unilvseg.data.structures import STRUCTURES
from unilvseg.errors import UserError
from unilvseg.labelfree.classical import (
    _PLANE8,
    SectorGeometry,
    WeakLabelParams,
    _best_per_frame,
    _component_table,
    _convex_hulls,
    _disk,
    _median_of_three,
    _stack_morphology,
    _wide_blur,
    dark_pools,
    gray_and_sector,
    otsu_thresholds,
    stack_fill_holes,
)
from unilvseg.labelfree.four_chamber import _largest_per_frame

#: The structures a SAX label map holds.
SAX_STRUCTURES = ("lv", "myo", "rv")


@dataclass(frozen=True)
class ShortAxisParams:
    """Knobs of :func:`short_axis_labels`. Angles in degrees from the fan bisector (+ = image
    right), distances as fractions of the fan radius, areas as fractions of the fan area, wall
    and reach in LV cavity radii / diameters."""

    lv_angle: float = 0.0  # the LV sits about on the fan's centre line ...
    lv_angle_sd: float = 20.0
    lv_distance: float = 0.5  # ... at mid-depth
    lv_distance_sd: float = 0.15
    lv_area_frac: float = 0.08  # typical cavity area
    min_area_frac: float = 0.004
    max_area_frac: float = 0.35
    core_radius: int = 2  # pools are eroded by this to cut thin bridges ...
    regrow_radius: int = 3  # ... and the chosen core grows back this far inside its pool
    prior_weight: float = 4.0  # second pass: reward overlap with the video's consensus LV
    #: Reward a pool ringed by bright tissue (myocardium), per unit of its bright-ring fraction.
    enclosure_weight: float = 6.0
    rays: int = 72
    endo_window: float = 3.0  # pixels either side of the pool boundary to look for the endocardium
    min_wall: float = 0.15  # epicardium search, in mean cavity radii beyond the endocardium
    max_wall: float = 1.2
    #: Epicardial edges weaker than this fraction of the frame's median endocardial edge are weak.
    min_edge: float = 0.3
    #: Fallback wall thickness, fraction of the end-diastolic cavity radius: ~1 cm of ~2.2 cm.
    wall_fraction: float = 0.45
    rv_side: float = 180.0  # direction of the RV from the LV centre (degrees, image axes: 180 = left)
    rv_arc: float = 110.0  # the RV is looked for within this many degrees of that direction
    rv_reach: float = 1.0  # the RV ends within this many cavity diameters beyond the epicardium
    rv_gap: float = 3.0  # pixels: the RV's blood starts this close to the epicardium
    min_rv_area: float = 0.08  # of the LV cavity's mean area

    def __post_init__(self):
        if self.rays < 8:
            raise UserError(f"ShortAxisParams.rays must be >= 8, got {self.rays}")
        if not 0 <= self.min_wall < self.max_wall:
            raise UserError(f"ShortAxisParams: need 0 <= min_wall < max_wall, got {self.min_wall}, {self.max_wall}")
        if not 0 <= self.min_area_frac < self.max_area_frac:
            raise UserError(f"ShortAxisParams: need 0 <= min_area_frac < max_area_frac, got {self.min_area_frac}, {self.max_area_frac}")


def normalised_image(gray: np.ndarray, sector: SectorGeometry, params: WeakLabelParams) -> np.ndarray:
    """The smoothed, local-mean-normalised stack :func:`dark_pools` thresholds (100 = the local
    mean brightness of the fan)."""
    smooth = _median_of_three(gray) if params.temporal_median else gray
    if params.sigma > 0:
        smooth = ndimage.gaussian_filter(smooth, sigma=(0, params.sigma, params.sigma), mode="nearest")
    if params.local_sigma > 0:
        fan = sector.mask.astype(np.float32)
        weight = _wide_blur(fan[None], params.local_sigma)
        local = _wide_blur(smooth * fan, params.local_sigma)
        smooth = np.clip(100.0 * smooth * (weight / np.maximum(local, 1e-3)), 0, 255)
    return smooth.astype(np.float32, copy=False)


def _dilate_labels(labels: np.ndarray, radius: int) -> np.ndarray:
    """Per-frame grey dilation of a (T, H, W) label stack by a disk (the largest label nearby),
    frames tiled as in :func:`~unilvseg.labelfree.classical._stack_morphology` (one OpenCV call)."""
    import cv2

    frames, height, width = labels.shape
    tiled = np.zeros((frames, height + radius, width), np.float32)  # labels < 2**24 stay exact
    tiled[:, :height] = labels
    kernel = _disk(radius).astype(np.uint8)
    out = cv2.dilate(tiled.reshape(frames * (height + radius), width), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(frames, height + radius, width)[:, :height].astype(labels.dtype)


def _enclosure(labels: np.ndarray, count: int, filled: np.ndarray, image: np.ndarray, sector: SectorGeometry, radius: int) -> np.ndarray:
    """Per component: the fraction of the pixels just outside its pool (within ``radius`` of
    the core, not in the filled dark pools, in the fan) brighter than the frame's in-fan Otsu
    threshold of ``image``: ~0.8 for a cavity ringed by myocardium, ~0.2-0.5 for a gap between
    tissues."""
    grown = _dilate_labels(labels, radius)
    ring = (grown > 0) & ~filled & sector.mask[None]
    bright = image > otsu_thresholds(image, sector.mask)[:, None, None]
    counts = np.bincount(grown[ring], minlength=count + 1)
    return np.bincount(grown[ring], weights=bright[ring], minlength=count + 1) / np.maximum(counts, 1)


def sax_lv_pool(gray: np.ndarray, sector: SectorGeometry, params: ShortAxisParams, lv_params: WeakLabelParams):
    """Step 1, before the edge search: ``(LV pool bool (T, H, W), dark pools bool (T, H, W))``."""
    dark, _ = dark_pools(gray, sector, lv_params)
    filled = stack_fill_holes(dark)  # papillary muscles and trabeculae inside the cavity
    cores = _stack_morphology(filled, params.core_radius, "erode", 0) if params.core_radius > 0 else filled
    labels, count = ndimage.label(cores, structure=_PLANE8)
    distance, angle = sector.polar()
    stats = _component_table(labels, count, distance, angle)
    area_frac = stats["area"] / max(sector.area, 1)
    enclosed = _enclosure(labels, count, filled, normalised_image(gray, sector, lv_params), sector, params.core_radius + 3)
    score = (
        -0.5 * ((np.degrees(stats["angle"]) - params.lv_angle) / params.lv_angle_sd) ** 2
        - 0.5 * ((stats["distance"] / sector.radius - params.lv_distance) / params.lv_distance_sd) ** 2
        - 0.5 * (np.log(np.maximum(area_frac, 1e-6) / params.lv_area_frac) / 0.7) ** 2
        + 4.0 * np.minimum(stats["fill"], 1.0)
        - 2.0 * np.log(stats["elongation"])
        + params.enclosure_weight * enclosed
    )
    score[(area_frac < params.min_area_frac) | (area_frac > params.max_area_frac)] = -np.inf
    score[0] = -np.inf
    chosen = _best_per_frame(labels, stats, score)
    if params.prior_weight > 0 and chosen.any():
        prior = chosen.mean(axis=0)
        overlap = np.bincount(labels.ravel(), weights=np.broadcast_to(prior, labels.shape).ravel(), minlength=count + 1)
        overlap /= np.maximum(stats["area"], 1) * max(prior.max(), 1e-6)
        chosen = _best_per_frame(labels, stats, score + params.prior_weight * overlap)
    if params.core_radius > 0 and params.regrow_radius > 0:
        chosen = _stack_morphology(chosen, params.regrow_radius, "dilate", 0) & filled
    # One blob per frame: the regrown core's largest piece, holes filled.
    out = np.zeros_like(chosen)
    for t in np.flatnonzero(chosen.any(axis=(1, 2))):
        pieces, n = ndimage.label(chosen[t], structure=np.ones((3, 3), bool))
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)
        sizes[0] = 0
        out[t] = pieces == int(sizes.argmax())
    # The cavity's section is convex, and papillary muscles against the wall count as cavity (as
    # in clinical LV volumes): the pool's convex hull bridges the notches they cut into it.
    return _convex_hulls(out), dark


def _circular_smooth(values: np.ndarray, median: int = 7, mean: int = 3) -> np.ndarray:
    """Smooth (T, rays) radii around the circle: a median then a mean, wrapping."""
    out = ndimage.median_filter(values, size=(1, median), mode="wrap")
    return ndimage.uniform_filter1d(out, mean, axis=1, mode="wrap")


def _star_masks(centres: np.ndarray, radii: np.ndarray, theta: np.ndarray, shape, present: np.ndarray) -> np.ndarray:
    """Bool (T, H, W): pixels whose distance from the frame's centre is at most the radius
    interpolated (around the circle) at their angle; frames not ``present`` stay empty."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.zeros((len(radii), height, width), bool)
    for t in np.flatnonzero(present):
        dx, dy = xs - centres[t, 0], ys - centres[t, 1]
        angle = np.mod(np.arctan2(dy, dx), 2 * np.pi)
        limit = np.interp(angle.ravel(), theta, radii[t], period=2 * np.pi).reshape(shape)
        out[t] = np.hypot(dx, dy) <= limit
    return out


def short_axis_labels(
    frames: np.ndarray,
    sector: SectorGeometry | None = None,
    params: ShortAxisParams | None = None,
    lv_params: WeakLabelParams | None = None,
) -> tuple[np.ndarray, dict]:
    """Label map (uint8 (T, H, W): lv, myo, rv) of a mid-ventricular SAX video, and ``info``
    (``sector``, per-frame LV ``centre`` (x, y), ``radii`` = (endocardial, epicardial, RV outer)
    each (T, rays) around ``theta``, ``strong_rays``: the fraction of rays per frame whose
    epicardial edge was strong)."""
    params = params or ShortAxisParams()
    lv_params = lv_params or WeakLabelParams()
    gray, sector = gray_and_sector(frames, sector)
    count, height, width = gray.shape
    pool, dark = sax_lv_pool(gray, sector, params, lv_params)
    labels = np.zeros(gray.shape, np.uint8)
    present = pool.any(axis=(1, 2))
    theta = np.linspace(0, 2 * np.pi, params.rays, endpoint=False)
    info = {"sector": sector, "theta": theta, "centre": np.full((count, 2), np.nan), "strong_rays": np.zeros(count)}
    if not present.any():
        return labels, info

    # Centres: each frame's pool centroid, median over neighbouring frames (robust to one odd pool).
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    area = pool.sum(axis=(1, 2)).astype(np.float64)
    centres = np.zeros((count, 2))
    centres[present, 0] = (pool[present] * xs).sum(axis=(1, 2)) / area[present]
    centres[present, 1] = (pool[present] * ys).sum(axis=(1, 2)) / area[present]
    for axis in (0, 1):  # frames without a pool borrow their neighbours' centre for the median
        centres[~present, axis] = np.interp(np.flatnonzero(~present), np.flatnonzero(present), centres[present, axis])
    centres = ndimage.median_filter(centres, size=(3, 1), mode="nearest")
    radius = np.sqrt(area / np.pi)  # of the pool's area-equivalent circle

    # The edge map: the radial derivative of the normalised image along every ray of every frame.
    image = normalised_image(gray, sector, lv_params)
    step = 0.5
    reach = float(radius.max()) * (1.0 + params.max_wall + 2.0 * params.rv_reach) + 2 * params.endo_window
    r = np.arange(0.0, reach + step, step)
    frames_at = np.flatnonzero(present)
    px = centres[frames_at, 0, None, None] + np.cos(theta)[None, :, None] * r[None, None]
    py = centres[frames_at, 1, None, None] + np.sin(theta)[None, :, None] * r[None, None]
    pt = np.broadcast_to(frames_at[:, None, None].astype(np.float64), px.shape)
    profile = ndimage.map_coordinates(image, [pt, py, px], order=1, mode="nearest")
    inside = ndimage.map_coordinates(pool.astype(np.float32), [pt, py, px], order=0, mode="constant") > 0
    is_dark = ndimage.map_coordinates(dark.astype(np.float32), [pt, py, px], order=0, mode="constant") > 0
    in_fan = ndimage.map_coordinates(sector.mask.astype(np.float32), [py, px], order=0, mode="constant") > 0
    derivative = np.gradient(profile, step, axis=2)
    derivative = ndimage.uniform_filter1d(derivative, 3, axis=1, mode="wrap")  # neighbouring rays agree
    derivative[~in_fan] = 0.0
    rows = np.arange(len(frames_at))[:, None]
    ray = np.arange(params.rays)[None]

    # Endocardium: the strongest dark-to-bright edge near where each ray leaves the pool.
    leaves = np.where(inside.all(axis=2), len(r) - 1, np.argmin(inside, axis=2))
    window = np.abs(r[None, None] - r[leaves][..., None]) <= params.endo_window
    endo_index = np.where(window, derivative, -np.inf).argmax(axis=2)
    endo = r[endo_index]
    scale = np.maximum(np.median(derivative[rows, ray, endo_index], axis=1), 1e-3)[:, None]  # per frame
    # Epicardium: the strongest bright-to-dark edge one wall beyond.
    mean_radius = radius[frames_at, None, None]
    search = (r[None, None] >= endo[..., None] + params.min_wall * mean_radius) & (
        r[None, None] <= endo[..., None] + params.max_wall * mean_radius
    )
    epi_index = np.where(search, derivative, np.inf).argmin(axis=2)
    strong = -derivative[rows, ray, epi_index] >= params.min_edge * scale
    endo = _circular_smooth(endo)
    thickness = r[epi_index] - endo
    ed_radius = float(np.quantile(endo.mean(axis=1), 0.9))
    fallback = float(np.median(thickness[strong])) if strong.sum() >= params.rays else params.wall_fraction * ed_radius
    frame_median = np.array([np.median(row[keep]) if keep.mean() >= 0.25 else fallback for row, keep in zip(thickness, strong)])
    thickness = np.where(strong, thickness, frame_median[:, None])
    thickness = _circular_smooth(thickness)
    # Over time: a median of three frames (the heart moves little from one frame to the next).
    endo = ndimage.median_filter(endo, size=(3, 1), mode="nearest")
    epi = endo + np.maximum(ndimage.median_filter(thickness, size=(3, 1), mode="nearest"), 1.0)

    # RV: on rays towards the septal side (image left), a dark run starting at the epicardium
    # and ending at a strong dark-to-bright edge (the RV free wall) within reach.
    outer = _rv_outer_radii(r, derivative, is_dark, in_fan, epi, scale, radius[frames_at], theta, params)
    outer = ndimage.median_filter(outer, size=(3, 1), mode="nearest")

    def full(values):
        out = np.zeros((count, params.rays))
        out[frames_at] = values
        return out

    endo, epi, outer = full(endo), full(epi), full(outer)
    info.update(centre=centres, strong_rays=full(strong.astype(np.float64)).mean(axis=1), radii=(endo, epi, outer))
    lv = _star_masks(centres, endo, theta, (height, width), present) & sector.mask[None]
    epicardium = _star_masks(centres, epi, theta, (height, width), present)
    myocardium = epicardium & ~lv & sector.mask[None]
    rv_zone = _star_masks(centres, np.maximum(outer, epi), theta, (height, width), present) & ~epicardium & sector.mask[None]
    # The edges bound the RV: its zone is taken whole (the dark pools' threshold sits inside
    # the blood, and missed 10 % of the RV on the tuning phantom), one piece per frame.
    min_pixels = params.min_rv_area * float(area[present].mean())
    rv = _largest_per_frame(rv_zone, min_pixels)
    labels[rv] = STRUCTURES["rv"]
    labels[myocardium] = STRUCTURES["myo"]
    labels[lv] = STRUCTURES["lv"]
    return labels, info


def _rv_outer_radii(r, derivative, is_dark, in_fan, epi, scale, radius, theta, params: ShortAxisParams) -> np.ndarray:
    """(frames, rays): the RV's outer radius on each ray (the epicardium's where there is no RV).

    A ray crosses the RV when, within ``rv_gap`` pixels of the epicardium, it enters a dark run
    that ends at a strong dark-to-bright edge (the RV free wall) or at the fan's edge (an RV
    the sector clips), within ``rv_reach`` cavity diameters."""
    frames, rays, samples = derivative.shape
    side = np.abs(np.angle(np.exp(1j * (theta - math.radians(params.rv_side))))) <= math.radians(params.rv_arc)
    outer = epi.copy()
    start = np.clip(np.searchsorted(r, epi), 0, samples - 1)  # first sample beyond the epicardium
    for f in range(frames):
        reach = params.rv_reach * 2.0 * radius[f]
        for k in np.flatnonzero(side):
            first = start[f, k]
            last = min(samples, int(np.searchsorted(r, epi[f, k] + reach)))
            run = is_dark[f, k, first:last]
            entry = np.flatnonzero(run[: int(params.rv_gap / (r[1] - r[0])) + 1])
            if not entry.size:
                continue  # tissue, not blood, against the septum
            begin = first + int(entry[0])
            ends = np.flatnonzero(~is_dark[f, k, begin:last])
            if not ends.size:
                continue  # dark to the end of the reach: not a bounded chamber
            end = begin + int(ends[0])
            leaves_fan = np.flatnonzero(~in_fan[f, k, end:])
            if leaves_fan.size and leaves_fan[0] * (r[1] - r[0]) <= params.rv_gap:
                outer[f, k] = r[end + int(leaves_fan[0])]  # the sector clips the RV
                continue
            lo, hi = max(begin, end - int(params.endo_window / (r[1] - r[0]))), min(last, end + int(params.endo_window / (r[1] - r[0])) + 1)
            edge = lo + int(np.argmax(derivative[f, k, lo:hi]))
            if derivative[f, k, edge] >= params.min_edge * scale[f, 0] and r[edge] - epi[f, k] >= 1.0:
                outer[f, k] = r[edge]
    return outer


