"""Anatomical-position self-supervision (after Bai et al., MICCAI 2019), adapted to apical echo.

Bai et al. pre-train a cardiac MR segmentation network by predicting, for every pixel, which
tile of a grid laid out along the heart's own axes it lies in; the grid comes from the scan
geometry, not from labels. Apical echo has no companion view to define those axes, so here they
come from the echo itself, label-free:

1. The ultrasound fan of the clip (:func:`unilvseg.labelfree.classical.detect_sector`).
2. The LV's centre and long axis: the classical weak LV labels of the clip
   (:func:`~unilvseg.labelfree.classical.weak_lv_labels`) averaged over its frames (a temporal
   summary: one soft LV per clip), whose centroid is the centre and whose principal axis,
   pointing away from the transducer, is the long axis (the apex-to-centroid line instead when
   the soft LV is roundish or its principal axis is more than 45 degrees off that line).
   Semi-axes are 2·sqrt(eigenvalue) (exact for a uniform ellipse).
   When the weak labels fail (empty in most frames, tiny, or centred outside the fan) the
   geometry falls back to the fan alone: axis = fan bisector, centre at a fixed fraction of the
   fan radius from the apex on the LV side, semi-axes fixed fractions of the radius.
3. Position classes (:func:`position_map`): ``along_bins x across_bins`` tiles in the LV's frame
   of reference, in units of its semi-axes (with 4 bins: beyond the apex end, apical half,
   basal half, beyond the base; the same across), inside the fan; class 0 outside the fan.
   Every pixel gets exactly one class, and the map is equivariant to rotations of the frame
   (it is defined only by the centre and axis, which rotate with the image).
   ``position_grid="polar"`` tiles the same frame of reference in rings and sectors around the
   LV centre instead: ``rings`` bands of normalised radius (the inner ones tile the LV ellipse,
   the last one is everything beyond it) times ``sectors`` equal angles.

The network predicts each pixel's class (``out_channels = 1 + along_bins*across_bins``) with
cross-entropy. One map per clip (the geometry is estimated once per video and cached); the
augmentation warps it with the clip like any mask, filling revealed corners with class 0.

Multi-task option: ``reconstruction_weight > 0`` also trains temporal-masking reconstruction in
the same network: the input clip has ``round(mask_ratio*T)`` frames blanked (as in
:class:`~unilvseg.tasks.ssl.TemporalMaskingTask`), three extra output channels reconstruct the
original clip, and the loss is ``CE + reconstruction_weight * MSE``.

Either way the checkpoint transfers to :class:`~unilvseg.tasks.weak.WeakSegmentationTask` with
``train_weak.py --checkpoint``: everything but the head matches, the head (different channel
count) is skipped and starts at zero.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unilvseg.errors import DataError, UserError
from unilvseg.labelfree.classical import SectorGeometry, WeakLabelParams, detect_sector, gray_stack, weak_lv_labels
from unilvseg.tasks import register_task
from unilvseg.tasks.base import ClipTask
from unilvseg.tasks.ssl import LOSS_ON, blank_frames, choose_masked_frames, masked_frame_count

log = logging.getLogger("unilvseg")

FIGURE_NAME = "position_maps.png"

# Fan-only fallback geometry, in fractions of the fan radius. The classical stage expects the LV
# centroid at 0.43 R from the apex and the cavity from 0.22 R to 0.8 R (half-length ~0.3 R); an
# LV occupying ~17 % of a 40-degree fan then has a half-width of ~0.13 R.
FALLBACK_CENTRE_DISTANCE = 0.45
FALLBACK_HALF_LENGTH = 0.30
FALLBACK_HALF_WIDTH = 0.13
# The weak labels must find an LV in at least this fraction of the clip's frames, covering at
# least this fraction of the fan, for the LV geometry to be trusted over the fan-only fallback.
MIN_LV_FRAME_FRACTION = 0.5
MIN_LV_AREA_FRACTION = 0.02
# Principal axis trusted only for an elongated soft LV (semi-axis ratio) pointing roughly away
# from the transducer (degrees off the apex-to-centroid line); else that line is the axis.
MIN_AXIS_RATIO = 1.3
MAX_AXIS_DEVIATION = 45.0


@dataclass(frozen=True)
class PositionGeometry:
    """The frame of reference of the position grid.

    ``centre`` is (x, y) in pixels; ``axis_angle`` is the direction of the long axis (pointing
    away from the transducer) in radians from the image's downward vertical, positive towards
    the image's right (the convention of :class:`SectorGeometry`); ``half_length`` and
    ``half_width`` are the LV's semi-axes along and across it, in pixels; ``source`` says
    whether the geometry came from the weak LV labels (``"lv"``) or the fan alone (``"sector"``).
    """

    centre: tuple[float, float]
    axis_angle: float
    half_length: float
    half_width: float
    source: str = "lv"

    @property
    def direction(self) -> np.ndarray:
        """Unit vector (x, y) of the long axis."""
        return np.array([math.sin(self.axis_angle), math.cos(self.axis_angle)])


def bin_edges(bins: int) -> np.ndarray:
    """Interior bin edges in semi-axis units: the inner bins tile [-1, 1], the outer two are open.

    4 bins -> edges -1, 0, 1 (beyond one end, first half, second half, beyond the other end);
    2 bins -> 0; 1 bin -> none.
    """
    if bins < 1:
        raise UserError(f"position bins must be >= 1, got {bins}")
    if bins == 1:
        return np.zeros(0)
    if bins == 2:
        return np.zeros(1)
    return np.linspace(-1.0, 1.0, bins - 1)


POSITION_GRIDS = ("cartesian", "polar")


def ring_edges(rings: int) -> np.ndarray:
    """Interior ring edges in normalised radius (1 = the LV ellipse): the inner rings tile [0, 1]
    evenly, the last is open. 1 ring -> none; 2 -> 1; 3 -> 0.5, 1."""
    if rings < 1:
        raise UserError(f"--rings must be >= 1, got {rings}")
    return np.linspace(0.0, 1.0, rings)[1:]


def grid_bins(position_grid: str = "cartesian", along_bins: int = 4, across_bins: int = 4, rings: int = 3, sectors: int = 8) -> tuple[int, int]:
    """The two bin counts of a position grid: (along, across) or (rings, sectors)."""
    if position_grid not in POSITION_GRIDS:
        raise UserError(f"--position_grid {position_grid!r}: expected one of {', '.join(POSITION_GRIDS)}")
    if position_grid == "polar":
        if rings < 1 or sectors < 1:
            raise UserError(f"--rings {rings} / --sectors {sectors}: need at least 1 of each")
        return rings, sectors
    return along_bins, across_bins


def n_position_classes(along_bins: int, across_bins: int) -> int:
    """Classes of a position map: the grid tiles plus background (class 0)."""
    count = 1 + along_bins * across_bins
    if along_bins < 1 or across_bins < 1 or count > 255:
        raise UserError(
            f"--along_bins {along_bins} x --across_bins {across_bins}: need at least 1 bin each "
            "and at most 254 tiles (class maps are uint8)"
        )
    return count


def position_map(
    sector_mask: np.ndarray, geometry: PositionGeometry, along_bins: int = 4, across_bins: int = 4,
    position_grid: str = "cartesian", rings: int = 3, sectors: int = 8,
) -> np.ndarray:
    """uint8 (H, W) class map: 0 outside the fan, ``1 + along*across_bins + across`` inside.

    ``along`` counts from the transducer end of the long axis; ``across`` from the side that is
    on the image's left when the axis points down. The tiles are bounded in units of the LV's
    semi-axes, and the outermost bins extend to infinity so every fan pixel has a tile.
    ``position_grid="polar"``: ``1 + ring*sectors + sector``, rings of normalised radius
    (:func:`ring_edges`) and sectors of equal angle counted from the transducer end of the axis,
    turning first towards negative ``across``.
    """
    first_bins, second_bins = grid_bins(position_grid, along_bins, across_bins, rings, sectors)
    sector_mask = np.asarray(sector_mask, dtype=bool)
    if sector_mask.ndim != 2:
        raise UserError(f"sector mask must be (H, W), got shape {sector_mask.shape}")
    n_position_classes(first_bins, second_bins)
    if not (geometry.half_length > 0 and geometry.half_width > 0):
        raise UserError(f"position geometry needs positive semi-axes, got {geometry.half_length}, {geometry.half_width}")
    height, width = sector_mask.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs - geometry.centre[0], ys - geometry.centre[1]
    ux, uy = geometry.direction
    # (uy, -ux) is the axis turned a quarter towards the image's right when the axis points
    # down; a rotation of the image turns both together, so the map rotates with it.
    along = (dx * ux + dy * uy) / geometry.half_length
    across = (dx * uy - dy * ux) / geometry.half_width
    if position_grid == "polar":
        first = np.searchsorted(ring_edges(rings), np.hypot(along, across), side="right")
        # Angle from the transducer end of the axis (along < 0), turning towards negative across.
        angle = np.mod(np.arctan2(across, along) + np.pi, 2 * np.pi)
        second = np.minimum((angle / (2 * np.pi / sectors)).astype(np.int64), sectors - 1)
    else:
        first = np.searchsorted(bin_edges(along_bins), along, side="right")
        second = np.searchsorted(bin_edges(across_bins), across, side="right")
    classes = 1 + first * second_bins + second
    return np.where(sector_mask, classes, 0).astype(np.uint8)


def sector_fallback_geometry(sector: SectorGeometry, params: WeakLabelParams | None = None) -> PositionGeometry:
    """Geometry from the fan alone: bisector as the axis, centre on the LV side of it."""
    params = params or WeakLabelParams()
    # The LV centroid lies slightly to the image's right of the bisector (lv_angle, degrees).
    side = sector.axis_angle + math.radians(params.lv_angle)
    distance = FALLBACK_CENTRE_DISTANCE * sector.radius
    centre = (sector.apex[0] + distance * math.sin(side), sector.apex[1] + distance * math.cos(side))
    return PositionGeometry(
        centre=(float(centre[0]), float(centre[1])),
        axis_angle=float(sector.axis_angle),
        half_length=FALLBACK_HALF_LENGTH * sector.radius,
        half_width=FALLBACK_HALF_WIDTH * sector.radius,
        source="sector",
    )


def lv_geometry(masks: np.ndarray, sector: SectorGeometry) -> PositionGeometry | None:
    """Centre, long axis and semi-axes of the clip's average weak LV mask; None when untrustworthy."""
    masks = np.asarray(masks) > 0
    present = masks.any(axis=(1, 2))
    if present.mean() < MIN_LV_FRAME_FRACTION:
        return None
    weights = masks[present].mean(axis=0, dtype=np.float64)  # soft LV: fraction of frames
    total = weights.sum()
    if total < MIN_LV_AREA_FRACTION * max(sector.area, 1):
        return None
    height, width = weights.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = (weights * xs).sum() / total, (weights * ys).sum() / total
    dx, dy = xs - cx, ys - cy
    covariance = np.array(
        [[(weights * dx * dx).sum(), (weights * dx * dy).sum()], [(weights * dx * dy).sum(), (weights * dy * dy).sum()]]
    ) / total
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    axis = eigenvectors[:, 1]
    # The long axis points away from the transducer: from the apex through the LV.
    outward = np.array([cx - sector.apex[0], cy - sector.apex[1]])
    outward /= max(float(np.hypot(*outward)), 1e-6)
    if axis @ outward < 0:
        axis = -axis
    # A roundish soft LV has no reliable principal axis, and one far off the apex-to-LV line is
    # a weak label gone astray: the line from the apex through the centroid is the LV's axis then.
    elongated = eigenvalues[1] >= MIN_AXIS_RATIO**2 * max(eigenvalues[0], 1e-9)
    if not elongated or axis @ outward < math.cos(math.radians(MAX_AXIS_DEVIATION)):
        axis = outward
    row, col = int(round(cy)), int(round(cx))
    if not (0 <= row < height and 0 <= col < width and sector.mask[row, col]):
        return None
    radius = sector.radius
    half_length = float(np.clip(2.0 * math.sqrt(max(eigenvalues[1], 0.0)), 0.1 * radius, 0.6 * radius))
    half_width = float(np.clip(2.0 * math.sqrt(max(eigenvalues[0], 0.0)), 0.05 * radius, half_length))
    return PositionGeometry((float(cx), float(cy)), float(math.atan2(axis[0], axis[1])), half_length, half_width, "lv")


