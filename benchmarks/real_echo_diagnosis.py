"""Where does the label-free scheme lose the heart's contraction? Per stage, on real echo, with
no tracing and no human-traced frame looked at.

Two references, neither of which a label-free label came from:

* **dense**: the ``ReferenceMasks`` (EchoNet's published DeepLabV3 masks, every frame) of the
  three traced TRAIN videos of ``echonet-real``; label-free training reads no tracing and no
  reference mask, so they are untouched for it. Per stage: the ED and ES area against the
  reference's (at the reference's own beats), the ES/ED area ratio, the mean frame-to-frame area
  change, and the correlation of the area curves.
* **official EF** of every video (FileList, the clinicians' EF): a ventricle with ejection
  fraction EF has an ES/ED *area* ratio of about (1 − EF)^(2/3) (volume grows as area^1.5), so
  each video's label area curve can be checked for contraction without any tracing. Also the
  beat period the curve shows, and how often QC passes ED-like against ES-like frames.

Stages: ``stage1`` (classical labels), ``qc`` (the stage-1 frames QC passes: what early
learning is trained on), and with ``--run_dir`` (a ``train_labelfree.py`` run folder) every
``labels/round<k>`` folder's masks (round 1 and later: the previous network's predictions).
The human-traced VAL/TEST frames are never read.

    python -m benchmarks.real_echo_diagnosis                       # stage 1 and QC, 232 videos
    python -m benchmarks.real_echo_diagnosis --run_dir runs/real_echo/a_labelfree-seed0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import git_commit, load_average, portable_command, portable_path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "echonet-real"
#: Volume grows about as area^1.5 (similar shapes), so an ES/ED volume ratio v is an area ratio v^(2/3).
AREA_EXPONENT = 2.0 / 3.0


def expected_area_ratio(ef_percent: float) -> float:
    """ES/ED area ratio of a ventricle with this ejection fraction, shape kept (V ∝ A^1.5)."""
    return float((1.0 - ef_percent / 100.0) ** AREA_EXPONENT)


def curve_statistics(areas: np.ndarray, fps: float) -> dict:
    """Beats of an area curve (the ``beats`` rule), the median beat's ES/ED ratio, the heart period
    and the mean absolute frame-to-frame change relative to the mean area."""
    from unilvseg.evaluation.volumes import find_beats

    areas = np.asarray(areas, dtype=np.float64)
    search = find_beats(areas, fps)
    ratios = [areas[es] / areas[ed] for ed, es in search.beats if areas[ed] > 0]
    mean_area = float(areas.mean()) if areas.size else float("nan")
    return {
        "beats": len(search.beats),
        "es_ed_ratio": float(np.median(ratios)) if ratios else float("nan"),
        "period_s": float(search.period / fps) if np.isfinite(search.period) else float("nan"),
        "frame_change": float(np.mean(np.abs(np.diff(areas))) / mean_area) if areas.size > 1 and mean_area > 0 else float("nan"),
        "beat_frames": search.beats,
    }


def against_reference(areas: np.ndarray, reference: np.ndarray, fps: float) -> dict:
    """A stage's area curve against a dense reference's, at the reference's own beats."""
    n = min(len(areas), len(reference))
    areas, reference = np.asarray(areas[:n], float), np.asarray(reference[:n], float)
    ref = curve_statistics(reference, fps)
    eds = [ed for ed, _ in ref["beat_frames"]]
    ess = [es for _, es in ref["beat_frames"]]
    if not eds:  # no complete beat in the reference: its extremes
        eds, ess = [int(np.argmax(reference))], [int(np.argmin(reference))]
    pred_ratio = float(np.mean(areas[ess]) / np.mean(areas[eds])) if np.mean(areas[eds]) > 0 else float("nan")
    ref_change = float(np.mean(np.abs(np.diff(reference))))
    return {
        "ed_area_vs_ref": float(np.mean(areas[eds]) / np.mean(reference[eds])),
        "es_area_vs_ref": float(np.mean(areas[ess]) / np.mean(reference[ess])),
        "es_ed_ratio": pred_ratio,
        "es_ed_ratio_ref": float(np.mean(reference[ess]) / np.mean(reference[eds])),
        "frame_change_px": float(np.mean(np.abs(np.diff(areas)))),
        "frame_change_ref_px": ref_change,
        "frame_change_vs_ref": float(np.mean(np.abs(np.diff(areas))) / ref_change) if ref_change > 0 else float("nan"),
        "curve_r": float(np.corrcoef(areas, reference)[0, 1]) if areas.std() > 0 and reference.std() > 0 else float("nan"),
    }


def qc_by_phase(areas: np.ndarray, passed: np.ndarray) -> tuple[float, float]:
    """QC pass rate of the largest-third and the smallest-third frames by label area (ED-like, ES-like)."""
    if len(areas) < 3:
        return float("nan"), float("nan")
    low, high = np.quantile(areas, [1 / 3, 2 / 3])
    big, small = areas >= high, areas <= low
    return float(passed[big].mean()) if big.any() else float("nan"), float(passed[small].mean()) if small.any() else float("nan")


