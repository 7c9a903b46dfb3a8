"""EF from masks against the FileList EF (from clinicians' tracings), per ED/ES rule.

    python -m benchmarks.ef_agreement --data_path D [--prediction_dir P] [--split all]
        [--rules beats extremes volume_peaks] [--out benchmarks/results] [--tag NAME]

Masks: ``D/ReferenceMasks/<FileName>.npz`` (dense truth: the phantom's exact LV, or EchoNet's
published masks in echonet-real-mini), or with ``--prediction_dir`` the ``masks/<FileName>.npz``
that predict.py writes. Every video of the split that has both masks and a FileList EF is
scored; the video's FileList FPS sets the heart-rate range of the rules.

Writes ``<out>/ef_agreement-<tag>.md`` (per rule: n, MAE, bias, r with 95 % bootstrap
intervals, Bland-Altman limits, fallbacks; a per-video table when there are at most 40 videos),
``.csv`` (one row per video and rule) and ``.png`` (Bland-Altman plot per rule). The default tag
names the data set and the mask source, e.g. ``echonet-real-mini-reference``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from unilvseg.errors import UserError

RESULTS = Path(__file__).resolve().parent / "results"
PER_VIDEO_TABLE_MAX = 40


def build_parser() -> argparse.ArgumentParser:
    from unilvseg.evaluation.volumes import ED_ES_RULES

    parser = argparse.ArgumentParser(prog="python -m benchmarks.ef_agreement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_path", required=True, help="EchoNet-Dynamic folder (FileList.csv with EF and FPS)")
    parser.add_argument("--prediction_dir", default=None, help="predict.py output folder (masks/<FileName>.npz); default: D/ReferenceMasks")
    parser.add_argument("--split", default="all", type=str.lower, choices=["train", "val", "test", "all"])
    parser.add_argument("--rules", nargs="+", default=list(ED_ES_RULES), choices=ED_ES_RULES, help="ED/ES rules to compare")
    parser.add_argument("--out", default=str(RESULTS), help="output folder (default benchmarks/results)")
    parser.add_argument("--tag", default=None, help="name of the outputs (default: data set and mask source)")
    parser.add_argument("--samples", type=int, default=10_000, help="bootstrap resamples for the intervals")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _masks_folder(args) -> tuple[Path, str]:
    if args.prediction_dir is None:
        folder = Path(args.data_path) / "ReferenceMasks"
        if not folder.is_dir():
            raise UserError(f"--data_path {args.data_path}: has no ReferenceMasks/ folder; give --prediction_dir (predict.py output)")
        return folder, "reference"
    folder = Path(args.prediction_dir) / "masks"
    if not Path(args.prediction_dir).is_dir():
        raise UserError(f"--prediction_dir {args.prediction_dir}: folder does not exist")
    if not folder.is_dir():
        raise UserError(f"--prediction_dir {args.prediction_dir}: no masks/ folder (expected predict.py's output layout)")
    return folder, Path(args.prediction_dir).name


def score_videos(data_path, masks_dir: Path, split: str, rules) -> tuple[pd.DataFrame, dict]:
    """One row per (video, rule): reference EF, EF from the masks and what the rule did."""
    from unilvseg.data.index import load_index
    from unilvseg.evaluation.traced import load_npz_masks as _load_npz_masks
    from unilvseg.evaluation.volumes import volumes_by_rule

    index = load_index(data_path, split=split, require_tracings=False)
    rows, skipped = [], {"no_reference_ef": 0, "no_masks": 0}
    for record in index.records:
        if record.ef is None:
            skipped["no_reference_ef"] += 1
            continue
        path = masks_dir / f"{record.file_name}.npz"
        if not path.is_file():
            skipped["no_masks"] += 1
            continue
        masks = _load_npz_masks(path)
        for rule, result in volumes_by_rule(masks, rules, fps=record.fps).items():
            rows.append(
                {
                    "FileName": record.file_name,
                    "Split": record.split,
                    "Frames": len(masks),
                    "FPS": record.fps,
                    "Rule": rule,
                    "ReferenceEF": record.ef,
                    "EF": result["ef"],
                    "Error": result["ef"] - record.ef,
                    "RuleUsed": result["rule"],
                    "Beats": result["beats"],
                    "EFSD": result["ef_sd"],
                    "BeatEFs": " ".join(f"{v:.1f}" for v in result["beat_efs"]) if result["beats"] else "",
                    "HeartRate": result["heart_rate_bpm"],
                    "EDFrame": result["ed_frame"],
                    "ESFrame": result["es_frame"],
                }
            )
    if not rows:
        raise UserError(f"{masks_dir}: no video of split {split!r} has both masks and a FileList EF (skipped: {skipped})")
    return pd.DataFrame(rows), skipped


def summarise(table: pd.DataFrame, rules, samples: int, seed: int) -> pd.DataFrame:
    from unilvseg.evaluation.ef_agreement import ef_agreement_intervals

    summary = []
    for rule in rules:
        rows = table[table.Rule == rule]
        usable = rows[np.isfinite(rows.EF)]
        agreement = ef_agreement_intervals(usable.EF, usable.ReferenceEF, samples=samples, rng=np.random.default_rng(seed))
        summary.append(
            {
                "rule": rule,
                **agreement,
                "no_ef": int(len(rows) - len(usable)),
                "fallbacks": int((rows.RuleUsed != rule).sum()),
                "max_abs_error": float(np.abs(usable.Error).max()),
                "within_5": int((np.abs(usable.Error) <= 5).sum()),
                "over_10": int((np.abs(usable.Error) > 10).sum()),
            }
        )
    return pd.DataFrame(summary)


def _interval(low, high, digits):
    return f"{low:.{digits}f} – {high:.{digits}f}" if np.isfinite(low) and np.isfinite(high) else "n/a"


def report(table, summary, skipped, args, source: str, seconds: float) -> str:
    from benchmarks.common import cpu_model, git_commit, portable_command

    git = git_commit()
    commit = (git["commit"] or "?")[:10] + (" + uncommitted changes" if git["dirty"] else "")
    command = portable_command("benchmarks.ef_agreement", sys.argv[1:])
    lines = [
        f"# EF from masks vs FileList EF: {Path(args.data_path).name}, {source} masks",
        "",
        f"`{command}` — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
        f"commit {commit}, {seconds:.1f} s (one run).",
        "",
        f"Videos: {table.FileName.nunique()} (split {args.split}; skipped {skipped['no_masks']} without masks, "
        f"{skipped['no_reference_ef']} without a FileList EF). Error = EF from masks − FileList EF, in EF points. "
        f"Intervals: 95 % bootstrap percentile intervals, {args.samples} resamples of videos, seed {args.seed}. "
        "Limits of agreement: bias ± 1.96 SD of the errors. Fallbacks: videos where the rule found no beat and used "
        "the whole-video extremes.",
        "",
        "| rule | n | MAE | MAE 95 % CI | bias | bias 95 % CI | r | r 95 % CI | limits of agreement | max abs error | within 5 | over 10 | fallbacks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples():
        lines.append(
            f"| `{row.rule}` | {row.n} | {row.mae:.2f} | {_interval(row.mae_low, row.mae_high, 2)} | {row.bias:+.2f} | "
            f"{_interval(row.bias_low, row.bias_high, 2)} | {row.r:.3f} | {_interval(row.r_low, row.r_high, 3)} | "
            f"{row.loa_low:+.1f} to {row.loa_high:+.1f} | {row.max_abs_error:.1f} | {row.within_5} | {row.over_10} | {row.fallbacks} |"
        )
    videos = table.FileName.unique()
    if len(videos) <= PER_VIDEO_TABLE_MAX:
        rules = list(summary.rule)
        lines += ["", "Per video: EF from masks (error), beats used, and the rule's own note when it fell back.", ""]
        lines.append("| video | split | frames | FileList EF | " + " | ".join(f"`{r}`" for r in rules) + " |")
        lines.append("|---|---|---|---|" + "---|" * len(rules))
        for name in videos:
            rows = table[table.FileName == name].set_index("Rule")
            first = rows.iloc[0]
            cells = []
            for rule in rules:
                row = rows.loc[rule]
                note = f", {row.Beats} beats" if row.Beats else ""
                note += f" ±{row.EFSD:.1f}" if np.isfinite(row.EFSD) else ""
                note += "" if row.RuleUsed == rule else f", {row.RuleUsed}"
                cells.append(f"{row.EF:.1f} ({row.Error:+.1f}{note})")
            lines.append(f"| {name} | {first.Split} | {first.Frames} | {first.ReferenceEF:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(args) -> dict:
    from unilvseg.evaluation.plots import bland_altman
    from unilvseg.io import write_csv, write_text

    if args.samples < 1:
        raise UserError(f"--samples {args.samples}: must be at least 1")
    masks_dir, source = _masks_folder(args)
    tag = args.tag or f"{Path(args.data_path).resolve().name}-{source}"
    started = time.perf_counter()
    table, skipped = score_videos(args.data_path, masks_dir, args.split, args.rules)
    summary = summarise(table, args.rules, args.samples, args.seed)
    seconds = time.perf_counter() - started
    out = Path(args.out)
    stem = out / f"ef_agreement-{tag}"
    write_csv(table, stem.with_suffix(".csv"), float_format="%.3f")
    panels = [(rule, table[table.Rule == rule].ReferenceEF, table[table.Rule == rule].EF) for rule in args.rules]
    bland_altman(panels, stem.with_suffix(".png"), title=f"EF from {source} masks vs FileList EF, {Path(args.data_path).name}")
    write_text(report(table, summary, skipped, args, source, seconds), stem.with_suffix(".md"))
    return {"stem": stem, "summary": summary}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result["summary"][["rule", "n", "mae", "bias", "r", "max_abs_error", "fallbacks"]].to_string(index=False))
    print(f"wrote {result['stem']}.md, .csv, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
