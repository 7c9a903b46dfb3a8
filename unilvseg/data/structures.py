"""Heart structures in a label map: the one numbering every reader and writer uses.

A multi-structure reference is stored beside the LV-only one, so that folders and readers that
know only the LV keep working: ``ReferenceMasks/<FileName>.npz`` holds ``masks`` (uint8, LV = 1,
as always) and, where the data set has them, ``labels`` (uint8 (frames, H, W) label map);
``ReferenceMasks/labels.json`` names the labels (``{"1": "lv", ...}``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unilvseg.errors import DataError
from unilvseg.untrusted import check_name

#: Label of each structure in a label map (0 = background). ``lv`` is the LV cavity (what the
#: LV-only ``masks`` hold), ``myo`` the LV myocardium including the septum.
STRUCTURES = {"lv": 1, "myo": 2, "la": 3, "rv": 4, "ra": 5}
LABELS_FILE = "labels.json"


def labels_json() -> dict[str, str]:
    """The content of ``ReferenceMasks/labels.json`` for ``STRUCTURES``."""
    return {str(value): name for name, value in STRUCTURES.items()}


def reference_labels(data_path: str | Path, file_name: str) -> tuple[np.ndarray, dict[str, int]] | None:
    """``(label map uint8 (frames, H, W), {structure: label})`` of one video, or None when the
    data set has no multi-structure reference for it (an LV-only folder)."""
    folder = Path(data_path) / "ReferenceMasks"
    path = folder / f"{check_name(file_name, str(folder))}.npz"
    names_path = folder / LABELS_FILE
    if not (path.is_file() and names_path.is_file()):
        return None
    try:
        names = json.loads(names_path.read_text())
        structures = {str(name): int(label) for label, name in names.items()}
    except (OSError, ValueError, AttributeError) as error:
        raise DataError(f"{names_path}: expected a JSON object {{label: structure name}} ({error})") from None
    try:
        with np.load(path) as archive:
            if "labels" not in archive.files:
                return None
            labels = archive["labels"]
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read key 'labels' ({error})") from error
    if labels.ndim != 3:
        raise DataError(f"{path}: 'labels' must be (frames, H, W), got shape {labels.shape}")
    return labels, structures
