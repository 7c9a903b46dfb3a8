"""Command line of ``train_ssl.py`` and ``train_weak.py``.

Flags follow the published UniLVSeg scripts (``--data_path --mean --std --encoder --frames
--period --mask_ratio --num_workers --batch_size --epochs --val_check_interval --seed
--checkpoint``) and add ``--config FILE.yaml`` / ``--print_config`` (jsonargparse, every flag
settable in the file), loggers, resume and Lightning Trainer pass-through flags.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

from jsonargparse import ArgumentParser, Namespace

from unilvseg.cli.common import (  # noqa: F401 - base_parser, resolve_precision, setup_logging re-exported
    _is_rank_zero,
    base_parser,
    error_line,
    resolve_config_paths,
    resolve_precision,
    setup_logging,
)
from unilvseg.errors import NonFiniteLossError, UserError
from unilvseg.untrusted import trust_checkpoints

log = logging.getLogger("unilvseg")

PRETEXTS = ("temporal_masking", "anatomical_position")
WEAK_LABELS = ("tracings", "tracings+pseudo", "reference")


def add_schedule_flags(parser: ArgumentParser) -> None:
    """Optimiser and schedule options of the published modules (train_ssl.py / train_weak.py)."""
    group = parser.add_argument_group("optimiser and schedule")
    group.add_argument("--betas", type=float, nargs=2, default=[0.9, 0.999], help="AdamW betas")
    group.add_argument("--amsgrad", type=bool, default=False, help="AdamW amsgrad variant (the published modules use it)")
    group.add_argument("--schedule", type=str, default="warmup_cosine",
                       help="learning rate: warmup_cosine, constant (published SSL) or multistep (published weak: --milestones, --gamma)")
    group.add_argument("--milestones", type=list[int], default=[], help="multistep: epochs at which the rate is multiplied by --gamma")
    group.add_argument("--gamma", type=float, default=0.1, help="multistep: factor at each milestone")


def add_size_flag(parser) -> None:
    """``--size H W`` (train_ssl.py, train_weak.py; train_labelfree.py has its own, default 64 64)."""
    parser.add_argument(
        "--size", type=int, nargs=2, default=[112, 112],
        help="network input H W: videos and masks are resized to it (saved in the checkpoint, predict.py resizes back)",
    )


def ssl_parser() -> ArgumentParser:
    parser = base_parser("train_ssl.py", "Self-supervised pre-training (temporal masking or anatomical position).")
    group = parser.add_argument_group("self-supervision")
    group.add_argument("--pretext", type=str, default="temporal_masking", help=f"one of {', '.join(PRETEXTS)}")
    group.add_argument("--mask_ratio", type=float, default=0.6, help="fraction of frames hidden (temporal masking)")
    group.add_argument("--loss_on", type=str, default="all", help="all (published) or masked frames only")
    group.add_argument("--external_dir", type=list[str], default=[], help="extra folders of unlabelled videos")
    group.add_argument("--reconstruction_weight", type=float, default=0.0, help="anatomical_position: add temporal-masking reconstruction (multi-task)")
    group.add_argument("--ssl_blank", type=str, default="normalised",
                       help="temporal masking: hidden frames are 0 after normalisation (normalised = the mean) or black raw frames "
                       "(raw = -mean/std, as the published code)")
    group.add_argument("--random_reverse", type=bool, default=False, help="temporal masking: play each clip backwards with p = 0.5 (published option)")
    group.add_argument("--checkpoint", type=str | None, default=None,
                       help="initialise the network from an SSL or weak checkpoint (unilvseg or published SimLVSeg), new optimiser and schedule; "
                       "--resume continues a run exactly")
    group.add_argument("--along_bins", type=int, default=4, help="anatomical_position: position bins along the LV axis")
    group.add_argument("--across_bins", type=int, default=4, help="anatomical_position: position bins across the LV axis")
    group.add_argument("--position_grid", type=str, default="cartesian",
                       help="anatomical_position: cartesian (--along_bins x --across_bins tiles) or polar (--rings x --sectors around the LV centre)")
    group.add_argument("--rings", type=int, default=3, help="anatomical_position, polar grid: radial bands (the last one beyond the LV)")
    group.add_argument("--sectors", type=int, default=8, help="anatomical_position, polar grid: equal angular sectors")
    add_size_flag(group)
    parser.set_defaults(epochs=3)
    add_schedule_flags(parser)
    return parser


def weak_parser() -> ArgumentParser:
    parser = base_parser("train_weak.py", "Weakly supervised LV segmentation from the ED/ES tracings.")
    group = parser.add_argument_group("weak supervision")
    group.add_argument("--checkpoint", type=str | None, default=None, help="pre-training checkpoint to start from")
    group.add_argument("--loss", type=str, nargs="+", default=["dice", "bce"], help="dice and/or bce")
    group.add_argument(
        "--labels", type=str, default="tracings",
        help="tracings; tracings+pseudo (tracings where they exist, QC-passed pseudo-labels of --pseudo_labels on every "
        "other frame and video); reference (every frame of the dense ReferenceMasks: fully supervised, e.g. on the "
        "phantom); or pseudo for label-free training (see train_labelfree.py)",
    )
    group.add_argument(
        "--structures", type=str | None, default=None,
        help="structures the network segments, comma-separated from lv, myo, la, rv, ra (default lv); more than the LV "
        "needs targets that have them: --labels reference on a folder whose ReferenceMasks carry label maps",
    )
    group.add_argument(
        "--pseudo_labels", type=str | None, default=None,
        help="with --labels tracings+pseudo: a label round folder of a label-free run (e.g. RUN/labels/round1)",
    )
    group.add_argument("--train_videos", type=int | None, default=None, help="use only n labelled training videos (seeded subset)")
    group.add_argument("--pct_train", type=float | None, default=None,
                       help="use only this fraction (0-1] of the labelled training videos: round(fraction x n), same seeded subset rule as --train_videos")
    group.add_argument("--pretrained_type", type=str, default="pl_full",
                       help="with --checkpoint: pl_full (the whole network) or encoder (only the encoder's tensors)")
    group.add_argument("--trainable", type=str, default="all",
                       help="all, or head: train only the output block on frozen features (a linear probe with a 1x1x1 head)")
    add_schedule_flags(parser)
    add_size_flag(group)
    return parser


def _check_flags(args: Namespace) -> None:
    if args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    if args.num_nodes < 1:
        raise UserError(f"--num_nodes must be >= 1, got {args.num_nodes}")
    if args.num_nodes > 1 and not args.run_dir and not args.resume:
        # Each node starts its own process: a timestamped default folder would differ per node.
        raise UserError("--num_nodes > 1 needs --run_dir (one folder on a file system every node reaches)")
    if args.resume and getattr(args, "checkpoint", None):
        log.info("--resume given: --checkpoint is ignored (the run's own weights are restored)")


def build_datamodule(args: Namespace, scheme: str, **extra):
    from unilvseg.data.dataset import EchoNetDataModule

    return EchoNetDataModule(
        data_path=args.data_path,
        scheme=scheme,
        frames=args.frames,
        period=args.period,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        mean=args.mean,
        std=args.std,
        augment=args.augment,
        cache_dir=args.cache_dir,
        cache_max_gb=args.cache_max_gb,
        seed=args.seed,  # clips and batch order from (seed, epoch, item): resumed runs repeat exactly
        size=_size(args),
        handover=_handover(args),
        **extra,
    )


def _handover(args: Namespace) -> str:
    choice = getattr(args, "handover", "auto")
    if choice == "auto":
        return "uint8" if args.num_workers > 0 else "float"
    return choice


def _size(args: Namespace) -> tuple[int, int]:
    size = tuple(int(v) for v in (getattr(args, "size", None) or (112, 112)))
    if len(size) != 2 or min(size) < 1:
        raise UserError(f"--size must be two positive integers H W, got {list(size)}")
    from unilvseg.models import check_input_shape

    check_input_shape(args.encoder, size[0], size[1], args.frames)
    return size


def network_kwargs(args: Namespace) -> dict:
    return dict(
        encoder=args.encoder, frames=args.frames, width=args.width, encoder_weights=args.encoder_weights, lr=args.lr,
        weight_decay=args.weight_decay, betas=list(args.betas), amsgrad=args.amsgrad, schedule=args.schedule,
        milestones=list(args.milestones), gamma=args.gamma,
    )


def run_training(args: Namespace, kind: str, build: Callable, parser: ArgumentParser) -> int:
    """Validate everything, then create the run folder, train, and print where results are."""
    import lightning as L

    from unilvseg.io import write_text
    from unilvseg.training import fit_resume, make_trainer, resume_step_of

    _check_flags(args)
    L.seed_everything(args.seed, workers=True, verbose=False)
    # Data and network are built (and their errors raised) before anything is written.
    task, datamodule = build(args)
    # The checkpoint must come from the same task and network, or Lightning fails deep inside.
    resume_step = resume_step_of(args.resume, task) if args.resume else None
    if getattr(args, "compile", False):
        # In place (nn.Module.compile): the state dict keeps its names, so checkpoints load as ever.
        task.network.compile()
    datamodule.index  # noqa: B018 - reads and validates the dataset now
    datamodule.records("train"), datamodule.records("val")
    datamodule.cache.prepare()  # an unwritable cache is an error before the run folder exists
    task.data_settings = {"mean": list(args.mean), "std": list(args.std), "size": list(datamodule.size), "period": args.period}

    if args.resume:
        run_dir = Path(args.resume).resolve().parent.parent
    else:
        run_dir = Path(args.run_dir or _launched_run_dir() or Path("runs") / kind / time.strftime("%Y%m%d-%H%M%S"))
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run_dir {run_dir}: exists and is not a folder")
    if _is_rank_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        config = parser.dump(args, skip_none=False)
        write_text(config, run_dir / "config.yaml")
        # DDP (Lightning's subprocess launcher) re-runs this script for ranks 1..n-1: they must
        # write into this run folder, not one with their own start time.
        os.environ[_RUN_DIR_ENV] = str(run_dir.resolve())
    trainer = make_trainer(
        run_dir,
        monitor=getattr(task, "monitor", "val_loss"),
        mode="max" if getattr(task, "monitor", "val_loss").startswith("val_dice") else "min",
        epochs=args.epochs,
        logger=args.logger,
        resume_step=resume_step,
        progress_bar=args.progress_bar,
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=args.strategy,
        precision=resolve_precision(args.precision, args.accelerator),
        val_check_interval=args.val_check_interval,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
        max_steps=args.max_steps,
        max_time=args.max_time,
        accumulate_grad_batches=args.accumulate_grad_batches,
        gradient_clip_val=args.gradient_clip_val,
        deterministic="warn",
    )
    fit_resume(trainer, task, datamodule, args.resume)
    if not trainer.is_global_zero:
        return 0  # the run summary is rank 0's to print
    best = run_dir / "checkpoints" / "best.ckpt"
    log.info("run folder: %s", run_dir)
    log.info("best checkpoint: %s (%s)", best, _best_score(trainer))
    if kind == "ssl":
        log.info("next: python train_weak.py --checkpoint %s", best)
    return 0


_RUN_DIR_ENV = "UNILVSEG_LAUNCHED_RUN_DIR"


def _launched_run_dir() -> str | None:
    """The run folder rank 0 chose, for a DDP rank that Lightning launched from rank 0's process."""
    return os.environ.get(_RUN_DIR_ENV) if not _is_rank_zero() else None


