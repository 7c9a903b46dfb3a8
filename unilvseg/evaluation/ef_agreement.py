"""Agreement of EF from masks with a reference EF (FileList.csv, from clinicians' tracings).

``ef_agreement_intervals`` gives MAE, bias (predicted - reference), Pearson r, R², RMSE and
Bland-Altman limits of agreement, with bootstrap intervals for MAE, bias and r. Videos are the
resampling unit (a video's predicted and reference EF stay paired); one set of index matrices
serves all three statistics (``unilvseg.evaluation.bootstrap.resample_indices``), so there is
no Python loop per resample. ``convention="echonet-reference"`` only changes the interval to
the 5th-95th percentiles that EchoNet-Dynamic labels "95% CI".
"""

from __future__ import annotations

import numpy as np

from unilvseg.evaluation.bootstrap import (
    CONVENTIONS,
    DEFAULT_CHUNK_ELEMENTS,
    REFERENCE,
    VIDEO,
    percentile_interval,
    reference_interval,
    resample_indices,
)
from unilvseg.evaluation.metrics import ef_agreement

#: Bland-Altman limits of agreement: bias ± this many SDs of the differences (95 % if normal).
LOA_SDS = 1.96


def _row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of ``x, y (rows, n)``; NaN where a row is constant."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))


def ef_agreement_intervals(
    predicted,
    reference,
    samples: int = 10_000,
    rng: np.random.Generator | None = None,
    ci: float = 0.95,
    convention: str = VIDEO,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> dict:
    """``{"n", "mae", "mae_low", "mae_high", "bias", "bias_low", "bias_high", "r", "r_low", "r_undefined_resamples",
    "r_high", "r2" (1 - SS_res/SS_tot), "pearson_r2", "rmse", "sd", "loa_low", "loa_high"}`` for paired EFs in percent.

    ``sd`` is the sample SD of the differences and ``loa_*`` the Bland-Altman limits
    ``bias ± 1.96·sd``. r and its interval are NaN with fewer than 3 videos (or constant EFs).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown bootstrap convention {convention!r}; expected one of {CONVENTIONS}")
    rng = np.random.default_rng() if rng is None else rng
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    reference = np.asarray(reference, dtype=np.float64).ravel()
    if predicted.shape != reference.shape or not predicted.size:
        raise ValueError(f"need equally many (>= 1) predicted and reference EFs, got {predicted.size} and {reference.size}")
    error = predicted - reference
    n = error.size
    basic = ef_agreement(predicted, reference)
    r = float(_row_pearson(predicted[None], reference[None])[0]) if n >= 3 else float("nan")
    sd = float(np.std(error, ddof=1)) if n > 1 else float("nan")
    stats = np.empty((samples, 3), dtype=np.float64)
    start = 0
    for indices in resample_indices(rng, n, samples, chunk_elements):
        rows = indices.shape[0]
        drawn_error = np.take(error, indices)
        stats[start : start + rows, 0] = np.abs(drawn_error).mean(axis=1)
        stats[start : start + rows, 1] = drawn_error.mean(axis=1)
        stats[start : start + rows, 2] = _row_pearson(np.take(predicted, indices), np.take(reference, indices)) if n >= 3 else np.nan
        start += rows
    # A resample whose EFs do not vary has no correlation. Such resamples are not dropped (that
    # would bias the interval); with any of them r gets no interval, and the count is reported.
    r_undefined = int(np.isnan(stats[:, 2]).sum())
    columns = 3 if r_undefined == 0 else 2
    if convention == REFERENCE:
        bounds = [reference_interval(stats[:, j]) for j in range(columns)]
    else:
        low, high = percentile_interval(stats[:, :columns], ci)
        bounds = list(zip(low, high))
    bounds += [(np.nan, np.nan)] * (3 - columns)
    (mae_low, mae_high), (bias_low, bias_high), (r_low, r_high) = ((float(a), float(b)) for a, b in bounds)
    return {
        "n": int(n),
        "mae": basic["mae"],
        "mae_low": mae_low,
        "mae_high": mae_high,
        "bias": basic["bias"],
        "bias_low": bias_low,
        "bias_high": bias_high,
        "r": r,
        "r_low": r_low,
        "r_high": r_high,
        "r_undefined_resamples": r_undefined,
        "r2": basic["r2"],  # coefficient of determination, 1 - SS_res/SS_tot (negative when worse than the mean)
        "pearson_r2": r * r if np.isfinite(r) else float("nan"),
        "rmse": basic["rmse"],
        "sd": sd,
        "loa_low": basic["bias"] - LOA_SDS * sd,
        "loa_high": basic["bias"] + LOA_SDS * sd,
    }


def agreement_table_lines(agreement: dict, label: str = "95% CI") -> list[str]:
    """A small Markdown table of one agreement dict (for log.csv and reports)."""

    def interval(key: str, digits: int) -> str:
        low, high = agreement[f"{key}_low"], agreement[f"{key}_high"]
        return f"{low:.{digits}f} - {high:.{digits}f}" if np.isfinite(low) and np.isfinite(high) else "n/a"

    return [
        f"| EF agreement (n={agreement['n']}) | estimate | {label} |",
        "|---|---|---|",
        f"| MAE (EF points) | {agreement['mae']:.2f} | {interval('mae', 2)} |",
        f"| bias, predicted - reference | {agreement['bias']:+.2f} | {interval('bias', 2)} |",
        f"| Pearson r | {agreement['r']:.3f} | {interval('r', 3)} |",
        f"| Bland-Altman limits (bias ± 1.96 SD) | {agreement['loa_low']:+.2f} to {agreement['loa_high']:+.2f} | |",
    ]
