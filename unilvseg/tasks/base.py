"""What every training scheme shares: the network, the optimiser and schedule, timing, guards.

Each scheme (temporal masking, weak segmentation, anatomical position, label-free) is one
LightningModule subclass that only says what its targets and loss are.
"""

from __future__ import annotations

import math
import time

import lightning as L
import torch

from unilvseg.errors import NonFiniteLossError, UserError
from unilvseg.models import build_network


class ClipTask(L.LightningModule):
    """Base LightningModule over clips shaped (B, C, H, W, T).

    Subclasses set ``task_name`` and ``out_channels`` and implement ``compute_loss`` and
    ``validation_step``. Hyperparameters are saved in every checkpoint, so a checkpoint alone
    rebuilds its task (see :func:`unilvseg.tasks.checkpoints.load_task`).
    """

    task_name = "base"

    def __init__(
        self,
        encoder: str = "3d_unet_small",
        frames: int = 32,
        width: int | None = None,
        encoder_weights: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 10,
        out_channels: int = 1,
    ):
        super().__init__()
        if lr <= 0:
            raise UserError(f"--lr must be positive, got {lr}")
        self.save_hyperparameters()
        self.network = build_network(
            encoder, in_channels=3, out_channels=out_channels, frames=frames, width=width, encoder_weights=encoder_weights
        )
        self._epoch_started = None

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.network(video)

    # -- training ---------------------------------------------------------------------------
    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def training_step(self, batch: dict, batch_idx: int):
        skipped = int(batch["skipped"])
        if skipped:
            self.log("skipped_videos", float(skipped), on_step=False, on_epoch=True, reduce_fx="sum")
        if "video" not in batch:  # every video of the batch failed to decode
            return None
        loss, parts = self.compute_loss(batch)
        if loss is None:
            return None
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at epoch {self.current_epoch}, step {self.global_step}; "
                "training stopped, the last checkpoint written before this step is kept "
                "(try a lower --lr or check the input data)"
            )
        batch_size = batch["video"].shape[0]
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        for name, value in parts.items():
            self.log(f"train_{name}", value, on_step=False, on_epoch=True, batch_size=batch_size)
        return loss

    def on_train_epoch_start(self):
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self):
        if self._epoch_started is not None:
            # Wall time is logged for the training curve; it is not reproducible by nature.
            self.log("epoch_seconds", time.perf_counter() - self._epoch_started)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["unilvseg_task"] = self.task_name
        bad = [name for name, tensor in self.network.state_dict().items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
        if bad:
            raise NonFiniteLossError(f"refusing to save a checkpoint with non-finite weights ({bad[:3]}...)")

    # -- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = self.trainer.estimated_stepping_batches
        # Runs bounded only by --max_time have no known length: keep the rate flat after warm-up.
        total = max(int(total), 1) if math.isfinite(total) else 10**9
        warmup = min(int(self.hparams.warmup_steps), max(total // 10, 1))

        def factor(step: int) -> float:
            # Linear warm-up, then cosine decay to 5% of the base rate at the last step.
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