def _best_score(trainer) -> str:
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor and callback.best_model_score is not None:
            return f"{callback.monitor}={float(callback.best_model_score):.4f}"
    return "no validation score"


def build_ssl(args: Namespace):
    from unilvseg.tasks.ssl import TemporalMaskingTask

    if args.pretext not in PRETEXTS:
        raise UserError(f"--pretext {args.pretext!r}: expected one of {', '.join(PRETEXTS)}")
    if args.pretext == "temporal_masking":
        task = TemporalMaskingTask(
            mask_ratio=args.mask_ratio, loss_on=args.loss_on, blank=args.ssl_blank, mean=list(args.mean), std=list(args.std),
            random_reverse=args.random_reverse, **network_kwargs(args),
        )
        _initialise_from(task, args)
        return task, build_datamodule(args, "ssl", external_dirs=args.external_dir)
    from unilvseg.tasks.anatomical import AnatomicalPositionTask

    task = AnatomicalPositionTask(
        along_bins=args.along_bins,
        across_bins=args.across_bins,
        mask_ratio=args.mask_ratio,
        reconstruction_weight=args.reconstruction_weight,
        position_grid=args.position_grid,
        rings=args.rings,
        sectors=args.sectors,
        **network_kwargs(args),
    )
    _initialise_from(task, args)
    return task, build_datamodule(args, "dense", external_dirs=args.external_dir, **task.data_targets())


