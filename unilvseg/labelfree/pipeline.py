"""Label-free LV segmentation end to end (after Ferreira et al.), with no manual tracing used.

Stages, each leaving its outputs in the run folder::

    labels/round0/        stage 1-2: classical weak labels + QC of every train/val video
    stages/early/         stage 3:   "early learning" on the QC-passed frames of round 0
    labels/round1/        stage 4:   the early model's predictions, snapped to the image's blood
                                     pool, anatomically refined and QC'd
    stages/round1/                   retrained on round-1 labels
    ...                              (``rounds`` times)
    checkpoints/final.ckpt           the last stage's best checkpoint (predict.py, evaluate)
    evaluation/<stage>.csv           per-video Dice counts, for the report only
    report.csv, report.md            per stage: pseudo-label QC pass rate, Dice vs tracings/references

``labels/round<k>/<FileName>.npz`` holds ``masks`` (uint8 (T, H, W) at the video's own size,
every frame, passed or not) and ``passed`` (bool (T,)); ``qc.csv`` has one row per frame with
the reasons it failed; ``summary.json`` (written last: the round is complete) has pass rates.

No tracing reaches training: the index is read with ``require_tracings=False``, clips are placed
at random (not around traced frames), targets come only from the label files, and validation
(hence ``best.ckpt``) scores the pseudo-labels of the val split. Tracings and ``ReferenceMasks``
are read by :func:`evaluate_stage` for the report, after each stage has finished training.

Rounds start from the previous stage's best weights with a fresh warm-up + cosine schedule
(``round_init="previous"``, default): on a CPU budget a few epochs of fine-tuning reach what
training from scratch needs the early-learning budget again for; ``round_init="scratch"``
re-initialises the network each round (closer to noisy-student training, slower).

Running again with the same ``run_dir`` and the same settings reuses every completed stage (a
killed run continues where it stopped); other settings in an existing run folder are an error.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from unilvseg.data.dataset import ECHONET_MEAN, ECHONET_STD
from unilvseg.data.index import reference_masks
from unilvseg.errors import DataError, UserError
from unilvseg.data.structures import STRUCTURES
from unilvseg.untrusted import check_name
from unilvseg.io import save_npz, write_csv, write_json, write_text

log = logging.getLogger("unilvseg")

ROUND_INITS = ("previous", "scratch")
# Which checkpoint a stage hands on: "best" by val pseudo-label Dice, or "last" (the end of its
# budget). On a small val split the pseudo-label Dice of a few random clips is noise: on the
# 228-video real-echo folder (1 VAL video) "best" once picked the 4th of 12 epochs, a network that
# had not yet learnt the per-frame boundary (docs/real-echo.md, ablation); "last" is never early.
STAGE_CHECKPOINTS = ("best", "last")
COMPLETE = "summary.json"  # written last in a label round folder
VIEW_NAMES = {"a4c": "apical 4-chamber", "a2c": "apical 2-chamber", "sax": "parasternal short-axis"}
STAGE_DONE = "stage.json"  # written last in a stage folder


@dataclass(frozen=True)
class QCSettings:
    """Thresholds of :func:`unilvseg.labelfree.qc.quality_control` used for every label round.

    The area bounds agree with the stage-1 labels of the 225 untraced real EchoNet videos
    (``../shared/data/echonet-real``, labels only, no tracing): per video, the 95th-percentile
    label area is a median 0.216 of the fan (robust log-SD 0.31), the 5th-percentile one 0.101
    (log-SD 0.39). 0.45 is +2.4 SD of the large (end-diastolic) areas, where whole-heart labels
    start; 0.03 is -3 SD of the small (end-systolic) ones.
    """

    min_area_frac: float = 0.03
    max_area_frac: float = 0.45
    min_solidity: float = 0.75
    max_area_jump: float = 0.35
    max_centroid_shift: float = 0.12
    # 0 = off. Else frames whose label is longer than this x the clip's short (end-systolic)
    # length along the LV axis fail: they carry the left atrium (see qc.quality_control).
    max_length_ratio: float = 0.0

    def __post_init__(self):
        if not 0 <= self.min_area_frac < self.max_area_frac <= 1:
            raise UserError(
                f"--qc_min_area {self.min_area_frac} / --qc_max_area {self.max_area_frac}: need 0 <= min < max <= 1"
            )
        if not 0 <= self.min_solidity <= 1:
            raise UserError(f"--qc_min_solidity must be in [0, 1], got {self.min_solidity}")
        if self.max_length_ratio < 0 or 0 < self.max_length_ratio <= 1:
            raise UserError(f"--qc_max_length_ratio must be 0 (off) or > 1, got {self.max_length_ratio}")
        if self.max_area_jump <= 0 or self.max_centroid_shift <= 0:
            raise UserError(
                f"--qc_max_area_jump {self.max_area_jump} / --qc_max_centroid_shift {self.max_centroid_shift}: must be > 0"
            )

    def check(self, masks: np.ndarray, sector):
        from unilvseg.labelfree.qc import quality_control

        return quality_control(masks, sector, **asdict(self))


@dataclass
class PipelineConfig:
    """Everything that decides what a label-free run computes (saved as ``pipeline.json``)."""

    data_path: str | None = None
    rounds: int = 1
    early_epochs: int = 20
    round_epochs: int = 10
    round_init: str = "previous"
    stage_checkpoint: str = "last"
    encoder: str = "3d_unet_tiny"
    width: int | None = None
    encoder_weights: str | None = None
    checkpoint: str | None = None  # optional pre-training checkpoint for the early-learning network
    loss: list[str] = field(default_factory=lambda: ["dice", "bce"])  # early learning
    # Self-learning rounds train on the model's own hard masks. With the soft Dice term the
    # masks grew every round (phantom: LV area +7 %, then +5 %, Dice 0.94 -> 0.92 -> 0.90);
    # binary cross-entropy alone keeps a 0.5-thresholded prediction at its label's boundary.
    round_loss: list[str] = field(default_factory=lambda: ["bce"])
    frames: int = 16
    period: int = 1
    size: list[int] = field(default_factory=lambda: [64, 64])
    batch_size: int = 4
    mean: list[float] = field(default_factory=lambda: list(ECHONET_MEAN))
    std: list[float] = field(default_factory=lambda: list(ECHONET_STD))
    augment: bool = True
    train_videos: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    label_stride: int | None = None  # sliding-window step when predicting labels (None: frames // 2)
    threshold: float = 0.5
    # Rounds' pseudo-labels keep only predicted pixels darker than this x the frame's in-fan Otsu
    # threshold (blood pool; see classical.snap_to_blood_pool); 0 turns the snap off.
    pool_scale: float = 1.3
    qc: QCSettings = field(default_factory=QCSettings)
    # Structures the labels and the network cover (unilvseg.data.structures), LV first; None:
    # the view's default (unilvseg.labelfree.views: a4c lv, a2c lv/myo/la, sax lv/myo/rv). For an
    # A4C with more than the LV, round 0 adds the four-chamber label maker's structures to the
    # classical LV (unilvseg.labelfree.four_chamber); later rounds take every structure from the
    # network; quality control, the blood-pool snap and the report stay the LV's.
    structures: list[str] | None = None
    # The echo view of the videos (FileList's View column): it picks the stage-1 label maker
    # (unilvseg.labelfree.views); videos of other views are skipped, and counted in the log.
    view: str = "a4c"
    # Trainer pass-through (limits make tiny CI runs possible).
    limit_train_batches: float | int | None = None
    limit_val_batches: float | int | None = None
    max_steps: int = -1
    accelerator: str = "auto"
    devices: str = "auto"
    precision: str | None = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None

    def __post_init__(self):
        if isinstance(self.qc, dict):
            self.qc = QCSettings(**self.qc)
        self.size = [int(v) for v in self.size]
        for flag, names in (("--loss", self.loss), ("--round_loss", self.round_loss)):
            if not names or any(name not in ("dice", "bce") for name in names):
                raise UserError(f"{flag} {' '.join(names)}: choose one or both of dice bce")
        if self.rounds < 0:
            raise UserError(f"--rounds must be >= 0, got {self.rounds}")
        if self.early_epochs < 1:
            raise UserError(f"--early_epochs must be >= 1, got {self.early_epochs}")
        if self.rounds and self.round_epochs < 1:
            raise UserError(f"--round_epochs must be >= 1, got {self.round_epochs}")
        if self.stage_checkpoint not in STAGE_CHECKPOINTS:
            raise UserError(f"--stage_checkpoint {self.stage_checkpoint!r}: expected one of {', '.join(STAGE_CHECKPOINTS)}")
        if self.round_init not in ROUND_INITS:
            raise UserError(f"--round_init {self.round_init!r}: expected one of {', '.join(ROUND_INITS)}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise UserError(f"--size must be two positive integers H W, got {self.size}")
        if self.label_stride is not None and not 1 <= self.label_stride <= self.frames:
            raise UserError(f"--label_stride {self.label_stride}: must be between 1 and --frames {self.frames}")
        if not 0 < self.threshold < 1:
            raise UserError(f"--threshold must be between 0 and 1, got {self.threshold}")
        if self.pool_scale < 0:
            raise UserError(f"--pool_scale must be >= 0 (0 = off), got {self.pool_scale}")
        from unilvseg.labelfree.views import LONG_AXIS_VIEWS, check_view, view_structures

        self.view = check_view(self.view)
        self.structures = list(view_structures(self.view, self.structures))
        if self.qc.max_length_ratio > 0 and self.view not in LONG_AXIS_VIEWS:
            raise UserError(
                f"--qc_max_length_ratio {self.qc.max_length_ratio:g} with --view {self.view}: the rule measures the LV "
                "along its long axis, which a short-axis view does not show; leave it at 0 (off)"
            )

    def fingerprint(self) -> dict:
        """The settings that change results (data_path resolved, so the same folder matches)."""
        values = asdict(self)
        values["data_path"] = str(Path(self.data_path).resolve()) if self.data_path else None
        if values["structures"] == ["lv"]:
            del values["structures"]  # runs from before --structures (LV only) keep their fingerprint
        if values["view"] == "a4c":
            del values["view"]  # and runs from before --view (A4C) theirs
        return json.loads(json.dumps(values))


class NoPseudoLabels(DataError):
    """No training frame of a label round passed quality control."""


@dataclass
class PipelineResult:
    run_dir: Path
    final_checkpoint: Path
    report: "object"  # pandas DataFrame, one row per stage
    stage_checkpoints: dict[str, Path]


# ----------------------------------------------------------------------------- label files


def label_path(label_dir: Path, file_name: str) -> Path:
    """``<label_dir>/<FileName>.npz``; the name must be one path component (unilvseg.untrusted)."""
    return Path(label_dir) / f"{check_name(file_name, str(label_dir))}.npz"


def read_labels(label_dir: str | Path, file_name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(masks uint8 (T, H, W), passed bool (T,))`` of one video, or None if it has no label file."""
    path = label_path(Path(label_dir), file_name)
    if not path.is_file():
        return None
    try:
        with np.load(path) as archive:
            masks, passed = archive["masks"], archive["passed"]
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path}: unreadable pseudo-label file, expected keys masks and passed ({error})") from error
    if masks.ndim != 3 or passed.shape != (masks.shape[0],):
        raise DataError(f"{path}: masks {masks.shape} and passed {passed.shape} do not describe the same frames")
    return masks.astype(np.uint8, copy=False), passed.astype(bool, copy=False)


