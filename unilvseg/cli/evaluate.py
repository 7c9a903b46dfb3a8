"""``evaluate_bootstrap.py`` / ``unilvseg-evaluate``: Dice and EF of a prediction folder with
bootstrap confidence intervals (see unilvseg.evaluation.evaluate for the folder layout)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unilvseg.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate_bootstrap.py",
        description="Dice (ED, ES, overall; ratio of sums) and EF error of predict.py outputs against "
        "EchoNet-Dynamic tracings, with bootstrap confidence intervals.",
    )
    parser.add_argument(
        "--data_dir",
        default=None,
        help="EchoNet-Dynamic folder (FileList.csv, VolumeTracings.csv, Videos/); default: the one predict.py "
        "recorded in PREDICTION_DIR/run.json",
    )
    parser.add_argument("--prediction_dir", required=True, help="folder written by predict.py (masks/, PNGs, volumes.csv)")
    parser.add_argument("--output_dir", required=True, help="where <split>_dice.csv, log.csv and summary.json go")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"], type=str.lower)
    parser.add_argument("--samples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--ci", type=float, default=None, help="interval coverage, default 0.95 (percentile interval)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap's numpy Generator")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="reproduce EchoNet-Dynamic's published convention: 5th/95th percentiles labelled '95%% CI', "
        "overall Dice resampling the 2N traced frames independently",
    )
    parser.add_argument("--plots", action="store_true", help="also write Dice histograms and an EF scatter (PNG)")
    parser.add_argument(
        "--allow_missing",
        action="store_true",
        help="skip (and count) videos whose traced-frame predictions are missing or wrongly sized instead of failing",
    )
    return parser


def recorded_data_dir(prediction_dir: str) -> str:
    """The EchoNet folder predict.py read (``run.json``), for runs without ``--data_dir``."""
    run_file = Path(prediction_dir) / "run.json"
    try:
        data_path = json.loads(run_file.read_text()).get("data_path")
    except (OSError, ValueError):
        data_path = None
    if not data_path:
        raise UserError(f"--data_dir is required: {run_file} does not name the data set the predictions came from")
    return data_path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from unilvseg.cli.common import setup_logging

    setup_logging()
    try:
        from unilvseg.evaluation.evaluate import evaluate_predictions

        summary = evaluate_predictions(
            args.data_dir or recorded_data_dir(args.prediction_dir),
            args.prediction_dir,
            args.output_dir,
            split=args.split,
            samples=args.samples,
            ci=args.ci,
            seed=args.seed,
            reference=args.reference,
            plots=args.plots,
            allow_missing=args.allow_missing,
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary["log_lines"]))
    print(f"wrote {args.output_dir}/log.csv, summary.json, {args.split}_dice.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
