"""Anatomical-position pretext: class maps, label-free geometry, the task, transfer, the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from unilvseg.data.video import read_video
from unilvseg.errors import UserError
from unilvseg.labelfree.classical import SectorGeometry
from unilvseg.tasks import TASKS
from unilvseg.tasks.anatomical import (
    FIGURE_NAME,
    AnatomicalPositionTask,
    AnatomicalTargets,
    PositionGeometry,
    estimate_geometry,
    position_map,
    sector_fallback_geometry,
)
from unilvseg.tasks.ssl import TemporalMaskingTask
from unilvseg.tasks.weak import WeakSegmentationTask

TINY = dict(encoder="3d_unet_tiny", frames=16)


def fan_mask(size: int = 112, apex=(56.0, 2.0), radius: float = 100.0, half_angle: float = 40.0) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = xs - apex[0], ys - apex[1]
    angle = np.degrees(np.arctan2(dx, dy))
    return (np.hypot(dx, dy) <= radius) & (np.abs(angle) <= half_angle) & (dy >= 0)


def first_video(data: Path, frames: int = 24) -> np.ndarray:
    return read_video(sorted((data / "Videos").glob("*.avi"))[0])[:frames]


def rotate_about_centre(stack: np.ndarray, degrees: float, nearest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rotate every (H, W) image of ``stack`` about the image centre; returns (images, 2x3 matrix)."""
    height, width = stack.shape[1:3]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    rotated = np.stack([cv2.warpAffine(image, matrix, (width, height), flags=flags, borderValue=0) for image in stack])
    return rotated, matrix


# -- position maps ------------------------------------------------------------------------------


def test_every_pixel_gets_one_class_and_background_is_exactly_outside_the_fan():
    sector = fan_mask()
    geometry = PositionGeometry(centre=(62.0, 50.0), axis_angle=math.radians(10), half_length=28.0, half_width=12.0)
    classes = position_map(sector, geometry, along_bins=4, across_bins=4)
    assert classes.shape == sector.shape and classes.dtype == np.uint8
    assert classes.min() >= 0 and classes.max() <= 16
    assert np.array_equal(classes == 0, ~sector)
    # The LV-scaled tiles and the open outer bins cover the fan: all 16 tiles occur.
    assert set(np.unique(classes[sector]).tolist()) == set(range(1, 17))


def test_tiles_follow_the_axis_in_semi_axis_units():
    sector = np.ones((101, 101), bool)
    geometry = PositionGeometry(centre=(50.0, 50.0), axis_angle=0.0, half_length=20.0, half_width=10.0)  # axis points down
    classes = position_map(sector, geometry, 4, 4)

    def tile(x, y):
        value = int(classes[y, x]) - 1
        return divmod(value, 4)  # (along bin, across bin)

    assert tile(50 + 5, 50 - 30) == (0, 2)  # beyond the apex end, just right of the axis
    assert tile(50 - 5, 50 - 10) == (1, 1)  # apical half, left
    assert tile(50 + 5, 50 + 10) == (2, 2)  # basal half, right
    assert tile(50 - 15, 50 + 30) == (3, 0)  # beyond the base, far left
    assert tile(50 + 15, 50 + 5) == (2, 3)  # far right
    with pytest.raises(UserError, match="bins"):
        position_map(sector, geometry, 0, 4)


def test_rotating_the_frame_by_90_degrees_rotates_the_class_map():
    sector = fan_mask()
    geometry = PositionGeometry(centre=(61.5, 47.5), axis_angle=math.radians(12), half_length=30.0, half_width=13.0)
    classes = position_map(sector, geometry)
    width = sector.shape[1]
    # np.rot90 maps (x, y) -> (y, W - 1 - x) and a direction (ux, uy) -> (uy, -ux).
    ux, uy = geometry.direction
    rotated_geometry = PositionGeometry(
        centre=(geometry.centre[1], width - 1 - geometry.centre[0]),
        axis_angle=math.atan2(uy, -ux),
        half_length=geometry.half_length,
        half_width=geometry.half_width,
    )
    rotated = position_map(np.rot90(sector), rotated_geometry)
    assert (rotated == np.rot90(classes)).mean() > 0.995


