"""Core of ``evaluate_bootstrap.py``: Dice (and EF) of a prediction folder against the tracings,
with bootstrap confidence intervals.

Prediction folder (written by ``predict.py``)::

    P/masks/<FileName>.npz            key "masks": uint8 (frames, H, W), LV = 1
    P/<FileName>_<frame>_<ED|ES>.png  0/255 masks of the traced frames
    P/size.csv                        FileName,Frame,Area,Traced (not needed here)
    P/volumes.csv                     FileName,EDV,ESV,EF,EDFrame,ESFrame
    P/biplane.csv                     per heart (optional): Heart,FileName_A4C,FileName_A2C,EF,EF_A4C,Method,...

For each traced frame the PNG is preferred; without it the frame is taken from the npz
(``unilvseg.evaluation.traced``).
Outputs in ``O``: ``<split>_dice.csv`` (per video), ``log.csv`` (human-readable lines as
EchoNet-Dynamic writes them), ``summary.json``, optionally ``<split>_all_frames.csv`` and plots.
With a ``biplane.csv`` (predict.py on a folder pairing A4C and A2C videos), also the biplane EF
agreement per heart beside the single-plane A4C one (``<split>_ef_biplane.csv``, ``ef_biplane``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from unilvseg.errors import DataError, UserError
from unilvseg.evaluation.bootstrap import (
    CONVENTION_DESCRIPTIONS,
    REFERENCE,
    REFERENCE_QUANTILES,
    VIDEO,
    bootstrap_dice,
)
from unilvseg.evaluation.metrics import dice_counts, dice_from_counts, pooled_dice
from unilvseg.evaluation.traced import listing, load_npz_masks, traced_counts, traced_predictions
from unilvseg.io import write_csv, write_json, write_text

log = logging.getLogger("unilvseg")

VOLUME_COLUMNS = ("FileName", "EF")


def _read_volumes(prediction_dir: Path) -> pd.DataFrame | None:
    path = prediction_dir / "volumes.csv"
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype={"FileName": str})
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot parse CSV ({error})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in VOLUME_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} missing (header: {','.join(table.columns)})")
    table["FileName"] = table["FileName"].astype(str).str.strip().str.replace(r"\.avi$", "", regex=True, case=False)
    table["EF"] = pd.to_numeric(table["EF"], errors="coerce")
    return table.drop_duplicates("FileName", keep="last").set_index("FileName")


def _all_frames(records, data_dir: Path, prediction_dir: Path) -> tuple[dict, pd.DataFrame] | None:
    """Every-frame Dice and temporal consistency against ``ReferenceMasks/`` (None if absent)."""
    reference_dir = data_dir / "ReferenceMasks"
    if not reference_dir.is_dir():
        return None
    rows = []
    skipped = {"no_reference": 0, "no_prediction_masks": 0, "size_mismatch": 0}
    frame_count_mismatch = 0
    for record in records:
        reference_path = reference_dir / f"{record.file_name}.npz"
        prediction_path = prediction_dir / "masks" / f"{record.file_name}.npz"
        if not reference_path.is_file():
            skipped["no_reference"] += 1
            continue
        if not prediction_path.is_file():
            skipped["no_prediction_masks"] += 1
            continue
        reference = load_npz_masks(reference_path)
        predicted = load_npz_masks(prediction_path)
        if reference.ndim != 3 or predicted.ndim != 3 or reference.shape[1:] != predicted.shape[1:]:
            skipped["size_mismatch"] += 1
            log.warning("%s: reference masks %s and predicted masks %s differ in size; skipped", record.file_name, reference.shape, predicted.shape)
            continue
        frames = min(len(reference), len(predicted))
        if len(reference) != len(predicted):
            # Decoders disagree by a frame or two on some videos; compare the common frames.
            frame_count_mismatch += 1
        inter, pred_sum, true_sum = dice_counts(predicted[:frames], reference[:frames])
        rows.append(
            {
                "FileName": record.file_name,
                "Frames": frames,
                "Intersection": int(inter.sum()),
                "PredArea": int(pred_sum.sum()),
                "TrueArea": int(true_sum.sum()),
                "Dice": pooled_dice(inter, pred_sum, true_sum),
                "PredAbsAreaChange": float(np.abs(np.diff(pred_sum)).sum()),
                "RefAbsAreaChange": float(np.abs(np.diff(true_sum)).sum()),
                "Transitions": max(frames - 1, 0),
            }
        )
    if not rows:
        return None
    table = pd.DataFrame(rows)
    transitions = max(int(table["Transitions"].sum()), 1)
    predicted_change = float(table["PredAbsAreaChange"].sum()) / transitions
    reference_change = float(table["RefAbsAreaChange"].sum()) / transitions
    summary = {
        "n_videos": len(table),
        "n_frames": int(table["Frames"].sum()),
        "dice": pooled_dice(table["Intersection"], table["PredArea"], table["TrueArea"]),
        # Mean |area[t+1] - area[t]| in pixels, pooled over every frame transition of every video.
        "pred_mean_abs_area_change": predicted_change,
        "ref_mean_abs_area_change": reference_change,
        "area_change_difference": predicted_change - reference_change,
        "skipped": skipped,
        "frame_count_mismatch": frame_count_mismatch,
    }
    return summary, table


def _every_structure(records, data_dir: Path, prediction_dir: Path, samples: int, rng, ci: float):
    """Dice of every structure of a multi-structure prediction (``labels`` in its masks files)
    against the data set's reference label maps: over every frame, and at each video's ED and ES
    frames, pooled over videos with bootstrap intervals over videos. None when either side has
    no label maps."""
    from unilvseg.data.structures import STRUCTURES, reference_labels
    from unilvseg.evaluation.bootstrap import percentile_interval, resampled_sums

    rows = []
    for record in records:
        path = prediction_dir / "masks" / f"{record.file_name}.npz"
        reference = reference_labels(data_dir, record.file_name)
        if reference is None or not path.is_file():
            continue
        with np.load(path) as stored:
            if "labels" not in stored.files:
                continue
            predicted = stored["labels"]
        truth, names = reference
        if predicted.shape[1:] != truth.shape[1:]:
            continue
        n = min(len(predicted), len(truth))
        for name, code in STRUCTURES.items():
            if names.get(name) != code or not (predicted == code).any() and not (truth[:n] == code).any():
                continue
            p, t = predicted[:n] == code, truth[:n] == code
            row = {"FileName": record.file_name, "structure": name, "frames": n,
                   "intersection": int((p & t).sum()), "pred_area": int(p.sum()), "true_area": int(t.sum())}
            for phase, frame in (("ed", record.ed_frame), ("es", record.es_frame)):
                if frame is not None and frame < n:
                    row[f"intersection_{phase}"] = int((p[frame] & t[frame]).sum())
                    row[f"pred_area_{phase}"], row[f"true_area_{phase}"] = int(p[frame].sum()), int(t[frame].sum())
            rows.append(row)
    if not rows:
        return None
    table = pd.DataFrame(rows)
    block = {"n_videos": int(table["FileName"].nunique()), "dice": {}}
    for name, group in table.groupby("structure", sort=False):
        scores = {}
        for part, suffix in (("all_frames", ""), ("ed", "_ed"), ("es", "_es")):
            columns = [f"intersection{suffix}", f"pred_area{suffix}", f"true_area{suffix}"]
            if not set(columns) <= set(group.columns):
                continue
            counts = group[columns].dropna().to_numpy(np.float64)
            if not len(counts) or counts[:, 1:].sum() == 0:
                continue
            per_video = np.stack([2 * counts[:, 0], counts[:, 1] + counts[:, 2]], axis=1)
            sums = resampled_sums(per_video, samples, rng)
            with np.errstate(invalid="ignore", divide="ignore"):
                stats = sums[:, 0] / sums[:, 1]
            defined = stats[np.isfinite(stats)]
            low, high = percentile_interval(defined, ci) if len(defined) else (np.nan, np.nan)
            # A resample can draw only videos without the structure (no area): counted, not hidden.
            scores[part] = {"dice": float(per_video[:, 0].sum() / per_video[:, 1].sum()), "low": float(low), "high": float(high),
                            "n_videos": int(len(counts)), "undefined_resamples": int(len(stats) - len(defined))}
        block["dice"][name] = scores
    return block, table


def _check_options(samples: int, ci: float | None, reference: bool) -> float:
    if samples < 1:
        raise UserError(f"--samples {samples}: must be at least 1")
    if reference:
        if ci is not None and not math.isclose(ci, 0.95):
            raise UserError(
                f"--ci {ci} cannot be combined with --reference: the published convention is fixed "
                "(5th and 95th percentiles, labelled '95% CI')"
            )
        return 0.95
    ci = 0.95 if ci is None else float(ci)
    if not 0.0 < ci < 1.0:
        raise UserError(f"--ci {ci}: must be strictly between 0 and 1 (e.g. 0.95)")
    return ci


def evaluate_predictions(
    data_dir: str | Path,
    prediction_dir: str | Path,
    output_dir: str | Path,
    split: str = "test",
    samples: int = 10_000,
    ci: float | None = None,
    seed: int = 0,
    reference: bool = False,
    plots: bool = False,
    allow_missing: bool = False,
    compare: str | Path | None = None,
    view: str | None = None,
) -> dict:
    """Evaluate ``prediction_dir`` against ``data_dir`` tracings, write the outputs and return the
    summary (the content of summary.json plus ``log_lines``, the lines written to log.csv).

    ``ci=None`` means 0.95; with ``reference=True`` the published EchoNet-Dynamic convention is
    used and any other ``ci`` is a UserError. Missing or wrongly sized predictions are a
    UserError listing the videos unless ``allow_missing``, which skips and counts them.
    ``compare`` (another prediction folder) adds the paired Dice difference (this − that) under
    ``"compare"`` (see unilvseg.evaluation.compare).

    ``view`` (a4c, a2c, sax; FileList's View column, blank or absent = a4c) scores only the
    videos of that view: a view's predictions in a folder of several views. Then every video of
    the view needs a masks file (missing ones as above), the traced-frame Dice covers its traced
    videos, and the label-map Dice (``structures``), every-frame Dice and EF cover all of them,
    traced or not. A view without tracings (SAX) has no traced-frame Dice (no ``overall``,
    ``ed``, ``es`` in the summary) and no EF (the method of disks needs a long axis).
    """
    from unilvseg.data.index import VIEWS, load_index, only_view

    data_dir, prediction_dir, output_dir = Path(data_dir), Path(prediction_dir), Path(output_dir)
    ci = _check_options(samples, ci, reference)
    convention = REFERENCE if reference else VIDEO
    if not data_dir.is_dir():
        raise UserError(f"--data_dir {data_dir}: folder does not exist (expected an EchoNet-Dynamic folder)")
    if not prediction_dir.is_dir():
        raise UserError(f"--prediction_dir {prediction_dir}: folder does not exist (run predict.py first)")
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output_dir {output_dir}: exists and is not a folder")
    if view is not None and view not in VIEWS:
        raise UserError(f"--view {view!r}: expected one of {', '.join(VIEWS)}")
    if view is None:
        index = load_index(data_dir, split=split, require_tracings=True)
        traced, untraced = index.records, []
    else:
        index = only_view(load_index(data_dir, split=split, require_tracings=False), view)
        traced = [r for r in index.records if r.traced]
        untraced = [r for r in index.records if not r.traced]
    scope = f"traced {split} videos" if view is None else f"{split} videos of view {view.upper()}"

    kept, predictions, problems = traced_predictions(traced, prediction_dir)
    # A view's untraced videos (every SAX) are scored on their label maps: each needs its masks file.
    scored_untraced = [r for r in untraced if (prediction_dir / "masks" / f"{r.file_name}.npz").is_file()]
    unscored = {r.file_name for r in untraced} - {r.file_name for r in scored_untraced}
    problems.missing += [(r.file_name, f"no masks/{r.file_name}.npz") for r in untraced if r.file_name in unscored]
    if problems and not allow_missing:
        parts = []
        if problems.missing:
            parts.append(f"{len(problems.missing)} video(s) have no prediction for a traced frame: {listing(problems.missing)}"
                         if view is None else f"{len(problems.missing)} video(s) have no prediction: {listing(problems.missing)}")
        if problems.mismatched:
            parts.append(f"{len(problems.mismatched)} video(s) have predictions of the wrong size: {listing(problems.mismatched)}")
        raise UserError(
            f"{prediction_dir}: " + "; ".join(parts)
            + f" (of {len(index.records)} {scope}; rerun predict.py, or pass --allow_missing to skip them)"
        )
    if not kept and not scored_untraced:
        raise UserError(f"{prediction_dir}: none of the {len(index.records)} {scope} has usable predictions")
    if compare is not None and not kept:
        raise UserError(f"--compare pairs the traced-frame Dice, and no {scope} is traced")
    for kind, items in (("missing prediction", problems.missing), ("size mismatch", problems.mismatched)):
        if items:
            log.warning("skipping %d video(s) (%s): %s", len(items), kind, listing(items))
    # Every scored video (the label maps, every frame, EF): the traced ones, and with a view its untraced ones too.
    names = {r.file_name for r in kept + scored_untraced}
    scored = kept if view is None else [r for r in index.records if r.file_name in names]
    rng = np.random.default_rng(seed)
    dice_table, intervals = None, None
    if kept:
        inter, pred_sum, true_sum = traced_counts(kept, predictions)
        dice_table = pd.DataFrame(
            {
                "FileName": [r.file_name for r in kept],
                "DiceED": dice_from_counts(inter[:, 0], pred_sum[:, 0], true_sum[:, 0]),
                "DiceES": dice_from_counts(inter[:, 1], pred_sum[:, 1], true_sum[:, 1]),
                "DiceOverall": dice_from_counts(inter.sum(1), pred_sum.sum(1), true_sum.sum(1)),
                "EDFrame": [r.ed_frame for r in kept],
                "ESFrame": [r.es_frame for r in kept],
                "IntersectionED": inter[:, 0],
                "PredAreaED": pred_sum[:, 0],
                "TrueAreaED": true_sum[:, 0],
                "IntersectionES": inter[:, 1],
                "PredAreaES": pred_sum[:, 1],
                "TrueAreaES": true_sum[:, 1],
            }
        )
        write_csv(dice_table, output_dir / f"{split}_dice.csv")
        intervals = bootstrap_dice(inter, pred_sum, true_sum, samples=samples, rng=rng, ci=ci, convention=convention)
    quantiles = REFERENCE_QUANTILES if reference else ((1 - ci) / 2, (1 + ci) / 2)
    percentiles = [round(100 * q, 10) for q in quantiles]  # 2.5, not 2.500000000000002
    summary: dict = {
        "split": split,
        **({} if view is None else {"view": view, "n_untraced": len(scored_untraced)}),
        "n_videos": len(kept),
        "samples": samples,
        "ci": ci,
        "percentiles": percentiles,
        "seed": seed,
        "convention": convention,
        "convention_description": CONVENTION_DESCRIPTIONS[convention],
        **({} if intervals is None else {key: intervals[key].as_dict("dice") for key in ("overall", "ed", "es")}),
        "skipped": {"missing_prediction": len(problems.missing), "size_mismatch": len(problems.mismatched)},
        "skipped_videos": [name for name, _ in problems.missing + problems.mismatched],
        "dataset_skipped": {reason: len(names) for reason, names in index.skipped.items() if names},
    }
    label = "95% CI (5th-95th percentiles, published convention)" if reference else f"{100 * ci:g}% CI"
    lines = [
        f"# {split}" + ("" if view is None else f" (view {view.upper()})") + f": {len(kept)} videos, {samples} bootstrap resamples, "
        f"seed {seed}, intervals = {label}",
        f"# convention {convention}: {CONVENTION_DESCRIPTIONS[convention]}",
    ]
    if view is not None and scored_untraced:
        lines.append(f"# {len(scored_untraced)} untraced {view.upper()} video(s): label maps and every frame" + ("" if view == "sax" else ", EF") + " only")
    for key, name in (("overall", "overall"), ("ed", "ED"), ("es", "ES")):
        if intervals is not None:
            interval = intervals[key]
            lines.append(f"{split} dice ({name}): {interval.estimate:.4f} ({interval.low:.4f} - {interval.high:.4f})")

    ef_pairs = None
    ef_block = None if view == "sax" else _ef_every_video(data_dir, split, prediction_dir, output_dir, samples, rng, ci, convention, label, view)
    if ef_block is not None:
        ef_lines, ef_summary, ef_pairs = ef_block
        lines += ef_lines
        if ef_summary is not None:
            summary["ef"] = ef_summary

    biplane = _ef_biplane(data_dir, split, prediction_dir, output_dir, samples, seed, ci, convention, label)
    if biplane is not None:
        biplane_lines, biplane_summary = biplane
        lines += biplane_lines
        if biplane_summary is not None:
            summary["ef_biplane"] = biplane_summary

    all_frames = _all_frames(scored, data_dir, prediction_dir)
    if all_frames is not None:
        block, frames_table = all_frames
        summary["all_frames"] = block
        write_csv(frames_table, output_dir / f"{split}_all_frames.csv")
        lines.append(f"{split} dice (all frames vs ReferenceMasks): {block['dice']:.4f}, {block['n_videos']} videos, {block['n_frames']} frames")
        lines.append(
            f"{split} mean |frame-to-frame area change| (px): predicted {block['pred_mean_abs_area_change']:.2f}, "
            f"reference {block['ref_mean_abs_area_change']:.2f}, difference {block['area_change_difference']:+.2f}"
        )

    structures = _every_structure(scored, data_dir, prediction_dir, samples, rng, ci)
    if structures is not None:
        block, structures_table = structures
        summary["structures"] = block
        write_csv(structures_table, output_dir / f"{split}_structures.csv")
        lines.append(f"# every structure against the ReferenceMasks label maps ({block['n_videos']} videos; {label})")
        for name, scores in block["dice"].items():
            cells = [f"{part} {scores[part]['dice']:.4f} ({scores[part]['low']:.4f} - {scores[part]['high']:.4f})"
                     for part in ("all_frames", "ed", "es") if part in scores]
            lines.append(f"{split} dice {name}: " + ", ".join(cells))

    for kind, items in (("missing prediction", problems.missing), ("size mismatch", problems.mismatched)):
        if items:
            lines.append(f"skipped {len(items)} video(s) ({kind}, --allow_missing): {listing(items)}")

    if plots:
        from unilvseg.evaluation.plots import dice_histograms, ef_scatter

        written = [dice_histograms(dice_table, output_dir / f"{split}_dice_histogram.png", split)] if kept else []
        if ef_pairs is not None:
            written.append(ef_scatter(*ef_pairs, output_dir / f"{split}_ef_scatter.png", split, mae=summary["ef"]["mae"]))
            written.append(_ef_bland_altman(ef_pairs, output_dir / f"{split}_ef_bland_altman.png", split))
        summary["plots"] = [p.name for p in written]

    if compare is not None:  # paired comparison with another model's folder (unilvseg.evaluation.compare)
        from unilvseg.evaluation.compare import paired_comparison

        summary["compare"], compare_lines = paired_comparison(
            kept, (inter, pred_sum, true_sum), compare, split, samples, seed, ci, convention, allow_missing, prediction_dir
        )
        lines += compare_lines

    write_text("\n".join(lines) + "\n", output_dir / "log.csv")
    write_json(_json_safe(summary), output_dir / "summary.json")
    # Returned for the CLI to print; not part of summary.json.
    summary["log_lines"] = lines
    return summary


def _ef_every_video(data_dir, split, prediction_dir, output_dir, samples, rng, ci, convention, label, view=None):
    """EF agreement on every predicted video of the split (of ``view`` when given) that has a
    FileList EF, traced or not.

    The predicted EF is volumes.csv's (predict.py's ``--ed_es_rule``). Writes
    ``<split>_ef.csv`` (one row per video) and returns (log lines, the summary.json block, the
    (reference, predicted) pairs for the scatter plot), or None without volumes.csv.
    """
    from unilvseg.data.index import load_index
    from unilvseg.evaluation.ef_agreement import agreement_table_lines, ef_agreement_intervals

    volumes = _read_volumes(prediction_dir)
    if volumes is None:
        return None
    records = load_index(data_dir, split=split, require_tracings=False).records
    if view is not None:
        records = [r for r in records if r.view == view]
    table = pd.DataFrame(
        {
            "FileName": [r.file_name for r in records],
            "Traced": [r.traced for r in records],
            "ReferenceEF": [np.nan if r.ef is None else r.ef for r in records],
        }
    )
    table["PredictedEF"] = volumes["EF"].reindex(table["FileName"]).to_numpy(np.float64)
    for column in ("EFRule", "Beats", "EFSD"):
        if column in volumes.columns:
            table[column] = volumes[column].reindex(table["FileName"]).to_numpy()
    table["Error"] = table["PredictedEF"] - table["ReferenceEF"]
    predicted = table["FileName"].isin(volumes.index)
    usable = np.isfinite(table["ReferenceEF"]) & np.isfinite(table["PredictedEF"])
    write_csv(table[predicted], output_dir / f"{split}_ef.csv")
    if not usable.any():
        return [f"{split} ef: no predicted video of the split has both a finite EF in volumes.csv and a FileList EF"], None, None
    scored = table[usable]
    agreement = ef_agreement_intervals(
        scored["PredictedEF"], scored["ReferenceEF"], samples=samples, rng=rng, ci=ci, convention=convention
    )
    missing = int((predicted & ~usable).sum())
    block = {
        "scope": "every predicted video of the split with a FileList EF, traced or not",
        "source": "volumes.csv EF (predict.py --ed_es_rule) vs FileList.csv EF",
        **agreement,
        # Names kept from before: mae with its interval as low/high, n_videos, n_missing.
        "low": agreement["mae_low"],
        "high": agreement["mae_high"],
        "n_videos": int(usable.sum()),
        "n_traced": int(scored["Traced"].sum()),
        "n_missing": missing,
    }
    if "EFRule" in scored.columns:
        block["rules"] = {str(k): int(v) for k, v in scored["EFRule"].fillna("unknown").value_counts().items()}
    lines = [
        f"# EF: volumes.csv vs FileList EF on every predicted {split} video with a reference EF "
        f"({block['n_videos']} videos, {block['n_traced']} of them traced)",
        f"{split} ef mae: {agreement['mae']:.2f} ({agreement['mae_low']:.2f} - {agreement['mae_high']:.2f}), "
        f"bias {agreement['bias']:+.2f} ({agreement['bias_low']:+.2f} - {agreement['bias_high']:+.2f}), "
        f"r {agreement['r']:.3f} ({agreement['r_low']:.3f} - {agreement['r_high']:.3f}), "
        f"R2 (1 - SS_res/SS_tot) {agreement['r2']:.3f}, Pearson r2 {agreement['pearson_r2']:.3f}, "
        f"rmse {agreement['rmse']:.2f}, n={block['n_videos']}" + (f" ({missing} predicted without EF)" if missing else ""),
        *agreement_table_lines(agreement, label),
    ]
    return lines, block, (scored["ReferenceEF"].to_numpy(), scored["PredictedEF"].to_numpy())


def _ef_biplane(data_dir, split, prediction_dir, output_dir, samples, seed, ci, convention, label):
    """Biplane EF agreement (predict.py's ``biplane.csv``, one row per heart) on the hearts of the
    split with a FileList EF, and the single-plane A4C EF of the same hearts beside it.

    The reference is the FileList EF of the heart's A4C video (of its A2C where the A4C has none).
    Both agreements use the same bootstrap resamples (a generator seeded with ``seed``, apart from
    the one of the other blocks, which are therefore the same with or without biplane.csv). Writes
    ``<split>_ef_biplane.csv`` and returns (log lines, the summary.json block), or None without
    biplane.csv.
    """
    from unilvseg.data.index import load_index
    from unilvseg.evaluation.ef_agreement import agreement_table_lines, ef_agreement_intervals

    path = prediction_dir / "biplane.csv"
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype={"Heart": str, "FileName_A4C": str, "FileName_A2C": str, "Method": str}, keep_default_na=False,
                            na_values={c: ["", "nan", "NaN"] for c in ("EF", "EF_A4C")})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot parse CSV ({error})") from None
    missing = [c for c in ("Heart", "FileName_A4C", "FileName_A2C", "EF", "EF_A4C", "Method") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} missing (header: {','.join(table.columns)})")
    efs = {r.file_name: r.ef for r in load_index(data_dir, split=split, require_tracings=False).records}
    table = table[table["FileName_A4C"].isin(efs) | table["FileName_A2C"].isin(efs)].copy()
    reference = [efs.get(a4c) if efs.get(a4c) is not None else efs.get(a2c) for a4c, a2c in zip(table["FileName_A4C"], table["FileName_A2C"])]
    scores = pd.DataFrame({
        "Heart": table["Heart"], "FileName_A4C": table["FileName_A4C"], "FileName_A2C": table["FileName_A2C"],
        "ReferenceEF": np.array([np.nan if v is None else v for v in reference], dtype=np.float64),
        "BiplaneEF": pd.to_numeric(table["EF"], errors="coerce"), "SinglePlaneEF": pd.to_numeric(table["EF_A4C"], errors="coerce"),
        "Method": table["Method"],
    })
    scores["BiplaneError"] = scores["BiplaneEF"] - scores["ReferenceEF"]
    scores["SinglePlaneError"] = scores["SinglePlaneEF"] - scores["ReferenceEF"]
    write_csv(scores, output_dir / f"{split}_ef_biplane.csv")
    usable = np.isfinite(scores[["ReferenceEF", "BiplaneEF", "SinglePlaneEF"]]).all(axis=1)
    if not usable.any():
        return [f"{split} ef biplane: no heart of the split in biplane.csv has a finite biplane and A4C EF and a FileList EF"], None
    scored = scores[usable]
    agreement = {
        name: ef_agreement_intervals(scored[column], scored["ReferenceEF"], samples=samples, rng=np.random.default_rng(seed), ci=ci,
                                     convention=convention)
        for name, column in (("biplane", "BiplaneEF"), ("single_plane_a4c", "SinglePlaneEF"))
    }
    fallback = int((scored["Method"] != "biplane").sum())
    block = {
        "scope": "every heart of the split in biplane.csv with a FileList EF",
        "source": "biplane.csv EF (and EF_A4C, the A4C video's volumes.csv EF) vs the A4C video's FileList EF",
        "n_hearts": int(usable.sum()),
        "n_fallback": fallback,
        "n_missing": int((~usable).sum()),
        "methods": {str(k): int(v) for k, v in scored["Method"].value_counts().items()},
        **agreement,
    }
    lines = [f"# EF biplane: biplane.csv vs FileList EF on {block['n_hearts']} {split} heart(s) with A4C and A2C predicted"
             + (f" ({fallback} single-plane fallback)" if fallback else "") + "; the A4C alone on the same hearts beside it"]
    for name, title in (("biplane", "biplane"), ("single_plane_a4c", "single-plane A4C")):
        a = agreement[name]
        lines.append(
            f"{split} ef {title} mae: {a['mae']:.2f} ({a['mae_low']:.2f} - {a['mae_high']:.2f}), "
            f"bias {a['bias']:+.2f} ({a['bias_low']:+.2f} - {a['bias_high']:+.2f}), "
            f"r {a['r']:.3f} ({a['r_low']:.3f} - {a['r_high']:.3f}), n={a['n']}"
        )
    lines += agreement_table_lines(agreement["biplane"], label)
    return lines, block


def _ef_bland_altman(ef_pairs, path, split):
    from unilvseg.evaluation.plots import bland_altman

    return bland_altman([(f"{split} EF", *ef_pairs)], path, title="EF from predicted masks vs FileList EF")


def _json_safe(value):
    """NaN/inf -> null so summary.json stays strict JSON (e.g. R² of a constant reference EF)."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value
