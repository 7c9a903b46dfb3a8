"""Evaluation: Dice counts, vectorised bootstrap (both conventions), method of disks, and the
evaluate_bootstrap.py pipeline on hand-made datasets with known overlaps."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import REAL_MINI, needs_real_data, tracing_rows, write_echonet
from unilvseg.errors import UserError
from unilvseg.evaluation.bootstrap import (
    REFERENCE,
    VIDEO,
    bootstrap_dice,
    bootstrap_mean,
    reference_interval,
    resampled_sums,
)
from unilvseg.evaluation.metrics import dice_counts, dice_from_counts, ef_agreement, mean_absolute_change, pooled_dice
from unilvseg.evaluation.volumes import method_of_disks, method_of_disks_batch, volumes_from_masks


# --------------------------------------------------------------------------- metrics


def test_dice_counts_vectorised_over_leading_dims():
    rng = np.random.default_rng(1)
    pred = rng.random((3, 2, 9, 7)) > 0.5
    true = rng.random((3, 2, 9, 7)) > 0.4
    inter, p, t = dice_counts(pred.astype(np.uint8), true)
    assert inter.shape == (3, 2) and inter.dtype == np.int64
    for i in range(3):
        for j in range(2):
            assert inter[i, j] == np.sum(pred[i, j] & true[i, j])
            assert p[i, j] == pred[i, j].sum() and t[i, j] == true[i, j].sum()
    with pytest.raises(ValueError, match="shape"):
        dice_counts(pred[0], true[1:])


def test_pooled_dice_is_ratio_of_sums_not_mean():
    # Frame 1: I=10, |P|=10, |T|=10 (Dice 1). Frame 2: I=0, |P|=90, |T|=90 (Dice 0).
    inter, pred, true = np.array([10, 0]), np.array([10, 90]), np.array([10, 90])
    assert pooled_dice(inter, pred, true) == pytest.approx(20 / 200)
    assert dice_from_counts(inter, pred, true).mean() == pytest.approx(0.5)
    assert dice_from_counts(0, 0, 0) == 1.0  # both empty: agreement, not 0/0
    assert np.isnan(pooled_dice([0], [0], [0]))


def test_ef_agreement_matches_definitions():
    reference = np.array([50.0, 60.0, 70.0])
    predicted = np.array([52.0, 57.0, 70.0])
    agreement = ef_agreement(predicted, reference)
    assert agreement["mae"] == pytest.approx(5 / 3)
    assert agreement["bias"] == pytest.approx(-1 / 3)
    assert agreement["r2"] == pytest.approx(1 - (4 + 9) / 200)
    assert agreement["rmse"] == pytest.approx(np.sqrt(13 / 3))


def test_metric_edge_cases_and_types():
    """Single 2-D masks, overflow-prone small integer inputs, empty inputs, near-empty pools and
    axis handling, with numpy warnings as errors (0/0 must be handled, not warned about)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inter, p, t = dice_counts(np.eye(3, dtype=bool), np.ones((3, 3), np.uint8))  # one (H, W) mask
        assert (inter, p, t) == (3, 3, 9) and p.dtype == t.dtype == inter.dtype == np.int64
        with pytest.raises(ValueError, match="expected masks of shape"):
            dice_counts(np.ones(4), np.ones(4))
        # uint8 counts whose sum overflows uint8: 200 + 100 = 300, not 44.
        assert dice_from_counts(np.uint8(100), np.uint8(200), np.uint8(100)) == pytest.approx(200 / 300)
        # One pixel in the pool (prediction only): Dice 0, not the "both empty" value.
        assert dice_from_counts(0, 1, 0) == 0.0 and dice_from_counts(0, 0, 0, empty=0.5) == 0.5
        assert pooled_dice([0], [1], [0]) == 0.0
        pooled = pooled_dice(np.array([[1, 2], [3, 0]]), np.array([[2, 2], [3, 0]]), np.array([[2, 3], [4, 0]]), axis=0)
        np.testing.assert_allclose(pooled, [2 * 4 / 11, 2 * 2 / 5])
        assert isinstance(pooled_dice([1], [2], [2]), float)
        per_row = pooled_dice(np.array([[1, 1]]), np.array([[2, 2]]), np.array([[2, 2]]), axis=1)
        assert isinstance(per_row, np.ndarray) and per_row.shape == (1,)
        empty = ef_agreement([], [])
        assert all(np.isnan(v) for v in empty.values())
        near = ef_agreement([50.0, 52.0], [50.0, 51.0])  # reference spread 0.5: R² defined
        assert near["r2"] == pytest.approx(1 - 1 / 0.5) and near["rmse"] == pytest.approx(np.sqrt(0.5))
        assert np.isnan(ef_agreement([50.0, 60.0], [55.0, 55.0])["r2"])  # constant reference
        assert mean_absolute_change([1.0, 4.0, 2.0]) == pytest.approx(2.5)
        assert mean_absolute_change(np.array([5, 3], np.uint8)) == 2.0  # not 254 (uint8 wrap)
        assert np.isnan(mean_absolute_change([7.0]))


# --------------------------------------------------------------------------- bootstrap


def _published_bootstrap(a, b, indices):
    """EchoNet-Dynamic's echonet.utils.bootstrap with its per-sample draws replaced by ``indices``."""
    a, b = np.array(a), np.array(b)
    bootstraps = []
    for ind in indices:
        bootstraps.append(2 * sum(a[ind]) / (sum(b[ind]) + sum(a[ind])))  # dice_similarity_coefficient
    bootstraps = sorted(bootstraps)
    return 2 * sum(a) / (sum(b) + sum(a)), bootstraps[round(0.05 * len(bootstraps))], bootstraps[round(0.95 * len(bootstraps))]


