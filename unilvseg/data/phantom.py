"""Synthetic apical-4-chamber echo videos (and, on request, A2C and SAX views of the same
hearts) in the exact EchoNet-Dynamic on-disk format.

The phantom lets every part of the project (loaders, training, evaluation, the CLIs) run end to
end without the real data set, and gives a dense ground truth that real data lacks: the LV mask
is known on every frame (``ReferenceMasks/``), not only at the two traced frames.

Anatomy, in EchoNet orientation: the fan's apex is at the top centre; the LV (dark cavity in a
bright myocardial shell) is on the image's right with its apex towards the transducer, the RV on
the left beyond the septum, the atria below the valve plane. Each video has its own pose, size,
heart rate and ejection fraction; the LV follows a smooth periodic volume curve (systole, rapid
filling, diastasis, atrial kick) with ED = largest and ES = smallest LV of the traced beat.
Speckle is multiplicative Rayleigh noise, correlated over a couple of pixels and frames, and
the signal fades with depth and towards the fan's edges.

Everything is computed in closed form per pixel, vectorised over blocks of frames, so the
traced chords, the dense masks and the image all come from one geometry:

* LV cavity in heart coordinates (``a`` along the long axis from the apex, ``l`` across it,
  positive towards the lateral wall): ``0 <= a <= L`` and ``-wL(a/L) <= l <= wR(a/L)`` with a
  bullet-shaped half-width profile.
* ``VolumeTracings.csv``: the long axis (apex -> mitral-annulus midpoint) and 20 chords across
  the cavity at the method-of-disks midpoints ``a = (k + 0.5) L / 20``.
* ``EF``/``EDV``/``ESV`` come from those chords by Simpson's monoplane method of disks at an
  assumed ``MM_PER_PIXEL``, so they agree with what any loader recomputes from the tracings.

Views (``views=`` / ``--views a4c a2c sax``): each heart's LV is a 3D body whose cross-section
at every level is an ellipse of diameters D4 (septal-lateral, the A4C width profile above) and
D2 = ellipticity x D4 (anterior-inferior, one ellipticity per heart). The A2C video is its
long-axis section turned 90 degrees about the long axis (LV, myocardium, LA), the SAX video
its mid-papillary cross-section (LV, myocardium, RV crescent), both with the A4C's timing.
FileList then gains ``View``, ``Heart`` and ``Ellipticity`` columns, and EF/EDV/ESV of every
row are the 3D body's exact volumes (``true_volumes_ml``) instead of the A4C chords' disks.
The default (A4C only) writes the same files as before, byte for byte. See docs/views.md.

CLI: ``python -m unilvseg.data.phantom --out DIR --videos N --seed S [--views a4c a2c sax]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from unilvseg.errors import UserError
from unilvseg.data.structures import LABELS_FILE, STRUCTURES, labels_json
from unilvseg.io import TMP_PREFIX, atomic_path, save_npz, write_csv, write_json, write_text

log = logging.getLogger("unilvseg")

PHANTOM_VERSION = "v1"
#: Assumed pixel size for turning traced pixels into volumes (EchoNet's 112x112 frames cover
#: roughly 15 cm of depth; the real-data README uses the same figure).
MM_PER_PIXEL = 1.4
FRAME_SIZE = 112
FPS = 50
N_CHORDS = 20
FILELIST_COLUMNS = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
TRACING_COLUMNS = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
COMPLETE_MARKER = ".complete"
#: Every traced frame's polygon (rounded, skimage.draw.polygon) matches the dense mask this well.
MIN_TRACED_DICE = 0.96
_MAX_DRAWS = 50
# Frames between independent dynamic speckle patterns (decorrelation time ~60 ms at 50 fps).
_SPECKLE_STEP = 3
# Frames rendered together: bounds memory (~20 float32 temporaries of this many frames) while
# keeping numpy's per-call overhead negligible.
_FRAME_BLOCK = 48
#: Views a phantom heart can be recorded in (``generate_phantom(views=...)``), in file order.
VIEWS = ("a4c", "a2c", "sax")
#: The ``View`` column's spelling of each view.
VIEW_LABELS = {"a4c": "A4C", "a2c": "A2C", "sax": "SAX"}
#: FileName suffix of each view's video (A4C keeps the heart's own name).
VIEW_SUFFIXES = {"a4c": "", "a2c": "_A2C", "sax": "_SAX"}
#: Ellipticity D2/D4 of the 3D LV is drawn uniformly from this range (one value per heart).
ELLIPTICITY_RANGE = (0.85, 1.15)
#: The SAX section cuts the LV at this fraction of its length from the apex (mid-papillary).
SAX_LEVEL = 0.5
# Random streams of the extra views: [seed, video, _VIEW_STREAM] draws the ellipticity and
# [seed, video, _VIEW_STREAM, k] the k-th view's pose, appearance and speckle, so the A4C
# video (stream [seed, video]) is the same whichever views are written.
_VIEW_STREAM = 0x5EC7105


@dataclass(frozen=True)
class HeartParams:
    """Per-video random parameters (lengths in pixels, angles in radians)."""

    n_frames: int
    heart_rate_bpm: float
    period: float  # frames per beat
    systole: float  # fraction of the beat from ED to ES
    ed_frame: int  # the traced beat starts here (contraction phase 0)
    target_ef: float  # fraction
    # Fan (field of view).
    fan_x: float
    fan_y: float
    fan_half_angle: float
    fan_radius: float
    attenuation_px: float
    gain: float
    gamma: float
    # LV pose and shape at ED.
    apex_x: float
    apex_y: float
    axis_angle: float  # 0 = straight down, positive = base towards the image's right
    length: float  # L at ED
    half_width: float  # W at ED (the profile peaks at about 0.9 W)
    profile_bluntness: float  # 1 = half-ellipse apex, 0 = pointed
    basal_narrowing: float
    asymmetry: float
    wall: float  # myocardial thickness at ED
    long_shortening: float  # L_ES / L_ED
    width_shortening: float  # W_ES / W_ED
    # Other chambers.
    rv_width: float
    rv_start: float  # RV apex as a fraction of L
    atrium_length: float
    atrium_width: float
    # Appearance.
    wall_brightness: float
    lateral_dropout: float
    dropout_at: float
    wobble_amplitude: float
    wobble_period: float
    wobble_phase: float
    speckle_static: float
    rv_shortening: float = 0.25  # RV width ES/ED fall: a normal RV's fractional area change is ~40-50 %
    # The section these parameters draw (VIEWS): "a4c" (the fields above as described), "a2c"
    # (half_width, asymmetry, pose and appearance of the A2C recording, see _view_params) or
    # "sax" (apex_x/apex_y are the LV centre in the image, axis_angle the section's rotation).
    view: str = "a4c"
    # D2 / D4 of the 3D LV: its anterior-inferior diameter (A2C) over its septal-lateral one
    # (A4C), the same at every level and every frame.
    ellipticity: float = 1.0


#: Per-recording appearance (gain, attenuation, dropout, breathing drift, speckle): drawn for
#: each heart's A4C and again for each other view of it, in this order.
APPEARANCE_RANGES = {
    "attenuation_px": (90.0, 220.0),
    "gain": (1.2, 1.7),
    "gamma": (0.8, 1.1),
    "wall_brightness": (0.4, 0.6),
    "lateral_dropout": (0.0, 0.6),
    "dropout_at": (0.3, 0.8),
    "wobble_amplitude": (0.0, 1.0),
    "wobble_period": (120.0, 250.0),
    "wobble_phase": (0.0, 2 * np.pi),
    "speckle_static": (0.2, 0.5),
}


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


#: Pathologies a phantom heart can be given (``generate_phantom(pathologies=...)``), each a
#: change of the drawn anatomy far enough past the chamber-quantification limits (ASE/EACVI
#: 2015, see unilvseg.evaluation.chambers) that the truth label maps show it.
PATHOLOGIES = ("lv_dilated", "lv_reduced_ef", "la_enlarged", "rv_dilated_reduced", "lv_hypertrophy")


def _with_pathology(p: HeartParams, pathology: str, rng: np.random.Generator) -> HeartParams:
    if pathology == "lv_dilated":  # larger and rounder, function kept
        return replace(p, length=p.length * 1.2, half_width=p.half_width * 1.4, wall=p.wall * 0.9)
    if pathology == "lv_reduced_ef":
        target_ef = _uniform(rng, 0.15, 0.38)
        long_shortening = 1.0 - 0.06 * min(1.0, target_ef / 0.6)
        return replace(p, target_ef=target_ef, long_shortening=long_shortening,
                       width_shortening=float(np.sqrt((1.0 - target_ef) / long_shortening)))
    if pathology == "la_enlarged":
        return replace(p, atrium_length=p.atrium_length * 1.45, atrium_width=p.atrium_width * 1.35)
    if pathology == "rv_dilated_reduced":  # RV wider than the LV, FAC well under 35 %
        return replace(p, rv_width=p.half_width * _uniform(rng, 1.05, 1.25), rv_shortening=_uniform(rng, 0.05, 0.1))
    if pathology == "lv_hypertrophy":  # a thick wall around a normal or small cavity
        return replace(p, wall=p.wall * 1.9, half_width=p.half_width * 0.92)
    raise ValueError(f"unknown pathology {pathology!r}; expected one of {', '.join(PATHOLOGIES)}")


def _sample_params(rng: np.random.Generator, n_frames: int) -> HeartParams:
    """Draw one video's anatomy, pose, timing and appearance."""
    heart_rate = _uniform(rng, 50.0, 110.0)
    period = 60.0 * FPS / heart_rate
    systole = 0.30 + 0.12 * (heart_rate - 50.0) / 60.0
    # Trace a random complete ED -> ES stretch that fits in the video (short test videos
    # still get one because only ED..ES, not a whole beat, must fit).
    es_offset = int(np.ceil(systole * period)) + 1
    last_ed = max(0, n_frames - 1 - es_offset)
    ed_frame = int(rng.integers(0, last_ed + 1))

    # Mostly normal hearts, some with reduced function; dilated hearts are larger and rounder.
    target_ef = _uniform(rng, 0.50, 0.76) if rng.random() < 0.7 else _uniform(rng, 0.17, 0.50)
    dilation = float(np.clip((0.55 - target_ef) / 0.38, 0.0, 1.0))
    size = _uniform(rng, 0.92, 1.18) * (1.0 + 0.15 * dilation)

    fan_x = FRAME_SIZE / 2 + _uniform(rng, -1.5, 1.5)
    fan_y = _uniform(rng, -2.0, 6.0)
    # EchoNet's A4C views centre the whole heart, so the LV apex sits right of the fan's axis
    # and the LV is tilted with its base further right.
    apex_x = fan_x + _uniform(rng, 4.0, 11.0)
    apex_y = fan_y + _uniform(rng, 16.0, 26.0)
    axis_angle = np.deg2rad(8.0 + _uniform(rng, -10.0, 10.0))
    # Keep the whole LV (and its wall) inside the frame.
    length = min(52.0 * size, (FRAME_SIZE - 6.0 - apex_y) / np.cos(axis_angle))
    half_width = length * (_uniform(rng, 0.30, 0.37) + 0.05 * dilation)

    long_shortening = 1.0 - _uniform(rng, 0.06, 0.16) * min(1.0, target_ef / 0.6)
    # Method of disks: V scales with width^2 * length, so solve for the width ratio.
    width_shortening = float(np.sqrt((1.0 - target_ef) / long_shortening))

    return HeartParams(
        n_frames=n_frames,
        heart_rate_bpm=heart_rate,
        period=period,
        systole=systole,
        ed_frame=ed_frame,
        target_ef=target_ef,
        fan_x=fan_x,
        fan_y=fan_y,
        fan_half_angle=np.deg2rad(_uniform(rng, 35.5, 39.5)),
        fan_radius=_uniform(rng, 108.0, 125.0),
        attenuation_px=_uniform(rng, *APPEARANCE_RANGES["attenuation_px"]),
        gain=_uniform(rng, *APPEARANCE_RANGES["gain"]),
        gamma=_uniform(rng, *APPEARANCE_RANGES["gamma"]),
        apex_x=float(apex_x),
        apex_y=float(apex_y),
        axis_angle=float(axis_angle),
        length=float(length),
        half_width=float(half_width),
        profile_bluntness=_uniform(rng, 0.55, 1.0),
        basal_narrowing=_uniform(rng, 0.12, 0.28),
        asymmetry=_uniform(rng, -0.08, 0.08),
        wall=_uniform(rng, 5.0, 7.5) * size,
        long_shortening=float(long_shortening),
        width_shortening=width_shortening,
        rv_width=half_width * _uniform(rng, 0.55, 0.8),
        rv_start=_uniform(rng, 0.18, 0.32),
        atrium_length=length * _uniform(rng, 0.3, 0.4),
        atrium_width=half_width * _uniform(rng, 0.75, 0.9),
        wall_brightness=_uniform(rng, *APPEARANCE_RANGES["wall_brightness"]),
        lateral_dropout=_uniform(rng, *APPEARANCE_RANGES["lateral_dropout"]),
        dropout_at=_uniform(rng, *APPEARANCE_RANGES["dropout_at"]),
        wobble_amplitude=_uniform(rng, *APPEARANCE_RANGES["wobble_amplitude"]),
        wobble_period=_uniform(rng, *APPEARANCE_RANGES["wobble_period"]),
        wobble_phase=_uniform(rng, *APPEARANCE_RANGES["wobble_phase"]),
        speckle_static=_uniform(rng, *APPEARANCE_RANGES["speckle_static"]),
    )


