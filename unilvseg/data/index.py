"""Dataset index: which videos exist, their split, traced frames and ED/ES assignment.

``load_index`` reads an EchoNet-Dynamic folder (``FileList.csv``, ``VolumeTracings.csv``,
``Videos/``); ``index_video_folder`` reads a plain folder of videos (EchoNet's EXTERNAL_TEST
style). Problems a user can fix in the files are errors naming the file and row; problems that
EchoNet itself has in a handful of videos (too few traced frames, a missing video) are counted,
logged skips, listed in ``DatasetIndex.skipped``.

Views: a FileList.csv may carry a ``View`` column (A4C, A2C or SAX, any case; a blank cell or
no column at all means A4C, as in EchoNet-Dynamic) and a ``Heart`` column naming the heart a
video records (several views of one heart share it; blank or absent: None). They become
``VideoRecord.view`` ("a4c", "a2c", "sax") and ``VideoRecord.heart``; ``paired_views`` pairs
each heart's A4C and A2C records. A SAX video has no long-axis tracing: like any video without
tracings it is skipped and counted as ``untraced`` when tracings are required, and kept as an
untraced record when they are not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from unilvseg.data.tracings import TracedVideo, ed_es_frames, polygon_area, polygon_from_rows, read_tracings, tracing_mask
from unilvseg.errors import DataError
from unilvseg.untrusted import check_name, name_problem

log = logging.getLogger("unilvseg")

SPLITS = ("train", "val", "test")
#: Values of FileList's optional View column (lower case; the file may use any case).
VIEWS = ("a4c", "a2c", "sax")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv")


@dataclass
class VideoRecord:
    file_name: str  # without extension, as in FileList.csv
    path: Path
    split: str  # train / val / test / external
    n_frames: int | None = None  # from FileList; the decoded video is authoritative
    height: int = 112
    width: int = 112
    fps: float | None = None
    ef: float | None = None
    edv: float | None = None
    esv: float | None = None
    ed_frame: int | None = None
    es_frame: int | None = None
    ed_rows: np.ndarray | None = None
    es_rows: np.ndarray | None = None
    view: str = "a4c"  # FileList's View column (a4c / a2c / sax); a4c when absent
    heart: str | None = None  # FileList's Heart column: the heart several views record; None when absent

    @property
    def traced(self) -> bool:
        return self.ed_frame is not None and self.es_frame is not None

    @property
    def traced_frames(self) -> dict[str, int]:
        return {"ED": self.ed_frame, "ES": self.es_frame} if self.traced else {}


@dataclass
class DatasetIndex:
    records: list[VideoRecord]
    root: Path
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def split(self, name: str) -> "DatasetIndex":
        name = name.lower()
        keep = self.records if name == "all" else [r for r in self.records if r.split == name]
        return DatasetIndex(keep, self.root, self.skipped)

    def by_name(self) -> dict[str, VideoRecord]:
        return {r.file_name: r for r in self.records}

    def skip_summary(self) -> str:
        return ", ".join(f"{len(v)} {k}" for k, v in self.skipped.items() if v) or "none"


def _read_filelist(root: Path) -> pd.DataFrame:
    path = root / "FileList.csv"
    if not path.is_file():
        raise DataError(f"{path}: FileList.csv not found (is --data_path an EchoNet-Dynamic folder?)")
    try:
        table = pd.read_csv(path, encoding="utf-8-sig", dtype={"FileName": str, "Split": str, "View": str, "Heart": str})
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot parse CSV ({error})") from None
    table.columns = [str(c).strip() for c in table.columns]
    repeated = sorted({c for c in table.columns if list(table.columns).count(c) > 1})
    if repeated:
        raise DataError(f"{path}: column(s) {repeated} appear more than once in the header ({','.join(table.columns)})")
    for column in ("FileName", "Split"):
        if column not in table.columns:
            raise DataError(f"{path}: column {column!r} missing (header: {','.join(table.columns)})")
    if table.empty:
        raise DataError(f"{path}: no videos listed")
    # fillna first: pandas >= 3 keeps a missing cell missing through astype(str).
    table["FileName"] = table["FileName"].fillna("").astype(str).str.strip().str.replace(r"\.avi$", "", regex=True, case=False)
    # A FileName becomes Videos/<name>.avi and output files named after it: one path component only.
    problems = [(line, name, name_problem(name)) for line, name in enumerate(table["FileName"], start=2)]
    problems = [(line, name, problem) for line, name, problem in problems if problem]
    if problems:
        shown = "; ".join(f"line {line}: {name!r} {problem}" for line, name, problem in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError(f"{path}: FileName must be a single file name: {shown}{more}")
    table["Split"] = table["Split"].fillna("").astype(str).str.strip().str.lower()
    unknown = ~table["Split"].isin(SPLITS)
    if unknown.any():
        rows = (np.flatnonzero(unknown) + 2)[:5].tolist()
        values = sorted(set(table.loc[unknown, "Split"]))[:5]
        raise DataError(f"{path}: unknown Split {values} at line(s) {rows}; expected TRAIN, VAL or TEST (any case)")
    duplicated = table["FileName"].duplicated(keep=False)
    if duplicated.any():
        names = sorted(set(table.loc[duplicated, "FileName"]))
        rows = (np.flatnonzero(duplicated) + 2)[:6].tolist()
        raise DataError(f"{path}: FileName listed more than once: {names[:5]} (lines {rows})")
    _read_views(table, path)
    return table


def _read_views(table: pd.DataFrame, path: Path) -> None:
    """Normalise the optional View and Heart columns in place (absent: a4c / None)."""
    views = table["View"] if "View" in table.columns else pd.Series("", index=table.index)
    views = views.fillna("").astype(str).str.strip().str.lower().replace("", "a4c")
    unknown = ~views.isin(VIEWS)
    if unknown.any():
        lines = (np.flatnonzero(unknown) + 2)[:5].tolist()
        shown = "; ".join(f"line {line} ({name}): {value!r}" for line, name, value in zip(
            lines, table.loc[unknown, "FileName"], table.loc[unknown, "View"]))
        raise DataError(f"{path}: unknown View {shown}; expected A4C, A2C or SAX (any case; blank means A4C)")
    table["View"] = views
    hearts = table["Heart"] if "Heart" in table.columns else pd.Series(None, index=table.index, dtype=object)
    hearts = hearts.astype(object).where(hearts.notna(), "").astype(str).str.strip()
    table["Heart"] = pd.Series([h or None for h in hearts], index=table.index, dtype=object)
    # Two videos of one heart in the same view cannot be told apart when pairing views.
    keyed = hearts != ""
    repeated = keyed & table.duplicated(["Heart", "View"], keep=False)
    if repeated.any():
        lines = (np.flatnonzero(repeated) + 2)[:6].tolist()
        pairs = sorted({f"{h} {v.upper()}" for h, v in zip(table.loc[repeated, "Heart"], table.loc[repeated, "View"])})[:5]
        raise DataError(f"{path}: more than one video of the same heart and view: {pairs} (lines {lines})")


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def load_index(
    data_path: str | Path,
    split: str | None = None,
    require_tracings: bool = True,
) -> DatasetIndex:
    """Index an EchoNet-Dynamic folder.

    ``split``: train / val / test / all (None = all). With ``require_tracings`` (supervised
    modes) videos without two valid traced frames are skipped, counted and logged; without it
    (self-supervised, prediction) every listed video is kept and tracings are attached where valid.
    """
    root = Path(data_path)
    if not root.exists():
        raise DataError(f"--data_path {root}: folder does not exist")
    if not root.is_dir():
        raise DataError(f"--data_path {root}: is a file, expected an EchoNet-Dynamic folder")
    table = _read_filelist(root)
    tracings = read_tracings(root) if (require_tracings or (root / "VolumeTracings.csv").exists()) else {}
    videos_dir = root / "Videos"
    if not videos_dir.is_dir():
        raise DataError(f"{videos_dir}: Videos folder not found")
    split = (split or "all").lower()
    if split not in SPLITS + ("all",):
        raise DataError(f"--split {split!r}: expected one of train, val, test, all")

    skipped: dict[str, list[str]] = {"missing_video": [], "empty_video": [], "untraced": [], "bad_tracing": []}
    records = []
    for row in table.itertuples(index=False):
        row = row._asdict()
        if split != "all" and row["Split"] != split:
            continue
        name = row["FileName"]
        path = videos_dir / f"{name}.avi"
        if not path.is_file():
            skipped["missing_video"].append(name)
            continue
        if path.stat().st_size == 0:
            skipped["empty_video"].append(name)
            continue
        n_frames = _number(row.get("NumberOfFrames"))
        record = VideoRecord(
            file_name=name,
            path=path,
            split=row["Split"],
            n_frames=int(n_frames) if n_frames else None,
            height=int(_number(row.get("FrameHeight")) or 112),
            width=int(_number(row.get("FrameWidth")) or 112),
            fps=_number(row.get("FPS")),
            ef=_number(row.get("EF")),
            edv=_number(row.get("EDV")),
            esv=_number(row.get("ESV")),
            view=row["View"],
            heart=row["Heart"] if isinstance(row["Heart"], str) else None,
        )
        problem = _attach_tracings(record, tracings.get(name))
        if problem is not None:
            reason, message = problem
            if require_tracings:
                skipped[reason].append(name)
                log.debug("skipping %s: %s", name, message)
                continue
        records.append(record)

    for reason, names in skipped.items():
        if names:
            log.warning(
                "%s: skipped %d video(s) (%s), e.g. %s", root, len(names), reason.replace("_", " "), ", ".join(names[:3])
            )
    if not records:
        raise DataError(
            f"{root}: no usable videos in split {split!r} (skipped: "
            + (", ".join(f"{len(v)} {k}" for k, v in skipped.items() if v) or "none")
            + ")"
        )
    return DatasetIndex(records, root, skipped)


def only_view(index: DatasetIndex, view: str) -> DatasetIndex:
    """``index`` reduced to the records of one ``view`` (a4c, a2c, sax); the others are skipped
    (reason ``other_view``, counted per view in one log line). None left is a DataError."""
    if view not in VIEWS:
        raise DataError(f"view {view!r}: expected one of {', '.join(VIEWS)}")
    keep = [r for r in index.records if r.view == view]
    others = [r for r in index.records if r.view != view]
    skipped = dict(index.skipped)
    if others:
        skipped["other_view"] = skipped.get("other_view", []) + [r.file_name for r in others]
        counts = ", ".join(f"{sum(r.view == v for r in others)} {v.upper()}" for v in VIEWS if any(r.view == v for r in others))
        log.info("%s: view %s: skipping %d video(s) of other views (%s)", index.root, view.upper(), len(others), counts)
    if not keep:
        raise DataError(
            f"{index.root}: no usable video has View {view.upper()} (FileList's View column; blank or absent = A4C); "
            f"the videos are {', '.join(sorted({r.view.upper() for r in others})) or 'none'}"
        )
    return DatasetIndex(keep, index.root, skipped)


def paired_views(index: DatasetIndex) -> list[tuple[VideoRecord, VideoRecord]]:
    """``(A4C record, A2C record)`` of every heart (FileList's ``Heart`` column) that has both in
    ``index``, in the order of the A4C records; hearts with one of the two (another split, a
    skipped video) and records without a Heart are left out."""
    a2c = {r.heart: r for r in index.records if r.heart is not None and r.view == "a2c"}
    return [(r, a2c[r.heart]) for r in index.records if r.heart is not None and r.view == "a4c" and r.heart in a2c]


def _attach_tracings(record: VideoRecord, traced: TracedVideo | None) -> tuple[str, str] | None:
    """Set ED/ES on the record; return (skip reason, message) when the tracings are unusable."""
    if traced is None or not traced.frames:
        detail = "; ".join(traced.problems) if traced and traced.problems else "no traced frames"
        return ("bad_tracing" if traced and traced.problems else "untraced"), detail
    frames = dict(traced.frames)
    if record.n_frames is not None:
        beyond = [f for f in frames if f >= record.n_frames]
        for frame in beyond:
            frames.pop(frame)
        if beyond:
            traced = TracedVideo(frames, traced.problems + [f"traced frame(s) {beyond} past the end ({record.n_frames} frames)"])
    # A polygon mostly outside the frame (wrong coordinates, another video's size) would train
    # the network on an empty or clipped mask: drop that frame like any other bad tracing.
    outside = {f: _outside_image(rows, record.height, record.width) for f, rows in frames.items()}
    outside = {f: problem for f, problem in outside.items() if problem}
    if outside:
        frames = {f: rows for f, rows in frames.items() if f not in outside}
        traced = TracedVideo(frames, traced.problems + list(outside.values()))
    if len(frames) < 2:
        reason = "bad_tracing" if traced.problems else "untraced"
        return reason, f"{len(frames)} usable traced frame(s); {'; '.join(traced.problems)}"
    ed, es = ed_es_frames(TracedVideo(frames))
    if ed == es:
        return "bad_tracing", "traced polygons have equal area"
    record.ed_frame, record.es_frame = ed, es
    record.ed_rows, record.es_rows = frames[ed], frames[es]
    return None


def _outside_image(rows: np.ndarray, height: int, width: int) -> str | None:
    """Why a traced polygon is unusable at this frame size (None when at least half is inside)."""
    area = polygon_area(rows)
    if area < 1:
        return f"traced polygon has no area ({area:.2f} px)"
    xs, ys = polygon_from_rows(rows)
    xs, ys = np.rint(xs), np.rint(ys)
    if xs.min() >= 0 and ys.min() >= 0 and xs.max() < width and ys.max() < height:
        # Every vertex inside the frame: so is the polygon. Rasterising it to count (0.5 ms
        # each) was most of the time of indexing EchoNet-Dynamic's 20,060 traced frames.
        return None
    inside = int(tracing_mask(rows, height, width).sum())
    if inside < 0.5 * area:
        return f"traced polygon lies outside the {height}x{width} image ({inside} of {area:.0f} px inside)"
    return None


def index_video_folder(folder: str | Path) -> DatasetIndex:
    """Index a plain folder of videos (no CSVs): every video is an unlabelled 'external' record."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--external_dir {folder}: not a folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    # A file name with a control character (a newline) would break the CSVs written about it.
    unusable = [p.name for p in paths if name_problem(p.stem)]
    if unusable:
        log.warning("%s: skipped %d video file(s) whose name cannot be used (%s), e.g. %r",
                    folder, len(unusable), name_problem(Path(unusable[0]).stem), unusable[0])
    paths = [p for p in paths if not name_problem(p.stem)]
    empty = [p.stem for p in paths if p.stat().st_size == 0]
    records = [VideoRecord(file_name=p.stem, path=p, split="external") for p in paths if p.stat().st_size > 0]
    if empty:
        log.warning("%s: skipped %d empty video file(s), e.g. %s", folder, len(empty), ", ".join(empty[:3]))
    if not records:
        raise DataError(f"{folder}: no video files ({', '.join(VIDEO_SUFFIXES)}) found")
    return DatasetIndex(records, folder, {"empty_video": empty, "unusable_name": unusable})


def reference_masks(data_path: str | Path, file_name: str) -> np.ndarray | None:
    """Dense truth ``ReferenceMasks/<FileName>.npz`` (key ``masks``, uint8 frames x H x W), or None
    when the data set has none for this video (phantom and real-mini have them; EchoNet does not)."""
    path = Path(data_path) / "ReferenceMasks" / f"{check_name(file_name, 'ReferenceMasks')}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as archive:
            return archive["masks"]
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path}: cannot read key 'masks' ({error})") from error
