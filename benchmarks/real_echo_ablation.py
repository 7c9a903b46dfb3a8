"""Which setting of the label-free early network flattens the heart's contraction on real echo?

Each variant trains the early-learning stage (round-0 labels: classical labels after QC, no
tracing, no EF) with **one** setting changed from the label-free defaults, from the same
round-0 labels, seed and epoch budget; then its masks of every TRAIN video are measured as
``benchmarks.real_echo_diagnosis`` measures a stage: the ES/ED area ratio against the one the
official EF implies, the frame-to-frame change, and, on the 3 TRAIN videos with dense reference
masks (untouched by label-free training), ED/ES area and area-curve agreement. The human-traced
VAL/TEST frames are never read (no stage is scored on tracings here).

    python -m benchmarks.real_echo_ablation                                   # every variant
    python -m benchmarks.real_echo_ablation --variants published_pools spatial_pools --epochs 4
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import git_commit, load_average, portable_command, portable_path
from benchmarks.real_echo_diagnosis import DEFAULT_DATA, RESULTS_DIR, diagnose, summary_table

#: One change each from the label-free defaults (PipelineConfig fields). The causes the issue
#: names: temporal smoothing by the four time-halving pools, the 64x64 input, the loss weighting
#: (pooled soft Dice weighs a frame by its area, so small ES masks count less); plus the
#: augmentation, a longer clip, and the network's capacity and training length (a network that
#: cannot tell ES from ED in the image predicts their average).
VARIANTS: dict[str, dict] = {
    "published_pools": {},
    "spatial_pools": {"encoder": "3d_unet_tiny_spatial"},
    "bce_only": {"loss": ["bce"]},
    "size_112": {"size": [112, 112]},
    "no_augment": {"augment": False},
    "frames_32": {"frames": 32},
    "width_16": {"width": 16},
    # QC drops frames whose label runs further along the LV axis than 1.25 x the clip's short
    # length (the bulk of the untraced TRAIN videos' label lengths ends there; the pile-up at
    # 1.30-1.37 is labels stopped by the static valve-plane cut with LA still in them).
    "qc_length": {"qc": {"max_length_ratio": 1.25}},
    "epochs_x3": {"early_epochs": 18},
    "epochs_x6": {"early_epochs": 36},
    "epochs_x6_qc_length": {"early_epochs": 36, "qc": {"max_length_ratio": 1.25}},
    "epochs_x6_frames_32": {"early_epochs": 36, "frames": 32},
}


def train_variant(name: str, changes: dict, data_path: Path, work: Path, epochs: int, seed: int, base: dict, best_too: bool = False):
    """Train one variant's early stage (round-0 labels copied from the first variant's run).

    Returns the network its stage hands on under ``name``, the run's last checkpoint as
    ``<name>@last`` where the stage handed on another, and with ``best_too`` its best-val-pseudo-Dice
    checkpoint as ``<name>@best`` where that is not the one handed on (the stage's former default)."""
    from unilvseg.labelfree.pipeline import COMPLETE, LabelFreePipeline, NetworkSegmenter, PipelineConfig

    config = PipelineConfig(**{**base, "data_path": str(data_path), "rounds": 0, "early_epochs": epochs, "seed": seed, **changes})
    run_dir = work / name
    pipeline = LabelFreePipeline(config, run_dir)
    pipeline.check_run_dir()
    # Round-0 labels are shared by the variants that keep the default QC (computed once).
    shared = work / "round0"
    if "qc" in changes:
        shared = work / f"round0-{name}"
    if (shared / COMPLETE).is_file() and not (run_dir / "labels" / "round0").exists():
        shutil.copytree(shared, run_dir / "labels" / "round0")
    tick = time.perf_counter()
    pipeline.produce_labels(0, segmenter=None)
    if not shared.exists():
        shutil.copytree(run_dir / "labels" / "round0", shared)
    # The stage only: evaluate_stage would score the traced VAL/TEST frames, which stay unread.
    checkpoint = pipeline.train_stage("early", 0, label_round=0, init_from=None)
    seconds = time.perf_counter() - tick
    segmenters = {name: NetworkSegmenter(checkpoint, config)}
    checkpoints = run_dir / "stages" / "early" / "checkpoints"
    last, best = checkpoints / "last.ckpt", checkpoints / "best.ckpt"
    if last.is_file() and last.resolve() != Path(checkpoint).resolve():
        # The end of the budget beside the stage's chosen (best val pseudo-Dice) checkpoint.
        segmenters[f"{name}@last"] = NetworkSegmenter(last, config)
    if best_too and best.is_file() and best.resolve() != Path(checkpoint).resolve():
        # What the stage's former default (--stage_checkpoint best) would have handed on.
        segmenters[f"{name}@best"] = NetworkSegmenter(best, config)
    return segmenters, seconds


def markdown(summary: pd.DataFrame, meta: dict) -> str:
    f = lambda v, d=3: "–" if not np.isfinite(v) else f"{v:.{d}f}"  # noqa: E731
    lines = [
        "# Real echo: which early-network setting loses the contraction (label-free ablation)",
        "",
        f"Command: `{meta['command']}` at commit {meta['commit']}{' (uncommitted changes)' if meta['dirty'] else ''}; "
        f"{meta['date']}, {meta['seconds']:.0f} s, load average {meta['load']}.",
        "Each variant is measured with the checkpoint its stage hands on (the last one, unless the change names "
        "stage_checkpoint=best); `<variant>@last`: the same run's last checkpoint, where the stage handed on another; "
        "`<variant>@best`: its best-val-pseudo-Dice checkpoint (the stage's former default; `--best_too`).",
        f"Data: `{meta['data']}`, TRAIN videos only ({meta['videos']}; {meta['dense']} with dense reference masks). "
        f"Each variant: the early stage alone, {meta['epochs']} epoch(s), seed {meta['seed']}, one run, from the same round-0 labels. "
        "The human-traced VAL/TEST frames were not read.",
        "",
        "Expected ES/ED area ratio from the official EF: (1 − EF)^(2/3). ratio − expected > 0: the masks shrink too little at ES.",
        "",
        "| stage / variant | change | train s | ES/ED area, median | ratio − expected, median | r with expected | frame change / mean area "
        "| dense: ED / ref | dense: ES / ref | dense: ES/ED (ref) | dense: frame change / ref | dense: curve r |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"| {r.stage} | {meta['changes'].get(r.stage.split('@')[0], '') if r.stage not in ('stage1', 'qc') else ''} | "
            f"{f(meta['train_seconds'].get(r.stage, float('nan')), 0)} | "
            f"{f(r.es_ed_ratio_median)} | {f(r.ratio_minus_expected_median)} | {f(r.ratio_r_with_expected, 2)} | {f(r.frame_change_median)} | "
            f"{f(r.dense_ed_area_vs_ref)} | {f(r.dense_es_area_vs_ref)} | {f(r.dense_es_ed_ratio)} ({f(r.dense_es_ed_ratio_ref)}) | "
            f"{f(r.dense_frame_change_vs_ref, 2)} | {f(r.dense_curve_r, 2)} |"
        )
    lines += ["", "Per video: `real_echo_ablation-videos.csv`; dense: `real_echo_ablation-dense.csv`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from unilvseg.io import write_csv, write_text

    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_echo_ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_path", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=6, help="early-stage epochs of every variant (default 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_videos", type=int, default=None, help="TRAIN videos measured (dense-reference ones first; default all)")
    parser.add_argument("--work_dir", type=Path, default=Path("runs/real_echo_ablation"), help="run folders (default runs/real_echo_ablation)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--limit_train_batches", type=int, default=None, help="batches per epoch (smoke runs)")
    parser.add_argument("--best_too", nargs="*", default=[], choices=list(VARIANTS),
                        help="variants whose best-val-pseudo-Dice checkpoint is measured too, as <variant>@best")
    args = parser.parse_args(argv)
    if not args.data_path.is_dir():
        print(f"error: --data_path {args.data_path}: folder does not exist", file=sys.stderr)
        return 2
    started = time.perf_counter()
    # Label-free defaults as benchmarks.real_echo runs them on CPU.
    base = {"precision": "32-true", "limit_train_batches": args.limit_train_batches, "limit_val_batches": args.limit_train_batches}
    segmenters, seconds = {}, {}
    for name in args.variants:
        print(f"variant {name}: {VARIANTS[name] or 'defaults'}", file=sys.stderr, flush=True)
        trained, seconds[name] = train_variant(name, VARIANTS[name], args.data_path, args.work_dir, args.epochs, args.seed, base,
                                               best_too=name in args.best_too)
        segmenters.update(trained)
    videos, dense = diagnose(args.data_path, None, args.max_videos, segmenters=segmenters)
    summary = summary_table(videos, dense)
    commit = git_commit()
    meta = {
        "command": portable_command("benchmarks.real_echo_ablation", list(sys.argv[1:] if argv is None else argv)),
        "commit": commit["commit"], "dirty": commit["dirty"], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": time.perf_counter() - started, "load": load_average(), "data": portable_path(args.data_path),
        "videos": videos["FileName"].nunique(), "dense": dense["FileName"].nunique() if len(dense) else 0,
        "epochs": args.epochs, "seed": args.seed, "train_seconds": seconds,
        "changes": {name: ", ".join(f"{k}={v}" for k, v in VARIANTS[name].items()) or "defaults" for name in args.variants},
    }
    stem = f"real_echo_ablation{'-' + args.tag if args.tag else ''}"
    write_csv(videos, args.results_dir / f"{stem}-videos.csv", float_format="%.5g")
    write_csv(dense, args.results_dir / f"{stem}-dense.csv", float_format="%.5g")
    write_csv(summary.assign(train_seconds=summary["stage"].map(seconds)), args.results_dir / f"{stem}.csv", float_format="%.5g")
    text = markdown(summary, meta)
    write_text(text, args.results_dir / f"{stem}.md")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
