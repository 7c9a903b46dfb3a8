"""Full-video prediction pipeline behind ``predict.py``: segment every frame of every video with a
trained checkpoint and write the outputs of a save folder.

Call :func:`run_prediction` with a :class:`PredictOptions` (the flags of ``predict.py``, same
names and defaults); ``unilvseg.cli.predict`` only parses the command line.

Three ways to name the videos:

* ``data_path`` (+ ``split`` test|val|train|all): an EchoNet-Dynamic folder (default: the
  built-in phantom); traced frames also get PNG masks and a ``Traced`` mark in ``size.csv``.
  ``view`` (a4c, a2c, sax) keeps only the videos of that view (FileList's ``View`` column,
  blank or absent = a4c; ``unilvseg.data.index.only_view``): a view's checkpoint on a folder
  of several views predicts its own view's videos only.
* ``external_dir``: any folder of videos, no CSVs needed.
* ``video_path`` + ``save_path OUT.npz``: one video to one ``.npz`` (like the published
  inference script); with ``save_dir`` instead, the one video gets the full set of outputs.

Outputs under ``save_dir S`` (every file written atomically):

* ``S/masks/<FileName>.npz``: key ``masks``, uint8 (frames, H, W), LV = 1, at the video's own size;
* ``S/<FileName>_<frame>_<ED|ES>.png``: 0/255 masks of the traced frames (EchoNet folders only);
* ``S/size.csv``: FileName, Frame, Area (LV pixels), Traced (ED, ES or empty), one row per frame;
* ``S/volumes.csv``: FileName, EDV, ESV, EF, EDFrame, ESFrame from the masks (method of disks,
  ``volumes_from_masks`` with ``--ed_es_rule``: by default the mean over the complete beats,
  with EFSD, Beats, EFRule (the rule or its fallback), BeatEFs, BeatFrames);
* ``S/biplane.csv`` when FileList.csv pairs A4C and A2C videos of one heart (``View`` and
  ``Heart`` columns): biplane volumes of every heart with both views finished, rebuilt with
  size.csv and volumes.csv (unilvseg.evaluation.biplane);
* ``S/overlays/<FileName>.avi|gif`` with ``overlay``;
* ``S/parts/<FileName>.csv``: each video's rows, from which size.csv and volumes.csv are rebuilt
  at the end of every run, so a killed run never leaves them half-written or out of step;
* ``S/run.json``: checkpoint and settings; a re-run with other settings must say ``overwrite``.

A re-run skips every video whose masks file exists (and restores any of its other outputs that
are missing) unless ``overwrite``. A video that cannot be decoded is skipped, counted and
listed at the end; the result is an error only when no video at all could be predicted.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unilvseg.data.dataset import ECHONET_MEAN, ECHONET_STD
from unilvseg.errors import DataError, UserError
from unilvseg.evaluation.overlay import OVERLAY_FORMATS
from unilvseg.evaluation.volumes import DEFAULT_ED_ES_RULE, VOLUME_FIELDS
from unilvseg.untrusted import check_name, path_under

log = logging.getLogger("unilvseg")

SIZE_COLUMNS = ["FileName", "Frame", "Area", "Traced"]
VOLUME_COLUMNS = ["FileName", *VOLUME_FIELDS]
PART_COLUMNS = SIZE_COLUMNS + VOLUME_COLUMNS[1:]
# Settings that change the contents of the outputs: a save folder holds one combination.
GUARDED_SETTINGS = ("checkpoint", "stride", "threshold", "mean", "std", "mm_per_pixel", "size", "ed_es_rule")
DEFAULT_TRAINING_SIZE = (112, 112)


def default_mm_per_pixel() -> float:
    from unilvseg.evaluation import volumes

    return float(getattr(volumes, "MM_PER_PIXEL", getattr(volumes, "DEFAULT_MM_PER_PIXEL", 1.4)))


@dataclass
class PredictOptions:
    """What to predict and how: the flags of ``predict.py`` (see its ``--help``)."""

    checkpoint: str
    save_dir: str | None = None
    save_path: str | None = None
    data_path: str | None = None
    split: str = "test"
    view: str | None = None  # with data_path: only the videos of this view (a4c, a2c, sax); None = every video
    external_dir: str | None = None
    video_path: str | None = None
    overlay: bool = False
    overlay_format: str = "avi"
    overwrite: bool = False
    stride: int | None = None
    batch_size: int | None = None
    amp: str = "auto"
    device: str = "auto"
    threshold: float = 0.5
    mean: list[float] | None = None
    std: list[float] | None = None
    size: list[int] | None = None
    mm_per_pixel: float = field(default_factory=default_mm_per_pixel)
    frames: int | None = None  # clip length of a published SimLVSeg checkpoint (it records none)
    ed_es_rule: str = DEFAULT_ED_ES_RULE
    shard: str | None = None  # "K/N": this process predicts every N-th video from the K-th; "auto": from the launcher's environment
    compile: bool = False  # torch.compile the network in place before predicting


# -- settings ----------------------------------------------------------------------------------
@dataclass
class Settings:
    checkpoint: str
    frames: int
    stride: int
    batch_size: int
    threshold: float
    mean: list[float]
    std: list[float]
    mm_per_pixel: float
    size: tuple[int, int]
    overlay_format: str | None
    amp: bool | None = None  # bf16 autocast: None = where bf16 is fast (unilvseg.hardware)
    ed_es_rule: str = DEFAULT_ED_ES_RULE
    structures: tuple[str, ...] = ("lv",)  # a multi-structure checkpoint's outputs, LV first

    def guarded(self) -> dict:
        values = {name: getattr(self, name) for name in GUARDED_SETTINGS}
        values["size"] = list(values["size"])
        values["mean"] = [float(v) for v in values["mean"]]
        values["std"] = [float(v) for v in values["std"]]
        return values


def check_options(args: PredictOptions) -> None:
    sources = [flag for flag in ("data_path", "external_dir", "video_path") if getattr(args, flag)]
    if len(sources) > 1:
        raise UserError(f"give only one of --data_path, --external_dir, --video_path (got {', '.join('--' + s for s in sources)})")
    if args.save_path and not args.video_path:
        raise UserError("--save_path needs --video_path (for folders of videos use --save_dir)")
    if args.video_path and args.save_path and args.save_dir:
        raise UserError("with --video_path give either --save_path OUT.npz (one file) or --save_dir (full outputs), not both")
    if args.save_dir and Path(args.save_dir).exists() and not Path(args.save_dir).is_dir():
        raise UserError(f"--save_dir {args.save_dir}: exists and is not a folder")
    if not args.save_path and not args.save_dir:
        raise UserError("--save_dir is required (or --video_path X --save_path OUT.npz for one video)")
    if args.save_path and Path(args.save_path).suffix.lower() != ".npz":
        raise UserError(f"--save_path {args.save_path}: must end in .npz")
    if args.split.lower() not in ("train", "val", "test", "all"):
        raise UserError(f"--split {args.split!r}: expected one of train, val, test, all")
    if args.split.lower() != "test" and (args.external_dir or args.video_path):
        raise UserError("--split applies to --data_path folders only")
    if args.view is not None:
        from unilvseg.data.index import VIEWS

        if args.external_dir or args.video_path:
            raise UserError("--view applies to --data_path folders only (it reads FileList.csv's View column)")
        if args.view.lower() not in VIEWS:
            raise UserError(f"--view {args.view!r}: expected one of {', '.join(VIEWS)}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.stride is not None and args.stride < 1:
        raise UserError(f"--stride must be >= 1, got {args.stride}")
    if not 0.0 < args.threshold < 1.0:
        raise UserError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.std is not None and any(s <= 0 for s in args.std):
        raise UserError(f"--std values must be positive, got {args.std}")
    if not args.mm_per_pixel > 0:
        raise UserError(f"--mm_per_pixel must be positive, got {args.mm_per_pixel}")
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames must be >= 1, got {args.frames}")
    if args.size is not None and min(args.size) < 1:
        raise UserError(f"--size must be positive, got {args.size}")


def training_size(hparams) -> tuple[int, int]:
    """Input size the network was trained at: the checkpoint's ``size`` if it has one, else 112x112."""
    for key in ("size", "image_size"):
        value = hparams.get(key) if hasattr(hparams, "get") else None
        if value:
            value = [int(v) for v in (value if isinstance(value, (list, tuple)) else (value, value))]
            return value[0], value[1]
    return DEFAULT_TRAINING_SIZE