def _smooth_step(x):
    """0 -> 1 cosine ease on [0, 1], clamped outside."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def _contraction(p: HeartParams, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contraction c in [0, 1] (0 = ED, 1 = ES) and mitral-valve closure per frame.

    Systole is a cosine ease; diastole is rapid filling (80 % of the volume in the first 45 %),
    diastasis, then the atrial kick, so the LV area curve looks like a real one.
    """
    phase = np.mod((frames - p.ed_frame) / p.period, 1.0)
    diastole = (phase - p.systole) / (1.0 - p.systole)
    filling = 0.8 * _smooth_step(diastole / 0.45) + 0.2 * _smooth_step((diastole - 0.75) / 0.25)
    c = np.where(phase <= p.systole, _smooth_step(phase / p.systole), 1.0 - filling)
    closed = ((phase <= p.systole + 0.04) | (phase >= 0.97)).astype(np.float64)
    return c, closed


@dataclass
class _Frames:
    """Per-frame geometry (arrays of shape (T,))."""

    c: np.ndarray
    closed: np.ndarray
    apex_x: np.ndarray
    apex_y: np.ndarray
    length: np.ndarray
    half_width: np.ndarray
    wall: np.ndarray
    rv_width: np.ndarray
    atrium_scale: np.ndarray


def _frame_geometry(p: HeartParams) -> _Frames:
    t = np.arange(p.n_frames, dtype=np.float64)
    c, closed = _contraction(p, t)
    # Slow probe/breathing drift moves the whole heart a little (the fan stays put).
    wobble = p.wobble_amplitude * np.sin(2 * np.pi * t / p.wobble_period + p.wobble_phase)
    length = p.length * (1.0 - (1.0 - p.long_shortening) * c)
    half_width = p.half_width * (1.0 - (1.0 - p.width_shortening) * c)
    # Myocardium thickens as the cavity shrinks (roughly constant wall volume).
    wall = p.wall * (1.0 + c * (1.0 - p.width_shortening))
    return _Frames(
        c=c,
        closed=closed,
        apex_x=p.apex_x + wobble,
        apex_y=p.apex_y + 0.6 * wobble,
        length=length,
        half_width=half_width,
        wall=wall,
        rv_width=p.rv_width * (1.0 - p.rv_shortening * c),
        atrium_scale=1.0 + 0.12 * c,
    )