def _random_counts(rng, n):
    true = rng.integers(200, 900, size=(n, 2))
    inter = (true * rng.uniform(0.7, 1.0, size=(n, 2))).astype(np.int64)
    pred = inter + rng.integers(0, 120, size=(n, 2))
    return inter, pred, true


def test_resampled_sums_equal_explicit_resamples():
    values = np.arange(12, dtype=np.float64).reshape(6, 2) ** 2
    sums = resampled_sums(values, samples=50, rng=np.random.default_rng(3))
    indices = np.random.default_rng(3).integers(0, 6, size=(50, 6))
    np.testing.assert_array_equal(sums, values[indices].sum(axis=1))
    # Many columns take the bincount + matmul path: same sums for the same draws.
    wide = np.random.default_rng(0).integers(0, 50, size=(6, 7)).astype(float)
    np.testing.assert_array_equal(resampled_sums(wide, 50, np.random.default_rng(3)), wide[indices].sum(axis=1))
    # Chunks of 2 resamples (12 indices) draw row by row from the same stream.
    chunked = resampled_sums(values, samples=50, rng=np.random.default_rng(3), chunk_elements=12)
    np.testing.assert_array_equal(chunked, values[indices].sum(axis=1))


def test_reference_convention_reproduces_published_loop():
    n, samples = 7, 400
    inter, pred, true = _random_counts(np.random.default_rng(0), n)
    union = pred + true - inter  # EchoNet accumulates intersection and union
    ours = bootstrap_dice(inter, pred, true, samples=samples, rng=np.random.default_rng(42), convention=REFERENCE)

    rng = np.random.default_rng(42)  # same stream, same order: overall (2N frames), ED, ES
    expected = {
        "overall": _published_bootstrap(
            np.concatenate([inter[:, 0], inter[:, 1]]), np.concatenate([union[:, 0], union[:, 1]]), rng.integers(0, 2 * n, size=(samples, 2 * n))
        ),
        "ed": _published_bootstrap(inter[:, 0], union[:, 0], rng.integers(0, n, size=(samples, n))),
        "es": _published_bootstrap(inter[:, 1], union[:, 1], rng.integers(0, n, size=(samples, n))),
    }
    for key, (estimate, low, high) in expected.items():
        assert ours[key].estimate == pytest.approx(estimate, rel=1e-12)
        assert ours[key].low == pytest.approx(low, rel=1e-12)
        assert ours[key].high == pytest.approx(high, rel=1e-12)


def test_video_convention_matches_simple_loop():
    n, samples = 9, 300
    inter, pred, true = _random_counts(np.random.default_rng(5), n)
    ours = bootstrap_dice(inter, pred, true, samples=samples, rng=np.random.default_rng(8), ci=0.9)
    indices = np.random.default_rng(8).integers(0, n, size=(samples, n))
    stats = {"overall": [], "ed": [], "es": []}
    for ind in indices:  # ED and ES of a resampled video travel together
        i, p, t = inter[ind], pred[ind], true[ind]
        stats["overall"].append(2 * i.sum() / (p.sum() + t.sum()))
        stats["ed"].append(2 * i[:, 0].sum() / (p[:, 0].sum() + t[:, 0].sum()))
        stats["es"].append(2 * i[:, 1].sum() / (p[:, 1].sum() + t[:, 1].sum()))
    for key, values in stats.items():
        assert ours[key].low == pytest.approx(np.quantile(values, 0.05), rel=1e-12)
        assert ours[key].high == pytest.approx(np.quantile(values, 0.95), rel=1e-12)
    assert ours["overall"].estimate == pytest.approx(2 * inter.sum() / (pred.sum() + true.sum()))


def test_reference_interval_order_statistics():
    stats = np.random.default_rng(0).permutation(1000).astype(float)
    assert reference_interval(stats) == (50.0, 950.0)
    # round(0.95 * 10) == 10 would index past the end in the published code: clamped.
    assert reference_interval(np.arange(10.0)) == (0.0, 9.0)


@pytest.mark.parametrize("convention", [VIDEO, REFERENCE])
def test_interval_brackets_estimate_and_narrows_with_more_videos(convention):
    widths = []
    for n in (15, 600):
        inter, pred, true = _random_counts(np.random.default_rng(n), n)
        result = bootstrap_dice(inter, pred, true, samples=2000, rng=np.random.default_rng(0), convention=convention)
        for interval in result.values():
            assert interval.low <= interval.estimate <= interval.high
            assert interval.low < interval.high
        widths.append(result["overall"].high - result["overall"].low)
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(N): 40x the videos, ~6x narrower


def test_bootstrap_is_seeded_and_ci_widens_with_coverage():
    inter, pred, true = _random_counts(np.random.default_rng(2), 40)
    first = bootstrap_dice(inter, pred, true, samples=500, rng=np.random.default_rng(7))
    again = bootstrap_dice(inter, pred, true, samples=500, rng=np.random.default_rng(7))
    other = bootstrap_dice(inter, pred, true, samples=500, rng=np.random.default_rng(8))
    assert first == again and first != other
    narrow = bootstrap_dice(inter, pred, true, samples=500, rng=np.random.default_rng(7), ci=0.5)
    assert narrow["overall"].high - narrow["overall"].low < first["overall"].high - first["overall"].low
    mae = bootstrap_mean(np.abs(np.random.default_rng(0).normal(0, 5, 50)), samples=500, rng=np.random.default_rng(0))
    assert mae.low < mae.estimate < mae.high


