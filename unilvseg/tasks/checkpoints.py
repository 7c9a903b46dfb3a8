"""Rebuilding a trained task from its checkpoint alone (for prediction and evaluation)."""

from __future__ import annotations

from pathlib import Path

import torch

from unilvseg.errors import UserError
from unilvseg.tasks import TASKS
from unilvseg.tasks.transfer import network_state, read_checkpoint

SEGMENTATION_TASKS = ("weak_segmentation", "label_free")


def load_task(path: str | Path, expect: tuple[str, ...] | None = SEGMENTATION_TASKS):
    """The task stored in ``path``, in eval mode on CPU; ``expect`` limits which kinds are accepted."""
    checkpoint = read_checkpoint(path)
    kind = checkpoint.get("unilvseg_task")
    if kind is None or "hyper_parameters" not in checkpoint:
        raise UserError(f"--checkpoint {path}: not a unilvseg training checkpoint (no task or hyperparameters inside)")
    if expect is not None and kind not in expect:
        raise UserError(
            f"--checkpoint {path}: is a {kind} checkpoint; this command needs one of {', '.join(expect)} "
            "(fine-tune it with train_weak.py --checkpoint first)"
        )
    if kind not in TASKS:
        raise UserError(f"--checkpoint {path}: unknown task {kind!r}")
    hparams = dict(checkpoint["hyper_parameters"])
    hparams.pop("checkpoint", None)  # pre-training weights are already inside this checkpoint
    task = TASKS[kind](**hparams)
    missing, unexpected = task.network.load_state_dict(network_state(checkpoint), strict=False)
    if missing or unexpected:
        raise UserError(
            f"--checkpoint {path}: weights do not fit the {hparams.get('encoder')} network "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    bad = [name for name, tensor in task.network.state_dict().items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        # A diverged run's weights give all-background or all-LV masks that look like results.
        raise UserError(f"--checkpoint {path}: non-finite (NaN/inf) weights in {len(bad)} tensor(s), e.g. {bad[0]}; the run diverged")
    task.data_settings = dict(checkpoint.get("unilvseg_data", {}))
    task.eval()
    return task