def estimate_geometry(frames: np.ndarray, sector: SectorGeometry | None = None) -> tuple[PositionGeometry, SectorGeometry]:
    """Position geometry and fan of a clip (uint8 (T, H, W, 3) or gray (T, H, W)), label-free."""
    gray = gray_stack(frames)
    if sector is None:
        sector = detect_sector(gray)
    geometry = None
    try:
        masks, _ = weak_lv_labels(gray, sector)
        geometry = lv_geometry(masks, sector)
    except (UserError, ValueError, np.linalg.LinAlgError) as error:
        log.debug("weak LV labels failed (%s); using the fan-only position geometry", error)
    if geometry is None:
        geometry = sector_fallback_geometry(sector)
    return geometry, sector


class AnatomicalTargets:
    """:class:`~unilvseg.data.dataset.ClipTargets` of position maps, one map per video.

    The geometry of a video is estimated from the first clip seen of it (a clip of 16-32 frames
    covers most of a beat, so the average LV is stable) and kept in memory, keyed by the video's
    path and frame size; each clip then only copies its map. ``cache=False`` re-estimates per clip.
    """

    def __init__(
        self, along_bins: int = 4, across_bins: int = 4, cache: bool = True, position_grid: str = "cartesian", rings: int = 3, sectors: int = 8
    ):
        self.n_classes = n_position_classes(*grid_bins(position_grid, along_bins, across_bins, rings, sectors))
        self.grid = {"along_bins": along_bins, "across_bins": across_bins, "position_grid": position_grid, "rings": rings, "sectors": sectors}
        self.cache = cache
        self._maps: dict[tuple, tuple[np.ndarray, PositionGeometry]] = {}

    def class_map(self, key, frames: np.ndarray) -> tuple[np.ndarray, PositionGeometry]:
        """(uint8 (H, W) class map, geometry) for a video, computed from ``frames`` on first use."""
        if self.cache and key in self._maps:
            return self._maps[key]
        geometry, sector = estimate_geometry(frames)
        result = (position_map(sector.mask, geometry, **self.grid), geometry)
        if self.cache:
            self._maps[key] = result
        return result

    @staticmethod
    def key(record, frame_shape) -> tuple:
        return (str(getattr(record, "path", record)), tuple(frame_shape[:2]))

    def cached_geometry(self, record, frame_shape) -> PositionGeometry | None:
        """The geometry cached for ``record`` at frame size (H, W), if any."""
        entry = self._maps.get(self.key(record, frame_shape))
        return entry[1] if entry else None

    def __call__(self, record, frame_index, frames, phase=None) -> dict:
        frames = np.asarray(frames)
        classes, _ = self.class_map(self.key(record, frames.shape[1:3]), frames)
        count = len(frame_index)
        return {
            "mask": np.repeat(classes[None], count, axis=0),
            "labelled": np.ones(count, dtype=bool),
            "phase": np.zeros(count, dtype=np.int64),
        }


