"""Biplane method of disks (Simpson's rule, two orthogonal apical views) against an analytic
ellipsoid whose two short semi-axes differ, seen in its two orthogonal long-axis planes."""

from __future__ import annotations

import numpy as np
import pytest

from unilvseg.evaluation.volumes import biplane_method_of_disks_batch, method_of_disks_batch


def ellipse_mask(long_semi: float, short_semi: float, size: int = 128, angle_deg: float = 0.0) -> np.ndarray:
    """The ellipsoid's cut through its long axis: an ellipse, long axis vertical turned by angle."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    yy -= size / 2
    xx -= size / 2
    t = np.deg2rad(angle_deg)
    along = yy * np.cos(t) + xx * np.sin(t)
    across = -yy * np.sin(t) + xx * np.cos(t)
    return (along / long_semi) ** 2 + (across / short_semi) ** 2 <= 1.0


@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_biplane_volume_of_an_ellipsoid_with_unequal_short_axes(angle):
    long_semi, a, b = 48.0, 22.0, 13.0  # pixels; the A4C plane sees a, the A2C plane sees b
    a4c = ellipse_mask(long_semi, a, angle_deg=angle)[None]
    a2c = ellipse_mask(long_semi, b, angle_deg=-angle)[None]
    truth_ml = 4.0 / 3.0 * np.pi * long_semi * a * b * 1.0 / 1000.0  # 1 mm per pixel
    biplane = biplane_method_of_disks_batch(a4c, a2c, mm_per_pixel=1.0)[0]
    single = method_of_disks_batch(a4c, mm_per_pixel=1.0)[0]
    assert biplane == pytest.approx(truth_ml, rel=0.03)
    # Disks of revolution from the A4C plane alone assume b == a: about a / b too large.
    assert single / truth_ml == pytest.approx(a / b, rel=0.05)


def bullet_mask(length: float, radius: float, angle_deg: float, size: int = 128) -> np.ndarray:
    """An LV-like long-axis section: a half-ellipse apex (the top 60 %) on a straight base,
    cut flat at the base; apex up, turned by ``angle_deg``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    t = np.deg2rad(angle_deg)
    yy, xx = yy - 20.0, xx - size / 2
    along = yy * np.cos(t) + xx * np.sin(t)  # from the apex
    across = -yy * np.sin(t) + xx * np.cos(t)
    return (along >= 0) & (along <= length) & (np.abs(across) <= bullet_radius(along, length, radius))


def bullet_radius(along, length, radius):
    apex = 0.6 * length
    return radius * np.sqrt(np.clip(1.0 - ((apex - np.minimum(along, apex)) / apex) ** 2, 0.0, 1.0))


@pytest.mark.parametrize("angles", [(6.0, -6.0), (-4.0, 9.0), (5.0, 5.0)])
def test_biplane_pairs_apex_with_apex_whichever_way_each_view_is_tilted(angles):
    """An LV tilted either side of vertical gives a principal axis pointing either way; slab i
    of one view must still meet slab i (from the apex) of the other, not the base's."""
    length, a, b = 70.0, 20.0, 13.0
    a4c, a2c = bullet_mask(length, a, angles[0])[None], bullet_mask(length, b, angles[1])[None]
    x = (np.arange(100_000) + 0.5) / 100_000 * length
    truth_ml = float(np.pi * np.mean(bullet_radius(x, length, a) * bullet_radius(x, length, b)) * length) / 1000.0
    assert biplane_method_of_disks_batch(a4c, a2c, mm_per_pixel=1.0)[0] == pytest.approx(truth_ml, rel=0.03)


def test_biplane_equals_single_plane_for_a_body_of_revolution():
    mask = ellipse_mask(40.0, 18.0)[None]
    assert biplane_method_of_disks_batch(mask, mask)[0] == pytest.approx(method_of_disks_batch(mask)[0], rel=1e-12)