class PseudoLabelTargets:
    """:class:`~unilvseg.data.dataset.ClipTargets` from one label round: a frame is ``labelled``
    exactly when its pseudo-label passed QC.

    Label files are read once per video and resized (nearest) to the training size ``size``.
    A video without a label file (it failed to decode while labelling) gives an unlabelled clip.
    """

    def __init__(self, label_dir: str | Path, size: Sequence[int] = (112, 112)):
        self.label_dir = Path(label_dir)
        self.size = (int(size[0]), int(size[1]))
        self._labels: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    def labels(self, file_name: str) -> tuple[np.ndarray, np.ndarray] | None:
        if file_name not in self._labels:
            loaded = read_labels(self.label_dir, file_name)
            if loaded is None:
                log.warning("%s: no pseudo-labels for %s; its clips are not trained on", self.label_dir, file_name)
            elif loaded[0].shape[1:] != self.size:
                from unilvseg.data.video import resize_frames

                loaded = (resize_frames(loaded[0], self.size, nearest=True), loaded[1])
            self._labels[file_name] = loaded
        return self._labels[file_name]

    def __call__(self, record, frame_index, frames, phase=None) -> dict:
        frame_index = np.asarray(frame_index)
        count = len(frame_index)
        loaded = self.labels(record.file_name)
        if loaded is None:
            return {
                "mask": np.zeros((count,) + self.size, np.uint8),
                "labelled": np.zeros(count, bool),
                "phase": np.zeros(count, np.int64),
            }
        masks, passed = loaded
        if count and int(frame_index.max()) >= len(masks):
            raise DataError(
                f"{label_path(self.label_dir, record.file_name)}: labels for {len(masks)} frames, but the video "
                f"has frame {int(frame_index.max())} (video changed since labelling? use a new --run_dir)"
            )
        return {"mask": masks[frame_index], "labelled": passed[frame_index], "phase": np.zeros(count, np.int64)}


