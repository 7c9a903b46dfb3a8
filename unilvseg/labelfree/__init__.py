"""Label-free LV segmentation after Ferreira et al. ("Self-supervised learning for label-free
segmentation in cardiac ultrasound"): classical weak labels per frame (stage 1) and quality
control (stage 2); the training loop that learns from the passing frames lives elsewhere.
Per-view label makers: A4C (``classical`` + ``four_chamber``), A2C (``two_chamber``), SAX
(``short_axis``); ``views`` maps ``--view`` to them.

Names are imported lazily so ``python -m unilvseg.labelfree.classical`` runs its module once.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SectorGeometry": "classical",
    "WeakLabelParams": "classical",
    "cut_at_neck": "classical",
    "detect_sector": "classical",
    "dice_per_frame": "classical",
    "evaluate_folder": "classical",
    "refine_mask": "classical",
    "snap_to_blood_pool": "classical",
    "weak_lv_labels": "classical",
    "QCResult": "qc",
    "quality_control": "qc",
    "ShortAxisParams": "short_axis",
    "short_axis_labels": "short_axis",
    "TwoChamberParams": "two_chamber",
    "two_chamber_labels": "two_chamber",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"unilvseg.labelfree.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'unilvseg.labelfree' has no attribute {name!r}")