def test_bootstrap_argument_checks_defaults_and_edge_sizes(monkeypatch):
    """From the mutation run: boundaries of the argument checks, one unit or one resample, the
    default of 10,000 resamples, no warning on 0/0 ratios, Interval.as_dict."""
    import warnings

    from unilvseg.evaluation import bootstrap as bootstrap_module
    from unilvseg.evaluation.bootstrap import Interval, _ratio, percentile_interval, resample_indices

    for ci in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"confidence level must be in \(0, 1\)"):
            percentile_interval(np.arange(10.0), ci)
    with pytest.raises(ValueError, match="^bootstrap needs at least one unit to resample$"):
        next(resample_indices(np.random.default_rng(0), 0, 10))
    with pytest.raises(ValueError, match="bootstrap samples must be >= 1"):
        next(resample_indices(np.random.default_rng(0), 3, 0))
    assert [c.shape for c in resample_indices(np.random.default_rng(0), 1, 1)] == [(1, 1)]
    single = bootstrap_mean([4.0], samples=5, rng=np.random.default_rng(0))
    assert (single.estimate, single.low, single.high) == (4.0, 4.0, 4.0)
    with pytest.raises(ValueError, match=r"expects \(n_videos, 2\) counts"):
        bootstrap_dice(np.ones((3, 3)), np.ones((3, 3)), np.ones((3, 3)), samples=5)
    with pytest.raises(ValueError, match="unknown bootstrap convention 'jackknife'"):
        bootstrap_dice(np.ones((3, 2)), np.ones((3, 2)), np.ones((3, 2)), samples=5, convention="jackknife")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ratio = _ratio(np.array([0.0, 1.0]), np.array([0.0, 0.0]))
    assert np.isnan(ratio[0]) and np.isinf(ratio[1])
    with pytest.raises(ValueError, match=r"empty or a NaN input\); the interval would silently leave them out$"):
        percentile_interval(np.array([1.0, np.nan]), 0.9)
    assert Interval(0.8, 0.7, 0.9).as_dict() == {"estimate": 0.8, "low": 0.7, "high": 0.9}
    # Defaults: 10,000 resamples from a fresh generator when none is given.
    seen = []
    original = bootstrap_module.resampled_sums
    monkeypatch.setattr(bootstrap_module, "resampled_sums", lambda v, samples, rng, *a: seen.append(samples) or original(v, samples, rng, *a))
    bootstrap_mean(np.arange(5.0))
    bootstrap_dice(np.ones((3, 2)), np.full((3, 2), 2.0), np.full((3, 2), 2.0))
    assert seen == [10_000, 10_000]


# --------------------------------------------------------------------------- volumes


def _ellipse(a, b, angle_deg, centre=(56.3, 55.7), size=112):
    y, x = np.mgrid[:size, :size].astype(float)
    angle = np.deg2rad(angle_deg)
    u = (x - centre[0]) * np.cos(angle) + (y - centre[1]) * np.sin(angle)
    v = -(x - centre[0]) * np.sin(angle) + (y - centre[1]) * np.cos(angle)
    return ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(np.uint8)


@pytest.mark.parametrize("a,b,angle", [(25, 12, 0), (25, 12, 30), (40, 15, 63), (12, 6, 45), (30, 10, 90)])
def test_method_of_disks_matches_ellipsoid(a, b, angle):
    # A prolate ellipsoid of revolution about the long axis: V = 4/3 pi a b^2 (pixels^3).
    # Measured error over these shapes: at most 0.53 % (pixel staircase); 1 % leaves a margin.
    expected_ml = 4 / 3 * np.pi * a * b * b * 1.4**3 / 1000
    assert method_of_disks(_ellipse(a, b, angle), mm_per_pixel=1.4) == pytest.approx(expected_ml, rel=0.01)
    # Volume scales with the cube of the pixel spacing.
    assert method_of_disks(_ellipse(a, b, angle), mm_per_pixel=0.5) == pytest.approx(expected_ml * (0.5 / 1.4) ** 3, rel=0.01)


def test_volumes_from_masks_ed_es_and_scale_free_ef():
    # Radii change by at most ~5 % a frame (a heart at 50 fps), largest at frame 4, smallest at
    # frame 13, then an empty frame that must not be taken for ES.
    knots = [(0, 20, 10), (4, 24, 12), (13, 15, 7), (18, 18, 9)]
    frames = np.arange(19)
    a = np.interp(frames, [k[0] for k in knots], [k[1] for k in knots])
    b = np.interp(frames, [k[0] for k in knots], [k[2] for k in knots])
    masks = np.stack([_ellipse(ai, bi, 10) for ai, bi in zip(a, b)] + [np.zeros((112, 112), np.uint8)])
    result = volumes_from_masks(masks, rule="extremes")
    assert result["ed_frame"] == 4 and result["es_frame"] == 13  # the empty frame is not ES
    assert result["rule"] == "extremes"
    np.testing.assert_array_equal(result["areas"], masks.sum(axis=(1, 2)))
    # Every frame against its ellipsoid (4/3 pi a b^2), the empty frame 0: measured error <= 1.23 %
    # (<= 0.52 % at the whole-pixel radii of the knots; in-between radii rasterise coarser).
    analytic = [4 / 3 * np.pi * ai * bi * bi * 1.4**3 / 1000 for ai, bi in zip(a, b)] + [0.0]
    np.testing.assert_allclose(result["volumes"], analytic, rtol=0.015)
    assert (result["edv"], result["esv"]) == (result["volumes"][4], result["volumes"][13])
    analytic_ef = 100 * (1 - (15 * 7 * 7) / (24 * 12 * 12))
    assert result["ef"] == pytest.approx(analytic_ef, abs=0.1)  # measured error 0.033 EF points
    rescaled = volumes_from_masks(masks, mm_per_pixel=0.7, rule="extremes")
    assert rescaled["ef"] == pytest.approx(result["ef"], rel=1e-9)
    assert rescaled["edv"] == pytest.approx(result["edv"] / 8, rel=1e-9)
    beat = volumes_from_masks(masks, frame_range=(13, 19), rule="extremes")
    assert (beat["ed_frame"], beat["es_frame"]) == (18, 13)
    # 19 frames hold no complete beat: the default rule falls back to the extremes and says so.
    default = volumes_from_masks(masks)
    assert (default["ed_frame"], default["es_frame"]) == (4, 13) and default["rule"].startswith("extremes (fallback")
    empty = volumes_from_masks(np.zeros((3, 8, 8), np.uint8))
    assert np.isnan(empty["ef"]) and empty["ed_frame"] == -1
    np.testing.assert_array_equal(method_of_disks_batch(np.zeros((2, 5, 5))), [0.0, 0.0])


