"""Label-free LV segmentation task (after Ferreira et al.): weak segmentation on pseudo-labels.

The network, loss and pooled-Dice validation are those of
:class:`~unilvseg.tasks.weak.WeakSegmentationTask`; what differs is where ``labelled`` comes
from. Training clips carry the quality-controlled pseudo-labels of the current round
(:class:`unilvseg.labelfree.pipeline.PseudoLabelTargets`): every frame that passed QC is a
target, failed frames are ignored. Validation scores the pseudo-labels of the *val* split, so
``val_dice`` (and with it ``best.ckpt``) is chosen without a single manual tracing.

``size`` is the (H, W) the network was trained at; it is saved in the checkpoint so
``predict.py`` resizes videos of another size to it and the masks back (see
:func:`unilvseg.evaluation.predict.training_size`). ``label_round`` records which label round the
checkpoint was trained on (0 = classical weak labels), for the record only.
"""

from __future__ import annotations

from unilvseg.errors import UserError
from unilvseg.tasks import register_task
from unilvseg.tasks.weak import LOSSES, WeakSegmentationTask


@register_task
class LabelFreeTask(WeakSegmentationTask):
    task_name = "label_free"
    monitor = "val_dice"

    def __init__(
        self,
        loss: list[str] | tuple[str, ...] = LOSSES,
        checkpoint: str | None = None,
        size: tuple[int, int] | list[int] = (112, 112),
        label_round: int = 0,
        **network,
    ):
        size = tuple(int(v) for v in size)
        if len(size) != 2 or min(size) < 1:
            raise UserError(f"--size must be two positive integers (H W), got {list(size)}")
        if label_round < 0:
            raise UserError(f"label_round must be >= 0, got {label_round}")
        super().__init__(loss=loss, checkpoint=checkpoint, **network)
        # Lightning collected every __init__'s arguments already; normalise size to a plain list
        # so the checkpoint's hyperparameters are YAML/JSON friendly.
        self.hparams["size"] = list(size)
        self.size = size
        self.label_round = int(label_round)

    def validation_step(self, batch, batch_idx):
        if "labelled" in batch:
            # How much of the val split the pseudo-labels cover: a falling fraction means the
            # labels (not the network) got worse, which val_dice alone would hide.
            labelled = batch["labelled"]
            self.log("val_labelled_fraction", labelled.float().mean(), batch_size=labelled.numel())
        return super().validation_step(batch, batch_idx)