# -- outputs -----------------------------------------------------------------------------------
class Layout:
    """Where every output of a run lives."""

    def __init__(self, save_dir: Path):
        self.root = Path(save_dir)
        self.masks_dir = self.root / "masks"
        self.parts_dir = self.root / "parts"
        self.overlays_dir = self.root / "overlays"
        self.chambers_dir = self.root / "chambers"

    # Every output path is built here from a video's name, and checked to stay in the output
    # folder: the last guard behind the index's own check of the names (unilvseg.untrusted).
    def _inside(self, name: str, path: Path) -> Path:
        check_name(name, "prediction output")
        return path_under(self.root, path)

    def masks(self, name: str) -> Path:
        return self._inside(name, self.masks_dir / f"{name}.npz")

    def part(self, name: str) -> Path:
        return self._inside(name, self.parts_dir / f"{name}.csv")

    def chamber_part(self, name: str) -> Path:
        return self._inside(name, self.chambers_dir / f"{name}.csv")

    def overlay(self, name: str, fmt: str) -> Path:
        return self._inside(name, self.overlays_dir / f"{name}.{fmt}")

    def png(self, name: str, frame: int, phase: str) -> Path:
        return self._inside(name, self.root / f"{name}_{frame}_{phase}.png")


def traced_pngs(layout: Layout, record, n_frames: int) -> dict[Path, int]:
    """PNG path -> frame for the record's traced frames that exist in the decoded video."""
    paths = {}
    for phase, frame in record.traced_frames.items():
        if 0 <= frame < n_frames:
            paths[layout.png(record.file_name, frame, phase)] = frame
        else:
            log.warning("%s: traced %s frame %d is past the end of the video (%d frames); no PNG", record.file_name, phase, frame, n_frames)
    return paths


