"""Weak labels of every A4C structure, anchored on the LV label (no tracing, no reference).

The LV label of :func:`unilvseg.labelfree.classical.weak_lv_labels` fixes the frame of reference
of the whole heart: its long axis (fan apex to the label's time-averaged centroid), its base
(the mitral annulus: the label's far end, frame by frame) and, with the interventricular septum
(:func:`~unilvseg.labelfree.classical.find_septum`), which side the right heart is on. The other
structures follow from A4C anatomy:

* **LV myocardium**: a band around the cavity, above the annulus, as thick as a wall is for a
  ventricle of that length (``wall_fraction`` of the LV's end-diastolic length: ~1 cm of an
  ~8–9 cm ventricle);
* **RV**: the largest blood pool beyond the septum (and its wall) and above the tricuspid plane,
  taken at the mitral annulus (the tricuspid annulus sits a little nearer the apex, so this is
  generous by a few pixels);
* **LA** / **RA**: the largest blood pool below the annulus on the LV / RV side of the septum
  line, within ``atrium_reach`` LV lengths of it.

Each choice is one connected dark pool per frame, with the structures kept apart by the same
priority the reference masks use (LV cavity, myocardium, RV, LA, RA). Labels follow
``unilvseg.data.structures.STRUCTURES``; frames where a structure is not found leave it empty
(quality control decides what trains).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unilvseg.data.structures import STRUCTURES
from unilvseg.labelfree.classical import (
    SectorGeometry,
    WeakLabelParams,
    _stack_morphology,
    dark_pools,
    detect_sector,
    find_septum,
    gray_stack,
    lv_axis_coordinates,
    stack_fill_holes,
    weak_lv_labels,
)


@dataclass(frozen=True)
class FourChamberParams:
    """Anatomical proportions (fractions of the LV's end-diastolic length unless stated)."""

    #: LV wall thickness: ~0.9–1.1 cm in a ventricle ~8–9 cm long at end-diastole.
    wall_fraction: float = 0.12
    #: How far below the mitral annulus an atrium may reach: atria are ~4–6 cm long.
    atrium_reach: float = 0.9
    #: How far the RV may lie from the septum line: an RV is ~2.5–4 cm wide at its base, about
    #: two thirds of the LV's width (itself about half the LV's length).
    rv_reach: float = 0.4
    #: Pools smaller than this fraction of the LV's mean area are not a chamber.
    min_area: float = 0.08


def _lv_frame_of_reference(lv: np.ndarray, sector: SectorGeometry):
    """``(beyond_base (T, H, W): distance along the LV axis past each frame's annulus, the LV's
    end-diastolic length, across (H, W), (septal edge, lateral edge) of the LV across the axis)``;
    None when the LV label is empty in all but one frame."""
    present = lv.any(axis=(1, 2))
    if present.sum() < 2:
        return None
    along, across = lv_axis_coordinates(lv, sector)  # the axis cut_at_valve_plane uses too
    inside = np.where(lv[present], along[None], np.nan)
    near, far_present = np.nanmin(inside, axis=(1, 2)), np.nanmax(inside, axis=(1, 2))
    ed_length = float(np.quantile(far_present - near, 0.9))
    # Frames without an LV label take the median annulus position.
    far = np.full(len(lv), float(np.median(far_present)))
    far[present] = far_present
    beyond_base = along[None] - far[:, None, None]  # (T, H, W), > 0 below the mitral annulus
    sideways = np.where(lv[present], across[None], np.nan)
    span = (float(np.nanmedian(np.nanmin(sideways, axis=(1, 2)))), float(np.nanmedian(np.nanmax(sideways, axis=(1, 2)))))
    return beyond_base, ed_length, across, span


def _septal_side(shape, septum, lv: np.ndarray, wall: float) -> np.ndarray:
    """Signed distance (pixels) from the septum line, > 0 on the LV's side. Without a septum, a
    vertical line a wall's thickness left of the LV label's septal edge stands in."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    if septum is None:
        # The left edge of where the LV is in most frames (of any frame when it moves a lot).
        consensus = lv.mean(axis=0) > 0.5 if lv.size else np.zeros(shape, bool)
        columns = np.flatnonzero(consensus.any(axis=0)) if consensus.any() else np.flatnonzero(lv.any(axis=(0, 1)))
        edge = float(columns.min()) if len(columns) else width / 2.0
        # The LV's edge is the septum's right face: its middle lies about a wall further left.
        return xs - edge + wall
    a, b = septum
    return (xs - (a + b * ys)) / math.sqrt(1.0 + b * b)


def _largest_per_frame(candidates: np.ndarray, min_pixels: float, anchor: np.ndarray | None = None) -> np.ndarray:
    """The largest 8-connected component of every frame (empty when smaller than ``min_pixels``);
    with ``anchor`` (bool (T, H, W)), only components that touch it count: a chamber abuts its
    valve plane, while dark gaps between the heart and the fan's edge do not."""
    out = np.zeros(candidates.shape, bool)
    for t, frame in enumerate(candidates):
        labels, count = ndimage.label(frame, structure=np.ones((3, 3), bool))
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        sizes[0] = 0
        if anchor is not None:
            touching = np.zeros(count + 1, bool)
            touching[np.unique(labels[anchor[t]])] = True
            sizes[~touching] = 0
        if sizes.max() >= min_pixels:
            out[t] = labels == int(sizes.argmax())
    return out


def four_chamber_labels(
    frames: np.ndarray,
    lv_masks: np.ndarray | None = None,
    sector: SectorGeometry | None = None,
    params: FourChamberParams | None = None,
    lv_params: WeakLabelParams | None = None,
) -> tuple[np.ndarray, dict]:
    """Label map (uint8 (T, H, W), ``STRUCTURES`` numbering) of an A4C video, and ``info``
    (``sector``, ``septum``, ``lv_length``). ``lv_masks`` (e.g. a network's LV prediction)
    replaces the classical LV label as the anchor when given."""
    params = params or FourChamberParams()
    lv_params = lv_params or WeakLabelParams()
    gray = gray_stack(frames)
    if sector is None:
        sector = detect_sector(gray)
    if lv_masks is None:
        lv_masks, _ = weak_lv_labels(frames, sector=sector, params=lv_params)
    lv = np.asarray(lv_masks) > 0
    labels = np.zeros(lv.shape, np.uint8)
    labels[lv] = STRUCTURES["lv"]
    septum = find_septum(gray, sector, lv_params)
    info = {"sector": sector, "septum": septum, "lv_length": float("nan")}
    reference = _lv_frame_of_reference(lv, sector)
    if reference is None:
        return labels, info
    beyond_base, ed_length, across, (septal_edge, lateral_edge) = reference
    info["lv_length"] = ed_length
    dark, _ = dark_pools(gray, sector, lv_params)
    dark &= ~lv
    wall = max(2, int(round(params.wall_fraction * ed_length)))
    side = _septal_side(lv.shape[1:], septum, lv, wall)
    min_pixels = params.min_area * float(lv.sum(axis=(1, 2))[lv.any(axis=(1, 2))].mean())

    above_annulus = beyond_base <= 0
    myocardium = _stack_morphology(lv, wall, "dilate", 0) & ~lv & above_annulus & sector.mask[None]
    # RV: beyond the septum and the septal wall, above the annulus, not too far out.
    rv_zone = (side[None] < -0.5 * wall) & (side[None] > -params.rv_reach * ed_length) & above_annulus
    # It lies against the septum (a strip just beyond the septum line), which the dark gap
    # between the RV's free wall and the fan's edge does not reach.
    septal_strip = (side[None] < 0) & (side[None] > -2.0 * wall) & above_annulus
    rv = _largest_per_frame(dark & rv_zone & ~myocardium, min_pixels, anchor=septal_strip)
    below = (beyond_base > 0) & (beyond_base <= params.atrium_reach * ed_length)
    # Atria hang from their valve planes: a pool counts only if it reaches within a wall's
    # thickness of the annulus, and only under its own ventricle (the LA under the LV's width,
    # the RA beyond the septum line).
    annulus = (beyond_base > 0) & (beyond_base <= 1.5 * wall)
    under_lv = (across[None] <= lateral_edge + 0.5 * wall) & (across[None] >= septal_edge - 2.0 * wall)
    la = _largest_per_frame(dark & below & under_lv & (side[None] >= -0.25 * wall), min_pixels, anchor=annulus)
    beyond_septum = (side[None] < -0.25 * wall) & (side[None] > -params.rv_reach * ed_length)
    # The RA lies under the RV: it reaches the annulus band just below the RV's base.
    under_rv = annulus & _stack_morphology(rv, max(2, int(1.5 * wall)), "dilate", 0)
    no_rv = ~rv.any(axis=(1, 2))
    under_rv[no_rv] = (annulus & beyond_septum)[no_rv]  # no RV found: anywhere beyond the septum line
    ra = _largest_per_frame(dark & below & beyond_septum & ~la, min_pixels, anchor=under_rv)
    # The reference masks' priority where shapes meet: LV cavity, myocardium, RV, LA, RA.
    labels[myocardium] = STRUCTURES["myo"]
    for name, mask in (("rv", rv), ("la", la), ("ra", ra)):
        labels[stack_fill_holes(mask) & (labels == 0)] = STRUCTURES[name]
    return labels, info