def save_position_figure(examples: list[tuple[np.ndarray, np.ndarray, str]], path: str | Path, n_classes: int) -> Path:
    """PNG of example frames (uint8 (H, W) gray) above their class maps, written atomically."""
    # The object-oriented Figure draws with Agg without touching pyplot's global backend state.
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    from unilvseg.io import atomic_path

    if not examples:
        raise UserError("no example clips to draw position maps from")
    tiles = max(n_classes - 1, 1)
    colours = colormaps["tab20"].resampled(tiles)(np.arange(tiles))
    colormap = ListedColormap(np.vstack([[0.0, 0.0, 0.0, 1.0], colours])[:n_classes])
    figure = Figure(figsize=(2.6 * len(examples), 5.4))
    axes = figure.subplots(2, len(examples), squeeze=False)
    for column, (frame, classes, title) in enumerate(examples):
        axes[0, column].imshow(frame, cmap="gray", vmin=0, vmax=255)
        axes[0, column].set_title(title, fontsize=7)
        axes[1, column].imshow(frame, cmap="gray", vmin=0, vmax=255)
        overlay = np.ma.masked_equal(classes, 0)
        axes[1, column].imshow(overlay, cmap=colormap, vmin=-0.5, vmax=n_classes - 0.5, alpha=0.45, interpolation="nearest")
        # Tile borders in white, so the grid's frame of reference is visible on any colour.
        border = np.zeros(classes.shape, bool)
        border[:-1] |= classes[:-1] != classes[1:]
        border[:, :-1] |= classes[:, :-1] != classes[:, 1:]
        axes[1, column].imshow(np.ma.masked_where(~border, border), cmap=ListedColormap(["white"]), alpha=0.8, interpolation="nearest")
        for axis in axes[:, column]:
            axis.set_axis_off()
    axes[1, 0].set_title(f"position classes (0 = outside the fan, {n_classes} classes)", fontsize=7, loc="left")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path


