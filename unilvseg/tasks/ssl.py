"""Temporal-masking self-supervision (UniLVSeg): blank a fraction of a clip's frames and
reconstruct the whole clip."""

from __future__ import annotations

import torch

from unilvseg.errors import UserError
from unilvseg.tasks.base import ClipTask

LOSS_ON = ("all", "masked")


def masked_frame_count(frames: int, mask_ratio: float) -> int:
    """Exactly round(mask_ratio * frames) frames are blanked; 0 or all would leave nothing to learn."""
    if not 0.0 < mask_ratio < 1.0:
        raise UserError(f"--mask_ratio must be strictly between 0 and 1, got {mask_ratio}")
    count = round(mask_ratio * frames)
    if not 1 <= count <= frames - 1:
        raise UserError(
            f"--mask_ratio {mask_ratio} with --frames {frames} masks {count} frames; "
            "at least one frame must be hidden and one visible"
        )
    return count


def choose_masked_frames(batch_size: int, frames: int, count: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """(B, T) bool: per clip, ``count`` frames chosen uniformly without replacement."""
    scores = torch.rand(batch_size, frames, generator=generator, device="cpu")
    chosen = scores.argsort(dim=1)[:, :count]
    hidden = torch.zeros(batch_size, frames, dtype=torch.bool)
    hidden.scatter_(1, chosen, True)
    return hidden.to(device) if device is not None else hidden


def blank_frames(video: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Zero the hidden frames of (B, C, H, W, T) clips (zero = the dataset mean after normalisation)."""
    return video * (~hidden)[:, None, None, None, :].to(video.dtype)


class TemporalMaskingTask(ClipTask):
    """Input: the clip with round(mask_ratio*T) frames blanked. Target: the original clip. MSE.

    ``loss_on="all"`` (default) scores every frame, as the published code does, so the network
    also learns to pass visible frames through; ``"masked"`` scores only the hidden frames.
    The output head has as many channels as the input so the encoder/decoder carry over to
    segmentation unchanged except for the head.
    """

    task_name = "temporal_masking"

    def __init__(self, mask_ratio: float = 0.6, loss_on: str = "all", **network):
        network.pop("out_channels", None)
        super().__init__(out_channels=3, **network)
        if loss_on not in LOSS_ON:
            raise UserError(f"--loss_on {loss_on!r}: expected one of {LOSS_ON}")
        self.masked_count = masked_frame_count(self.hparams.frames, mask_ratio)
        self.save_hyperparameters()

    def reconstruction_loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        video = batch["video"]
        hidden = choose_masked_frames(video.shape[0], video.shape[-1], self.masked_count, generator, video.device)
        output = self(blank_frames(video, hidden))
        error = (output.float() - video.float()).pow(2).mean(dim=(1, 2, 3))  # (B, T)
        masked = error[hidden].mean()
        visible = error[~hidden].mean()
        loss = error.mean() if self.hparams.loss_on == "all" else masked
        return loss, {"mse_masked": masked.detach(), "mse_visible": visible.detach()}

    def compute_loss(self, batch):
        return self.reconstruction_loss(batch)

    def validation_step(self, batch, batch_idx):
        if "video" not in batch:
            return
        # A fixed mask per validation batch keeps the validation curve comparable across epochs.
        generator = torch.Generator().manual_seed(batch_idx)
        loss, parts = self.reconstruction_loss(batch, generator)
        size = batch["video"].shape[0]
        self.log("val_loss", loss, prog_bar=True, batch_size=size)
        self.log("val_mse_masked", parts["mse_masked"], batch_size=size)
