"""Values the training schemes compute, checked against hand counts and closed forms: the
temporal-masking loss and its masks, the weak task's soft Dice loss and validation Dice (and
the checkpoint it selects), and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from unilvseg.errors import UserError
from unilvseg.tasks.ssl import TemporalMaskingTask
from unilvseg.tasks.weak import WeakSegmentationTask, soft_dice_loss

TINY = dict(encoder="3d_unet_tiny", frames=16)


class Recorder(torch.nn.Module):
    """Identity network that keeps every input it sees (the blanked clip)."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, video):
        self.inputs.append(video.detach().clone())
        return video


def hidden_frames(blanked: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the frames of a (B, C, H, W, T) clip that are entirely zero."""
    return blanked.abs().sum(dim=(1, 2, 3)) == 0


# --------------------------------------------------------------------------- temporal masking


def test_masking_loss_scores_the_original_clip_with_a_mask_per_clip():
    task = TemporalMaskingTask(mask_ratio=0.5, **TINY)
    task.network = Recorder()  # output = blanked input: error only on hidden frames
    video = torch.randn(6, 3, 4, 4, 16) + 3.0  # no frame is zero by chance
    loss, parts = task.reconstruction_loss({"video": video}, torch.Generator().manual_seed(0))
    hidden = hidden_frames(task.network.inputs[0])
    assert (hidden.sum(dim=1) == 8).all()
    # Each clip gets its own draw: six identical rows of 16 choose 8 would be a shared mask.
    assert len({tuple(row.tolist()) for row in hidden}) > 1
    # Against the original clip, a hidden frame costs its mean square and a visible one nothing
    # (against the blanked input, the loss would be 0).
    square = video.pow(2).mean(dim=(1, 2, 3))  # (B, T)
    expected_masked = float(square[hidden].mean())
    assert float(parts["mse_masked"]) == pytest.approx(expected_masked, rel=1e-5)
    assert float(parts["mse_visible"]) == 0.0
    assert float(loss) == pytest.approx(float((square * hidden).sum() / hidden.numel()), rel=1e-5)
    masked_only = TemporalMaskingTask(mask_ratio=0.5, loss_on="masked", **TINY)
    masked_only.network = Recorder()
    loss_masked, _ = masked_only.reconstruction_loss({"video": video}, torch.Generator().manual_seed(0))
    assert float(loss_masked) == pytest.approx(expected_masked, rel=1e-5)


def test_training_masks_change_every_step_and_validation_masks_are_fixed():
    task = TemporalMaskingTask(mask_ratio=0.5, **TINY)
    task.network = Recorder()
    task.log = lambda *args, **kwargs: None  # no trainer attached
    video = torch.randn(2, 3, 4, 4, 16) + 3.0
    torch.manual_seed(0)
    for _ in range(3):
        task.compute_loss({"video": video})
    steps = [hidden_frames(x) for x in task.network.inputs]
    assert not torch.equal(steps[0], steps[1]) and not torch.equal(steps[1], steps[2])

    task.network.inputs.clear()
    for call, batch_idx in enumerate((0, 1, 0)):
        torch.manual_seed(100 + call)  # the global stream differs every call; it must not matter
        task.validation_step({"video": video}, batch_idx)
    first, other, again = (hidden_frames(x) for x in task.network.inputs)
    assert torch.equal(first, again)  # same batch, same mask, whatever the global generator
    assert not torch.equal(first, other)  # batches do not all share one mask


# --------------------------------------------------------------------------- weak segmentation


def test_soft_dice_loss_values():
    # Logits 0 -> probability 1/2 everywhere. 10 of 40 pixels in the target:
    # intersection 5, Σp 20, Σt 10 -> 1 - (2·5 + 1) / (20 + 10 + 1).
    target = torch.zeros(2, 4, 5)
    target.view(-1)[:10] = 1
    assert float(soft_dice_loss(torch.zeros(2, 4, 5), target)) == pytest.approx(1 - 11 / 31, rel=1e-6)
    # Confident and right: ~0 (only the smoothing term remains); confident and wrong: ~1.
    confident = torch.where(target > 0, 30.0, -30.0)
    assert float(soft_dice_loss(confident, target)) == pytest.approx(0.0, abs=1e-6)
    # Wrong everywhere: I = 0, Σp = the 30 background pixels, Σt = 10.
    assert float(soft_dice_loss(-confident, target)) == pytest.approx(1 - 1 / 41, rel=1e-5)
    # Empty target, all-background prediction: the smoothing makes it a perfect 0, not 0/0.
    assert float(soft_dice_loss(torch.full((1, 3, 3), -30.0), torch.zeros(1, 3, 3))) == pytest.approx(0.0, abs=1e-6)
    # Pooled over frames, not averaged per frame: frame 1 has 1 LV pixel, frame 2 has 9.
    two = torch.zeros(2, 3, 3)
    two[0, 0, 0] = 1
    two[1] = 1
    logits = torch.zeros(2, 3, 3)
    logits[0] = 30.0  # frame 1: 9 predicted, 1 true
    logits[1] = 30.0  # frame 2: 9 predicted, 9 true
    assert float(soft_dice_loss(logits, two)) == pytest.approx(1 - (2 * 10 + 1) / (18 + 10 + 1), rel=1e-5)


class Scripted(torch.nn.Module):
    """Network whose logits are given per call: +10 inside ``masks[k]``, -10 outside."""

    def __init__(self, masks_for_call):
        super().__init__()
        self.masks_for_call = masks_for_call
        self.bias = torch.nn.Parameter(torch.zeros(()))  # something for the optimiser to hold
        self.calls = 0

    def forward(self, video):
        masks = self.masks_for_call(self.calls, video)
        self.calls += 1
        return torch.where(masks > 0, 10.0, -10.0) + 0.0 * self.bias


def _box(size, top, left, height, width):
    mask = torch.zeros(size, size)
    mask[top : top + height, left : left + width] = 1
    return mask


def _validation_batch():
    """Two clips of 4 frames at 8x8. Clip 0: ED at t=1, ES at t=3. Clip 1: ED at t=0 only."""
    size, frames = 8, 4
    mask = torch.zeros(2, 1, size, size, frames)
    mask[0, 0, :, :, 1] = _box(size, 0, 0, 4, 4)  # ED, 16 px
    mask[0, 0, :, :, 3] = _box(size, 0, 0, 2, 2)  # ES, 4 px
    mask[1, 0, :, :, 0] = _box(size, 2, 2, 4, 4)  # ED, 16 px
    mask[0, 0, :, :, 0] = _box(size, 0, 0, 8, 8)  # untraced frame: must never be scored
    labelled = torch.zeros(2, frames, dtype=torch.bool)
    labelled[0, 1] = labelled[0, 3] = labelled[1, 0] = True
    phase = torch.zeros(2, frames, dtype=torch.long)
    phase[0, 1], phase[0, 3], phase[1, 0] = 1, 2, 1
    return {"video": torch.zeros(2, 3, size, size, frames), "mask": mask, "labelled": labelled, "phase": phase,
            "skipped": torch.tensor(0)}


def _predictions(size=8, frames=4):
    """Predicted masks per clip: ED of clip 0 covers 8 of its 16 px (+0 extra), ES of clip 0 is
    the 4 px exactly plus 4 px outside, ED of clip 1 is empty; untraced frames predict nothing."""
    predicted = torch.zeros(2, 1, size, size, frames)
    predicted[0, 0, :, :, 1] = _box(size, 0, 0, 2, 4)  # I = 8, |P| = 8, |T| = 16
    predicted[0, 0, :, :, 3] = _box(size, 0, 0, 2, 4)  # I = 4, |P| = 8, |T| = 4
    return predicted


def test_validation_dice_values_and_ed_es_split():
    task = WeakSegmentationTask(**TINY)
    task.network = Scripted(lambda call, video: _predictions())
    logged = {}
    task.log = lambda name, value, **kwargs: logged.__setitem__(name, float(torch.as_tensor(value).detach()))
    task.validation_step(_validation_batch(), 0)
    task.on_validation_epoch_end()
    # ED: I = 8 + 0, |P| + |T| = (8 + 16) + (0 + 16). ES: I = 4, |P| + |T| = 8 + 4.
    assert logged["val_dice_ed"] == pytest.approx(2 * 8 / 40)
    assert logged["val_dice_es"] == pytest.approx(2 * 4 / 12)
    assert logged["val_dice"] == pytest.approx(2 * 12 / 52)  # pooled, not the mean of ED and ES
    # Metrics reset between epochs: a second, perfect epoch is scored on its own.
    batch = _validation_batch()
    task.network = Scripted(lambda call, video: batch["mask"])
    task.validation_step(batch, 0)
    task.on_validation_epoch_end()
    assert logged["val_dice"] == logged["val_dice_ed"] == logged["val_dice_es"] == 1.0


def test_best_checkpoint_is_the_epoch_with_the_highest_val_dice(tmp_path):
    """Three epochs whose predictions are scripted (Dice 0.5, 1.0, 0.0): metrics.csv holds those
    hand-counted values and best.ckpt is epoch 1, last.ckpt epoch 2."""
    from unilvseg.training import make_trainer

    batch = _validation_batch()
    train_batch = dict(batch)
    half = batch["mask"].clone()
    half[..., 2:, :, :] = 0  # keep rows 0-1 of every mask: ED 8/16 px, ES 4/4 px, clip 1 ED 0/16
    empty = torch.zeros_like(batch["mask"])
    by_epoch = [half, batch["mask"], empty]
    task = WeakSegmentationTask(**TINY, warmup_steps=1)
    task.network = Scripted(lambda call, video: by_epoch[min(task.current_epoch, 2)])
    trainer = make_trainer(tmp_path, monitor="val_dice", mode="max", epochs=3, progress_bar=False, accelerator="cpu",
                           devices=1)
    loader = torch.utils.data.DataLoader([train_batch], batch_size=None)
    trainer.fit(task, train_dataloaders=loader, val_dataloaders=torch.utils.data.DataLoader([batch], batch_size=None))

    metrics = pd.read_csv(tmp_path / "metrics.csv")
    per_epoch = metrics.dropna(subset=["val_dice"]).set_index("epoch")
    # Epoch 0: ED I = 8 + 0 of (8 + 16) + (0 + 16); ES I = 4 of 4 + 4.
    np.testing.assert_allclose(per_epoch["val_dice_ed"].to_numpy(), [16 / 40, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(per_epoch["val_dice_es"].to_numpy(), [1.0, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(per_epoch["val_dice"].to_numpy(), [24 / 48, 1.0, 0.0], rtol=1e-6)
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert best["epoch"] == 1 and last["epoch"] == 2


# --------------------------------------------------------------------------- learning-rate schedule


def _rates(total_steps, warmup_steps, lr=1.0):
    task = WeakSegmentationTask(**TINY, lr=lr, warmup_steps=warmup_steps)
    task._trainer = SimpleNamespace(estimated_stepping_batches=total_steps)
    config = task.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    rates = []
    for _ in range(min(total_steps, 300) + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_then_cosine_to_five_percent():
    rates = _rates(total_steps=100, warmup_steps=10, lr=2.0)
    # Linear warm-up over 10 steps: 0.2, 0.4, ... 2.0 (never 0 at the first step).
    np.testing.assert_allclose(rates[:10], [0.2 * k for k in range(1, 11)], rtol=1e-9)
    assert rates[10] == pytest.approx(2.0)  # cosine starts at the full rate
    # Half-way through the 90 decay steps: 5 % + 95 % · ½(1 + cos(π/2)) = 52.5 %.
    assert rates[55] == pytest.approx(2.0 * 0.525)
    assert rates[100] == pytest.approx(2.0 * 0.05)  # last step: 5 % of the base rate
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))  # monotone decay
    # Warm-up is capped at a tenth of a short run: 20 steps -> 2 warm-up steps.
    short = _rates(total_steps=20, warmup_steps=10)
    assert short[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert short[11] == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 9 / 18)))


def test_runs_without_a_known_length_stay_flat_after_warmup():
    rates = _rates(total_steps=float("inf"), warmup_steps=4)
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[-1] == pytest.approx(1.0, rel=1e-6)  # 300 steps into a 10**9-step cosine


# --------------------------------------------------------------------------- weak task details


def test_pooled_dice_accumulates_exactly_and_merges_by_summing():
    from unilvseg.tasks.weak import PooledDice

    def two_batches():
        metric = PooledDice()
        metric.update(torch.tensor([[1, 1, 0, 0]]), torch.tensor([[1, 0, 0, 0]]))  # I = 1, |P| + |T| = 3
        metric.update(torch.tensor([[1, 1, 1, 1]]), torch.tensor([[1, 1, 1, 0]]))  # I = 3, |P| + |T| = 7
        return metric

    assert float(two_batches().compute()) == pytest.approx(2 * 4 / 10)  # both batches, pooled
    merged, other = two_batches(), PooledDice()
    other.update(torch.tensor([[0, 0]]), torch.tensor([[1, 1]]))  # I = 0, |P| + |T| = 2
    merged.merge_state(other)  # what a DDP sync does across processes: sums, not a list
    assert float(merged.compute()) == pytest.approx(2 * 4 / 12)
    # Exact counts past float32's 2**24 (a full EchoNet validation set has ~30 M LV pixels).
    big = PooledDice()
    big.update(torch.ones(2**24, dtype=torch.bool), torch.ones(2**24, dtype=torch.bool))
    big.update(torch.ones(1, dtype=torch.bool), torch.ones(1, dtype=torch.bool))
    big.update(torch.ones(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool))
    assert int(big.intersection) == 2**24 + 1 and int(big.total) == 2**25 + 3  # float32 would give 2**24, 2**25 + 4


def test_segmentation_loss_parts_are_the_named_losses():
    from unilvseg.errors import UserError
    from unilvseg.tasks.weak import SegmentationLoss

    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    dice = soft_dice_loss(logits, target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    total, parts = SegmentationLoss(["dice", "bce"])(logits, target)
    assert set(parts) == {"dice_loss", "bce"} and float(total) == pytest.approx(float(dice + bce))
    assert float(parts["dice_loss"]) == pytest.approx(float(dice)) and float(parts["bce"]) == pytest.approx(float(bce))
    only_dice, parts = SegmentationLoss(["dice"])(logits, target)
    assert set(parts) == {"dice_loss"} and float(only_dice) == pytest.approx(float(dice))
    only_bce, parts = SegmentationLoss(["bce"])(logits, target)
    assert set(parts) == {"bce"} and float(only_bce) == pytest.approx(float(bce))
    with pytest.raises(UserError, match="^--loss focal dice: choose one or more of dice bce$"):
        SegmentationLoss(["focal", "dice"])


def test_weak_task_head_and_validation_edge_cases():
    """One output channel even if asked otherwise; logits > 0 is LV (0 is not); batches without
    video or without traced frames are skipped; a phase with no frame in the epoch is not
    logged, an epoch with nothing to score still logs val_dice."""
    task = WeakSegmentationTask(out_channels=4, **TINY)
    assert task(torch.zeros(1, 3, 32, 32, 16)).shape == (1, 1, 32, 32, 16)

    class FromVideo(torch.nn.Module):  # logits = channel 0 of the clip
        def forward(self, video):
            return video[:, :1]

    task.network = FromVideo()
    logged = {}
    task.log = lambda name, value, **kwargs: logged.__setitem__(name, float(torch.as_tensor(value).detach()))
    batch = _validation_batch()
    logits = torch.full((2, 1, 8, 8, 4), -5.0)
    logits[0, 0, 0, 0:4, 1] = torch.tensor([0.0, 0.0, 0.5, 0.5])  # ED of clip 0: 2 of its 16 px (0 is not LV)
    batch["video"] = logits.repeat(1, 3, 1, 1, 1)
    batch["phase"][0, 3] = 1  # no ES frame anywhere this epoch
    task.validation_step(batch, 0)
    task.validation_step({"labelled": torch.ones(1, 4, dtype=torch.bool), "skipped": torch.tensor(1)}, 1)  # no video
    unlabelled = dict(batch, labelled=torch.zeros(2, 4, dtype=torch.bool))
    task.network = None  # a skipped batch must not reach the network
    task.validation_step(unlabelled, 2)
    task.on_validation_epoch_end()
    # ED frames: clip 0 t=1 (I 2, |P| 2, |T| 16), clip 0 t=3 (I 0, |P| 0, |T| 4), clip 1 t=0 (0, 0, 16).
    assert logged["val_dice_ed"] == pytest.approx(4 / 38) and logged["val_dice"] == pytest.approx(4 / 38)
    assert "val_dice_es" not in logged
    logged.clear()
    task.on_validation_epoch_end()  # nothing scored: val_dice still logged (0), ED/ES not
    assert logged == {"val_dice": 0.0}
    task.val_dice["es"].update(torch.zeros(1, 2, dtype=torch.bool), torch.tensor([[1, 0]]))  # one ES pixel, missed
    task.on_validation_epoch_end()
    assert logged["val_dice_es"] == 0.0


def test_val_loss_is_the_frame_weighted_mean_over_batches(tmp_path):
    """val_loss over an epoch weights each batch by its traced frames (3 and 1 here), the way
    val_dice pools pixels; Lightning's default would weight by clips (2 and 2)."""
    from unilvseg.training import make_trainer

    full = _validation_batch()
    single = _validation_batch()
    single["labelled"][0, 1] = single["labelled"][0, 3] = False  # only clip 1's ED left
    predicted = _predictions()
    task = WeakSegmentationTask(**TINY)
    task.network = Scripted(lambda call, video: predicted)
    losses = []
    for batch in (full, single):
        selected, target = task.labelled_frames(batch, torch.where(predicted > 0, 10.0, -10.0))
        losses.append(float(task.criterion(selected, target)[0]))
    trainer = make_trainer(tmp_path, monitor="val_dice", mode="max", epochs=1, progress_bar=False, accelerator="cpu", devices=1)
    (result,) = trainer.validate(task, dataloaders=torch.utils.data.DataLoader([full, single], batch_size=None), verbose=False)
    assert result["val_loss"] == pytest.approx((3 * losses[0] + 1 * losses[1]) / 4, rel=1e-5)
    assert losses[0] != pytest.approx(losses[1])  # the weighting matters for this data


def test_mask_count_bounds_and_messages():
    from unilvseg.errors import UserError
    from unilvseg.tasks.ssl import masked_frame_count

    assert masked_frame_count(4, 0.25) == 1 and masked_frame_count(4, 0.75) == 3  # one hidden / one visible
    for ratio in (0.0, 1.0, 1.5):
        with pytest.raises(UserError, match=f"^--mask_ratio must be strictly between 0 and 1, got {ratio}$"):
            masked_frame_count(16, ratio)
    with pytest.raises(UserError, match="masks 10 frames; at least one frame must be hidden and one visible$"):
        masked_frame_count(10, 0.96)  # round(9.6) = 10 = every frame


def test_masks_are_made_on_the_requested_device():
    from unilvseg.tasks.ssl import choose_masked_frames

    assert choose_masked_frames(2, 8, 3, torch.Generator().manual_seed(0), device="meta").device.type == "meta"
    assert choose_masked_frames(2, 8, 3, torch.Generator().manual_seed(0)).device.type == "cpu"


def test_masking_validation_logs_clip_weighted_losses(tmp_path):
    """val_loss and val_mse_masked through a real Lightning validation, hand-computed from the
    frames the network saw blanked, weighted by clips per batch (2 and 1)."""
    from unilvseg.training import make_trainer

    task = TemporalMaskingTask(mask_ratio=0.5, **TINY)
    task.network = Recorder()
    batches = [{"video": torch.randn(2, 3, 4, 4, 16) + 3.0}, {"video": torch.randn(1, 3, 4, 4, 16) - 3.0}]
    trainer = make_trainer(tmp_path, monitor="val_loss", mode="min", epochs=1, progress_bar=False, accelerator="cpu", devices=1)
    (result,) = trainer.validate(task, dataloaders=torch.utils.data.DataLoader(batches, batch_size=None), verbose=False)
    losses, masked = [], []
    for batch, seen in zip(batches, task.network.inputs):
        hidden = hidden_frames(seen)
        square = batch["video"].pow(2).mean(dim=(1, 2, 3))
        losses.append(float((square * hidden).mean()))
        masked.append(float(square[hidden].mean()))
    assert result["val_loss"] == pytest.approx((2 * losses[0] + losses[1]) / 3, rel=1e-5)
    assert result["val_mse_masked"] == pytest.approx((2 * masked[0] + masked[1]) / 3, rel=1e-5)


# --------------------------------------------------------------------------- linear probe


def test_trainable_head_moves_only_the_head_and_keeps_the_body_in_eval_mode():
    torch.manual_seed(0)
    task = WeakSegmentationTask(**TINY, trainable="head", lr=0.05, warmup_steps=1, schedule="constant")
    before = {name: p.detach().clone() for name, p in task.network.named_parameters()}
    optimizer = task.configure_optimizers()
    assert sum(p.numel() for group in optimizer.param_groups for p in group["params"]) == sum(
        p.numel() for p in task.network.head.parameters()
    )
    task.train()
    assert task.network.head.training and not task.network.encoder.training and not task.network.decoder.training
    mask = torch.zeros(2, 1, 32, 32, 16)
    mask[:, :, 8:24, 10:22] = 1
    labelled = torch.zeros(2, 16, dtype=torch.bool)
    labelled[:, [3, 9]] = True
    batch = {"video": torch.randn(2, 3, 32, 32, 16), "mask": mask, "labelled": labelled}
    for _ in range(3):
        loss, _ = task.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    moved = {name for name, p in task.network.named_parameters() if not torch.equal(p, before[name])}
    assert moved == {name for name, _ in task.network.named_parameters() if name.startswith("head.")}
    assert WeakSegmentationTask(**TINY).network.encoder.training  # the default trains everything
    with pytest.raises(UserError, match="--trainable 'decoder': expected one of all, head"):
        WeakSegmentationTask(**TINY, trainable="decoder")


def test_trainable_head_needs_a_network_with_an_output_block(monkeypatch):
    import unilvseg.tasks.base as base

    monkeypatch.setattr(base, "build_network", lambda *args, **kwargs: torch.nn.Conv3d(3, 1, 1))
    with pytest.raises(UserError, match="--trainable head: network '3d_unet_tiny' has no separate output block"):
        WeakSegmentationTask(**TINY, trainable="head")
    assert WeakSegmentationTask(**TINY).trainable == "all"  # the same network trains whole


# --------------------------------------------------------------------------- published SSL options


class _RecordingNetwork(torch.nn.Module):
    """Stands in for the network: keeps its input, returns zeros of the same shape."""

    def forward(self, x):
        self.seen = x.detach().clone()
        return torch.zeros_like(x)


def _numbered_clips(batch=4, frames=16):
    # Every (clip, frame) has its own value, so a reversed or blanked frame is recognisable.
    values = (100 * torch.arange(batch)[:, None] + torch.arange(frames)[None, :]).float()  # (B, T)
    return values[:, None, None, None, :].expand(batch, 3, 32, 32, frames).clone()


def test_random_reverse_flips_the_clips_chosen_by_the_step_generator_before_masking():
    from unilvseg.tasks.ssl import choose_masked_frames

    task = TemporalMaskingTask(**TINY, mask_ratio=0.5, random_reverse=True)
    task.network = _RecordingNetwork()
    task.train()
    video = _numbered_clips()
    torch.manual_seed(12345)  # the global stream must not be what decides the flips
    task.reconstruction_loss({"video": video}, torch.Generator().manual_seed(1))
    # Expected, drawn independently from the same seed: first the flips, then the masks.
    expected_generator = torch.Generator().manual_seed(1)
    flips = torch.rand(4, generator=expected_generator) < 0.5
    assert 0 < int(flips.sum()) < 4  # the seed flips some clips and keeps others
    hidden = choose_masked_frames(4, 16, 8, expected_generator, video.device)
    played = torch.stack([clip.flip(-1) if flip else clip for clip, flip in zip(video, flips)])
    expected = played * (~hidden)[:, None, None, None, :]
    assert torch.equal(task.network.seen, expected)
    task.eval()  # validation never reverses
    task.reconstruction_loss({"video": video}, torch.Generator().manual_seed(1))
    first_visible = (task.network.seen[:, 0, 0, 0, :] != 0) | (video[:, 0, 0, 0, :] == 0)
    assert torch.equal(task.network.seen[:, 0, 0, 0, :][first_visible], video[:, 0, 0, 0, :][first_visible])


def test_raw_blanking_fills_hidden_frames_with_a_black_raw_frame():
    from unilvseg.tasks.ssl import choose_masked_frames

    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 0.2]
    task = TemporalMaskingTask(**TINY, mask_ratio=0.25, blank="raw", mean=mean, std=std)
    task.network = _RecordingNetwork()
    video = _numbered_clips(batch=2) + 1.0  # no frame is 0 or the fill value by chance
    task.reconstruction_loss({"video": video}, torch.Generator().manual_seed(0))
    hidden = choose_masked_frames(2, 16, 4, torch.Generator().manual_seed(0), video.device)
    seen = task.network.seen
    for channel in range(3):
        black = -mean[channel] / std[channel]  # a 0-valued raw pixel after normalisation
        assert torch.allclose(seen[:, channel][hidden[:, None, None, :].expand(2, 32, 32, 16)], torch.tensor(black))
    assert torch.equal(seen[..., 0][~hidden[:, 0]], video[..., 0][~hidden[:, 0]])