def video_rows(record, masks: np.ndarray, mm_per_pixel: float, ed_es_rule: str = DEFAULT_ED_ES_RULE, fps: float | None = None):
    """The per-video part: one row per frame (size.csv columns + the video's volumes)."""
    import pandas as pd

    from unilvseg.evaluation.volumes import volume_fields, volumes_from_masks

    volumes = volumes_from_masks(masks, mm_per_pixel=mm_per_pixel, rule=ed_es_rule, fps=fps)
    traced = np.full(len(masks), "", dtype=object)
    for phase, frame in record.traced_frames.items():
        if 0 <= frame < len(masks):
            traced[frame] = phase
    return pd.DataFrame(
        {
            "FileName": record.file_name,
            "Frame": np.arange(len(masks)),
            "Area": np.count_nonzero(masks, axis=(1, 2)),
            "Traced": traced,
            **volume_fields(volumes),
        },
        columns=PART_COLUMNS,
    )


def read_part(path: Path):
    import pandas as pd

    return pd.read_csv(
        path,
        dtype={"FileName": str, "Traced": str, "EFRule": str, "BeatEFs": str, "BeatFrames": str},
        keep_default_na=False,  # file names such as "NA" stay names; empty Traced stays ""
        na_values={name: ["", "nan", "NaN"] for name in VOLUME_COLUMNS[1:]},
    )


