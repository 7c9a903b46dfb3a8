"""Label-free benchmark: how good are the labels and models of each stage, with no tracing used?

Runs ``train_labelfree.py`` (at its default, CPU-sized budget unless extra flags are given) and
reports, per stage (stage-1 classical labels, after early learning, after each self-learning
round): pooled Dice on the test split's traced ED/ES frames, pooled Dice on every frame against
``ReferenceMasks`` (where the data set has them), the same on the val split, the QC pass rate of
the pseudo-labels each stage produced and their Dice against the reference masks, and the wall
time. Results go to ``benchmarks/results/labelfree-<dataset>.{md,csv}``.

    python -m benchmarks.labelfree_bench                       # the built-in 40-video phantom
    python -m benchmarks.labelfree_bench --data_path D --rounds 2
    python -m benchmarks.labelfree_bench --early_epochs 8      # any train_labelfree.py flag passes through
    python -m benchmarks.labelfree_bench --oracle              # + the same network trained on ReferenceMasks

``--oracle`` adds one row: the early-learning stage (same network, epochs, loss and seed) trained
on the data set's ``ReferenceMasks`` instead of classical labels. It is an upper bound for what
pseudo-labels can give at that budget, so the table shows how much room the rounds have.

Tracings and reference masks are read only after training, for these tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import commit_note, portable_command
from unilvseg.errors import UserError
from unilvseg.labelfree.pipeline import report_table

log = logging.getLogger("unilvseg")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLUMNS = [
    ("stage", "stage"),
    ("trained_on", "trained on"),
    ("test_dice_traced", "test Dice traced ED/ES"),
    ("test_dice_reference", "test Dice ReferenceMasks (all frames)"),
    ("val_dice_traced", "val Dice traced"),
    ("val_dice_reference", "val Dice ref"),
    ("val_pseudo_dice", "val Dice vs pseudo-labels (selection)"),
    ("labels_pass_rate", "pseudo-labels produced: QC pass rate"),
    ("labels_dice_reference", "pseudo-labels produced: Dice vs ref (passed frames)"),
    ("seconds", "stage seconds"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.labelfree_bench",
        allow_abbrev=False,  # unknown flags go to train_labelfree.py: --seed must not read as --seeds
        description="Dice of label-free stages (classical labels, early learning, self-learning rounds); "
        "unknown flags are passed to train_labelfree.py.",
    )
    parser.add_argument("--data_path", default=None, help="EchoNet-Dynamic folder (default: the built-in 40-video phantom)")
    parser.add_argument("--rounds", type=int, default=2, help="self-learning rounds (default 2)")
    parser.add_argument("--run_dir", default=None,
                        help="keep the run here (with --seeds N: <run_dir>/seed<k>; an --oracle run goes beside each as <name>-oracle; "
                        "default: a temporary folder, deleted)")
    parser.add_argument("--name", default=None, help="dataset name in the result file names (default: the folder's name)")
    parser.add_argument("--out_dir", default=str(RESULTS_DIR), help="where labelfree-<dataset>.md/.csv go")
    parser.add_argument("--seeds", type=int, default=1,
                        help="repeat with training seeds 0..N-1 (separate runs) and add mean, SD and per-stage changes")
    parser.add_argument("--oracle", action="store_true",
                        help="also train the early-learning stage on ReferenceMasks (an upper bound; needs them for every train/val video)")
    return parser


def markdown(report: pd.DataFrame, meta: dict, summary: pd.DataFrame | None = None) -> str:
    lines = [
        f"# Label-free LV segmentation benchmark: {meta['dataset']}",
        "",
        f"Command: `{meta['command']}` at {meta['commit']}",
        f"Device: {meta['device']}; wall time {meta['wall_seconds']:.0f} s ({meta['wall_seconds'] / 60:.1f} min) "
        f"for the whole run; {meta['videos']}.",
        "",
        "Dice is pooled (ratio of sums). No tracing or reference mask was used to train or to pick a checkpoint.",
        "`pseudo-labels produced` are the next round's training labels (train+val) made by that stage.",
        *(["`oracle`: the early-learning stage (same network, epochs, loss, seed) trained on ReferenceMasks instead "
           "of classical labels: the most this network and budget give with perfect labels."]
          if (report["stage"] == "oracle").any() else []),
        "",
    ]
    if summary is not None:
        lines += [
            f"## Over {int(summary['seeds'].max())} seeds (seeds 0..{int(summary['seeds'].max()) - 1}; training seed only, same data)",
            "",
            "`change vs stage above`: mean over seeds of (this stage - the stage above it, same seed); `seeds improved`:",
            "in how many seeds that change was > 0.",
            "",
            *report_table(summary, SUMMARY_COLUMNS),
            "",
            "## Seed 0, every column",
            "",
        ]
    lines += report_table(report, COLUMNS)
    return "\n".join(lines) + "\n"


def write_reference_labels(index, data_path: Path, run_dir: Path) -> None:
    """Round-0 "labels" of an oracle run: every train/val video's ReferenceMasks, all frames passed."""
    from unilvseg.data.index import reference_masks
    from unilvseg.io import save_npz, write_json
    from unilvseg.labelfree.pipeline import COMPLETE, _round_dir, label_path

    label_dir = _round_dir(run_dir, 0)
    if (label_dir / COMPLETE).is_file():
        return
    frames = 0
    for record in index.records:
        if record.split not in ("train", "val"):
            continue
        masks = reference_masks(data_path, record.file_name)
        if masks is None:
            raise UserError(f"--oracle: {data_path / 'ReferenceMasks' / (record.file_name + '.npz')} is missing")
        save_npz(label_path(label_dir, record.file_name), masks=(masks > 0).astype(np.uint8), passed=np.ones(len(masks), bool))
        frames += len(masks)
    write_json({"round": 0, "source": "ReferenceMasks (oracle)", "frames": frames, "passed_frames": frames,
                "pass_rate": 1.0, "failed_videos": {}}, label_dir / COMPLETE)


