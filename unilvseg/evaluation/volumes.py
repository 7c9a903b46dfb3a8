"""LV volumes and ejection fraction from segmentation masks (method of disks, single-plane or biplane).

The LV long axis is taken as the principal axis of the mask pixels (PCA of their coordinates),
a practical stand-in for the clinical apex-to-mitral-plane axis: for the elongated A4C
ventricle the two agree closely, and PCA needs no contour tracing and vectorises over frames.
The mask's extent along that axis is cut into ``disks`` slabs perpendicular to it; each slab's
diameter is its mean width across the axis (pixels in the slab / slab height, robust to the
pixel staircase and to ragged edges), and the volume is ``Σ π/4 · d² · h`` (Simpson's rule as
in EchoNet-Dynamic's tracings, single plane, disks of revolution).

Pixel spacing: EchoNet-Dynamic videos are resampled to 112x112 and lose their physical pixel
size, so volumes use a nominal ``mm_per_pixel = 1.4`` and are only roughly scaled (mL). EF is a
ratio of volumes and does not depend on the spacing at all.

ED/ES from a mask sequence: one of the named rules in ``ED_ES_RULES`` (see ``choose_ed_es``):

* ``beats`` (default): every complete heartbeat is found on the LV *area* curve, with a
  smoothing scale and a beat spacing that follow the video's own heart period (autocorrelation
  of the curve, searched over 30-200 bpm at the video's FPS); ED = largest, ES = smallest LV of
  each beat; beats cut off by the start or end of the video, beats of implausible duration
  (outside 0.3-2 s) and beats of implausible amplitude are left out; EF is the mean of the
  beats' EFs (with their SD), as clinicians average beats. When the curve shows no regular
  period or no complete beat, it falls back to ``extremes`` and says so.
* ``extremes``: ED = largest, ES = smallest volume of the whole video (or ``frame_range``).
* ``volume_peaks``: the earlier beat-wise rule (fixed 15-frame spacing and 10 % prominence on
  the unsmoothed volume curve, the beat with the median EF), kept for comparison.

Every rule ignores empty frames and single-frame glitches (a mask that drops out for a frame
or two, e.g. a missed-gain frame, has an area far from its neighbours' median, further than a
heart can change in that time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MM_PER_PIXEL = 1.4
DEFAULT_DISKS = 20
# Frames processed at once: bounds the per-pixel temporaries (LV pixels x disks floats).
_FRAME_CHUNK = 128


def _disk_profiles_px(masks: np.ndarray, disks: int) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's disk diameters ``(T, disks)`` and disk height ``(T,)`` in pixels, along the
    principal axis of ``masks (T, H, W)`` (bool); empty frames give zeros.

    Works on the list of LV pixels of all frames at once (per-frame sums via ``bincount`` /
    ``reduceat``), so the cost scales with the LV area, not with T·H·W.
    """
    frames = masks.shape[0]
    frame_ids, rows, cols = np.nonzero(masks)
    diameters = np.zeros((frames, disks), dtype=np.float64)
    heights = np.zeros(frames, dtype=np.float64)
    if not len(frame_ids):
        return diameters, heights
    present, starts = np.unique(frame_ids, return_index=True)  # np.nonzero is frame-major
    area = np.bincount(frame_ids, minlength=frames).astype(np.float64)[present]
    ys = rows.astype(np.float64)
    xs = cols.astype(np.float64)
    cy = np.add.reduceat(ys, starts) / area
    cx = np.add.reduceat(xs, starts) / area
    slot = np.repeat(np.arange(len(present)), np.diff(np.append(starts, len(frame_ids))))
    dy = ys - cy[slot]
    dx = xs - cx[slot]
    syy = np.add.reduceat(dy * dy, starts)
    sxx = np.add.reduceat(dx * dx, starts)
    sxy = np.add.reduceat(dx * dy, starts)
    # Orientation of the major principal axis of each frame's 2x2 covariance, closed form.
    theta = 0.5 * np.arctan2(2.0 * sxy, sxx - syy)
    along = dx * np.cos(theta)[slot] + dy * np.sin(theta)[slot]
    t_min = np.minimum.reduceat(along, starts)
    t_max = np.maximum.reduceat(along, starts)
    # A pixel centre at t covers about t ± 0.5 along the axis: extent = span of centres + 1 pixel.
    height_px = (t_max - t_min + 1.0) / disks
    # Each pixel's unit mass is spread over the slabs its [t - 0.5, t + 0.5] footprint overlaps.
    # Assigning whole pixels by centre instead aliases badly when a slab is about one pixel high
    # (slabs alternately catch one and two pixel rows: ~10 % volume error on small masks).
    scale = height_px[slot]
    low = (along - t_min[slot]) / scale  # footprint start, in slab units (>= 0)
    footprint = 1.0 / scale  # footprint length, in slab units
    first = np.floor(low)
    # A footprint of length f touches at most ceil(f) + 1 slabs (2 for any LV longer than `disks` px).
    reach = int(np.ceil(footprint.max())) + 1
    counts = np.zeros(len(present) * disks, dtype=np.float64)
    for offset in range(reach):  # a handful of vectorised passes, not a loop over pixels
        slab = first + offset
        overlap = np.minimum(slab + 1.0, low + footprint) - np.maximum(slab, low)
        keep = (overlap > 0) & (slab < disks)
        counts += np.bincount(
            (slot[keep] * disks + slab[keep].astype(np.int64)),
            weights=overlap[keep] / footprint[keep],
            minlength=len(present) * disks,
        )
    counts = counts.reshape(len(present), disks)  # LV pixels per slab
    diameters[present] = counts / height_px[:, None]  # mean width of the slab, pixels
    heights[present] = height_px
    return diameters, heights