def _profile(s, bluntness: float, narrowing: float):
    """Bullet-shaped half-width profile of a ventricle: 0 at the apex (s=0), ~0.8 at the base (s=1).

    ``sqrt(u)`` (u = s(2-s), a half ellipse) blended with ``u`` (a pointier apex); sqrt and
    products only, because a float power per pixel dominated the rendering time.
    """
    s = np.clip(s, 0.0, 1.0)
    u = s * (2.0 - s)
    return (bluntness * np.sqrt(u) + (1.0 - bluntness) * u) * (1.0 - narrowing * s * s * s)


def _lv_half_widths(s, half_width, p: HeartParams):
    """(septal, lateral) half-widths of the LV cavity at fraction s of its length.

    The asymmetry vanishes at both ends so the annulus midpoint stays on the long axis.
    """
    base = half_width * _profile(s, p.profile_bluntness, p.basal_narrowing)
    s = np.clip(s, 0.0, 1.0)
    skew = (4.0 * p.asymmetry) * s * (1.0 - s)
    return base * (1.0 + skew), base * (1.0 - skew)


def _axes(p: HeartParams) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (x, y) along the long axis (apex -> base) and across it (septum -> lateral)."""
    along = np.array([np.sin(p.axis_angle), np.cos(p.axis_angle)])
    across = np.array([np.cos(p.axis_angle), -np.sin(p.axis_angle)])
    return along, across


def _ramp(x, width: float = 1.0):
    """Soft inside-membership of a signed margin x (pixels, > 0 inside): anti-aliased edges."""
    x = x * (1.0 / width) + 0.5
    return np.minimum(np.maximum(x, 0.0, out=x), 1.0, out=x)


def _inside(*margins):
    """Soft membership of the intersection of half-spaces given by signed margins."""
    margin = margins[0]
    for other in margins[1:]:
        margin = np.minimum(margin, other)
    return _ramp(margin)


def _render(p: HeartParams, geo: _Frames, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Video (T, H, W) uint8, LV masks (T, H, W) uint8 and the label map of every structure
    (T, H, W) uint8 (unilvseg.data.structures.STRUCTURES) for one phantom, in ``p.view``.

    Only pixels inside the fan (plus the LV's bounding box, so a mask is never clipped by the
    fan) are rendered, as a (frames, pixels) array; the rest stays black / background. Every
    view shares this pipeline (fan, clutter, speckle, gain, gamma); only the LV's bounding box
    and the anatomy (``_reflectivity``) depend on the view.
    """
    n, size = p.n_frames, FRAME_SIZE
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)

    # Static fan: depth, bearing, attenuation and edge fade, the same for every frame.
    dx, dy = xs - p.fan_x, ys - p.fan_y
    depth = np.hypot(dx, dy)
    bearing = np.arctan2(dx, dy)
    edge_margin = depth * np.sin(p.fan_half_angle - np.abs(bearing))
    fan = _ramp(np.minimum(edge_margin, p.fan_radius - depth), 2.0) * (dy > 0)
    gain = p.gain * (0.35 + 0.65 * np.exp(-depth / p.attenuation_px)) * fan
    # Low-frequency clutter in the tissue around the heart.
    clutter = ndimage.zoom(rng.uniform(0.0, 1.0, (10, 10)).astype(np.float32), size / 10, order=3)[:size, :size]
    background = 0.05 + 0.2 * np.clip(clutter, 0.0, 1.0) ** 2 + 0.5 * np.exp(-depth / 6.0)

    if p.view == "sax":
        # The LV's epicardial ellipse (largest at ED) wherever the wobble takes its centre.
        semi = float(geo.half_width.max() * _sax_profile(p) * max(1.0, p.ellipticity) + geo.wall.max())
        x0, y0 = np.floor(geo.apex_x.min() - semi - 3), np.floor(geo.apex_y.min() - semi - 3)
        x1, y1 = np.ceil(geo.apex_x.max() + semi + 3), np.ceil(geo.apex_y.max() + semi + 3)
    else:
        ed_rows = _tracing_rows(p, geo, int(np.argmin(geo.c)))
        x0, y0 = np.floor(ed_rows[:, [0, 2]].min() - 3), np.floor(ed_rows[:, [1, 3]].min() - 3)
        x1, y1 = np.ceil(ed_rows[:, [0, 2]].max() + 3), np.ceil(ed_rows[:, [1, 3]].max() + 3)
    box = np.zeros((size, size), dtype=bool)
    box[max(0, int(y0)) : int(y1) + 1, max(0, int(x0)) : int(x1) + 1] = True
    pixels = np.flatnonzero((fan > 0).ravel() | box.ravel())
    px, py = xs.ravel()[pixels], ys.ravel()[pixels]
    gain, background = gain.ravel()[pixels], background.ravel()[pixels].astype(np.float32)

    speckle = _speckle(rng, n, size, p.speckle_static, pixels)
    along, across = _axes(p)
    video = np.zeros((n, size * size), dtype=np.uint8)
    masks = np.zeros((n, size * size), dtype=np.uint8)
    labels = np.zeros((n, size * size), dtype=np.uint8)
    for start in range(0, n, _FRAME_BLOCK):
        block = slice(start, min(n, start + _FRAME_BLOCK))

        def per_frame(values):
            return values[block].astype(np.float32)[:, None]

        ox, oy = px[None] - per_frame(geo.apex_x), py[None] - per_frame(geo.apex_y)
        # SAX: a is from the LV centre towards the inferior wall, l towards the lateral wall.
        a = ox * np.float32(along[0]) + oy * np.float32(along[1])  # along the LV long axis from its apex
        l = ox * np.float32(across[0]) + oy * np.float32(across[1])  # across it, + towards the lateral wall
        reflect, lv_mask, structure_labels = _reflectivity(
            p, a, l, per_frame(geo.length), per_frame(geo.half_width), per_frame(geo.wall),
            per_frame(geo.rv_width), per_frame(geo.atrium_scale), per_frame(geo.closed), background,
        )
        masks[block, pixels] = lv_mask
        labels[block, pixels] = structure_labels
        image = reflect * gain * speckle[block]
        if p.gamma != 1.0:
            image = np.power(np.clip(image, 0.0, 1.0, out=image), p.gamma, out=image)
        video[block, pixels] = np.clip(255.0 * image + 0.5, 0.0, 255.0).astype(np.uint8)
    return video.reshape(n, size, size), masks.reshape(n, size, size), labels.reshape(n, size, size)


