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
    parser.add_argument("--prediction_dir", required=True, nargs="+",
                        help="folder written by predict.py (masks/, PNGs, volumes.csv); several folders are each evaluated "
                        "into OUTPUT_DIR/<folder name>/ (for --table)")
    parser.add_argument("--output_dir", required=True, help="where <split>_dice.csv, log.csv and summary.json go")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"], type=str.lower)
    parser.add_argument("--view", default=None, choices=["a4c", "a2c", "sax"], type=str.lower,
                        help="score only the videos of this view (FileList's View column; blank or absent = a4c), e.g. predict.py "
                        "--view's folder of a multi-view phantom: every video of the view needs a prediction, untraced ones (SAX) "
                        "are scored on their label maps and every frame only (default: every traced video)")
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
    parser.add_argument("--compare", default=None, nargs="+", metavar="OTHER_PREDICTION_DIR",
                        help="paired comparison: Dice difference (this - other; overall, ED, ES) on the same videos and the "
                        "same bootstrap resamples, with its interval and the fraction of resamples <= 0 (log.csv, summary.json); "
                        "with --seeds, one folder per training seed of the other method")
    parser.add_argument("--seeds", action="store_true",
                        help="the --prediction_dir folders are the training seeds of one method and the --compare folders those "
                        "of another: adds each seed's paired interval and the difference of the mean-over-seeds Dice with an "
                        "interval over seeds and videos (OUTPUT_DIR/seeds_summary.json, seeds_log.csv)")
    parser.add_argument("--table", default=None, choices=["md", "latex"],
                        help="also write a paper table of the Dice of every --prediction_dir (OUTPUT_DIR/table.md or table.tex)")
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


def _output_dirs(prediction_dirs: list[str], output_dir: str) -> list[Path]:
    """One folder: OUTPUT_DIR itself. Several: OUTPUT_DIR/<folder name> (numbered when names repeat)."""
    if len(prediction_dirs) == 1:
        return [Path(output_dir)]
    seen: dict[str, int] = {}
    outputs = []
    for folder in prediction_dirs:
        name = Path(folder).resolve().name or "predictions"
        seen[name] = seen.get(name, 0) + 1
        outputs.append(Path(output_dir) / (name if seen[name] == 1 else f"{name}-{seen[name]}"))
    return outputs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from unilvseg.cli.common import setup_logging

    setup_logging()
    try:
        from unilvseg.evaluation.evaluate import evaluate_predictions

        if args.compare and len(args.compare) > 1 and not args.seeds:
            raise UserError(f"--compare takes one folder (got {len(args.compare)}); for several seeds per method add --seeds")
        if args.seeds and not args.compare:
            raise UserError("--seeds needs --compare with the other method's folders (one per seed)")
        if args.seeds and args.view:
            raise UserError("--seeds scores every traced video; drop --view")
        if args.seeds and args.reference:
            raise UserError("--seeds uses the video convention; drop --reference")

        summaries = []
        for prediction_dir, output_dir in zip(args.prediction_dir, _output_dirs(args.prediction_dir, args.output_dir)):
            summary = evaluate_predictions(
                args.data_dir or recorded_data_dir(prediction_dir),
                prediction_dir,
                output_dir,
                split=args.split,
                samples=args.samples,
                ci=args.ci,
                seed=args.seed,
                reference=args.reference,
                plots=args.plots,
                allow_missing=args.allow_missing,
                compare=None if args.seeds or not args.compare else args.compare[0],
                view=args.view,
            )
            summaries.append(summary)
            if len(args.prediction_dir) > 1:
                print(f"== {prediction_dir}")
            print("\n".join(summary["log_lines"]))
            print(f"wrote {output_dir}/log.csv, summary.json, {args.split}_dice.csv")
        if args.seeds:
            from unilvseg.evaluation.compare import seed_comparison
            from unilvseg.io import write_json, write_text

            block, lines = seed_comparison(
                args.data_dir or recorded_data_dir(args.prediction_dir[0]), args.split, args.prediction_dir, args.compare,
                args.samples, args.seed, 0.95 if args.ci is None else args.ci, args.allow_missing,
            )
            write_json(block, Path(args.output_dir) / "seeds_summary.json")
            write_text("\n".join(lines) + "\n", Path(args.output_dir) / "seeds_log.csv")
            print("\n".join(lines))
            print(f"wrote {args.output_dir}/seeds_summary.json, seeds_log.csv")
        if args.table:
            from unilvseg.evaluation.compare import paper_table
            from unilvseg.io import write_text

            if any("overall" not in s for s in summaries):
                raise UserError(f"--table lists the traced-frame Dice, and no video of view {args.view.upper()} is traced")

            table = paper_table(summaries, [Path(d).resolve().name for d in args.prediction_dir], args.table)
            path = Path(args.output_dir) / ("table.md" if args.table == "md" else "table.tex")
            write_text(table, path)
            print(table, end="")
            print(f"wrote {path}")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
