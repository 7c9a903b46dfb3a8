"""Low-label benchmark: weak LV segmentation from n labelled videos, with and without pre-training.

For each n in ``--n`` (number of labelled training videos; ``all`` = the whole training split)
and each seed, three initialisations get the same weak-training budget (``--budget_steps``
optimiser steps) on the same seeded subset of n videos:

* ``scratch``: random initialisation;
* ``temporal_masking``: UniLVSeg temporal-masking SSL on *all* training videos, labels unused;
* ``anatomical_position``: anatomical-position SSL (Bai et al., adapted) on all training videos.

Each pre-training runs once per seed (``--ssl_steps`` steps) and serves every n. The last
checkpoint of each weak run (fixed budget, no selection on validation) predicts the test split
with ``predict.py``'s core and is scored with ``evaluate_bootstrap.py``'s core; Dice (overall,
ED, ES; ratio of sums) with bootstrap 95 % intervals goes to
``benchmarks/results/low_label-<dataset>.{md,csv,png}``.

Finished stages are recorded (``stage.json`` in each stage folder, holding the stage's settings),
so re-running the same command resumes after an interruption instead of starting over.

    python -m benchmarks.low_label                      # phantom, n = 2 4 8 all, seed 0
    python -m benchmarks.low_label --data_path D --n 2  # another EchoNet-format folder
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import portable_path
from unilvseg.errors import UserError

log = logging.getLogger("unilvseg")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
METHODS = ("scratch", "temporal_masking", "anatomical_position")
PRETEXT_OF = {"temporal_masking": "temporal_masking", "anatomical_position": "anatomical_position"}
LABELS = {"scratch": "from scratch", "temporal_masking": "temporal-masking SSL", "anatomical_position": "anatomical-position SSL"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.low_label",
        description="Weak LV segmentation with n labelled videos: from scratch vs temporal-masking SSL vs anatomical-position SSL.",
    )
    parser.add_argument("--data_path", default=None, help="EchoNet-Dynamic folder (default: the built-in 40-video phantom)")
    parser.add_argument("--n", nargs="+", default=["2", "4", "8", "all"], help="labelled training videos per run (integers or 'all')")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--encoder", default="3d_unet_tiny", help="network (default 3d_unet_tiny, CPU-sized)")
    parser.add_argument("--width", type=int, default=None, help="base channel width override")
    parser.add_argument("--frames", type=int, default=16, help="clip length")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--budget_steps", type=int, default=60, help="weak-training optimiser steps per run (same for every method)")
    parser.add_argument("--ssl_steps", type=int, default=150, help="pre-training steps per pretext and seed")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples for the intervals")
    parser.add_argument("--work_dir", default=None, help="run folders (default runs/low_label/<dataset>)")
    parser.add_argument("--results_dir", default=str(RESULTS_DIR), help="where the .md/.csv/.png go")
    return parser


# -- stages -------------------------------------------------------------------------------------


def run_stage(folder: Path, settings: dict, action, product: str) -> tuple[Path, float]:
    """Run ``action()`` (a CLI main returning an exit code) unless ``folder`` already finished it
    with the same settings; returns ``(folder / product, seconds the stage took when it ran)``."""
    from unilvseg.io import write_json

    stamp = folder / "stage.json"
    target = folder / product
    if stamp.is_file() and target.exists():
        done = json.loads(stamp.read_text())
        if done.get("settings") == settings:
            log.info("already done: %s", folder)
            return target, float(done.get("seconds", float("nan")))
    started = time.perf_counter()
    code = action()
    seconds = time.perf_counter() - started
    if code != 0:
        raise UserError(f"stage {folder} failed with exit status {code} (see the messages above)")
    if not target.exists():
        raise UserError(f"stage {folder} finished but {target} is missing")
    write_json({"settings": settings, "seconds": round(seconds, 2)}, stamp)
    return target, seconds


def train_flags(args, data_path: Path, run_dir: Path, seed: int, steps: int) -> list[str]:
    flags = [
        "--data_path", str(data_path), "--encoder", args.encoder, "--frames", str(args.frames),
        "--batch_size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(seed),
        # A fixed step budget: epochs only bound it from above; one validation batch per epoch
        # keeps the run's curve without letting validation dominate tiny epochs (n = 2).
        "--max_steps", str(steps), "--epochs", "100000", "--limit_val_batches", "1",
        "--run_dir", str(run_dir), "--progress_bar", "false",
    ]
    if args.width is not None:
        flags += ["--width", str(args.width)]
    return flags


def pretrain(args, data_path: Path, work: Path, pretext: str, seed: int) -> tuple[Path, float]:
    from unilvseg.cli.train import main_ssl

    run_dir = work / f"ssl-{pretext}-seed{seed}"
    flags = ["--pretext", pretext] + train_flags(args, data_path, run_dir, seed, args.ssl_steps)
    return run_stage(run_dir, {"flags": flags}, lambda: main_ssl(flags), "checkpoints/last.ckpt")


def finetune(args, data_path: Path, work: Path, method: str, n: int, seed: int, checkpoint: Path | None) -> tuple[Path, float]:
    from unilvseg.cli.train import main_weak

    run_dir = work / f"weak-{method}-n{n}-seed{seed}"
    flags = train_flags(args, data_path, run_dir, seed, args.budget_steps) + ["--train_videos", str(n)]
    if checkpoint is not None:
        flags += ["--checkpoint", str(checkpoint)]
    return run_stage(run_dir, {"flags": flags}, lambda: main_weak(flags), "checkpoints/last.ckpt")


def predict_and_evaluate(args, data_path: Path, run_dir: Path, checkpoint: Path, seed: int) -> dict:
    from unilvseg.cli.evaluate import main as evaluate_main
    from unilvseg.cli.predict import main as predict_main

    predictions, evaluation = run_dir / "predictions", run_dir / "evaluation"
    predict_flags = [
        "--data_path", str(data_path), "--split", "test", "--checkpoint", str(checkpoint),
        "--save_dir", str(predictions), "--device", "cpu", "--overwrite",
    ]
    run_stage(predictions, {"flags": predict_flags}, lambda: predict_main(predict_flags), "volumes.csv")
    evaluate_flags = [
        "--data_dir", str(data_path), "--prediction_dir", str(predictions), "--output_dir", str(evaluation),
        "--split", "test", "--samples", str(args.samples), "--seed", str(seed),
    ]
    summary, _ = run_stage(evaluation, {"flags": evaluate_flags}, lambda: evaluate_main(evaluate_flags), "summary.json")
    return json.loads(summary.read_text())


# -- reporting ----------------------------------------------------------------------------------


def summary_row(summary: dict) -> dict:
    row = {"test_videos": summary["n_videos"]}
    for key in ("overall", "ed", "es"):
        row[f"dice_{key}"] = summary[key]["dice"]
        row[f"dice_{key}_low"] = summary[key]["low"]
        row[f"dice_{key}_high"] = summary[key]["high"]
    return row


def markdown_table(table: pd.DataFrame, seeds: list[int]) -> str:
    """One row per (n, method): Dice with its bootstrap interval (one seed) or mean ± sd over seeds."""
    lines = ["| n labelled | method | Dice overall | Dice ED | Dice ES | weak-training s |", "|---|---|---|---|---|---|"]
    for (n, method), group in table.groupby(["n", "method"], sort=False):
        cells = []
        for key in ("overall", "ed", "es"):
            values = group[f"dice_{key}"]
            if len(group) == 1:
                cells.append(f"{values.iloc[0]:.3f} ({group[f'dice_{key}_low'].iloc[0]:.3f}–{group[f'dice_{key}_high'].iloc[0]:.3f})")
            else:
                cells.append(f"{values.mean():.3f} ± {values.std(ddof=1):.3f}")
        label = group["n_label"].iloc[0]
        lines.append(f"| {label} | {LABELS[method]} | {' | '.join(cells)} | {group['weak_seconds'].mean():.0f} |")
    note = (
        "Intervals: bootstrap 95 % percentile intervals over test videos (evaluate_bootstrap.py)."
        if len(seeds) == 1
        else f"Mean ± sd over seeds {seeds}; per-seed bootstrap intervals are in the CSV."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unilvseg.io import atomic_path

    figure, axis = plt.subplots(figsize=(5.5, 4))
    for offset, (method, group) in zip((-0.04, 0.0, 0.04), table.groupby("method", sort=False)):
        means = group.groupby("n").agg(dice=("dice_overall", "mean"), low=("dice_overall_low", "min"), high=("dice_overall_high", "max"))
        xs = means.index.to_numpy(dtype=float) * (2.0**offset)  # small shift so error bars do not overlap
        axis.errorbar(
            xs, means["dice"], yerr=[means["dice"] - means["low"], means["high"] - means["dice"]],
            marker="o", capsize=3, label=LABELS[method],
        )
    axis.set_xscale("log", base=2)
    ticks = sorted(table["n"].unique())
    axis.set_xticks(ticks, [str(t) for t in ticks])
    axis.set_xlabel("labelled training videos (n)")
    axis.set_ylabel("test Dice (overall, ED+ES)")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
    return path


# -- main ---------------------------------------------------------------------------------------


def resolve_counts(requested: list[str], available: int) -> list[tuple[int, str]]:
    """(n, label) pairs; 'all' = every training video; duplicates collapse (e.g. n=2 when all=2)."""
    counts: dict[int, str] = {}
    for value in requested:
        if value.lower() == "all":
            counts.setdefault(available, "all")
            continue
        try:
            n = int(value)
        except ValueError:
            raise UserError(f"--n {value!r}: expected an integer or 'all'") from None
        if not 1 <= n <= available:
            raise UserError(f"--n {n}: the training split has {available} traced videos (use 1..{available} or 'all')")
        counts[n] = f"{n} (all)" if n == available else str(n)
    return sorted(counts.items())


def dataset_name(data_path: Path, default: bool) -> str:
    return "phantom" if default else data_path.resolve().name


def run(args) -> int:
    from unilvseg.data.index import load_index
    from unilvseg.data.phantom import default_data_path
    from unilvseg.io import write_csv, write_text

    for flag in ("budget_steps", "ssl_steps", "batch_size", "frames", "samples"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    default = args.data_path is None
    data_path = Path(default_data_path() if default else args.data_path)
    name = dataset_name(data_path, default)
    index = load_index(data_path, require_tracings=True)
    available = len(index.split("train").records)
    if not len(index.split("test").records):
        raise UserError(f"--data_path {data_path}: no traced test videos to evaluate on")
    counts = resolve_counts(args.n, available)
    work = Path(args.work_dir or Path("runs") / "low_label" / name)
    results = Path(args.results_dir)
    started = time.perf_counter()

    rows = []
    for seed in args.seeds:
        checkpoints = {"scratch": None}
        ssl_seconds = {}
        for method in args.methods:
            if method in PRETEXT_OF:
                checkpoints[method], ssl_seconds[method] = pretrain(args, data_path, work, PRETEXT_OF[method], seed)
        for n, label in counts:
            for method in args.methods:
                last, seconds = finetune(args, data_path, work, method, n, seed, checkpoints[method])
                summary = predict_and_evaluate(args, data_path, last.parent.parent, last, seed)
                rows.append({
                    "dataset": name, "method": method, "n": n, "n_label": label, "seed": seed,
                    "weak_seconds": round(seconds, 1), "ssl_seconds": round(ssl_seconds.get(method, 0.0), 1),
                    **summary_row(summary),
                })
                log.info("%s n=%s seed %d: test Dice %.4f", method, label, seed, rows[-1]["dice_overall"])

    table = pd.DataFrame(rows)
    stem = results / f"low_label-{name}"
    write_csv(table, stem.with_suffix(".csv"))
    wall = time.perf_counter() - started
    settings = (
        f"encoder {args.encoder}" + (f" (width {args.width})" if args.width else "")
        + f", {args.frames} frames, batch {args.batch_size}, lr {args.lr}, weak budget {args.budget_steps} steps, "
        f"SSL {args.ssl_steps} steps on all {available} training videos (labels unused), seeds {args.seeds}; "
        f"last checkpoint of each run predicts the test split ({int(table['test_videos'].iloc[0])} videos)"
    )
    text = (
        f"# Low-label benchmark: {name}\n\n"
        f"Data: `{portable_path(data_path)}`. Command: `python -m benchmarks.low_label {' '.join(sys.argv[1:])}`.\n\n"
        f"Settings: {settings}.\n\n"
        f"{markdown_table(table, args.seeds)}\n"
        f"Wall time of this invocation: {wall / 60:.1f} min (stages finished by an earlier invocation are reused; "
        "the seconds columns are each stage's own time when it ran).\n"
    )
    write_text(text, stem.with_suffix(".md"))
    plot(table, stem.with_suffix(".png"), f"{name}: weak segmentation vs labelled videos")
    print(text)
    print(f"wrote {stem}.md, .csv, .png")
    return 0


def main(argv: list[str] | None = None) -> int:
    from unilvseg.cli.common import setup_logging

    setup_logging()
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