def _disk_volumes_px(masks: np.ndarray, disks: int) -> np.ndarray:
    """Single-plane method-of-disks volume in cubic pixels of every frame (disks of revolution)."""
    diameters, heights = _disk_profiles_px(masks, disks)
    return (np.pi / 4.0) * (diameters**2).sum(axis=1) * heights


def method_of_disks_batch(
    masks: np.ndarray, mm_per_pixel: float = DEFAULT_MM_PER_PIXEL, disks: int = DEFAULT_DISKS
) -> np.ndarray:
    """Volumes in mL of every frame of ``masks (T, H, W)`` (LV > 0); empty frames give 0."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"method_of_disks_batch expects masks of shape (T, H, W), got {masks.shape}")
    if disks < 1:
        raise ValueError(f"disks must be >= 1, got {disks}")
    if not mm_per_pixel > 0:
        raise ValueError(f"mm_per_pixel must be > 0, got {mm_per_pixel}")
    masks = masks > 0
    volumes_px = np.concatenate(
        [_disk_volumes_px(masks[i : i + _FRAME_CHUNK], disks) for i in range(0, len(masks), _FRAME_CHUNK)]
    ) if len(masks) else np.zeros(0)
    # mm^3 -> mL (1 mL = 1000 mm^3).
    return volumes_px * mm_per_pixel**3 / 1000.0


def _narrow_end_first(diameters: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reverse the disk profile of every frame whose first half is wider than its second, so
    that slab 0 is at the narrow end (the apex of an LV cut at its mitral annulus) whichever way
    the principal axis happened to point. Where the two halves are about equal (a round LV) the
    order hardly changes a biplane volume either way."""
    half = diameters.shape[1] // 2
    if half == 0:
        return diameters, heights
    flip = diameters[:, :half].sum(axis=1) > diameters[:, -half:].sum(axis=1)
    diameters = diameters.copy()
    diameters[flip] = diameters[flip, ::-1]
    return diameters, heights


