"""Stage-1 weak labels of every A4C structure against the phantom's dense truth.

    python -m benchmarks.four_chamber_labels                 # 24 phantom hearts, seed 21
    python -m benchmarks.four_chamber_labels --videos 6 --seed 0

The label maker (``unilvseg.labelfree.four_chamber``) was shaped on phantom seeds 11 and 0, so
the default seed (21) is held out. Pooled Dice per structure over every frame of every video,
with a 95 % bootstrap interval over videos, and the per-video Dice. Writes
``<results_dir>/four_chamber_labels-phantom.{md,csv}`` naming the commit and the command.
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
    from unilvseg.data.structures import STRUCTURES, reference_labels
    from unilvseg.data.video import read_video
    from unilvseg.labelfree.four_chamber import four_chamber_labels

    rows = []
    for path in sorted((data / "Videos").glob("*.avi")):
        truth, _ = reference_labels(data, path.stem)
        labels, info = four_chamber_labels(read_video(path))
        n = min(len(truth), len(labels))
        for name, code in STRUCTURES.items():
            predicted, true = labels[:n] == code, truth[:n] == code
            rows.append({"FileName": path.stem, "structure": name, "septum_found": info["septum"] is not None,
                         "intersection": int((predicted & true).sum()), "pred_area": int(predicted.sum()), "true_area": int(true.sum())})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, samples: int, seed: int) -> pd.DataFrame:
    from unilvseg.evaluation.bootstrap import percentile_interval, resampled_sums

    rows = []
    for name, group in table.groupby("structure", sort=False):
        per_video = np.stack([2 * group["intersection"], group["pred_area"] + group["true_area"]], axis=1).astype(np.float64)
        sums = resampled_sums(per_video, samples, np.random.default_rng(seed))
        low, high = percentile_interval(sums[:, 0] / sums[:, 1], 0.95)
        dice = per_video[:, 0] / np.maximum(per_video[:, 1], 1)
        rows.append({"structure": name, "videos": len(group), "dice": per_video[:, 0].sum() / per_video[:, 1].sum(),
                     "low": float(low), "high": float(high), "worst_video": float(dice.min()), "median_video": float(np.median(dice))})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    from unilvseg.data.phantom import generate_phantom
    from unilvseg.io import write_csv, write_text

    parser = argparse.ArgumentParser(prog="python -m benchmarks.four_chamber_labels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    started, load = time.perf_counter(), load_average()
    with tempfile.TemporaryDirectory() as scratch:
        data = generate_phantom(Path(scratch) / "phantom", videos=args.videos, seed=args.seed, min_frames=60, max_frames=120)
        table = measure(data)
    result = summary(table, args.samples, 0)
    commit = git_commit()
    command = portable_command("benchmarks.four_chamber_labels", list(sys.argv[1:] if argv is None else argv))
    lines = [
        "# Four-chamber weak labels (stage 1) against the phantom's truth",
        "",
        f"Command: `{command}` at commit {commit['commit']}{' (uncommitted changes)' if commit['dirty'] else ''}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.perf_counter() - started:.0f} s, load {load}.",
        f"Phantom: {args.videos} hearts, seed {args.seed}, 60-120 frames; the septum line was found in "
        f"{int(table.drop_duplicates('FileName')['septum_found'].sum())} of {args.videos}. Pooled Dice over every frame of every "
        f"video, 95 % bootstrap interval over videos ({args.samples} resamples). No training: these are the labels round 0 trains on.",
        "",
        "| structure | Dice (95 % CI) | median video | worst video |",
        "|---|---|---|---|",
    ]
    for r in result.itertuples():
        lines.append(f"| {r.structure} | {r.dice:.3f} ({r.low:.3f}–{r.high:.3f}) | {r.median_video:.3f} | {r.worst_video:.3f} |")
    stem = args.results_dir / "four_chamber_labels-phantom"
    write_csv(table, stem.with_suffix(".csv"))
    write_text("\n".join(lines) + "\n", stem.with_suffix(".md"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