# --------------------------------------------------------------------------- evaluate_bootstrap

SIZE, FRAMES = 48, 6
ED, ES = 4, 1


def _dataset(tmp_path, n_videos=4, split="TEST", efs=None, reference_masks=None):
    """EchoNet folder with ``n_videos`` ellipse tracings (ED at frame 4, ES at frame 1)."""
    names = [f"V{i}" for i in range(n_videos)]
    rows, filelist = [], []
    for i, name in enumerate(names):
        rows += tracing_rows(name, ES, (24, 22), (6 + i % 3, 10 + i % 2))  # ES listed first, as in EchoNet
        rows += tracing_rows(name, ED, (24, 24), (9 + i % 3, 15 + i % 2))
        filelist.append({"FileName": name, "Split": split, "EF": 60.0 if efs is None else efs[i]})
    videos = {name: np.zeros((FRAMES, SIZE, SIZE), np.uint8) for name in names}
    root = write_echonet(tmp_path, videos, rows, filelist)
    if reference_masks:
        (root / "ReferenceMasks").mkdir()
        for name, masks in reference_masks.items():
            np.savez_compressed(root / "ReferenceMasks" / f"{name}.npz", masks=masks)
    return root


def _truths(root):
    from unilvseg.data.index import load_index
    from unilvseg.data.tracings import tracing_mask

    records = load_index(root, split="all").records
    truths = {r.file_name: (tracing_mask(r.ed_rows, r.height, r.width), tracing_mask(r.es_rows, r.height, r.width)) for r in records}
    assert all(r.ed_frame == ED and r.es_frame == ES for r in records)
    return truths


def _write_predictions(pred_dir, masks_by_video, png=True):
    """predict.py layout: masks/<name>.npz with all frames, plus PNGs of the traced frames."""
    (pred_dir / "masks").mkdir(parents=True, exist_ok=True)
    for name, (ed_mask, es_mask) in masks_by_video.items():
        video = np.zeros((FRAMES, SIZE, SIZE), np.uint8)
        video[ED], video[ES] = ed_mask, es_mask
        np.savez_compressed(pred_dir / "masks" / f"{name}.npz", masks=video)
        if png:
            cv2.imwrite(str(pred_dir / f"{name}_{ED}_ED.png"), ed_mask * 255)
            cv2.imwrite(str(pred_dir / f"{name}_{ES}_ES.png"), es_mask * 255)


def _known_predictions(truths):
    """Predictions with hand-known overlaps; returns them and the expected (I, |P|, |T|) per video/phase."""
    predictions, expected = {}, {}
    for k, (name, (ed_true, es_true)) in enumerate(truths.items()):
        ed_pred, es_pred = ed_true.copy(), es_true.copy()
        counts = []
        if k % 4 == 1:  # ED: drop the top 3 LV rows; ES: perfect
            rows = np.flatnonzero(ed_true.any(axis=1))[:3]
            removed = int(ed_true[rows].sum())
            ed_pred[rows] = 0
            counts = [(ed_true.sum() - removed, ed_true.sum() - removed), (es_true.sum(), es_true.sum())]
        elif k % 4 == 2:  # ED: add a 4x5 block away from the LV; ES: predicted empty
            ed_pred[0:4, 0:5] = 1
            es_pred[:] = 0
            counts = [(ed_true.sum(), ed_true.sum() + 20), (0, 0)]
        elif k % 4 == 3:  # both frames: the whole image
            ed_pred[:], es_pred[:] = 1, 1
            counts = [(ed_true.sum(), SIZE * SIZE), (es_true.sum(), SIZE * SIZE)]
        else:  # perfect
            counts = [(ed_true.sum(), ed_true.sum()), (es_true.sum(), es_true.sum())]
        predictions[name] = (ed_pred, es_pred)
        expected[name] = [(int(i), int(p), int(t.sum())) for (i, p), t in zip(counts, (ed_true, es_true))]
    return predictions, expected


def _expected_dice(expected, phases=(0, 1)):
    inter = sum(expected[n][p][0] for n in expected for p in phases)
    total = sum(expected[n][p][1] + expected[n][p][2] for n in expected for p in phases)
    return 2 * inter / total