def run_one(args: argparse.Namespace, passthrough: list[str], data_path: Path, index, run_dir: Path, seed: int | None) -> pd.DataFrame:
    """One label-free run (and its oracle) -> the report table, one row per stage."""
    from unilvseg.cli.labelfree import main as labelfree_main

    seeded = passthrough + (["--seed", str(seed)] if seed is not None else [])
    argv = ["--data_path", str(data_path), "--rounds", str(args.rounds), "--run_dir", str(run_dir),
            "--progress_bar", "false"] + seeded
    if labelfree_main(argv) != 0:
        raise BenchmarkFailed(f"train_labelfree.py {' '.join(argv)} failed")
    report = pd.read_csv(run_dir / "report.csv", keep_default_na=True)
    if args.oracle:
        config = json.loads((run_dir / "pipeline.json").read_text())
        budget = config["early_epochs"] + config["rounds"] * config["round_epochs"]
        oracle_dir = run_dir.parent / f"{run_dir.name}-oracle"
        write_reference_labels(index, data_path, oracle_dir)
        oracle_argv = ["--data_path", str(data_path), "--rounds", "0", "--run_dir", str(oracle_dir),
                       "--progress_bar", "false"] + seeded + ["--early_epochs", str(budget)]
        if labelfree_main(oracle_argv) != 0:
            raise BenchmarkFailed(f"oracle run train_labelfree.py {' '.join(oracle_argv)} failed")
        oracle = pd.read_csv(oracle_dir / "report.csv", keep_default_na=True)
        oracle = oracle[oracle["stage"] == "early"].assign(stage="oracle", trained_on=f"ReferenceMasks, {budget} epochs")
        # The oracle's "produced labels" columns would describe labels it never made.
        oracle[["labels_pass_rate", "labels_dice_reference"]] = float("nan")
        report = pd.concat([report, oracle], ignore_index=True)
    report.insert(0, "seed", seed if seed is not None else 0)
    return report


class BenchmarkFailed(RuntimeError):
    pass