def biplane_method_of_disks_batch(
    masks_a4c: np.ndarray, masks_a2c: np.ndarray, mm_per_pixel: float = DEFAULT_MM_PER_PIXEL, disks: int = DEFAULT_DISKS
) -> np.ndarray:
    """Biplane volumes in mL of paired frames of two orthogonal apical views ``(T, H, W)`` each.

    Simpson's biplane rule (ASE/EACVI 2015): each of the ``disks`` slabs is an elliptical disk
    whose two diameters come from the same slab of the two views, ``V = Σ π/4 · a_i · b_i · h``,
    with ``h`` from the longer of the two long axes (the shorter view is the foreshortened one).
    Slab i of each view counts from the same end, the apex: the principal axis has no
    direction of its own (an LV tilted either side of vertical comes out pointing either way),
    so each view's profile is turned, where needed, to start at its narrow end (``_narrow_end_first``).
    Frame ``t`` of one view is paired with frame ``t`` of the other, so the two sequences must be
    aligned by cardiac phase first. A frame empty in either view gives 0.
    """
    masks_a4c, masks_a2c = np.asarray(masks_a4c) > 0, np.asarray(masks_a2c) > 0
    if masks_a4c.ndim != 3 or masks_a2c.ndim != 3 or masks_a4c.shape[0] != masks_a2c.shape[0]:
        raise ValueError(f"biplane volumes need two (T, H, W) mask sequences of equal T, got {masks_a4c.shape} and {masks_a2c.shape}")
    if disks < 1:
        raise ValueError(f"disks must be >= 1, got {disks}")
    if not mm_per_pixel > 0:
        raise ValueError(f"mm_per_pixel must be > 0, got {mm_per_pixel}")
    volumes_px = np.zeros(len(masks_a4c))
    for i in range(0, len(masks_a4c), _FRAME_CHUNK):
        d4, h4 = _narrow_end_first(*_disk_profiles_px(masks_a4c[i : i + _FRAME_CHUNK], disks))
        d2, h2 = _narrow_end_first(*_disk_profiles_px(masks_a2c[i : i + _FRAME_CHUNK], disks))
        both = (h4 > 0) & (h2 > 0)
        volumes_px[i : i + len(h4)] = np.where(both, (np.pi / 4.0) * (d4 * d2).sum(axis=1) * np.maximum(h4, h2), 0.0)
    return volumes_px * mm_per_pixel**3 / 1000.0


