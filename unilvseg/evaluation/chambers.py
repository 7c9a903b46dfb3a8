"""Chamber measurements from multi-structure A4C label maps, guideline flags, and their agreement.

Label convention (``STRUCTURES``, the single source of truth): a label map per frame, integers
``(T, H, W)``, 0 = background, 1 = LV cavity, 2 = LV myocardium (septum included), 3 = left
atrium, 4 = right ventricle, 5 = right atrium. An LV-only mask (0/1) is a valid label map: the
other chambers then come out as NaN and their flags as undecided.

Measurements (``chamber_measurements``), each per beat, then mean and SD over beats:

* LV EDV, ESV, EF: single-plane method of disks (``unilvseg.evaluation.volumes``) at each
  beat's ED and ES frame.
* LV mass, area-length method: ``1.05 · 5/6 · [A1 · (L + t) - A2 · L]`` at ED, A1 the
  epicardial area (cavity + myocardium), A2 the cavity area, L the cavity long axis and
  ``t = sqrt(A1/π) - sqrt(A2/π)`` the mean wall thickness (Lang et al., JASE 2015;28:1-39,
  section 3). The guideline takes A1 and A2 from the parasternal short-axis view at the
  papillary muscles; here they are the *A4C* areas, an approximation: an A4C section of an
  elongated LV is larger than its mid short-axis section, so this mass reads higher than the
  guideline's (docs/chambers.md works an example).
* LA maximal volume, single-plane area-length: ``0.85 · A² / L`` (0.85 = 8/(3π) rounded), the
  largest over the beat (expected near LV end-systole).
* RV end-diastolic area at the LV's ED frame, RV end-systolic area = the smallest RV area of
  the beat, fractional area change ``FAC = 100 · (EDA - ESA) / EDA``, and the RV/LV
  end-diastolic (cavity) area ratio.
* RA maximal area of the beat.

Beats are those of the LV cavity area curve (``find_beats`` via ``choose_ed_es``, with its
fallback to the video's extremes, which is then one "beat" spanning the whole video). A beat
runs from its ED frame to the next beat's ED frame (the last one for the median ED-to-ED
spacing). Within a beat, a chamber's empty and glitch frames (``glitch_frames`` on that
chamber's own area curve) are never its maximum or minimum: a dropped-out RV frame would
otherwise be a 100 % FAC.

Units: lengths in pixels, areas in px², volumes in px³ and mass in 1.05·px³ (tissue density
times cubic pixels) unless ``mm_per_pixel`` is given, then cm, cm², mL and g. EF, FAC and the
area ratio do not depend on the spacing. EchoNet-Dynamic videos (112x112, resampled) carry no
pixel spacing.

Flags (``chamber_flags``): thresholds of the ASE/EACVI 2015 chamber-quantification guideline
(Lang et al.) and two stated exceptions, one table (``FLAG_THRESHOLDS``). A flag that needs a
pixel spacing or a body surface area that is not given is ``None`` with the reason
(``chamber_flag_reasons``), never False.

Agreement (``flag_agreement``, ``measurement_agreement``): sensitivity, specificity and
balanced accuracy of flags, and MAE / bias / Pearson r / Bland-Altman limits of measurements,
with bootstrap intervals over videos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unilvseg.evaluation.bootstrap import percentile_interval, resampled_sums
from unilvseg.data.structures import STRUCTURES  # the one label numbering, re-exported for callers
from unilvseg.evaluation.volumes import (
    BEATS,
    DEFAULT_DISKS,
    DEFAULT_FPS,
    choose_ed_es,
    ejection_fraction,
    glitch_frames,
    method_of_disks_batch,
)

#: 8 / (3π) = 0.8488, written 0.85 in the guideline's area-length formulas.
AREA_LENGTH_FACTOR = 0.85
#: Myocardial density, g/mL (the 1.05 of every guideline LV-mass formula).
MYOCARDIAL_DENSITY = 1.05


@dataclass(frozen=True)
class Measure:
    """One measurement of ``chamber_measurements``: what it is, its power of length (0 =
    scale-free, 2 = area, 3 = volume or mass: converted by ``(mm_per_pixel / 10)**power``
    from pixel units to cm units), and its unit with a pixel spacing."""

    description: str
    length_power: int
    unit: str


#: The measurements, in the order of the output columns.
MEASURES = {
    "lv_edv": Measure("LV end-diastolic volume (method of disks)", 3, "mL"),
    "lv_esv": Measure("LV end-systolic volume (method of disks)", 3, "mL"),
    "lv_ef": Measure("LV ejection fraction", 0, "%"),
    "lv_eda": Measure("LV end-diastolic cavity area", 2, "cm²"),
    "lv_mass": Measure("LV mass at ED (area-length, A4C areas)", 3, "g"),
    "la_volume_max": Measure("LA maximal volume (area-length)", 3, "mL"),
    "rv_eda": Measure("RV end-diastolic area (at LV ED)", 2, "cm²"),
    "rv_esa": Measure("RV end-systolic area (smallest of the beat)", 2, "cm²"),
    "rv_fac": Measure("RV fractional area change", 0, "%"),
    "rv_lv_area_ratio": Measure("RV/LV end-diastolic area ratio", 0, ""),
    "ra_area_max": Measure("RA maximal area", 2, "cm²"),
}

#: Columns of ``chamber_measurements``' row: each measure as the mean over beats, its sample SD
#: over beats (``_sd``) and the space-separated per-beat values (``_beats``).
CHAMBER_FIELDS = (
    "beats",
    "beat_frames",
    "ed_es_rule",
    "mm_per_pixel",
    *(f"{name}{suffix}" for name in MEASURES for suffix in ("", "_sd", "_beats")),
)


def _check_masks(masks: np.ndarray, who: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"{who} expects masks of shape (T, H, W), got {masks.shape}")
    return masks > 0


def long_axis_lengths(masks: np.ndarray) -> np.ndarray:
    """Long-axis length in pixels of every frame of ``masks (T, H, W)``: the mask's extent along
    its principal axis (PCA of the pixel coordinates, as ``volumes`` takes the LV axis), from the
    first to the last pixel centre plus one pixel. For an A4C chamber this is the apex-to-base
    (or, for an atrium, annulus-to-roof) length. Empty frames give 0.

    Vectorised over frames: per-frame sums over the list of mask pixels (``reduceat``)."""
    masks = _check_masks(masks, "long_axis_lengths")
    frames = masks.shape[0]
    lengths = np.zeros(frames, dtype=np.float64)
    frame_ids, rows, cols = np.nonzero(masks)
    if not len(frame_ids):
        return lengths
    present, starts = np.unique(frame_ids, return_index=True)  # np.nonzero is frame-major
    counts = np.diff(np.append(starts, len(frame_ids)))
    slot = np.repeat(np.arange(len(present)), counts)
    ys = rows.astype(np.float64)
    xs = cols.astype(np.float64)
    dy = ys - (np.add.reduceat(ys, starts) / counts)[slot]
    dx = xs - (np.add.reduceat(xs, starts) / counts)[slot]
    theta = 0.5 * np.arctan2(2.0 * np.add.reduceat(dx * dy, starts), np.add.reduceat(dx * dx, starts) - np.add.reduceat(dy * dy, starts))
    along = dx * np.cos(theta)[slot] + dy * np.sin(theta)[slot]
    lengths[present] = np.maximum.reduceat(along, starts) - np.minimum.reduceat(along, starts) + 1.0
    return lengths


def long_axis_length(mask: np.ndarray) -> float:
    """Long-axis length in pixels of one mask ``(H, W)`` (see ``long_axis_lengths``)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"long_axis_length expects a mask of shape (H, W), got {mask.shape}")
    return float(long_axis_lengths(mask[None])[0])


