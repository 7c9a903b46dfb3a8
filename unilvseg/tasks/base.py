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

# Learning-rate schedules: warm-up then cosine (default), constant (published SSL), or
# multistep (published weak: x gamma at each milestone epoch).
SCHEDULES = ("warmup_cosine", "constant", "multistep")


def rng_states() -> dict:
    """torch, numpy and python global generator states, as types ``torch.load(weights_only=True)`` reads."""
    import random

    import numpy as np

    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
        "python": [version, list(python_state), gauss],
    }
    if torch.cuda.is_available():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, python_state, gauss = states["python"]
    random.setstate((version, tuple(python_state), gauss))
    cuda = states.get("torch.cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


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
        betas: tuple[float, float] | list[float] = (0.9, 0.999),
        amsgrad: bool = False,
        schedule: str = "warmup_cosine",
        milestones: list[int] | None = None,
        gamma: float = 0.1,
    ):
        super().__init__()
        if lr <= 0:
            raise UserError(f"--lr must be positive, got {lr}")
        if schedule not in SCHEDULES:
            raise UserError(f"--schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if schedule == "multistep" and not milestones:
            raise UserError("--schedule multistep needs --milestones (epochs at which the rate is multiplied by --gamma)")
        self.save_hyperparameters()
        self.network = build_network(
            encoder, in_channels=3, out_channels=out_channels, frames=frames, width=width, encoder_weights=encoder_weights
        )
        self._epoch_started = None
        # How clips were prepared (mean, std, size, period); stored in every checkpoint so that
        # prediction normalises exactly as training did. Set by the training command.
        self.data_settings: dict = {}

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.network(video)

    def log(self, name: str, value, *args, **kwargs) -> None:
        """Lightning's ``log`` with ``sync_dist=True`` unless the caller says otherwise.

        Under DDP each rank sees only its shard of the data; an unsynced epoch metric (the
        validation loss that picks ``best.ckpt``, an epoch's training loss) would be rank 0's
        half. Values that are already reduced over ranks (torchmetrics' ``compute``) pass
        ``sync_dist=False``. On one process syncing is a no-op. Every rank must log the same
        names in the same order, so nothing here is logged conditionally on rank-local data.
        """
        kwargs.setdefault("sync_dist", True)
        super().log(name, value, *args, **kwargs)

    # -- training ---------------------------------------------------------------------------
    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def training_step(self, batch: dict, batch_idx: int):
        # Logged every step, zero included: a synced metric must be logged on every rank.
        self.log("skipped_videos", batch["skipped"].float(), on_step=False, on_epoch=True, reduce_fx="sum", batch_size=1)
        if "video" not in batch:  # every video of the batch failed to decode
            return self.step_without_loss()
        loss, parts = self.compute_loss(batch)
        if loss is None:
            return self.step_without_loss()
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

    def step_without_loss(self):
        """A batch with nothing to learn from (all its videos failed to decode, or no frame is labelled).

        One process skips the step (None). Under DDP the other ranks would wait forever in the
        gradient all-reduce and the synced ``train_loss`` for this rank, so it takes a normal
        step on a zero loss over every parameter: zero gradients from this rank, the same
        all-reduce and optimiser step as the others.
        """
        if self.trainer.world_size == 1:
            return None
        zero = sum(parameter.sum() for parameter in self.parameters() if parameter.requires_grad) * 0.0
        self.log("train_loss", zero, prog_bar=True, on_step=True, on_epoch=True, batch_size=1)
        return zero

    def on_train_epoch_start(self):
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self):
        if self._epoch_started is not None:
            # Wall time is logged for the training curve; it is not reproducible by nature.
            self.log("epoch_seconds", time.perf_counter() - self._epoch_started)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["unilvseg_task"] = self.task_name
        checkpoint["unilvseg_data"] = dict(self.data_settings)
        bad = [name for name, tensor in self.network.state_dict().items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
        if bad:
            raise NonFiniteLossError(f"refusing to save a checkpoint with non-finite weights ({bad[:3]}...)")
        # Lightning does not keep the global generators; random choices made in the task (which
        # frames temporal masking hides) must continue, not restart, when a run is resumed.
        checkpoint["unilvseg_rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.data_settings = dict(checkpoint.get("unilvseg_data", {}))
        states = checkpoint.get("unilvseg_rng_states")
        if states is not None and self._trainer is not None:  # resuming a fit, not load_from_checkpoint
            set_rng_states(states)

    # -- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            [p for p in self.parameters() if p.requires_grad], lr=hp.lr, weight_decay=hp.weight_decay,
            betas=tuple(hp.get("betas", (0.9, 0.999))), amsgrad=bool(hp.get("amsgrad", False)),
        )
        schedule = hp.get("schedule", "warmup_cosine")
        if schedule == "constant":  # the published SSL module: no scheduler
            return optimizer
        if schedule == "multistep":  # the published weak module: MultiStepLR per epoch
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(hp.milestones), gamma=hp.gamma)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
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
