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

Tracings and reference masks are read only after training, for these tables.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

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
        description="Dice of label-free stages (classical labels, early learning, self-learning rounds); "
        "unknown flags are passed to train_labelfree.py.",
    )
    parser.add_argument("--data_path", default=None, help="EchoNet-Dynamic folder (default: the built-in 40-video phantom)")
    parser.add_argument("--rounds", type=int, default=2, help="self-learning rounds (default 2)")
    parser.add_argument("--run_dir", default=None, help="keep the run here (default: a temporary folder, deleted)")
    parser.add_argument("--name", default=None, help="dataset name in the result file names (default: the folder's name)")
    parser.add_argument("--out_dir", default=str(RESULTS_DIR), help="where labelfree-<dataset>.md/.csv go")
    return parser


def markdown(report: pd.DataFrame, meta: dict) -> str:
    lines = [
        f"# Label-free LV segmentation benchmark: {meta['dataset']}",
        "",
        f"Command: `{meta['command']}`",
        f"Device: {meta['device']}; wall time {meta['wall_seconds']:.0f} s ({meta['wall_seconds'] / 60:.1f} min) "
        f"for the whole run; {meta['videos']}.",
        "",
        "Dice is pooled (ratio of sums). No tracing or reference mask was used to train or to pick a checkpoint.",
        "`pseudo-labels produced` are the next round's training labels (train+val) made by that stage.",
        "",
        *report_table(report, COLUMNS),
    ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    from unilvseg.cli.labelfree import main as labelfree_main
    from unilvseg.data.index import load_index
    from unilvseg.io import write_csv, write_text

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
        run_dir = Path(temporary.name) / "run"
    else:
        run_dir = Path(args.run_dir)
    argv = ["--data_path", str(data_path), "--rounds", str(args.rounds), "--run_dir", str(run_dir),
            "--progress_bar", "false"] + passthrough
    started = time.perf_counter()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    status = labelfree_main(argv)
    wall = time.perf_counter() - started
    if status != 0:
        return status
    report = pd.read_csv(run_dir / "report.csv", keep_default_na=True)
    import torch

    meta = {
        "dataset": dataset,
        "command": "python -m benchmarks.labelfree_bench " + " ".join(sys.argv[1:]),
        "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch threads "
        f"{torch.get_num_threads()}, CUDA {'yes' if torch.cuda.is_available() else 'no'}, load average "
        f"{load_before:.1f} at start",
        "wall_seconds": wall,
        "videos": ", ".join(f"{n} {s}" for s, n in splits.items()) + " videos",
    }
    report.insert(0, "dataset", dataset)
    report["wall_seconds_total"] = wall
    out_dir = Path(args.out_dir)
    write_csv(report, out_dir / f"labelfree-{dataset}.csv", float_format="%.4f")
    write_text(markdown(report, meta), out_dir / f"labelfree-{dataset}.md")
    print(markdown(report, meta))
    if temporary is not None:
        temporary.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    from unilvseg.cli.train import setup_logging

    setup_logging()
    args, passthrough = build_parser().parse_known_args(argv)
    try:
        return run(args, passthrough)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
