"""Four-chamber label-free segmentation on the phantom: every structure, measurement and flag
against the phantom's dense truth, on held-out hearts.

    python -m benchmarks.labelfree_chambers                  # 80-video phantom, 30 % pathologies
    python -m benchmarks.labelfree_chambers --smoke          # tiny settings (the CI test)

One command, in order, with the project's own scripts: a phantom with pathologies
(``python -m unilvseg.data.phantom --pathologies``), ``train_labelfree.py --structures
lv,myo,la,rv,ra`` (no tracing, no reference mask is read for training), ``predict.py`` on the
TEST hearts (label maps and ``chambers.csv``), ``evaluate_bootstrap.py`` (Dice of every structure
with intervals over videos). Then each chamber measurement of the predictions against the same
measurement of the truth label maps (MAE, bias, r, Bland–Altman), and each guideline flag of
the predictions against the flag of the truth (sensitivity, specificity, balanced accuracy with
intervals), at the phantom's pixel spacing; flags that need a body-surface area stay undecided.

Outputs (``<results_dir>/labelfree_chambers-phantom.{md,csv}``, ``-measurements.csv``,
``-flags.csv``) name the commit and the command. Stage folders under ``--run_dir`` are reused when
the same command runs again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import git_commit, load_average, portable_command

RESULTS_DIR = Path(__file__).resolve().parent / "results"
STRUCTURES_FLAG = "lv,myo,la,rv,ra"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.labelfree_chambers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=80, help="phantom hearts (12.5 %% of them TEST)")
    parser.add_argument("--pathologies", type=float, default=0.3, help="share of hearts with a pathology")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--phantom_seed", type=int, default=21, help="phantom seed (not one the label maker was shaped on: 0, 11)")
    parser.add_argument("--early_epochs", type=int, default=12)
    parser.add_argument("--round_epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--size", type=int, nargs=2, default=[64, 64])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true", help="12 hearts, one epoch, 32x32 (a test of the plumbing)")
    parser.add_argument("--run_dir", type=Path, default=Path("runs/labelfree_chambers"))
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    return parser


def _stage(folder: Path, settings: dict, action) -> None:
    """Run ``action`` unless ``folder/stage.json`` records these very settings as finished."""
    marker = folder / "stage.json"
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        return
    status = action()
    if status not in (0, None):
        raise SystemExit(f"error: stage {folder} failed (exit {status})")
    folder.mkdir(parents=True, exist_ok=True)
    from unilvseg.io import write_json

    write_json(settings, marker)


def measurements_table(data: Path, predictions: Path, names: list[str], mm_per_pixel: float) -> pd.DataFrame:
    """One row per TEST heart: every chamber measurement of the truth and of the prediction."""
    from unilvseg.data.structures import reference_labels
    from unilvseg.evaluation.chambers import MEASURES, chamber_flags, chamber_measurements

    rows = []
    for name in names:
        truth = reference_labels(data, name)
        stored = predictions / "masks" / f"{name}.npz"
        if truth is None or not stored.is_file():
            continue
        with np.load(stored) as archive:
            predicted = archive["labels"]
        true_row = chamber_measurements(truth[0], mm_per_pixel=mm_per_pixel, fps=50.0)
        pred_row = chamber_measurements(predicted, mm_per_pixel=mm_per_pixel, fps=50.0)
        row = {"FileName": name}
        for key in MEASURES:
            row[f"true_{key}"], row[f"pred_{key}"] = true_row[key], pred_row[key]
        for flag, value in chamber_flags(true_row, mm_per_pixel=mm_per_pixel).items():
            row[f"true_flag_{flag}"] = value
        for flag, value in chamber_flags(pred_row, mm_per_pixel=mm_per_pixel).items():
            row[f"pred_flag_{flag}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def agreement_tables(table: pd.DataFrame, samples: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from unilvseg.evaluation.chambers import FLAGS, MEASURES, flag_agreement, measurement_agreement

    measures = []
    for key, measure in MEASURES.items():
        try:
            agreement = measurement_agreement(table[f"pred_{key}"], table[f"true_{key}"], samples=samples, rng=np.random.default_rng(seed))
        except ValueError:
            continue
        truth = table[f"true_{key}"].to_numpy(np.float64)
        measures.append({"measurement": key, "unit": measure.unit, "n": agreement["n"], "left_out": agreement["left_out"],
                         "true_mean": float(np.nanmean(truth)), "mae": agreement["mae"], "mae_low": agreement["mae_low"],
                         "mae_high": agreement["mae_high"], "relative_mae": agreement["mae"] / abs(float(np.nanmean(truth))),
                         "bias": agreement["bias"], "r": agreement["r"], "loa_low": agreement["loa_low"], "loa_high": agreement["loa_high"]})
    flags = []
    for flag in FLAGS:
        truth, predicted = table.get(f"true_flag_{flag}"), table.get(f"pred_flag_{flag}")
        if truth is None or predicted is None:
            continue
        decided = truth.notna() & predicted.notna()
        if not decided.any():
            flags.append({"flag": flag, "n": 0, "note": "undecided (needs BSA or pixel spacing)"})
            continue
        result = flag_agreement(predicted[decided].astype(bool), truth[decided].astype(bool), samples=samples, rng=np.random.default_rng(seed))
        flags.append({"flag": flag, **{k: result[k] for k in ("n", "positives", "negatives", "sensitivity", "sensitivity_low",
                                                              "sensitivity_high", "specificity", "specificity_low", "specificity_high",
                                                              "balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high",
                                                              "undefined_share")}, "note": ""})
    return pd.DataFrame(measures), pd.DataFrame(flags)


def markdown(dice: dict, measures: pd.DataFrame, flags: pd.DataFrame, meta: dict) -> str:
    f = lambda v, d=3: "–" if v is None or not np.isfinite(v) else f"{v:.{d}f}"  # noqa: E731
    lines = [
        "# Four-chamber label-free segmentation on the phantom",
        "",
        f"Command: `{meta['command']}` at commit {meta['commit']}; {meta['date']}, {meta['minutes']:.1f} min, load {meta['load']}.",
        f"Phantom: {meta['videos']} hearts (seed {meta['phantom_seed']}), {meta['pathologies']:.0%} with a pathology; "
        f"scored on the {meta['test']} TEST hearts, never trained on; one training seed ({meta['seed']}). "
        "No tracing or reference mask was read for training.",
        "",
        "## Dice of every structure (TEST hearts; 95 % bootstrap intervals over videos)",
        "",
        "| structure | every frame | ED | ES |",
        "|---|---|---|---|",
    ]
    for name, scores in dice.items():
        cells = [f"{f(scores[p]['dice'])} ({f(scores[p]['low'])}–{f(scores[p]['high'])})" if p in scores else "–" for p in ("all_frames", "ed", "es")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Measurements against the truth label maps (same formula on both; phantom pixel spacing)", "",
              "| measurement | unit | n | truth mean | MAE (95 % CI) | MAE / truth | bias | r | Bland–Altman |", "|---|---|---|---|---|---|---|---|---|"]
    for r in measures.itertuples():
        lines.append(f"| {r.measurement} | {r.unit} | {r.n} | {f(r.true_mean, 1)} | {f(r.mae, 2)} ({f(r.mae_low, 2)}–{f(r.mae_high, 2)}) | "
                     f"{f(r.relative_mae, 2)} | {r.bias:+.2f} | {f(r.r, 2)} | {r.loa_low:+.1f} to {r.loa_high:+.1f} |")
    lines += ["", "## Flags against the truth's flags (ASE/EACVI 2015 limits; see docs/chambers.md)", "",
              "| flag | n | abnormal / normal | sensitivity | specificity | balanced accuracy (95 % CI) | note |", "|---|---|---|---|---|---|---|"]
    for r in flags.to_dict("records"):
        if not r.get("n"):
            lines.append(f"| {r['flag']} | 0 | – | – | – | – | {r['note']} |")
            continue
        lines.append(f"| {r['flag']} | {int(r['n'])} | {int(r['positives'])} / {int(r['negatives'])} | {f(r['sensitivity'], 2)} | {f(r['specificity'], 2)} | "
                     f"{f(r['balanced_accuracy'], 2)} ({f(r['balanced_accuracy_low'], 2)}–{f(r['balanced_accuracy_high'], 2)}) | "
                     + (f"{r['undefined_share']:.0%} of resamples lack a class" if r["undefined_share"] > 0.01 else "") + " |")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    from unilvseg.cli.evaluate import main as evaluate_main
    from unilvseg.cli.labelfree import main as labelfree_main
    from unilvseg.cli.predict import main as predict_main
    from unilvseg.data.phantom import MM_PER_PIXEL, generate_phantom
    from unilvseg.io import write_csv, write_text

    started, load = time.perf_counter(), load_average()
    if args.smoke:
        args.videos, args.early_epochs, args.round_epochs, args.rounds, args.size, args.samples = 12, 1, 1, 0, [32, 32], 100
    work = args.run_dir
    data = work / "data"
    phantom_settings = {"videos": args.videos, "seed": args.phantom_seed, "pathologies": args.pathologies}
    _stage(work / "phantom_stage", phantom_settings,
           lambda: generate_phantom(data, videos=args.videos, seed=args.phantom_seed, min_frames=60, max_frames=120,
                                    pathologies=args.pathologies, overwrite=True) and 0)
    flags = ["--data_path", str(data), "--structures", STRUCTURES_FLAG, "--rounds", str(args.rounds), "--early_epochs", str(args.early_epochs),
             "--round_epochs", str(args.round_epochs), "--size", *map(str, args.size), "--seed", str(args.seed),
             "--run_dir", str(work / "labelfree"), "--progress_bar", "false"]
    if args.smoke:
        flags += ["--limit_train_batches", "2", "--limit_val_batches", "2"]
    _stage(work / "labelfree_stage", {"flags": flags, **phantom_settings}, lambda: labelfree_main(flags))
    predictions = work / "predictions"
    predict_flags = ["--checkpoint", str(work / "labelfree" / "checkpoints" / "final.ckpt"), "--data_path", str(data), "--split", "test",
                     "--save_dir", str(predictions), "--device", "cpu", "--overwrite"]
    _stage(work / "predict_stage", {"flags": predict_flags, **phantom_settings}, lambda: predict_main(predict_flags))
    evaluation = work / "evaluation"
    _stage(work / "evaluate_stage", {"samples": args.samples, **phantom_settings},
           lambda: evaluate_main(["--data_dir", str(data), "--prediction_dir", str(predictions), "--output_dir", str(evaluation),
                                  "--split", "test", "--samples", str(args.samples), "--seed", "0"]))
    dice = json.loads((evaluation / "summary.json").read_text())["structures"]["dice"]
    names = sorted(pd.read_csv(data / "FileList.csv", dtype={"FileName": str}).query("Split == 'TEST'")["FileName"])
    table = measurements_table(data, predictions, names, MM_PER_PIXEL)
    measures, flag_table = agreement_tables(table, args.samples, 0)
    commit = git_commit()
    meta = {
        "command": portable_command("benchmarks.labelfree_chambers", list(sys.argv[1:] if args.argv is None else args.argv)),
        "commit": f"{commit['commit']}" + (" (with uncommitted changes)" if commit["dirty"] else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "minutes": (time.perf_counter() - started) / 60, "load": load,
        "videos": args.videos, "phantom_seed": args.phantom_seed, "pathologies": args.pathologies, "test": len(table), "seed": args.seed,
    }
    stem = args.results_dir / ("labelfree_chambers-phantom" + ("-smoke" if args.smoke else ""))
    write_csv(table, stem.parent / f"{stem.name}-videos.csv", float_format="%.4f")
    write_csv(measures, stem.parent / f"{stem.name}-measurements.csv", float_format="%.4f")
    write_csv(flag_table, stem.parent / f"{stem.name}-flags.csv", float_format="%.4f")
    text = markdown(dice, measures, flag_table, meta)
    write_text(text, stem.with_suffix(".md"))
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    from unilvseg.cli.common import setup_logging

    setup_logging()
    args = build_parser().parse_args(argv)
    args.argv = argv
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
