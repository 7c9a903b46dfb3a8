"""Rebuilding a trained task from its checkpoint alone (for prediction and evaluation)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from unilvseg.errors import UserError
from unilvseg.models.registry import encoder_of_state
from unilvseg.tasks import TASKS
from unilvseg.tasks.transfer import network_state, read_checkpoint

SEGMENTATION_TASKS = ("weak_segmentation", "label_free")
log = logging.getLogger("unilvseg")


PUBLISHED_FRAMES = 32  # the published scripts' --frames default


def load_task(path: str | Path, expect: tuple[str, ...] | None = SEGMENTATION_TASKS, frames: int | None = None):
    """The task stored in ``path``, in eval mode on CPU; ``expect`` limits which kinds are accepted.

    A published SimLVSeg checkpoint (see unilvseg.models.simlvseg) has no hyperparameters: it
    becomes a weak-segmentation task for clips of ``frames`` frames (default 32, the published
    default), with EchoNet's normalisation (the published default too)."""
    checkpoint = read_checkpoint(path)
    kind = checkpoint.get("unilvseg_task")
    if kind is None:  # a Lightning 1.x checkpoint of the published code, with or without hyperparameters
        from unilvseg.models.simlvseg import is_published_state

        state = checkpoint.get("state_dict", checkpoint)
        if isinstance(state, dict) and is_published_state(state):
            return _load_published(path, checkpoint, frames or PUBLISHED_FRAMES)
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
    state = network_state(checkpoint)
    if "encoder" in hparams:  # trained before 3d_unet* became the published network
        hparams["encoder"] = encoder_of_state(hparams["encoder"], state)
    task = TASKS[kind](**hparams)
    missing, unexpected = task.network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"--checkpoint {path}: weights do not fit the {hparams.get('encoder')} network "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    _check_finite(task, path)
    if frames is not None and frames != hparams.get("frames"):
        log.warning("--frames %d ignored: %s is a unilvseg checkpoint of %s-frame clips", frames, path, hparams.get("frames"))
    task.data_settings = dict(checkpoint.get("unilvseg_data", {}))
    task.eval()
    return task


def _check_finite(task, path) -> None:
    bad = [name for name, tensor in task.network.state_dict().items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        # A diverged run's weights give all-background or all-LV masks that look like results.
        raise UserError(f"--checkpoint {path}: non-finite (NaN/inf) weights in {len(bad)} tensor(s), e.g. {bad[0]}; the run diverged")


def _load_published(path, checkpoint: dict, frames: int):
    from unilvseg.models.simlvseg import published_network
    from unilvseg.tasks.weak import WeakSegmentationTask

    state = checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint
    settings = published_network(state)
    if settings["out_channels"] != 1:
        raise UserError(f"--checkpoint {path}: published network with {settings['out_channels']} output channels; segmentation needs 1")
    task = WeakSegmentationTask(encoder=settings["encoder"], width=settings["width"], frames=frames)
    # Strict: a published checkpoint must fill every tensor of the same network, or it is not one.
    try:
        task.network.load_state_dict(network_state(checkpoint), strict=True)
    except RuntimeError as error:
        raise UserError(f"--checkpoint {path}: published SimLVSeg weights do not fit {settings['encoder']} ({error})") from None
    _check_finite(task, path)
    log.info("%s: published SimLVSeg checkpoint, %s, %d-frame clips (--frames)", path, settings["encoder"], frames)
    task.data_settings = {}
    task.eval()
    return task