def method_of_disks(mask: np.ndarray, mm_per_pixel: float = DEFAULT_MM_PER_PIXEL, disks: int = DEFAULT_DISKS) -> float:
    """Volume in mL of one LV mask ``(H, W)`` by the single-plane method of disks (0 when empty)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"method_of_disks expects a mask of shape (H, W), got {mask.shape}")
    return float(method_of_disks_batch(mask[None], mm_per_pixel, disks)[0])


def ejection_fraction(edv: float, esv: float) -> float:
    """EF in percent, ``100 · (EDV - ESV) / EDV``; NaN when EDV is not positive."""
    return float(100.0 * (edv - esv) / edv) if edv > 0 else float("nan")


def beats_from_volumes(volumes: np.ndarray, min_beat_frames: int = 15, prominence: float = 0.1) -> list[tuple[int, int]]:
    """(ED, ES) frame pairs, one per beat: ED at each prominent volume peak, ES at the smallest
    volume before the next peak (or the end of the video).

    ``min_beat_frames`` is the shortest ED-to-ED distance accepted (15 frames = 0.3 s at 50 fps,
    i.e. up to 200 bpm); ``prominence`` is relative to the volume range of the video.
    """
    from scipy.signal import find_peaks

    volumes = np.asarray(volumes, dtype=np.float64)
    span = float(np.ptp(volumes)) if len(volumes) else 0.0
    if span <= 0:
        return []
    peaks, _ = find_peaks(volumes, distance=min_beat_frames, prominence=prominence * span)
    beats = []
    for i, ed in enumerate(peaks):
        stop = peaks[i + 1] if i + 1 < len(peaks) else len(volumes)
        if stop - ed < 3:
            continue
        segment = volumes[ed:stop]
        es = ed + int(np.argmin(np.where(segment > 0, segment, np.inf)))
        # A beat counts only if the volume really falls after ED and, for the last beat, rises
        # again before the video ends (otherwise ES may lie beyond the last frame).
        complete = i + 1 < len(peaks) or volumes[es:].max() - volumes[es] >= prominence * span
        if volumes[ed] - volumes[es] >= prominence * span and complete:
            beats.append((int(ed), int(es)))
    return beats


# -- ED/ES rules ---------------------------------------------------------------------------
BEATS = "beats"
EXTREMES = "extremes"
VOLUME_PEAKS = "volume_peaks"
ED_ES_RULES = (BEATS, EXTREMES, VOLUME_PEAKS)
DEFAULT_ED_ES_RULE = BEATS
#: EchoNet-Dynamic's frame rate, assumed when a video's FPS is unknown.
DEFAULT_FPS = 50.0

# The constants below come from physiology or from the rule of thumb stated with each; none was
# fitted to data.
#: Plausible heart rates: 30-200 bpm, i.e. one beat lasts 0.3-2 s.
MIN_HEART_RATE_BPM = 30.0
MAX_HEART_RATE_BPM = 200.0
#: Smallest fractional LV area change of a beat. Volume grows about as area^1.5, so an EF of
#: 7 % (about the lowest a contracting ventricle is reported with) is an area change of
#: 1 - 0.93^(2/3) = 4.7 % (rounded down to leave a margin); anything smaller is mask noise.
MIN_BEAT_AREA_CHANGE = 0.045
#: Fastest plausible area change: a 60 % area fall (EF about 75 %) within the shortest systole
#: (about 0.15 s at 200 bpm) is 4 area-fractions per second.
MAX_AREA_CHANGE_PER_S = 4.0
#: Frame-to-frame mask noise allowed on top of that before a frame is called a glitch.
GLITCH_NOISE = 0.1
#: Gaussian smoothing sigma as a fraction of the heart period: a twentieth of a beat (half-height
#: width about 0.12 of a beat) removes frame noise and short wiggles of diastasis, while the
#: systolic fall and the end-systolic trough (a third of a beat or more) keep their shape.
SMOOTHING_FRACTION = 0.05
#: A beat's trough must fall below both neighbouring peaks by this fraction of the curve's
#: beat amplitude (2nd-98th percentile range), and its amplitude must be at least this fraction
#: of the median beat's: beat-to-beat stroke volume in sinus rhythm varies far less than 2x.
MIN_RELATIVE_AMPLITUDE = 0.5
#: Autocorrelation needed at the heart period to call the curve periodic.
MIN_PERIODICITY = 0.3
#: Among autocorrelation peaks, the shortest lag within this fraction of the best is the period
#: (its multiples correlate about as well; the fundamental is the first).
PERIOD_PEAK_TOLERANCE = 0.8


@dataclass
class BeatSearch:
    """What ``find_beats`` found: complete beats as (ED, ES) frame pairs, the heart period it
    used (frames; NaN when the curve has no regular period), the smoothing sigma (frames), the
    frames it ignored as glitches, and why no beat was found (empty when some were)."""

    beats: list[tuple[int, int]]
    period: float
    sigma: float
    glitches: np.ndarray
    reason: str = ""


def glitch_frames(curve: np.ndarray, fps: float = DEFAULT_FPS) -> np.ndarray:
    """Frames whose value cannot be a heart's: empty (<= 0), or further from the median of the
    5 frames around them than the fastest physiological change over 2 frames plus mask noise
    (a frame or two that drops out, e.g. a missed-gain frame)."""
    from scipy.ndimage import median_filter

    curve = np.asarray(curve, dtype=np.float64)
    if curve.size < 3:
        return curve <= 0
    local = median_filter(curve, size=5, mode="nearest")
    tolerance = 2.0 * MAX_AREA_CHANGE_PER_S / fps + GLITCH_NOISE
    return (curve <= 0) | (np.abs(curve - local) > tolerance * np.maximum(local, 1e-12))


def heart_period(curve: np.ndarray, fps: float = DEFAULT_FPS) -> float:
    """Heart period in frames from the curve's autocorrelation (Pearson correlation of the
    linearly detrended curve with itself shifted by each lag of 30-200 bpm, lags up to half
    the video so that two periods are seen); NaN when no lag correlates enough."""
    curve = np.asarray(curve, dtype=np.float64)
    n = curve.size
    low = max(2, int(np.floor(60.0 / MAX_HEART_RATE_BPM * fps)))
    high = min(int(np.ceil(60.0 / MIN_HEART_RATE_BPM * fps)), n // 2)
    if high <= low:
        return float("nan")
    t = np.arange(n, dtype=np.float64)
    x = curve - np.polyval(np.polyfit(t, curve, 1), t)
    if not np.std(x) > 1e-6 * max(float(np.abs(curve).mean()), 1e-12):
        return float("nan")  # a straight line (or constant): nothing beats
    # Sums over the overlapping parts x[:n-k] and x[k:] for every lag k, from cumulative sums.
    sums = np.concatenate([[0.0], np.cumsum(x)])
    squares = np.concatenate([[0.0], np.cumsum(x * x)])
    cross = np.correlate(x, x, mode="full")[n - 1 :]
    lags = np.arange(low - 1, high + 2)  # one lag either side, to tell local maxima
    lags = lags[(lags >= 1) & (lags < n - 1)]
    m = (n - lags).astype(np.float64)
    sum_a, sum_b = sums[n - lags], sums[n] - sums[lags]
    var_a = squares[n - lags] - sum_a**2 / m
    var_b = (squares[n] - squares[lags]) - sum_b**2 / m
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (cross[lags] - sum_a * sum_b / m) / np.sqrt(var_a * var_b)
    r = np.nan_to_num(r, nan=-1.0)
    inner = np.arange(1, len(lags) - 1)
    is_peak = (r[inner] >= r[inner - 1]) & (r[inner] > r[inner + 1]) & (lags[inner] >= low) & (lags[inner] <= high)
    peaks = inner[is_peak]
    if not len(peaks) or r[peaks].max() < MIN_PERIODICITY:
        return float("nan")
    best = r[peaks].max()
    first = peaks[r[peaks] >= PERIOD_PEAK_TOLERANCE * best][0]
    # Parabolic interpolation between the neighbouring lags for a sub-frame period.
    left, centre, right = r[first - 1], r[first], r[first + 1]
    curvature = left - 2 * centre + right
    shift = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    return float(lags[first] + np.clip(shift, -0.5, 0.5))


def find_beats(curve: np.ndarray, fps: float | None = None) -> BeatSearch:
    """Complete heartbeats of an LV area (or volume) curve, each as an (ED, ES) frame pair.

    1. Glitch frames (``glitch_frames``) are replaced by their neighbours' median for the
       search and can never be ED or ES.
    2. The heart period P comes from the curve's autocorrelation (``heart_period``).
    3. The curve is smoothed with a Gaussian of sigma ``SMOOTHING_FRACTION``·P.
    4. End-systoles are troughs of the smoothed curve at least the shortest beat (0.3 s) apart
       that fall by ``MIN_RELATIVE_AMPLITUDE`` of the curve's amplitude below the peaks on
       *both* sides: a trough at the start or end of the video without that rise (a partial
       beat) is left out. The spacing is not tied to P: with an irregular rhythm (e.g. RR
       intervals alternating short and long) the autocorrelation finds the repeat of the
       pattern, two beats, and a P-based spacing would merge them.
    5. Each beat's ED is the largest smoothed value between the previous end-systole (or 2 s
       back, the longest beat) and its own.
    6. ED and ES move to the largest / smallest raw (unsmoothed, non-glitch) frame within one
       sigma, so they are real frames of the video. A beat whose ED is then the video's first
       frame is partial (filling may have gone on before the video started) and is left out.
    7. A beat is kept when its end-systole lies 0.3-2 s from the neighbouring one and its area
       change is at least ``MIN_BEAT_AREA_CHANGE`` of its ED value and ``MIN_RELATIVE_AMPLITUDE``
       of the median beat's.
    """
    from scipy.ndimage import gaussian_filter1d
    from scipy.signal import find_peaks

    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
    curve = np.asarray(curve, dtype=np.float64)
    glitches = glitch_frames(curve, fps)
    nothing = BeatSearch([], float("nan"), float("nan"), glitches)
    if (~glitches).sum() < 3:
        nothing.reason = "fewer than 3 usable frames"
        return nothing
    # Replace glitches by interpolation between the good frames around them.
    frames = np.arange(curve.size)
    clean = np.interp(frames, frames[~glitches], curve[~glitches])
    period = heart_period(clean, fps)
    if not np.isfinite(period):
        nothing.reason = "no regular heart period"
        return nothing
    sigma = SMOOTHING_FRACTION * period
    smooth = gaussian_filter1d(clean, sigma, mode="nearest")
    amplitude = float(np.percentile(smooth, 98) - np.percentile(smooth, 2))
    shortest, longest = 60.0 / MAX_HEART_RATE_BPM * fps, 60.0 / MIN_HEART_RATE_BPM * fps
    troughs, _ = find_peaks(-smooth, distance=max(1, int(round(shortest))), prominence=MIN_RELATIVE_AMPLITUDE * amplitude)
    search = BeatSearch([], period, sigma, glitches)
    if not len(troughs):
        search.reason = "no complete beat"
        return search
    reach = max(1, int(round(sigma)))
    maximise = np.where(glitches, -np.inf, curve)
    minimise = np.where(glitches, np.inf, curve)
    candidates = []
    for i, trough in enumerate(troughs):  # one iteration per beat, a handful per video
        start = troughs[i - 1] + 1 if i else max(0, int(trough - round(longest)))
        peak = start + int(np.argmax(smooth[start:trough]))
        neighbours = [troughs[j] for j in (i - 1, i + 1) if 0 <= j < len(troughs)]
        spacing = min(abs(trough - j) for j in neighbours) if neighbours else period
        if not shortest <= spacing <= longest:
            continue
        ed_low, ed_high = max(start, peak - reach), min(trough, peak + reach + 1)
        ed = ed_low + int(np.argmax(maximise[ed_low:ed_high]))
        if ed == 0:
            continue  # the filling may have gone on before the video started: a partial beat
        es_low, es_high = max(peak + 1, trough - reach), min(curve.size, trough + reach + 1)
        es = es_low + int(np.argmin(minimise[es_low:es_high]))
        if not (np.isfinite(maximise[ed]) and np.isfinite(minimise[es])):
            continue
        candidates.append((ed, es, curve[ed] - curve[es]))
    if candidates:
        typical = float(np.median([change for _, _, change in candidates]))
        search.beats = [
            (int(ed), int(es))
            for ed, es, change in candidates
            if change >= MIN_BEAT_AREA_CHANGE * curve[ed] and change >= MIN_RELATIVE_AMPLITUDE * typical
        ]
    if not search.beats:
        search.reason = "no complete beat"
    return search


@dataclass
class EdEsChoice:
    """The beats (ED, ES) a rule chose, the rule that chose them (``"extremes (fallback: ...)"``
    when ``beats`` found none), how the reported EF combines them (``mean`` or ``median``
    beat), and the heart period in frames (NaN when unknown)."""

    beats: list[tuple[int, int]]
    rule: str
    combine: str = "mean"
    period: float = float("nan")


def _extreme_frames(areas: np.ndarray, volumes: np.ndarray, fps: float) -> list[tuple[int, int]]:
    usable = ~glitch_frames(areas, fps)
    if not usable.any():
        return []
    return [(int(np.argmax(np.where(usable, volumes, -np.inf))), int(np.argmin(np.where(usable, volumes, np.inf))))]


def _volume_peak_beats(areas: np.ndarray, volumes: np.ndarray, fps: float) -> list[tuple[int, int]]:
    """``beats_from_volumes`` on the volume curve with glitch frames bridged, as every rule does:
    a one-frame spike must not become an ED peak, nor a drop-out an ES. An ED or ES that still
    lands on a glitch frame (a plateau) moves to the nearest good frame."""
    glitches = glitch_frames(areas, fps)
    good = np.flatnonzero(~glitches)
    if len(good) < 3:
        return []
    frames = np.arange(len(volumes))
    clean = np.interp(frames, good, volumes[good])

    def nearest_good(frame: int) -> int:
        return int(good[np.argmin(np.abs(good - frame))])

    return [(nearest_good(ed), nearest_good(es)) for ed, es in beats_from_volumes(clean)]


def choose_ed_es(areas: np.ndarray, volumes: np.ndarray, rule: str = DEFAULT_ED_ES_RULE, fps: float | None = None) -> EdEsChoice:
    """ED/ES frame pairs of one video by a rule of ``ED_ES_RULES`` (see the module docstring)."""
    if rule not in ED_ES_RULES:
        raise ValueError(f"unknown ED/ES rule {rule!r}; expected one of {', '.join(ED_ES_RULES)}")
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
    areas = np.asarray(areas, dtype=np.float64)
    volumes = np.asarray(volumes, dtype=np.float64)
    if rule == BEATS:
        search = find_beats(areas, fps)
        if search.beats:
            return EdEsChoice(search.beats, BEATS, "mean", search.period)
        return EdEsChoice(_extreme_frames(areas, volumes, fps), f"{EXTREMES} (fallback: {search.reason})", "single", search.period)
    if rule == VOLUME_PEAKS:
        beats = _volume_peak_beats(areas, volumes, fps)
        if beats:
            return EdEsChoice(beats, VOLUME_PEAKS, "median")
        return EdEsChoice(_extreme_frames(areas, volumes, fps), f"{EXTREMES} (fallback: no volume peaks)", "single")
    return EdEsChoice(_extreme_frames(areas, volumes, fps), EXTREMES, "single")


def volumes_from_masks(
    masks: np.ndarray,
    mm_per_pixel: float = DEFAULT_MM_PER_PIXEL,
    disks: int = DEFAULT_DISKS,
    frame_range: tuple[int, int] | None = None,
    beat_wise: bool = True,
    rule: str | None = None,
    fps: float | None = None,
) -> dict:
    """EDV, ESV (mL), EF (%) and the ED/ES frames of a mask sequence ``(T, H, W)``.

    ``rule`` is one of ``ED_ES_RULES`` (default ``beats``; ``beat_wise=False`` is the older
    spelling of ``rule="extremes"``), applied to ``frame_range`` ``(start, stop)`` or the whole
    video; ``fps`` (default 50) sets the plausible heart-rate range in frames.

    Returns ``{"edv", "esv", "ef", "ed_frame", "es_frame", "beats" (count), "beat_frames"
    [(ED, ES), ...], "beat_efs" [...], "ef_sd", "rule", "heart_rate_bpm", "areas" (T,) int,
    "volumes" (T,) mL}``. With the ``beats`` rule EF, EDV and ESV are the means over the beats
    and ``ef_sd`` their EF's sample SD (NaN for one beat); ``ed_frame``/``es_frame`` are the
    beat whose EF is nearest the mean. ``volume_peaks`` reports its median-EF beat. With no
    usable frame EF = NaN and both frames are -1.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"volumes_from_masks expects masks of shape (T, H, W), got {masks.shape}")
    rule = rule or (DEFAULT_ED_ES_RULE if beat_wise else EXTREMES)
    areas = np.count_nonzero(masks, axis=(1, 2)).astype(np.int64)
    volumes = method_of_disks_batch(masks, mm_per_pixel, disks)
    return ed_es_volumes(areas, volumes, rule, fps, frame_range)


