"""Evaluation figures (PNG). Uses ``matplotlib.figure.Figure`` directly (Agg canvas), so no
pyplot global state and no display is needed; files are written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unilvseg.io import atomic_path

PHASE_COLUMNS = (("ED", "DiceED"), ("ES", "DiceES"), ("overall", "DiceOverall"))


def _save(figure, path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return Path(path)


def dice_histograms(dice_table, path, split: str = "test") -> Path:
    """One histogram of per-video Dice per phase (ED, ES, both frames pooled) side by side."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.2))
    axes = figure.subplots(1, len(PHASE_COLUMNS), sharey=True)
    bins = np.linspace(0.0, 1.0, 41)
    for ax, (phase, column) in zip(axes, PHASE_COLUMNS):
        values = np.asarray(dice_table[column], dtype=np.float64)
        ax.hist(values, bins=bins, color="tab:blue", edgecolor="white")
        ax.axvline(float(np.median(values)), color="tab:red", linewidth=1, label=f"median {np.median(values):.3f}")
        ax.set_title(f"{split} Dice ({phase}), n={len(values)}")
        ax.set_xlabel("Dice")
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("videos")
    return _save(figure, path)


def ef_scatter(reference_ef, predicted_ef, path, split: str = "test", mae: float | None = None) -> Path:
    """Predicted vs reference EF (%) with the identity line."""
    from matplotlib.figure import Figure

    reference_ef = np.asarray(reference_ef, dtype=np.float64)
    predicted_ef = np.asarray(predicted_ef, dtype=np.float64)
    figure = Figure(figsize=(4.2, 4.2))
    ax = figure.subplots()
    ax.scatter(reference_ef, predicted_ef, s=8, alpha=0.6, color="tab:blue")
    values = np.concatenate([reference_ef, predicted_ef])
    low, high = (float(np.nanmin(values)), float(np.nanmax(values))) if values.size else (0.0, 100.0)
    margin = max(2.0, 0.05 * (high - low))
    ax.plot([low - margin, high + margin], [low - margin, high + margin], color="gray", linewidth=1, linestyle="--")
    ax.set_xlim(low - margin, high + margin)
    ax.set_ylim(low - margin, high + margin)
    ax.set_aspect("equal")
    ax.set_xlabel("reference EF (%)")
    ax.set_ylabel("predicted EF (%)")
    title = f"{split} EF, n={len(reference_ef)}"
    if mae is not None:
        title += f", MAE {mae:.2f}"
    ax.set_title(title)
    return _save(figure, path)