def _round_dir(run_dir: Path, round_index: int) -> Path:
    return run_dir / "labels" / f"round{round_index}"


def _round_complete(label_dir: Path) -> dict | None:
    marker = label_dir / COMPLETE
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- masks per video


def classical_masks(frames: np.ndarray) -> tuple[np.ndarray, object]:
    """Stage 1: weak LV labels of a whole video, and its fan."""
    from unilvseg.labelfree.classical import weak_lv_labels

    masks, info = weak_lv_labels(frames)
    return masks, info["sector"]


class NetworkSegmenter:
    """A trained checkpoint as ``frames (T, H, W, 3) uint8 -> raw label map uint8 (T, H, W)``
    (LV = 1, as an LV-only network's masks; other structures by unilvseg.data.structures)."""

    def __init__(self, checkpoint: str | Path, config: PipelineConfig):
        from unilvseg.evaluation.inference import resolve_device
        from unilvseg.tasks.checkpoints import load_task

        self.device = resolve_device("auto")
        task = load_task(checkpoint)
        self.network = task.network.to(self.device).eval()
        self.frames = int(task.hparams["frames"])
        self.size = tuple(task.hparams.get("size", config.size))
        self.structures = tuple(getattr(task, "structures", ("lv",)))
        self.config = config

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        from unilvseg.data.structures import STRUCTURES
        from unilvseg.evaluation.inference import label_map_from_probabilities, masks_from_probabilities, predict_video

        probabilities = predict_video(
            self.network,
            np.ascontiguousarray(frames),
            self.frames,
            stride=self.config.label_stride,
            # Not predict.py's CPU default of 1 (measured for 3d_unet at 112x112): the small
            # label-free networks at 64x64 ran 1.3x faster at batch 8 on CPU, bit-identical output.
            batch_size=8,
            mean=self.config.mean,
            std=self.config.std,
            device=self.device,
            size=self.size,
            channels=len(self.structures),
        )
        if len(self.structures) == 1:
            return masks_from_probabilities(probabilities, self.config.threshold)
        return label_map_from_probabilities(probabilities, [STRUCTURES[s] for s in self.structures], self.config.threshold)


