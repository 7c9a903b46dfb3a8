"""The bootstrap over seeds and videos (unilvseg.evaluation.bootstrap.seed_video_bootstrap_*),
shared by evaluate_bootstrap.py --seeds, the low-label and the real-echo benchmarks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from unilvseg.evaluation.bootstrap import bootstrap_dice, seed_video_bootstrap_dice, seed_video_bootstrap_mean


def _counts(dice: np.ndarray, area: float = 1000.0):
    """(inter, pred, true) of shape dice.shape + (2,) with exactly these Dice values at ED and ES."""
    dice = np.asarray(dice, dtype=np.float64)
    true = np.full(dice.shape + (2,), area)
    pred = true.copy()
    inter = np.repeat((dice * area)[..., None], 2, axis=-1)
    return inter, pred, true


def test_statistic_is_the_mean_over_drawn_seeds_of_each_seeds_pooled_dice_over_drawn_videos():
    # 2 seeds x 2 videos, different areas so pooling is not averaging: enumerate all 16 resamples.
    inter = np.array([[[30, 30], [10, 10]], [[45, 45], [5, 5]]], dtype=float)
    pred = np.array([[[40, 40], [20, 20]], [[50, 50], [10, 10]]], dtype=float)
    true = np.array([[[40, 40], [20, 20]], [[50, 50], [20, 20]]], dtype=float)
    expected = set()
    for seeds in itertools.product(range(2), repeat=2):
        for videos in itertools.product(range(2), repeat=2):
            per_seed = [2 * inter[s, list(videos)].sum() / (pred[s, list(videos)].sum() + true[s, list(videos)].sum()) for s in seeds]
            expected.add(round(float(np.mean(per_seed)), 10))
    result = seed_video_bootstrap_dice((inter, pred, true), samples=4000, rng=np.random.default_rng(0), ci=0.5)
    # Every drawn statistic is one of the enumerated values, and the percentiles are among them.
    assert round(result["overall"].low, 10) in expected and round(result["overall"].high, 10) in expected
    per_seed_full = [2 * inter[s].sum() / (pred[s].sum() + true[s].sum()) for s in range(2)]
    assert result["overall"].estimate == pytest.approx(np.mean(per_seed_full))


def test_interval_includes_the_spread_between_seeds():
    # Five seeds of very different quality, identical on every video: resampling videos alone
    # (seeds pooled) gives an interval of width ~0; over seeds and videos it must not.
    seed_dice = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    noise = np.random.default_rng(1).normal(0, 0.005, size=(5, 40))
    counts = _counts(seed_dice[:, None] + noise)
    pooled = bootstrap_dice(*(c.sum(axis=0) for c in counts), samples=2000, rng=np.random.default_rng(0))
    both = seed_video_bootstrap_dice(counts, samples=2000, rng=np.random.default_rng(0))
    assert pooled["overall"].high - pooled["overall"].low < 0.01
    assert both["overall"].high - both["overall"].low > 0.15
    assert both["overall"].low < 0.65 and both["overall"].high > 0.75
    assert both["overall"].estimate == pytest.approx(0.7, abs=0.003)


def test_one_seed_agrees_with_the_video_bootstrap():
    rng = np.random.default_rng(3)
    counts = _counts(rng.uniform(0.6, 0.95, size=(1, 200)))
    ours = seed_video_bootstrap_dice(counts, samples=4000, rng=np.random.default_rng(0))
    videos = bootstrap_dice(*(c[0] for c in counts), samples=4000, rng=np.random.default_rng(0))
    for key in ("overall", "ed", "es"):
        assert ours[key].estimate == pytest.approx(videos[key].estimate)
        assert ours[key].low == pytest.approx(videos[key].low, abs=0.004)
        assert ours[key].high == pytest.approx(videos[key].high, abs=0.004)


def test_paired_seeds_cancel_what_both_methods_share():
    # Seed k of both methods shares a large seed effect (e.g. the labelled subset); B is 0.02 better
    # on every seed and video. Paired seeds: a narrow interval around -0.02. Unpaired: wide.
    rng = np.random.default_rng(2)
    seed_effect = np.array([0.55, 0.7, 0.85, 0.6, 0.8])[:, None]
    base = seed_effect + rng.normal(0, 0.01, size=(5, 30))
    a, b = _counts(base), _counts(base + 0.02)
    paired = seed_video_bootstrap_dice(a, b, samples=3000, rng=np.random.default_rng(0))
    unpaired = seed_video_bootstrap_dice(a, b, samples=3000, rng=np.random.default_rng(0), paired_seeds=False)
    assert paired["overall"].estimate == pytest.approx(-0.02, abs=1e-9)
    assert -0.025 < paired["overall"].low < paired["overall"].high < -0.015
    assert paired["overall"].fraction_not_above_zero == 1.0
    assert unpaired["overall"].high - unpaired["overall"].low > 0.1 and unpaired["overall"].high > 0
    with pytest.raises(ValueError, match="same videos"):
        seed_video_bootstrap_dice(a, _counts(base[:, :10]))
    with pytest.raises(ValueError, match="as many seeds"):
        seed_video_bootstrap_dice(a, _counts(base[:3]), paired_seeds=True)


def test_mean_over_seeds_and_videos_enumerates_and_refuses_undefined_cells():
    values = np.array([[1.0, 2.0, 3.0], [5.0, 7.0, 13.0]])
    result = seed_video_bootstrap_mean(values, samples=20000, rng=np.random.default_rng(0), ci=0.9)
    assert result.estimate == pytest.approx(values.mean())
    expected = set()
    for seeds in itertools.product(range(2), repeat=2):
        for videos in itertools.product(range(3), repeat=3):
            cells = values[np.ix_(seeds, videos)]
            expected.add(round(float(cells.mean()), 10))
    assert round(result.low, 10) in expected and round(result.high, 10) in expected
    assert result.low < result.estimate < result.high
    with pytest.raises(ValueError, match="not finite"):
        seed_video_bootstrap_mean(np.array([[1.0, np.nan]]))