def _lv_inside(a, l, length, septal, lateral):
    """The dense LV truth: pixel centres inside the cavity, cut at the mitral annulus."""
    return (a >= 0) & (a <= length) & (l >= -septal) & (l <= lateral)


def _reflectivity(p, a, l, length, width, wall, rv_width, atrium_scale, closed, background):
    """Echogenicity (before speckle and gain), the exact LV mask and the label map of every
    structure on (frames, pixels) arrays.

    A4C: LV, myocardium, LA, RV and RA. A2C: the same long-axis section turned 90 degrees
    about the LV's long axis (its width from ``p.half_width``, see ``_view_params``), so LV,
    myocardium and LA only. SAX: ``_sax_reflectivity``.
    """
    if p.view == "sax":
        return _sax_reflectivity(p, a, l, width, wall, rv_width, background)
    right_heart = p.view == "a4c"
    s = a / length
    septal, lateral = _lv_half_widths(s, width, p)
    lv_mask = _lv_inside(a, l, length, septal, lateral)
    lv_cavity = _inside(l + septal, lateral - l, a, length + 1.0 - a)

    # Myocardium: the same bullet shape grown by the wall thickness (tip moved up by `wall`),
    # cut at the annulus so the mitral orifice stays open.
    out_septal, out_lateral = _lv_half_widths((a + wall) / (length + wall), width + wall, p)
    lv_wall = _inside(l + out_septal, out_lateral - l, a + wall, length + 1.5 - a)
    # The truth (before any dropout, which only dims the image): the wall, not the mitral
    # orifice below the cavity that the grown shape also covers.
    orifice = (a >= 0) & (l >= -septal) & (l <= lateral)
    myocardium = (lv_wall >= 0.5) & ~orifice
    if p.lateral_dropout > 0:
        # Lateral-wall dropout (beam nearly parallel to the wall) at a random height.
        lv_wall *= 1.0 - p.lateral_dropout * np.exp(-(((s - p.dropout_at) * (1 / 0.15)) ** 2)) * (l > 0)

    # RV: bullet against the septum's outer surface, shorter and narrower than the LV.
    rv_start = p.rv_start * length
    rv_end = 0.95 * length
    if right_heart:
        q = -out_septal - l  # distance into the RV from the septum
        rv_half = (2.0 * rv_width) * _profile((a - rv_start) / (rv_end - rv_start), 0.6, 0.05)
        rv_cavity = _inside(q, rv_half - q, a - rv_start, rv_end + 1.0 - a)
        rv_out = (2.0 * rv_width + 3.0) * _profile((a - rv_start + 3.0) / (rv_end - rv_start + 3.0), 0.6, 0.05)
        rv_wall = _inside(q + 1.0, rv_out - q, a - rv_start + 3.0, rv_end + 1.5 - a)

    # Atria: ellipses hanging below the valve plane; they fill while the ventricles empty.
    la_len, la_wid = p.atrium_length * atrium_scale, p.atrium_width * atrium_scale
    la_margin = (1.0 - np.hypot((a - length - 0.85 * la_len) / la_len, l / la_wid)) * la_wid
    if right_heart:
        ra_len, ra_wid = 0.9 * la_len, 0.85 * la_wid
        ra_centre = -(la_wid + ra_wid + 3.0)  # beside the LA, an interatrial septum apart
        ra_margin = (1.0 - np.hypot((a - rv_end - 0.85 * ra_len) / ra_len, (l - ra_centre) / ra_wid)) * ra_wid
        atria_margin = np.maximum(la_margin, ra_margin)
    else:
        atria_margin = la_margin
    atria_cavity = _ramp(atria_margin.copy())
    atria_wall = _ramp(atria_margin + 2.5)

    # Mitral valve: a bright line across the annulus when closed, two leaflets along the walls when open.
    base_half = width * float(_profile(1.0, p.profile_bluntness, p.basal_narrowing))
    closed_line = _inside(1.0 - np.abs(a - length + 1.0), base_half - np.abs(l)) * closed
    leaf_len = 0.45 * width
    open_leaf = _inside(1.0 - np.abs(np.abs(l) - base_half + 2.0), a - length + leaf_len, length - a) * (1.0 - closed)
    valve = np.maximum(closed_line, open_leaf)

    # Dense truth of every structure (unilvseg.data.structures numbering), each at the middle of
    # its anti-aliased edge; where shapes meet, the LV cavity wins, then the myocardium, the RV
    # and the atria (the LA ellipse reaches up to the annulus).
    labels = np.zeros(lv_mask.shape, dtype=np.uint8)
    if right_heart:
        labels[ra_margin > 0] = STRUCTURES["ra"]
    labels[la_margin > 0] = STRUCTURES["la"]
    if right_heart:
        labels[rv_cavity >= 0.5] = STRUCTURES["rv"]
    labels[myocardium] = STRUCTURES["myo"]
    labels[lv_mask] = STRUCTURES["lv"]

    if right_heart:
        tissue = np.maximum(np.maximum(lv_wall, rv_wall), atria_wall)
        cavity = np.maximum(np.maximum(lv_cavity, rv_cavity), atria_cavity)
    else:
        tissue = np.maximum(lv_wall, atria_wall)
        cavity = np.maximum(lv_cavity, atria_cavity)
    reflect = background + (p.wall_brightness - background) * tissue
    blood = 0.06 + 0.25 * np.exp(np.maximum(a, 0.0) * (-1.0 / 12.0))  # near-field haze fills the apex
    reflect += (blood - reflect) * cavity
    reflect = np.maximum(reflect, 0.75 * valve)
    return reflect, lv_mask, labels