# ----------------------------------------------------------------------------- reporting helpers


def score_video(record, masks: np.ndarray, data_path: Path) -> dict:
    """Dice counts of one video's masks against its tracings and reference masks (report only)."""
    from unilvseg.data.tracings import tracing_mask
    from unilvseg.evaluation.metrics import dice_counts

    row = {"FileName": record.file_name, "split": record.split, "frames": int(len(masks))}
    traced = [(name, frame) for name, frame in record.traced_frames.items() if 0 <= frame < len(masks)]
    inter = pred = true = 0
    for name, frame in traced:
        rows = record.ed_rows if name == "ED" else record.es_rows
        truth = tracing_mask(rows, masks.shape[1], masks.shape[2])
        i, p, t = dice_counts(masks[frame], truth)
        inter, pred, true = inter + int(i), pred + int(p), true + int(t)
    row.update(traced_frames=len(traced), traced_inter=inter, traced_pred=pred, traced_true=true)
    reference = reference_masks(data_path, record.file_name)
    if reference is not None and reference.shape == masks.shape:
        i, p, t = dice_counts(masks, reference)
        row.update(reference_frames=int(len(masks)), ref_inter=int(i.sum()), ref_pred=int(p.sum()), ref_true=int(t.sum()))
    else:
        if reference is not None:
            log.warning("%s: ReferenceMasks %s vs masks %s; not scored", record.file_name, reference.shape, masks.shape)
        row.update(reference_frames=0, ref_inter=0, ref_pred=0, ref_true=0)
    return row


def _pooled(table, prefix: str) -> float:
    from unilvseg.evaluation.metrics import pooled_dice

    if table is None or not len(table):
        return float("nan")
    return pooled_dice(table[f"{prefix}_inter"].to_numpy(), table[f"{prefix}_pred"].to_numpy(), table[f"{prefix}_true"].to_numpy())


# ----------------------------------------------------------------------------- the pipeline


