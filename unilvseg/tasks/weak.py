"""Weakly supervised LV segmentation: the loss sees only the traced (ED/ES) frames of a clip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchmetrics

from unilvseg.data.structures import STRUCTURES
from unilvseg.errors import UserError
from unilvseg.tasks.base import ClipTask
from unilvseg.tasks.transfer import load_pretrained

LOSSES = ("dice", "bce")


class PooledDice(torchmetrics.Metric):
    """Dice as a ratio of sums over every scored frame: 2·ΣI / (Σ|pred| + Σ|true|) (EchoNet's convention).

    Under DDP ``compute`` all-reduces the two sums (torchmetrics' sync on compute), so the
    result is the Dice of the whole validation set, not a mean of per-rank Dice values.
    """

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("intersection", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predicted: torch.Tensor, target: torch.Tensor) -> None:
        predicted, target = predicted.bool(), target.bool()
        self.intersection += (predicted & target).sum().double()
        self.total += predicted.sum().double() + target.sum().double()

    def compute(self) -> torch.Tensor:
        # NaN when no frame was scored on any rank (the states are already all-reduced here), so
        # every rank reaches the same decision about logging it.
        if self.total == 0:
            return torch.tensor(float("nan"))
        return (2 * self.intersection / self.total).float()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − soft Dice pooled over all selected frames: (N, H, W) for one structure; (N, C, H, W)
    for several, the mean over structures of each one's pooled soft Dice (a small chamber
    weighs as much as the LV)."""
    probability = torch.sigmoid(logits)
    if logits.dim() == 4 and logits.shape[1] > 1:
        dims = (0, 2, 3)
        intersection = (probability * target).sum(dims)
        dice = (2 * intersection + eps) / (probability.sum(dims) + target.sum(dims) + eps)
        return 1 - dice.mean()
    intersection = (probability * target).sum()
    return 1 - (2 * intersection + eps) / (probability.sum() + target.sum() + eps)


def frames_last_to_first(tensor: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W, T) -> (B, T, C, H, W) so a (B, T) frame selector indexes frames."""
    return tensor.permute(0, 4, 1, 2, 3)


class SegmentationLoss(torch.nn.Module):
    def __init__(self, losses=LOSSES):
        super().__init__()
        losses = list(losses)
        unknown = [name for name in losses if name not in LOSSES]
        if unknown or not losses:
            raise UserError(f"--loss {' '.join(losses)}: choose one or more of {' '.join(LOSSES)}")
        self.losses = losses

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        parts = {}
        if "dice" in self.losses:
            parts["dice_loss"] = soft_dice_loss(logits, target)
        if "bce" in self.losses:
            parts["bce"] = F.binary_cross_entropy_with_logits(logits, target)
        return sum(parts.values()), {k: v.detach() for k, v in parts.items()}


TRAINABLE = ("all", "head")


def check_structures(structures) -> tuple[str, ...]:
    """``--structures`` as a tuple with the LV first (None or empty: the LV alone)."""
    if structures is None:
        return ("lv",)
    if isinstance(structures, str):
        structures = [s for s in structures.replace(",", " ").split() if s]
    structures = [str(s).strip().lower() for s in structures]
    unknown = [s for s in structures if s not in STRUCTURES]
    if unknown:
        raise UserError(f"--structures {','.join(structures)}: unknown {', '.join(unknown)}; choose from {', '.join(STRUCTURES)}")
    if len(set(structures)) != len(structures):
        raise UserError(f"--structures {','.join(structures)}: a structure is listed twice")
    if "lv" not in structures:
        raise UserError(f"--structures {','.join(structures)}: must include lv (EF, ED/ES and the validation score come from it)")
    return ("lv", *[s for s in structures if s != "lv"])


class WeakSegmentationTask(ClipTask):
    """Segmentation trained only where ``batch["labelled"]`` is true (the traced frames).

    Validation reports pooled Dice on traced frames: ``val_dice`` (both phases), ``val_dice_ed``
    and ``val_dice_es``. ``checkpoint`` initialises the network from a pre-training checkpoint
    (every tensor whose name and shape match, or only the encoder's with
    ``pretrained_type="encoder"``; the report says what was skipped). ``trainable="head"``
    trains only the network's output block on frozen features: with a 1x1x1 head (e.g.
    ``3d_unet_tiny``) that is a linear probe of what the initialisation learned.
    """

    task_name = "weak_segmentation"
    monitor = "val_dice"

    def __init__(
        self, loss: list[str] | tuple[str, ...] = LOSSES, checkpoint: str | None = None, pretrained_type: str = "pl_full",
        trainable: str = "all", structures: list[str] | tuple[str, ...] | None = None, **network
    ):
        network.pop("out_channels", None)
        self.structures = check_structures(structures)
        super().__init__(out_channels=len(self.structures), **network)
        if structures is not None:
            self.hparams["structures"] = list(self.structures)
        # Targets are label maps (unilvseg.data.structures numbering; an LV-only mask is one with
        # LV = 1): output channel k is structure k, one sigmoid each, LV first.
        self.register_buffer("structure_codes", torch.tensor([STRUCTURES[s] for s in self.structures]), persistent=False)
        self.criterion = SegmentationLoss(loss)
        self.val_dice = torch.nn.ModuleDict({"all": PooledDice(), "ed": PooledDice(), "es": PooledDice()})
        self.val_structure_dice = torch.nn.ModuleDict({name: PooledDice() for name in self.structures[1:]})
        # Frame-weighted mean of the validation loss, reduced over ranks with the Dice sums.
        self.val_loss_mean = torchmetrics.MeanMetric()
        self.transfer_report = load_pretrained(self.network, checkpoint, pretrained_type=pretrained_type) if checkpoint else None
        self.trainable = trainable
        if trainable not in TRAINABLE:
            raise UserError(f"--trainable {trainable!r}: expected one of {', '.join(TRAINABLE)}")
        if trainable == "head":
            if getattr(self.network, "head", None) is None:
                raise UserError(f"--trainable head: network {network.get('encoder')!r} has no separate output block")
            for name, parameter in self.network.named_parameters():
                parameter.requires_grad_(name.startswith("head."))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.trainable == "head":
            # A probe reads fixed features: the frozen body's normalisation statistics and
            # dropout must not change with training either.
            for name, module in self.network.named_children():
                if name != "head":
                    module.eval()
        return self

    def labelled_frames(self, batch: dict, logits: torch.Tensor):
        """Logits and targets of the labelled frames only: (N, H, W) for the LV alone, (N, C, H, W)
        (one channel per structure) for several."""
        labelled = batch["labelled"]
        selected_logits = frames_last_to_first(logits)[labelled]
        label_map = frames_last_to_first(batch["mask"])[labelled][:, :1]
        if len(self.structures) == 1:
            return selected_logits[:, 0], (label_map[:, 0] == self.structure_codes[0]).float()
        codes = self.structure_codes.to(label_map.device).view(1, -1, 1, 1)
        return selected_logits, (label_map == codes).float()

    def compute_loss(self, batch):
        if not batch["labelled"].any():
            return None, {}
        logits = self(batch["video"])
        selected_logits, target = self.labelled_frames(batch, logits)
        return self.criterion(selected_logits.float(), target)

    def validation_step(self, batch, batch_idx):
        if "video" not in batch or not batch["labelled"].any():
            return
        logits = self(batch["video"])
        selected_logits, target = self.labelled_frames(batch, logits)
        loss, _ = self.criterion(selected_logits.float(), target)
        phase = batch["phase"][batch["labelled"]]
        predicted = selected_logits > 0
        if predicted.dim() == 4:  # several structures: channel 0 is the LV, the rest scored each
            for k, name in enumerate(self.structures[1:], start=1):
                self.val_structure_dice[name].update(predicted[:, k], target[:, k])
            predicted, target = predicted[:, 0], target[:, 0]
        self.val_dice["all"].update(predicted, target)
        for name, code in (("ed", 1), ("es", 2)):
            chosen = phase == code  # may select nothing: an empty update adds zero to the sums
            self.val_dice[name].update(predicted[chosen], target[chosen])
        self.val_loss_mean.update(loss.detach().double(), weight=len(target))

    def on_validation_epoch_end(self):
        # Every rank computes every metric, in the same order: each compute() is a collective
        # (all-reduce of the metric's sums), so a rank-local condition here would pair one rank's
        # ED sums with another's ES sums, or hang. Whether a phase is logged is decided on the
        # reduced values, which all ranks share. The values are already global: logged unsynced.
        scores = {name: metric.compute() for name, metric in self.val_dice.items()}
        scores.update({name: metric.compute() for name, metric in self.val_structure_dice.items()})
        scores["loss"] = self.val_loss_mean.compute()  # NaN when no rank scored a frame
        for name, value in scores.items():
            key = "val_dice" if name == "all" else f"val_{name}" if name == "loss" else f"val_dice_{name}"
            if name == "all":
                value = torch.nan_to_num(value, nan=0.0)
            elif not torch.isfinite(value):
                continue
            self.log(key, value.float(), prog_bar=name == "all", sync_dist=False)
        for metric in (*self.val_dice.values(), *self.val_structure_dice.values(), self.val_loss_mean):
            metric.reset()
