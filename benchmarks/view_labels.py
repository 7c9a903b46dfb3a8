"""Stage-1 weak labels of the A2C and SAX views against the three-view phantom's dense truth.

    python -m benchmarks.view_labels                  # 16 phantom hearts, seed 31, A2C + SAX
    python -m benchmarks.view_labels --videos 4 --seed 0

The label makers (``unilvseg.labelfree.two_chamber``, ``unilvseg.labelfree.short_axis``) were
shaped on phantom seeds 5 and 6, their test floors set on seed 7, and seed 21 showed two SAX
failures that were then fixed, so the default seed (31) is held out. Pooled Dice per view and structure over every frame of every video, with a 95 %
bootstrap interval over videos, and the per-video Dice. Writes
``<results_dir>/view_labels-phantom.{md,csv}`` naming the commit and the command.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import git_commit, load_average, portable_command

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def measure(data: Path) -> pd.DataFrame:
    """Per video and structure: intersection and areas of the weak labels against the truth."""
    from unilvseg.data.index import load_index
    from unilvseg.data.structures import STRUCTURES, reference_labels
    from unilvseg.data.video import read_video
    from unilvseg.labelfree.pipeline import QCSettings
    from unilvseg.labelfree.views import VIEW_STRUCTURES, view_label_map

    rows = []
    for record in load_index(data, require_tracings=False).records:
        if record.view == "a4c":
            continue  # benchmarks.four_chamber_labels
        truth, _ = reference_labels(data, record.file_name)
        start = time.process_time()
        lv, sector, labels = view_label_map(read_video(record.path), record.view, VIEW_STRUCTURES[record.view])
        seconds = time.process_time() - start
        passed = int(QCSettings().check(lv, sector).passed.sum())  # the default QC, as round 0 runs it
        n = min(len(truth), len(labels))
        for name in VIEW_STRUCTURES[record.view]:
            predicted, true = labels[:n] == STRUCTURES[name], truth[:n] == STRUCTURES[name]
            rows.append({"FileName": record.file_name, "view": record.view, "structure": name, "frames": n,
                         "qc_passed": passed, "cpu_seconds": seconds, "intersection": int((predicted & true).sum()),
                         "pred_area": int(predicted.sum()), "true_area": int(true.sum())})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, samples: int, seed: int) -> pd.DataFrame:
    from unilvseg.evaluation.bootstrap import percentile_interval, resampled_sums

    rows = []
    for (view, name), group in table.groupby(["view", "structure"], sort=False):
        per_video = np.stack([2 * group["intersection"], group["pred_area"] + group["true_area"]], axis=1).astype(np.float64)
        sums = resampled_sums(per_video, samples, np.random.default_rng(seed))
        low, high = percentile_interval(sums[:, 0] / sums[:, 1], 0.95)
        dice = per_video[:, 0] / np.maximum(per_video[:, 1], 1)
        rows.append({"view": view, "structure": name, "videos": len(group), "dice": per_video[:, 0].sum() / per_video[:, 1].sum(),
                     "low": float(low), "high": float(high), "worst_video": float(dice.min()), "median_video": float(np.median(dice)),
                     "area_ratio": float(group["pred_area"].sum() / max(group["true_area"].sum(), 1)),
                     "qc_pass": float(group["qc_passed"].sum() / max(group["frames"].sum(), 1))})
    return pd.DataFrame(rows)


def _qc_rate(table: pd.DataFrame, view: str) -> float:
    videos = table[table["view"] == view].drop_duplicates("FileName")
    return float(videos["qc_passed"].sum() / max(videos["frames"].sum(), 1))


def main(argv: list[str] | None = None) -> int:
    from unilvseg.data.phantom import generate_phantom
    from unilvseg.io import write_csv, write_text

    parser = argparse.ArgumentParser(prog="python -m benchmarks.view_labels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--min_frames", type=int, default=60)
    parser.add_argument("--max_frames", type=int, default=120)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    started, load = time.perf_counter(), load_average()
    with tempfile.TemporaryDirectory() as scratch:
        data = generate_phantom(Path(scratch) / "phantom", videos=args.videos, seed=args.seed, min_frames=args.min_frames,
                                max_frames=args.max_frames, views=("a2c", "sax"))
        table = measure(data)
    result = summary(table, args.samples, 0)
    commit = git_commit()
    command = portable_command("benchmarks.view_labels", list(sys.argv[1:] if argv is None else argv))
    per_video = table.drop_duplicates("FileName")
    lines = [
        "# A2C and SAX weak labels (stage 1) against the phantom's truth",
        "",
        f"Command: `{command}` at commit {commit['commit']}{' (uncommitted changes)' if commit['dirty'] else ''}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.perf_counter() - started:.0f} s, load {load}.",
        f"Phantom: {args.videos} hearts, seed {args.seed}, {args.min_frames}-{args.max_frames} frames, views A2C and SAX "
        f"({int(per_video['frames'].sum())} frames in all; label makers {per_video['cpu_seconds'].sum() / max(per_video['frames'].sum(), 1) * 1000:.1f} "
        f"ms CPU per frame). Pooled Dice over every frame of every video, 95 % bootstrap interval over videos "
        f"({args.samples} resamples); area ratio = labelled / true pixels. No training: these are the labels round 0 trains on.",
        "QC pass: the share of frames whose LV label passes the default quality control (`train_labelfree.py` "
        f"--qc_* defaults): A2C {_qc_rate(table, 'a2c'):.3f}, SAX {_qc_rate(table, 'sax'):.3f}.",
        "",
        "| view | structure | Dice (95 % CI) | median video | worst video | area ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in result.itertuples():
        lines.append(f"| {r.view.upper()} | {r.structure} | {r.dice:.3f} ({r.low:.3f}–{r.high:.3f}) | {r.median_video:.3f} | "
                     f"{r.worst_video:.3f} | {r.area_ratio:.2f} |")
    stem = args.results_dir / "view_labels-phantom"
    write_csv(table, stem.with_suffix(".csv"))
    write_text("\n".join(lines) + "\n", stem.with_suffix(".md"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
