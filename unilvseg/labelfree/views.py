"""One label-free pipeline, per-view label makers (``train_labelfree.py --view a4c|a2c|sax``).

The view picks the stage-1 label maker and the structures it can label:

=====  ==============================================  =====================  ==================
view   label maker                                     structures it labels   default --structures
=====  ==============================================  =====================  ==================
a4c    classical LV (+ :mod:`.four_chamber` for more)  lv, myo, la, rv, ra    lv
a2c    :mod:`.two_chamber` (LV, band, LA watershed)     lv, myo, la            lv, myo, la
sax    :mod:`.short_axis` (dark pool + edge map)       lv, myo, rv            lv, myo, rv
=====  ==============================================  =====================  ==================

Whatever the view, the LV cavity anchors everything: quality control, the blood-pool snap of
later rounds and the report score the LV. A short-axis section has no LV long axis, so QC's
``max_length_ratio`` rule cannot apply to ``sax`` (asking for it is an error).
"""

from __future__ import annotations

import numpy as np

from unilvseg.data.index import VIEWS
from unilvseg.data.structures import STRUCTURES
from unilvseg.errors import UserError

#: Structures each view's label maker can provide (LV first).
VIEW_STRUCTURES = {
    "a4c": ("lv", "myo", "la", "rv", "ra"),
    "a2c": ("lv", "myo", "la"),
    "sax": ("lv", "myo", "rv"),
}
#: ``--structures`` when it is not given: the A4C keeps the LV alone, as before views existed.
DEFAULT_STRUCTURES = {"a4c": ("lv",), "a2c": VIEW_STRUCTURES["a2c"], "sax": VIEW_STRUCTURES["sax"]}
#: Views whose LV has a long axis (apical views): QC's ``max_length_ratio`` needs one.
LONG_AXIS_VIEWS = ("a4c", "a2c")


def check_view(view: str) -> str:
    value = str(view).strip().lower()
    if value not in VIEWS:
        raise UserError(f"--view {view!r}: expected one of {', '.join(VIEWS)}")
    return value


def view_structures(view: str, structures=None) -> tuple[str, ...]:
    """``--structures`` for ``--view`` (None: the view's default), LV first; a structure the
    view's label maker cannot provide is a UserError naming both flags."""
    from unilvseg.tasks.weak import check_structures

    view = check_view(view)
    if structures is None:
        return DEFAULT_STRUCTURES[view]
    chosen = check_structures(structures)
    missing = [s for s in chosen if s not in VIEW_STRUCTURES[view]]
    if missing:
        raise UserError(
            f"--structures {','.join(chosen)} with --view {view}: a {view.upper()} view has no {', '.join(missing)}; "
            f"its label maker provides {', '.join(VIEW_STRUCTURES[view])} (leave --structures out for "
            f"{','.join(DEFAULT_STRUCTURES[view])})"
        )
    return chosen


def view_label_map(frames: np.ndarray, view: str, structures) -> tuple[np.ndarray, object, np.ndarray]:
    """Stage 1 for one video of ``view``: ``(LV masks uint8 (T, H, W), sector, label map)``; the
    label map holds ``structures`` (``STRUCTURES`` numbering; the LV masks themselves when
    ``structures`` is the LV alone)."""
    view = check_view(view)
    structures = tuple(structures)
    if view == "a4c":
        from unilvseg.labelfree.classical import weak_lv_labels

        masks, info = weak_lv_labels(frames)
        sector = info["sector"]
        if len(structures) == 1:
            return masks, sector, masks
        from unilvseg.labelfree.four_chamber import four_chamber_labels

        label_map, _ = four_chamber_labels(frames, lv_masks=masks, sector=sector)
    elif view == "a2c":
        from unilvseg.labelfree.two_chamber import two_chamber_labels

        label_map, info = two_chamber_labels(frames)
        sector = info["sector"]
    else:
        from unilvseg.labelfree.short_axis import short_axis_labels

        label_map, info = short_axis_labels(frames)
        sector = info["sector"]
    masks = (label_map == STRUCTURES["lv"]).astype(np.uint8)
    if len(structures) == 1:
        return masks, sector, masks
    keep = np.isin(label_map, [STRUCTURES[s] for s in structures])
    return masks, sector, np.where(keep, label_map, 0).astype(np.uint8)


def view_lv_masks(frames: np.ndarray, view: str) -> tuple[np.ndarray, object]:
    """The stage-1 LV masks (uint8 (T, H, W)) of one video of ``view``, and its fan."""
    masks, sector, _ = view_label_map(frames, view, ("lv",))
    return masks, sector