def test_biplane_uses_the_longer_axis_for_the_disk_height():
    """A foreshortened second view (shorter long axis) must not shrink the volume's length."""
    long_semi, a = 45.0, 16.0
    a4c = ellipse_mask(long_semi, a)[None]
    foreshortened = ellipse_mask(0.8 * long_semi, a)[None]
    full = biplane_method_of_disks_batch(a4c, a4c, mm_per_pixel=1.0)[0]
    short = biplane_method_of_disks_batch(a4c, foreshortened, mm_per_pixel=1.0)[0]
    assert short == pytest.approx(full, rel=0.03)


def test_biplane_frames_pair_in_order_and_empty_frames_give_zero():
    big, small = ellipse_mask(44.0, 20.0), ellipse_mask(34.0, 14.0)
    empty = np.zeros_like(big)
    a4c = np.stack([big, small, big])
    a2c = np.stack([big, small, empty])
    volumes = biplane_method_of_disks_batch(a4c, a2c)
    assert volumes[0] > volumes[1] > 0 and volumes[2] == 0.0
    with pytest.raises(ValueError, match="equal T"):
        biplane_method_of_disks_batch(a4c, a2c[:2])


def beating_ellipsoid_views(frames: int, period: float, phase: float, ed=(46.0, 21.0, 14.0), es=(38.0, 15.0, 12.5)):
    """A4C and A2C mask videos of one ellipsoid ventricle beating with ``period`` frames, the
    cycle shifted by ``phase`` (fraction of a beat): semi-axes (long, A4C short, A2C short)."""
    t = np.arange(frames)
    # 0 at ED, 1 at ES: a smooth cycle.
    squeeze = 0.5 - 0.5 * np.cos(2 * np.pi * (t / period + phase))
    axes = np.array(ed)[None] + squeeze[:, None] * (np.array(es) - np.array(ed))[None]
    a4c = np.stack([ellipse_mask(L, a) for L, a, _ in axes])
    a2c = np.stack([ellipse_mask(L, b) for L, _, b in axes])
    return a4c, a2c


def test_biplane_ef_pairs_beats_by_phase_across_two_recordings():
    # The A2C short axis contracts less than the A4C one (12.5/14 against 15/21), so the A4C
    # plane alone misreads the EF (disks of revolution assume both contract alike).
    ed, es = (46.0, 21.0, 14.0), (38.0, 15.0, 12.5)
    truth_ef = 100.0 * (1 - (es[0] * es[1] * es[2]) / (ed[0] * ed[1] * ed[2]))
    a4c, _ = beating_ellipsoid_views(150, 40.0, 0.0, ed, es)
    _, a2c = beating_ellipsoid_views(130, 40.0, 0.37, ed, es)  # recorded later: another phase and length
    from unilvseg.evaluation.volumes import biplane_volumes

    result = biplane_volumes(a4c, a2c, fps_a4c=50.0, fps_a2c=50.0)
    assert result["method"] == "biplane" and result["beats"] >= 2
    assert abs(result["ef"] - truth_ef) < 3.0
    from unilvseg.evaluation.volumes import volumes_from_masks

    assert abs(volumes_from_masks(a4c, fps=50.0)["ef"] - truth_ef) > 6.0
    for (ed4, es4), (ed2, es2) in result["beat_frames"]:  # ED with ED, ES with ES in each view
        assert a4c[ed4].sum() > a4c[es4].sum() and a2c[ed2].sum() > a2c[es2].sum()
    # Frame t of one recording with frame t of the other (no phase alignment) is far off.
    naive = biplane_method_of_disks_batch(a4c[:130], a2c)
    naive_ef = 100.0 * (1 - naive.min() / naive.max())
    assert abs(naive_ef - truth_ef) > 5.0


def test_biplane_falls_back_to_single_plane_and_says_so():
    from unilvseg.evaluation.volumes import biplane_volumes, volumes_from_masks

    a4c, a2c = beating_ellipsoid_views(120, 40.0, 0.0)
    single = volumes_from_masks(a4c)
    for other, reason in ((None, "no A2C video"), (np.zeros_like(a2c), "no beat in the A2C video")):
        result = biplane_volumes(a4c, other)
        assert result["method"] == f"single-plane A4C ({reason})"
        assert result["ef"] == pytest.approx(single["ef"])
