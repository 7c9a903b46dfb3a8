"""Low-label benchmark: weak LV segmentation from n labelled videos, with and without pre-training,
compared *paired* (same test videos, same seeds) with intervals on the difference.

For each n in ``--n`` (labelled training videos; ``all`` = every traced training video) and each
seed, the ``--methods`` get the same weak-training budget (``--budget_steps`` optimiser steps)
on the same seeded subset of n videos; the ``--variants`` (anatomical-position pretext variants
and linear probes, see ``METHODS``) run the same way at ``--variant_n``. ``scratch`` always runs,
since every other method is compared with it:

* per seed, with ``evaluate_bootstrap.py --compare`` (paired bootstrap over test videos);
* over seeds: the mean over seeds of each seed's Dice, method minus baseline, with a bootstrap
  that resamples both the seeds (paired: seed k of both saw the same labelled videos) and the
  test videos (``unilvseg.evaluation.bootstrap.seed_video_bootstrap_dice``, the function behind
  ``evaluate_bootstrap.py --seeds``), so the interval covers the variation between training runs
  as well as the test-video sample. How many seeds' own intervals lie above / below 0 is
  reported beside it.

Each pre-training runs once per seed (``--ssl_steps`` steps, x4 and x16 for the budget variants) and
serves every n and every method that starts from it. The last checkpoint of each weak run
(fixed budget, no selection on validation) predicts the scored splits (``--score_splits``).
Why a pretext transfers or not is measured alongside: the pretext's own validation accuracy
against what the fan alone, or the commonest class, already gets right; a linear probe of the
LV mask on each initialisation's frozen features (``train_weak.py --trainable head``).

Outputs (``<results_dir>/low_label-<dataset>``): ``.md`` (tables), ``.csv`` (one row per run and
seed), ``-paired.csv`` (pooled differences), ``-pretext.csv``, ``.png``. Finished stages are
recorded (``stage.json``), so re-running the same command resumes instead of starting over.

    python -m benchmarks.low_label --size 64 64                      # 400-video phantom (50 test), seeds 0 1 2
    python -m benchmarks.low_label --data_path ../shared/data/echonet-real --ssl_videos all \\
        --score_splits test val --n all --size 64 64 --batch_size 4 --ssl_steps 300 --budget_steps 300
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import portable_command, portable_path
from unilvseg.errors import UserError

log = logging.getLogger("unilvseg")

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Pretraining:
    pretext: str
    flags: tuple[str, ...] = ()
    steps_factor: int = 1


@dataclass(frozen=True)
class Method:
    label: str
    pretraining: str | None = None  # key of PRETRAININGS; None = random initialisation
    weak_flags: tuple[str, ...] = field(default=())
    weak_steps_factor: int = 1  # x --budget_steps
    baseline: str = "scratch"  # what it is compared with (same n, seeds and test videos)


PRETRAININGS = {
    "tm": Pretraining("temporal_masking"),
    "ap": Pretraining("anatomical_position"),
    "ap_grid8": Pretraining("anatomical_position", ("--along_bins", "8", "--across_bins", "8")),
    "ap_polar": Pretraining("anatomical_position", ("--position_grid", "polar", "--rings", "3", "--sectors", "8")),
    "ap_multitask": Pretraining("anatomical_position", ("--reconstruction_weight", "1.0")),
    "ap_long": Pretraining("anatomical_position", (), steps_factor=4),
    "ap_xlong": Pretraining("anatomical_position", (), steps_factor=16),
}
PROBE = ("--trainable", "head")
METHODS = {
    "scratch": Method("from scratch"),
    "temporal_masking": Method("temporal-masking SSL", "tm"),
    "anatomical_position": Method("anatomical-position SSL (4x4 grid)", "ap"),
    "ap_encoder_only": Method("anatomical-position, encoder only transferred", "ap", ("--pretrained_type", "encoder")),
    "ap_grid8": Method("anatomical-position, 8x8 grid", "ap_grid8"),
    "ap_polar": Method("anatomical-position, 3 rings x 8 sectors", "ap_polar"),
    "ap_multitask": Method("anatomical-position + reconstruction (multi-task)", "ap_multitask"),
    "ap_long": Method("anatomical-position, 4x pre-training steps", "ap_long"),
    "ap_xlong": Method("anatomical-position, 16x pre-training steps", "ap_xlong"),
    "probe_scratch": Method("linear probe: random features", None, PROBE, baseline="probe_scratch"),
    "probe_temporal_masking": Method("linear probe: temporal-masking features", "tm", PROBE, baseline="probe_scratch"),
    "probe_anatomical_position": Method("linear probe: anatomical-position features", "ap", PROBE, baseline="probe_scratch"),
    # The weak budget itself: 5x the steps, each compared with scratch at 5x.
    "scratch_5x": Method("from scratch, 5x weak steps", None, weak_steps_factor=5, baseline="scratch_5x"),
    "temporal_masking_5x": Method("temporal-masking SSL, 5x weak steps", "tm", weak_steps_factor=5, baseline="scratch_5x"),
    "anatomical_position_5x": Method("anatomical-position SSL, 5x weak steps", "ap", weak_steps_factor=5, baseline="scratch_5x"),
}
MAIN_METHODS = ("scratch", "temporal_masking", "anatomical_position")
VARIANTS = (
    "ap_encoder_only", "ap_grid8", "ap_polar", "ap_multitask", "ap_long", "ap_xlong",
    "probe_scratch", "probe_temporal_masking", "probe_anatomical_position", "temporal_masking_5x", "anatomical_position_5x",
)
BASELINE = {name: method.baseline for name, method in METHODS.items()}
LABELS = {name: method.label for name, method in METHODS.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.low_label",
        description="Weak LV segmentation with n labelled videos: pre-trainings against training from scratch, paired over seeds and test videos.",
    )
    parser.add_argument("--data_path", default=None, help="EchoNet-Dynamic folder (default: the built-in phantom, --phantom_videos videos)")
    parser.add_argument("--phantom_videos", type=int, default=400, help="phantom size when no --data_path (400: 300 train, 50 val, 50 test)")
    parser.add_argument("--n", nargs="+", default=["2", "4", "8"], help="labelled training videos per run (integers or 'all')")
    parser.add_argument("--methods", nargs="+", default=list(MAIN_METHODS), choices=list(METHODS), help="run at every --n")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(METHODS), help="run at --variant_n only")
    parser.add_argument("--variant_n", default="4", help="the n of the variants (integer or 'all')")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variant_seeds", nargs="+", type=int, default=None, help="seeds of the variants (default: --seeds)")
    parser.add_argument("--encoder", default="3d_unet_tiny", help="network (default 3d_unet_tiny, CPU-sized)")
    parser.add_argument("--width", type=int, default=None, help="base channel width override")
    parser.add_argument("--frames", type=int, default=16, help="clip length")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="network input size (default: the videos' 112 112)")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--budget_steps", type=int, default=60, help="weak-training optimiser steps per run (same for every method)")
    parser.add_argument("--ssl_steps", type=int, default=150, help="pre-training steps per pretext and seed")
    parser.add_argument("--ssl_videos", choices=("train", "all"), default="train",
                        help="pre-train on the training split (default) or on every video of the folder, VAL/TEST pixels included (labels never read)")
    parser.add_argument("--score_splits", nargs="+", default=["test"], choices=("test", "val"), help="splits scored (pooled when several)")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples for the intervals")
    parser.add_argument("--tag", default=None,
                        help="names another run of the same pre-trainings (e.g. another --budget_steps): weak runs go to weak-...-<tag>, results to low_label-<dataset>-<tag>")
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
    if args.size is not None:
        flags += ["--size", *map(str, args.size)]
    return flags


def pretrain(args, data_path: Path, work: Path, key: str, seed: int, heldout: Path | None) -> tuple[Path, float]:
    from unilvseg.cli.train import main_ssl

    spec = PRETRAININGS[key]
    run_dir = work / f"ssl-{key}-seed{seed}"
    flags = ["--pretext", spec.pretext, *spec.flags] + train_flags(args, data_path, run_dir, seed, args.ssl_steps * spec.steps_factor)
    # The pretext's own validation accuracy is one of the measurements: ten batches, not one.
    flags[flags.index("--limit_val_batches") + 1] = "10"
    if heldout is not None:
        flags += ["--external_dir", json.dumps([str(heldout)])]
    return run_stage(run_dir, {"flags": flags}, lambda: main_ssl(flags), "checkpoints/last.ckpt")


def finetune(args, data_path: Path, work: Path, method: str, n: int, seed: int, checkpoint: Path | None) -> tuple[Path, float]:
    from unilvseg.cli.train import main_weak

    run_dir = work / (f"weak-{method}-n{n}-seed{seed}" + (f"-{args.tag}" if args.tag else ""))
    spec = METHODS[method]
    flags = train_flags(args, data_path, run_dir, seed, args.budget_steps * spec.weak_steps_factor) + ["--train_videos", str(n), *spec.weak_flags]
    if checkpoint is not None:
        flags += ["--checkpoint", str(checkpoint)]
    return run_stage(run_dir, {"flags": flags}, lambda: main_weak(flags), "checkpoints/last.ckpt")


def predict_and_evaluate(args, data_path: Path, run_dir: Path, checkpoint: Path, seed: int, split: str, compare: Path | None) -> tuple[dict, Path]:
    """Predict ``split`` with the run's checkpoint and score it (paired with ``compare``, another
    run's predictions of the same split, when given). Returns (summary.json, predictions folder)."""
    from unilvseg.cli.evaluate import main as evaluate_main
    from unilvseg.cli.predict import main as predict_main

    predictions, evaluation = run_dir / f"predictions-{split}", run_dir / f"evaluation-{split}"
    predict_flags = [
        "--data_path", str(data_path), "--split", split, "--checkpoint", str(checkpoint),
        "--save_dir", str(predictions), "--device", "cpu", "--overwrite",
        # Non-overlapping windows, 8 per forward pass: the CPU-sized setting of benchmarks.real_echo.
        "--stride", str(args.frames), "--batch_size", "8",
    ]
    run_stage(predictions, {"flags": predict_flags}, lambda: predict_main(predict_flags), "volumes.csv")
    evaluate_flags = [
        "--data_dir", str(data_path), "--prediction_dir", str(predictions), "--output_dir", str(evaluation),
        "--split", split, "--samples", str(args.samples), "--seed", str(seed),
    ]
    if compare is not None:
        evaluate_flags += ["--compare", str(compare)]
    summary, _ = run_stage(evaluation, {"flags": evaluate_flags}, lambda: evaluate_main(evaluate_flags), "summary.json")
    return json.loads(summary.read_text()), predictions


