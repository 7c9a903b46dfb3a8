"""Command line of ``predict.py``: segment every frame of every video with a trained checkpoint.

Only parsing lives here; the pipeline (video sources, outputs, re-runs) is
:mod:`unilvseg.evaluation.predict`.
"""

from __future__ import annotations

import argparse
import sys

from unilvseg.errors import UserError
from unilvseg.evaluation.predict import PredictOptions, default_mm_per_pixel, run_prediction
from unilvseg.evaluation.volumes import DEFAULT_ED_ES_RULE, ED_ES_RULES


def build_parser() -> argparse.ArgumentParser:
    mm_per_pixel = default_mm_per_pixel()
    parser = argparse.ArgumentParser(
        prog="predict.py",
        description="Segment the left ventricle in every frame of every video with a trained checkpoint.",
        epilog=(
            "Outputs in --save_dir: masks/<FileName>.npz (key masks, uint8 frames x H x W), "
            "<FileName>_<frame>_<ED|ES>.png for traced frames, size.csv (FileName, Frame, Area, Traced), "
            "volumes.csv (FileName, EDV, ESV, EF, EDFrame, ESFrame, EFSD, Beats, EFRule, BeatEFs, BeatFrames), overlays/ with --overlay; "
            "biplane.csv (biplane volumes per heart) when FileList.csv pairs A4C and A2C videos by its View and Heart columns. "
            f"Volumes use the single-plane method of disks with a nominal {mm_per_pixel} mm per pixel "
            "(--mm_per_pixel): EchoNet-Dynamic's 112x112 videos carry no physical pixel size, so EDV/ESV "
            "are only roughly scaled mL; EF is a ratio of volumes and does not depend on the spacing. "
            "The spacing applies to the pixels of each video at its own size. EDFrame/ESFrame/EF come from "
            "unilvseg.evaluation.volumes.volumes_from_masks with --ed_es_rule (default beats: the mean EF of the "
            "complete beats, with EFSD, Beats, BeatEFs and BeatFrames; EFRule names the rule or its fallback)."
        ),
    )
    source = parser.add_argument_group("videos (one of; default: the built-in phantom)")
    source.add_argument("--data_path", help="EchoNet-Dynamic folder (FileList.csv, VolumeTracings.csv, Videos/)")
    source.add_argument("--split", default="test", help="train, val, test or all (with --data_path; default test)")
    source.add_argument("--view", default=None, type=str.lower, choices=("a4c", "a2c", "sax"),
                        help="with --data_path: predict only the videos of this view (FileList's View column; blank or absent = a4c), "
                        "e.g. a view's label-free checkpoint on a multi-view phantom (default: every video)")
    source.add_argument("--external_dir", help="plain folder of videos (.avi, .mp4, .mov, .mkv), no CSVs")
    source.add_argument("--video_path", help="one video; with --save_path OUT.npz writes only that file")
    out = parser.add_argument_group("outputs")
    out.add_argument("--checkpoint", required=True, help="weak-segmentation or label-free checkpoint (.ckpt), or a published SimLVSeg 3D segmentation checkpoint")
    out.add_argument("--save_dir", help="output folder (see below)")
    out.add_argument("--save_path", help="with --video_path: .npz file for the masks and volumes of that video")
    out.add_argument("--overlay", action="store_true", help="also write each video with the mask outline drawn on it")
    out.add_argument("--overlay_format", default="avi", choices=("avi", "gif"), help="overlay video format (default avi)")
    out.add_argument("--overwrite", action="store_true", help="predict again videos whose masks already exist")
    inference = parser.add_argument_group("inference")
    inference.add_argument("--stride", type=int, default=None, help="frames between window starts (default: clip frames // 2; overlapping windows are averaged)")
    inference.add_argument("--batch_size", type=int, default=None, help="windows per forward pass (default: 8 on CUDA, 1 on CPU, where larger batches measured slower per window)")
    inference.add_argument("--amp", default="auto", choices=("auto", "on", "off"),
                           help="bf16 autocast: auto = on CUDA and on CPUs with native bf16 (non-finite windows are redone in float32); off = float32")
    inference.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: CUDA when available)")
    inference.add_argument("--threshold", type=float, default=0.5, help="LV where the averaged probability exceeds this (default 0.5)")
    inference.add_argument("--mean", type=float, nargs=3, default=None, help="per-channel mean of [0,1] pixels (default: the checkpoint's, else EchoNet's)")
    inference.add_argument("--std", type=float, nargs=3, default=None, help="per-channel std of [0,1] pixels (default: the checkpoint's, else EchoNet's)")
    inference.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="network input size (default: the checkpoint's, else 112 112); other videos are resized to it and back")
    inference.add_argument("--frames", type=int, default=None,
                           help="clip length for a published SimLVSeg checkpoint, which does not record it (default 32); unilvseg checkpoints use their own")
    inference.add_argument("--mm_per_pixel", type=float, default=mm_per_pixel, help=f"pixel spacing for volumes (default {mm_per_pixel}, nominal; see below)")
    inference.add_argument("--ed_es_rule", default=DEFAULT_ED_ES_RULE, choices=ED_ES_RULES,
                           help="how ED/ES frames are chosen for EF: beats (default; every complete heartbeat, EF = their mean), "
                           "extremes (largest/smallest volume of the video), volume_peaks (the earlier beat-wise rule)")
    inference.add_argument("--compile", action="store_true",
                           help="torch.compile the network in place first (opt-in: pays off on many or long videos)")
    out.add_argument("--shard", default=None, metavar="K/N",
                     help="predict every N-th video starting with the K-th (0 <= K < N), so N processes (GPUs, nodes) share one "
                     "--save_dir without collisions; the last to finish writes size.csv/volumes.csv. auto: K and N from "
                     "torchrun/SLURM (RANK/WORLD_SIZE, SLURM_PROCID/SLURM_NTASKS)")
    out.add_argument("--trust_checkpoint", action="store_true",
                     help="load --checkpoint with full unpickling, which can run code: only for a file you trust "
                     "(default: it loads as data; also UNILVSEG_TRUST_CHECKPOINT=1)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    from unilvseg.cli.common import setup_logging

    parser = build_parser()
    args = vars(parser.parse_args(argv))
    setup_logging(args.pop("verbose"))
    from unilvseg.untrusted import trust_checkpoints

    trust_checkpoints(args.pop("trust_checkpoint"))
    try:
        return run_prediction(PredictOptions(**args))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
