"""Stage-1 label-free failure modes seen on real echo (issue 12), each on a synthetic A4C video
that reproduces it, plus a check on real EchoNet frames.

The synthetic heart: fan from the top, LV right of the bisector, RV left of it, the two atria
below, bright speckled tissue between dark chambers. Each test switches on one failure mode:
an open mitral valve joining LV and LA, a septal drop-out joining LV and RV, a dilated LV,
a small LV, low contrast with wall drop-out. Expected masks are the drawn LV itself, not
anything computed by the code under test.
"""

from __future__ import annotations


import numpy as np
import pytest

from conftest import SHARED_DATA, needs_real_data
from unilvseg.labelfree.classical import (
    WeakLabelParams,
    cut_at_valve_plane,
    detect_sector,
    find_septum,
    lv_side_of_septum,
    weak_lv_labels,
)

SIZE = 112
APEX = (56.0, 2.0)


def _ellipse(center, radii, size=SIZE):
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    return ((xs - center[0]) / radii[0]) ** 2 + ((ys - center[1]) / radii[1]) ** 2 <= 1.0


def synthetic_a4c(
    frames: int = 24,
    lv_scale: float = 1.0,
    valve_open: bool = False,
    septal_gap: bool = False,
    tissue: float = 120.0,
    blood: float = 18.0,
    lateral_dropout: bool = False,
    seed: int = 0,
):
    """``(video uint8 (T, H, W, 3), lv bool (T, H, W), la bool (H, W), rv bool (H, W))``.

    The LV contracts over a beat (long axis 14 %, short axis 25 %, apex fixed). With
    ``valve_open`` the mitral valve is open (a wide dark gap into the LA) in the first half of
    the beat (diastole) and closed (a bright band) in the second; ``septal_gap`` removes the
    septum over 14 rows so LV and RV form one pool in every frame.
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    dx, dy = xs - APEX[0], ys - APEX[1]
    fan = (np.hypot(dx, dy) <= 106) & (np.abs(np.degrees(np.arctan2(dx, dy))) <= 38) & (dy > 0)
    phase = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frames) / frames)  # 0 = ED, 1 = ES
    apex_y, base_y = 14.0, 72.0
    rv = _ellipse((36, 46), (10, 24)) & ~_ellipse((58, 46), (8, 30))
    la = _ellipse((70, 88), (14, 11))
    ra = _ellipse((38, 88), (12, 10))
    video = np.empty((frames, SIZE, SIZE), np.float64)
    lv = np.zeros((frames, SIZE, SIZE), bool)
    for t in range(frames):
        length = (base_y - apex_y) * (1 - 0.14 * phase[t]) * min(lv_scale, 1.0)  # dilation: rounder, not longer
        half_width = 14.0 * lv_scale * (1 - 0.25 * phase[t])
        centre_y = apex_y + length / 2
        lv[t] = _ellipse((70, centre_y), (half_width, length / 2)) & (ys <= apex_y + length)
        image = np.full((SIZE, SIZE), tissue)
        pools = lv[t] | rv | la | ra
        if valve_open and phase[t] < 0.5 and t < frames // 2:
            # Open mitral valve: the dark gap between LV base and LA spans the whole annulus, so
            # the LV and LA form one pool with no neck to cut at.
            pools |= (np.abs(xs - 70) <= 13) & (ys >= apex_y + length - 6) & (ys <= 84)
        if septal_gap:
            pools |= (xs >= 40) & (xs <= 64) & (ys >= 42) & (ys <= 56)
        image[pools] = blood
        if lateral_dropout:
            image[(xs >= 84) & (ys >= 30) & (ys <= 50) & ~pools] = blood * 1.5
        speckle = rng.gamma(4.0, 0.25, (SIZE, SIZE))
        video[t] = image * speckle
    video = np.clip(video, 0, 255) * fan
    video = np.repeat(video.astype(np.uint8)[..., None], 3, axis=-1)
    return video, lv & fan, la & fan, rv & fan


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def _score(masks, lv, other):
    """Per-frame Dice against the drawn LV, and the fraction of ``other`` the label covers."""
    dice = np.array([_dice(m, t) for m, t in zip(masks, lv)])
    leak = np.array([(m.astype(bool) & other).sum() / other.sum() for m in masks])
    return dice, leak


def test_open_mitral_valve_does_not_leak_into_the_left_atrium():
    video, lv, la, _ = synthetic_a4c(valve_open=True)
    masks, _ = weak_lv_labels(video)
    dice, leak = _score(masks, lv, la)
    # Open-valve frames are the first half; without the valve-plane cut the label takes the LA.
    assert leak.max() < 0.15, np.round(leak, 2)
    assert np.median(dice) > 0.85 and dice.min() > 0.7, np.round(dice, 2)


def test_septal_dropout_does_not_take_the_right_ventricle():
    video, lv, _, rv = synthetic_a4c(septal_gap=True)
    masks, info = weak_lv_labels(video)
    assert info["septum"] is not None
    dice, leak = _score(masks, lv, rv)
    assert leak.max() < 0.1, np.round(leak, 2)
    assert np.median(dice) > 0.85, np.round(dice, 2)


@pytest.mark.parametrize("lv_scale", [0.75, 1.35])
def test_small_and_dilated_ventricles(lv_scale):
    video, lv, la, rv = synthetic_a4c(lv_scale=lv_scale, septal_gap=lv_scale > 1)
    masks, _ = weak_lv_labels(video)
    dice, leak_rv = _score(masks, lv, rv)
    _, leak_la = _score(masks, lv, la)
    assert np.median(dice) > 0.8, np.round(dice, 2)
    assert leak_rv.max() < 0.15 and leak_la.max() < 0.15


def test_low_contrast_and_lateral_wall_dropout():
    video, lv, la, rv = synthetic_a4c(tissue=55.0, blood=22.0, lateral_dropout=True, valve_open=True)
    masks, _ = weak_lv_labels(video)
    dice, leak = _score(masks, lv, la | rv)
    assert np.median(dice) > 0.75, np.round(dice, 2)
    assert np.median(leak) < 0.1


def test_find_septum_locates_the_drawn_septum_and_declines_without_one():
    video, *_ = synthetic_a4c()
    sector = detect_sector(video)
    septum = find_septum(video[..., 0], sector)
    assert septum is not None
    a, b = septum
    # The drawn septum runs between RV (x <= 46) and LV (x >= 56) at rows 25-60.
    for y in (25, 40, 55):
        assert 45 <= a + b * y <= 57, (y, a + b * y)
    side = lv_side_of_septum((SIZE, SIZE), septum)
    assert side[40, 75] and not side[40, 36]
    # A fan of uniform speckle has no ridge: no septum is trusted.
    rng = np.random.default_rng(1)
    flat = (rng.gamma(4.0, 25.0, video.shape[:3]) * (video[..., 0] > 0)).clip(0, 255).astype(np.uint8)
    assert find_septum(flat, sector) is None


def test_valve_plane_cut_keeps_closed_valve_frames_and_trims_long_ones():
    sector = detect_sector(synthetic_a4c()[0])
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    # On the apex's vertical, so "along the LV axis" is the row minus the apex row (2).
    lv = (np.abs(xs - 56) <= 10) & (ys >= 14) & (ys <= 70)  # 57 px long, 21 wide
    with_la = lv | ((np.abs(xs - 56) <= 10) & (ys <= 98))
    masks = np.stack([lv] * 6 + [with_la] * 4)
    cut = cut_at_valve_plane(masks, sector, length_ratio=1.2)
    assert (cut[:6] == lv).all()  # closed-valve frames are left alone
    # Long frames keep rows up to near end (12) + 1.2 x 57 = 80.4 along the axis, i.e. y <= 82.
    assert cut[6:, 83:].sum() == 0 and (cut[6:, :83] == with_la[:83]).all()
    # Short, wide "LV" frames are no ventricle: nothing is cut.
    wide = (np.abs(xs - 56) <= 25) & (ys >= 14) & (ys <= 40)
    assert (cut_at_valve_plane(np.stack([wide] * 6 + [with_la] * 4), sector) == np.stack([wide] * 6 + [with_la] * 4)).all()


def test_both_cuts_can_be_switched_off():
    video, lv, la, _ = synthetic_a4c(valve_open=True)
    masks, info = weak_lv_labels(video, params=WeakLabelParams(septum_max_angle=0, valve_length_ratio=0))
    assert info["septum"] is None


ECHONET_REAL = SHARED_DATA / "echonet-real"


@needs_real_data
@pytest.mark.real_data
def test_stage1_on_every_frame_of_the_dense_train_references():
    """Stage-1 labels against the dense ReferenceMasks of the 3 traced TRAIN videos, every frame
    (573 frames). Label-free training uses no tracing and no reference mask, so these are an
    untouched reference for it; the human-traced VAL/TEST frames are not looked at here (they
    are kept for one final check of the trained schemes).
    Measured (this code, 2026-12-06): pooled Dice 0.80 / 0.92 / 0.80, worst frame 0.58;
    the floors below only catch a collapse (a label that misses the LV)."""
    from unilvseg.data.index import load_index, reference_masks
    from unilvseg.data.video import read_video

    index = load_index(ECHONET_REAL, split="train", require_tracings=True)
    assert len(index.records) == 3
    for record in index.records:
        reference = reference_masks(ECHONET_REAL, record.file_name) > 0
        masks, _ = weak_lv_labels(read_video(record.path))
        n = min(len(reference), len(masks))
        per_frame = [_dice(masks[t], reference[t]) for t in range(n)]
        pooled = 2 * (masks[:n].astype(bool) & reference[:n]).sum() / (masks[:n].astype(bool).sum() + reference[:n].sum())
        assert pooled > 0.7 and min(per_frame) > 0.4, (record.file_name, round(float(pooled), 3), round(float(min(per_frame)), 3))
