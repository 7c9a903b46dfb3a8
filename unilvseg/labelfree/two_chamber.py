"""Weak labels of an apical two-chamber (A2C) video: LV, LV myocardium and LA, anchored on the LV.

An A2C view cuts the heart 90 degrees about the LV's long axis from the A4C: the LV's anterior
and inferior walls, the mitral valve and the left atrium below it; no septum, no right heart.
The LV label is the classical one (:func:`unilvseg.labelfree.classical.weak_lv_labels`) with the
septum search off: an A2C has no septum, and the ridge that search finds instead is the LV's own
inferior wall. From the LV label, as for the A4C (:mod:`unilvseg.labelfree.four_chamber`):

* **LV myocardium**: a band around the cavity, above the annulus, as thick as the image shows
  the wall in that frame: the mean brightness of 1-pixel rings around the LV label (a classical
  edge profile) falls steepest at the epicardium. Where that fall is weak against the
  endocardial step (``min_edge``), the video's median measured thickness stands in, or, with no
  frame measured, ``wall_fraction`` of the LV's end-diastolic length (the A4C band's rule);
* **LA**: a marker-based watershed (after Ferreira et al., who label A2C videos with one) on the
  smoothed image's gradient magnitude, seeded with the LV label (whose base is the mitral
  annulus), the LA's core (the largest dark pool hanging from the annulus, under the LV) and
  the bright tissue around both. The LA is the LA marker's basin inside the dark pools: the
  watershed line between the two cavities falls on the valve (closed) or the annular ridge
  (open), and its line to the tissue on the atrial wall.

Labels follow ``unilvseg.data.structures.STRUCTURES`` (lv 1, myo 2, la 3); a frame where the LA
is not found leaves it empty.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from unilvseg.data.structures import STRUCTURES
from unilvseg.labelfree.classical import (
    SectorGeometry,
    WeakLabelParams,
    _stack_morphology,
    dark_pools,
    detect_sector,
    gray_stack,
    stack_fill_holes,
    weak_lv_labels,
)
from unilvseg.labelfree.four_chamber import _largest_per_frame, _lv_frame_of_reference

#: The structures an A2C label map holds.
A2C_STRUCTURES = ("lv", "myo", "la")


@dataclass(frozen=True)
class TwoChamberParams:
    """Anatomical proportions (fractions of the LV's end-diastolic length unless stated)."""

    #: LV wall thickness: ~0.9–1.1 cm in a ventricle ~8–9 cm long at end-diastole (as the A4C).
    wall_fraction: float = 0.12
    #: How far below the mitral annulus the LA may reach: ~4–6 cm.
    atrium_reach: float = 0.9
    #: Pools smaller than this fraction of the LV's mean area are not a chamber.
    min_area: float = 0.08
    #: Grow the LA by watershed (True) or take its dark pool as found (False).
    watershed: bool = True
    #: Measure the wall's thickness in each frame from the image (True), or use ``wall_fraction``.
    measure_wall: bool = True
    #: A measured epicardial edge weaker than this fraction of the endocardial step is not used.
    min_edge: float = 0.3


def a2c_lv_params(params: WeakLabelParams | None = None) -> WeakLabelParams:
    """The classical LV labeller's parameters for an A2C: no septum search."""
    return replace(params or WeakLabelParams(), septum_max_angle=0.0)


def two_chamber_labels(
    frames: np.ndarray,
    lv_masks: np.ndarray | None = None,
    sector: SectorGeometry | None = None,
    params: TwoChamberParams | None = None,
    lv_params: WeakLabelParams | None = None,
) -> tuple[np.ndarray, dict]:
    """Label map (uint8 (T, H, W): lv, myo, la) of an A2C video, and ``info`` (``sector``,
    ``lv_length``). ``lv_masks`` (e.g. a network's LV prediction) replaces the classical LV label
    as the anchor when given."""
    params = params or TwoChamberParams()
    lv_params = a2c_lv_params(lv_params)
    gray = gray_stack(frames)
    if sector is None:
        sector = detect_sector(gray)
    if lv_masks is None:
        lv_masks, _ = weak_lv_labels(gray, sector=sector, params=lv_params)
    lv = np.asarray(lv_masks) > 0
    labels = np.zeros(lv.shape, np.uint8)
    labels[lv] = STRUCTURES["lv"]
    info = {"sector": sector, "lv_length": float("nan")}
    reference = _lv_frame_of_reference(lv, sector)
    if reference is None:
        return labels, info
    beyond_base, ed_length, across, (septal_edge, lateral_edge) = reference
    info["lv_length"] = ed_length
    dark, weak = dark_pools(gray, sector, lv_params)
    dark &= ~lv
    wall = max(2, int(round(params.wall_fraction * ed_length)))  # the annulus band's and the LA's margins
    min_pixels = params.min_area * float(lv.sum(axis=(1, 2))[lv.any(axis=(1, 2))].mean())

    above_annulus = beyond_base <= 0
    if params.measure_wall:
        # Distance of every pixel from the frame's LV label (inf in frames without one).
        outward = np.stack([ndimage.distance_transform_edt(~frame) if frame.any() else np.full(frame.shape, np.inf) for frame in lv])
        thickness = _wall_thickness(gray, lv, outward, above_annulus, sector, lv_params, ed_length, params)
        info["wall"] = thickness
        myocardium = (outward <= thickness[:, None, None]) & ~lv & above_annulus & sector.mask[None]
    else:
        myocardium = _stack_morphology(lv, wall, "dilate", 0) & ~lv & above_annulus & sector.mask[None]
    below = (beyond_base > 0) & (beyond_base <= params.atrium_reach * ed_length)
    annulus = (beyond_base > 0) & (beyond_base <= 1.5 * wall)
    under_lv = (across[None] <= lateral_edge + wall) & (across[None] >= septal_edge - wall)
    la = _largest_per_frame(dark & below & under_lv & ~myocardium, min_pixels, anchor=annulus)
    if params.watershed and la.any():
        la = _watershed_atrium(gray, lv, la, weak & below & ~myocardium & ~lv, lv_params)
    labels[myocardium] = STRUCTURES["myo"]
    labels[stack_fill_holes(la) & (labels == 0)] = STRUCTURES["la"]
    return labels, info


def _watershed_atrium(gray: np.ndarray, lv: np.ndarray, la: np.ndarray, allowed: np.ndarray, params: WeakLabelParams) -> np.ndarray:
    """Per frame: the LA marker's watershed basin (gradient magnitude of the smoothed frame)
    against the LV and the tissue, kept inside ``allowed`` (the fainter dark pool below the
    annulus) and to its connected part that holds the marker."""
    from skimage.segmentation import watershed

    smooth = ndimage.gaussian_filter(gray, sigma=(0, params.sigma, params.sigma), mode="nearest")
    out = np.zeros_like(la)
    for t in np.flatnonzero(la.any(axis=(1, 2))):
        gradient = ndimage.gaussian_gradient_magnitude(smooth[t], 1.0)
        markers = np.zeros(gray.shape[1:], np.int32)
        core = _stack_morphology(la[t][None], 2, "erode", 0)[0]
        markers[~allowed[t] & ~_stack_morphology(allowed[t][None], 1, "dilate", 0)[0]] = 3  # tissue
        markers[lv[t]] = 1
        markers[core if core.any() else la[t]] = 2
        basins = watershed(gradient, markers)
        region = (basins == 2) & allowed[t]
        region, count = ndimage.label(region, structure=np.ones((3, 3), bool))
        keep = np.unique(region[la[t]])
        out[t] = np.isin(region, keep[keep > 0])
    return out


def _wall_thickness(gray, lv, outward, above_annulus, sector, lv_params, ed_length, params: TwoChamberParams) -> np.ndarray:
    """(T,): the LV wall's thickness in pixels per frame, from the image: the mean normalised
    brightness of 1-px rings around the LV label (``outward``: distance from it), above the
    annulus, falls steepest at the epicardium; searched between 0.04 and 0.25 LV lengths."""
    from unilvseg.labelfree.short_axis import normalised_image

    image = normalised_image(gray, sector, lv_params)
    fallback = params.wall_fraction * ed_length
    low, high = max(2, int(0.04 * ed_length)), max(4, int(0.25 * ed_length))
    out = np.full(len(lv), np.nan)
    for t in np.flatnonzero(lv.any(axis=(1, 2))):
        ring = np.ceil(outward[t]).astype(np.int64)
        keep = above_annulus[t] & sector.mask & (ring >= 1) & (ring <= high + 2)
        sums = np.bincount(ring[keep], weights=image[t][keep], minlength=high + 3)
        counts = np.bincount(ring[keep], minlength=high + 3)
        profile = sums / np.maximum(counts, 1)
        # Ring d holds pixels (d - 1, d] from the label: the steepest fall between rings d and
        # d + 1 puts the epicardium at a distance of about d.
        slope = np.diff(profile)  # slope[d] = ring d+1 - ring d
        d = low + int(np.argmin(slope[low : high + 1]))
        # Trust it when the fall across the epicardium (two rings either side) is a fair
        # fraction of the step from the cavity up to the wall.
        fall = profile[max(d - 1, 1) : d + 1].max() - profile[d + 1 : d + 3].min()
        rise = profile[1:3].max() - float(image[t][lv[t]].mean())
        if fall >= params.min_edge * max(rise, 1e-3):
            out[t] = d
    strong = np.isfinite(out)
    if strong.any():
        out[strong] = ndimage.median_filter(out[strong], size=5, mode="nearest")
        fallback = float(np.median(out[strong]))
    return np.where(strong, out, fallback)
