"""Overlap and agreement metrics computed from pixel counts.

Dice over a set of frames is the *ratio of sums* ``2·ΣI / (Σ|pred| + Σ|true|)`` (EchoNet-Dynamic's
convention), not the mean of per-frame Dice: large ventricles weigh more, and a frame where both
masks are empty does not produce 0/0. Everything here works on counts so the bootstrap can
resample videos without touching the masks again.
"""

from __future__ import annotations

import numpy as np


def dice_counts(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersection, |pred|, |true|) pixel counts over the last two axes (H, W).

    ``pred`` and ``true`` are masks (bool or 0/1 integers, any value > 0 counts as LV) with
    equal shapes ``(..., H, W)``; the counts have shape ``(...)`` and dtype int64.
    """
    pred = np.asarray(pred)
    true = np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"dice_counts: prediction shape {pred.shape} differs from reference shape {true.shape}")
    if pred.ndim < 2:
        raise ValueError(f"dice_counts: expected masks of shape (..., H, W), got {pred.shape}")
    pred = pred > 0
    true = true > 0
    axes = (-2, -1)
    intersection = np.count_nonzero(pred & true, axis=axes).astype(np.int64)
    return intersection, np.count_nonzero(pred, axis=axes).astype(np.int64), np.count_nonzero(true, axis=axes).astype(np.int64)


def dice_from_counts(intersection, pred_sum, true_sum, empty: float = 1.0) -> np.ndarray:
    """Element-wise Dice ``2I / (|pred| + |true|)``; ``empty`` where both masks are empty."""
    intersection = np.asarray(intersection, dtype=np.float64)
    total = np.asarray(pred_sum, dtype=np.float64) + np.asarray(true_sum, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2.0 * intersection / total
    return np.where(total > 0, dice, empty)


def pooled_dice(intersection, pred_sum, true_sum, axis=None) -> float | np.ndarray:
    """Ratio-of-sums Dice ``2·ΣI / (Σ|pred| + Σ|true|)`` over ``axis`` (all elements by default).

    Returns NaN when every mask in the pool is empty (there is nothing to agree on).
    """
    inter = np.sum(np.asarray(intersection, dtype=np.float64), axis=axis)
    total = np.sum(np.asarray(pred_sum, dtype=np.float64), axis=axis) + np.sum(
        np.asarray(true_sum, dtype=np.float64), axis=axis
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * inter / np.where(total > 0, total, 1.0), np.nan)
    return float(dice) if np.ndim(dice) == 0 else dice


def mean_absolute_change(series: np.ndarray) -> float:
    """Mean |x[t+1] - x[t]| of a 1-D series (e.g. LV area per frame); NaN for fewer than 2 values."""
    series = np.asarray(series, dtype=np.float64)
    return float(np.abs(np.diff(series)).mean()) if series.size >= 2 else float("nan")


def ef_agreement(predicted, reference) -> dict[str, float]:
    """MAE, RMSE, bias (predicted - reference) and R² of ejection fractions (percent)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    error = predicted - reference
    residual = float(np.sum(error**2))
    spread = float(np.sum((reference - reference.mean()) ** 2)) if reference.size else 0.0
    return {
        "mae": float(np.abs(error).mean()) if error.size else float("nan"),
        "rmse": float(np.sqrt(np.mean(error**2))) if error.size else float("nan"),
        "bias": float(error.mean()) if error.size else float("nan"),
        # R² as sklearn.metrics.r2_score defines it (can be negative); undefined for constant reference.
        "r2": 1.0 - residual / spread if spread > 0 else float("nan"),
    }