class LabelFreePipeline:
    """Runs (or continues) a label-free run in ``run_dir``; see the module docstring."""

    def __init__(self, config: PipelineConfig, run_dir: str | Path, logger: str = "csv", progress_bar: bool = False,
                 cache_dir: str | Path | None = "auto", num_workers: int = 0, cache_max_gb: float | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.logger = logger
        self.progress_bar = progress_bar
        self.cache_dir = cache_dir
        self.cache_max_gb = cache_max_gb
        self.num_workers = num_workers
        self._datamodule = None
        self.stopped: str | None = None  # why self-learning ended before --rounds, if it did

    # -- data ------------------------------------------------------------------------------
    def datamodule(self, targets: PseudoLabelTargets | None = None, stage_index: int = 0):
        from unilvseg.data.dataset import EchoNetDataModule

        config = self.config
        return EchoNetDataModule(
            data_path=config.data_path,
            scheme="dense",  # random clips over whole videos; index read with require_tracings=False
            frames=config.frames,
            period=config.period,
            batch_size=config.batch_size,
            num_workers=self.num_workers,
            mean=config.mean,
            std=config.std,
            augment=config.augment,
            train_targets=targets,
            val_targets=targets,
            train_videos=config.train_videos,
            subset_seed=config.seed,
            cache_dir=self.cache_dir,
            cache_max_gb=self.cache_max_gb,
            size=tuple(config.size),
            # Each stage draws its own clips; all of them a function of (seed, stage, epoch, item).
            seed=config.seed + 1000 * stage_index,
            view=config.view,
        )

    @property
    def data(self):
        """A DataModule used only for its index and records (same selection as training)."""
        if self._datamodule is None:
            self._datamodule = self.datamodule()
        return self._datamodule

    def frames_of(self, record) -> np.ndarray:
        from unilvseg.data.video import FrameCache

        if not hasattr(self, "_native_cache"):
            # Labels live at the video's own size. The cache keys entries by the frame size they
            # hold, so for EchoNet's 112x112 videos these are the entries every task shares.
            self._native_cache = FrameCache(self.cache_dir, size=None, max_gb=self.cache_max_gb)
        return np.asarray(self._native_cache.frames(record.path))

    def label_records(self) -> list:
        return self.data.records("train") + self.data.records("val")

    def eval_records(self) -> list:
        records = []
        for split in ("val", "test"):
            records += self.data.index.split(split).records
        return records

    # -- run --------------------------------------------------------------------------------
    def check_run_dir(self) -> None:
        path = self.run_dir / "pipeline.json"
        fingerprint = self.config.fingerprint()
        if path.is_file():
            try:
                previous = json.loads(path.read_text())
            except (OSError, ValueError):
                previous = None
            if isinstance(previous, dict):
                previous.setdefault("pool_scale", 0.0)  # runs from before the snap existed had none
                if isinstance(previous.get("qc"), dict):  # nor this QC rule (off then)
                    previous["qc"].setdefault("max_length_ratio", 0.0)
                previous.setdefault("stage_checkpoint", "best")
                if previous.get("view") == "a4c":
                    del previous["view"]  # the default view is left out of fingerprints (see fingerprint)
            if previous != fingerprint:
                changed = sorted(k for k in fingerprint if previous is None or previous.get(k) != fingerprint[k])
                raise UserError(
                    f"--run_dir {self.run_dir}: holds a label-free run with other settings "
                    f"({', '.join(changed) or 'unreadable pipeline.json'}); choose a new --run_dir"
                )
            log.info("continuing label-free run in %s (completed stages are reused)", self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(fingerprint, path)

    def run(self) -> PipelineResult:
        import torch

        config = self.config
        started = time.perf_counter()
        # Everything that can fail on user input fails before anything is written.
        self.data.index  # noqa: B018
        train_records, val_records = self.data.records("train"), self.data.records("val")
        from unilvseg.models import check_input_shape

        check_input_shape(config.encoder, config.size[0], config.size[1], config.frames)
        self.check_run_dir()
        log.info("label-free: %d train + %d val videos to label, %d round(s)", len(train_records), len(val_records), config.rounds)

        timings: dict[str, float] = {}
        # Stage 1-2: classical labels + QC (train/val), scored on val/test for the report.
        tick = time.perf_counter()
        self.produce_labels(0, segmenter=None)
        self.evaluate_stage("stage1_labels", segmenter=None)
        timings["stage1_labels"] = time.perf_counter() - tick

        checkpoints: dict[str, Path] = {}
        previous: Path | None = None
        stage_names = ["early"] + [f"round{k}" for k in range(1, config.rounds + 1)]
        for index, stage in enumerate(stage_names):
            tick = time.perf_counter()
            previous = self.train_stage(stage, index, label_round=index, init_from=previous)
            checkpoints[stage] = previous
            segmenter = NetworkSegmenter(previous, config)
            if index < config.rounds:  # the next round's labels come from this stage's model
                try:
                    self.produce_labels(index + 1, segmenter=segmenter)
                except NoPseudoLabels as error:
                    # The model's masks all failed QC (it has degenerated, or the data are not
                    # A4C): nothing to learn from, so self-learning ends with the model it has.
                    self.stopped = f"self-learning stopped after stage {stage}: {error}"
                    log.warning("%s; the final checkpoint is that stage's", self.stopped)
            self.evaluate_stage(stage, segmenter=segmenter)
            timings[stage] = time.perf_counter() - tick
            del segmenter
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if self.stopped:
                break

        final = self.run_dir / "checkpoints" / "final.ckpt"
        final.parent.mkdir(parents=True, exist_ok=True)
        from unilvseg.io import atomic_path

        with atomic_path(final) as tmp:
            shutil.copyfile(previous, tmp)
        report = self.write_report(["stage1_labels"] + list(checkpoints), timings, time.perf_counter() - started)
        log.info("final checkpoint: %s", final)
        log.info("report: %s", self.run_dir / "report.md")
        return PipelineResult(self.run_dir, final, report, checkpoints)

    # -- stage 1-2 and 4: labels ------------------------------------------------------------
    def network_labels(self, frames: np.ndarray, segmenter: NetworkSegmenter):
        """Stage 4 for one video: ``(raw LV, refined LV, sector, label map)``. The network's LV
        keeps only pixels the image shows as blood (``pool_scale``), then gets the classical
        labels' anatomical clean-up (one LV-like blob, closed, holes filled); QC follows. The
        label map is the network's, with the refined LV in place of its raw LV (LV-only: the
        refined LV itself). The "LV-like blob" is chosen by the apical views' position priors for
        a4c and a2c, and as the largest blob for sax (a short-axis LV is not where an apical one is)."""
        from unilvseg.labelfree.classical import detect_sector, gray_stack, refine_mask, snap_to_blood_pool

        gray = gray_stack(frames)
        sector = detect_sector(gray)
        predicted = segmenter(frames)
        raw = (predicted == STRUCTURES["lv"]).astype(np.uint8)
        masks = snap_to_blood_pool(raw, gray, sector, self.config.pool_scale) if self.config.pool_scale else raw
        if self.config.view == "sax":
            refined = refine_mask(masks, None) & sector.mask[None]
        else:
            refined = refine_mask(masks, sector)
        label_map = np.where(predicted == STRUCTURES["lv"], 0, predicted).astype(np.uint8)
        label_map[refined > 0] = STRUCTURES["lv"]
        return raw, refined, sector, label_map

    def produce_labels(self, round_index: int, segmenter: NetworkSegmenter | None) -> dict:
        """Write ``labels/round<k>/`` for every train/val video (skipped when already complete)."""
        import pandas as pd

        label_dir = _round_dir(self.run_dir, round_index)
        done = _round_complete(label_dir)
        if done is not None:
            log.info("labels round %d: reusing %s (pass rate %.3f)", round_index, label_dir, done["pass_rate"])
            return done
        tick = time.perf_counter()
        tables, failed = [], {}
        for record in self.label_records():
            try:
                frames = self.frames_of(record)
            except DataError as error:
                log.warning("labels round %d: skipping %s (%s)", round_index, record.file_name, error)
                failed[record.file_name] = str(error)
                continue
            if segmenter is None:
                from unilvseg.labelfree.views import view_label_map

                masks, sector, label_map = view_label_map(frames, self.config.view, self.config.structures)
            else:
                _, masks, sector, label_map = self.network_labels(frames, segmenter)
            qc = self.config.qc.check(masks, sector)
            save_npz(label_path(label_dir, record.file_name), masks=label_map.astype(np.uint8), passed=qc.passed)
            table = qc.to_frame()
            table.insert(0, "split", record.split)
            table.insert(0, "FileName", record.file_name)
            tables.append(table)
        if not tables:
            raise DataError(f"{self.data.root}: no train/val video could be decoded for labelling")
        qc_table = pd.concat(tables, ignore_index=True)
        write_csv(qc_table, label_dir / "qc.csv", float_format="%.5g")
        by_split = qc_table.groupby("split")["passed"].mean()
        summary = {
            "round": round_index,
            "source": "classical" if segmenter is None else "network",
            "videos": int(qc_table["FileName"].nunique()),
            "frames": int(len(qc_table)),
            "passed_frames": int(qc_table["passed"].sum()),
            "pass_rate": float(qc_table["passed"].mean()),
            "pass_rate_train": float(by_split.get("train", float("nan"))),
            "pass_rate_val": float(by_split.get("val", float("nan"))),
            "failed_videos": failed,
            "seconds": time.perf_counter() - tick,
        }
        train_passed = qc_table.loc[qc_table["split"] == "train", "passed"].sum()
        if train_passed == 0:
            raise NoPseudoLabels(
                f"label round {round_index}: no training frame passed quality control (see {label_dir / 'qc.csv'}); "
                f"nothing to train on. Check the videos are {VIEW_NAMES[self.config.view]} views (--view) or loosen "
                "the --qc_* thresholds"
            )
        write_json(summary, label_dir / COMPLETE)  # last: marks the round complete
        log.info(
            "labels round %d: %d/%d frames passed QC (%.1f%%) in %.1f s",
            round_index, summary["passed_frames"], summary["frames"], 100 * summary["pass_rate"], summary["seconds"],
        )
        return summary

    # -- stage 3-4: training ----------------------------------------------------------------
    def train_stage(self, stage: str, stage_index: int, label_round: int, init_from: Path | None) -> Path:
        """Train one stage on ``labels/round<label_round>``; returns the checkpoint to carry on with."""
        import lightning as L

        from unilvseg.tasks.label_free import LabelFreeTask
        from unilvseg.tasks.transfer import network_state, read_checkpoint
        from unilvseg.training import make_trainer

        stage_dir = self.run_dir / "stages" / stage
        marker = stage_dir / STAGE_DONE
        if marker.is_file():
            chosen = self.run_dir / json.loads(marker.read_text())["checkpoint"]
            if chosen.is_file():
                log.info("stage %s: reusing %s", stage, chosen)
                return chosen
        config = self.config
        epochs = config.early_epochs if stage == "early" else config.round_epochs
        L.seed_everything(config.seed + stage_index, workers=True, verbose=False)
        task = LabelFreeTask(
            loss=config.loss if stage == "early" else config.round_loss,
            checkpoint=config.checkpoint if stage == "early" else None,
            size=config.size,
            label_round=label_round,
            encoder=config.encoder,
            frames=config.frames,
            width=config.width,
            encoder_weights=config.encoder_weights,
            lr=config.lr,
            weight_decay=config.weight_decay,
            structures=None if config.structures == ["lv"] else config.structures,
        )
        if init_from is not None and config.round_init == "previous":
            task.network.load_state_dict(network_state(read_checkpoint(init_from)))
        targets = PseudoLabelTargets(_round_dir(self.run_dir, label_round), config.size)
        datamodule = self.datamodule(targets, stage_index)
        if stage_dir.exists():
            shutil.rmtree(stage_dir)  # an unfinished stage restarts cleanly (its seed makes it identical)
        trainer = make_trainer(
            stage_dir,
            monitor=task.monitor,
            mode="max",
            epochs=epochs,
            logger=self.logger,
            progress_bar=self.progress_bar,
            accelerator=config.accelerator,
            devices=config.devices,
            precision=config.precision,
            limit_train_batches=config.limit_train_batches,
            limit_val_batches=config.limit_val_batches,
            max_steps=config.max_steps,
            accumulate_grad_batches=config.accumulate_grad_batches,
            gradient_clip_val=config.gradient_clip_val,
            deterministic="warn",
        )
        log.info("stage %s: %d epoch(s) on labels/round%d", stage, epochs, label_round)
        trainer.fit(task, datamodule=datamodule)
        best = stage_dir / "checkpoints" / "best.ckpt"
        chosen = best if best.is_file() and config.stage_checkpoint == "best" else stage_dir / "checkpoints" / "last.ckpt"
        if not chosen.is_file():
            raise DataError(f"stage {stage}: training wrote no checkpoint in {stage_dir / 'checkpoints'}")
        score = None
        for callback in trainer.checkpoint_callbacks:
            if callback.monitor and callback.best_model_score is not None:
                score = float(callback.best_model_score)
        write_json(
            {"stage": stage, "label_round": label_round, "epochs": epochs, "checkpoint": str(chosen.relative_to(self.run_dir)),
             "val_pseudo_dice": score, "init": "previous" if init_from is not None and config.round_init == "previous" else "scratch"},
            marker,
        )
        return chosen

    # -- reporting --------------------------------------------------------------------------
    def evaluate_stage(self, stage: str, segmenter: NetworkSegmenter | None):
        """Dice counts of a stage's output on the val/test videos (report only; never trained on)."""
        import pandas as pd

        path = self.run_dir / "evaluation" / f"{stage}.csv"
        if path.is_file():
            return pd.read_csv(path, dtype={"FileName": str})
        rows = []
        for record in self.eval_records():
            try:
                frames = self.frames_of(record)
            except DataError as error:
                log.warning("evaluation %s: skipping %s (%s)", stage, record.file_name, error)
                continue
            if segmenter is None:
                from unilvseg.labelfree.views import view_lv_masks

                masks, sector = view_lv_masks(frames, self.config.view)
                refined = masks
            else:
                masks, refined, sector, _ = self.network_labels(frames, segmenter)
            row = score_video(record, masks, self.data.root)
            row["qc_passed"] = int(self.config.qc.check(refined, sector).passed.sum())
            rows.append(row)
        table = pd.DataFrame(rows)
        write_csv(table, path)
        return table

    def label_quality(self, round_index: int) -> dict:
        """Pass rate of a label round and, where ReferenceMasks exist, Dice of its passed frames."""
        from unilvseg.evaluation.metrics import dice_counts, pooled_dice

        label_dir = _round_dir(self.run_dir, round_index)
        summary = _round_complete(label_dir)
        if summary is None:
            return {}
        sums = np.zeros(3)
        for record in self.label_records():
            loaded = read_labels(label_dir, record.file_name)
            reference = reference_masks(self.data.root, record.file_name)
            if loaded is None or reference is None or reference.shape != loaded[0].shape:
                continue
            masks, passed = loaded
            lv = masks[passed] == STRUCTURES["lv"]  # label files of several structures hold a label map
            counts = dice_counts(lv, reference[passed])
            sums += [c.sum() for c in counts]
        return {
            "pass_rate": summary["pass_rate"],
            "dice_reference": pooled_dice(*sums) if sums[1] + sums[2] > 0 else float("nan"),
        }

    def write_report(self, stages: list[str], timings: dict[str, float], total_seconds: float):
        import pandas as pd

        rows = []
        for index, stage in enumerate(stages):
            evaluation = self.run_dir / "evaluation" / f"{stage}.csv"
            table = pd.read_csv(evaluation, dtype={"FileName": str}) if evaluation.is_file() else None
            row = {"stage": stage}
            if stage == "stage1_labels":
                row["trained_on"] = ""
                made = self.label_quality(0)
                val_pseudo = float("nan")
            else:
                row["trained_on"] = f"round{index - 1}"
                made = self.label_quality(index)  # the labels this stage's model produced (if any)
                marker = self.run_dir / "stages" / stage / STAGE_DONE
                val_pseudo = json.loads(marker.read_text()).get("val_pseudo_dice") if marker.is_file() else None
                val_pseudo = float("nan") if val_pseudo is None else val_pseudo
            row["labels_pass_rate"] = made.get("pass_rate", float("nan"))
            row["labels_dice_reference"] = made.get("dice_reference", float("nan"))
            row["val_pseudo_dice"] = val_pseudo
            for split in ("val", "test"):
                part = table[table["split"] == split] if table is not None and len(table) else None
                row[f"{split}_dice_traced"] = _pooled(part, "traced")
                row[f"{split}_dice_reference"] = _pooled(part, "ref")
                frames = float(part["frames"].sum()) if part is not None and len(part) else 0.0
                row[f"{split}_qc_pass_rate"] = float(part["qc_passed"].sum()) / frames if frames else float("nan")
                row[f"{split}_traced_frames"] = int(part["traced_frames"].sum()) if part is not None and len(part) else 0
            row["seconds"] = timings.get(stage, float("nan"))
            rows.append(row)
        report = pd.DataFrame(rows)
        write_csv(report, self.run_dir / "report.csv", float_format="%.4f")
        write_text(self.report_markdown(report, total_seconds), self.run_dir / "report.md")
        return report

    def report_markdown(self, report, total_seconds: float) -> str:
        config = self.config
        columns = [
            ("stage", "stage"), ("trained_on", "trained on"), ("labels_pass_rate", "labels QC pass"),
            ("labels_dice_reference", "labels Dice vs ref (passed)"), ("val_pseudo_dice", "val Dice vs pseudo"),
            ("val_dice_traced", "val Dice traced"), ("val_dice_reference", "val Dice ref"),
            ("test_dice_traced", "test Dice traced"), ("test_dice_reference", "test Dice ref"),
            ("test_qc_pass_rate", "test QC pass"), ("seconds", "seconds"),
        ]

        lines = [
            "# Label-free LV segmentation report",
            "",
            f"Data: `{self.data.root}`; run: `{self.run_dir}`; total {total_seconds:.0f} s.",
            *([f"**Note: {self.stopped}.**"] if self.stopped else []),
            f"Network {config.encoder} at {config.size[0]}x{config.size[1]}, {config.frames} frames; "
            f"early learning {config.early_epochs} epoch(s), {config.rounds} self-learning round(s) of "
            f"{config.round_epochs} epoch(s), rounds start from {config.round_init} weights; "
            + (f"their labels keep only pixels darker than {config.pool_scale:g} x the in-fan Otsu threshold."
               if config.pool_scale else "no blood-pool snap of their labels."),
            "",
            "No tracing or reference mask was used for training or checkpoint selection; the Dice columns",
            "against tracings (traced ED/ES frames) and ReferenceMasks (every frame) are reported afterwards.",
            "`labels QC pass` / `labels Dice vs ref` describe the pseudo-labels the stage *produced* for",
            "train+val (stage 1: round 0; a model stage: the next round's labels, '-' after the last stage).",
            "Network Dice columns score the raw thresholded masks, as predict.py writes them.",
            "",
            *report_table(report, columns),
        ]
        return "\n".join(lines) + "\n"


def report_table(report, columns: Sequence[tuple[str, str]]) -> list[str]:
    """Markdown lines of ``report`` (one row per stage) for ``columns`` = [(key, title), ...];
    missing or non-finite values print as ``-``."""

    def cell(value) -> str:
        if isinstance(value, float):
            return "-" if not np.isfinite(value) else f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"
        return "-" if value is None or str(value) in ("", "nan") else str(value)

    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for _, row in report.iterrows():
        lines.append("| " + " | ".join(cell(row.get(key)) for key, _ in columns) + " |")
    return lines


def run_pipeline(config: PipelineConfig, run_dir: str | Path, **options) -> PipelineResult:
    """Run (or continue) a label-free run; ``options`` go to :class:`LabelFreePipeline`."""
    return LabelFreePipeline(config, run_dir, **options).run()