def volumes_by_rule(
    masks: np.ndarray,
    rules=ED_ES_RULES,
    mm_per_pixel: float = DEFAULT_MM_PER_PIXEL,
    disks: int = DEFAULT_DISKS,
    fps: float | None = None,
) -> dict[str, dict]:
    """``volumes_from_masks`` under each rule of ``rules``, the volumes computed once."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"volumes_by_rule expects masks of shape (T, H, W), got {masks.shape}")
    areas = np.count_nonzero(masks, axis=(1, 2)).astype(np.int64)
    volumes = method_of_disks_batch(masks, mm_per_pixel, disks)
    return {rule: ed_es_volumes(areas, volumes, rule, fps) for rule in rules}


def ed_es_volumes(
    areas: np.ndarray, volumes: np.ndarray, rule: str = DEFAULT_ED_ES_RULE, fps: float | None = None, frame_range: tuple[int, int] | None = None
) -> dict:
    """``volumes_from_masks``' result from per-frame LV areas (pixels) and volumes (mL)."""
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
    start, stop = (0, len(areas)) if frame_range is None else frame_range
    if not 0 <= start < stop <= len(areas):
        raise ValueError(f"frame_range {frame_range} outside the {len(areas)} frames")
    choice = choose_ed_es(areas[start:stop], volumes[start:stop], rule, fps)
    beats = [(start + ed, start + es) for ed, es in choice.beats]
    # Heart rate: from the spacing of the beats' end-systoles where there are several (the
    # autocorrelation period is the repeat of the rhythm, two beats for an alternating one).
    spacing = float(np.median(np.diff([es for _, es in beats]))) if len(beats) > 1 and choice.combine != "single" else choice.period
    heart_rate = 60.0 * fps / spacing if np.isfinite(spacing) else float("nan")
    result = {
        "edv": 0.0, "esv": 0.0, "ef": float("nan"), "ed_frame": -1, "es_frame": -1, "beats": 0, "beat_frames": [],
        "beat_efs": [], "ef_sd": float("nan"), "rule": choice.rule, "heart_rate_bpm": heart_rate, "areas": areas, "volumes": volumes,
    }
    if not beats:
        return result
    edvs = np.array([volumes[ed] for ed, _ in beats])
    esvs = np.array([volumes[es] for _, es in beats])
    efs = np.array([ejection_fraction(float(d), float(s)) for d, s in zip(edvs, esvs)])
    if choice.combine == "median":
        chosen = int(np.argsort(efs)[(len(efs) - 1) // 2])
        edv, esv, ef = float(edvs[chosen]), float(esvs[chosen]), float(efs[chosen])
    else:
        ef = float(np.mean(efs))
        chosen = int(np.argmin(np.abs(efs - ef)))
        edv, esv = float(np.mean(edvs)), float(np.mean(esvs))
    result.update(
        edv=edv,
        esv=esv,
        ef=ef,
        ed_frame=beats[chosen][0],
        es_frame=beats[chosen][1],
        beats=len(beats) if choice.combine != "single" else 0,
        beat_frames=beats,
        beat_efs=[float(v) for v in efs],
        ef_sd=float(np.std(efs, ddof=1)) if len(efs) > 1 else float("nan"),
    )
    return result


#: Columns that ``volume_fields`` adds to a volumes.csv row (after FileName).
VOLUME_FIELDS = ("EDV", "ESV", "EF", "EDFrame", "ESFrame", "EFSD", "Beats", "EFRule", "BeatEFs", "BeatFrames")


def volume_fields(result: dict) -> dict:
    """A volumes.csv row (``VOLUME_FIELDS``) from ``volumes_from_masks``' result: per-beat EFs
    and ``ED-ES`` frame pairs are space-separated, so the rule's choice can be checked."""
    return {
        "EDV": result["edv"],
        "ESV": result["esv"],
        "EF": result["ef"],
        "EDFrame": result["ed_frame"],
        "ESFrame": result["es_frame"],
        "EFSD": result["ef_sd"],
        "Beats": result["beats"],
        "EFRule": result["rule"],
        "BeatEFs": " ".join(f"{v:.2f}" for v in result["beat_efs"]) if result["beats"] else "",
        "BeatFrames": " ".join(f"{ed}-{es}" for ed, es in result["beat_frames"]) if result["beats"] else "",
    }


def biplane_volumes(
    masks_a4c: np.ndarray,
    masks_a2c: np.ndarray | None,
    rule: str = DEFAULT_ED_ES_RULE,
    fps_a4c: float | None = None,
    fps_a2c: float | None = None,
    mm_per_pixel: float = DEFAULT_MM_PER_PIXEL,
    disks: int = DEFAULT_DISKS,
) -> dict:
    """Biplane EDV, ESV and EF of one heart from its A4C and A2C mask videos ``(T, H, W)``.

    The two videos are recorded one after the other, so their frames do not correspond; they
    are aligned by cardiac phase instead. Each view's beats come from its own area curve by
    ``rule`` (as ``volumes_from_masks``), the k-th beat of one view is paired with the k-th of
    the other, and each pair gives a biplane EDV (the two views' ED frames) and ESV (their ES
    frames). EF, EDV and ESV are the means over the paired beats, ``ef_sd`` their EF's SD.

    When the A2C video is missing or has no usable beat, the result is the single-plane A4C
    figure and ``method`` says why; the other way round likewise. Returns ``volumes_from_masks``'
    keys (``beat_frames`` as ``((ED4, ES4), (ED2, ES2))`` pairs) plus ``method``.
    """
    single_a4c = volumes_from_masks(masks_a4c, mm_per_pixel, disks, rule=rule, fps=fps_a4c)
    if masks_a2c is None:
        return {**single_a4c, "method": "single-plane A4C (no A2C video)"}
    single_a2c = volumes_from_masks(masks_a2c, mm_per_pixel, disks, rule=rule, fps=fps_a2c)
    beats_a4c, beats_a2c = single_a4c["beat_frames"], single_a2c["beat_frames"]
    if not beats_a2c:
        return {**single_a4c, "method": "single-plane A4C (no beat in the A2C video)"}
    if not beats_a4c:
        return {**single_a2c, "method": "single-plane A2C (no beat in the A4C video)"}
    pairs = list(zip(beats_a4c, beats_a2c))
    a4c = np.asarray(masks_a4c)
    a2c = np.asarray(masks_a2c)
    ed4, es4 = [p[0][0] for p in pairs], [p[0][1] for p in pairs]
    ed2, es2 = [p[1][0] for p in pairs], [p[1][1] for p in pairs]
    edvs = biplane_method_of_disks_batch(a4c[ed4], a2c[ed2], mm_per_pixel, disks)
    esvs = biplane_method_of_disks_batch(a4c[es4], a2c[es2], mm_per_pixel, disks)
    efs = np.array([ejection_fraction(float(d), float(s)) for d, s in zip(edvs, esvs)])
    ef = float(np.mean(efs))
    chosen = int(np.argmin(np.abs(efs - ef)))
    return {
        "edv": float(np.mean(edvs)),
        "esv": float(np.mean(esvs)),
        "ef": ef,
        "ed_frame": pairs[chosen][0][0],
        "es_frame": pairs[chosen][0][1],
        "beats": len(pairs),
        "beat_frames": pairs,
        "beat_efs": [float(v) for v in efs],
        "ef_sd": float(np.std(efs, ddof=1)) if len(efs) > 1 else float("nan"),
        "rule": f"{single_a4c['rule']} / {single_a2c['rule']}",
        "heart_rate_bpm": single_a4c["heart_rate_bpm"],
        "method": "biplane",
    }