def seed_summary(reports: pd.DataFrame) -> pd.DataFrame:
    """Per stage over seeds: mean and SD of the test/val Dice, and the change against the stage
    before it in the same seed (mean, and in how many seeds it was > 0)."""
    metrics = ["test_dice_traced", "test_dice_reference", "val_dice_traced", "val_dice_reference", "labels_dice_reference"]
    rows = []
    stages = list(dict.fromkeys(reports["stage"]))
    for position, stage in enumerate(stages):
        part = reports[reports["stage"] == stage].set_index("seed")
        row = {"stage": stage, "seeds": len(part)}
        for metric in metrics:
            row[f"{metric}_mean"] = part[metric].mean()
            row[f"{metric}_sd"] = part[metric].std(ddof=1) if len(part) > 1 else float("nan")
        chained = position > 0 and stage != "oracle"
        if chained:
            before = reports[reports["stage"] == stages[position - 1]].set_index("seed")
            for metric in ("test_dice_traced", "test_dice_reference"):
                delta = (part[metric] - before[metric]).dropna()
                row[f"{metric}_delta"] = f"{delta.mean():+.4f}" if len(delta) else "-"
                row[f"{metric}_improved"] = f"{int((delta > 0).sum())}/{len(delta)}"
        rows.append(row)
    return pd.DataFrame(rows)


SUMMARY_COLUMNS = [
    ("stage", "stage"),
    ("test_dice_traced_mean", "test traced: mean"),
    ("test_dice_traced_sd", "SD"),
    ("test_dice_traced_delta", "change vs stage above"),
    ("test_dice_traced_improved", "seeds improved"),
    ("test_dice_reference_mean", "test ref (all frames): mean"),
    ("test_dice_reference_sd", "SD"),
    ("test_dice_reference_delta", "change vs stage above"),
    ("test_dice_reference_improved", "seeds improved"),
    ("val_dice_reference_mean", "val ref: mean"),
    ("labels_dice_reference_mean", "pseudo-labels produced vs ref: mean"),
]


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    from unilvseg.data.index import load_index
    from unilvseg.io import write_csv, write_text

    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    if args.seeds > 1 and any(flag == "--seed" or flag.startswith("--seed=") for flag in passthrough):
        raise UserError("--seed and --seeds: give one (--seeds N runs seeds 0..N-1)")
    if args.data_path is None:
        from unilvseg.data.phantom import default_data_path

        args.data_path = str(default_data_path())
    data_path = Path(args.data_path)
    index = load_index(data_path, require_tracings=False)
    splits = {s: sum(r.split == s for r in index.records) for s in ("train", "val", "test")}
    dataset = args.name or data_path.name
    temporary = None
    if args.run_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="labelfree-bench-")
        root = Path(temporary.name)
    else:
        root = Path(args.run_dir)
    started = time.perf_counter()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        if args.seeds == 1:
            reports = [run_one(args, passthrough, data_path, index, root / "run" if temporary else root, None)]
        else:
            reports = [run_one(args, passthrough, data_path, index, root / f"seed{seed}", seed) for seed in range(args.seeds)]
    except BenchmarkFailed as error:
        log.error("%s", error)
        return 1
    wall = time.perf_counter() - started
    import torch

    meta = {
        "dataset": dataset,
        "command": portable_command("benchmarks.labelfree_bench", sys.argv[1:]),
        "commit": commit_note(),
        "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch threads "
        f"{torch.get_num_threads()}, CUDA {'yes' if torch.cuda.is_available() else 'no'}, load average "
        f"{load_before:.1f} at start",
        "wall_seconds": wall,
        "videos": ", ".join(f"{n} {s}" for s, n in splits.items()) + " videos",
    }
    report = pd.concat(reports, ignore_index=True)
    report.insert(0, "dataset", dataset)
    report["wall_seconds_total"] = wall
    summary = seed_summary(report) if args.seeds > 1 else None
    out_dir = Path(args.out_dir)
    write_csv(report, out_dir / f"labelfree-{dataset}.csv", float_format="%.4f")
    text = markdown(report[report["seed"] == report["seed"].iloc[0]], meta, summary)
    write_text(text, out_dir / f"labelfree-{dataset}.md")
    print(text)
    if temporary is not None:
        temporary.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    from unilvseg.cli.common import setup_logging

    setup_logging()
    args, passthrough = build_parser().parse_known_args(argv)
    try:
        return run(args, passthrough)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