def _sax_profile(p: HeartParams) -> float:
    """The LV's septal-lateral half-diameter at ``SAX_LEVEL`` over ``half_width`` (the A4C profile)."""
    return float(_profile(SAX_LEVEL, p.profile_bluntness, p.basal_narrowing))


def _ellipse_margin(x, y, rx, ry):
    """Signed distance (pixels, > 0 inside) from (x, y) to the centred ellipse with semi-axes
    rx, ry, measured along the ray from its centre: exact in sign, and close to the true
    distance near the curve of a nearly round ellipse (enough for anti-aliased edges)."""
    r = np.hypot(x, y)
    rho = np.hypot(x / rx, y / ry)
    radius = np.where(rho > 1e-3, r / np.maximum(rho, 1e-3), np.minimum(rx, ry))  # the ellipse's radius on this ray
    return radius - r


def _sax_reflectivity(p, a, l, width, wall, rv_width, background):
    """The short-axis section at ``SAX_LEVEL`` (mid-papillary): echogenicity, exact LV mask and
    label map (lv, myo, rv) on (frames, pixels) arrays; ``l`` runs from the LV centre towards
    the lateral wall (image right), ``a`` towards the inferior wall (image down).

    The cavity is the 3D LV's cross-section there: an ellipse of diameters D4 (septal-lateral,
    the A4C profile's width at that level) and D2 = ellipticity x D4 (anterior-inferior). The
    myocardium is the ring out to the ellipse grown by the wall thickness; the RV a crescent
    against the septal (left) side, wrapping a little towards the anterior wall, whose
    thickness at the septum is ``rv_width``. Two papillary muscles brighten the cavity's
    inferior half in the image only: the truth counts them as cavity, as LV volumes do.
    """
    x, y = l, a
    rx = width * np.float32(_sax_profile(p))
    ry = rx * np.float32(p.ellipticity)
    lv_mask = (x / rx) ** 2 + (y / ry) ** 2 <= 1.0
    lv_cavity = _ramp(_ellipse_margin(x, y, rx, ry))
    outer_x, outer_y = rx + wall, ry + wall
    epicardium = _ellipse_margin(x, y, outer_x, outer_y)
    myocardium = (epicardium >= 0) & ~lv_mask
    lv_wall = _ramp(epicardium)
    if p.lateral_dropout > 0:  # the lateral wall runs along the beam at mid-height
        lv_wall *= 1.0 - p.lateral_dropout * np.exp(-((y / (0.45 * outer_y)) ** 2)) * (x > 0)

    # RV: the part of an ellipse left of the LV that lies outside the LV's epicardium.
    left, right = -(outer_x + rv_width), 0.3 * outer_x
    rv_outer = _ellipse_margin(x - 0.5 * (left + right), y + 0.25 * outer_y, 0.5 * (right - left), 1.2 * outer_y)
    rv_cavity = _ramp(np.minimum(rv_outer, -epicardium))
    rv_wall = _ramp(rv_outer + 2.0)

    labels = np.zeros(lv_mask.shape, dtype=np.uint8)
    labels[rv_cavity >= 0.5] = STRUCTURES["rv"]
    labels[myocardium] = STRUCTURES["myo"]
    labels[lv_mask] = STRUCTURES["lv"]

    reflect = background + (p.wall_brightness - background) * np.maximum(lv_wall, rv_wall)
    reflect += (np.float32(0.06) - reflect) * np.maximum(lv_cavity, rv_cavity)
    for angle in (np.deg2rad(40.0), np.deg2rad(140.0)):  # anterolateral and posteromedial papillary muscles
        centre_x, centre_y = 0.55 * np.cos(angle) * rx, 0.55 * np.sin(angle) * ry
        papillary = _ramp(0.17 * rx - np.hypot(x - centre_x, y - centre_y))
        reflect = np.maximum(reflect, 0.8 * p.wall_brightness * papillary)
    return reflect, lv_mask, labels


def _speckle(rng: np.random.Generator, n: int, size: int, static: float, pixels: np.ndarray) -> np.ndarray:
    """Multiplicative Rayleigh speckle (mean 1) at ``pixels``, shape (frames, pixels).

    The complex echo is Gaussian and correlated over ~1-2 px (longer across the beam). It has a
    static part (slowly decorrelating tissue) and a dynamic part that drifts smoothly from one
    independent key field to the next every ``_SPECKLE_STEP`` frames (a power-preserving
    cos/sin blend), which costs a fraction of filtering fresh noise for every frame.
    """
    keys = (n - 1) // _SPECKLE_STEP + 2
    step = np.arange(n)
    key, blend = step // _SPECKLE_STEP, (step % _SPECKLE_STEP) * (0.5 * np.pi / _SPECKLE_STEP)
    w_this = np.cos(blend).astype(np.float32)[:, None] * np.float32(np.sqrt(1.0 - static))
    w_next = np.sin(blend).astype(np.float32)[:, None] * np.float32(np.sqrt(1.0 - static))

    def unit_fields(count):
        noise = rng.standard_normal((count, size, size), dtype=np.float32)
        field = ndimage.gaussian_filter(noise, (0.0, 0.6, 1.1), truncate=3.0).reshape(count, -1)
        flat = field.ravel()
        return field[:, pixels] * np.float32(np.sqrt(flat.size / np.dot(flat, flat)))

    parts = []
    for _ in range(2):  # real and imaginary parts of the echo
        bank = unit_fields(keys)
        still = unit_fields(1)[0] * np.float32(np.sqrt(static))
        parts.append(bank[key] * w_this + bank[key + 1] * w_next + still)
    # Unit-variance real and imaginary parts: the modulus is Rayleigh with mean sqrt(pi/2).
    amplitude = np.hypot(parts[0], parts[1])
    amplitude *= np.float32(np.sqrt(2.0 / np.pi))
    return amplitude


