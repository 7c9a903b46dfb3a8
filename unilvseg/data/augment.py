"""Clip augmentation: one random transform per clip, applied to every frame and its masks at once.

The published code loops over frames in Python and calls a 2D transform per frame. Here the
frames (and channels) of a clip are stacked as the channels of one image, ``H x W x (T*C)``,
and warped by a single ``cv2.warpAffine`` call: rotation about the centre and the
pad-and-random-crop shift folded into one affine matrix, bilinear for pixels and
nearest-neighbour for masks, black outside the frame. OpenCV's warp runs on uint8 straight from
the frame cache and measured ~6x faster than one ``torch.grid_sample`` over the same stack
(1.2 ms vs 7.8 ms for 32 RGB frames at 112x112, one thread). Brightness/contrast follow on the
float clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# OpenCV images carry at most 512 channels (CV_CN_MAX): a longer stack (T*C > 512, e.g. more
# than 170 RGB frames per clip) is warped by torch's grid_sample instead.
_MAX_CHANNELS = 512


@dataclass(frozen=True)
class Transform:
    """One clip's random draw: rotation (radians), integer shift (x, y) in pixels, gain, offset."""

    angle: float = 0.0
    shift: tuple[int, int] = (0, 0)
    gain: float = 1.0
    offset: float = 0.0

    @property
    def moves(self) -> bool:
        return bool(self.angle) or any(self.shift)

    def matrix(self, height: int, width: int) -> np.ndarray:
        """2x3 map from output to input pixel coordinates: ``src = R (dst - c) + c - shift``."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        sx, sy = self.shift
        return np.array(
            [[cos, -sin, cx - cos * cx + sin * cy - sx], [sin, cos, cy - sin * cx - cos * cy - sy]], dtype=np.float64
        )


def warp_stack(stack: np.ndarray, matrix: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Warp ``(H, W, N)`` (uint8 or float32) with an output->input affine ``matrix``; zeros outside."""
    height, width, channels = stack.shape
    if channels > _MAX_CHANNELS:
        return _warp_stack_torch(stack, matrix, nearest)
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(np.ascontiguousarray(stack), matrix, (width, height), flags=flags,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(height, width, channels)  # OpenCV drops a single channel axis


def _warp_stack_torch(stack: np.ndarray, matrix: np.ndarray, nearest: bool) -> np.ndarray:
    """The same warp by one ``grid_sample`` call, for stacks beyond OpenCV's channel limit."""
    height, width, channels = stack.shape
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    src_x = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    src_y = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    # grid_sample (align_corners=False) addresses pixel i at normalised (2i + 1) / size - 1.
    grid = np.stack([(2 * src_x + 1) / width - 1, (2 * src_y + 1) / height - 1], axis=-1)
    image = torch.from_numpy(np.ascontiguousarray(stack)).permute(2, 0, 1)[None].float()
    warped = F.grid_sample(image, torch.from_numpy(grid).float()[None], mode="nearest" if nearest else "bilinear",
                           padding_mode="zeros", align_corners=False)[0].permute(1, 2, 0).numpy()
    if np.issubdtype(stack.dtype, np.integer):
        warped = np.rint(warped)
    return warped.astype(stack.dtype)


def _warpable(array: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    """OpenCV warps uint8/uint16/int16/float32/float64; other label dtypes go through float32."""
    if array.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        return array, array.dtype
    return array.astype(np.float32), array.dtype


@dataclass
class ClipAugment:
    rotation: float = 20.0  # degrees, uniform in [-rotation, rotation]
    pad: int = 12  # pad-and-random-crop: shift up to ``pad`` pixels each way, black fill
    brightness: float = 0.1  # additive, on [0, 1] pixels
    contrast: float = 0.2  # multiplicative factor in [1 - contrast, 1 + contrast]

    @property
    def enabled(self) -> bool:
        return bool(self.rotation or self.pad or self.brightness or self.contrast)

    def draw(self, rng: np.random.Generator) -> Transform:
        angle = math.radians(rng.uniform(-self.rotation, self.rotation)) if self.rotation else 0.0
        shift = rng.integers(-self.pad, self.pad + 1, size=2) if self.pad else np.zeros(2, dtype=np.int64)
        gain = rng.uniform(1 - self.contrast, 1 + self.contrast) if self.contrast else 1.0
        offset = rng.uniform(-self.brightness, self.brightness) if self.brightness else 0.0
        return Transform(angle, (int(shift[0]), int(shift[1])), float(gain), float(offset))

    def clip_from_frames(
        self, frames: np.ndarray, masks: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The data-loading path, straight into the network's layout.

        uint8 ``frames (T, H, W, C)`` and ``masks (T, K, H, W)`` (or None) -> float ``clip (C, H, W, T)``
        in [0, 1] and ``masks (K, H, W, T)`` of the input dtype, both contiguous. The clip is
        stacked once as ``H x W x (T*C)`` (the layout OpenCV warps and, viewed as (H, W, T, C),
        one permute from the network's): interleaved, warped and written as float once each.
        """
        transform = self.draw(rng) if self.enabled else Transform()
        return self._clip_from_frames(frames, masks, transform)

    def pixels_from_frames(
        self, frames: np.ndarray, masks: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None, Transform]:
        """The same draw and warp as :meth:`clip_from_frames`, stopped before the float
        conversion: uint8 ``pixels (C, H, W, T)``, masks and the transform whose gain and offset
        :func:`unit_pixels` applies later (on the training device, for a uint8 hand-over)."""
        transform = self.draw(rng) if self.enabled else Transform()
        pixels, masks = self._warp_pixels(frames, masks, transform)
        return pixels, masks, transform

    @staticmethod
    def _clip_from_frames(frames: np.ndarray, masks: np.ndarray | None, transform) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Warp uint8 frames and masks by ``transform`` (anything with moves/matrix/gain/offset)."""
        pixels, masks = ClipAugment._warp_pixels(frames, masks, transform)
        return unit_pixels(pixels, transform.gain, transform.offset), masks

    @staticmethod
    def _warp_pixels(frames: np.ndarray, masks: np.ndarray | None, transform) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 ``pixels (C, H, W, T)`` (a view) and masks ``(K, H, W, T)``, warped by ``transform``."""
        n_frames, height, width, channels = frames.shape
        # (H, W, T*C): cv2.merge interleaves the frames' channels 2x faster than a numpy transpose.
        stacked = cv2.merge(list(frames)) if n_frames * channels <= _MAX_CHANNELS else frames.transpose(1, 2, 0, 3)
        stacked = np.ascontiguousarray(stacked).reshape(height, width, n_frames * channels)
        if transform.moves:
            matrix = transform.matrix(height, width)
            stacked = warp_stack(stacked, matrix)
            if masks is not None:
                masks = ClipAugment._warp_masks(masks, matrix)
        pixels = torch.from_numpy(stacked).view(height, width, n_frames, channels).permute(3, 0, 1, 2)
        if masks is not None:
            masks = torch.from_numpy(np.ascontiguousarray(masks)).permute(1, 2, 3, 0).contiguous()
        return pixels, masks

    def __call__(
        self, video: torch.Tensor, masks: torch.Tensor | None, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """video: float (T, C, H, W) in [0, 1]; masks: (T, K, H, W) (labels or class maps) or None."""
        transform = self.draw(rng) if self.enabled else Transform()
        if transform.moves:
            n_frames, channels, height, width = video.shape
            matrix = transform.matrix(height, width)
            stacked = video.detach().float().permute(2, 3, 0, 1).reshape(height, width, n_frames * channels).numpy()
            warped = warp_stack(stacked, matrix).reshape(height, width, n_frames, channels)
            video = torch.from_numpy(warped).permute(2, 3, 0, 1).to(video.dtype).contiguous()
            if masks is not None:
                masks = torch.from_numpy(self._warp_masks(masks.numpy(), matrix))
        return self._intensity(video, transform), masks

    @staticmethod
    def _warp_masks(masks: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        n_frames, kinds, height, width = masks.shape
        warpable, dtype = _warpable(np.asarray(masks))
        stacked = warpable.transpose(2, 3, 0, 1).reshape(height, width, n_frames * kinds)
        warped = warp_stack(stacked, matrix, nearest=True).reshape(height, width, n_frames, kinds).transpose(2, 3, 0, 1)
        return np.ascontiguousarray(warped).astype(dtype, copy=False)

    @staticmethod
    def _intensity(clip: torch.Tensor, transform: Transform) -> torch.Tensor:
        if transform.gain == 1.0 and transform.offset == 0.0:
            return clip
        return (clip * transform.gain + transform.offset).clamp_(0.0, 1.0)


NO_AUGMENT = ClipAugment(rotation=0.0, pad=0, brightness=0.0, contrast=0.0)


def unit_pixels(pixels: torch.Tensor, gain, offset) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] with the clip's contrast ``gain`` and brightness
    ``offset``: one clip ``(C, H, W, T)`` with Python numbers, or a batch ``(B, C, H, W, T)`` with
    one float32 gain and offset per clip (``(B,)``). Both give the same float32 values: the
    numbers are float32 either way and the operations come in the same order."""
    if pixels.dim() == 4:
        clip = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device)
        clip.copy_(pixels).mul_(gain / 255.0)
        if offset or gain != 1.0:
            clip.add_(offset).clamp_(0.0, 1.0)
        return clip
    shape = (-1,) + (1,) * (pixels.dim() - 1)
    gain = torch.as_tensor(gain, dtype=torch.float64, device=pixels.device)
    offset = torch.as_tensor(offset, dtype=torch.float32, device=pixels.device)
    # gain / 255 in double, then rounded to float32: what the one-clip path's Python scalar becomes.
    clip = pixels.to(torch.float32).mul_((gain / 255.0).to(torch.float32).view(shape))
    # Adding 0 and clamping values already in [0, 1] change nothing, so every clip takes both.
    return clip.add_(offset.view(shape)).clamp_(0.0, 1.0)