def _initialise_from(task, args: Namespace) -> None:
    """train_ssl.py --checkpoint: start from another run's weights (SSL, weak or published) with a
    fresh optimiser and schedule; not on --resume, which restores the run's own state."""
    if args.checkpoint and not args.resume:
        from unilvseg.tasks.transfer import load_pretrained

        task.transfer_report = load_pretrained(task.network, args.checkpoint)


def build_weak(args: Namespace):
    from unilvseg.tasks.weak import WeakSegmentationTask

    if args.labels not in WEAK_LABELS:
        raise UserError(f"--labels {args.labels!r}: expected one of {', '.join(WEAK_LABELS)} (or pseudo, for label-free training)")
    if args.labels == "tracings" and args.pseudo_labels:
        raise UserError("--pseudo_labels is used only with --labels tracings+pseudo")
    checkpoint = None if args.resume else args.checkpoint
    if args.train_videos is not None and args.pct_train is not None:
        raise UserError("give --train_videos (a count) or --pct_train (a fraction), not both")
    if args.pct_train is not None and not 0.0 < args.pct_train <= 1.0:
        raise UserError(f"--pct_train must be in (0, 1], got {args.pct_train}")
    from unilvseg.tasks.weak import check_structures

    structures = check_structures(args.structures)
    if len(structures) > 1 and args.labels != "reference":
        raise UserError(
            f"--structures {args.structures}: tracings hold the LV only; segmenting {', '.join(structures[1:])} needs "
            "--labels reference (dense label maps), or train_labelfree.py --structures"
        )
    task = WeakSegmentationTask(loss=args.loss, checkpoint=checkpoint, pretrained_type=args.pretrained_type, trainable=args.trainable,
                                structures=None if args.structures is None else list(structures), **network_kwargs(args))
    subset = dict(train_videos=args.train_videos, train_fraction=args.pct_train, subset_seed=args.seed)
    if args.labels == "tracings":
        return task, build_datamodule(args, "weak", **subset)
    if args.labels == "reference":
        from unilvseg.data.dataset import ReferenceTargets

        datamodule = build_datamodule(args, "dense", **subset)
        targets = ReferenceTargets(datamodule.root, datamodule.size)
        datamodule.train_targets = datamodule.val_targets = targets
        return task, datamodule
    from unilvseg.data.dataset import TracingsFirstTargets
    from unilvseg.labelfree.pipeline import COMPLETE, PseudoLabelTargets

    if not args.pseudo_labels:
        raise UserError("--labels tracings+pseudo needs --pseudo_labels <label round folder of a label-free run, e.g. RUN/labels/round1>")
    label_dir = Path(args.pseudo_labels)
    if not (label_dir / COMPLETE).is_file():
        raise UserError(
            f"--pseudo_labels {label_dir}: not a finished label round (no {COMPLETE}); "
            "expected a label-free run's labels/round<k> folder"
        )
    datamodule = build_datamodule(args, "weak_pseudo", **subset)
    # Pseudo-labels resized (nearest) to the training size; tracings drawn at it.
    datamodule.train_targets = TracingsFirstTargets(PseudoLabelTargets(label_dir, datamodule.size), datamodule.size)
    return task, datamodule


