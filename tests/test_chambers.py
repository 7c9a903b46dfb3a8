"""Chamber measurements, guideline flags and their agreement (``unilvseg.evaluation.chambers``).

Shapes are drawn as label maps and checked against their analytic areas, lengths and volumes;
every flag is checked just below and just above its threshold; agreement statistics against
a confusion table worked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unilvseg.evaluation.chambers import (
    FLAG_THRESHOLDS,
    FLAGS,
    NEEDS_BSA,
    NEEDS_SPACING,
    PLAUSIBILITY_FIELDS,
    STRUCTURES,
    area_length_lv_mass,
    beat_values,
    chamber_flag_reasons,
    chamber_flags,
    chamber_measurements,
    chamber_plausibility,
    flag_agreement,
    flag_thresholds_markdown,
    long_axis_length,
    measurement_agreement,
)

LV, MYO, LA, RV, RA = (STRUCTURES[k] for k in ("lv", "myo", "la", "rv", "ra"))
SIZE = 200
ROWS, COLS = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)


def ellipse(cy, cx, a, b, angle_deg=0.0):
    """Pixels inside an ellipse: semi-axis ``a`` along the image rows (rotated by ``angle_deg``), ``b`` across."""
    angle = np.deg2rad(angle_deg)
    dy, dx = ROWS - cy, COLS - cx
    along = dy * np.cos(angle) + dx * np.sin(angle)
    across = -dy * np.sin(angle) + dx * np.cos(angle)
    return (along / a) ** 2 + (across / b) ** 2 <= 1.0


def crescent(cy, cx, scale, size=30.0):
    """A crescent (a disk of radius ``size`` minus an overlapping, offset disk) whose every length
    is scaled by ``scale``: its area scales by ``scale²``."""
    inner, offset = size * 26 / 30 * scale, size * 14 / 30 * scale
    return ellipse(cy, cx, size * scale, size * scale) & ~ellipse(cy, cx + offset, inner, inner)


def frames_of(*frames):
    return np.stack(frames).astype(np.uint8)


# -- measurements on analytic shapes --------------------------------------------------------
@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_la_volume_is_area_length_of_the_drawn_ellipse_and_close_to_the_ellipsoid(angle):
    a, b = 32.4, 20.3  # not whole pixels: an ellipse whose vertices fall on pixel centres is a pixel long
    frame = np.zeros((SIZE, SIZE), np.uint8)
    frame[ellipse(100, 100, a, b, angle)] = LA
    row = chamber_measurements(frames_of(frame, frame, frame))
    # The long axis is the principal axis (a tilted bounding box would give a different length).
    assert long_axis_length(frame == LA) == pytest.approx(2 * a, abs=1.5)
    area_length = 0.85 * (np.pi * a * b) ** 2 / (2 * a)
    assert row["la_volume_max"] == pytest.approx(area_length, rel=0.04)  # a pixel of 65 in L, 1 % in A
    # 0.85 A²/L is the prolate ellipsoid's volume to the rounding of 8/(3π) (0.14 %) plus pixels.
    assert row["la_volume_max"] == pytest.approx(4 / 3 * np.pi * a * b**2, rel=0.04)
    spaced = chamber_measurements(frames_of(frame, frame, frame), mm_per_pixel=0.5)
    assert spaced["la_volume_max"] == pytest.approx(row["la_volume_max"] * 0.05**3, rel=1e-12)  # px³ -> mL
    assert np.isnan(row["rv_fac"]) and np.isnan(row["lv_mass"])  # chambers not drawn are not measured


def test_lv_volume_is_the_method_of_disks_of_the_ellipsoid():
    a, b = 40.0, 20.0
    frame = np.zeros((SIZE, SIZE), np.uint8)
    frame[ellipse(100, 100, a, b)] = LV
    row = chamber_measurements(frames_of(frame, frame, frame))
    assert row["lv_edv"] == pytest.approx(4 / 3 * np.pi * a * b**2, rel=0.03)
    assert row["lv_eda"] == pytest.approx(np.pi * a * b, rel=0.01)
    assert "fallback" in row["ed_es_rule"] and row["beats"] == 0  # a still video has no beat


def ring_frame(a_cavity, b_cavity, wall):
    frame = np.zeros((SIZE, SIZE), np.uint8)
    frame[ellipse(100, 100, a_cavity + wall, b_cavity + wall)] = MYO
    frame[ellipse(100, 100, a_cavity, b_cavity)] = LV
    return frame


def test_lv_mass_of_an_elliptical_ring_matches_the_formula_on_the_analytic_areas():
    a, b, wall = 40.0, 20.0, 6.0
    frame = ring_frame(a, b, wall)
    row = chamber_measurements(frames_of(frame, frame, frame))
    outer, inner, length = np.pi * (a + wall) * (b + wall), np.pi * a * b, 2 * a
    thickness = np.sqrt(outer / np.pi) - np.sqrt(inner / np.pi)
    by_hand = 1.05 * 5 / 6 * (outer * (length + thickness) - inner * length)
    assert float(area_length_lv_mass(outer, inner, length)) == pytest.approx(by_hand, rel=1e-12)
    assert row["lv_mass"] == pytest.approx(by_hand, rel=0.05)
    # Myocardium alone as A1 (a plausible slip) would give a negative or far smaller mass.
    assert float(area_length_lv_mass(outer - inner, inner, length)) != pytest.approx(row["lv_mass"], rel=0.5)
    # Mass is a volume: it scales with the cube of the pixel spacing (px³ -> cm³ -> g).
    at_1mm = chamber_measurements(frames_of(frame, frame, frame), mm_per_pixel=1.0)["lv_mass"]
    at_2mm = chamber_measurements(frames_of(frame, frame, frame), mm_per_pixel=2.0)["lv_mass"]
    assert at_2mm / at_1mm == pytest.approx(8.0, rel=1e-12)
    assert at_1mm == pytest.approx(row["lv_mass"] * 1e-3, rel=1e-12)


def test_rv_fac_of_a_shrinking_crescent_uses_its_smallest_area_and_skips_a_dropout():
    lv = ellipse(100, 170, 40, 20)  # constant LV: no beat, the whole video is one window
    scales = [1.0, 0.95, 0.9, None, 0.85, 0.8, 0.82]  # None: the RV drops out for a frame
    frames = []
    for scale in scales:
        frame = np.zeros((SIZE, SIZE), np.uint8)
        frame[lv] = LV
        if scale is not None:
            frame[crescent(100, 65, scale, size=55.0)] = RV
        frames.append(frame)
    labels = frames_of(*frames)
    row = chamber_measurements(labels)
    counts = [(f == RV).sum() for f in labels]
    assert row["rv_eda"] == counts[0]
    assert row["rv_esa"] == min(c for c in counts if c > 0)  # the smallest area, not the dropout's 0
    assert row["rv_fac"] == pytest.approx(100.0 * (counts[0] - row["rv_esa"]) / counts[0], rel=1e-12)
    assert row["rv_fac"] == pytest.approx(100.0 * (1 - 0.8**2), abs=1.0)  # the area shrinks by 1 - s²
    assert row["rv_lv_area_ratio"] == pytest.approx(counts[0] / (labels[0] == LV).sum(), rel=1e-12)


# -- per-beat values on a synthetic multi-beat sequence ------------------------------------
PERIOD, FIRST_ED, FRAMES, FPS = 40, 10, 170, 50.0
LA_PEAKS = (26.0, 30.0, 34.0, 28.0)  # LA semi-major axis at each beat's end-systole
LA_MIN = 22.0


def phase(t, lag=0.0):
    """0 at LV end-diastole, 1 at end-systole (a cosine heartbeat)."""
    return (1 - np.cos(2 * np.pi * (t - FIRST_ED - lag) / PERIOD)) / 2


def la_axes(t):
    beat = int(np.clip((t - FIRST_ED) // PERIOD, 0, len(LA_PEAKS) - 1))
    a = LA_MIN + (LA_PEAKS[beat] - LA_MIN) * phase(t)
    return a, 0.65 * a


def ra_axes(t):
    a = 24.0 * (0.85 + 0.15 * phase(t, lag=2))
    return a, 0.65 * a


def heart(t, glitch=None):
    """One A4C frame: LV cavity and myocardium (right), LA below it, RV crescent (left), RA below it."""
    c = phase(t)
    frame = np.zeros((SIZE, SIZE), np.uint8)
    a, b = 40 * (1 - 0.08 * c), 20 * (1 - 0.2 * c)
    frame[ellipse(65, 130, a + 6, b + 6)] = MYO
    frame[ellipse(65, 130, a, b)] = LV
    if glitch != "la_dropout":
        frame[ellipse(150, 130, *la_axes(t))] = LA
    frame[crescent(70, 60, 1 - 0.25 * phase(t, lag=3))] = RV
    frame[ellipse(150, 55, *ra_axes(t))] = RA
    if glitch == "la_spike":
        frame[:12, :] = LA  # a one-frame blob: far outside what a heart can do in a frame
    return frame


@pytest.fixture(scope="module")
def beating():
    return frames_of(*(heart(t) for t in range(FRAMES)))


def la_volume(a, b):
    return 0.85 * (np.pi * a * b) ** 2 / (2 * a)


def test_per_beat_la_maxima_mean_and_sd_on_a_three_plus_beat_sequence(beating):
    row = chamber_measurements(beating, fps=FPS)
    assert row["ed_es_rule"] == "beats" and row["beats"] == len(LA_PEAKS)
    pairs = [tuple(int(v) for v in pair.split("-")) for pair in row["beat_frames"].split()]
    for i, (ed, es) in enumerate(pairs):
        assert abs(ed - (FIRST_ED + i * PERIOD)) <= 2 and abs(es - (FIRST_ED + i * PERIOD + PERIOD // 2)) <= 2
    expected = np.array([la_volume(a, 0.65 * a) for a in LA_PEAKS])
    np.testing.assert_allclose(beat_values(row, "la_volume_max"), expected, rtol=0.04)
    assert row["la_volume_max"] == pytest.approx(expected.mean(), rel=0.03)
    assert row["la_volume_max_sd"] == pytest.approx(np.std(expected, ddof=1), rel=0.08)
    # EF of an ellipsoid whose long axis shortens 8 % and short axis 20 %: 1 - 0.92 · 0.8².
    np.testing.assert_allclose(beat_values(row, "lv_ef"), 100 * (1 - 0.92 * 0.8**2), atol=2.0)
    assert row["lv_ef_sd"] < 1.0


def test_per_beat_rv_ra_and_mass_on_the_beating_sequence(beating):
    row = chamber_measurements(beating, mm_per_pixel=2.0, fps=FPS)
    pairs = [tuple(int(v) for v in pair.split("-")) for pair in row["beat_frames"].split()]
    eds = [ed for ed, _ in pairs]
    # RA maximal area: the largest RA of each beat (2 mm/pixel: 0.04 cm² per pixel).
    ra_counts = (beating == RA).sum(axis=(1, 2))
    stops = eds[1:] + [FRAMES]
    np.testing.assert_allclose(beat_values(row, "ra_area_max"), [ra_counts[s:e].max() * 0.04 for s, e in zip(eds, stops)], rtol=1e-5)
    np.testing.assert_allclose(beat_values(row, "ra_area_max"), np.pi * 24.0 * 0.65 * 24.0 * 0.04, rtol=0.02)
    # RV: EDA at the LV's ED frame, ESA the smallest of the beat (it lags the LV by 3 frames).
    rv_counts = (beating == RV).sum(axis=(1, 2))
    np.testing.assert_allclose(beat_values(row, "rv_eda"), rv_counts[eds] * 0.04, rtol=1e-5)
    np.testing.assert_allclose(beat_values(row, "rv_esa"), [rv_counts[s:e].min() * 0.04 for s, e in zip(eds, stops)], rtol=1e-5)
    s_at_ed = 1 - 0.25 * phase(np.array(eds), lag=3)
    np.testing.assert_allclose(beat_values(row, "rv_fac"), 100 * (1 - 0.75**2 / s_at_ed**2), atol=1.5)
    # LV mass at ED, in grams: the ring's formula at 0.2 cm per pixel.
    outer, inner, length = np.pi * 46 * 26 * 0.04, np.pi * 40 * 20 * 0.04, 80 * 0.2
    np.testing.assert_allclose(beat_values(row, "lv_mass"), float(area_length_lv_mass(outer, inner, length)), rtol=0.05)


def test_glitch_frames_are_neither_maximum_nor_minimum(beating):
    clean = chamber_measurements(beating, fps=FPS)
    hurt = beating.copy()
    hurt[60] = heart(60, glitch="la_spike")  # mid-beat 2: a huge one-frame LA
    hurt[75] = heart(75, glitch="la_dropout")
    row = chamber_measurements(hurt, fps=FPS)
    np.testing.assert_allclose(beat_values(row, "la_volume_max"), beat_values(clean, "la_volume_max"), rtol=1e-9)


def test_measurements_row_and_input_errors():
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        chamber_measurements(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="0..5"):
        chamber_measurements(np.full((2, 8, 8), 7, np.uint8))
    with pytest.raises(ValueError, match="mm_per_pixel"):
        chamber_measurements(np.zeros((2, 8, 8), np.uint8), mm_per_pixel=0.0)
    empty = chamber_measurements(np.zeros((3, 8, 8), np.uint8))
    assert np.isnan(empty["lv_ef"]) and empty["beat_frames"] == ""


# -- flags on both sides of each threshold ------------------------------------------------
def physical(**values):
    """A measurement row in physical units (as measured with a 1 mm pixel spacing)."""
    return {"mm_per_pixel": 1.0, **values}


BSA = 2.0
# (flag, measurement, value in the threshold's unit, indexed, sex, abnormal?)
CASES = [
    ("lv_systolic_function_reduced", "lv_ef", 51.9, False, "male", True),
    ("lv_systolic_function_reduced", "lv_ef", 52.1, False, "male", False),
    ("lv_systolic_function_reduced", "lv_ef", 53.9, False, "female", True),
    ("lv_systolic_function_reduced", "lv_ef", 54.1, False, "female", False),
    ("lv_systolic_function_reduced", "lv_ef", 53.0, False, None, False),  # sex unknown: 52 %
    ("lv_systolic_function_reduced", "lv_ef", 51.9, False, None, True),
    ("lv_dilated", "lv_edv", 74.1, True, "male", True),
    ("lv_dilated", "lv_edv", 73.9, True, "male", False),
    ("lv_dilated", "lv_edv", 61.1, True, "female", True),
    ("lv_dilated", "lv_edv", 60.9, True, "female", False),
    ("lv_dilated", "lv_edv", 150.1, False, "male", True),
    ("lv_dilated", "lv_edv", 149.9, False, "male", False),
    ("lv_dilated", "lv_edv", 106.1, False, "female", True),
    ("lv_dilated", "lv_edv", 105.9, False, "female", False),
    ("la_enlarged", "la_volume_max", 34.1, True, "female", True),
    ("la_enlarged", "la_volume_max", 33.9, True, "male", False),
    ("rv_dilated", "rv_eda", 12.7, True, "male", True),
    ("rv_dilated", "rv_eda", 12.5, True, "male", False),
    ("rv_dilated", "rv_eda", 11.6, True, "female", True),
    ("rv_dilated", "rv_eda", 11.4, True, "female", False),
    ("rv_dilated", "rv_eda", 24.1, False, "male", True),
    ("rv_dilated", "rv_eda", 23.9, False, "male", False),
    ("rv_dilated", "rv_eda", 20.1, False, "female", True),
    ("rv_dilated", "rv_eda", 19.9, False, "female", False),
    ("rv_larger_than_lv", "rv_lv_area_ratio", 1.01, False, None, True),
    ("rv_larger_than_lv", "rv_lv_area_ratio", 0.99, False, None, False),
    ("rv_systolic_function_reduced", "rv_fac", 34.9, False, "male", True),
    ("rv_systolic_function_reduced", "rv_fac", 35.1, False, "female", False),
    ("ra_enlarged", "ra_area_max", 18.1, False, "male", True),
    ("ra_enlarged", "ra_area_max", 17.9, False, "female", False),
    ("lv_hypertrophy", "lv_mass", 102.1, True, "male", True),
    ("lv_hypertrophy", "lv_mass", 101.9, True, "male", False),
    ("lv_hypertrophy", "lv_mass", 88.1, True, "female", True),
    ("lv_hypertrophy", "lv_mass", 87.9, True, "female", False),
]


@pytest.mark.parametrize("flag, measurement, value, indexed, sex, abnormal", CASES)
def test_each_flag_on_both_sides_of_its_threshold(flag, measurement, value, indexed, sex, abnormal):
    bsa = BSA if indexed else None
    row = physical(**{measurement: value * BSA if indexed else value})
    assert chamber_flags(row, bsa_m2=bsa, sex=sex)[flag] is abnormal
    assert chamber_flag_reasons(row, bsa_m2=bsa, sex=sex)[flag].startswith(f"{measurement}/BSA" if indexed else measurement)


def test_every_flag_is_tested_on_both_sides():
    tested = {(flag, indexed, abnormal) for flag, _, _, indexed, _, abnormal in CASES}
    for row in FLAG_THRESHOLDS:
        assert (row.flag, row.indexed, True) in tested and (row.flag, row.indexed, False) in tested, row


def test_without_spacing_only_scale_free_flags_are_decided():
    pixels = {"mm_per_pixel": float("nan"), "lv_ef": 40.0, "rv_fac": 30.0, "rv_lv_area_ratio": 1.2, "lv_edv": 9e5,
              "la_volume_max": 9e5, "rv_eda": 9e3, "ra_area_max": 9e3, "lv_mass": 9e5}
    flags, reasons = chamber_flags(pixels, bsa_m2=BSA, sex="male"), chamber_flag_reasons(pixels, bsa_m2=BSA, sex="male")
    assert set(flags) == set(FLAGS)
    assert flags["lv_systolic_function_reduced"] is True and flags["rv_systolic_function_reduced"] is True
    assert flags["rv_larger_than_lv"] is True
    for flag in ("lv_dilated", "la_enlarged", "rv_dilated", "ra_enlarged", "lv_hypertrophy"):
        assert flags[flag] is None and NEEDS_SPACING in reasons[flag]
    # No BSA either: indexed-only flags say both.
    reasons = chamber_flag_reasons(pixels)
    assert NEEDS_SPACING in reasons["la_enlarged"] and NEEDS_BSA in reasons["la_enlarged"]


def test_indexed_only_flags_need_bsa_and_absolute_ones_fall_back():
    row = physical(lv_edv=160.0, la_volume_max=120.0, lv_mass=300.0, rv_eda=30.0)
    flags, reasons = chamber_flags(row, sex="male"), chamber_flag_reasons(row, sex="male")
    assert flags["la_enlarged"] is None and reasons["la_enlarged"] == NEEDS_BSA
    assert flags["lv_hypertrophy"] is None and reasons["lv_hypertrophy"] == NEEDS_BSA
    assert flags["lv_dilated"] is True and flags["rv_dilated"] is True  # absolute limits without BSA
    assert flags["rv_systolic_function_reduced"] is None and "no rv_fac" in reasons["rv_systolic_function_reduced"]


def test_a_pixel_row_is_converted_by_the_spacing_given_to_the_flags():
    pixels = {"mm_per_pixel": float("nan"), "ra_area_max": 451.0}  # 451 px² at 2 mm = 18.04 cm²
    assert chamber_flags(pixels, mm_per_pixel=2.0)["ra_enlarged"] is True
    assert chamber_flags({**pixels, "ra_area_max": 449.0}, mm_per_pixel=2.0)["ra_enlarged"] is False
    with pytest.raises(ValueError, match="contradicts"):
        chamber_flags(physical(ra_area_max=18.0), mm_per_pixel=2.0)
    with pytest.raises(ValueError, match="sex"):
        chamber_flags(physical(), sex="x")
    with pytest.raises(ValueError, match="bsa_m2"):
        chamber_flags(physical(), bsa_m2=0.0)


def test_flags_from_measured_masks_end_to_end(beating):
    row = chamber_measurements(beating, fps=FPS)
    flags = chamber_flags(row, sex="female")
    assert flags["lv_systolic_function_reduced"] is True  # EF about 41 %
    assert flags["rv_systolic_function_reduced"] is False  # FAC about 42 %
    assert flags["rv_larger_than_lv"] is False
    assert flags["lv_dilated"] is None and flags["ra_enlarged"] is None  # EchoNet-like: no pixel spacing


def test_docs_page_shows_the_threshold_table():
    page = (Path(__file__).resolve().parents[1] / "docs" / "chambers.md").read_text(encoding="utf-8")
    assert "\n".join(flag_thresholds_markdown()) in page


# -- agreement ------------------------------------------------------------------------------
def test_flag_agreement_on_a_hand_made_confusion_table():
    truth = np.array([True] * 4 + [False] * 6)
    predicted = np.array([True, True, True, False, True, False, False, False, False, False])
    result = flag_agreement(predicted, truth, samples=2000, rng=np.random.default_rng(0))
    assert (result["true_positives"], result["false_negatives"], result["true_negatives"], result["false_positives"]) == (3, 1, 5, 1)
    assert result["sensitivity"] == pytest.approx(3 / 4)
    assert result["specificity"] == pytest.approx(5 / 6)
    assert result["balanced_accuracy"] == pytest.approx((3 / 4 + 5 / 6) / 2)
    for name in ("sensitivity", "specificity", "balanced_accuracy"):
        assert result[f"{name}_low"] <= result[name] <= result[f"{name}_high"]
    assert result["samples"] == 2000


def test_a_constant_normal_prediction_scores_balanced_accuracy_one_half():
    truth = np.array([True] * 3 + [False] * 27)
    result = flag_agreement(np.zeros(30, bool), truth, samples=500, rng=np.random.default_rng(1))
    assert result["sensitivity"] == 0.0 and result["specificity"] == 1.0
    assert result["balanced_accuracy"] == 0.5  # its plain accuracy would be 0.9
    assert result["balanced_accuracy_low"] == result["balanced_accuracy_high"] == 0.5


def test_resamples_without_a_positive_are_counted_not_dropped_silently():
    truth = np.array([True, False, False])  # a resample misses the one positive with p = (2/3)³
    result = flag_agreement(np.array([True, False, True]), truth, samples=4000, rng=np.random.default_rng(2))
    assert result["no_positive_share"] == pytest.approx((2 / 3) ** 3, abs=0.025)
    assert result["no_positive_resamples"] == round(result["no_positive_share"] * 4000)
    assert result["undefined_share"] >= result["no_positive_share"]
    assert np.isfinite(result["sensitivity_low"])
    with pytest.raises(ValueError, match="None"):
        flag_agreement(np.array([True, None, False], dtype=object), truth)
    with pytest.raises(ValueError, match="equally many"):
        flag_agreement(np.array([True, False]), truth)


def test_measurement_agreement_by_hand_and_nan_pairs_counted():
    reference = np.array([10.0, 20.0, 30.0, 40.0, np.nan])
    predicted = np.array([11.0, 19.0, 32.0, 40.0, 25.0])
    result = measurement_agreement(predicted, reference, samples=300, rng=np.random.default_rng(3))
    error = np.array([1.0, -1.0, 2.0, 0.0])
    assert result["n"] == 4 and result["left_out"] == 1
    assert result["mae"] == pytest.approx(1.0) and result["bias"] == pytest.approx(0.5)
    assert result["r"] == pytest.approx(np.corrcoef(predicted[:4], reference[:4])[0, 1])
    assert result["loa_low"] == pytest.approx(0.5 - 1.96 * np.std(error, ddof=1))
    assert result["loa_high"] == pytest.approx(0.5 + 1.96 * np.std(error, ddof=1))


def test_plausibility_of_a_drawn_a4c_heart(beating):
    """Atria below their ventricles, the right heart on one side, the LA filling while the LV
    empties: every check holds on the drawn heart."""
    row = chamber_plausibility(beating)
    assert list(row) == list(PLAUSIBILITY_FIELDS)
    assert all(row[f"{name}_present"] == 1.0 for name in ("lv", "myo", "la", "rv", "ra"))
    assert row["la_basal_to_lv"] == 1.0 and row["ra_basal_to_rv"] == 1.0 and row["right_heart_one_side"] == 1.0
    assert row["la_lv_area_r"] < -0.8  # the drawn LA peaks at the LV's end-systole
    assert row["lv_fill_at_la_max"] < 0.1
    lv_area = (beating == LV).sum(axis=(1, 2))
    la_area = (beating == LA).sum(axis=(1, 2))
    assert row["la_to_lv_area"] == pytest.approx(np.median(la_area / lv_area))


def test_plausibility_catches_an_upside_down_heart_a_swapped_atrium_and_a_missing_rv(beating):
    flipped = chamber_plausibility(beating[:, ::-1, :])  # atria towards the fan apex
    assert flipped["la_basal_to_lv"] == 0.0 and flipped["ra_basal_to_rv"] == 0.0
    swapped = beating.copy()
    swapped[beating == RA], swapped[beating == LA] = LA, RA  # each atrium under the other heart
    assert chamber_plausibility(swapped)["right_heart_one_side"] == 0.0
    no_rv = np.where(beating == RV, 0, beating).astype(beating.dtype)
    row = chamber_plausibility(no_rv)
    assert row["rv_present"] == 0.0 and np.isnan(row["right_heart_one_side"]) and np.isnan(row["ra_basal_to_rv"])
    with pytest.raises(ValueError, match="shape"):
        chamber_plausibility(beating[0])
