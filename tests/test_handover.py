"""uint8 hand-over (issue 25): workers hand over warped uint8 pixels with each clip's gain and
offset; the DataModule normalises after the transfer. The values must be those of the float
hand-over, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_hostile import run_command
from unilvseg.data.augment import ClipAugment, unit_pixels
from unilvseg.data.dataset import EchoNetDataModule, collate_clips, normalise_batch


@pytest.mark.parametrize("augment", [True, "published", False])
def test_uint8_handover_gives_the_float_clips_exactly(tiny_phantom, augment):
    kwargs = dict(data_path=tiny_phantom, scheme="weak", frames=16, batch_size=3, augment=augment, seed=5, size=(64, 64))
    as_float = EchoNetDataModule(**kwargs).dataset("train", train=True)
    as_uint8 = EchoNetDataModule(**kwargs, handover="uint8").dataset("train", train=True)
    keys = [(0, i) for i in range(len(as_float))] + [(3, i) for i in range(len(as_float))]
    floats = collate_clips([as_float[k] for k in keys])
    pixels = collate_clips([as_uint8[k] for k in keys])
    assert pixels["video"].dtype == torch.uint8 and pixels["video"].shape == floats["video"].shape
    assert pixels["video"].element_size() * 4 == floats["video"].element_size()
    normalised = normalise_batch(pixels, EchoNetDataModule(**kwargs).mean, EchoNetDataModule(**kwargs).std)
    assert "gain" not in normalised and torch.equal(normalised["video"], floats["video"])
    assert torch.equal(normalised["mask"], floats["mask"]) and torch.equal(normalised["labelled"], floats["labelled"])
    # Normalising twice is not a no-op: the float batch is left alone, so it cannot happen.
    assert normalise_batch(floats, (0.5,) * 3, (0.1,) * 3) is floats and torch.equal(floats["video"], normalised["video"])


def test_batched_unit_pixels_equal_the_per_clip_ones():
    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.integers(0, 256, size=(4, 3, 8, 8, 5), dtype=np.uint8))
    gains, offsets = [0.8, 1.0, 1.17, 1.2], [0.0, 0.0, -0.07, 0.1]
    one_by_one = torch.stack([unit_pixels(p, g, o) for p, g, o in zip(pixels, gains, offsets)])
    batched = unit_pixels(pixels, torch.tensor(gains, dtype=torch.float64), torch.tensor(offsets, dtype=torch.float32))
    assert torch.equal(batched, one_by_one)
    assert batched.max() <= 1.0 and batched.min() >= 0.0


@pytest.mark.slow
def test_training_with_two_workers_and_uint8_handover_equals_the_float_handover(tiny_phantom, tmp_path):
    fast = ["--data_path", tiny_phantom, "--encoder", "3d_unet_tiny", "--frames", "16", "--size", "32", "32", "--batch_size", "2",
            "--epochs", "1", "--limit_train_batches", "2", "--limit_val_batches", "1", "--progress_bar", "false",
            "--accelerator", "cpu", "--devices", "1", "--num_workers", "2"]
    for handover in ("float", "uint8"):
        assert run_command("train_weak", [str(a) for a in [*fast, "--handover", handover, "--run_dir", tmp_path / handover]]) == 0
    weights = {h: torch.load(tmp_path / h / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for h in ("float", "uint8")}
    assert all(torch.equal(weights["float"][k], weights["uint8"][k]) for k in weights["float"])
    assert ClipAugment().enabled  # the run above augmented (gain and offset crossed the hand-over)