def assemble_tables(layout: Layout) -> tuple[int, int]:
    """Rebuild size.csv and volumes.csv from every finished video's part; returns (videos, rows)."""
    import pandas as pd

    from unilvseg.io import write_csv

    parts = []
    for path in sorted(layout.parts_dir.glob("*.csv")) if layout.parts_dir.is_dir() else []:
        if path.name.startswith(".") or not layout.masks(path.stem).is_file():
            continue  # a part whose masks were deleted is not a finished video
        try:
            parts.append(read_part(path))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
            log.warning("%s: unreadable part (%s); that video is left out of size.csv/volumes.csv", path, error)
    # reindex: parts written before a column existed (an older run continued) get it empty.
    table = pd.concat(parts, ignore_index=True).reindex(columns=PART_COLUMNS) if parts else pd.DataFrame(columns=PART_COLUMNS)
    table = table.sort_values(["FileName", "Frame"], kind="stable")
    write_csv(table[SIZE_COLUMNS], layout.root / "size.csv")
    volumes = table.drop_duplicates("FileName")[VOLUME_COLUMNS]
    write_csv(volumes, layout.root / "volumes.csv", float_format="%.4f")
    chamber_parts = [
        path for path in sorted(layout.chambers_dir.glob("*.csv")) if layout.chambers_dir.is_dir()
        and not path.name.startswith(".") and layout.masks(path.stem).is_file()
    ]
    if chamber_parts:  # a multi-structure checkpoint: chambers.csv, one row per video
        chambers = pd.concat([pd.read_csv(path, dtype={"FileName": str}, keep_default_na=False, na_values=["", "nan", "NaN"])
                              for path in chamber_parts], ignore_index=True)
        write_csv(chambers, layout.root / "chambers.csv", float_format="%.4f")
    return len(volumes), len(table)


def assemble_biplane(layout: Layout, data_path: str | None, settings: Settings):
    """``biplane.csv`` of the EchoNet folder's hearts whose A4C and A2C are both finished in the
    save folder (unilvseg.evaluation.biplane); None, with nothing read beyond FileList.csv's
    header or written, when the folder pairs no views (no Heart column) or is not an EchoNet folder."""
    import pandas as pd

    from unilvseg.evaluation.biplane import view_records, write_biplane_table

    records = view_records(data_path)
    if not records:
        return None

    def single_plane(record) -> dict | None:
        """The finished video's single-plane volumes.csv figures (None when its part is unreadable)."""
        try:
            part = read_part(layout.part(record.file_name))
            return {key: float(part[key].iloc[0]) for key in ("EDV", "ESV", "EF")} if len(part) else None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, KeyError):
            return None

    return write_biplane_table(layout, records, settings.mm_per_pixel, settings.ed_es_rule, video_fps, single_plane)


def load_masks(path: Path) -> np.ndarray | None:
    """The stored masks of a finished video, or None when the file is unreadable (then it is redone)."""
    try:
        with np.load(path) as stored:
            masks = stored["masks"]
    except (OSError, ValueError, KeyError, EOFError) as error:
        log.warning("%s: unreadable masks file (%s); predicting that video again", path, error)
        return None
    return masks if masks.ndim == 3 else None