@pytest.mark.parametrize(
    "degrees",
    [
        20.0,
        pytest.param(-15.0, marks=pytest.mark.xfail(
            strict=True,
            reason="known stage-1 failure since the septum bound (issue 12): on this phantom turned by -15 degrees "
            "the weak labels join the LA in most frames, so the LV centre moves 5.1 px (limit 3); open",
        )),
    ],
)
def test_estimated_geometry_and_map_follow_a_rotated_echo(tiny_phantom, degrees):
    # Pad so the rotated fan stays inside the image, then rotate every frame about the centre.
    video = first_video(tiny_phantom)[..., 0]
    padded = np.pad(video, ((0, 0), (24, 24), (24, 24)))
    rotated, matrix = rotate_about_centre(padded, degrees)

    geometry, sector = estimate_geometry(padded)
    turned, turned_sector = estimate_geometry(rotated)
    assert geometry.source == turned.source == "lv"
    expected_centre = matrix[:, :2] @ np.array(geometry.centre) + matrix[:, 2]
    assert np.hypot(*(np.array(turned.centre) - expected_centre)) < 3.0
    expected_direction = matrix[:, :2] @ geometry.direction
    assert math.degrees(math.acos(np.clip(expected_direction @ turned.direction, -1, 1))) < 8.0

    classes = position_map(sector.mask, geometry)
    rotated_classes, _ = rotate_about_centre(classes[None], degrees, nearest=True)
    inside = turned_sector.mask & (rotated_classes[0] > 0)
    agreement = (position_map(turned_sector.mask, turned)[inside] == rotated_classes[0][inside]).mean()
    assert agreement > 0.85


def test_fan_only_fallback_when_there_is_no_ventricle():
    # A bright speckled fan with no dark pool: the weak LV labels find nothing.
    rng = np.random.default_rng(0)
    sector = fan_mask()
    frames = np.where(sector, rng.integers(150, 200, size=(16, 112, 112)), 0).astype(np.uint8)
    geometry, detected = estimate_geometry(frames)
    assert geometry.source == "sector"
    assert abs(geometry.axis_angle - detected.axis_angle) < 1e-9
    cx, cy = geometry.centre
    assert detected.mask[int(round(cy)), int(round(cx))]
    assert cy > detected.apex[1] + 0.3 * detected.radius
    classes = position_map(detected.mask, geometry)
    assert np.array_equal(classes == 0, ~detected.mask)


def test_fan_fallback_rotates_with_the_fan():
    sector = SectorGeometry(mask=fan_mask(), apex=(56.0, 2.0), axis_angle=0.0, radius=100.0)
    tilted = SectorGeometry(mask=fan_mask(), apex=(56.0, 2.0), axis_angle=math.radians(30), radius=100.0)
    a, b = sector_fallback_geometry(sector), sector_fallback_geometry(tilted)
    turn = math.radians(30)
    offset_a = np.array(a.centre) - np.array(sector.apex)
    rotation = np.array([[math.cos(turn), math.sin(turn)], [-math.sin(turn), math.cos(turn)]])  # +angle = towards +x
    assert np.allclose(rotation @ offset_a, np.array(b.centre) - np.array(tilted.apex), atol=1e-6)
    assert math.isclose(b.axis_angle - a.axis_angle, turn)


def test_targets_repeat_one_cached_map_per_video(tiny_phantom, monkeypatch):
    import unilvseg.tasks.anatomical as anatomical

    calls = []
    original = anatomical.estimate_geometry
    monkeypatch.setattr(anatomical, "estimate_geometry", lambda frames: calls.append(1) or original(frames))
    video_path = sorted((tiny_phantom / "Videos").glob("*.avi"))[0]
    frames = read_video(video_path)
    targets = AnatomicalTargets()
    record = type("Record", (), {"path": video_path})()
    first = targets(record, np.arange(16), frames[:16], None)
    again = targets(record, np.arange(20, 36), frames[20:36], None)
    assert len(calls) == 1
    assert first["mask"].shape == (16, 112, 112) and first["mask"].dtype == np.uint8
    assert first["labelled"].all() and first["labelled"].dtype == bool
    assert (first["mask"] == first["mask"][:1]).all()
    assert np.array_equal(first["mask"], again["mask"])
    assert first["mask"].max() <= 16 and (first["mask"] > 0).mean() > 0.3
    assert targets.cached_geometry(record, (112, 112)) is not None


# -- the task -----------------------------------------------------------------------------------


def position_batch(batch_size: int = 2, frames: int = 16, size: int = 32) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "video": torch.randn(batch_size, 3, size, size, frames, generator=generator) + 3.0,
        "mask": torch.randint(0, 17, (batch_size, 1, size, size, frames), generator=generator).to(torch.uint8),
        "labelled": torch.ones(batch_size, frames, dtype=torch.bool),
        "skipped": torch.tensor(0),
    }


