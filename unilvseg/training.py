"""Trainer assembly shared by every training script: run folder, checkpoints, logging, resume.

A run folder holds ``config.yaml`` (resolved flags), ``metrics.csv`` and ``checkpoints/``
(``best.ckpt`` by the task's monitored metric, ``last.ckpt`` after every validation). Every
checkpoint and metrics write is atomic, so a run killed at any moment resumes from its last
complete checkpoint with ``--resume <run>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from unilvseg.errors import UserError
from unilvseg.io import remove_stale_temporaries, torch_save, write_csv

log = logging.getLogger("unilvseg")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints go to a temporary file and are renamed into place when complete."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        torch_save(checkpoint, path)


class RunCSVLogger(Logger):
    """metrics.csv of a run, rewritten atomically; on resume, rows after the checkpoint are dropped
    (they are about to be recomputed) and earlier rows are kept (Lightning's CSVLogger deletes them)."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        super().__init__()
        self.path = Path(run_dir) / "metrics.csv"
        self.rows: list[dict] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as handle:
                self.rows = [row for row in csv.DictReader(handle) if float(row.get("step") or 0) < resume_step]

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the resolved config is written by the CLI as config.yaml

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {key: (value.item() if isinstance(value, torch.Tensor) else value) for key, value in metrics.items()}
        row["step"] = step if step is not None else len(self.rows)
        self.rows.append(row)

    @rank_zero_only
    def save(self) -> None:
        if self.rows:
            table = pd.DataFrame(self.rows)
            ordered = ["epoch", "step"] + sorted(c for c in table.columns if c not in ("epoch", "step"))
            write_csv(table[[c for c in ordered if c in table.columns]], self.path)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def make_logger(kind: str, run_dir: Path, resume_step: int | None):
    """csv (default, always written) plus optionally tensorboard or wandb."""
    loggers = [RunCSVLogger(run_dir, resume_step)]
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    elif kind == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UserError("--logger wandb needs the wandb package: pip install 'unilvseg[wandb]'") from None
        from lightning.pytorch.loggers import WandbLogger

        # Offline unless the user has configured a key: runs never fail for want of a network.
        offline = not os.environ.get("WANDB_API_KEY")
        loggers.append(WandbLogger(save_dir=str(run_dir), project="unilvseg", offline=offline))
    elif kind != "csv":
        raise UserError(f"--logger {kind!r}: expected csv, tensorboard or wandb")
    return loggers


def resume_step_of(checkpoint_path: str | Path, task=None) -> int:
    """Global step of a resumable checkpoint; with ``task``, also check the checkpoint was made by
    the same kind of task with the same network (else Lightning fails deep inside with a traceback)."""
    from unilvseg.tasks.transfer import read_checkpoint

    checkpoint = read_checkpoint(checkpoint_path, flag="--resume")
    if "global_step" not in checkpoint or "optimizer_states" not in checkpoint:
        raise UserError(f"--resume {checkpoint_path}: not a resumable training checkpoint (no optimizer state)")
    if task is not None:
        kind = checkpoint.get("unilvseg_task")
        if kind != task.task_name:
            raise UserError(
                f"--resume {checkpoint_path}: is a {kind or 'non-unilvseg'} checkpoint; this run trains {task.task_name} "
                "(resume with the script that made it, or start from it with --checkpoint)"
            )
        saved = checkpoint.get("hyper_parameters", {})
        for name in ("encoder", "width", "frames"):
            if name in saved and saved[name] != task.hparams.get(name):
                raise UserError(
                    f"--resume {checkpoint_path}: was trained with --{name} {saved[name]}, "
                    f"this run asks for --{name} {task.hparams.get(name)}; drop the flag to resume"
                )
    return int(checkpoint["global_step"])


def fit_resume(trainer, task, datamodule, resume: str | None) -> None:
    """``trainer.fit``, resuming from ``resume`` with Lightning's own loader held to the same rule
    as ours: the checkpoint is unpickled as data (unilvseg.untrusted) unless the user trusts it.
    ``resume_step_of`` has already refused a checkpoint that needs more than data."""
    import inspect

    from unilvseg.untrusted import safe_globals, trusted_by_environment

    extra = {}
    if resume and "weights_only" in inspect.signature(trainer.fit).parameters:
        extra["weights_only"] = not trusted_by_environment()
    with safe_globals():
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume, **extra)


def make_trainer(
    run_dir: str | Path,
    monitor: str,
    mode: str,
    epochs: int = 5,
    logger: str = "csv",
    resume_step: int | None = None,
    progress_bar: bool = True,
    **trainer_kwargs,
) -> L.Trainer:
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    # Temporaries left by a killed write (a checkpoint, metrics.csv, ...) are never valid output.
    # Only the files this trainer writes: --run_dir may be a folder that holds other things.
    # Rank 0 only: under DDP the other ranks start while rank 0 may already be writing there.
    stale = (remove_stale_temporaries(run_dir, recursive=False) + remove_stale_temporaries(checkpoints)) if rank_zero_only.rank == 0 else 0
    if stale:
        log.info("%s: removed %d temporary file(s) left by an interrupted run", run_dir, stale)
    best = ModelCheckpoint(
        dirpath=checkpoints, filename="best", monitor=monitor, mode=mode, save_top_k=1, save_last=False,
        auto_insert_metric_name=False, enable_version_counter=False,
    )
    last = ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1, monitor=None, enable_version_counter=False)
    callbacks = [best, last]
    if progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    trainer_kwargs.setdefault("log_every_n_steps", 1)
    trainer_kwargs.setdefault("num_sanity_val_steps", 0)
    return L.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=epochs,
        logger=make_logger(logger, run_dir, resume_step),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        **trainer_kwargs,
    )