def area_length_volume(area, length) -> np.ndarray:
    """Single-plane area-length volume ``0.85 · A² / L`` (Lang et al. 2015, section 4, LA
    volume): exact, with 8/(3π), for a prolate ellipsoid whose long-axis section has area A and
    length L. Units follow the inputs (px² and px give px³, cm² and cm give mL); NaN where L <= 0."""
    area = np.asarray(area, dtype=np.float64)
    length = np.asarray(length, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(length > 0, AREA_LENGTH_FACTOR * area**2 / np.where(length > 0, length, 1.0), np.nan)


def area_length_lv_mass(epicardial_area, cavity_area, length) -> np.ndarray:
    """LV mass by the area-length method, ``1.05 · 5/6 · [A1 · (L + t) - A2 · L]`` with
    ``t = sqrt(A1/π) - sqrt(A2/π)`` (Lang et al. 2015, section 3, LV mass).

    ``epicardial_area`` A1 is cavity + myocardium, ``cavity_area`` A2 the cavity, ``length`` L
    the cavity's long axis; cm² and cm give grams. The guideline means short-axis areas; with
    A4C areas the result is an approximation that reads higher (see the module docstring). NaN
    where L <= 0 or A1 <= A2 (no myocardium)."""
    outer = np.asarray(epicardial_area, dtype=np.float64)
    inner = np.asarray(cavity_area, dtype=np.float64)
    length = np.asarray(length, dtype=np.float64)
    thickness = np.sqrt(np.maximum(outer, 0.0) / np.pi) - np.sqrt(np.maximum(inner, 0.0) / np.pi)
    mass = MYOCARDIAL_DENSITY * 5.0 / 6.0 * (outer * (length + thickness) - inner * length)
    return np.where((length > 0) & (outer > inner), mass, np.nan)


def _structure_areas(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Pixel count of every structure in every frame, one ``bincount`` over the label map."""
    frames = labels.shape[0]
    codes = len(STRUCTURES) + 1
    counts = np.bincount(
        (np.arange(frames, dtype=np.int64)[:, None] * codes + labels.reshape(frames, -1)).ravel(), minlength=frames * codes
    ).reshape(frames, codes)
    return {name: counts[:, code].astype(np.float64) for name, code in STRUCTURES.items()}


def _beat_windows(beats: list[tuple[int, int]], frames: int, single: bool) -> list[tuple[int, int]]:
    """``[start, stop)`` frames of each beat: its ED to the next beat's ED; the last beat gets
    the median ED-to-ED spacing (the rest of the video for a lone beat). The extremes fallback
    is one window over the whole video."""
    if single:
        return [(0, frames)]
    eds = [ed for ed, _ in beats]
    spacing = int(round(float(np.median(np.diff(eds))))) if len(eds) > 1 else frames
    windows = []
    for i, (ed, es) in enumerate(beats):
        stop = eds[i + 1] if i + 1 < len(eds) else min(frames, ed + spacing)
        windows.append((ed, max(stop, es + 1)))
    return windows


def _window_extreme(values: np.ndarray, usable: np.ndarray, start: int, stop: int, largest: bool) -> float:
    """Largest (or smallest) usable value in ``[start, stop)``; NaN when no frame is usable."""
    part = values[start:stop][usable[start:stop]]
    if not part.size:
        return float("nan")
    return float(part.max() if largest else part.min())


def _mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample SD of the finite values (NaN for none / fewer than two)."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    mean = float(finite.mean()) if finite.size else float("nan")
    sd = float(np.std(finite, ddof=1)) if finite.size > 1 else float("nan")
    return mean, sd


def chamber_measurements(labels: np.ndarray, mm_per_pixel: float | None = None, fps: float | None = None) -> dict:
    """Chamber measurements of one A4C label-map sequence ``labels (T, H, W)`` (``STRUCTURES``),
    as one flat row (``CHAMBER_FIELDS``): for each of ``MEASURES`` the mean over beats, its
    sample SD over beats (``<name>_sd``, NaN for one beat) and the per-beat values
    space-separated (``<name>_beats``); plus ``beats`` (complete beats found, 0 on the extremes
    fallback, as in ``volumes``), ``beat_frames`` (``ED-ES`` pairs used), ``ed_es_rule`` and
    ``mm_per_pixel`` (NaN: pixel units).

    ``fps`` (default 50) sets the plausible heart rates for the beat search and the glitch
    tolerance. A chamber that is absent or unusable in a beat gives NaN for that beat; the mean
    and SD are over the beats where it was measured. Without any usable LV frame there is no
    ED or ES: the LV and ED-based measures are NaN, and the LA and RA maxima and the RV minimum
    are taken over the whole video.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"chamber_measurements expects label maps of shape (T, H, W), got {labels.shape}")
    if not labels.shape[0]:
        raise ValueError(f"chamber_measurements needs at least one frame, got {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"label maps must be integers (STRUCTURES codes), got dtype {labels.dtype}")
    top = max(STRUCTURES.values())
    if labels.min() < 0 or labels.max() > top:
        raise ValueError(f"label values must lie in 0..{top} (STRUCTURES), got {labels.min()}..{labels.max()} in {labels.shape}")
    if mm_per_pixel is not None and not (np.isfinite(mm_per_pixel) and mm_per_pixel > 0):
        raise ValueError(f"mm_per_pixel must be > 0 (or None for pixel units), got {mm_per_pixel}")
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
    frames = labels.shape[0]
    areas = _structure_areas(labels)
    cavity = labels == STRUCTURES["lv"]
    # Method of disks at 1 mm/pixel is in mL = 1000 mm³, so x1000 gives cubic pixels.
    lv_volumes = method_of_disks_batch(cavity, mm_per_pixel=1.0, disks=DEFAULT_DISKS) * 1000.0
    lv_lengths = long_axis_lengths(cavity)
    la_volumes = area_length_volume(areas["la"], long_axis_lengths(labels == STRUCTURES["la"]))
    usable = {name: ~glitch_frames(curve, fps) for name, curve in areas.items()}
    choice = choose_ed_es(areas["lv"], lv_volumes, BEATS, fps)
    single = choice.combine == "single"
    per_beat: dict[str, list[float]] = {name: [] for name in MEASURES}
    # No usable LV frame at all: no ED / ES, but the atria's maxima and the RV's minimum still
    # have a window, the whole video.
    beats = choice.beats or [(None, None)]
    windows = _beat_windows(choice.beats, frames, single) if choice.beats else [(0, frames)]
    nan = float("nan")
    for (ed, es), (start, stop) in zip(beats, windows):
        edv, esv = (float(lv_volumes[ed]), float(lv_volumes[es])) if ed is not None else (nan, nan)
        lv_eda = float(areas["lv"][ed]) if ed is not None else nan
        epicardial = lv_eda + float(areas["myo"][ed]) if ed is not None and usable["myo"][ed] else nan
        rv_eda = float(areas["rv"][ed]) if ed is not None and usable["rv"][ed] else nan
        rv_esa = _window_extreme(areas["rv"], usable["rv"], start, stop, largest=False)
        values = {
            "lv_edv": edv,
            "lv_esv": esv,
            "lv_ef": ejection_fraction(edv, esv) if ed is not None else nan,
            "lv_eda": lv_eda,
            "lv_mass": float(area_length_lv_mass(epicardial, lv_eda, lv_lengths[ed])) if ed is not None else nan,
            "la_volume_max": _window_extreme(la_volumes, usable["la"], start, stop, largest=True),
            "rv_eda": rv_eda,
            "rv_esa": rv_esa,
            "rv_fac": 100.0 * (rv_eda - rv_esa) / rv_eda if rv_eda > 0 else nan,
            "rv_lv_area_ratio": rv_eda / lv_eda if lv_eda > 0 else nan,
            "ra_area_max": _window_extreme(areas["ra"], usable["ra"], start, stop, largest=True),
        }
        for name, value in values.items():
            per_beat[name].append(value)
    row = {
        "beats": 0 if single else len(choice.beats),
        "beat_frames": " ".join(f"{ed}-{es}" for ed, es in choice.beats),
        "ed_es_rule": choice.rule,
        "mm_per_pixel": float(mm_per_pixel) if mm_per_pixel is not None else float("nan"),
    }
    for name, measure in MEASURES.items():
        scale = (mm_per_pixel / 10.0) ** measure.length_power if mm_per_pixel is not None else 1.0
        values = [v * scale for v in per_beat[name]]
        mean, sd = _mean_sd(values)
        row[name] = mean
        row[f"{name}_sd"] = sd
        row[f"{name}_beats"] = " ".join(f"{v:.6g}" for v in values)
    return row


def beat_values(row: dict, name: str) -> np.ndarray:
    """The per-beat values of measure ``name`` from a ``chamber_measurements`` row (NaN kept)."""
    if name not in MEASURES:
        raise ValueError(f"unknown measure {name!r}; expected one of {', '.join(MEASURES)}")
    return np.array([float(v) for v in str(row[f"{name}_beats"]).split()], dtype=np.float64)


# -- Plausibility without labels ------------------------------------------------------------
#: ``chamber_plausibility`` fields, in order.
PLAUSIBILITY_FIELDS = (
    *(f"{name}_present" for name in STRUCTURES),
    *(f"{name}_to_lv_area" for name in STRUCTURES if name != "lv"),
    "la_basal_to_lv", "ra_basal_to_rv", "right_heart_one_side", "la_lv_area_r", "lv_fill_at_la_max",
)


def _centroids(labels: np.ndarray, areas: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(T, 2) row/column centroid of every structure per frame (NaN where it is absent)."""
    frames, height, width = labels.shape
    rows = np.arange(height, dtype=np.float64)[None, :, None]
    cols = np.arange(width, dtype=np.float64)[None, None, :]
    centroids = {}
    for name, code in STRUCTURES.items():
        inside = labels == code
        with np.errstate(invalid="ignore", divide="ignore"):
            centroids[name] = np.stack(
                [(inside * rows).sum(axis=(1, 2)) / areas[name], (inside * cols).sum(axis=(1, 2)) / areas[name]], axis=1
            )
    return centroids


def _share(condition: np.ndarray, defined: np.ndarray) -> float:
    return float(condition[defined].mean()) if defined.any() else float("nan")


def chamber_plausibility(labels: np.ndarray) -> dict:
    """What can be checked of an A4C label-map video ``(T, H, W)`` without any reference.

    Returns one flat row (``PLAUSIBILITY_FIELDS``), each a fraction of frames or a median:

    * ``<s>_present``: share of frames where structure ``s`` has any pixel;
    * ``<s>_to_lv_area``: median over frames where both are present of area(s) / area(LV);
    * ``la_basal_to_lv`` / ``ra_basal_to_rv``: share of frames (both present) whose atrium's
      centroid lies further from the fan apex (image row 0 in EchoNet's orientation) than its
      ventricle's;
    * ``right_heart_one_side``: share of frames with all four chambers where the RV and the RA
      lie on the same side of the left heart (sign of RV − LV column equals sign of RA − LA);
    * ``la_lv_area_r``: Pearson r of the LA and LV area curves (the LA fills while the LV
      empties, so a plausible video has r < 0; NaN with fewer than 5 shared frames or a flat
      curve);
    * ``lv_fill_at_la_max``: the LV's area at the frame of the largest LA, as a fraction of the
      LV's range (0: its smallest, end-systole; 1: its largest): the LA is largest near ES.

    Overlaps need no check: a label map holds one structure per pixel.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or not labels.shape[0]:
        raise ValueError(f"chamber_plausibility expects label maps of shape (T, H, W) with T >= 1, got {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"label maps must be integers (STRUCTURES codes), got dtype {labels.dtype}")
    areas = _structure_areas(labels)
    present = {name: area > 0 for name, area in areas.items()}
    centre = _centroids(labels, areas)
    row: dict[str, float] = {f"{name}_present": float(present[name].mean()) for name in STRUCTURES}
    for name in STRUCTURES:
        if name == "lv":
            continue
        both = present[name] & present["lv"]
        row[f"{name}_to_lv_area"] = float(np.median(areas[name][both] / areas["lv"][both])) if both.any() else float("nan")
    row["la_basal_to_lv"] = _share(centre["la"][:, 0] > centre["lv"][:, 0], present["la"] & present["lv"])
    row["ra_basal_to_rv"] = _share(centre["ra"][:, 0] > centre["rv"][:, 0], present["ra"] & present["rv"])
    every = present["lv"] & present["la"] & present["rv"] & present["ra"]
    same_side = np.sign(centre["rv"][:, 1] - centre["lv"][:, 1]) == np.sign(centre["ra"][:, 1] - centre["la"][:, 1])
    row["right_heart_one_side"] = _share(same_side, every)
    shared = present["la"] & present["lv"]
    la, lv = areas["la"][shared], areas["lv"][shared]
    row["la_lv_area_r"] = float(np.corrcoef(la, lv)[0, 1]) if shared.sum() >= 5 and la.std() > 0 and lv.std() > 0 else float("nan")
    lv_range = lv.max() - lv.min() if shared.any() else 0.0
    row["lv_fill_at_la_max"] = float((lv[np.argmax(la)] - lv.min()) / lv_range) if lv_range > 0 else float("nan")
    return row


# -- Guideline flags -----------------------------------------------------------------------
#: Lang et al., Recommendations for cardiac chamber quantification by echocardiography in
#: adults: an update from the ASE and the EACVI, J Am Soc Echocardiogr 2015;28:1-39.
LANG_2015 = "Lang et al. 2015"
#: Rudski et al., Guidelines for the echocardiographic assessment of the right heart in adults
#: (ASE), J Am Soc Echocardiogr 2010;23:685-713.
RUDSKI_2010 = "Rudski et al. 2010"
NEEDS_SPACING = "needs pixel spacing"
NEEDS_BSA = "needs BSA"


@dataclass(frozen=True)
class FlagThreshold:
    """One abnormality rule: ``flag`` is set when ``measurement`` (divided by BSA when
    ``indexed``) lies beyond the limit, ``<`` or ``>`` (``direction``), men's or women's. With
    the sex unknown the limit is the one beyond which the value is abnormal for both sexes
    (the lower of two lower limits, the higher of two upper limits)."""

    flag: str
    measurement: str
    indexed: bool
    direction: str
    men: float
    women: float
    unit: str
    source: str

    @property
    def unknown_sex(self) -> float:
        return min(self.men, self.women) if self.direction == "<" else max(self.men, self.women)

    def limit(self, sex: str | None) -> float:
        return {"male": self.men, "female": self.women}.get(sex, self.unknown_sex)

    def abnormal(self, value: float, sex: str | None) -> bool:
        limit = self.limit(sex)
        return bool(value < limit) if self.direction == "<" else bool(value > limit)


#: Every threshold the flags use. A flag with an indexed and an absolute row uses the indexed
#: one when a BSA is given. Table numbers are those of Lang et al. 2015.
FLAG_THRESHOLDS = (
    # LVEF normal range 52-72 % (men), 54-74 % (women): Table 2; severity partitions Table 4.
    FlagThreshold("lv_systolic_function_reduced", "lv_ef", False, "<", 52.0, 54.0, "%", f"{LANG_2015}, Tables 2 and 4"),
    # LV EDV/BSA upper normal limit 74 (men) / 61 (women) mL/m², 2D biplane: Table 2.
    FlagThreshold("lv_dilated", "lv_edv", True, ">", 74.0, 61.0, "mL/m²", f"{LANG_2015}, Table 2"),
    # LV EDV normal range 62-150 mL (men), 46-106 mL (women): Table 2.
    FlagThreshold("lv_dilated", "lv_edv", False, ">", 150.0, 106.0, "mL", f"{LANG_2015}, Table 2"),
    # Maximal LA volume/BSA: upper normal limit 34 mL/m², both sexes: section 4.1 and Table 4.
    FlagThreshold("la_enlarged", "la_volume_max", True, ">", 34.0, 34.0, "mL/m²", f"{LANG_2015}, section 4 and Table 4"),
    # RV end-diastolic area indexed: upper limits 12.6 (men) / 11.5 (women) cm²/m²: Table 10.
    FlagThreshold("rv_dilated", "rv_eda", True, ">", 12.6, 11.5, "cm²/m²", f"{LANG_2015}, Table 10"),
    # RV end-diastolic area: upper limits 24 (men) / 20 (women) cm²: Table 10.
    FlagThreshold("rv_dilated", "rv_eda", False, ">", 24.0, 20.0, "cm²", f"{LANG_2015}, Table 10"),
    # Not a guideline value: a scale-free rule of thumb (RV larger than LV in A4C at ED).
    FlagThreshold("rv_larger_than_lv", "rv_lv_area_ratio", False, ">", 1.0, 1.0, "", "rule of thumb, not a guideline threshold"),
    # RV FAC abnormal below 35 %: Table 11 (RV function).
    FlagThreshold("rv_systolic_function_reduced", "rv_fac", False, "<", 35.0, 35.0, "%", f"{LANG_2015}, Table 11"),
    # RA area upper limit 18 cm² (end-systole, A4C): the 2010 right-heart guideline's reference
    # limits; the 2015 update gives RA volume index instead.
    FlagThreshold("ra_enlarged", "ra_area_max", False, ">", 18.0, 18.0, "cm²", f"{RUDSKI_2010}, RA size"),
    # LV mass/BSA upper normal limits, 2D methods (area-length / truncated ellipsoid):
    # 102 (men) / 88 (women) g/m²: Table 6 (the linear method's 115 / 95 do not apply).
    FlagThreshold("lv_hypertrophy", "lv_mass", True, ">", 102.0, 88.0, "g/m²", f"{LANG_2015}, Table 6 (2D method)"),
)

#: Flag names, in table order.
FLAGS = tuple(dict.fromkeys(row.flag for row in FLAG_THRESHOLDS))

_SEXES = {
    **dict.fromkeys(("m", "male", "man", "men"), "male"),
    **dict.fromkeys(("f", "female", "woman", "women"), "female"),
}


def _sex(sex: str | None) -> str | None:
    if sex is None:
        return None
    key = str(sex).strip().lower()
    if key not in _SEXES:
        raise ValueError(f"sex must be 'male', 'female' or None (unknown), got {sex!r}")
    return _SEXES[key]


def _spacing(measurements: dict, mm_per_pixel: float | None) -> tuple[float | None, bool]:
    """(pixel spacing, whether the measurements still are in pixel units)."""
    own = float(measurements.get("mm_per_pixel", float("nan")))
    if mm_per_pixel is not None and not (np.isfinite(mm_per_pixel) and mm_per_pixel > 0):
        raise ValueError(f"mm_per_pixel must be > 0 (or None), got {mm_per_pixel}")
    if np.isfinite(own):
        if mm_per_pixel is not None and not np.isclose(mm_per_pixel, own):
            raise ValueError(f"the measurements are already at {own} mm/pixel; mm_per_pixel={mm_per_pixel} contradicts them")
        return own, False
    return mm_per_pixel, True


def _decide_flags(measurements: dict, mm_per_pixel, bsa_m2, sex) -> dict[str, tuple[bool | None, str]]:
    sex = _sex(sex)
    if bsa_m2 is not None and not (np.isfinite(bsa_m2) and bsa_m2 > 0):
        raise ValueError(f"bsa_m2 must be > 0 (or None), got {bsa_m2}")
    spacing, in_pixels = _spacing(measurements, mm_per_pixel)
    decisions = {}
    for flag in FLAGS:
        rows = [row for row in FLAG_THRESHOLDS if row.flag == flag]
        measure = MEASURES[rows[0].measurement]
        missing = []
        if measure.length_power and spacing is None:
            missing.append(NEEDS_SPACING)
        usable = [row for row in rows if bsa_m2 is not None or not row.indexed]
        if not usable:
            missing.append(NEEDS_BSA)
        if missing:
            decisions[flag] = (None, " and ".join(missing))
            continue
        row = usable[0]  # indexed first when a BSA is given
        value = float(measurements.get(row.measurement, float("nan")))
        if not np.isfinite(value):
            decisions[flag] = (None, f"no {row.measurement} measured (chamber absent or no usable frame)")
            continue
        if in_pixels and measure.length_power:
            value *= (spacing / 10.0) ** measure.length_power
        if row.indexed:
            value /= bsa_m2
        abnormal = row.abnormal(value, sex)
        who = {"male": "men", "female": "women"}.get(sex, "sex unknown")
        name = f"{row.measurement}/BSA" if row.indexed else row.measurement
        sign = row.direction if abnormal else {"<": ">=", ">": "<="}[row.direction]
        decisions[flag] = (abnormal, f"{name} {value:.4g} {row.unit} {sign} {row.limit(sex):g} ({who})".replace("  ", " "))
    return decisions


def chamber_flags(
    measurements: dict, mm_per_pixel: float | None = None, bsa_m2: float | None = None, sex: str | None = None
) -> dict[str, bool | None]:
    """Abnormal-chamber flags (``FLAGS``) of one ``chamber_measurements`` row, by
    ``FLAG_THRESHOLDS``: True = abnormal, False = within the limit, None = undecided.

    ``mm_per_pixel`` converts a row measured in pixel units (a row measured with a spacing
    carries it; a different value is an error). ``bsa_m2`` (body surface area) selects the
    indexed thresholds; ``sex`` ``"male"`` / ``"female"`` (None: the limit abnormal for both).
    Without a spacing only the scale-free flags (EF, FAC, RV/LV area ratio) are decided; flags
    with only an indexed threshold also need the BSA. Why each flag came out as it did:
    ``chamber_flag_reasons``.
    """
    return {flag: decided for flag, (decided, _) in _decide_flags(measurements, mm_per_pixel, bsa_m2, sex).items()}


def chamber_flag_reasons(
    measurements: dict, mm_per_pixel: float | None = None, bsa_m2: float | None = None, sex: str | None = None
) -> dict[str, str]:
    """Why each flag of ``chamber_flags`` (same arguments) came out as it did: the value against
    its limit (``"lv_ef 48.2 % < 52 (men)"``) or what is missing (``"needs pixel spacing"``,
    ``"needs BSA"``, ``"no rv_fac measured ..."``)."""
    return {flag: reason for flag, (_, reason) in _decide_flags(measurements, mm_per_pixel, bsa_m2, sex).items()}


def flag_thresholds_markdown() -> list[str]:
    """``FLAG_THRESHOLDS`` as a Markdown table (docs/chambers.md shows exactly these lines)."""
    lines = [
        "| flag | measurement | abnormal, men | abnormal, women | sex unknown | needs | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in FLAG_THRESHOLDS:
        unit = f" {row.unit}" if row.unit else ""
        name = f"{row.measurement} / BSA" if row.indexed else row.measurement
        needs = ["pixel spacing"] if MEASURES[row.measurement].length_power else []
        needs += ["BSA"] if row.indexed else []
        lines.append(
            f"| `{row.flag}` | `{name}` | {row.direction} {row.men:g}{unit} | {row.direction} {row.women:g}{unit} "
            f"| {row.direction} {row.unknown_sex:g}{unit} | {', '.join(needs) or 'nothing (scale-free)'} | {row.source} |"
        )
    return lines


# -- Agreement -----------------------------------------------------------------------------
def _as_flags(values, who: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != bool:
        if array.dtype == object or not np.isin(array, (0, 1)).all():
            raise ValueError(
                f"{who} must be booleans; leave out videos whose flag is None (undecided) first, got {array.dtype} {array.shape}"
            )
        array = array.astype(bool)
    return array.ravel()


def flag_agreement(
    predicted, truth, samples: int = 10_000, rng: np.random.Generator | None = None, ci: float = 0.95
) -> dict:
    """Sensitivity, specificity and balanced accuracy of predicted flags against true flags
    (one per video), each with a bootstrap interval over videos.

    Returns ``{"n", "positives", "negatives", "true_positives", "false_negatives",
    "true_negatives", "false_positives", "sensitivity", "specificity", "balanced_accuracy"
    (each with ``_low`` / ``_high``), "samples", "no_positive_resamples", "no_negative_resamples",
    "no_positive_share", "no_negative_share", "undefined_share"}``.

    Balanced accuracy, the mean of sensitivity and specificity, is the headline: with rare
    abnormal videos a constant "normal" prediction has a high accuracy but a balanced accuracy
    of 0.5. A resample that draws no abnormal (or no normal) video has no sensitivity (or
    specificity, and no balanced accuracy). Such resamples are counted and their share
    reported; the intervals are over the resamples where the statistic exists (conditional on
    the resample holding both classes), so read a share of more than a few percent as too few
    abnormal (or normal) videos for the interval to mean much. Intervals are NaN when no
    resample defines the statistic.
    """
    rng = np.random.default_rng() if rng is None else rng
    predicted = _as_flags(predicted, "predicted flags")
    truth = _as_flags(truth, "true flags")
    if predicted.shape != truth.shape or not truth.size:
        raise ValueError(f"need equally many (>= 1) predicted and true flags, got {predicted.shape} and {truth.shape}")
    per_video = np.stack([predicted & truth, truth, ~predicted & ~truth, ~truth], axis=1).astype(np.float64)
    tp, pos, tn, neg = per_video.sum(axis=0)
    sums = resampled_sums(per_video, samples, rng)
    has_pos, has_neg = sums[:, 1] > 0, sums[:, 3] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.where(has_pos, sums[:, 0] / sums[:, 1], np.nan)
        specificity = np.where(has_neg, sums[:, 2] / sums[:, 3], np.nan)
    stats = {"sensitivity": sensitivity, "specificity": specificity, "balanced_accuracy": (sensitivity + specificity) / 2.0}
    estimates = {
        "sensitivity": tp / pos if pos else float("nan"),
        "specificity": tn / neg if neg else float("nan"),
    }
    estimates["balanced_accuracy"] = (estimates["sensitivity"] + estimates["specificity"]) / 2.0
    result = {
        "n": int(truth.size),
        "positives": int(pos),
        "negatives": int(neg),
        "true_positives": int(tp),
        "false_negatives": int(pos - tp),
        "true_negatives": int(tn),
        "false_positives": int(neg - tn),
    }
    for name, drawn in stats.items():
        defined = drawn[np.isfinite(drawn)]
        low, high = (float(v) for v in percentile_interval(defined, ci)) if defined.size else (float("nan"), float("nan"))
        result.update({name: float(estimates[name]), f"{name}_low": low, f"{name}_high": high})
    result.update(
        samples=int(samples),
        no_positive_resamples=int((~has_pos).sum()),
        no_negative_resamples=int((~has_neg).sum()),
        no_positive_share=float((~has_pos).mean()),
        no_negative_share=float((~has_neg).mean()),
        undefined_share=float((~(has_pos & has_neg)).mean()),
    )
    return result


def measurement_agreement(
    predicted, reference, samples: int = 10_000, rng: np.random.Generator | None = None, ci: float = 0.95
) -> dict:
    """Agreement of a predicted measurement with a reference one (one value per video, same
    units): ``ef_agreement_intervals``' dict (n, MAE, bias = predicted - reference, Pearson r
    with bootstrap intervals over videos, R², RMSE, SD of the differences, Bland-Altman limits
    ``loa_low`` / ``loa_high`` = bias ± 1.96 SD), plus ``left_out``: videos where either value
    is NaN (a chamber not measured), counted rather than silently dropped."""
    from unilvseg.evaluation.ef_agreement import ef_agreement_intervals

    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    reference = np.asarray(reference, dtype=np.float64).ravel()
    if predicted.shape != reference.shape:
        raise ValueError(f"need equally many predicted and reference values, got {predicted.shape} and {reference.shape}")
    both = np.isfinite(predicted) & np.isfinite(reference)
    if not both.any():
        raise ValueError(f"no video has both a predicted and a reference value ({predicted.size} videos)")
    result = ef_agreement_intervals(predicted[both], reference[both], samples=samples, rng=rng, ci=ci)
    result["left_out"] = int((~both).sum())
    return result
