"""EchoNet-Dynamic ``VolumeTracings.csv``: parsing, polygons, masks and ED/ES assignment.

Per traced frame the file lists a long-axis row followed by chord rows. The LV polygon runs
down the (X1, Y1) ends of the chords and back up their (X2, Y2) ends; the long-axis row is not
part of it. EchoNet's and SimLVSeg's loaders take the last-listed frame as the large (ED) one,
which the file does not guarantee, so here ED/ES is decided by polygon area.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import skimage.draw

from unilvseg.errors import DataError
from unilvseg.untrusted import name_problem

log = logging.getLogger("unilvseg")

TRACING_COLUMNS = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]


@dataclass
class TracedVideo:
    """Tracing rows of one video, keyed by frame; ``problems`` lists rows that were dropped."""

    frames: dict[int, np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def polygon_from_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) of the LV polygon from tracing rows (N, 4) = X1, Y1, X2, Y2 (first row = long axis)."""
    chords = np.asarray(rows, dtype=np.float64)[1:]
    xs = np.concatenate([chords[:, 0], chords[::-1, 2]])
    ys = np.concatenate([chords[:, 1], chords[::-1, 3]])
    return xs, ys


def tracing_mask(rows: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise the traced LV polygon at the video's size (uint8, LV = 1).

    ``skimage.draw.polygon`` on rounded coordinates is the EchoNet reference behaviour.
    """
    xs, ys = polygon_from_rows(rows)
    rr, cc = skimage.draw.polygon(np.rint(ys).astype(int), np.rint(xs).astype(int), (height, width))
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[rr, cc] = 1
    return mask


def polygon_area(rows: np.ndarray) -> float:
    """Shoelace area of the traced polygon in pixels (used to tell ED from ES)."""
    xs, ys = polygon_from_rows(rows)
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def ed_es_frames(traced: TracedVideo) -> tuple[int, int]:
    """(ED frame, ES frame) among the traced frames: the largest and the smallest traced area.

    With more than two traced frames the extremes are taken; callers require at least two.
    """
    areas = {frame: polygon_area(rows) for frame, rows in traced.frames.items()}
    ed = max(areas, key=areas.get)
    es = min(areas, key=areas.get)
    return ed, es


def read_tracings(data_path: str | Path) -> dict[str, TracedVideo]:
    """Parse ``VolumeTracings.csv`` into {FileName without extension: TracedVideo}.

    Malformed rows (NaN/inf coordinates, negative or non-integer frames) are dropped with the
    reason recorded on the video so the index can count and log the skip; a wrong header or a
    missing file is an error naming the file.
    """
    path = Path(data_path) / "VolumeTracings.csv"
    if not path.is_file():
        raise DataError(f"{path}: VolumeTracings.csv not found")
    try:
        table = pd.read_csv(path, encoding="utf-8-sig", dtype={"FileName": str})
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty (expected header {','.join(TRACING_COLUMNS)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot parse CSV ({error})") from None
    table.columns = [str(c).strip() for c in table.columns]
    if list(table.columns) != TRACING_COLUMNS:
        raise DataError(
            f"{path}: header is {','.join(map(str, table.columns))}; expected exactly {','.join(TRACING_COLUMNS)}"
        )
    traced: dict[str, TracedVideo] = {}
    if table.empty:
        return traced
    names = table["FileName"].fillna("").astype(str).str.strip()
    stems = names.str.replace(r"\.avi$", "", regex=True, case=False)
    # Only names of FileList.csv (checked there) ever become paths; rows of other names would
    # never be used, and a name that could leave its folder is dropped here with its rows named.
    unusable = stems.map(name_problem).notna().to_numpy()
    if unusable.any():
        ids = np.flatnonzero(unusable)
        log.warning(
            "%s: skipped %d row(s) whose FileName cannot be a file name (%s), e.g. line %d: %r",
            path, len(ids), name_problem(stems.iloc[ids[0]]), ids[0] + 2, stems.iloc[ids[0]],
        )
        stems = stems[~unusable]  # keeps the file's row labels, which index coords and frames below
    coords = table[["X1", "Y1", "X2", "Y2"]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    frames = pd.to_numeric(table["Frame"], errors="coerce").to_numpy(np.float64)
    bad_coord = ~np.isfinite(coords).all(axis=1)
    bad_frame = ~np.isfinite(frames) | (frames < 0) | (np.mod(frames, 1) != 0)
    # Group once with pandas instead of filtering the table per video.
    for stem, row_ids in stems.groupby(stems, sort=False).groups.items():
        video = traced.setdefault(stem, TracedVideo())
        row_ids = np.asarray(row_ids)
        for frame in pd.unique(frames[row_ids]):
            if not np.isfinite(frame):
                continue
            ids = row_ids[frames[row_ids] == frame]
            if bad_frame[ids].any():
                video.problems.append(f"rows {_csv_rows(ids)}: Frame {frame:g} is not a non-negative integer")
                continue
            if bad_coord[ids].any():
                video.problems.append(f"rows {_csv_rows(ids)}: NaN/inf or non-numeric coordinates at frame {int(frame)}")
                continue
            if len(ids) < 4:
                video.problems.append(f"rows {_csv_rows(ids)}: frame {int(frame)} has {len(ids)} rows; a tracing needs a long axis and at least 3 chords")
                continue
            rows = coords[ids]
            _, first = np.unique(rows, axis=0, return_index=True)
            if len(first) < len(rows):
                # Exact duplicate rows would add zero-length edges; keep the first of each.
                video.problems.append(f"rows {_csv_rows(ids)}: {len(rows) - len(first)} duplicate row(s) at frame {int(frame)} dropped")
                rows = rows[np.sort(first)]
            video.frames[int(frame)] = rows
        nan_frame = row_ids[~np.isfinite(frames[row_ids])]
        if len(nan_frame):
            video.problems.append(f"rows {_csv_rows(nan_frame)}: Frame is missing or not a number")
    return traced


def _csv_rows(ids: np.ndarray) -> str:
    """Row numbers as a person counts them in the file (header = line 1)."""
    lines = np.asarray(ids) + 2
    return f"{lines.min()}-{lines.max()}" if len(lines) > 1 else str(lines[0])
