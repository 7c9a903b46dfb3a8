"""Predictions at the traced frames (ED, ES) of a prediction folder, and their pixel counts
against the tracings: what ``evaluate_bootstrap.py`` scores and ``--compare`` pairs.

For each traced frame the PNG ``<FileName>_<frame>_<ED|ES>.png`` is preferred; without it the
frame is taken from ``masks/<FileName>.npz``. Videos without a usable prediction are collected
(``PredictionProblems``), not silently dropped.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unilvseg.errors import DataError
from unilvseg.evaluation.metrics import dice_counts

PHASES = ("ED", "ES")
LISTED = 5  # videos named in an error message before "... and N more"


@dataclass
class PredictionProblems:
    missing: list[tuple[str, str]] = field(default_factory=list)
    mismatched: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.mismatched)


def listing(items: list[tuple[str, str]]) -> str:
    shown = "; ".join(f"{name} ({detail})" for name, detail in items[:LISTED])
    return shown + (f"; ... and {len(items) - LISTED} more" if len(items) > LISTED else "")


def load_npz_masks(path: Path) -> np.ndarray:
    """The ``masks`` array of an npz file; DataError naming the file if it is unreadable."""
    try:
        with np.load(path) as archive:
            files = archive.files
            masks = archive["masks"] if "masks" in files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        # A truncated or foreign file (e.g. a killed writer outside unilvseg.io).
        raise DataError(f"{path}: cannot read npz ({type(error).__name__}: {error})") from None
    if masks is None:
        raise DataError(f"{path}: no 'masks' array (found {', '.join(files) or 'nothing'})")
    return masks


def _read_png_mask(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: cannot read PNG")
    if image.ndim == 3:
        image = image[..., 0]
    # predict.py writes 0/255; the midpoint threshold also accepts 0/1 or lightly resampled masks.
    return (image > (127 if image.max() > 1 else 0)).astype(np.uint8)


def _traced_prediction(record, prediction_dir: Path) -> np.ndarray:
    """Predicted masks ``(2, H, W)`` (ED, ES) of one video; raises ``SkippedVideo`` with a reason."""
    frames = {"ED": record.ed_frame, "ES": record.es_frame}
    npz_path = prediction_dir / "masks" / f"{record.file_name}.npz"
    video_masks = None
    masks = []
    for phase in PHASES:
        png = prediction_dir / f"{record.file_name}_{frames[phase]}_{phase}.png"
        if png.is_file():
            try:
                mask = _read_png_mask(png)
            except DataError as error:
                raise SkippedVideo("missing", str(error)) from None
            source = png.name
        else:
            if video_masks is None:
                if not npz_path.is_file():
                    raise SkippedVideo("missing", f"no {png.name} and no masks/{npz_path.name}")
                try:
                    video_masks = load_npz_masks(npz_path)
                except DataError as error:
                    raise SkippedVideo("missing", str(error)) from None
            if video_masks.ndim != 3:
                raise SkippedVideo("mismatched", f"masks/{npz_path.name} has shape {video_masks.shape}, expected (frames, H, W)")
            if frames[phase] >= len(video_masks):
                raise SkippedVideo(
                    "mismatched",
                    f"masks/{npz_path.name} has {len(video_masks)} frames; traced {phase} frame is {frames[phase]}",
                )
            mask = video_masks[frames[phase]]
            source = f"masks/{npz_path.name}"
        if mask.shape != (record.height, record.width):
            raise SkippedVideo(
                "mismatched",
                f"{source} is {mask.shape[0]}x{mask.shape[1]}, video is {record.height}x{record.width}",
            )
        masks.append(mask)
    return np.stack(masks)


def traced_predictions(records, prediction_dir: Path) -> tuple[list, list[np.ndarray], PredictionProblems]:
    """(records with usable predictions, their (2, H, W) ED/ES masks, what was missing or mismatched)."""
    problems = PredictionProblems()
    kept, predictions = [], []
    for record in records:
        try:
            predictions.append(_traced_prediction(record, prediction_dir))
        except SkippedVideo as skip:
            (problems.missing if skip.kind == "missing" else problems.mismatched).append((record.file_name, skip.detail))
            continue
        kept.append(record)
    return kept, predictions, problems


def traced_counts(records, predictions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-video (intersection, |pred|, |true|) pixel counts, each (n_videos, 2) for ED, ES."""
    from unilvseg.data.tracings import tracing_mask

    # The masks differ in size between videos only in unusual datasets: one video at a time.
    inter = np.zeros((len(records), 2), dtype=np.int64)
    pred_sum = np.zeros_like(inter)
    true_sum = np.zeros_like(inter)
    for i, (record, predicted) in enumerate(zip(records, predictions)):
        truth = np.stack([tracing_mask(record.ed_rows, record.height, record.width), tracing_mask(record.es_rows, record.height, record.width)])
        inter[i], pred_sum[i], true_sum[i] = dice_counts(predicted, truth)
    return inter, pred_sum, true_sum


class SkippedVideo(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