def _tracing_rows(p: HeartParams, geo: _Frames, frame: int) -> np.ndarray:
    """EchoNet tracing rows (21, 4) for one frame: long axis, then 20 chords apex -> base.

    Chords sit at the disk midpoints; X1,Y1 is the septal (image-left) end, X2,Y2 the lateral.
    """
    along, across = _axes(p)
    apex = np.array([geo.apex_x[frame], geo.apex_y[frame]])
    length, width = geo.length[frame], geo.half_width[frame]
    s = (np.arange(N_CHORDS) + 0.5) / N_CHORDS
    septal, lateral = _lv_half_widths(s, width, p)
    centres = apex[None] + (s * length)[:, None] * along[None]
    first = centres - septal[:, None] * across[None]
    second = centres + lateral[:, None] * across[None]
    long_axis = np.concatenate([apex, apex + length * along])[None]
    return np.concatenate([long_axis, np.concatenate([first, second], axis=1)])


def _traced_dice(p: HeartParams, geo: _Frames, frame: int, rows: np.ndarray) -> float:
    """Dice between the EchoNet rasterisation of ``rows`` and the dense LV truth at ``frame``."""
    import skimage.draw

    ys, xs = np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE].astype(np.float64)
    along, across = _axes(p)
    ox, oy = xs - geo.apex_x[frame], ys - geo.apex_y[frame]
    a, l = ox * along[0] + oy * along[1], ox * across[0] + oy * across[1]
    septal, lateral = _lv_half_widths(a / geo.length[frame], geo.half_width[frame], p)
    truth = _lv_inside(a, l, geo.length[frame], septal, lateral)
    chords = rows[1:]
    xs_poly = np.rint(np.concatenate([chords[:, 0], chords[::-1, 2]]))
    ys_poly = np.rint(np.concatenate([chords[:, 1], chords[::-1, 3]]))
    traced = np.zeros_like(truth)
    traced[skimage.draw.polygon(ys_poly, xs_poly, truth.shape)] = True
    return float(2.0 * np.sum(traced & truth) / (np.sum(traced) + np.sum(truth)))


def _disk_volume_ml(rows: np.ndarray) -> float:
    """Simpson's monoplane method of disks on tracing rows: long axis / N disks of chord diameter."""
    rows = np.asarray(rows, dtype=np.float64)
    axis_length = np.hypot(rows[0, 2] - rows[0, 0], rows[0, 3] - rows[0, 1])
    diameters = np.hypot(rows[1:, 2] - rows[1:, 0], rows[1:, 3] - rows[1:, 1])
    height = axis_length / len(diameters)
    volume_px = np.sum(np.pi / 4.0 * diameters**2 * height)
    return float(volume_px * MM_PER_PIXEL**3 / 1000.0)


def _write_video(path: Path, video: np.ndarray) -> None:
    """MJPG AVI at FPS with three identical gray channels (as EchoNet's files)."""
    import cv2

    with atomic_path(path) as tmp:  # the temporary keeps the .avi suffix OpenCV needs
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (FRAME_SIZE, FRAME_SIZE), True)
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write MJPG video {path}")
        try:
            for frame in video:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        finally:
            writer.release()


def _file_names(seed: int, videos: int) -> list[str]:
    """Deterministic, unique EchoNet-style names (0X + 16 hex digits)."""
    rng = np.random.default_rng([seed, 0x5EED])
    names: list[str] = []
    while len(names) < videos:
        name = "0X" + rng.bytes(8).hex().upper()
        if name not in names:
            names.append(name)
    return names


def _splits(seed: int, videos: int) -> list[str]:
    """~75/12.5/12.5 % TRAIN/VAL/TEST with at least one of each once there are 3 videos."""
    n_val = n_test = max(1, int(round(0.125 * videos))) if videos >= 3 else 0
    if videos == 2:
        n_val = 1
    labels = ["VAL"] * n_val + ["TEST"] * n_test + ["TRAIN"] * (videos - n_val - n_test)
    order = np.random.default_rng([seed, 0x5B17]).permutation(videos)
    return [labels[i] for i in order]


def _view_params(p: HeartParams, view: str, rng: np.random.Generator) -> HeartParams:
    """The same heart (anatomy, size, timing, fan) recorded in another view, with that
    recording's own pose, gain, wall dropout, breathing drift and speckle.

    A2C: the long-axis section turned 90 degrees about the long axis, so its width profile is
    ``ellipticity`` x the A4C one (``half_width`` scaled) at the same length; its own
    anterior/inferior asymmetry (which moves the cavity's centre line, not its width); the LV
    centred in the fan, nearly upright. SAX: ``apex_x``/``apex_y`` become the LV centre, right
    of the fan's axis so that the RV fits on the left, deep enough to clear the near field and
    shallow enough to keep the whole LV in the frame; ``axis_angle`` turns the section.
    """
    appearance = {name: _uniform(rng, *bounds) for name, bounds in APPEARANCE_RANGES.items()}
    if view == "a2c":
        angle = float(np.deg2rad(_uniform(rng, -8.0, 8.0)))
        return replace(
            p, view="a2c", half_width=p.half_width * p.ellipticity, asymmetry=_uniform(rng, -0.08, 0.08),
            apex_x=p.fan_x + _uniform(rng, -3.0, 5.0),
            apex_y=min(p.apex_y, FRAME_SIZE - 6.0 - p.length * float(np.cos(angle))),
            axis_angle=angle, **appearance,
        )
    if view == "sax":
        # Largest epicardial semi-axis (the wall is thickest at ES, the cavity largest at ED) + drift.
        reach = p.half_width * _sax_profile(p) * max(1.0, p.ellipticity) + p.wall * (2.0 - p.width_shortening) + 1.0
        return replace(
            p, view="sax", apex_x=p.fan_x + _uniform(rng, 4.0, 10.0),
            apex_y=min(p.fan_y + _uniform(rng, 52.0, 64.0), FRAME_SIZE - 4.0 - reach),
            axis_angle=float(np.deg2rad(_uniform(rng, -15.0, 15.0))), **appearance,
        )
    raise ValueError(f"no view parameters for {view!r}")


#: Samples of the fine midpoint rule for the 3D LV's volume (error far below 1e-6 relative).
_TRUTH_SAMPLES = 100_000


