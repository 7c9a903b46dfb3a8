"""Command line of ``train_labelfree.py`` (also ``train_weak.py --labels pseudo``).

Label-free LV segmentation after Ferreira et al.: classical weak labels + quality control,
early learning on the frames that pass, then ``--rounds`` self-learning rounds; no tracing is
used for training or checkpoint selection (see :mod:`unilvseg.labelfree.pipeline`). Shares the
data/model/optimisation/run flags of ``train_weak.py``; the defaults are sized for a CPU
(``3d_unet_tiny``, 16-frame clips at 64x64, 20 + 10 epochs: about 4 minutes for one round on
the 40-video phantom on 2 cores); on a GPU use e.g. ``--encoder 3d_unet --frames 32 --size 112 112``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from unilvseg.cli.common import base_parser, error_line, resolve_precision, setup_logging
from unilvseg.untrusted import trust_checkpoints
from unilvseg.errors import UserError

log = logging.getLogger("unilvseg")


def labelfree_parser() -> ArgumentParser:
    from unilvseg.labelfree.pipeline import ROUND_INITS, STAGE_CHECKPOINTS, PipelineConfig, QCSettings

    parser = base_parser(
        "train_labelfree.py",
        "Label-free LV segmentation (Ferreira et al.): classical weak labels, QC, early learning, self-learning rounds. "
        "Outputs in --run_dir: labels/round<k>/ (pseudo-labels + qc.csv), stages/<stage>/checkpoints/, "
        "checkpoints/final.ckpt (for predict.py), report.csv and report.md.",
    )
    group = parser.add_argument_group("label-free")
    group.add_argument("--rounds", type=int, default=1, help="self-learning rounds after early learning (0 = early learning only)")
    group.add_argument("--early_epochs", type=int, default=20, help="epochs of early learning on the classical labels (one clip per video per epoch; few: stop before the noise is learnt)")
    group.add_argument("--round_epochs", type=int, default=10, help="epochs of each self-learning round")
    group.add_argument("--stage_checkpoint", type=str, default=PipelineConfig.stage_checkpoint,
                       help=f"checkpoint each stage hands on: {' or '.join(STAGE_CHECKPOINTS)} (best val pseudo-label Dice, or the end of its epochs)")
    group.add_argument("--round_init", type=str, default="previous", help=f"each round starts from: {' or '.join(ROUND_INITS)} (previous stage's weights, or a fresh network)")
    group.add_argument("--size", type=int, nargs=2, default=[64, 64], help="network input H W (videos and labels are resized; predict.py reads it from the checkpoint)")
    group.add_argument("--label_stride", type=int | None, default=None, help="window step when predicting pseudo-labels (default frames // 2)")
    group.add_argument("--threshold", type=float, default=0.5, help="probability threshold of predicted masks")
    group.add_argument("--pool_scale", type=float, default=1.3,
                       help="rounds' pseudo-labels keep only predicted pixels darker than this x the frame's in-fan Otsu threshold (blood pool); 0 = off")
    group.add_argument("--checkpoint", type=str | None, default=None, help="pre-training checkpoint for the early-learning network (e.g. from train_ssl.py)")
    group.add_argument("--loss", type=str, nargs="+", default=["dice", "bce"], help="early-learning loss: dice and/or bce")
    group.add_argument("--round_loss", type=str, nargs="+", default=["bce"],
                       help="self-learning rounds' loss (default bce: with dice the masks grew round after round)")
    group.add_argument("--train_videos", type=int | None, default=None, help="use only n training videos (seeded subset)")
    group.add_argument("--view", type=str, default="a4c",
                       help="echo view of the videos, which picks the stage-1 label maker: a4c (apical 4-chamber, default), "
                       "a2c (apical 2-chamber) or sax (parasternal short axis); videos whose FileList View differs are skipped "
                       "(unilvseg.labelfree.views)")
    group.add_argument("--structures", type=str | None, default=None,
                       help="structures to label and segment, comma-separated from lv, myo, la, rv, ra; default: the view's "
                       "(a4c: lv; a2c: lv,myo,la; sax: lv,myo,rv). An A4C can have all five (lv,myo,la,rv,ra: "
                       "unilvseg.labelfree.four_chamber); a2c and sax only their default ones")
    qc = parser.add_argument_group("quality control (a frame's label is trained on only if it passes)")
    defaults = QCSettings()
    qc.add_argument("--qc_min_area", type=float, default=defaults.min_area_frac, help="smallest LV area, fraction of the fan")
    qc.add_argument("--qc_max_area", type=float, default=defaults.max_area_frac, help="largest LV area, fraction of the fan")
    qc.add_argument("--qc_min_solidity", type=float, default=defaults.min_solidity, help="area / convex hull area")
    qc.add_argument("--qc_max_area_jump", type=float, default=defaults.max_area_jump, help="relative area change vs the running median")
    qc.add_argument("--qc_max_centroid_shift", type=float, default=defaults.max_centroid_shift, help="centroid distance from the clip's median, in sqrt(fan area)")
    qc.add_argument("--qc_max_length_ratio", type=float, default=defaults.max_length_ratio,
                    help="longest label along the LV axis, x the clip's short (end-systolic) length; 0 = off (a longer label carries the atrium); "
                    "apical views only (not --view sax)")
    parser.set_defaults(encoder="3d_unet_tiny", frames=16, epochs=None)
    return parser


def config_from_args(args: Namespace):
    from unilvseg.labelfree.pipeline import PipelineConfig, QCSettings
    from unilvseg.labelfree.views import check_view, view_structures

    if args.epochs is not None:
        raise UserError("--epochs does not apply to label-free training: use --early_epochs and --round_epochs")
    if args.resume:
        raise UserError(
            f"--resume {args.resume}: label-free runs continue by running the same command again with "
            "--run_dir <the interrupted run> (completed stages are reused)"
        )
    unsupported = {"--max_time": args.max_time, "--val_check_interval": args.val_check_interval if args.val_check_interval != 1.0 else None,
                   "--strategy": args.strategy if args.strategy != "auto" else None,
                   "--num_nodes": args.num_nodes if args.num_nodes != 1 else None,
                   "--compile": True if args.compile else None,
                   "--handover": args.handover if args.handover == "uint8" else None}
    given = [flag for flag, value in unsupported.items() if value is not None]
    if given:
        raise UserError(f"{', '.join(given)}: not supported by label-free training (each stage runs whole epochs)")
    if args.num_workers < 0:
        raise UserError(f"--num_workers must be >= 0, got {args.num_workers}")
    qc = QCSettings(
        min_area_frac=args.qc_min_area,
        max_area_frac=args.qc_max_area,
        min_solidity=args.qc_min_solidity,
        max_area_jump=args.qc_max_area_jump,
        max_centroid_shift=args.qc_max_centroid_shift,
        max_length_ratio=args.qc_max_length_ratio,
    )
    view = check_view(args.view)
    structures = list(view_structures(view, args.structures))
    args.view, args.structures = view, ",".join(structures)  # config.yaml records what ran
    return PipelineConfig(
        data_path=args.data_path,
        rounds=args.rounds,
        early_epochs=args.early_epochs,
        round_epochs=args.round_epochs,
        round_init=args.round_init,
        stage_checkpoint=args.stage_checkpoint,
        round_loss=list(args.round_loss),
        encoder=args.encoder,
        width=args.width,
        encoder_weights=args.encoder_weights,
        checkpoint=args.checkpoint,
        loss=list(args.loss),
        frames=args.frames,
        period=args.period,
        size=list(args.size),
        batch_size=args.batch_size,
        mean=list(args.mean),
        std=list(args.std),
        augment=args.augment,
        train_videos=args.train_videos,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        label_stride=args.label_stride,
        threshold=args.threshold,
        pool_scale=args.pool_scale,
        structures=structures,
        view=view,
        qc=qc,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
        max_steps=args.max_steps,
        accelerator=args.accelerator,
        devices=args.devices,
        precision=resolve_precision(args.precision, args.accelerator),
        accumulate_grad_batches=args.accumulate_grad_batches,
        gradient_clip_val=args.gradient_clip_val,
    )


def main(argv: list[str] | None = None) -> int:
    from unilvseg.io import write_text
    from unilvseg.labelfree.pipeline import LabelFreePipeline

    setup_logging()
    parser = labelfree_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        trust_checkpoints(args.trust_checkpoint)
        config = config_from_args(args)
        run_dir = Path(args.run_dir or Path("runs") / "labelfree" / time.strftime("%Y%m%d-%H%M%S"))
        pipeline = LabelFreePipeline(
            config, run_dir, logger=args.logger, progress_bar=args.progress_bar,
            cache_dir=args.cache_dir, num_workers=args.num_workers, cache_max_gb=args.cache_max_gb,
        )
        result = pipeline.run()
        write_text(parser.dump(args, skip_none=False), run_dir / "config.yaml")
    except UserError as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    last = result.report.iloc[-1]
    log.info(
        "final: test Dice vs tracings %.3f, vs reference masks %.3f (report only; see %s)",
        last["test_dice_traced"], last["test_dice_reference"], result.run_dir / "report.md",
    )
    log.info("next: python predict.py --checkpoint %s --save_dir <folder>", result.final_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