def video_counts(evaluation_dirs: list[Path], splits: list[str]) -> pd.DataFrame:
    """Per-video pixel counts (ED, ES) of one run over the scored splits, indexed by FileName."""
    tables = [pd.read_csv(folder / f"{split}_dice.csv") for folder, split in zip(evaluation_dirs, splits)]
    columns = [f"{kind}{phase}" for kind in ("Intersection", "PredArea", "TrueArea") for phase in ("ED", "ES")]
    return pd.concat(tables, ignore_index=True).set_index("FileName")[columns]


def as_count_tuple(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(table[[f"{kind}ED", f"{kind}ES"]].to_numpy(np.int64) for kind in ("Intersection", "PredArea", "TrueArea"))


def paired_over_seeds(ours: list[pd.DataFrame], theirs: list[pd.DataFrame], samples: int, seed: int) -> dict:
    """Mean-over-seeds Dice(ours) − Dice(theirs), seed k of both paired, with a bootstrap over seeds
    and videos; also each side's own mean-over-seeds Dice with its interval (``ours``/``theirs``)."""
    from unilvseg.evaluation.bootstrap import seed_video_bootstrap_dice

    names = ours[0].index
    if any(set(t.index) != set(names) or len(t.index) != len(names) for t in [*ours, *theirs]):
        raise UserError("paired comparison: the runs were not scored on the same videos")
    stack = lambda tables: tuple(np.stack(parts) for parts in zip(*(as_count_tuple(t.loc[names]) for t in tables)))  # noqa: E731
    a, b = stack(ours), stack(theirs)
    difference = seed_video_bootstrap_dice(a, b, samples=samples, rng=np.random.default_rng(seed), paired_seeds=True)
    own = {side: seed_video_bootstrap_dice(counts, samples=samples, rng=np.random.default_rng(seed)) for side, counts in (("ours", a), ("theirs", b))}
    result = {key: {"difference": value.estimate, "low": value.low, "high": value.high, "fraction_le_0": value.fraction_not_above_zero}
              for key, value in difference.items()}
    for side, blocks in own.items():
        result[side] = {key: value.as_dict() for key, value in blocks.items()}
    return result


def pooled_dice(counts: pd.DataFrame) -> dict:
    """Ratio-of-sums Dice (overall, ED, ES) of per-video counts, as evaluate_bootstrap.py pools them."""
    from unilvseg.evaluation import metrics

    inter, pred, true = as_count_tuple(counts)
    by_phase = metrics.pooled_dice(inter, pred, true, axis=0)
    return {"overall": metrics.pooled_dice(inter, pred, true), "ed": float(by_phase[0]), "es": float(by_phase[1])}


# -- why a pretext transfers or not ---------------------------------------------------------------


def final_metric(run_dir: Path, name: str) -> float:
    """The last logged value of ``name`` in a run's metrics.csv (NaN when absent)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return float("nan")
    table = pd.read_csv(path)
    if name not in table:
        return float("nan")
    values = table[name].dropna()
    return float(values.iloc[-1]) if len(values) else float("nan")


def pretext_baselines(data_path: Path, spec: Pretraining, videos: int, frames: int, size: tuple[int, int] | None) -> dict:
    """What the position pretext can get right without looking at the heart, on the first clip of
    up to ``videos`` videos (validation first, then training videos when there are fewer): the commonest class everywhere, and the class map drawn from
    the ultrasound fan alone (the sector fall-back geometry; no LV). Pixel accuracy over the frame,
    as the task's ``val_position_accuracy``."""
    from unilvseg.data.index import load_index
    from unilvseg.data.video import read_video
    from unilvseg.tasks.anatomical import AnatomicalTargets, position_map, sector_fallback_geometry, estimate_geometry

    from unilvseg.cli.train import ssl_parser

    # The grid exactly as train_ssl.py reads the pre-training's flags (its defaults included).
    flags = ssl_parser().parse_args(list(spec.flags))
    grid = {name: getattr(flags, name) for name in ("along_bins", "across_bins", "position_grid", "rings", "sectors")}
    n_classes = AnatomicalTargets(**grid).n_classes
    index = load_index(data_path)
    records = (index.split("val").records + index.split("train").records)[:videos]  # pixels only: no label is read
    majority, fan_only, lv_source = [], [], 0
    for record in records:
        clip = read_video(record.path, size=tuple(size) if size else None)[:frames]
        geometry, sector = estimate_geometry(clip)
        truth = position_map(sector.mask, geometry, **grid)
        guess = position_map(sector.mask, sector_fallback_geometry(sector), **grid)
        histogram = np.bincount(truth.ravel(), minlength=n_classes)
        majority.append(histogram.max() / truth.size)
        fan_only.append(float((guess == truth).mean()))
        lv_source += geometry.source == "lv"
    return {
        "classes": n_classes, "videos": len(records), "lv_geometry_share": lv_source / max(len(records), 1),
        "majority_accuracy": float(np.mean(majority)), "fan_only_accuracy": float(np.mean(fan_only)),
    }


# -- reporting ----------------------------------------------------------------------------------


def summary_row(summary: dict) -> dict:
    row = {"test_videos": summary["n_videos"]}
    for key in ("overall", "ed", "es"):
        row[f"dice_{key}"] = summary[key]["dice"]
        row[f"dice_{key}_low"] = summary[key]["low"]
        row[f"dice_{key}_high"] = summary[key]["high"]
    compare = summary.get("compare")
    if compare:
        row["diff_overall"], row["diff_low"], row["diff_high"] = compare["overall"]["difference"], compare["overall"]["low"], compare["overall"]["high"]
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


def paired_table(paired: pd.DataFrame, runs: pd.DataFrame) -> str:
    """One row per compared (n, method): pooled Dice of both, the pooled paired difference with
    its interval, and each seed's own paired difference (evaluate_bootstrap.py --compare)."""
    lines = [
        "| n | method | vs | seeds | Dice (mean over seeds, 95 % CI) | baseline | difference overall (95 % CI, seeds and videos) | ED | ES | per-seed differences | seeds with CI > 0 / < 0 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in paired.itertuples():
        seeds = runs[(runs["method"] == row.method) & (runs["n"] == row.n)].sort_values("seed")
        per_seed = ", ".join(
            f"{r.diff_overall:+.3f} ({r.diff_low:+.3f}–{r.diff_high:+.3f})" if np.isfinite(r.diff_overall) else "–"
            for r in seeds.itertuples()
        )
        lines.append(
            f"| {row.n_label} | {LABELS[row.method]} | {LABELS[row.baseline]} | {row.seeds} | "
            f"{row.dice:.3f} ({row.dice_low:.3f}–{row.dice_high:.3f}) | {row.baseline_dice:.3f} ({row.baseline_dice_low:.3f}–{row.baseline_dice_high:.3f}) | "
            f"{row.diff_overall:+.3f} ({row.diff_overall_low:+.3f}–{row.diff_overall_high:+.3f}) | "
            f"{row.diff_ed:+.3f} ({row.diff_ed_low:+.3f}–{row.diff_ed_high:+.3f}) | "
            f"{row.diff_es:+.3f} ({row.diff_es_low:+.3f}–{row.diff_es_high:+.3f}) | {per_seed} | {row.seeds_above_0} / {row.seeds_below_0} |"
        )
    return "\n".join(lines) + "\n"


def pretext_table(pretext: pd.DataFrame) -> str:
    lines = [
        "| pre-training | classes | pretext val accuracy (mean over seeds) | commonest class | fan-only map | SSL s |",
        "|---|---|---|---|---|---|",
    ]
    cell = lambda value: f"{value:.3f}" if np.isfinite(value) else "–"  # noqa: E731
    for row in pretext.itertuples():
        lines.append(
            f"| {row.pretraining} | {row.classes or '–'} | {cell(row.val_accuracy)} | {cell(row.majority_accuracy)} | "
            f"{cell(row.fan_only_accuracy)} | {row.ssl_seconds:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, path: Path, title: str, paired: pd.DataFrame | None = None, methods: list[str] | None = None) -> Path:
    """Left: Dice against n for ``methods`` (mean, min–max over seeds). Right (when ``paired`` has
    rows): every paired comparison's pooled difference with its 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unilvseg.io import atomic_path

    methods = methods or list(dict.fromkeys(table["method"]))
    show_paired = paired is not None and len(paired) > 0
    figure, axes = plt.subplots(1, 2 if show_paired else 1, figsize=(12 if show_paired else 5.5, 4.5), squeeze=False)
    axis = axes[0, 0]
    offsets = np.linspace(-0.05, 0.05, max(len(methods), 1))
    for offset, method in zip(offsets, methods):
        group = table[table["method"] == method]
        means = group.groupby("n").agg(dice=("dice_overall", "mean"), low=("dice_overall", "min"), high=("dice_overall", "max"))
        xs = means.index.to_numpy(dtype=float) * (2.0**offset)  # small shift so the bars do not overlap
        axis.errorbar(
            xs, means["dice"], yerr=[means["dice"] - means["low"], means["high"] - means["dice"]],
            marker="o", capsize=3, label=LABELS[method], linestyle="-" if means.shape[0] > 1 else "none",
        )
    axis.set_xscale("log", base=2)
    ticks = sorted(table[table["method"].isin(methods)]["n"].unique())
    axis.set_xticks(ticks, [str(t) for t in ticks])
    axis.set_xlabel("labelled training videos (n)")
    axis.set_ylabel("test Dice (overall, ED+ES): mean, min–max over seeds")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    if show_paired:
        axis = axes[0, 1]
        rows = paired.reset_index(drop=True)
        ys = np.arange(len(rows))[::-1]
        axis.errorbar(
            rows["diff_overall"], ys, xerr=[rows["diff_overall"] - rows["diff_overall_low"], rows["diff_overall_high"] - rows["diff_overall"]],
            fmt="o", capsize=3, color="black",
        )
        axis.axvline(0.0, color="grey", linewidth=1)
        labels = [f"n={r.n_label}: {LABELS[r.method]} − {LABELS[r.baseline]} ({r.seeds} seeds)" for r in rows.itertuples()]
        axis.set_yticks(ys, labels, fontsize=6)
        axis.set_xlabel("Dice difference, mean over seeds (95 % CI over seeds and videos)", fontsize=8)
        axis.grid(alpha=0.3, axis="x")
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


def plan(args, counts: list[tuple[int, str]], variant_counts: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    """(n, label, method) runs per seed: the methods at every n, the variants at the variant n, and
    every baseline a run is compared with; the baselines first so comparisons can pair with them."""
    wanted: dict[tuple[int, str], str] = {}
    for (n, label), methods in [(c, args.methods) for c in counts] + [(c, args.variants) for c in variant_counts]:
        for method in methods:
            wanted.setdefault((n, method), label)
            wanted.setdefault((n, BASELINE[method]), label)
    order = {name: i for i, name in enumerate(dict.fromkeys(["scratch", "probe_scratch", "scratch_5x", *METHODS]))}
    return [(n, label, method) for (n, method), label in sorted(wanted.items(), key=lambda item: (item[0][0], order[item[0][1]]))]


def run(args) -> int:
    from unilvseg.data.index import load_index
    from unilvseg.data.phantom import default_data_path
    from unilvseg.io import write_csv, write_text

    for flag in ("budget_steps", "ssl_steps", "batch_size", "frames", "samples", "phantom_videos"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    default = args.data_path is None
    data_path = Path(default_data_path(videos=args.phantom_videos) if default else args.data_path)
    name = dataset_name(data_path, default)
    index = load_index(data_path, require_tracings=True)
    available = len(index.split("train").records)
    for split in args.score_splits:
        if not len(index.split(split).records):
            raise UserError(f"--data_path {data_path}: no traced {split.upper()} videos to score (--score_splits)")
    counts = resolve_counts(args.n, available)
    variant_counts = resolve_counts([args.variant_n], available) if args.variants else []
    variant_seeds = args.variant_seeds if args.variant_seeds is not None else args.seeds
    if not set(variant_seeds) <= set(args.seeds):
        raise UserError(f"--variant_seeds {variant_seeds}: must be among --seeds {args.seeds}")
    runs_per_seed = plan(args, counts, variant_counts)
    main_runs = set(plan(argparse.Namespace(methods=args.methods, variants=[]), counts, []))
    work = Path(args.work_dir or Path("runs") / "low_label" / name)
    heldout = None
    if args.ssl_videos == "all":
        from benchmarks.real_echo import heldout_videos

        heldout = heldout_videos(load_index(data_path), work / "data" / "heldout_videos")
    results = Path(args.results_dir)
    started = time.perf_counter()

    rows, counts_of, ssl_rows = [], {}, []
    for seed in args.seeds:
        checkpoints = {None: None}
        ssl_seconds = {}
        seed_runs = [run for run in runs_per_seed if seed in variant_seeds or run in main_runs]
        for key in dict.fromkeys(METHODS[m].pretraining for _, _, m in seed_runs if METHODS[m].pretraining):
            checkpoints[key], ssl_seconds[key] = pretrain(args, data_path, work, key, seed, heldout)
            accuracy = final_metric(checkpoints[key].parent.parent, "val_position_accuracy")
            ssl_rows.append({"pretraining": key, "seed": seed, "val_accuracy": accuracy, "ssl_seconds": ssl_seconds[key],
                             "val_mse_masked": final_metric(checkpoints[key].parent.parent, "val_mse_masked")})
        predictions_of = {}
        for n, label, method in seed_runs:
            spec = METHODS[method]
            last, seconds = finetune(args, data_path, work, method, n, seed, checkpoints[spec.pretraining])
            run_dir = last.parent.parent
            baseline = BASELINE[method]
            summaries, evaluations = [], []
            for split in args.score_splits:
                compare = predictions_of.get((n, baseline, split)) if baseline != method else None
                summary, predictions = predict_and_evaluate(args, data_path, run_dir, last, seed, split, compare)
                predictions_of[(n, method, split)] = predictions
                summaries.append(summary)
                evaluations.append(run_dir / f"evaluation-{split}")
            counts_of[(method, n, seed)] = video_counts(evaluations, args.score_splits)
            row = {
                "dataset": name, "method": method, "n": n, "n_label": label, "seed": seed,
                "weak_seconds": round(seconds, 1), "ssl_seconds": round(ssl_seconds.get(spec.pretraining, 0.0), 1),
                **summary_row(summaries[0]),
            }
            if len(summaries) > 1:  # several splits: the row's Dice is the pooled one (no per-run interval)
                row.update({f"dice_{k}": v for k, v in pooled_dice(counts_of[(method, n, seed)]).items()})
                row["test_videos"] = len(counts_of[(method, n, seed)])
            rows.append(row)
            log.info("%s n=%s seed %d: Dice %.4f", method, label, seed, row["dice_overall"])

    paired_rows = []
    table = pd.DataFrame(rows)
    for (n, label, method) in runs_per_seed:
        baseline = BASELINE[method]
        if baseline == method:
            continue
        seeds = [s for s in args.seeds if (method, n, s) in counts_of and (baseline, n, s) in counts_of]
        ours = [counts_of[(method, n, s)] for s in seeds]
        theirs = [counts_of[(baseline, n, s)] for s in seeds]
        difference = paired_over_seeds(ours, theirs, args.samples, seeds[0])
        own = {side: difference.pop(side) for side in ("ours", "theirs")}
        per_seed = table[(table["method"] == method) & (table["n"] == n)]
        paired_rows.append({
            "dataset": name, "n": n, "n_label": label, "method": method, "baseline": baseline, "seeds": len(seeds),
            "seeds_above_0": int((per_seed["diff_low"] > 0).sum()), "seeds_below_0": int((per_seed["diff_high"] < 0).sum()),
            "mean_seed_difference": float(per_seed["diff_overall"].mean()),
            "videos": len(ours[0]),
            "dice": own["ours"]["overall"]["estimate"], "dice_low": own["ours"]["overall"]["low"], "dice_high": own["ours"]["overall"]["high"],
            "baseline_dice": own["theirs"]["overall"]["estimate"], "baseline_dice_low": own["theirs"]["overall"]["low"],
            "baseline_dice_high": own["theirs"]["overall"]["high"],
            **{f"diff_{key}": block["difference"] for key, block in difference.items()},
            **{f"diff_{key}_low": block["low"] for key, block in difference.items()},
            **{f"diff_{key}_high": block["high"] for key, block in difference.items()},
            **{f"diff_{key}_fraction_le_0": block["fraction_le_0"] for key, block in difference.items()},
        })
    paired = pd.DataFrame(paired_rows)
    pretext = pd.DataFrame()
    if ssl_rows:
        ssl = pd.DataFrame(ssl_rows)
        pretext = ssl.groupby("pretraining", sort=False).agg(val_accuracy=("val_accuracy", "mean"), ssl_seconds=("ssl_seconds", "mean"),
                                                              val_mse_masked=("val_mse_masked", "mean")).reset_index()
        baselines = []
        for key in pretext["pretraining"]:
            spec = PRETRAININGS[key]
            baselines.append(
                pretext_baselines(data_path, spec, 20, args.frames, args.size) if spec.pretext == "anatomical_position"
                else {"classes": 0, "videos": 0, "lv_geometry_share": float("nan"), "majority_accuracy": float("nan"), "fan_only_accuracy": float("nan")}
            )
        pretext = pd.concat([pretext, pd.DataFrame(baselines)], axis=1)

    from benchmarks.common import git_commit

    commit = git_commit()
    stem = results / (f"low_label-{name}" + (f"-{args.tag}" if args.tag else ""))
    write_csv(table, stem.with_suffix(".csv"))
    write_csv(paired, stem.parent / f"{stem.name}-paired.csv")
    if len(pretext):
        write_csv(pretext, stem.parent / f"{stem.name}-pretext.csv")
    wall = time.perf_counter() - started
    scored = " + ".join(s.upper() for s in args.score_splits)
    settings = (
        f"encoder {args.encoder}" + (f" (width {args.width})" if args.width else "")
        + (f", input {args.size[0]}x{args.size[1]}" if args.size else "")
        + f", {args.frames} frames, batch {args.batch_size}, lr {args.lr}, weak budget {args.budget_steps} steps, "
        f"pre-training {args.ssl_steps} steps" + (" (x4 and x16 for the long variants)" if {"ap_long", "ap_xlong"} & set(args.variants) else "") + " on "
        + ("every video of the folder (VAL/TEST pixels as unlabelled videos)" if args.ssl_videos == "all" else f"the {available} traced and all untraced training videos")
        + f" (labels unused), seeds {args.seeds}" + (f" (variants: {variant_seeds})" if variant_seeds != args.seeds else "")
        + f"; last checkpoint of each run scored on {scored} "
        f"({int(table['test_videos'].iloc[0])} traced videos)"
    )
    main_methods = {*args.methods, *(BASELINE[m] for m in args.methods)}
    variant_methods = {*args.variants, *(BASELINE[m] for m in args.variants)}
    main_rows = table[table["n"].isin([n for n, _ in counts]) & table["method"].isin(main_methods)]
    variant_rows = table[table["n"].isin([n for n, _ in variant_counts]) & table["method"].isin(variant_methods) & table["seed"].isin(variant_seeds)]
    text = (
        f"# Low-label benchmark: {name}\n\n"
        f"Data: `{portable_path(data_path)}`. Command: `{portable_command('benchmarks.low_label', sys.argv[1:])}`, "
        f"at commit {commit['commit']}" + (" (with uncommitted changes)" if commit["dirty"] else "") + ".\n\n"
        f"Settings: {settings}.\n\n"
        "## Dice per method and n\n\n"
        f"{markdown_table(main_rows, args.seeds)}\n"
        + (f"## Variants at n = {variant_counts[0][1]}\n\n{markdown_table(variant_rows, variant_seeds)}\n" if len(variant_rows) else "")
        + "## Paired differences\n\n"
        "Over seeds: Dice(method) − Dice(baseline), each the mean over seeds of a seed's Dice, with a 95 % interval from a "
        f"bootstrap that resamples the seeds (seed k of both paired) and the {scored} videos ({args.samples} resamples; "
        "`evaluate_bootstrap.py --seeds`). Per seed: `evaluate_bootstrap.py --compare` (paired over videos only)"
        + (" on TEST." if len(args.score_splits) == 1 else f" on {args.score_splits[0].upper()} only.") + "\n\n"
        f"{paired_table(paired, table)}\n"
        + (
            "## The position pretext itself\n\n"
            "Pretext accuracy: `val_position_accuracy` at the end of pre-training (pixels of the frame whose class is right). "
            "Commonest class / fan-only map: the accuracy of predicting the commonest class everywhere, or the class map "
            "of the fan-only fall-back geometry (no LV), on the first clip of 20 videos (VAL first, then TRAIN).\n\n"
            f"{pretext_table(pretext)}\n" if len(pretext) else ""
        )
        + f"Wall time of this invocation: {wall / 60:.1f} min (stages finished by an earlier invocation are reused; "
        "the seconds columns are each stage's own time when it ran). Training stages added up: "
        f"{(table['weak_seconds'].sum() + (pd.DataFrame(ssl_rows)['ssl_seconds'].sum() if ssl_rows else 0.0)) / 60:.1f} min "
        "(weak runs and pre-trainings, each counted once; prediction and scoring not included; several stages shared the 2 cores, "
        "so these are wall seconds under load).\n"
    )
    write_text(text, stem.with_suffix(".md"))
    plot(table, stem.with_suffix(".png"), f"{name}: weak segmentation vs labelled videos", paired, sorted(main_methods, key=list(METHODS).index))
    print(text)
    print(f"wrote {stem}.md, .csv, -paired.csv, .png")
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