def _main(argv, parser_factory, kind, build) -> int:
    setup_logging()
    parser = parser_factory()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(_with_run_config(resolve_config_paths(argv), parser))
        trust_checkpoints(args.trust_checkpoint)
        return run_training(args, kind, build, parser)
    except (UserError, NonFiniteLossError) as error:
        # A diverged run is the user's to fix (learning rate, data), not a bug: no traceback.
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2


def _with_run_config(argv: list[str], parser: ArgumentParser | None = None) -> list[str]:
    """On --resume without --config, start from the interrupted run's own config.yaml."""
    if "--resume" in argv and "--config" not in argv:
        resume = argv[argv.index("--resume") + 1] if argv.index("--resume") + 1 < len(argv) else None
        if resume:
            config = Path(resume).resolve().parent.parent / "config.yaml"
            if config.is_file():
                if parser is not None:
                    _check_run_config(config, resume, parser)
                return ["--config", str(config)] + argv
    return argv


def _check_run_config(config: Path, resume: str, parser: ArgumentParser) -> None:
    """A run folder of another script (train_ssl.py vs train_weak.py) is a clear error, not a
    parser complaint about one of its flags."""
    import yaml

    try:
        values = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"--resume {resume}: cannot read the run's {config} ({error}); pass --config explicitly") from None
    unknown = sorted(set(values) - set(parser.get_defaults().keys())) if isinstance(values, dict) else []
    if unknown:
        from unilvseg.tasks.transfer import read_checkpoint

        try:
            kind = read_checkpoint(resume, flag="--resume").get("unilvseg_task") or "non-unilvseg"
        except UserError:  # unreadable, or refused as untrusted: the run folder is still the wrong one
            kind = "non-unilvseg"
        raise UserError(
            f"--resume {resume}: is a {kind} checkpoint of another script's run ({config} sets {', '.join(unknown[:4])}); "
            f"{parser.prog} cannot resume it (resume it with the script that made it, or start from it with --checkpoint)"
        )


def main_ssl(argv=None) -> int:
    return _main(argv, ssl_parser, "ssl", build_ssl)


def main_weak(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--labels" in argv and argv.index("--labels") + 1 < len(argv) and argv[argv.index("--labels") + 1] == "pseudo":
        from unilvseg.cli.labelfree import main as labelfree_main

        rest = list(argv)
        i = rest.index("--labels")
        del rest[i : i + 2]
        return labelfree_main(rest)
    return _main(argv, weak_parser, "weak", build_weak)
