"""Temporal-masking self-supervision (UniLVSeg): blank a fraction of a clip's frames and
reconstruct the whole clip."""

from __future__ import annotations

import torch

from unilvseg.errors import UserError
from unilvseg.tasks.base import ClipTask

LOSS_ON = ("all", "masked")
BLANKS = ("normalised", "raw")


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


def blank_frames(video: torch.Tensor, hidden: torch.Tensor, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Blank the hidden frames of (B, C, H, W, T) clips: zero (the dataset mean after
    normalisation), or ``fill`` per channel (C,) (e.g. −mean/std: a black raw frame)."""
    keep = (~hidden)[:, None, None, None, :].to(video.dtype)
    blanked = video * keep
    if fill is not None:
        blanked = blanked + (1 - keep) * fill.to(video)[None, :, None, None, None]
    return blanked


def reverse_clips(video: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Each (B, C, H, W, T) clip played backwards with probability ``p`` (the published SSL
    ``random_reverse``): a systole played backwards looks like a diastole."""
    flip = torch.rand(video.shape[0], generator=generator) < p
    return torch.where(flip.to(video.device)[:, None, None, None, None], video.flip(-1), video)


class TemporalMaskingTask(ClipTask):
    """Input: the clip with round(mask_ratio*T) frames blanked. Target: the original clip. MSE.

    ``loss_on="all"`` (default) scores every frame, as the published code does, so the network
    also learns to pass visible frames through; ``"masked"`` scores only the hidden frames.
    The output head has as many channels as the input so the encoder/decoder carry over to
    segmentation unchanged except for the head.
    """

    task_name = "temporal_masking"

    def __init__(
        self,
        mask_ratio: float = 0.6,
        loss_on: str = "all",
        blank: str = "normalised",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        random_reverse: bool = False,
        **network,
    ):
        network.pop("out_channels", None)
        super().__init__(out_channels=3, **network)
        if loss_on not in LOSS_ON:
            raise UserError(f"--loss_on {loss_on!r}: expected one of {LOSS_ON}")
        if blank not in BLANKS:
            raise UserError(f"--ssl_blank {blank!r}: expected one of {', '.join(BLANKS)}")
        if blank == "raw" and (mean is None or std is None):
            raise UserError("--ssl_blank raw needs the normalisation --mean and --std")
        self.masked_count = masked_frame_count(self.hparams.frames, mask_ratio)
        self.save_hyperparameters()
        # "raw": a hidden frame is a black raw frame, i.e. -mean/std after normalisation, as the
        # published code blanks frames before normalising; "normalised": 0 (the mean).
        fill = None if blank == "normalised" else -torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)
        self.register_buffer("blank_fill", fill, persistent=False)

    def reconstruction_loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        video = batch["video"]
        if self.hparams.random_reverse and self.training:
            video = reverse_clips(video, generator)
        hidden = choose_masked_frames(video.shape[0], video.shape[-1], self.masked_count, generator, video.device)
        output = self(blank_frames(video, hidden, self.blank_fill))
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