def true_volumes_ml(p: HeartParams, geo: _Frames) -> np.ndarray:
    """Volume in mL of the 3D LV of heart ``p`` (its A4C parameters) on every frame of ``geo``.

    Each cross-section at distance x from the apex is an ellipse of diameters D4(x) (the A4C
    cavity's width, ``2 W profile(x / L)``) and D2(x) = ellipticity x D4(x), so
    V = pi/4 int_0^L D4 D2 dx = pi e W^2 L int_0^1 profile(s)^2 ds, the integral by a fine
    midpoint rule. The biplane method of disks is the 20-slab discrete form of this integral.
    """
    s = (np.arange(_TRUTH_SAMPLES) + 0.5) / _TRUTH_SAMPLES
    shape = float(np.mean(_profile(s, p.profile_bluntness, p.basal_narrowing) ** 2))
    volumes_px = np.pi * p.ellipticity * geo.half_width**2 * geo.length * shape
    return volumes_px * MM_PER_PIXEL**3 / 1000.0


def _tracings_usable(p: HeartParams, geo: _Frames, ed: int, es: int) -> tuple[bool, np.ndarray, np.ndarray]:
    """(usable, ED rows, ES rows): the tracings lie inside the frame and their EchoNet
    rasterisation matches the dense truth to ``MIN_TRACED_DICE`` at both frames."""
    ed_rows, es_rows = _tracing_rows(p, geo, ed), _tracing_rows(p, geo, es)
    # Rasterising rounded chord ends (EchoNet's rule) adds about half a pixel all round;
    # redraw the rare small, oblique hearts where that costs the tracing too much Dice, and
    # the rare poses that push the LV out of the frame.
    inside = np.all((ed_rows >= 2.0) & (ed_rows <= FRAME_SIZE - 3.0))
    usable = inside and min(_traced_dice(p, geo, ed, ed_rows), _traced_dice(p, geo, es, es_rows)) >= MIN_TRACED_DICE
    return bool(usable), ed_rows, es_rows


def _tracing_table(name: str, index: int, ed: int, es: int, ed_rows: np.ndarray, es_rows: np.ndarray) -> list[list]:
    # The file order of traced frames is not a promise: every other video lists ES first
    # (as the real files do), the rest ED first.
    order = [(es, es_rows), (ed, ed_rows)] if index % 2 == 0 else [(ed, ed_rows), (es, es_rows)]
    return [[f"{name}.avi", *map(float, row), frame] for frame, rows in order for row in rows]


def _make_video(task: tuple) -> tuple[list[dict], list[list]]:
    """Render and write one heart's video + masks in each requested view; return its FileList
    rows (one per view, A4C first) and tracing rows."""
    seed, index, name, min_frames, max_frames, root, *rest = task
    pathologies = rest[0] if rest else 0.0
    views = tuple(rest[1]) if len(rest) > 1 else ("a4c",)
    root = Path(root)
    rng = np.random.default_rng([seed, index])
    # Pathologies draw from a stream of their own: a phantom without them is unchanged.
    pathology_rng = np.random.default_rng([seed, index, 0xD15EA5E])
    pathology = str(pathology_rng.choice(PATHOLOGIES)) if pathology_rng.random() < pathologies else None
    n_frames = int(rng.integers(min_frames, max_frames + 1))
    for _ in range(_MAX_DRAWS):
        params = _sample_params(rng, n_frames)
        if pathologies:
            # A normal RV's fractional area change is 40-50 % (the usual phantom's RV moves less).
            params = replace(params, rv_shortening=_uniform(pathology_rng, 0.33, 0.42))
        if pathology is not None:
            params = _with_pathology(params, pathology, pathology_rng)
        geo = _frame_geometry(params)
        ed = params.ed_frame
        es = ed + int(np.argmax(geo.c[ed : ed + int(np.ceil(params.period * 0.7))]))
        usable, ed_rows, es_rows = _tracings_usable(params, geo, ed, es)
        if usable:
            break
    edv, esv = _disk_volume_ml(ed_rows), _disk_volume_ml(es_rows)
    ef = 100.0 * (edv - esv) / edv
    row = {
        "FileName": name, "EF": ef, "ESV": esv, "EDV": edv, "FrameHeight": FRAME_SIZE,
        "FrameWidth": FRAME_SIZE, "FPS": FPS, "NumberOfFrames": n_frames, "Split": None,
    }
    if pathologies:
        row["Pathology"] = pathology or "none"
    multi_view = views != ("a4c",)
    if multi_view:
        # The 3D heart: one ellipticity per heart (its own stream), and the truth of its volume.
        params = replace(params, ellipticity=_uniform(np.random.default_rng([seed, index, _VIEW_STREAM]), *ELLIPTICITY_RANGE))
        volumes = true_volumes_ml(params, geo)
        edv, esv = float(volumes[ed]), float(volumes[es])
        row.update(EF=100.0 * (edv - esv) / edv, ESV=esv, EDV=edv, Heart=name, Ellipticity=params.ellipticity)

    rows, tracing = [], []
    for k, view in enumerate(VIEWS):
        if view not in views:
            continue
        view_name = name + VIEW_SUFFIXES[view]
        if view == "a4c":
            view_params, view_geo, view_rng = params, geo, rng
            rows_ed, rows_es = ed_rows, es_rows
        else:
            view_rng = np.random.default_rng([seed, index, _VIEW_STREAM, k])
            for _ in range(_MAX_DRAWS):
                view_params = _view_params(params, view, view_rng)
                view_geo = _frame_geometry(view_params)
                if view == "sax":
                    break
                usable, rows_ed, rows_es = _tracings_usable(view_params, view_geo, ed, es)
                if usable:
                    break
        video, masks, labels = _render(view_params, view_geo, view_rng)
        _write_video(root / "Videos" / f"{view_name}.avi", video)
        save_npz(root / "ReferenceMasks" / f"{view_name}.npz", masks=masks, labels=labels)
        if view != "sax":  # a short-axis section has no long axis to trace
            tracing += _tracing_table(view_name, index, ed, es, rows_ed, rows_es)
        rows.append({**row, "FileName": view_name, **({"View": VIEW_LABELS[view]} if multi_view else {})})
    return rows, tracing


