"""Comparing models for a paper: the paired Dice difference of two prediction folders
(``evaluate_bootstrap.py --compare``) and a table of several folders (``--table md|latex``).

Paired: both folders are scored on the same videos and every bootstrap resample draws the
same videos for both, so the interval is that of the difference itself (much narrower than two
separate intervals when the models err on the same hard videos). The indices come from a
generator seeded like the main evaluation, so they are the very resamples of this folder's own
intervals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unilvseg.errors import UserError
from unilvseg.evaluation.bootstrap import REFERENCE, paired_bootstrap_dice

TABLE_FORMATS = ("md", "latex")
STATISTICS = (("overall", "overall"), ("ed", "ED"), ("es", "ES"))


def paired_comparison(
    records, counts, other_dir, split: str, samples: int, seed: int, ci: float, convention: str, allow_missing: bool,
    prediction_dir: Path | None = None,
) -> tuple[dict, list[str]]:
    """Dice(this folder) − Dice(``other_dir``) on ``records`` (the videos this folder was scored on).

    ``counts`` are this folder's (intersection, pred_sum, true_sum) for ``records``. Videos the
    other folder lacks are a UserError, or with ``allow_missing`` are left out of both sides.
    Returns the summary.json block and the log.csv lines.
    """
    from unilvseg.evaluation.traced import listing, traced_counts, traced_predictions

    other_dir = Path(other_dir)
    if not other_dir.is_dir():
        raise UserError(f"--compare {other_dir}: folder does not exist")
    if prediction_dir is not None and other_dir.resolve() == Path(prediction_dir).resolve():
        raise UserError(f"--compare {other_dir}: is --prediction_dir itself")
    kept, predictions, problems = traced_predictions(records, other_dir)
    if problems:
        detail = listing(problems.missing + problems.mismatched)
        if not allow_missing:
            raise UserError(
                f"--compare {other_dir}: {len(problems.missing) + len(problems.mismatched)} of the {len(records)} evaluated "
                f"videos have no usable prediction there ({detail}); the paired comparison needs the same videos "
                "(pass --allow_missing to compare on the videos both folders have)"
            )
    if not kept:
        raise UserError(f"--compare {other_dir}: none of the {len(records)} evaluated videos has a usable prediction there")
    names = [r.file_name for r in records]
    position = {name: i for i, name in enumerate(names)}
    rows = np.array([position[r.file_name] for r in kept])
    ours = tuple(np.asarray(c)[rows] for c in counts)
    theirs = traced_counts(kept, predictions)
    paired = paired_bootstrap_dice(ours, theirs, samples=samples, rng=np.random.default_rng(seed), ci=ci, convention=convention)
    block = {
        "other_prediction_dir": str(other_dir),
        "difference": "this folder minus the other (Dice)",
        "n_videos": len(kept),
        "left_out_videos": [name for name, _ in problems.missing + problems.mismatched],
        **{key: paired[key].as_dict() for key, _ in STATISTICS},
    }
    label = "5th-95th percentiles" if convention == REFERENCE else f"{100 * ci:g}% CI"
    lines = [f"# paired comparison with {other_dir} on the same {len(kept)} videos and resamples ({label}); difference = this - other"]
    for key, name in STATISTICS:
        value = paired[key]
        lines.append(
            f"{split} dice difference ({name}): {value.difference:+.4f} ({value.low:+.4f} - {value.high:+.4f}), "
            f"fraction of resamples <= 0: {value.fraction_not_above_zero:.4f}"
        )
    return block, lines


def seed_comparison(
    data_dir, split: str, dirs_a: list, dirs_b: list, samples: int, seed: int, ci: float, allow_missing: bool,
) -> tuple[dict, list[str]]:
    """Method A (``dirs_a``: one prediction folder per training seed) against method B (``dirs_b``),
    scored on the traced videos every folder has.

    Reports each seed's paired interval (seed k of A against seed k of B, when both have as many
    seeds, as when seed k chose the same labelled videos for both) and the difference of the
    mean-over-seeds Dice with an interval over seeds and videos
    (:func:`unilvseg.evaluation.bootstrap.seed_video_bootstrap_dice`), plus each method's own
    Dice over seeds and videos. Returns the JSON block and the log lines.
    """
    from unilvseg.data.index import load_index
    from unilvseg.evaluation.bootstrap import seed_video_bootstrap_dice
    from unilvseg.evaluation.traced import listing, traced_counts, traced_predictions

    if len(dirs_a) < 1 or len(dirs_b) < 1:
        raise UserError("--seeds needs at least one --prediction_dir and one --compare folder")
    folders = [Path(d) for d in [*dirs_a, *dirs_b]]
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: prediction folder does not exist")
    if len({f.resolve() for f in folders}) < len(folders):
        raise UserError("--seeds: a folder is listed twice (every seed of every method needs its own folder)")
    records = load_index(data_dir, split=split, require_tracings=True).records
    usable = {r.file_name for r in records}
    per_folder = []
    for folder in folders:
        kept, predictions, problems = traced_predictions(records, folder)
        if problems and not allow_missing:
            raise UserError(
                f"{folder}: {len(problems.missing) + len(problems.mismatched)} of the {len(records)} traced {split} videos have "
                f"no usable prediction ({listing(problems.missing + problems.mismatched)}); every seed must be scored on the "
                "same videos (pass --allow_missing to use the videos every folder has)"
            )
        usable &= {r.file_name for r in kept}
        per_folder.append((kept, predictions))
    common = [r for r in records if r.file_name in usable]
    if not common:
        raise UserError(f"--seeds: no traced {split} video has a usable prediction in every folder")

    def counts_of(kept, predictions):
        position = {r.file_name: i for i, r in enumerate(kept)}
        order = [position[r.file_name] for r in common]
        return traced_counts(common, [predictions[i] for i in order])

    stacked = [counts_of(*item) for item in per_folder]
    side_a = tuple(np.stack([c[k] for c in stacked[: len(dirs_a)]]) for k in range(3))
    side_b = tuple(np.stack([c[k] for c in stacked[len(dirs_a):]]) for k in range(3))
    paired_seeds = len(dirs_a) == len(dirs_b)
    difference = seed_video_bootstrap_dice(side_a, side_b, samples=samples, rng=np.random.default_rng(seed), ci=ci)
    own_a = seed_video_bootstrap_dice(side_a, samples=samples, rng=np.random.default_rng(seed), ci=ci)
    own_b = seed_video_bootstrap_dice(side_b, samples=samples, rng=np.random.default_rng(seed), ci=ci)
    per_seed = []
    if paired_seeds:
        for k in range(len(dirs_a)):
            one = paired_bootstrap_dice(tuple(c[k] for c in side_a), tuple(c[k] for c in side_b), samples=samples,
                                        rng=np.random.default_rng(seed), ci=ci)
            per_seed.append({"a": str(dirs_a[k]), "b": str(dirs_b[k]), **{key: one[key].as_dict() for key, _ in STATISTICS}})
    above = sum(1 for s in per_seed if s["overall"]["low"] > 0)
    below = sum(1 for s in per_seed if s["overall"]["high"] < 0)
    block = {
        "difference": "mean over A's seeds minus mean over B's seeds (Dice)",
        "interval": "bootstrap over seeds and videos (seeds paired)" if paired_seeds else "bootstrap over seeds and videos (seeds drawn per side)",
        "n_videos": len(common),
        "seeds_a": [str(d) for d in dirs_a],
        "seeds_b": [str(d) for d in dirs_b],
        **{key: difference[key].as_dict() for key, _ in STATISTICS},
        "a": {key: own_a[key].as_dict() for key, _ in STATISTICS},
        "b": {key: own_b[key].as_dict() for key, _ in STATISTICS},
        "per_seed": per_seed,
        "seeds_interval_above_0": above,
        "seeds_interval_below_0": below,
    }
    lines = [
        f"# {len(dirs_a)} seed(s) of A against {len(dirs_b)} of B on the same {len(common)} {split} videos; "
        f"{100 * ci:g}% intervals over seeds and videos ({block['interval']}); difference = A - B",
        f"{split} dice A (mean over seeds): {own_a['overall'].estimate:.4f} ({own_a['overall'].low:.4f} - {own_a['overall'].high:.4f})",
        f"{split} dice B (mean over seeds): {own_b['overall'].estimate:.4f} ({own_b['overall'].low:.4f} - {own_b['overall'].high:.4f})",
    ]
    for key, name in STATISTICS:
        value = difference[key]
        lines.append(
            f"{split} dice difference ({name}): {value.estimate:+.4f} ({value.low:+.4f} - {value.high:+.4f}), "
            f"fraction of resamples <= 0: {value.fraction_not_above_zero:.4f}"
        )
    if per_seed:
        lines.append(f"# per seed (paired over videos): {above} of {len(per_seed)} intervals above 0, {below} below 0")
        for k, item in enumerate(per_seed):
            value = item["overall"]
            lines.append(f"seed {k}: {value['difference']:+.4f} ({value['low']:+.4f} - {value['high']:+.4f})")
    return block, lines


def _cell(block: dict, fmt: str) -> str:
    estimate, low, high = block["dice"], block["low"], block["high"]
    if fmt == "latex":
        return f"{100 * estimate:.2f} ({100 * low:.2f}--{100 * high:.2f})"
    return f"{100 * estimate:.2f} ({100 * low:.2f}–{100 * high:.2f})"


def paper_table(summaries: list[dict], names: list[str], fmt: str) -> str:
    """A table of Dice (%) with intervals, one row per evaluated folder (summary.json contents)."""
    if fmt not in TABLE_FORMATS:
        raise UserError(f"--table {fmt!r}: expected one of {', '.join(TABLE_FORMATS)}")
    if not summaries:
        raise UserError("--table needs at least one prediction folder")
    first = summaries[0]
    ci = "5th–95th pct." if first["convention"] == REFERENCE else f"{100 * first['ci']:g} % CI"
    header = ["Method", "n", "Dice overall", "Dice ED", "Dice ES"]
    rows = [[name, str(s["n_videos"]), *(_cell(s[key], fmt) for key, _ in STATISTICS)] for name, s in zip(names, summaries)]
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
        lines.append(f"Dice × 100 on the {first['split']} split ({ci}, {first['samples']} bootstrap resamples, seed {first['seed']}).")
        return "\n".join(lines) + "\n"
    escape = lambda text: text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")  # noqa: E731
    lines = [
        r"\begin{tabular}{lrccc}",
        r"\toprule",
        " & ".join(escape(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(escape(c) for c in row) + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
        f"% Dice x 100 on the {first['split']} split ({escape(ci)}, {first['samples']} bootstrap resamples, seed {first['seed']}).",
    ]
    return "\n".join(lines) + "\n"