def test_task_is_registered_and_predicts_one_channel_per_class():
    assert TASKS["anatomical_position"] is AnatomicalPositionTask
    task = AnatomicalPositionTask(**TINY)
    assert task.n_classes == 17
    batch = position_batch()
    assert task(batch["video"]).shape == (2, 17, 32, 32, 16)
    loss, parts = task.compute_loss(batch)
    loss.backward()
    # Random logits against 17 uniform classes: cross-entropy near log(17).
    assert torch.isfinite(loss) and 1.0 < loss.item() < 6.0
    assert all(p.grad is not None for p in task.network.head.parameters())


def test_position_accuracy_counts_labelled_frames_only():
    """Logits that pick the right class on frames 0-2 and a wrong one everywhere else; only
    frames 0-3 are labelled: accuracy 3/4 (1/4 if frame 3 were ignored the other way round,
    3/16 over all frames)."""
    task = AnatomicalPositionTask(**TINY)
    batch = position_batch(batch_size=1)
    batch["labelled"][:] = False
    batch["labelled"][0, :4] = True
    target = batch["mask"][:, 0].long()  # (1, H, W, T)
    chosen = target.clone()
    chosen[..., 3:] = (target[..., 3:] + 1) % 17
    logits = torch.nn.functional.one_hot(chosen, 17).permute(0, 4, 1, 2, 3).float() * 10

    class Fixed(torch.nn.Module):
        def forward(self, video):
            return logits

    task.network = Fixed()
    _, parts = task.compute_loss(batch)
    assert float(parts["position_accuracy"]) == pytest.approx(0.75)


def test_multi_task_blanks_frames_and_adds_reconstruction_channels():
    task = AnatomicalPositionTask(reconstruction_weight=0.5, mask_ratio=0.5, **TINY)
    seen = {}
    task.network.register_forward_pre_hook(lambda module, inputs: seen.update(input=inputs[0].detach().clone()))
    batch = position_batch()
    assert task(batch["video"]).shape[1] == 17 + 3
    loss, parts = task.compute_loss(batch)
    blanked = (seen["input"].abs().sum(dim=(1, 2, 3)) == 0).sum(dim=1)
    assert blanked.tolist() == [8, 8]
    assert "mse_masked" in parts and loss > parts["position_ce"]
    pure = AnatomicalPositionTask(**TINY)
    pure.network.register_forward_pre_hook(lambda module, inputs: seen.update(input=inputs[0].detach().clone()))
    pure.compute_loss(batch)
    assert torch.equal(seen["input"], batch["video"])  # no masking without reconstruction


def test_bad_task_options_are_clear_errors():
    with pytest.raises(UserError, match="--reconstruction_weight"):
        AnatomicalPositionTask(reconstruction_weight=-1.0, **TINY)
    with pytest.raises(UserError, match="--mask_ratio"):
        AnatomicalPositionTask(reconstruction_weight=1.0, mask_ratio=1.0, **TINY)
    with pytest.raises(UserError, match="bins"):
        AnatomicalPositionTask(along_bins=0, **TINY)


# -- transfer into weak segmentation ------------------------------------------------------------


def save_task_checkpoint(task, path: Path) -> Path:
    """What Lightning writes, minus the trainer state: enough for load_pretrained."""
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


PRETEXTS = {
    "anatomical_position": lambda network: AnatomicalPositionTask(**network),
    "anatomical_multitask": lambda network: AnatomicalPositionTask(reconstruction_weight=1.0, **network),
    "temporal_masking": lambda network: TemporalMaskingTask(**network),
}


@pytest.mark.parametrize("encoder", ["3d_unet_tiny", "si_tiny"])
@pytest.mark.parametrize("pretext", list(PRETEXTS))
def test_pretext_checkpoints_load_into_the_weak_task(tmp_path, encoder, pretext):
    network = dict(encoder=encoder, frames=16)
    torch.manual_seed(0)
    source = PRETEXTS[pretext](network)
    path = save_task_checkpoint(source, tmp_path / f"{pretext}.ckpt")
    torch.manual_seed(1)
    weak = WeakSegmentationTask(checkpoint=str(path), **network)
    report = weak.transfer_report
    assert report.source_task == source.task_name
    assert len(report.loaded) > 0
    head = [name for name, _ in weak.network.named_parameters() if name.startswith("head.") and name.endswith("weight")]
    assert head and all(report.skipped.get(name) == "shape differs" for name in head)
    assert all(torch.count_nonzero(p) == 0 for n, p in weak.network.named_parameters() if n in report.skipped)
    name = report.loaded[0]
    assert torch.equal(weak.network.state_dict()[name], source.network.state_dict()[name])
    assert weak(torch.zeros(1, 3, 32, 32, 16)).shape == (1, 1, 32, 32, 16)


# -- command line -------------------------------------------------------------------------------