def generate_phantom(
    out_dir: str | os.PathLike,
    videos: int = 40,
    seed: int = 0,
    min_frames: int = 60,
    max_frames: int = 220,
    workers: int = 1,
    overwrite: bool = False,
    pathologies: float = 0.0,
    views: tuple[str, ...] | list[str] = ("a4c",),
) -> Path:
    """Write a phantom EchoNet-Dynamic folder at ``out_dir`` and return its path.

    ``pathologies`` (0-1): the share of hearts given one of ``PATHOLOGIES`` (a ``Pathology``
    column in FileList.csv names it, ``none`` for the others); 0 writes the usual phantom.

    ``views``: any of ``VIEWS`` (a4c, a2c, sax). Each heart is written once per view, with the
    same anatomy and timing. ``("a4c",)`` (the default) writes the usual phantom. Otherwise
    FileList.csv gains ``View`` (A4C / A2C / SAX), ``Heart`` (the heart's A4C FileName) and
    ``Ellipticity`` columns, non-A4C videos are named ``<heart>_A2C`` / ``<heart>_SAX``, and
    every row's EF/EDV/ESV is the truth of the heart's 3D LV (``true_volumes_ml``) at the traced
    ED and ES frames, not the A4C chords' method of disks. SAX videos have no tracings. The A4C
    files (video, masks, tracings) are the same as in the A4C-only phantom of the same seed.

    Same (videos, seed, min_frames, max_frames) -> identical CSVs, masks and video frames,
    whatever ``workers`` is. ``out_dir`` must be absent or empty unless ``overwrite`` and it
    already holds a phantom (then it is replaced). A ``.complete`` marker is written last.
    """
    out = Path(out_dir)
    if videos < 1:
        raise UserError(f"--videos {videos}: need at least 1 video")
    if not 8 <= min_frames <= max_frames:
        raise UserError(f"--min_frames {min_frames} / --max_frames {max_frames}: need 8 <= min_frames <= max_frames")
    if workers < 1:
        raise UserError(f"--workers {workers}: need at least 1")
    views = _check_views(views)  # before anything is written
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out}: is a file, expected a folder")
        if any(out.iterdir()):
            looks_like_phantom = (out / COMPLETE_MARKER).exists() or (out / "FileList.csv").exists()
            if not (overwrite and looks_like_phantom):
                raise UserError(
                    f"--out {out}: folder is not empty"
                    + ("; pass --overwrite to replace the phantom there" if looks_like_phantom else "")
                )
            shutil.rmtree(out)
    (out / "Videos").mkdir(parents=True, exist_ok=True)
    (out / "ReferenceMasks").mkdir(exist_ok=True)

    names = _file_names(seed, videos)
    if not 0.0 <= pathologies <= 1.0:
        raise UserError(f"--pathologies {pathologies}: a share between 0 and 1")
    tasks = [(seed, i, name, min_frames, max_frames, str(out), pathologies, views) for i, name in enumerate(names)]
    if workers == 1:
        results = [_make_video(task) for task in tasks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_make_video, tasks, chunksize=max(1, len(tasks) // (4 * workers))))

    rows = []
    for (heart_rows, _), split in zip(results, _splits(seed, videos)):
        for row in heart_rows:  # every view of a heart in the same split
            row["Split"] = split
            rows.append(row)
    extra = (["Pathology"] if pathologies else []) + (["View", "Heart", "Ellipticity"] if views != ("a4c",) else [])
    filelist = pd.DataFrame(rows, columns=FILELIST_COLUMNS + extra)
    tracings = pd.DataFrame([r for _, t in results for r in t], columns=TRACING_COLUMNS)
    write_csv(filelist, out / "FileList.csv", float_format="%.4f")
    write_csv(tracings, out / "VolumeTracings.csv", float_format="%.4f")
    write_json(labels_json(), out / "ReferenceMasks" / LABELS_FILE)
    shown_views = f" views={','.join(views)}" if views != ("a4c",) else ""
    write_text(f"phantom-{PHANTOM_VERSION} videos={videos} seed={seed}{shown_views}\n", out / COMPLETE_MARKER)
    return out


def _check_views(views) -> tuple[str, ...]:
    """The requested views in ``VIEWS`` order (so the order asked for changes nothing)."""
    if isinstance(views, str):
        views = [views]
    asked = [str(v).strip().lower() for v in views]
    unknown = [v for v in asked if v not in VIEWS]
    if unknown or not asked:
        raise UserError(f"--views {' '.join(map(str, views))}: expected one or more of {', '.join(VIEWS)}")
    return tuple(v for v in VIEWS if v in asked)


def _cache_root() -> Path:
    return Path(os.environ.get("UNILVSEG_CACHE") or Path.home() / ".cache" / "unilvseg").expanduser()


def default_data_path(videos: int = 40, seed: int = 0) -> Path:
    """A cached phantom data set, generated on first use into ``$UNILVSEG_CACHE``.

    Generation goes to a temporary sibling folder that is renamed into place when complete, so
    an interrupted run never leaves a half data set under the final name.
    """
    root = _cache_root()
    final = root / f"phantom-{PHANTOM_VERSION}-n{videos}-s{seed}"
    # A folder generated before the phantom carried every structure's truth is made again (the
    # videos, LV masks and CSVs come out identical; the label maps are added).
    if (final / COMPLETE_MARKER).is_file() and (final / "ReferenceMasks" / LABELS_FILE).is_file():
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        from unilvseg.errors import CacheError

        raise CacheError(
            f"cache folder {root} ($UNILVSEG_CACHE, default ~/.cache/unilvseg) cannot be written "
            f"({error.strerror or error}): point UNILVSEG_CACHE at a writable folder, or pass --data_path"
        ) from None
    if final.exists():
        # Our own name without the marker: left by something other than this function; rebuild.
        shutil.rmtree(final)
    log.info("generating phantom data set (%d videos, seed %d) into %s", videos, seed, final)
    tmp = root / f"{TMP_PREFIX}{final.name}-{secrets.token_hex(4)}"
    try:
        generate_phantom(tmp, videos=videos, seed=seed)
        try:
            os.replace(tmp, final)
        except OSError:
            # Another process finished the same data set first; use theirs.
            if not (final / COMPLETE_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unilvseg.data.phantom",
        description="Write a synthetic apical-4-chamber echo data set in EchoNet-Dynamic format.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (absent or empty)")
    parser.add_argument("--videos", type=int, default=40, help="number of videos (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--min_frames", type=int, default=60, help="shortest video in frames (default 60)")
    parser.add_argument("--max_frames", type=int, default=220, help="longest video in frames (default 220)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering videos (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing phantom at --out")
    parser.add_argument("--pathologies", type=float, default=0.0,
                        help=f"share of hearts (0-1) given one of: {', '.join(PATHOLOGIES)} (FileList column Pathology; default 0)")
    parser.add_argument("--views", nargs="+", default=["a4c"], metavar="VIEW",
                        help=f"views to record each heart in, any of {' '.join(VIEWS)} (default a4c); more than "
                             "a4c adds FileList columns View, Heart and Ellipticity, and EF/EDV/ESV become the 3D LV's truth")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        out = generate_phantom(args.out, args.videos, args.seed, args.min_frames, args.max_frames,
                               args.workers, args.overwrite, pathologies=args.pathologies, views=args.views)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    views = _check_views(args.views)
    shown = f" ({len(views)} views each: {', '.join(VIEW_LABELS[v] for v in views)})" if views != ("a4c",) else ""
    print(f"wrote {args.videos} phantom {'hearts' if shown else 'videos'}{shown} to {out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