@register_task
class AnatomicalPositionTask(ClipTask):
    """Per-pixel anatomical position classification (cross-entropy), optionally multi-task with
    temporal-masking reconstruction (``reconstruction_weight > 0``; see the module docstring).

    Output channels: ``1 + along_bins*across_bins`` position logits, then 3 reconstruction
    channels when multi-task. Validation logs ``val_loss``, ``val_position_ce`` and the pixel
    accuracy ``val_position_accuracy``.
    """

    task_name = "anatomical_position"

    def __init__(
        self,
        along_bins: int = 4,
        across_bins: int = 4,
        reconstruction_weight: float = 0.0,
        mask_ratio: float = 0.6,
        loss_on: str = "all",
        position_grid: str = "cartesian",
        rings: int = 3,
        sectors: int = 8,
        **network,
    ):
        network.pop("out_channels", None)
        n_classes = n_position_classes(*grid_bins(position_grid, along_bins, across_bins, rings, sectors))
        if not (reconstruction_weight >= 0 and math.isfinite(reconstruction_weight)):
            raise UserError(f"--reconstruction_weight must be a finite number >= 0, got {reconstruction_weight}")
        if loss_on not in LOSS_ON:
            raise UserError(f"--loss_on {loss_on!r}: expected one of {LOSS_ON}")
        super().__init__(out_channels=n_classes + (3 if reconstruction_weight > 0 else 0), **network)
        self.n_classes = n_classes
        # Only checked when used: pure position training ignores --mask_ratio.
        self.masked_count = masked_frame_count(self.hparams.frames, mask_ratio) if reconstruction_weight > 0 else 0
        self.save_hyperparameters()
        self.targets = AnatomicalTargets(along_bins, across_bins, position_grid=position_grid, rings=rings, sectors=sectors)

    def data_targets(self) -> dict:
        """Keyword arguments for :class:`~unilvseg.data.dataset.EchoNetDataModule` (one shared cache)."""
        return {"train_targets": self.targets, "val_targets": self.targets}

    # -- loss ---------------------------------------------------------------------------------
    def position_loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        video = batch["video"]
        target = batch["mask"][:, 0].long()  # (B, H, W, T) class indices
        labelled = batch.get("labelled")
        if labelled is None:
            labelled = torch.ones(video.shape[0], video.shape[-1], dtype=torch.bool, device=video.device)
        weight = float(self.hparams.reconstruction_weight)
        hidden = None
        inputs = video
        if weight > 0:
            hidden = choose_masked_frames(video.shape[0], video.shape[-1], self.masked_count, generator, video.device)
            inputs = blank_frames(video, hidden)
        output = self(inputs).float()
        logits = output[:, : self.n_classes]
        per_pixel = F.cross_entropy(logits, target, reduction="none")  # (B, H, W, T)
        per_frame = per_pixel.mean(dim=(1, 2))  # (B, T)
        if not labelled.any():
            return None, {}
        cross_entropy = per_frame[labelled].mean()
        correct = (logits.argmax(dim=1) == target).float().mean(dim=(1, 2))[labelled].mean()
        parts = {"position_ce": cross_entropy.detach(), "position_accuracy": correct.detach()}
        loss = cross_entropy
        if weight > 0:
            error = (output[:, self.n_classes :] - video.float()).pow(2).mean(dim=(1, 2, 3))  # (B, T)
            reconstruction = error.mean() if self.hparams.loss_on == "all" else error[hidden].mean()
            parts["mse_masked"] = error[hidden].mean().detach()
            loss = loss + weight * reconstruction
        return loss, parts

    def compute_loss(self, batch):
        return self.position_loss(batch)

    def validation_step(self, batch, batch_idx):
        if "video" not in batch:
            return
        # A fixed frame mask per validation batch keeps the curve comparable across epochs.
        loss, parts = self.position_loss(batch, torch.Generator().manual_seed(batch_idx))
        if loss is None:
            return
        size = batch["video"].shape[0]
        self.log("val_loss", loss, prog_bar=True, batch_size=size)
        for name, value in parts.items():
            self.log(f"val_{name}", value, prog_bar=name == "position_accuracy", batch_size=size)

    # -- run-folder figure --------------------------------------------------------------------
    def on_fit_start(self):
        if not self.trainer.is_global_zero:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "dataset"):
            return
        try:
            examples = self.position_examples(datamodule)
        except DataError as error:
            log.warning("no position-map figure: %s", error)
            return
        if examples:
            path = save_position_figure(examples, Path(self.trainer.default_root_dir) / FIGURE_NAME, self.n_classes)
            log.info("position maps of %d example clips: %s", len(examples), path)

    def position_examples(self, datamodule, count: int = 4) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """Middle frames and class maps of the first few validation (then training) clips, unaugmented."""
        examples = []
        for split in ("val", "train"):
            dataset = datamodule.dataset(split, train=False)
            for i in range(min(len(dataset), count - len(examples))):
                item = dataset[i]
                if item is None:
                    continue
                middle = item["video"].shape[-1] // 2
                pixels = item["video"][..., middle] * dataset.std[0] + dataset.mean[0]  # (3, H, W) in [0, 1]
                frame = (pixels.mean(dim=0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                classes = item["mask"][0, ..., middle].numpy().astype(np.uint8)
                geometry = self.targets.cached_geometry(dataset.items[i].record, frame.shape)
                source = geometry.source if geometry is not None else "?"
                examples.append((frame, classes, f"{split}: {item['file_name']} ({source} axis)"))
            if len(examples) >= count:
                break
        return examples
