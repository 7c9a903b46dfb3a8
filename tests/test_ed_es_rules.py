"""ED/ES rules of unilvseg.evaluation.volumes on curves whose beats are known by construction.

The synthetic area curve is written here from its own cardiac-cycle model (not the phantom's
code): a cosine-eased systole, rapid filling, diastasis and an atrial kick. ED is the phase-0
frame of each beat and ES the end of systole, so the true frames come from the model itself.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from unilvseg.evaluation.volumes import (
    ED_ES_RULES,
    choose_ed_es,
    find_beats,
    glitch_frames,
    heart_period,
    method_of_disks,
    volume_fields,
    volumes_by_rule,
    volumes_from_masks,
)


def cycle_contraction(phase, systole=0.35):
    """0 at ED, 1 at ES: eased systole, then 80 % of the refill in the first 40 % of diastole,
    diastasis, and the last 20 % in the atrial kick at the end of the beat."""
    phase = np.asarray(phase, dtype=np.float64)
    ease = lambda x: 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))  # noqa: E731
    diastole = (phase - systole) / (1.0 - systole)
    refilled = 0.8 * ease(diastole / 0.4) + 0.2 * ease((diastole - 0.8) / 0.2)
    return np.where(phase <= systole, ease(phase / systole), 1.0 - refilled)


def area_curve(ed_times, n_frames, fps=50.0, ed_area=1500.0, change=0.35, systole_s=0.3):
    """Area per frame for beats starting (ED) at ``ed_times`` (seconds; each beat lasts until the
    next ED, the last one as long as the one before). Returns (areas, true beats [(ED, ES)])
    where true beats are those whose ED lies inside the video and after whose ES the video
    goes on for at least half the diastole (by then 80 % of the refill is done). Tests choose
    lengths that end a video well away from that boundary."""
    t = np.arange(n_frames) / fps
    ed_times = np.asarray(ed_times, dtype=np.float64)
    lengths = np.append(np.diff(ed_times), ed_times[-1] - ed_times[-2])
    index = np.clip(np.searchsorted(ed_times, t, side="right") - 1, 0, len(ed_times) - 1)
    phase = (t - ed_times[index]) / lengths[index]
    # Before the first listed ED the curve continues the first beat's shape backwards.
    phase = np.where(t < ed_times[0], 1.0 + (t - ed_times[0]) / lengths[0], phase)
    systole = systole_s / lengths[index]
    areas = ed_area * (1.0 - change * cycle_contraction(phase, systole))
    end = (n_frames - 1) / fps
    beats = [
        (int(round(e * fps)), int(round((e + systole_s) * fps)))
        for e, length in zip(ed_times, lengths)
        if 0 < round(e * fps) and e + systole_s + 0.5 * (length - systole_s) <= end
    ]
    return areas, beats


def assert_beats_match(found, expected, tolerance):
    assert len(found) == len(expected), f"found {found}, expected {expected}"
    for (ed, es), (true_ed, true_es) in zip(found, expected):
        assert abs(ed - true_ed) <= tolerance and abs(es - true_es) <= tolerance, f"found {found}, expected {expected}"


def test_clean_regular_beats_are_found_exactly():
    # 75 bpm at 50 fps: beats of 40 frames, EDs at 10, 50, 90, 130, 170; 200 frames.
    areas, expected = area_curve([0.2, 1.0, 1.8, 2.6, 3.4], 200)
    search = find_beats(areas, fps=50)
    assert search.period == pytest.approx(40, abs=1)
    # The last beat's ES (frame 185) is followed by a full refill: complete. All five count.
    assert_beats_match(search.beats, expected, tolerance=1)


def test_partial_first_and_last_beats_are_left_out():
    # The video starts in mid-systole (ED of that beat at -0.1 s) and ends in mid-systole.
    ed_times = [-0.1, 0.7, 1.5, 2.3, 3.1]
    areas, _ = area_curve(ed_times, 168)  # frame 167 = 3.34 s: 0.24 s into the last systole
    search = find_beats(areas, fps=50)
    # Only the beats at 0.7, 1.5 and 2.3 s are whole: (35, 50), (75, 90), (115, 130).
    assert_beats_match(search.beats, [(35, 50), (75, 90), (115, 130)], tolerance=1)


def test_noise_and_a_missed_gain_frame():
    rng = np.random.default_rng(3)
    ed_times = [-0.25, 0.62, 1.49, 2.36, 3.23]  # 69 bpm, starts in late systole
    areas, expected = area_curve(ed_times, 200)
    noisy = areas * (1.0 + 0.015 * rng.standard_normal(areas.size))
    dropout = expected[1][1]  # the second beat's true ES frame goes almost empty
    noisy[dropout] = 0.02 * areas[dropout]
    assert glitch_frames(noisy, 50)[dropout] and glitch_frames(noisy, 50).sum() <= 3
    search = find_beats(noisy, fps=50)
    assert_beats_match(search.beats, expected, tolerance=3)
    assert all(dropout not in beat for beat in search.beats)
    # The whole-video extremes ignore the dropout too.
    (ed, es), = choose_ed_es(noisy, noisy, "extremes", fps=50).beats
    assert es != dropout and noisy[es] > 0.5 * areas.min()


def test_irregular_rhythm_alternating_short_and_long_beats():
    # RR alternating 0.7 s and 1.1 s: the autocorrelation repeats every two beats (1.8 s), yet
    # each beat is found.
    ed_times = np.cumsum([0.2, 0.7, 1.1, 0.7, 1.1, 0.7])
    areas, expected = area_curve(ed_times, 262)
    search = find_beats(areas, fps=50)
    assert_beats_match(search.beats, expected, tolerance=1)


@pytest.mark.parametrize("fps,bpm", [(30.0, 150.0), (50.0, 45.0), (100.0, 110.0)])
def test_other_frame_rates_and_heart_rates(fps, bpm):
    period = 60.0 / bpm
    ed_times = 0.15 + period * np.arange(6)
    n_frames = int((ed_times[-1] + 0.9 * period) * fps)
    areas, expected = area_curve(ed_times, n_frames, fps=fps, systole_s=0.35 * period)
    assert heart_period(areas, fps) == pytest.approx(period * fps, rel=0.04)
    assert_beats_match(find_beats(areas, fps=fps).beats, expected, tolerance=1)


def test_no_regular_period_falls_back_to_extremes_and_says_so():
    ramp = np.linspace(1000.0, 1400.0, 120)  # no heartbeat in it
    choice = choose_ed_es(ramp, ramp, "beats", fps=50)
    assert choice.rule == "extremes (fallback: no regular heart period)"
    assert choice.beats == [(119, 0)]
    short = area_curve([0.1, 0.5], 30)[0]  # shorter than two of its own beats
    assert choose_ed_es(short, short, "beats", fps=50).rule.startswith("extremes (fallback")
    with pytest.raises(ValueError, match="unknown ED/ES rule"):
        choose_ed_es(ramp, ramp, "largest")


def _lv_masks(long_radius, short_radius, size=112):
    """Ellipse masks (T, H, W), one per frame, axis-aligned and centred."""
    y, x = np.mgrid[:size, :size].astype(np.float64)
    return (((x - 56.2) / short_radius[:, None, None]) ** 2 + ((y - 55.7) / long_radius[:, None, None]) ** 2 <= 1).astype(np.uint8)


def test_ef_is_the_mean_of_the_beats_with_their_sd():
    # Three whole beats with different contraction: per-beat EF = 1 - (ESV/EDV) of ellipsoids
    # (V ~ long * short^2), which the method of disks reproduces within about a point.
    fps, ed_times = 50.0, [0.1, 0.9, 1.7, 2.5]
    t = np.arange(int(2.6 * fps)) / fps  # ends 0.1 s into the fourth beat's systole
    index = np.clip(np.searchsorted(ed_times, t, side="right") - 1, 0, 3)
    phase = (t - np.asarray(ed_times)[index]) / 0.8
    phase = np.where(t < ed_times[0], 1.0 + (t - ed_times[0]) / 0.8, phase)
    shortening = np.array([0.30, 0.20, 0.25, 0.25])[index]  # short-axis fall of each beat
    contraction = cycle_contraction(phase)
    long_radius = 38.0 * (1.0 - 0.1 * contraction)
    short_radius = 16.0 * (1.0 - shortening * contraction)
    masks = _lv_masks(long_radius, short_radius)
    result = volumes_from_masks(masks, fps=fps)
    assert result["rule"] == "beats" and result["beats"] == 3
    analytic = [100 * (1 - 0.9 * (1 - s) ** 2) for s in (0.30, 0.20, 0.25)]
    np.testing.assert_allclose(result["beat_efs"], analytic, atol=1.5)
    assert result["ef"] == pytest.approx(np.mean(result["beat_efs"]))
    assert result["ef_sd"] == pytest.approx(np.std(result["beat_efs"], ddof=1))
    assert result["heart_rate_bpm"] == pytest.approx(75, abs=2)
    ed, es = result["ed_frame"], result["es_frame"]
    assert (ed, es) in result["beat_frames"]
    chosen = result["beat_frames"].index((ed, es))
    assert abs(result["beat_efs"][chosen] - result["ef"]) == pytest.approx(min(abs(np.array(result["beat_efs"]) - result["ef"])))
    assert result["edv"] == pytest.approx(np.mean([method_of_disks(masks[e]) for e, _ in result["beat_frames"]]))
    row = volume_fields(result)
    assert row["EFRule"] == "beats" and row["Beats"] == 3 and len(row["BeatEFs"].split()) == 3
    assert row["BeatFrames"].split()[0] == "{}-{}".format(*result["beat_frames"][0])
    # Every named rule runs and records its name.
    assert {volumes_from_masks(masks, rule=r, fps=fps)["rule"] for r in ED_ES_RULES} == set(ED_ES_RULES)


def test_phantom_dense_truth_ef_within_3_points_of_filelist(tmp_path_factory):
    """The phantom's EF comes from its own tracings (chords at its ED/ES); the rules only see
    the dense masks."""
    from unilvseg.data.phantom import generate_phantom

    root = generate_phantom(tmp_path_factory.mktemp("phantom-ef") / "echonet", videos=10, seed=7, min_frames=90, max_frames=220)
    table = pd.read_csv(root / "FileList.csv")
    used = []
    for row in table.itertuples():
        with np.load(root / "ReferenceMasks" / f"{row.FileName}.npz") as archive:
            masks = archive["masks"]
        for rule in ("beats", "extremes"):
            result = volumes_from_masks(masks, rule=rule, fps=row.FPS)
            assert abs(result["ef"] - row.EF) <= 3.0, (row.FileName, rule, result["ef"], row.EF)
            if rule == "beats":
                used.append(result["rule"])
    # The beat finder itself (not its fallback) scored most of these 90-220-frame videos.
    assert used.count("beats") >= 0.7 * len(used), used


def test_a_dip_in_diastasis_is_not_a_beat():
    """Real masks wobble in diastasis. A dip of 15 % of the beat's amplitude there made the
    earlier rule (volume_peaks) count each wiggle as a beat of EF 8 % and report one of them;
    the beat finder keeps the five real beats."""
    from unilvseg.evaluation.volumes import ed_es_volumes

    fps, length = 50.0, 0.85
    ed_times = 0.3 + length * np.arange(5)
    areas, expected = area_curve(ed_times, 220, fps=fps)
    phase = ((np.arange(220) / fps - 0.3) / length) % 1.0
    dip = -0.15 * np.ptp(areas) * np.exp(-0.5 * ((phase - 0.72) / 0.04) ** 2)
    wobbly = areas + dip
    volumes = (wobbly / 1500.0) ** 1.5  # volume grows as area^1.5 for similar shapes
    true_ef = 100 * (1 - (areas.min() / areas.max()) ** 1.5)
    beats = ed_es_volumes(wobbly, volumes, "beats", fps)
    assert_beats_match(beats["beat_frames"], expected, tolerance=1)
    assert beats["ef"] == pytest.approx(true_ef, abs=0.5)
    old = ed_es_volumes(wobbly, volumes, "volume_peaks", fps)
    assert len(old["beat_frames"]) == 2 * len(expected) and old["ef"] < true_ef - 30


def test_volume_fields_writes_each_column_by_hand():
    result = {"edv": 80.5, "esv": 30.25, "ef": 62.4, "ed_frame": 12, "es_frame": 27, "ef_sd": 1.5, "beats": 2,
              "rule": "beats", "beat_efs": [61.234, 63.5], "beat_frames": [(12, 27), (52, 67)]}
    assert volume_fields(result) == {
        "EDV": 80.5, "ESV": 30.25, "EF": 62.4, "EDFrame": 12, "ESFrame": 27, "EFSD": 1.5, "Beats": 2,
        "EFRule": "beats", "BeatEFs": "61.23 63.50", "BeatFrames": "12-27 52-67",
    }
    # A single (ED, ES) pair from the extremes rule is not a beat list: the beat columns stay empty.
    single = {**result, "beats": 0, "rule": "extremes", "beat_efs": [62.4], "beat_frames": [(12, 27)]}
    row = volume_fields(single)
    assert (row["Beats"], row["BeatEFs"], row["BeatFrames"]) == (0, "", "")


def test_volumes_by_rule_equals_volumes_from_masks_with_the_same_settings():
    fps, ed_times = 30.0, [0.1, 0.9, 1.7, 2.5, 3.3]
    areas, _ = area_curve(ed_times, int(3.4 * fps), fps=fps)
    short_radius = 16.0 * np.sqrt(areas / areas.max())
    masks = _lv_masks(38.0 * np.ones_like(short_radius), short_radius)
    by_rule = volumes_by_rule(masks, mm_per_pixel=0.7, disks=12, fps=fps)
    assert set(by_rule) == set(ED_ES_RULES)
    for rule, result in by_rule.items():
        alone = volumes_from_masks(masks, mm_per_pixel=0.7, disks=12, rule=rule, fps=fps)
        for key in ("edv", "esv", "ef", "heart_rate_bpm"):
            assert result[key] == pytest.approx(alone[key], nan_ok=True), (rule, key)
        # Frames and names are exact; pytest >= 8.4 refuses approx on nested sequences anyway.
        for key in ("ed_frame", "es_frame", "beat_frames", "rule"):
            assert result[key] == alone[key], (rule, key)
        assert result["areas"].dtype == np.int64 and np.array_equal(result["areas"], np.count_nonzero(masks, axis=(1, 2)))
        np.testing.assert_allclose(result["volumes"], [method_of_disks(m, 0.7, 12) for m in masks])
    # 75 bpm at 30 fps: a beat every 24 frames.
    assert by_rule["beats"]["heart_rate_bpm"] == pytest.approx(75, abs=2)
    with pytest.raises(ValueError, match=r"volumes_by_rule expects masks of shape \(T, H, W\), got \(112, 112\)"):
        volumes_by_rule(masks[0])
    with pytest.raises(ValueError, match=r"volumes_from_masks expects masks of shape \(T, H, W\), got \(112, 112\)"):
        volumes_from_masks(masks[0])


def test_volume_peaks_beats_on_hand_built_curves():
    from unilvseg.evaluation.volumes import beats_from_volumes

    # Peaks (ED) at 5, 45, 85; a prominent peak at 57 lies within 15 frames of the
    # higher one at 45 and is dropped; an empty frame (0) right after the first ES is never ES;
    # the last beat's trough (30) is lower than the others and its volume rises again after it.
    points = [(0, 90), (5, 100), (15, 40), (16, 0), (17, 44), (45, 100), (55, 40), (57, 95), (63, 40),
              (85, 100), (95, 30), (99, 80)]
    curve = np.interp(np.arange(100), *zip(*points))
    assert beats_from_volumes(curve) == [(5, 15), (45, 55), (85, 95)]
    # With a spacing of 2 frames: a bump of 2 (< 10 % of the 60 range) in the first systole is no
    # peak, and a peak 3 frames before the end whose volume rises by 10 after its ES is a beat.
    points = [(0, 90), (5, 100), (9, 76), (10, 78), (11, 64), (15, 40), (25, 100), (35, 40), (37, 100), (38, 40), (39, 50)]
    curve = np.interp(np.arange(40), *zip(*points))
    assert beats_from_volumes(curve, min_beat_frames=2) == [(5, 15), (25, 35), (37, 38)]


def test_heart_period_lag_range_and_flat_curve_limits():
    sine = lambda period, n, mean=1000.0, amplitude=300.0: mean + amplitude * np.sin(2 * np.pi * np.arange(n) / period)  # noqa: E731
    # At 50 fps lags of 15-100 frames (200-30 bpm) are searched.
    assert heart_period(sine(16, 200), 50) == pytest.approx(16, abs=0.3)  # 187.5 bpm, next to the fastest lag
    assert heart_period(sine(40, 200), 50) == pytest.approx(40, abs=0.3)
    assert np.isnan(heart_period(sine(101, 400), 50))  # 29.7 bpm: slower than 30 bpm
    assert heart_period(sine(10, 200), 50) >= 15  # 300 bpm is no heart rate: at best a multiple
    # Two periods must fit: 31 frames hold only 2 periods of 15.5, lags up to 31 // 2 = 15 = the lowest.
    assert np.isnan(heart_period(sine(15, 31), 50))
    # Variations of a millionth of the mean are numerical noise; relative to the mean, not absolute.
    assert np.isnan(heart_period(sine(40, 200, mean=1000.0, amplitude=1e-4), 50))
    assert heart_period(sine(40, 200, mean=1e-3, amplitude=1e-8), 50) == pytest.approx(40, abs=0.3)


@pytest.mark.parametrize("period", [40.3, 40.5, 39.75])
def test_heart_period_is_interpolated_between_lags(period):
    curve = 1000.0 + 300.0 * np.sin(2 * np.pi * np.arange(400) / period)
    assert heart_period(curve, 50) == pytest.approx(period, abs=0.1)


def test_find_beats_without_enough_frames_or_a_usable_fps():
    short = find_beats(np.array([1000.0, 1100.0]), fps=50)
    assert (short.beats, short.reason) == ([], "fewer than 3 usable frames")
    assert np.isnan(short.period) and np.isnan(short.sigma) and np.array_equal(short.glitches, [False, False])
    three = find_beats(np.array([1000.0, 1000.0, 1000.0]), fps=50)  # 3 frames are enough to look, too few for a period
    assert (three.beats, three.reason) == ([], "no regular heart period")
    # A missing or meaningless FPS means EchoNet's 50 fps.
    areas, expected = area_curve([0.2, 1.0, 1.8, 2.6, 3.4], 200)
    for fps in (None, 0, float("nan"), -30.0):
        assert find_beats(areas, fps=fps).beats == find_beats(areas, fps=50).beats


# -- Mutation-testing additions (issue 17): hand-built curves whose beats are known by construction.


def knot_curve(knots, n_frames):
    """Piecewise-linear curve through (frame, value) knots, held flat past the last one."""
    frames, values = zip(*knots)
    return np.interp(np.arange(n_frames), frames, values)


def plain_heart_period(curve, fps):
    """heart_period written out plainly: np.corrcoef at each lag of the linearly detrended curve,
    the first local maximum within 0.8 of the best, parabolic interpolation."""
    curve = np.asarray(curve, dtype=np.float64)
    n = curve.size
    low = max(2, int(np.floor(0.3 * fps)))
    high = min(int(np.ceil(2.0 * fps)), n // 2)
    t = np.arange(n)
    x = curve - np.polyval(np.polyfit(t, curve, 1), t)
    r = {lag: np.corrcoef(x[: n - lag], x[lag:])[0, 1] for lag in range(low - 1, high + 2)}
    peaks = [lag for lag in range(low, high + 1) if r[lag] >= r[lag - 1] and r[lag] > r[lag + 1]]
    best = max(r[lag] for lag in peaks)
    assert best >= 0.3
    first = next(lag for lag in peaks if r[lag] >= 0.8 * best)
    left, centre, right = r[first - 1], r[first], r[first + 1]
    return first + 0.5 * (left - right) / (left - 2 * centre + right)


def test_heart_period_equals_a_plain_loop_over_lags():
    rng = np.random.default_rng(17)
    t = np.arange(240)
    # Noise, a quadratic drift (linear detrending leaves part of it) and a non-integer period.
    drifting = 1000 + 0.004 * (t - 90) ** 2 + 250 * np.sin(2 * np.pi * t / 37.3) + 30 * rng.standard_normal(t.size)
    assert heart_period(drifting, 50) == pytest.approx(plain_heart_period(drifting, 50), abs=1e-9)
    assert heart_period(drifting, 50) == pytest.approx(37.3, abs=0.5)
    # Heavier noise: the best correlation is well below 0.8 and the fundamental is still the period.
    noisy = 1000 + 100 * np.sin(2 * np.pi * t / 29.6) + 90 * rng.standard_normal(t.size)
    assert heart_period(noisy, 50) == pytest.approx(plain_heart_period(noisy, 50), abs=1e-9)
    # The cardiac-cycle model at 30 fps with noise.
    areas, _ = area_curve(0.1 + 0.9 * np.arange(8), 210, fps=30.0)
    areas = areas * (1 + 0.02 * rng.standard_normal(areas.size))
    assert heart_period(areas, 30) == pytest.approx(plain_heart_period(areas, 30), abs=1e-9)
    assert heart_period(areas, 30) == pytest.approx(27, abs=1)


def test_heart_period_at_the_ends_of_the_lag_range():
    sine = lambda period, n: 1000.0 + 300.0 * np.sin(2 * np.pi * np.arange(n) / period)  # noqa: E731
    # At 50 fps the lags are 15 (0.3 s) to 100 (2 s) frames, both ends included.
    assert heart_period(sine(15, 200), 50) == pytest.approx(15, abs=0.1)
    assert heart_period(sine(100, 400), 50) == pytest.approx(100, abs=0.1)
    # At 66 fps the shortest lag is floor(0.3 * 66) = floor(19.8) = 19 frames.
    assert heart_period(sine(19, 300), 66) == pytest.approx(19, abs=0.1)
    # Below 10 fps the shortest lag is 2 frames: a curve alternating high and low beats every 2 frames.
    assert heart_period(np.tile([1000.0, 1300.0], 8), 6) == pytest.approx(2, abs=0.01)
    # 6 frames at 6 fps: lags up to 6 // 2 = 3, and lag 3 is a maximum against lag 4 (r = -1 over 2 frames).
    six = np.tile([1000.0, 1300.0, 1150.0], 2)
    assert heart_period(six, 6) == pytest.approx(plain_heart_period(six, 6), abs=1e-9)
    assert heart_period(six, 6) == pytest.approx(3, abs=0.5)


def test_heart_period_skips_a_falling_correlation_at_the_shortest_lag():
    # A slow swell under the beats keeps the correlation high (and falling) at the shortest lags;
    # only a local maximum is a period, here the 40-frame beat.
    t = np.arange(200)
    curve = 1000 + 200 * np.sin(2 * np.pi * t / 40) + 300 * np.sin(np.pi * t / 200)
    assert heart_period(curve, 50) == pytest.approx(40, abs=1)


def test_find_beats_reports_its_period_sigma_and_glitches():
    areas, expected = area_curve([0.2, 1.0, 1.8, 2.6, 3.4], 200)
    search = find_beats(areas, fps=50)
    assert_beats_match(search.beats, expected, tolerance=1)
    assert search.reason == ""
    assert search.period == pytest.approx(40, abs=1)
    assert search.sigma == pytest.approx(0.05 * search.period)  # a twentieth of the period
    assert search.glitches.shape == (200,) and not search.glitches.any()


def test_find_beats_uses_the_given_fps_for_glitches_and_the_period():
    # 25 fps, a beat every 10 frames (150 bpm): at the default 50 fps that would be 300 bpm.
    curve = 1000 + 300 * np.cos(2 * np.pi * (np.arange(100) - 5) / 10)
    assert find_beats(curve, fps=25).period == pytest.approx(10, abs=0.1)
    # Frame 45 is an ED (1300); raised by 30 % it lies 30 % above the median of its 5 frames (the
    # unraised 1300): within 2 * 4 / 25 + 0.1 = 0.42 at 25 fps, a glitch at 50 fps (0.26).
    raised = curve.copy()
    raised[45] *= 1.3
    assert not find_beats(raised, fps=25).glitches[45]
    assert find_beats(raised, fps=50).glitches[45]
    # At 0.5 fps no lag of 0.3-2 s spans 2 frames: no heart period.
    assert find_beats(curve, fps=0.5).reason == "no regular heart period"


def test_a_ripple_of_one_percent_is_no_beat():
    curve = 1000 + 10 * np.cos(2 * np.pi * (np.arange(200) - 20) / 40)
    search = find_beats(curve, fps=50)
    assert search.period == pytest.approx(40, abs=0.5)  # periodic, but a 2 % area change is mask noise
    assert (search.beats, search.reason) == ([], "no complete beat")
    # Exactly 4.5 % (1000 -> 955) is enough.
    knots = [(20 + 40 * k + d, v) for k in range(5) for d, v in ((0, 1000.0), (14, 955.0))]
    search = find_beats(knot_curve([(0, 985.0)] + knots + [(199, 990.0)], 200), fps=50)
    assert search.beats == [(20 + 40 * k, 34 + 40 * k) for k in range(5)]


def test_a_ripple_on_a_rising_curve_has_no_trough():
    t = np.arange(200)
    curve = 1000 + 5 * t + 30 * np.sin(2 * np.pi * t / 40)  # rises every frame: no end-systole
    search = find_beats(curve, fps=50)
    assert search.period == pytest.approx(40, abs=0.5)
    assert (search.beats, search.reason) == ([], "no complete beat")


def test_beats_at_200_and_at_30_bpm_are_kept():
    # 200 bpm at 50 fps: end-systoles exactly 15 frames (0.3 s) apart, at 10, 25, ..., 100; the
    # EDs lie between frames 15k + 2 and 15k + 3 (equal values).
    fast = 1000 + 300 * np.cos(2 * np.pi * (np.arange(108) - 2.5) / 15)
    search = find_beats(fast, fps=50)
    assert [es for _, es in search.beats] == list(range(10, 101, 15))
    assert all(es - ed in (7, 8) for ed, es in search.beats)
    # 30 bpm: end-systoles exactly 100 frames (2 s) apart.
    slow = 1000 + 300 * np.cos(2 * np.pi * (np.arange(311) - 10) / 100)
    assert find_beats(slow, fps=50).beats == [(10, 60), (110, 160), (210, 260)]


def test_a_video_with_one_whole_beat():
    # It starts and (almost) ends at end-systole: one trough inside, with no neighbour.
    curve = 1000 - 300 * np.cos(2 * np.pi * np.arange(80) / 40)
    search = find_beats(curve, fps=50)
    assert search.period == pytest.approx(40, abs=0.5)
    assert search.beats == [(20, 40)]


def test_end_systoles_closer_than_the_shortest_beat_are_left_out():
    # 48 fps: the shortest beat is 0.3 * 48 = 14.4 frames. End-systoles at 30 and 44 (14 frames
    # apart) are left out, each for its nearer neighbour; the following beats are 36 frames long,
    # with ED anywhere on their 1000 plateau (62-68 + 36k).
    knots = [(0, 900.0), (23, 1000.0), (30, 600.0), (37, 1000.0), (44, 600.0), (51, 960.0)]
    knots += [(d + 36 * k, v) for k in range(5) for d, v in ((62, 1000.0), (68, 1000.0), (80, 600.0))]
    curve = knot_curve(knots + [(239, 980.0)], 240)
    beats = find_beats(curve, fps=48).beats
    assert [es for _, es in beats] == [80 + 36 * k for k in range(5)]
    assert all(curve[ed] == 1000 and es - 18 <= ed <= es - 12 for ed, es in beats)


def test_a_double_trough_is_one_beat():
    # Each beat falls to 600, recovers to 950 and dips again to 630 twelve frames (0.24 s, less
    # than the shortest beat) later: one end-systole per beat, the deeper trough.
    knots = [(0, 950.0)] + [(10 + 40 * k + d, v) for k in range(6) for d, v in
                            ((0, 1000.0), (12, 600.0), (18, 950.0), (24, 630.0))]
    curve = knot_curve(knots + [(249, 990.0)], 250)
    assert find_beats(curve, fps=50).beats == [(10 + 40 * k, 22 + 40 * k) for k in range(6)]


def test_a_notch_in_diastole_does_not_move_ed():
    # Beats of 60 frames: ES 700, early filling up to 1000 (held 7 frames), a notch to 930, the
    # atrial kick to 965, systole. ED is a frame of the 1000 plateau (14-20 frames after ES); the
    # notch (35 below the kick, an eighth of the beat) is no end-systole.
    knots = [(0, 960.0)]
    for es in range(10, 260, 60):
        knots += [(es, 700.0), (es + 14, 1000.0), (es + 20, 1000.0), (es + 27, 930.0), (es + 36, 960.0), (es + 44, 965.0)]
    curve = knot_curve(knots, 270)
    beats = find_beats(curve, fps=50).beats
    assert [es for _, es in beats] == list(range(70, 260, 60))
    assert all(curve[ed] == 1000 and es - 46 <= ed <= es - 40 for ed, es in beats)


def test_ed_right_after_an_instant_refill():
    # Sawtooth at 200 bpm (50 fps): ES (600) at 15k + 5, refilled at once to 1000 the next frame,
    # then a steady fall. ED is that first full frame; the first beat's ED would be frame 0.
    curve = 1000 - 400 * ((np.arange(110) - 6) % 15) / 14
    assert find_beats(curve, fps=50).beats == [(es - 14, es) for es in range(20, 96, 15)]


def test_glitch_frames_are_never_ed_or_es():
    curve = 1000 + 300 * np.cos(2 * np.pi * (np.arange(200) - 20) / 40)  # ED 20 + 40k, ES 40 + 40k
    spiked = curve.copy()
    spiked[61] = 1.5 * curve[60]  # far above its neighbours: a glitch next to an ED
    assert find_beats(spiked, fps=50).beats == [(20, 40), (60, 80), (100, 120), (140, 160)]
    # Five empty frames around the third ES leave no usable ES frame within a sigma: that beat is
    # left out, the next one still counts.
    dropped = curve.copy()
    dropped[118:123] = 0
    assert find_beats(dropped, fps=50).beats == [(20, 40), (60, 80), (140, 160)]


def test_volume_peaks_spacing_and_prominence_limits():
    from unilvseg.evaluation.volumes import beats_from_volumes

    # Peaks exactly 15 frames apart (the default spacing) are all EDs.
    points = [(0, 60), (5, 100), (12, 40), (20, 100), (27, 40), (35, 100), (42, 40), (50, 100), (57, 40), (60, 70)]
    curve = np.interp(np.arange(61), *zip(*points))
    assert beats_from_volumes(curve) == [(5, 12), (20, 27), (35, 42), (50, 57)]
    # Range 100, prominence 0.25: falls and the last rise of exactly 25 count.
    points = [(0, 0), (2, 100), (10, 75), (20, 100), (30, 75), (35, 100)]
    curve = np.interp(np.arange(36), *zip(*points))
    assert beats_from_volumes(curve, min_beat_frames=5, prominence=0.25) == [(2, 10), (20, 30)]
    # A prominent peak (through an empty frame) whose non-empty minimum falls only 5 (< 10) is no beat.
    points = [(0, 50), (5, 100), (9, 95), (10, 0), (11, 95), (25, 100), (35, 40), (40, 100), (45, 100)]
    curve = np.interp(np.arange(46), *zip(*points))
    assert beats_from_volumes(curve) == [(25, 35)]


def _four_beats():
    """Areas with ED at 20 + 40k and ES at 40 + 40k (k = 0..3, 75 bpm at 50 fps), and volumes
    that are 78 mL except at those frames: EDVs 100, 125, 90, 120 and ESVs 40, 75, 31.5, 36 (EFs
    60, 40, 65, 70)."""
    areas = 1000 + 300 * np.cos(2 * np.pi * (np.arange(200) - 20) / 40)
    volumes = np.full(200, 78.0)
    volumes[[20, 60, 100, 140]] = [100.0, 125.0, 90.0, 120.0]
    volumes[[40, 80, 120, 160]] = [40.0, 75.0, 31.5, 36.0]
    return areas, volumes


def test_ed_es_volumes_combines_the_beats_by_rule():
    from unilvseg.evaluation.volumes import ed_es_volumes

    areas, volumes = _four_beats()
    beat_frames = [(20, 40), (60, 80), (100, 120), (140, 160)]
    # beats: means over the beats; the reported frames are the beat whose EF (60) is nearest the mean.
    result = ed_es_volumes(areas, volumes, "beats", fps=50)
    assert (result["rule"], result["beats"], result["beat_frames"]) == ("beats", 4, beat_frames)
    assert result["beat_efs"] == pytest.approx([60.0, 40.0, 65.0, 70.0])
    assert (result["edv"], result["esv"], result["ef"]) == pytest.approx((108.75, 45.625, 58.75))
    assert result["ef_sd"] == pytest.approx(np.sqrt((1.25**2 + 18.75**2 + 6.25**2 + 11.25**2) / 3))
    assert (result["ed_frame"], result["es_frame"]) == (20, 40)
    assert result["heart_rate_bpm"] == pytest.approx(75.0)  # 60 s * 50 fps / 40 frames
    assert result["areas"] is areas and result["volumes"] is volumes
    # volume_peaks: the same beats from the volume peaks; the median-EF beat (the lower middle of 4,
    # EF 60) is reported as it is.
    result = ed_es_volumes(areas, volumes, "volume_peaks", fps=50)
    assert (result["rule"], result["beats"], result["beat_frames"]) == ("volume_peaks", 4, beat_frames)
    assert (result["edv"], result["esv"], result["ef"]) == pytest.approx((100.0, 40.0, 60.0))
    assert (result["ed_frame"], result["es_frame"]) == (20, 40) and result["heart_rate_bpm"] == pytest.approx(75.0)
    # The lower middle of 4 and the middle of 3 (first three beats: EFs 60, 40, 65 -> 60).
    result = ed_es_volumes(areas[:150], volumes[:150], "volume_peaks", fps=50)
    assert result["beat_frames"] == beat_frames[:3] and (result["ed_frame"], result["ef"]) == (20, pytest.approx(60.0))
    changed = volumes.copy()
    changed[160] = 54.0  # EFs 60, 40, 65, 55: the lower middle is now the last beat (55)
    result = ed_es_volumes(areas, changed, "volume_peaks", fps=50)
    assert (result["ed_frame"], result["es_frame"], result["ef"]) == (140, 160, pytest.approx(55.0))
    assert (result["edv"], result["esv"]) == (120.0, 54.0)
    # extremes: the largest and smallest volume of the video, one pair, no beat count, no heart rate.
    result = ed_es_volumes(areas, volumes, "extremes", fps=50)
    assert (result["rule"], result["beats"], result["beat_frames"]) == ("extremes", 0, [(60, 120)])
    assert (result["edv"], result["esv"], result["ef"]) == pytest.approx((125.0, 31.5, 74.8))
    assert (result["ed_frame"], result["es_frame"], result["beat_efs"]) == (60, 120, [pytest.approx(74.8)])
    assert np.isnan(result["ef_sd"]) and np.isnan(result["heart_rate_bpm"])


def test_ed_es_volumes_frame_range_and_fps():
    from unilvseg.evaluation.volumes import ed_es_volumes

    areas, volumes = _four_beats()
    # Frames 10-189: the same beats, reported in the video's frame numbers.
    result = ed_es_volumes(areas, volumes, "beats", fps=50, frame_range=(10, 190))
    assert result["beat_frames"] == [(20, 40), (60, 80), (100, 120), (140, 160)]
    assert (result["ed_frame"], result["es_frame"]) == (20, 40)
    assert len(result["areas"]) == 200  # the whole video's curves
    result = ed_es_volumes(areas, volumes, "extremes", fps=50, frame_range=(70, 200))
    assert result["beat_frames"] == [(140, 120)]  # largest volume after frame 70: 120 mL at 140
    assert ed_es_volumes(areas, volumes, "extremes", frame_range=(0, 200))["beat_frames"] == [(60, 120)]
    for bad in [(0, 201), (200, 200), (-1, 100), (50, 50), (60, 40)]:
        with pytest.raises(ValueError, match=rf"^frame_range \({bad[0]}, {bad[1]}\) outside the 200 frames$"):
            ed_es_volumes(areas, volumes, "beats", frame_range=bad)
    # The heart rate is in beats per minute at the video's FPS (ES 40 frames apart); a missing or
    # meaningless FPS means 50.
    assert ed_es_volumes(areas, volumes, "volume_peaks", fps=0.5)["heart_rate_bpm"] == pytest.approx(0.75)
    assert ed_es_volumes(areas, volumes, "beats", fps=25)["heart_rate_bpm"] == pytest.approx(37.5)
    for fps in (None, 0, float("nan"), -25.0):
        assert ed_es_volumes(areas, volumes, "beats", fps=fps)["heart_rate_bpm"] == pytest.approx(75.0)
    # No beat: the fallback pair, and the heart rate from the period (none for a straight line).
    ramp = np.linspace(1000.0, 1400.0, 120)
    result = ed_es_volumes(ramp, ramp / 20, "beats", fps=50)
    assert result["rule"] == "extremes (fallback: no regular heart period)"
    assert (result["beats"], result["beat_frames"], result["ed_frame"], result["es_frame"]) == (0, [(119, 0)], 119, 0)
    assert np.isnan(result["heart_rate_bpm"]) and np.isnan(result["ef_sd"])
    # Two beats (EFs 60 and 40): SD 20 / sqrt(2); the heart rate from their end-systoles, 40 frames apart.
    rising = volumes[:100].copy()
    rising[99] = 100.0  # for volume_peaks, the volume must rise again after the last ES
    for rule in ("beats", "volume_peaks"):
        result = ed_es_volumes(areas[:100], rising, rule, fps=50)
        assert result["beat_frames"] == [(20, 40), (60, 80)] and result["ef_sd"] == pytest.approx(20 / np.sqrt(2))
        assert result["heart_rate_bpm"] == pytest.approx(75.0)
    # One beat: the heart rate comes from the heart period (40 frames at 50 fps: 75 bpm), and
    # no SD (nor a numpy warning about one).
    one = 1000 - 300 * np.cos(2 * np.pi * np.arange(80) / 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = ed_es_volumes(one, one / 20, "beats", fps=50)
    assert result["beat_frames"] == [(20, 40)] and result["beats"] == 1
    assert result["heart_rate_bpm"] == pytest.approx(75.0, abs=1) and np.isnan(result["ef_sd"])
    assert result["ef"] == pytest.approx(100 * (1300 - 700) / 1300)


def test_ed_es_volumes_without_any_usable_frame():
    from unilvseg.evaluation.volumes import ed_es_volumes

    for rule in ED_ES_RULES:
        result = ed_es_volumes(np.zeros(30), np.zeros(30), rule, fps=50)
        assert {k: v for k, v in result.items() if k not in ("ef", "ef_sd", "heart_rate_bpm", "areas", "volumes", "rule")} == {
            "edv": 0.0, "esv": 0.0, "ed_frame": -1, "es_frame": -1, "beats": 0, "beat_frames": [], "beat_efs": []}
        assert np.isnan(result["ef"]) and np.isnan(result["ef_sd"]) and np.isnan(result["heart_rate_bpm"])
        assert result["rule"].startswith("extremes")


def test_glitch_frames_by_hand():
    # Tolerance at 50 fps: 2 * 4 / 50 + 0.1 = 0.26 of the median of the 5 frames around; at 25 fps 0.42.
    flat = np.full(9, 1000.0)
    for fps, within, beyond in ((50, 1250.0, 1270.0), (25, 1410.0, 1430.0)):
        for value, expected in ((within, False), (beyond, True), (2000.0 - within, False), (2000.0 - beyond, True)):
            curve = flat.copy()
            curve[4] = value
            assert glitch_frames(curve, fps).tolist() == [False] * 4 + [expected] + [False] * 4, (fps, value)
    assert glitch_frames(np.where(np.arange(9) == 4, 1300.0, 1000.0)).tolist()[4]  # 50 fps by default
    # At 80 fps the tolerance is 2 * 4 / 80 + 0.1 = 0.2 exactly: a frame exactly 20 % off is no glitch.
    assert not glitch_frames(np.where(np.arange(9) == 4, 1200.0, 1000.0), 80).any()
    # The tolerance is relative to the local value in any unit (areas in mL, fractions...).
    assert glitch_frames(np.where(np.arange(9) == 4, 0.02, 0.01), 50).tolist() == [False] * 4 + [True] + [False] * 4
    # Two dropped frames are glitches; three frames are a real dip (the median is in it); empty is always a glitch.
    two = np.array([1000.0] * 4 + [100.0] * 2 + [1000.0] * 4)
    assert glitch_frames(two, 50).tolist() == [False] * 4 + [True] * 2 + [False] * 4
    three = np.array([1000.0] * 4 + [100.0] * 3 + [1000.0] * 4)
    assert not glitch_frames(three, 50).any()
    assert glitch_frames(np.array([0.0, 0.0, 5.0, 0.0, 0.0]), 50).tolist() == [True, True, True, True, True]
    # At the ends the edge frame stands in for the missing neighbours.
    assert glitch_frames(np.array([1300.0] + [1000.0] * 5), 50).tolist() == [False] * 6
    # Three frames are enough for the median test; fewer only drop empty frames.
    assert glitch_frames(np.array([100.0, 1000.0, 100.0]), 50).tolist() == [False, True, False]
    assert glitch_frames(np.array([1000.0, 0.0]), 50).tolist() == [False, True]
    assert glitch_frames(np.array([1000.0, -1.0]), 50).tolist() == [False, True]


def test_choose_ed_es_fallbacks_fps_and_glitches():
    from unilvseg.evaluation.volumes import ed_es_volumes

    areas, volumes = _four_beats()
    # No volume peaks in a flat volume curve: the whole-video pair (its first largest and smallest frames).
    choice = choose_ed_es(areas, np.full(200, 50.0), "volume_peaks", fps=50)
    assert (choice.rule, choice.combine, choice.beats) == ("extremes (fallback: no volume peaks)", "single", [(0, 0)])
    # A 2 % ripple has a period but no beat: the fallback keeps the period for the heart rate.
    ripple = 1000 + 10 * np.cos(2 * np.pi * (np.arange(200) - 20) / 40)
    choice = choose_ed_es(ripple, volumes, "beats", fps=50)
    assert (choice.rule, choice.combine, choice.beats) == ("extremes (fallback: no complete beat)", "single", [(60, 120)])
    assert choice.period == pytest.approx(40, abs=0.5)
    assert ed_es_volumes(ripple, volumes, "beats", fps=50)["heart_rate_bpm"] == pytest.approx(75, abs=1)
    found = choose_ed_es(areas, volumes, "beats", fps=50)
    assert (found.rule, found.combine, found.period) == ("beats", "mean", pytest.approx(40, abs=0.5))
    assert choose_ed_es(areas, volumes, "volume_peaks").combine == "median"
    assert choose_ed_es(areas, volumes, "extremes").combine == "single"
    # A missing or meaningless FPS means 50; at 0.5 fps no heart period fits in the video.
    for fps in (None, 0, float("nan"), -25.0):
        assert choose_ed_es(areas, volumes, "beats", fps=fps).beats == found.beats
    assert choose_ed_es(areas, volumes, "beats", fps=0.5).rule == "extremes (fallback: no regular heart period)"
    # Empty (glitch) frames are never the extremes, whatever their volume.
    holes = areas.copy()
    holes[[60, 120]] = 0
    assert choose_ed_es(holes, volumes, "extremes", fps=50).beats == [(140, 160)]
    # A frame 30 % above its neighbours is a glitch at 50 fps, not at 25 fps (tolerance 0.42).
    raised = areas.copy()
    raised[60] *= 1.3
    assert choose_ed_es(raised, volumes, "extremes", fps=25).beats == [(60, 120)]
    assert choose_ed_es(raised, volumes, "extremes", fps=0.5).beats == [(60, 120)]  # tolerance 16.1
    for fps in (50, None, 0, float("nan"), -25.0):
        assert choose_ed_es(raised, volumes, "extremes", fps=fps).beats == [(140, 120)], fps
    assert ed_es_volumes(raised, volumes, "extremes", fps=25)["beat_frames"] == [(60, 120)]
    # The beats rule searches at the given FPS: a beat every 10 frames is 150 bpm at 25 fps.
    fast = 1000 + 300 * np.cos(2 * np.pi * (np.arange(100) - 5) / 10)
    choice = choose_ed_es(fast, fast, "beats", fps=25)
    assert choice.rule == "beats" and choice.period == pytest.approx(10, abs=0.1)
    assert [es for _, es in choice.beats] == list(range(10, 91, 10))
    with pytest.raises(ValueError, match=r"^unknown ED/ES rule 'largest'; expected one of beats, extremes, volume_peaks$"):
        choose_ed_es(areas, volumes, "largest")


def test_volumes_by_rule_defaults():
    areas, _ = area_curve([0.1, 0.9, 1.7, 2.5, 3.3], 170)
    masks = _lv_masks(38.0 * np.ones(170), 16.0 * np.sqrt(areas / areas.max()))
    by_rule = volumes_by_rule(masks)
    assert list(by_rule) == list(ED_ES_RULES)
    np.testing.assert_allclose(by_rule["extremes"]["volumes"], [method_of_disks(m) for m in masks])
    assert by_rule["beats"]["heart_rate_bpm"] == pytest.approx(75, abs=2)  # 50 fps by default
    assert by_rule["beats"]["rule"] == "beats"


def test_a_beat_needs_half_the_median_beat_change():
    # Six beats (ED 1000 at 10 + 40k). Four end in a 750 trough with a one-frame dip to 600 at
    # 30 + 40k (20 % below its neighbours: no glitch): a change of 400. Beat 1 ends on an 800
    # plateau (change 200, exactly half the median 400: kept), beat 3 on an 810 plateau (190: left
    # out), though both troughs are deep enough on the smoothed curve.
    knots = [(0, 950.0)]
    for k in range(6):
        ed, es = 10 + 40 * k, 30 + 40 * k
        knots.append((ed, 1000.0))
        if k in (1, 3):
            knots += [(es - 3, 800.0 if k == 1 else 810.0), (es + 3, 800.0 if k == 1 else 810.0)]
        else:
            knots += [(es - 3, 750.0), (es - 1, 750.0), (es, 600.0), (es + 1, 750.0), (es + 3, 750.0)]
    curve = knot_curve(knots + [(249, 990.0)], 250)
    search = find_beats(curve, fps=50)
    assert not search.glitches.any()
    assert [ed for ed, _ in search.beats] == [10, 50, 90, 170, 210]
    es = [es for _, es in search.beats]
    assert es[:1] + es[2:] == [30, 110, 190, 230] and curve[es[1]] == 800.0


def test_an_end_systole_more_than_2_s_from_both_neighbours_is_left_out():
    # Beats every 40 frames at 50 fps around two pauses: the end-systole at 201 lies 101 frames
    # (2.02 s, longer than the longest beat) from both neighbours and is left out; 302 is kept
    # (its other neighbour is 40 frames away).
    troughs = [20, 60, 100, 201, 302, 342, 382]
    knots = [(0, 950.0)] + [(t + d, v) for t in troughs for d, v in ((-12, 1000.0), (0, 600.0), (24, 1000.0))]
    curve = knot_curve(sorted(set(knots)), 420)
    beats = find_beats(curve, fps=50).beats
    assert [es for _, es in beats] == [20, 60, 100, 302, 342, 382]
    assert all(curve[ed] == 1000.0 for ed, _ in beats)


def test_heart_period_counts_an_undefined_correlation_as_minus_one():
    # Zero slope, so the detrended curve is (curve - 6100/6) = [-1, -1, 11, -13, 2, 2] * 100/6. At
    # 6 fps the lags are 2-3 (4 as the right neighbour). Lag 3: [-1, -1, 11] vs [-13, 2, 2] ->
    # r = 60 / sqrt(96 * 150) = 0.5; lag 2: r = 0; lag 4: [-1, -1] is constant, no correlation,
    # counted as -1 (and no numpy warning). Parabola through (0, 0.5, -1): 3 + 0.5 * 1 / -2 = 2.75.
    curve = np.array([1000.0, 1000.0, 1200.0, 800.0, 1050.0, 1050.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert heart_period(curve, 6) == pytest.approx(2.75, abs=1e-9)


@pytest.mark.parametrize("rule", ED_ES_RULES)
def test_a_one_frame_spike_or_dropout_is_never_ed_or_es(rule):
    # A cosine volume curve, 5 beats of 40 frames; a one-frame spike 30 % above the largest ED and
    # a one-frame drop to 20 % of the smallest ES, each inside a beat. volume_peaks used to take
    # the spike as an ED (it fed raw volumes to the peak finder).
    frames = np.arange(200)
    volumes = 100.0 + 40.0 * np.cos(2 * np.pi * frames / 40)
    spike, dropout = 73, 141
    volumes[spike] = 1.3 * volumes.max()
    volumes[dropout] = 0.2 * volumes.min()
    assert glitch_frames(volumes, fps=50)[[spike, dropout]].all()
    choice = choose_ed_es(volumes, volumes, rule, fps=50)
    chosen = {frame for pair in choice.beats for frame in pair}
    assert choice.beats and spike not in chosen and dropout not in chosen, (rule, choice.beats)
    if rule == "volume_peaks":
        # The spike's beat is still found, with its real ED (frame 80) and ES (frame 60 + 40k).
        assert (80, 100) in choice.beats and all(ed % 40 == 0 and es % 40 == 20 for ed, es in choice.beats)
