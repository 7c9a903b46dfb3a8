"""``biplane.csv`` of a prediction folder: biplane LV volumes of every heart whose apical
4-chamber (A4C) and 2-chamber (A2C) videos were both predicted.

FileList.csv names each video's ``View`` and ``Heart`` (``unilvseg.data.index``; see
docs/views.md). :func:`write_biplane_table` runs when ``predict.py`` writes size.csv and
volumes.csv (at the end of every run, or by the last shard to finish), so it sees every
finished video of the folder, including those an earlier run predicted. For each heart it reads
the two stored masks files (``masks/<FileName>.npz``, one heart at a time) and calls
:func:`unilvseg.evaluation.volumes.biplane_volumes` with each video's FPS and predict.py's
``--ed_es_rule`` and ``--mm_per_pixel``: the beats of the two views are paired by phase, not
by frame index.

One row per heart, sorted by Heart (``BIPLANE_COLUMNS``):

* ``Heart, FileName_A4C, FileName_A2C``;
* ``EDV, ESV, EF, EFSD, Beats, BeatEFs, BeatFrames``: biplane_volumes' result. ``Beats`` is
  the number of paired ED/ES pairs that were averaged. ``BeatFrames`` gives each pair as
  ``ED4-ES4/ED2-ES2`` (A4C frames / A2C frames), space-separated; a single-plane fallback
  gives ``ED-ES``;
* ``EFRule``: each view's rule (``A4C rule / A2C rule``);
* ``Method``: ``biplane``, or the single-plane fallback and why (e.g. ``single-plane A4C (no
  beat in the A2C video)``);
* ``EDV_A4C, ESV_A4C, EF_A4C``: the A4C video's single-plane figures, as in volumes.csv.

A heart gets a row only when both of its videos are finished (masks file and part). A heart
with only one of the two (the other in a split not predicted, not decodable, or not yet done)
has no row: its single-plane figures are in volumes.csv, and the log counts such hearts.
A folder whose FileList.csv has no ``Heart`` column (every EchoNet-Dynamic folder) is left as
it was: only that file's header is read. One whose Heart column pairs no A4C with an A2C gets
no biplane.csv either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("unilvseg")

BIPLANE_FILE = "biplane.csv"
BIPLANE_COLUMNS = [
    "Heart", "FileName_A4C", "FileName_A2C", "EDV", "ESV", "EF", "EFSD", "Beats", "BeatEFs", "BeatFrames", "EFRule", "Method",
    "EDV_A4C", "ESV_A4C", "EF_A4C",
]


@dataclass
class BiplaneSummary:
    """What :func:`write_biplane_table` wrote: rows (hearts) by method, and the hearts left out
    because only one of their two views was finished."""

    rows: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    one_view_only: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def describe(self) -> str:
        methods = ", ".join(f"{count} {method}" for method, count in sorted(self.methods.items())) or "none"
        text = f"{BIPLANE_FILE}: {self.rows} heart(s) with A4C and A2C predicted ({methods})"
        if self.one_view_only:
            text += f"; {len(self.one_view_only)} heart(s) with only one of the two views predicted have no row"
        if self.unreadable:
            text += f"; {len(self.unreadable)} heart(s) left out (unreadable masks)"
        return text


def view_records(data_path: str | Path | None) -> list:
    """Every video of the EchoNet folder ``data_path`` (all splits) when its FileList.csv has a
    ``Heart`` column, else ``[]``. Only the header is read when there is no such column."""
    import pandas as pd

    from unilvseg.data.index import load_index
    from unilvseg.errors import DataError

    if data_path is None:
        return []
    try:
        header = pd.read_csv(Path(data_path) / "FileList.csv", nrows=0, encoding="utf-8-sig").columns
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return []
    if "Heart" not in [str(c).strip() for c in header]:
        return []
    try:
        return load_index(data_path, split="all", require_tracings=False).records
    except DataError as error:
        log.warning("%s: cannot pair the views (%s); no %s", data_path, error, BIPLANE_FILE)
        return []


def _beat_frames(frames) -> str:
    cells = []
    for beat in frames:
        if isinstance(beat[0], (tuple, list)):  # ((ED4, ES4), (ED2, ES2)): a paired beat
            cells.append("/".join(f"{ed}-{es}" for ed, es in beat))
        else:  # (ED, ES): a single-plane fallback
            cells.append(f"{beat[0]}-{beat[1]}")
    return " ".join(cells)


def biplane_row(record_a4c, record_a2c, masks_a4c, masks_a2c, rule: str, mm_per_pixel: float, single_a4c: dict | None = None) -> dict:
    """One biplane.csv row from the two views' masks (``single_a4c``: the A4C video's volumes.csv
    figures ``{"EDV", "ESV", "EF"}``, NaN when not given)."""
    from unilvseg.evaluation.predict import video_fps
    from unilvseg.evaluation.volumes import biplane_volumes

    result = biplane_volumes(
        masks_a4c, masks_a2c, rule=rule, fps_a4c=video_fps(record_a4c), fps_a2c=video_fps(record_a2c), mm_per_pixel=mm_per_pixel,
    )
    single_a4c = single_a4c or {}
    return {
        "Heart": record_a4c.heart,
        "FileName_A4C": record_a4c.file_name,
        "FileName_A2C": record_a2c.file_name,
        "EDV": result["edv"],
        "ESV": result["esv"],
        "EF": result["ef"],
        "EFSD": result["ef_sd"],
        "Beats": result["beats"],
        "BeatEFs": " ".join(f"{v:.2f}" for v in result["beat_efs"]),
        "BeatFrames": _beat_frames(result["beat_frames"]),
        "EFRule": result["rule"],
        "Method": result["method"],
        "EDV_A4C": single_a4c.get("EDV", np.nan),
        "ESV_A4C": single_a4c.get("ESV", np.nan),
        "EF_A4C": single_a4c.get("EF", np.nan),
    }


def _stored_masks(path: Path) -> np.ndarray | None:
    try:
        with np.load(path) as stored:
            masks = stored["masks"]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return masks if masks.ndim == 3 else None


def write_biplane_table(layout, records, mm_per_pixel: float, ed_es_rule: str) -> BiplaneSummary | None:
    """Write ``layout.root/biplane.csv`` (atomically) for the hearts of ``records`` whose A4C and
    A2C videos are both finished in the folder; None (and nothing written) when ``records`` pair
    no A4C with an A2C."""
    import pandas as pd

    from unilvseg.data.index import DatasetIndex, paired_views
    from unilvseg.evaluation.predict import read_part
    from unilvseg.io import write_csv

    pairs = paired_views(DatasetIndex(list(records), layout.root))
    if not pairs:
        return None

    def finished(record) -> bool:
        return layout.masks(record.file_name).is_file() and layout.part(record.file_name).is_file()

    summary = BiplaneSummary()
    rows = []
    for record_a4c, record_a2c in sorted(pairs, key=lambda pair: pair[0].heart):
        done = finished(record_a4c), finished(record_a2c)
        if not all(done):
            if any(done):
                summary.one_view_only.append(record_a4c.heart)
            continue
        masks_a4c = _stored_masks(layout.masks(record_a4c.file_name))
        masks_a2c = _stored_masks(layout.masks(record_a2c.file_name)) if masks_a4c is not None else None
        if masks_a4c is None or masks_a2c is None:
            summary.unreadable.append(record_a4c.heart)
            continue
        try:
            part = read_part(layout.part(record_a4c.file_name))
            single = {key: float(part[key].iloc[0]) for key in ("EDV", "ESV", "EF")} if len(part) else None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, KeyError):
            single = None
        rows.append(biplane_row(record_a4c, record_a2c, masks_a4c, masks_a2c, ed_es_rule, mm_per_pixel, single))
        del masks_a4c, masks_a2c  # one heart's masks in memory at a time
    table = pd.DataFrame(rows, columns=BIPLANE_COLUMNS)
    write_csv(table, layout.root / BIPLANE_FILE, float_format="%.4f")
    summary.rows = len(table)
    summary.methods = {str(k): int(v) for k, v in table["Method"].value_counts().items()}
    if summary.one_view_only:
        log.info("%s: %d heart(s) with only one of A4C/A2C predicted (no row): %s", layout.root / BIPLANE_FILE,
                 len(summary.one_view_only), ", ".join(summary.one_view_only[:5]) + (" ..." if len(summary.one_view_only) > 5 else ""))
    if summary.unreadable:
        log.warning("%s: unreadable masks file(s) of %d heart(s), left out: %s", layout.root / BIPLANE_FILE,
                    len(summary.unreadable), ", ".join(summary.unreadable[:5]))
    return summary