def test_evaluate_exact_dice_outputs_and_summary(tmp_path):
    from unilvseg.evaluation.evaluate import evaluate_predictions

    root = _dataset(tmp_path, n_videos=4, efs=[55.0, 60.0, 65.0, 40.0])
    truths = _truths(root)
    assert all(t.sum() > 50 for pair in truths.values() for t in pair)
    predictions, expected = _known_predictions(truths)
    pred_dir = tmp_path / "pred"
    _write_predictions(pred_dir, predictions)
    pd.DataFrame({"FileName": ["V0", "V1", "V2", "V3"], "EDV": 1.0, "ESV": 1.0, "EF": [57.0, 60.0, 61.0, 50.0],
                  "EDFrame": ED, "ESFrame": ES}).to_csv(pred_dir / "volumes.csv", index=False)
    out = tmp_path / "out"
    summary = evaluate_predictions(root, pred_dir, out, split="test", samples=500, seed=1)

    table = pd.read_csv(out / "test_dice.csv").set_index("FileName")
    for name, ((i_ed, p_ed, t_ed), (i_es, p_es, t_es)) in expected.items():
        assert table.loc[name, "DiceED"] == pytest.approx(2 * i_ed / (p_ed + t_ed))
        assert table.loc[name, "DiceES"] == pytest.approx(2 * i_es / (p_es + t_es))
        assert table.loc[name, "DiceOverall"] == pytest.approx(2 * (i_ed + i_es) / (p_ed + t_ed + p_es + t_es))
        assert (table.loc[name, "IntersectionED"], table.loc[name, "PredAreaED"], table.loc[name, "TrueAreaED"]) == (i_ed, p_ed, t_ed)
    assert table.loc["V2", "DiceES"] == 0.0

    saved = json.loads((out / "summary.json").read_text())
    assert {"split", "n_videos", "samples", "ci", "convention", "overall", "ed", "es", "ef"} <= set(saved)
    assert saved["split"] == "test" and saved["n_videos"] == 4 and saved["samples"] == 500
    assert saved["convention"] == VIDEO and saved["ci"] == 0.95 and saved["percentiles"] == [2.5, 97.5]
    for key, phases in (("overall", (0, 1)), ("ed", (0,)), ("es", (1,))):
        block = saved[key]
        assert set(block) == {"dice", "low", "high"}
        assert block["dice"] == pytest.approx(_expected_dice(expected, phases))
        assert block["low"] <= block["dice"] <= block["high"]
    errors = np.abs(np.array([57.0, 60.0, 61.0, 50.0]) - [55.0, 60.0, 65.0, 40.0])
    assert saved["ef"]["mae"] == pytest.approx(errors.mean())
    assert saved["ef"]["low"] <= saved["ef"]["mae"] <= saved["ef"]["high"]
    assert saved["ef"]["n_videos"] == 4 and "r2" in saved["ef"]
    assert "all_frames" not in saved  # no ReferenceMasks in this dataset

    log_text = (out / "log.csv").read_text()
    overall = saved["overall"]
    assert f"test dice (overall): {overall['dice']:.4f} ({overall['low']:.4f} - {overall['high']:.4f})" in log_text
    assert re.search(r"test dice \(ED\): \d\.\d{4} \(\d\.\d{4} - \d\.\d{4}\)", log_text)
    assert "convention video" in log_text and "test ef mae: 4.00 (" in log_text  # |57-55|, 0, |61-65|, |50-40| -> 16 / 4
    assert summary["overall"] == saved["overall"]


def test_png_preferred_over_npz_and_npz_used_without_png(tmp_path):
    from unilvseg.evaluation.evaluate import evaluate_predictions

    root = _dataset(tmp_path, n_videos=2)
    truths = _truths(root)
    pred_dir = tmp_path / "pred"
    _write_predictions(pred_dir, {n: (np.zeros_like(a), np.zeros_like(b)) for n, (a, b) in truths.items()}, png=False)
    for name, (ed_true, es_true) in truths.items():  # PNGs correct, npz empty
        cv2.imwrite(str(pred_dir / f"{name}_{ED}_ED.png"), ed_true * 255)
        cv2.imwrite(str(pred_dir / f"{name}_{ES}_ES.png"), es_true * 255)
    summary = evaluate_predictions(root, pred_dir, tmp_path / "out", split="test", samples=50)
    assert summary["overall"]["dice"] == 1.0

    npz_only = tmp_path / "pred_npz"
    _write_predictions(npz_only, truths, png=False)
    summary = evaluate_predictions(root, npz_only, tmp_path / "out2", split="test", samples=50)
    assert summary["overall"]["dice"] == 1.0


def test_reference_convention_in_outputs(tmp_path):
    from unilvseg.evaluation.evaluate import evaluate_predictions

    root = _dataset(tmp_path, n_videos=4)
    predictions, expected = _known_predictions(_truths(root))
    _write_predictions(tmp_path / "pred", predictions)
    summary = evaluate_predictions(root, tmp_path / "pred", tmp_path / "out", samples=300, seed=3, reference=True)
    assert summary["convention"] == REFERENCE and summary["percentiles"] == [5.0, 95.0] and summary["ci"] == 0.95
    assert summary["overall"]["dice"] == pytest.approx(_expected_dice(expected))
    # Same numbers as the library call with the same stream.
    inter = np.array([[e[0] for e in expected[n]] for n in sorted(expected)])
    pred = np.array([[e[1] for e in expected[n]] for n in sorted(expected)])
    true = np.array([[e[2] for e in expected[n]] for n in sorted(expected)])
    direct = bootstrap_dice(inter, pred, true, samples=300, rng=np.random.default_rng(3), convention=REFERENCE)
    assert summary["overall"]["low"] == direct["overall"].low and summary["es"]["high"] == direct["es"].high
    assert "5th-95th percentiles, published convention" in (tmp_path / "out" / "log.csv").read_text()
    with pytest.raises(UserError, match="--ci 0.9 cannot be combined with --reference"):
        evaluate_predictions(root, tmp_path / "pred", tmp_path / "out", samples=10, reference=True, ci=0.9)