def video_fps(record) -> float:
    if record.fps:
        return float(record.fps)
    import cv2

    capture = cv2.VideoCapture(str(record.path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return float(fps) if fps and np.isfinite(fps) and fps > 0 else 50.0


def _file_fps(path) -> float:
    from unilvseg.data.index import VideoRecord

    return video_fps(VideoRecord(file_name=Path(path).stem, path=Path(path), split="external"))


def write_video_outputs(
    layout: Layout, record, masks: np.ndarray, frames: np.ndarray | None, settings: Settings, only_missing: bool,
    labels: np.ndarray | None = None,
) -> list[str]:
    """Write what a finished video needs; the masks file goes after PNGs and overlay, the part last.

    The masks file marks the video as done, so everything derived from the prediction alone
    (PNGs, part) can be restored from it on a re-run; ``only_missing`` does just that.
    Returns the names of what was written.
    """
    from unilvseg.io import save_npz, save_png, write_csv

    from unilvseg.evaluation.overlay import write_overlay

    written = []
    for path, frame in traced_pngs(layout, record, len(masks)).items():
        if not (only_missing and path.is_file()):
            save_png(path, masks[frame].astype(np.uint8) * 255)
            written.append("png")
    if settings.overlay_format:
        path = layout.overlay(record.file_name, settings.overlay_format)
        if not (only_missing and path.is_file()):
            if frames is None:
                from unilvseg.data.video import read_video

                frames = read_video(record.path)
            write_overlay(path, frames, masks, video_fps(record))
            written.append("overlay")
    elif not only_missing:
        # An overlay of earlier masks would contradict the new ones. Only the files this tool
        # writes are removed, by exact name (never a pattern built from the video's name).
        for fmt in OVERLAY_FORMATS:
            layout.overlay(record.file_name, fmt).unlink(missing_ok=True)
    if not only_missing:
        # A multi-structure checkpoint adds the label map beside the LV masks (as ReferenceMasks do).
        extra = {} if labels is None else {"labels": labels.astype(np.uint8)}
        save_npz(layout.masks(record.file_name), masks=masks.astype(np.uint8), **extra)
        written.append("masks")
    if labels is not None:
        # Every structure's measurements over every beat (unilvseg.evaluation.chambers), one row.
        import pandas as pd

        from unilvseg.evaluation.chambers import CHAMBER_FIELDS, chamber_measurements

        measured = chamber_measurements(labels, mm_per_pixel=settings.mm_per_pixel, fps=video_fps(record))
        write_csv(pd.DataFrame([{"FileName": record.file_name, **measured}], columns=["FileName", *CHAMBER_FIELDS]),
                  layout.chamber_part(record.file_name), float_format="%.6g")
        written.append("chambers")
    if not (only_missing and layout.part(record.file_name).is_file()):
        rows = video_rows(record, masks, settings.mm_per_pixel, settings.ed_es_rule, video_fps(record))
        write_csv(rows, layout.part(record.file_name), float_format="%.6g")
        written.append("part")
    return written


# -- prediction --------------------------------------------------------------------------------
@dataclass
class RunSummary:
    predicted: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0


def _load_network(checkpoint: str, device, frames: int | None = None):
    from unilvseg.tasks.checkpoints import load_task

    task = load_task(checkpoint, frames=frames)
    network = task.network.to(device).eval()
    return network, {**dict(task.hparams), **task.data_settings}


def _make_settings(args, hparams, device=None) -> Settings:
    from unilvseg.evaluation.inference import default_batch_size, default_stride

    frames = int(hparams["frames"])
    stride = default_stride(frames) if args.stride is None else int(args.stride)
    if stride > frames:
        raise UserError(f"--stride {stride}: must not exceed the checkpoint's clip length ({frames} frames), or frames between windows would be skipped")
    size = tuple(args.size) if args.size else training_size(hparams)
    return Settings(
        checkpoint=str(Path(args.checkpoint).resolve()),
        frames=frames,
        stride=stride,
        batch_size=int(args.batch_size) if args.batch_size is not None else default_batch_size(device),
        threshold=float(args.threshold),
        mean=[float(v) for v in (args.mean or hparams.get("mean") or ECHONET_MEAN)],
        std=[float(v) for v in (args.std or hparams.get("std") or ECHONET_STD)],
        mm_per_pixel=float(args.mm_per_pixel),
        size=(int(size[0]), int(size[1])),
        overlay_format=args.overlay_format if args.overlay else None,
        amp={"auto": None, "on": True, "off": False}[args.amp],
        ed_es_rule=getattr(args, "ed_es_rule", DEFAULT_ED_ES_RULE),
        structures=tuple(hparams.get("structures") or ("lv",)),
    )


def segment(network, frames: np.ndarray, settings: Settings, device) -> tuple[np.ndarray, np.ndarray | None]:
    """LV masks (T, H, W) and, for a multi-structure checkpoint, the label map of every structure
    (unilvseg.data.structures numbering; None for an LV-only one)."""
    from unilvseg.data.structures import STRUCTURES
    from unilvseg.evaluation.inference import label_map_from_probabilities, masks_from_probabilities, predict_video

    channels = len(settings.structures)
    probabilities = predict_video(
        network, frames, settings.frames, settings.stride, settings.batch_size, settings.mean, settings.std, device,
        size=settings.size, amp=settings.amp, channels=channels,
    )
    if channels == 1:
        return masks_from_probabilities(probabilities, settings.threshold), None
    labels = label_map_from_probabilities(probabilities, [STRUCTURES[s] for s in settings.structures], settings.threshold)
    return masks_from_probabilities(probabilities[0], settings.threshold), labels


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """``--shard K/N`` as (K, N); ``auto`` reads a launcher's environment (torchrun, Lightning or
    SLURM: RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS); None (or auto outside a launcher) = all videos."""
    import os

    if shard is None:
        return None
    if shard == "auto":
        for rank_name, size_name in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
            if os.environ.get(size_name):
                shard = f"{os.environ.get(rank_name, '0')}/{os.environ[size_name]}"
                break
        else:
            return None
    index, _, count = str(shard).partition("/")
    try:
        index, count = int(index), int(count)
    except ValueError:
        raise UserError(f"--shard {shard}: expected K/N, e.g. 0/4 for the first of 4 processes (or auto)") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {shard}: need 0 <= K < N")
    return (index, count) if count > 1 else None


def shards_finished(layout: Layout, index: int, count: int) -> bool:
    """Mark shard ``index`` of ``count`` finished; True once every shard is (then this process
    merges the tables; two shards finishing together both merge the same complete set)."""
    from unilvseg.io import write_text

    folder = layout.root / "shards"
    write_text(f"{index}/{count}\n", folder / f"{index}-of-{count}.done")
    return all((folder / f"{k}-of-{count}.done").is_file() for k in range(count))


def _check_save_dir(layout: Layout, settings: Settings, overwrite: bool, data_path: str | None = None) -> None:
    """One save folder holds one checkpoint's predictions under one set of settings.

    ``run.json`` also names the EchoNet folder the videos came from, so evaluate_bootstrap.py
    finds the tracings without ``--data_dir``."""
    import json

    from unilvseg.io import write_json

    run_file = layout.root / "run.json"
    if run_file.is_file():
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, ValueError):
            previous = {}
        current = settings.guarded()
        changed = [name for name in GUARDED_SETTINGS if name in previous and previous[name] != current[name]]
        has_masks = layout.masks_dir.is_dir() and any(layout.masks_dir.glob("*.npz"))
        if changed and has_masks:
            detail = "; ".join(f"{name}: {previous[name]} -> {current[name]}" for name in changed)
            if not overwrite:
                raise UserError(
                    f"--save_dir {layout.root}: holds predictions made with other settings ({detail}); "
                    "pass --overwrite to predict again, or choose another --save_dir"
                )
            log.warning("%s: settings changed (%s); videos not in this run keep their earlier outputs", layout.root, detail)
    extra = {"data_path": str(Path(data_path).resolve())} if data_path else {}
    write_json({**settings.guarded(), "frames": settings.frames, **extra}, run_file)


def _outputs_missing(layout: Layout, record, settings: Settings) -> bool:
    """Whether a video with a masks file lacks any other output (then the masks are read to restore it)."""
    expected = [layout.part(record.file_name)]
    expected += [layout.png(record.file_name, frame, phase) for phase, frame in record.traced_frames.items()]
    if settings.overlay_format:
        expected.append(layout.overlay(record.file_name, settings.overlay_format))
    return not all(path.is_file() for path in expected)


def predict_records(records, network, settings: Settings, device, layout: Layout, overwrite: bool) -> RunSummary:
    """Predict (or restore the missing outputs of) every record; decoding runs one video ahead."""
    from unilvseg.data.video import read_video

    summary = RunSummary()
    todo = []
    for record in records:
        masks_path = layout.masks(record.file_name)
        if overwrite or not masks_path.is_file():
            todo.append(record)
            continue
        if not _outputs_missing(layout, record, settings):
            summary.already_done.append(record.file_name)
            continue
        masks = load_masks(masks_path)
        if masks is None:
            todo.append(record)
            continue
        try:
            restored = write_video_outputs(layout, record, masks, None, settings, only_missing=True)
        except DataError as error:  # only the overlay decodes the video here
            summary.failed[record.file_name] = str(error)
            log.warning("skipping %s (overlay): %s", record.file_name, error)
            continue
        summary.already_done.append(record.file_name)
        if restored:
            summary.repaired.append(record.file_name)
            log.info("%s: already predicted; restored %s", record.file_name, ", ".join(restored))
    if summary.already_done:
        log.info("%d video(s) already predicted in %s (use --overwrite to redo them)", len(summary.already_done), layout.root)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending: Future | None = reader.submit(read_video, todo[0].path) if todo else None
        for position, record in enumerate(todo):
            current, pending = pending, (reader.submit(read_video, todo[position + 1].path) if position + 1 < len(todo) else None)
            try:
                frames = current.result()
            except DataError as error:
                summary.failed[record.file_name] = str(error)
                log.warning("skipping %s: %s", record.file_name, error)
                continue
            video_started = time.perf_counter()
            masks, labels = segment(network, frames, settings, device)
            write_video_outputs(layout, record, masks, frames, settings, only_missing=False, labels=labels)
            summary.predicted.append(record.file_name)
            summary.frames += len(frames)
            log.info(
                "[%d/%d] %s: %d frames in %.2f s", position + 1, len(todo), record.file_name, len(frames), time.perf_counter() - video_started
            )
    summary.seconds = time.perf_counter() - started
    return summary


def _records(args) -> tuple[list, str, str | None]:
    """The videos to segment, a description of where they come from, and the EchoNet folder
    (None for --external_dir / --video_path)."""
    from unilvseg.data.index import DatasetIndex, VideoRecord, index_video_folder, load_index, only_view

    if args.video_path:
        path = Path(args.video_path)
        if not path.is_file():
            raise DataError(f"--video_path {path}: file not found")
        return [VideoRecord(file_name=path.stem, path=path, split="external")], str(path), None
    if args.external_dir:
        index: DatasetIndex = index_video_folder(args.external_dir)
        return index.records, str(args.external_dir), None
    data_path = args.data_path
    if data_path is None:
        from unilvseg.data import phantom

        data_path = phantom.default_data_path()
        log.info("no --data_path: using the built-in phantom at %s", data_path)
    index = load_index(data_path, split=args.split, require_tracings=False)
    if args.view is None:
        return index.records, f"{data_path} ({args.split})", str(data_path)
    index = only_view(index, args.view.lower())
    return index.records, f"{data_path} ({args.split}, view {args.view.upper()})", str(data_path)


def predict_one_file(args, network, settings: Settings, device) -> int:
    """--video_path X --save_path OUT.npz: masks and volumes of one video in one file."""
    from unilvseg.data.video import read_video
    from unilvseg.evaluation.overlay import write_overlay
    from unilvseg.evaluation.volumes import volumes_from_masks
    from unilvseg.io import save_npz

    frames = read_video(args.video_path)
    started = time.perf_counter()
    masks, labels = segment(network, frames, settings, device)
    volumes = volumes_from_masks(masks, mm_per_pixel=settings.mm_per_pixel, rule=settings.ed_es_rule, fps=_file_fps(args.video_path))
    save_path = Path(args.save_path)
    save_npz(
        save_path,
        masks=masks,
        areas=volumes["areas"],
        edv=np.float64(volumes["edv"]),
        esv=np.float64(volumes["esv"]),
        ef=np.float64(volumes["ef"]),
        ed_frame=np.int64(volumes["ed_frame"]),
        es_frame=np.int64(volumes["es_frame"]),
        ef_rule=np.str_(volumes["rule"]),
        **({} if labels is None else {"labels": labels}),
    )
    log.info(
        "%s: %d frames in %.2f s; EF %.1f %% (EDV %.1f mL, ESV %.1f mL, ED frame %d, ES frame %d) -> %s",
        args.video_path, len(frames), time.perf_counter() - started, volumes["ef"], volumes["edv"], volumes["esv"],
        volumes["ed_frame"], volumes["es_frame"], save_path,
    )
    if settings.overlay_format:
        from unilvseg.data.index import VideoRecord

        record = VideoRecord(file_name=Path(args.video_path).stem, path=Path(args.video_path), split="external")
        overlay = write_overlay(save_path.with_suffix(f".{settings.overlay_format}"), frames, masks, video_fps(record))
        log.info("overlay: %s", overlay)
    return 0


def run_prediction(args: PredictOptions) -> int:
    """Predict as ``args`` says; returns 0, or raises UserError/DataError (nothing predicted)."""
    from unilvseg.evaluation.inference import resolve_device
    from unilvseg.io import remove_stale_temporaries

    check_options(args)
    import os

    local_rank = os.environ.get("LOCAL_RANK")
    if args.shard is not None and args.device == "auto" and local_rank and local_rank.isdigit():
        import torch

        # One process per GPU (torchrun, srun): each takes its own device.
        if torch.cuda.is_available() and torch.cuda.device_count() > int(local_rank):
            args.device = f"cuda:{local_rank}"
    device = resolve_device(args.device)
    network, hparams = _load_network(args.checkpoint, device, args.frames)
    if args.compile:
        network.compile()
    settings = _make_settings(args, hparams, device)
    log.info(
        "checkpoint %s: %s, %d-frame clips, stride %d, input %dx%d, device %s",
        args.checkpoint, hparams.get("encoder"), settings.frames, settings.stride, *settings.size, device,
    )
    if args.save_path:
        return predict_one_file(args, network, settings, device)

    records, source, data_path = _records(args)
    shard = parse_shard(args.shard)
    if shard is not None:
        index, count = shard
        # Every process lists the same videos in the same (sorted) order and takes its stride:
        # each video belongs to exactly one shard, and no two shards write one file.
        records = sorted(records, key=lambda r: r.file_name)[index::count]
        source = f"{source} (shard {index}/{count})"
    layout = Layout(Path(args.save_dir))
    created = not layout.root.exists()
    layout.root.mkdir(parents=True, exist_ok=True)
    # Shards share the folder: a temporary younger than an hour may be another shard's file in flight.
    removed = remove_stale_temporaries(layout.root, min_age_s=3600.0 if shard is not None else 0.0)
    if removed:
        log.info("%s: removed %d unfinished temporary file(s) of an interrupted run", layout.root, removed)
    _check_save_dir(layout, settings, args.overwrite, data_path)
    log.info("%s: %d video(s) -> %s", source, len(records), layout.root)

    summary = predict_records(records, network, settings, device, layout, args.overwrite)
    if shard is not None and not shards_finished(layout, *shard):
        log.info("shard %d/%d done; size.csv/volumes.csv (and biplane.csv) are written by the last shard to finish", *shard)
        return 0
    videos, rows = assemble_tables(layout)
    biplane = assemble_biplane(layout, data_path, settings)
    rate = f", {summary.frames / summary.seconds:.1f} frames/s" if summary.seconds > 0 and summary.frames else ""
    log.info(
        "predicted %d video(s) (%d frames%s), %d already done, %d failed; size.csv/volumes.csv: %d videos, %d rows",
        len(summary.predicted), summary.frames, rate, len(summary.already_done), len(summary.failed), videos, rows,
    )
    if biplane is not None:
        log.info("%s", biplane.describe())
    if summary.failed:
        log.warning("videos that could not be decoded (%d): %s", len(summary.failed), ", ".join(sorted(summary.failed)))
    if not summary.predicted and not summary.already_done:
        if created:  # made by this run and holding nothing but empty tables: leave no trace
            import shutil

            shutil.rmtree(layout.root, ignore_errors=True)
        raise DataError(f"no video could be predicted from {source}: {len(summary.failed)} failed to decode ({', '.join(sorted(summary.failed)[:5])})")
    return 0
