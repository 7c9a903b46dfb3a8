"""Super-image networks: a clip of T = g*g frames is tiled into one g x g mosaic image and
segmented by a 2D segmentation-models-pytorch U-Net, then cut back into frames.

Frame ``t`` sits at tile row ``t // g``, column ``t % g`` (row-major), so neighbouring frames are
neighbouring tiles and the 2D receptive field sees temporal context across tile borders.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from unilvseg.errors import UserError

log = logging.getLogger("unilvseg")

WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".tar")


def grid_size(frames: int) -> int | None:
    """The side of the square tile grid for ``frames`` frames, or None when it is not square."""
    if frames < 1:
        return None
    side = math.isqrt(frames)
    return side if side * side == frames else None


def tile_clip(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``(B, C, H, W, g*g)`` clip -> ``(B, C, g*H, g*W)`` mosaic, frames placed row-major."""
    batch, channels, height, width, frames = x.shape
    if frames != grid * grid:
        raise ValueError(f"tile_clip: {frames} frames do not fill a {grid}x{grid} grid")
    tiles = x.reshape(batch, channels, height, width, grid, grid)  # (..., tile row, tile col)
    return tiles.permute(0, 1, 4, 2, 5, 3).reshape(batch, channels, grid * height, grid * width)


def untile_clip(y: torch.Tensor, grid: int, frames: int) -> torch.Tensor:
    """Inverse of :func:`tile_clip`: ``(B, C, g*H, g*W)`` -> ``(B, C, H, W, frames)``."""
    if frames != grid * grid:
        raise ValueError(f"untile_clip: {frames} frames do not fill a {grid}x{grid} grid")
    batch, channels, tiled_height, tiled_width = y.shape
    if tiled_height % grid or tiled_width % grid:
        raise ValueError(f"untile_clip: {tiled_height}x{tiled_width} mosaic does not split into a {grid}x{grid} grid")
    height, width = tiled_height // grid, tiled_width // grid
    tiles = y.reshape(batch, channels, grid, height, grid, width)
    return tiles.permute(0, 1, 3, 5, 2, 4).reshape(batch, channels, height, width, frames)


@dataclass
class EncoderWeightsReport:
    """What loading a local encoder weights file did."""

    path: str
    loaded: int
    missing: list[str]
    unexpected: list[str]

    def summary(self) -> str:
        return (
            f"encoder weights {self.path}: loaded {self.loaded} tensors, "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected"
        )


def looks_like_path(weights: str) -> bool:
    return os.sep in weights or weights.lower().endswith(WEIGHT_FILE_SUFFIXES) or Path(weights).exists()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"encoder weights file {path} not found (--encoder_weights)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt/foreign files
        raise UserError(
            f"encoder weights file {path} is not a readable PyTorch state dict ({type(error).__name__}: {error})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"encoder weights file {path} holds a {type(state).__name__}, expected a state dict")
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


def load_encoder_weights(encoder: nn.Module, path: str | os.PathLike) -> EncoderWeightsReport:
    """Load a local state dict into ``encoder``; keys may carry an ``encoder.``/``model.encoder.``/
    ``network.encoder.`` prefix (a whole smp model or one of our checkpoints)."""
    path = Path(path)
    state = read_state_dict(path)
    target = encoder.state_dict()
    prefixes = ("", "encoder.", "model.encoder.", "network.encoder.", "network.model.encoder.")
    best = max(prefixes, key=lambda p: sum(k[len(p):] in target for k in state if k.startswith(p)))
    stripped = {k[len(best):]: v for k, v in state.items() if k.startswith(best)}
    matching = {k: v for k, v in stripped.items() if k in target}
    if not matching:
        raise UserError(
            f"encoder weights file {path}: none of its {len(state)} tensors match the encoder "
            f"(it expects names like {next(iter(target))!r}); was it saved from a different encoder?"
        )
    wrong_shape = [k for k, v in matching.items() if v.shape != target[k].shape]
    if wrong_shape:
        name = wrong_shape[0]
        raise UserError(
            f"encoder weights file {path}: {len(wrong_shape)} tensors have the wrong shape, e.g. {name} "
            f"{tuple(matching[name].shape)} vs {tuple(target[name].shape)} (different encoder or in_channels?)"
        )
    result = encoder.load_state_dict(matching, strict=False)
    unexpected = sorted(set(stripped) - set(target)) + sorted(set(state) - {best + k for k in stripped})
    report = EncoderWeightsReport(str(path), len(matching), list(result.missing_keys), unexpected)
    (log.warning if report.missing else log.info)(report.summary())
    return report


class SuperImageNet(nn.Module):
    """2D smp U-Net applied to the tiled clip; input/output ``(B, C, H, W, T)`` with T = g*g."""

    def __init__(
        self,
        encoder: str,
        in_channels: int = 3,
        out_channels: int = 1,
        frames: int = 25,
        depth: int = 5,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        encoder_weights: str | None = None,
        encoder_name: str | None = None,
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        grid = grid_size(frames)
        if grid is None:
            raise UserError(f"--frames {frames} is not a perfect square; super-image encoders tile frames into a square grid")
        self.encoder_name = encoder_name or encoder
        self.smp_encoder = encoder
        self.frames = frames
        self.grid = grid
        named_weights = None
        if encoder_weights is not None and not looks_like_path(encoder_weights):
            named_weights = encoder_weights  # e.g. "imagenet": smp downloads it (the user asked for it)
        try:
            unet = smp.Unet(
                encoder_name=encoder,
                encoder_depth=depth,
                encoder_weights=named_weights,
                decoder_channels=tuple(decoder_channels),
                in_channels=in_channels,
                classes=out_channels,
            )
        except (KeyError, ValueError, OSError, RuntimeError) as error:
            if named_weights is None:
                raise
            raise UserError(
                f"--encoder_weights {named_weights!r} for encoder {encoder} could not be loaded "
                f"({type(error).__name__}: {error}); pass a local weights file instead"
            ) from None
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.head = unet.segmentation_head
        self.output_stride = int(getattr(self.encoder, "output_stride", 2**depth))
        # smp < 0.5 takes decoder(*features), newer versions decoder(features).
        parameters = inspect.signature(self.decoder.forward).parameters.values()
        self._decoder_star = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
        self.encoder_weights_report = None
        if encoder_weights is not None and named_weights is None:
            self.encoder_weights_report = load_encoder_weights(self.encoder, encoder_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[-1] != self.frames:
            raise UserError(
                f"{self.encoder_name} was built for (B, C, H, W, {self.frames}) clips (--frames {self.frames}), "
                f"got shape {tuple(x.shape)}"
            )
        height, width = x.shape[2], x.shape[3]
        if (height * self.grid) % self.output_stride or (width * self.grid) % self.output_stride:
            raise UserError(
                f"image size {height}x{width} tiled {self.grid}x{self.grid} gives "
                f"{height * self.grid}x{width * self.grid}, not divisible by {self.output_stride} "
                f"(the output stride of encoder {self.smp_encoder})"
            )
        mosaic = tile_clip(x, self.grid)
        features = self.encoder(mosaic)
        decoded = self.decoder(*features) if self._decoder_star else self.decoder(features)
        return untile_clip(self.head(decoded), self.grid, self.frames)