def test_missing_and_mismatched_predictions(tmp_path, capsys):
    from unilvseg.cli.evaluate import main
    from unilvseg.evaluation.evaluate import evaluate_predictions

    root = _dataset(tmp_path, n_videos=4)
    truths = _truths(root)
    pred_dir = tmp_path / "pred"
    _write_predictions(pred_dir, {n: m for n, m in truths.items() if n != "V2"})
    with pytest.raises(UserError, match=r"1 video\(s\) have no prediction for a traced frame: V2 .*--allow_missing"):
        evaluate_predictions(root, pred_dir, tmp_path / "out", samples=20)
    assert main(["--data_dir", str(root), "--prediction_dir", str(pred_dir), "--output_dir", str(tmp_path / "out"), "--samples", "20"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "out" / "summary.json").exists()

    code = main(["--data_dir", str(root), "--prediction_dir", str(pred_dir), "--output_dir", str(tmp_path / "out"),
                 "--samples", "20", "--allow_missing"])
    assert code == 0
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["n_videos"] == 3 and saved["skipped"] == {"missing_prediction": 1, "size_mismatch": 0}
    assert saved["skipped_videos"] == ["V2"] and saved["overall"]["dice"] == 1.0
    assert "skipped 1 video(s) (missing prediction" in (tmp_path / "out" / "log.csv").read_text()

    # An unreadable npz (no PNGs to fall back on) counts as a missing prediction, naming the file.
    (pred_dir / "masks" / "V2.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"V2 \(.*V2.npz: cannot read npz"):
        evaluate_predictions(root, pred_dir, tmp_path / "out", samples=20)
    (pred_dir / "masks" / "V2.npz").unlink()

    # A PNG of the wrong size is a mismatch, named in the error.
    cv2.imwrite(str(pred_dir / f"V0_{ED}_ED.png"), np.zeros((SIZE + 2, SIZE), np.uint8))
    with pytest.raises(UserError, match=r"wrong size: V0 \(V0_4_ED.png is 50x48, video is 48x48\)"):
        evaluate_predictions(root, pred_dir, tmp_path / "out", samples=20)
    with pytest.raises(UserError, match="--data_dir"):
        evaluate_predictions(tmp_path / "no_data", pred_dir, tmp_path / "out", samples=20)
    with pytest.raises(UserError, match="--prediction_dir"):
        evaluate_predictions(root, tmp_path / "nowhere", tmp_path / "out", samples=20)


def test_cli_plots_and_bad_flags(tmp_path, capsys):
    from unilvseg.cli.evaluate import main

    root = _dataset(tmp_path, n_videos=3, efs=[50.0, 60.0, 70.0])
    predictions, _ = _known_predictions(_truths(root))
    pred_dir = tmp_path / "pred"
    _write_predictions(pred_dir, predictions)
    pd.DataFrame({"FileName": ["V0.avi", "V1.avi", "V2.avi"], "EF": [52.0, 58.0, 71.0]}).to_csv(pred_dir / "volumes.csv", index=False)
    out = tmp_path / "out"
    args = ["--data_dir", str(root), "--prediction_dir", str(pred_dir), "--output_dir", str(out), "--samples", "100"]
    assert main(args + ["--plots", "--ci", "0.8"]) == 0
    assert "test dice (overall):" in capsys.readouterr().out
    for name in ("test_dice_histogram.png", "test_ef_scatter.png", "test_ef_bland_altman.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 100
    saved = json.loads((out / "summary.json").read_text())
    assert saved["ci"] == 0.8 and saved["percentiles"] == pytest.approx([10.0, 90.0])
    assert saved["plots"] == ["test_dice_histogram.png", "test_ef_scatter.png", "test_ef_bland_altman.png"]
    assert not list(out.glob(".tmp-*"))

    assert main(args + ["--ci", "1.5"]) == 2
    assert "error: --ci 1.5" in capsys.readouterr().err
    assert main(args + ["--samples", "0"]) == 2
    assert main(args + ["--split", "val"]) == 2  # no VAL videos in this dataset: DataError from the index
    assert "error:" in capsys.readouterr().err


def test_all_frames_dice_and_temporal_consistency(tmp_path):
    from unilvseg.evaluation.evaluate import evaluate_predictions

    # Reference: a square of side 10, 12, 10, 12, 10, 12 (area change 44 per frame).
    reference = np.zeros((FRAMES, SIZE, SIZE), np.uint8)
    for t in range(FRAMES):
        side = 10 if t % 2 == 0 else 12
        reference[t, 5 : 5 + side, 5 : 5 + side] = 1
    root = _dataset(tmp_path, n_videos=2, reference_masks={"V0": reference})  # V1 has no reference
    truths = _truths(root)
    pred_dir = tmp_path / "pred"
    _write_predictions(pred_dir, truths)  # traced frames perfect
    predicted = np.zeros_like(reference)
    predicted[:, 5:17, 5:17] = 1  # constant 12x12 covering the reference: no area change
    np.savez_compressed(pred_dir / "masks" / "V0.npz", masks=predicted)  # traced frames come from the PNGs
    summary = evaluate_predictions(root, pred_dir, tmp_path / "out", samples=20)

    block = summary["all_frames"]
    ref_area = reference.sum()
    assert block["n_videos"] == 1 and block["n_frames"] == FRAMES and block["skipped"]["no_reference"] == 1
    assert block["dice"] == pytest.approx(2 * ref_area / (FRAMES * 144 + ref_area))
    assert block["ref_mean_abs_area_change"] == pytest.approx(44.0)
    assert block["pred_mean_abs_area_change"] == 0.0
    assert block["area_change_difference"] == pytest.approx(-44.0)
    assert (tmp_path / "out" / "test_all_frames.csv").is_file()
    assert "all_frames" in json.loads((tmp_path / "out" / "summary.json").read_text())


@needs_real_data
@pytest.mark.real_data
def test_real_reference_masks_as_predictions(tmp_path):
    """EchoNet's own masks (ReferenceMasks) scored against the clinician-style tracings: ~0.97 Dice."""
    from unilvseg.data.index import load_index
    from unilvseg.evaluation.evaluate import evaluate_predictions

    pred_dir = tmp_path / "pred"
    (pred_dir / "masks").mkdir(parents=True)
    for record in load_index(REAL_MINI, split="all").records:
        masks = np.load(REAL_MINI / "ReferenceMasks" / f"{record.file_name}.npz")["masks"]
        np.savez_compressed(pred_dir / "masks" / f"{record.file_name}.npz", masks=masks)
    summary = evaluate_predictions(REAL_MINI, pred_dir, tmp_path / "out", split="all", samples=200)
    assert summary["n_videos"] == 4
    assert 0.9 < summary["overall"]["dice"] < 1.0  # the masks are not the rasterised tracings
    assert summary["overall"]["low"] < summary["overall"]["dice"] < summary["overall"]["high"]


def test_beat_wise_volumes_pair_ed_and_es_of_the_same_beat():
    """ED/ES come from one complete beat; a beat cut off in systole by the video end is ignored."""
    from unilvseg.evaluation.volumes import beats_from_volumes, volumes_from_masks

    t = np.arange(130)  # volume peaks at 10, 60, 110; the video ends mid-systole of beat 3
    radius = 20 + 6 * np.cos(2 * np.pi * (t - 10) / 50) + 2 * (t > 100)
    yy, xx = np.mgrid[:112, :112]
    masks = ((xx - 56) ** 2 + (yy - 56) ** 2 / 4.0 <= radius[:, None, None] ** 2).astype(np.uint8)
    volumes = volumes_from_masks(masks, beat_wise=False)["volumes"]
    beats = beats_from_volumes(volumes)
    assert [ed for ed, _ in beats] == [10, 60]
    assert all(abs(es - (ed + 25)) <= 1 for ed, es in beats)
    result = volumes_from_masks(masks)
    assert result["beats"] == 2 and (result["ed_frame"], result["es_frame"]) in beats
    # The whole-video extremes pair the larger third-beat ED with an ES of another beat.
    whole = volumes_from_masks(masks, beat_wise=False)
    assert whole["ed_frame"] > 100 and whole["es_frame"] < 100 and whole["ef"] > result["ef"]


def test_bootstrap_mean_reference_convention_is_the_published_order_statistics():
    """``--reference``: sorted(means)[round(0.05 S)] and [round(0.95 S)], independent of ``ci``;
    the default convention is the central percentile interval at ``ci``."""
    values = np.random.default_rng(4).gamma(2.0, 3.0, size=23)
    samples = 400
    indices = np.random.default_rng(9).integers(0, len(values), size=(samples, len(values)))
    means = sorted(values[ind].mean() for ind in indices)
    published = bootstrap_mean(values, samples=samples, rng=np.random.default_rng(9), convention=REFERENCE, ci=0.5)
    assert published.estimate == pytest.approx(values.mean(), rel=1e-12)
    assert (published.low, published.high) == pytest.approx((means[20], means[380]), rel=1e-12)
    central = bootstrap_mean(values, samples=samples, rng=np.random.default_rng(9), ci=0.5)
    assert (central.low, central.high) == pytest.approx(tuple(np.quantile(means, [0.25, 0.75])), rel=1e-12)
    with pytest.raises(ValueError, match="convention"):
        bootstrap_mean(values, samples=10, convention="echonet")


def test_nan_resamples_are_an_error_not_silently_dropped():
    # One video has a NaN error: the resamples that draw it are NaN; dropping them would give an
    # interval over the other videos only.
    values = np.array([1.0, 2.0, np.nan, 4.0])
    for convention in (VIDEO, REFERENCE):
        with pytest.raises(ValueError, match=r"\d+ of 200 bootstrap statistics are undefined"):
            bootstrap_mean(values, samples=200, rng=np.random.default_rng(0), convention=convention)
    # Dice: ES masks empty in prediction and reference for 3 of 4 videos -> some resamples 0/0.
    inter = np.array([[10, 0], [10, 0], [10, 0], [10, 5]])
    pred = np.array([[12, 0], [12, 0], [12, 0], [12, 5]])
    with pytest.raises(ValueError, match="undefined"):
        bootstrap_dice(inter, pred, pred, samples=200, rng=np.random.default_rng(0))


def test_beat_selection_over_five_beats_reports_the_median_ef_beat():
    """Five complete beats whose ES radii give distinct EFs: the docstring's rule picks the beat
    with the median EF (third largest of five), ED at its volume peak, ES at its minimum."""
    from unilvseg.evaluation.volumes import beats_from_volumes

    period, beats = 40, 5
    es_radius = [12.0, 16.0, 10.0, 14.0, 15.0]  # EF order: beat 2 > 0 > 3 > 4 > 1 -> median beat 3
    t = np.arange(period * beats + 21)
    radius = np.full(len(t), 20.0)
    radius[:10] = 17.0 + 0.3 * t[:10]  # filling before the first ED, so frame 10 is a peak
    for k in range(beats):  # ED (radius 20) at 10 + 40k, ES at 30 + 40k
        phase = (t - 10 - period * k) / period
        inside = (phase >= 0) & (phase < 1)
        radius[inside] = 20 - (20 - es_radius[k]) * 0.5 * (1 - np.cos(2 * np.pi * phase[inside]))
    yy, xx = np.mgrid[:112, :112]
    masks = ((xx - 56) ** 2 + (yy - 56) ** 2 / 4.0 <= radius[:, None, None] ** 2).astype(np.uint8)
    volumes = volumes_from_masks(masks, beat_wise=False)["volumes"]
    found = beats_from_volumes(volumes)
    assert [ed for ed, _ in found] == [10 + period * k for k in range(beats)]
    assert all(abs(es - (ed + 20)) <= 1 for ed, es in found)
    result = volumes_from_masks(masks, rule="volume_peaks")  # the rule that reports the median-EF beat
    assert result["beats"] == beats
    assert (result["ed_frame"], abs(result["es_frame"] - 150) <= 1) == (130, True)


def test_volume_edge_cases_exact_cylinder_and_empty_inputs():
    """A w x h box is exactly a cylinder for the method of disks (every slab w pixels wide):
    V = pi/4 w^2 h, for any number of disks. Plus argument checks, empty inputs and the fallback
    ED/ES choice without beats."""
    from unilvseg.evaluation.volumes import beats_from_volumes, ejection_fraction

    box = np.zeros((60, 40), np.uint8)
    box[10:40, 5:15] = 1  # 10 wide, 30 tall
    for disks in (1, 7, 20):
        assert method_of_disks(box, mm_per_pixel=1.0, disks=disks) == pytest.approx(np.pi / 4 * 100 * 30 / 1000, rel=1e-9)
    ellipse = _ellipse(25, 12, 30)
    assert method_of_disks(ellipse, disks=1) != pytest.approx(method_of_disks(ellipse), rel=0.01)  # disks pass through
    stack = np.stack([ellipse, ellipse])
    np.testing.assert_allclose(volumes_from_masks(stack, disks=1, beat_wise=False)["volumes"], method_of_disks(ellipse, disks=1))
    assert method_of_disks_batch(np.zeros((0, 5, 5))).shape == (0,)
    with pytest.raises(ValueError, match=r"^method_of_disks expects a mask of shape \(H, W\), got \(2, 2, 2\)$"):
        method_of_disks(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"^method_of_disks_batch expects masks of shape \(T, H, W\), got \(2, 2\)$"):
        method_of_disks_batch(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="^disks must be >= 1, got 0$"):
        method_of_disks_batch(np.zeros((1, 2, 2)), disks=0)
    with pytest.raises(ValueError, match="^mm_per_pixel must be > 0, got 0$"):
        method_of_disks_batch(np.zeros((1, 2, 2)), mm_per_pixel=0)
    with pytest.raises(ValueError, match=r"^volumes_from_masks expects masks of shape \(T, H, W\), got \(2, 2\)$"):
        volumes_from_masks(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"^frame_range \(1, 1\) outside the 2 frames$"):
        volumes_from_masks(stack, frame_range=(1, 1))
    assert (ejection_fraction(0.5, 0.25), ejection_fraction(60.0, 20.0)) == (50.0, pytest.approx(200 / 3))
    assert np.isnan(ejection_fraction(0.0, 0.0))
    assert beats_from_volumes([]) == []
    empty = volumes_from_masks(np.zeros((2, 4, 4), np.uint8))
    assert {k: empty[k] for k in ("edv", "esv", "ed_frame", "es_frame", "beats")} == {
        "edv": 0.0, "esv": 0.0, "ed_frame": -1, "es_frame": -1, "beats": 0}
    assert np.isnan(empty["ef"]) and empty["areas"].tolist() == [0, 0] and empty["volumes"].tolist() == [0.0, 0.0]
    # Without beats: ED = largest area (frame 0 included), ES = smallest non-empty (a 1-pixel frame counts).
    frames = np.zeros((4, 60, 40), np.uint8)
    frames[0] = box
    frames[1, 10:20, 5:15] = 1
    frames[3, 30, 20] = 1
    result = volumes_from_masks(frames, beat_wise=False)
    assert (result["ed_frame"], result["es_frame"]) == (0, 3) and result["areas"].dtype == np.int64
    single = np.zeros((2, 60, 40), np.uint8)
    single[1, 3, 3] = 1
    assert volumes_from_masks(single, beat_wise=False)["ed_frame"] == 1


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_beats_do_not_depend_on_the_volume_unit(scale):
    """Beat detection is relative to the volume range: the same curve in other units gives the
    same beats (catches absolute thresholds)."""
    from unilvseg.evaluation.volumes import beats_from_volumes

    t = np.arange(221)
    volumes = 50 + 20 * np.cos(2 * np.pi * (t - 10) / 40)
    volumes[:10] = 50 + 20 * np.cos(2 * np.pi * 0.0) - 3 * (10 - t[:10]) / 10
    reference = beats_from_volumes(volumes)
    assert len(reference) >= 4 and beats_from_volumes(volumes * scale) == reference