def stage_masks(record, frames, run_dir: Path | None, prediction_dirs: list[Path] = (), segmenters: dict | None = None):
    """{stage: (masks (T, H, W) bool, passed (T,) bool or None)} of one video. ``segmenters``
    ({stage: frames -> masks}) adds networks run here, e.g. the ablations' early stages."""
    from unilvseg.labelfree.pipeline import QCSettings, classical_masks, read_labels

    masks, sector = classical_masks(frames)
    qc = QCSettings().check(masks, sector)
    stages = {"stage1": (masks.astype(bool), None), "qc": (masks.astype(bool), qc.passed)}
    if run_dir is not None:
        for folder in sorted((run_dir / "labels").glob("round*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else -1):
            loaded = read_labels(folder, record.file_name)
            if loaded is not None:
                stages[folder.name] = (loaded[0].astype(bool), loaded[1])
    for folder in prediction_dirs:  # predict.py outputs, e.g. of the final network
        path = folder / "masks" / f"{record.file_name}.npz"
        if path.is_file():
            with np.load(path) as archive:
                stages[f"predicted:{folder.name}"] = (archive["masks"] > 0, None)
    for name, segment in (segmenters or {}).items():
        stages[name] = (segment(frames) == 1, None)
    return stages


def diagnose(
    data_path: Path, run_dir: Path | None, max_videos: int | None, prediction_dirs: list[Path] = (), segmenters: dict | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    from unilvseg.data.index import load_index, reference_masks
    from unilvseg.data.video import read_video
    from unilvseg.evaluation.predict import video_fps

    index = load_index(data_path, require_tracings=False)
    # Only TRAIN videos: the human-traced VAL/TEST videos are kept for the final check.
    records = [r for r in index.records if r.split == "train"]
    if max_videos is not None:
        dense = [r for r in records if (data_path / "ReferenceMasks" / f"{r.file_name}.npz").is_file()]
        records = dense + [r for r in records if r not in dense][: max(0, max_videos - len(dense))]
    video_rows, dense_rows = [], []
    for position, record in enumerate(records):
        frames = read_video(record.path)
        fps = video_fps(record)
        reference = reference_masks(data_path, record.file_name)
        for stage, (masks, passed) in stage_masks(record, frames, run_dir, prediction_dirs, segmenters).items():
            areas = masks.reshape(len(masks), -1).sum(axis=1).astype(np.float64)
            if passed is not None and stage == "qc":
                # What early learning sees: only QC-passed frames carry a label.
                kept = passed.astype(bool)
                areas_for_curve = np.where(kept, areas, np.nan)
                big, small = qc_by_phase(areas, kept)
            else:
                areas_for_curve, big, small = areas, float("nan"), float("nan")
            finite = np.isfinite(areas_for_curve)
            stats = curve_statistics(np.interp(np.arange(len(areas)), np.flatnonzero(finite), areas_for_curve[finite]) if finite.sum() >= 3 else areas, fps)
            row = {
                "FileName": record.file_name, "stage": stage, "frames": len(areas), "fps": fps, "official_ef": record.ef,
                "expected_area_ratio": expected_area_ratio(record.ef) if record.ef is not None else float("nan"),
                "beats": stats["beats"], "es_ed_ratio": stats["es_ed_ratio"], "period_s": stats["period_s"],
                "frame_change": stats["frame_change"], "qc_pass": float(passed.mean()) if passed is not None else float("nan"),
                "qc_pass_ed_like": big, "qc_pass_es_like": small, "dense_reference": reference is not None,
            }
            video_rows.append(row)
            if reference is not None:
                # The qc stage: unpassed frames bridged from their passed neighbours, as for the curve above.
                curve = np.interp(np.arange(len(areas)), np.flatnonzero(finite), areas_for_curve[finite]) if finite.sum() >= 3 else areas
                dense_rows.append({"FileName": record.file_name, "stage": stage, **against_reference(curve, (reference > 0).reshape(len(reference), -1).sum(1), fps)})
        if (position + 1) % 25 == 0:
            print(f"[{position + 1}/{len(records)}] {record.file_name}", file=sys.stderr, flush=True)
    return pd.DataFrame(video_rows), pd.DataFrame(dense_rows)


def summary_table(videos: pd.DataFrame, dense: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for stage, group in videos.groupby("stage", sort=False):
        usable = group[np.isfinite(group["es_ed_ratio"]) & np.isfinite(group["expected_area_ratio"])]
        shortfall = usable["es_ed_ratio"] - usable["expected_area_ratio"]
        d = dense[dense["stage"] == stage]
        rows.append({
            "stage": stage,
            "videos": len(group),
            "videos_with_beats": int((group["beats"] > 0).sum()),
            "es_ed_ratio_median": float(usable["es_ed_ratio"].median()),
            "expected_ratio_median": float(usable["expected_area_ratio"].median()),
            "ratio_minus_expected_median": float(shortfall.median()),
            "ratio_r_with_expected": float(np.corrcoef(usable["es_ed_ratio"], usable["expected_area_ratio"])[0, 1]) if len(usable) > 2 else float("nan"),
            "period_s_median": float(group["period_s"].median()),
            "frame_change_median": float(group["frame_change"].median()),
            "qc_pass_ed_like": float(group["qc_pass_ed_like"].mean()),
            "qc_pass_es_like": float(group["qc_pass_es_like"].mean()),
            "dense_ed_area_vs_ref": float(d["ed_area_vs_ref"].mean()) if len(d) else float("nan"),
            "dense_es_area_vs_ref": float(d["es_area_vs_ref"].mean()) if len(d) else float("nan"),
            "dense_es_ed_ratio": float(d["es_ed_ratio"].mean()) if len(d) else float("nan"),
            "dense_es_ed_ratio_ref": float(d["es_ed_ratio_ref"].mean()) if len(d) else float("nan"),
            "dense_frame_change_vs_ref": float(d["frame_change_vs_ref"].mean()) if len(d) else float("nan"),
            "dense_curve_r": float(d["curve_r"].mean()) if len(d) else float("nan"),
        })
    return pd.DataFrame(rows)


def markdown(summary: pd.DataFrame, dense: pd.DataFrame, meta: dict) -> str:
    f = lambda v, d=3: "–" if not np.isfinite(v) else f"{v:.{d}f}"  # noqa: E731
    lines = [
        "# Real echo: where the contraction goes (label-free stages)",
        "",
        f"Command: `{meta['command']}` at commit {meta['commit']}{' (uncommitted changes)' if meta['dirty'] else ''}; "
        f"{meta['date']}, {meta['seconds']:.0f} s, load average {meta['load']}.",
        f"Data: `{meta['data']}`, TRAIN videos only ({meta['videos']}; {meta['dense']} of them with dense reference masks). "
        "The human-traced VAL/TEST frames were not read.",
        "",
        "## Over every TRAIN video (no tracing used)",
        "",
        "Expected ES/ED area ratio from the official EF: (1 − EF)^(2/3). A label that contracts like the heart has a ratio near it; "
        "ratio − expected > 0 means the label shrinks too little at ES.",
        "",
        "| stage | videos (with beats) | ES/ED area, median | expected, median | ratio − expected, median | r with expected | period s, median | frame-to-frame change / mean area | QC pass ED-like / ES-like |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"| {r.stage} | {r.videos} ({r.videos_with_beats}) | {f(r.es_ed_ratio_median)} | {f(r.expected_ratio_median)} | "
            f"{f(r.ratio_minus_expected_median, 3)} | {f(r.ratio_r_with_expected, 2)} | {f(r.period_s_median, 2)} | "
            f"{f(r.frame_change_median)} | {f(r.qc_pass_ed_like, 2)} / {f(r.qc_pass_es_like, 2)} |"
        )
    lines += [
        "",
        f"## Against the dense references ({meta['dense']} TRAIN videos, every frame; at the reference's own beats)",
        "",
        "| stage | ED area / ref | ES area / ref | ES/ED ratio | ref ES/ED ratio | frame-to-frame change / ref | area-curve r |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"| {r.stage} | {f(r.dense_ed_area_vs_ref)} | {f(r.dense_es_area_vs_ref)} | {f(r.dense_es_ed_ratio)} | "
            f"{f(r.dense_es_ed_ratio_ref)} | {f(r.dense_frame_change_vs_ref, 2)} | {f(r.dense_curve_r, 2)} |"
        )
    lines += ["", "Per video: `real_echo_diagnosis-videos.csv`, `real_echo_diagnosis-dense.csv`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from unilvseg.io import write_csv, write_text

    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_echo_diagnosis", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_path", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--run_dir", type=Path, default=None, help="a train_labelfree.py run folder: its label rounds are measured too")
    parser.add_argument("--prediction_dir", type=Path, nargs="*", default=[],
                        help="predict.py output folders (masks/<FileName>.npz) measured as further stages, e.g. of the final network")
    parser.add_argument("--max_videos", type=int, default=None, help="TRAIN videos to measure (dense-reference ones first; default all)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if not args.data_path.is_dir():
        print(f"error: --data_path {args.data_path}: folder does not exist", file=sys.stderr)
        return 2
    started = time.perf_counter()
    videos, dense = diagnose(args.data_path, args.run_dir, args.max_videos, args.prediction_dir)
    summary = summary_table(videos, dense)
    commit = git_commit()
    meta = {
        "command": portable_command("benchmarks.real_echo_diagnosis", list(sys.argv[1:] if argv is None else argv)),
        "commit": commit["commit"], "dirty": commit["dirty"], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": time.perf_counter() - started, "load": load_average(), "data": portable_path(args.data_path),
        "videos": videos["FileName"].nunique(), "dense": dense["FileName"].nunique() if len(dense) else 0,
    }
    results = args.results_dir
    write_csv(videos, results / "real_echo_diagnosis-videos.csv", float_format="%.5g")
    write_csv(dense, results / "real_echo_diagnosis-dense.csv", float_format="%.5g")
    write_csv(summary, results / "real_echo_diagnosis.csv", float_format="%.5g")
    text = markdown(summary, dense, meta)
    write_text(text, results / "real_echo_diagnosis.md")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