def test_unknown_pretext_is_a_clear_error(tiny_phantom, tmp_path, capsys):
    from unilvseg.cli.train import main_ssl

    code = main_ssl(["--pretext", "foo", "--data_path", str(tiny_phantom), "--run_dir", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert code == 2
    assert "--pretext" in error and "foo" in error and "anatomical_position" in error
    assert not (tmp_path / "run").exists()


def test_train_ssl_anatomical_position_end_to_end(tiny_phantom, tmp_path):
    from unilvseg.cli.train import main_ssl
    from unilvseg.tasks.checkpoints import load_task

    run = tmp_path / "run"
    code = main_ssl([
        "--pretext", "anatomical_position", "--data_path", str(tiny_phantom), "--encoder", "3d_unet_tiny",
        "--frames", "16", "--batch_size", "2", "--epochs", "1", "--limit_train_batches", "2",
        "--limit_val_batches", "1", "--run_dir", str(run), "--progress_bar", "false",
        "--along_bins", "3", "--across_bins", "2",
    ])
    assert code == 0
    best, last = run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file()
    figure = cv2.imread(str(run / FIGURE_NAME))
    assert figure is not None and figure.shape[0] > 100 and figure.shape[1] > 100
    assert not list(run.glob(".tmp-*"))

    task = load_task(best, expect=None)
    assert isinstance(task, AnatomicalPositionTask) and task.n_classes == 1 + 3 * 2
    weak = WeakSegmentationTask(checkpoint=str(best), **TINY)
    assert weak.transfer_report.source_task == "anatomical_position"
    assert len(weak.transfer_report.loaded) > 0 and "head.weight" in weak.transfer_report.skipped


def test_polar_grid_classes_at_hand_placed_points():
    # Axis straight down (angle 0): along = dy / half_length, across = dx / half_width.
    sector = np.ones((112, 112), dtype=bool)
    geometry = PositionGeometry(centre=(50.0, 40.0), axis_angle=0.0, half_length=20.0, half_width=10.0)
    classes = position_map(sector, geometry, position_grid="polar", rings=3, sectors=8)
    # Ring edges at normalised radius 0.5 and 1; sectors of 45 degrees counted from the
    # transducer end of the axis (up), turning towards -across (the image's left), then down.
    #   (x, y): along, across -> ring, sector -> class 1 + ring * 8 + sector
    expected = {
        (50, 45): 1 + 0 * 8 + 4,  # along +0.25 (towards the base): radius 0.25, straight away from the transducer
        (50, 25): 1 + 1 * 8 + 0,  # along -0.75: towards the transducer, radius 0.75
        (50, 80): 1 + 2 * 8 + 4,  # along +2: beyond the LV
        (57, 40): 1 + 1 * 8 + 6,  # across +0.7: the image's right
        (43, 40): 1 + 1 * 8 + 2,  # across -0.7: the image's left
        (47, 37): 1 + 0 * 8 + 1,  # along -0.15, across -0.3: 63 degrees from up towards the left
        (53, 37): 1 + 0 * 8 + 6,  # along -0.15, across +0.3: 63 degrees from up towards the right (297 degrees)
    }
    for (x, y), value in expected.items():
        assert classes[y, x] == value, (x, y)
    assert set(np.unique(classes)) == set(range(1, 25))


def test_polar_grid_rotates_with_the_frame_and_sets_the_class_count():
    sector = fan_mask()
    geometry = PositionGeometry(centre=(61.5, 47.5), axis_angle=math.radians(12), half_length=30.0, half_width=13.0)
    classes = position_map(sector, geometry, position_grid="polar", rings=2, sectors=6)
    ux, uy = geometry.direction
    turned = PositionGeometry(centre=(geometry.centre[1], sector.shape[1] - 1 - geometry.centre[0]), axis_angle=math.atan2(uy, -ux),
                              half_length=30.0, half_width=13.0)
    rotated = position_map(np.rot90(sector), turned, position_grid="polar", rings=2, sectors=6)
    assert (rotated == np.rot90(classes)).mean() > 0.995
    assert classes.max() <= 12 and AnatomicalTargets(position_grid="polar", rings=2, sectors=6).n_classes == 13
    task = AnatomicalPositionTask(position_grid="polar", rings=2, sectors=6, **TINY)
    assert task.network(torch.zeros(1, 3, 32, 32, 16)).shape[1] == 13
    with pytest.raises(UserError, match="--position_grid"):
        AnatomicalTargets(position_grid="rings")
    with pytest.raises(UserError, match="--rings"):
        position_map(sector, geometry, position_grid="polar", rings=0)
