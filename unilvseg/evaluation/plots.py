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


def bland_altman(panels, path, title: str = "") -> Path:
    """Bland-Altman plots side by side: ``panels`` is a list of ``(name, reference_ef,
    predicted_ef)``; each shows the difference (predicted - reference) against the mean of the
    two, with the bias and the limits of agreement (bias ± 1.96 SD of the differences)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.0 * len(panels), 3.6))
    axes = np.atleast_1d(figure.subplots(1, len(panels), sharey=True, squeeze=False)[0])
    for ax, (name, reference, predicted) in zip(axes, panels):
        reference = np.asarray(reference, dtype=np.float64)
        predicted = np.asarray(predicted, dtype=np.float64)
        keep = np.isfinite(reference) & np.isfinite(predicted)
        mean, difference = (reference[keep] + predicted[keep]) / 2, predicted[keep] - reference[keep]
        ax.scatter(mean, difference, s=12, alpha=0.7, color="tab:blue")
        ax.axhline(0.0, color="gray", linewidth=0.8)
        if difference.size:
            bias = float(difference.mean())
            sd = float(difference.std(ddof=1)) if difference.size > 1 else 0.0
            ax.axhline(bias, color="tab:red", linewidth=1, label=f"bias {bias:+.1f}")
            for limit in (bias - 1.96 * sd, bias + 1.96 * sd):
                ax.axhline(limit, color="tab:red", linewidth=1, linestyle="--")
            ax.legend(loc="upper right", fontsize=8, title=f"LoA {bias - 1.96 * sd:+.1f} to {bias + 1.96 * sd:+.1f}", title_fontsize=8)
        ax.set_title(f"{name} (n={difference.size}, MAE {np.abs(difference).mean() if difference.size else float('nan'):.1f})", fontsize=9)
        ax.set_xlabel("mean of EFs (%)")
    axes[0].set_ylabel("EF from masks - reference EF (points)")
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, path)
