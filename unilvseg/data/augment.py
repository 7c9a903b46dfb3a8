"""Clip augmentation: one random transform per clip, applied to every frame and its masks at once.

The published code loops over frames in Python and calls a 2D transform per frame; here the
whole clip is warped by a single ``grid_sample`` call (rotation and the pad-and-random-crop
shift folded into one affine matrix), and masks follow with nearest-neighbour sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class ClipAugment:
    rotation: float = 20.0  # degrees, uniform in [-rotation, rotation]
    pad: int = 12  # pad-and-random-crop: shift up to ``pad`` pixels each way, black fill
    brightness: float = 0.1  # additive, on [0, 1] pixels
    contrast: float = 0.2  # multiplicative factor in [1 - contrast, 1 + contrast]

    @property
    def enabled(self) -> bool:
        return bool(self.rotation or self.pad or self.brightness or self.contrast)

    def __call__(
        self, video: torch.Tensor, masks: torch.Tensor | None, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """video: float (T, C, H, W) in [0, 1]; masks: (T, K, H, W) (labels or class maps) or None."""
        _, _, height, width = video.shape
        angle = math.radians(rng.uniform(-self.rotation, self.rotation)) if self.rotation else 0.0
        shift = rng.integers(-self.pad, self.pad + 1, size=2) if self.pad else np.zeros(2)
        if angle or shift.any():
            cos, sin = math.cos(angle), math.sin(angle)
            # affine_grid works in normalised [-1, 1] coordinates: a shift of s pixels is 2s/size.
            theta = torch.tensor(
                [[cos, -sin * height / width, -2.0 * shift[0] / width], [sin * width / height, cos, -2.0 * shift[1] / height]],
                dtype=video.dtype,
            )
            # One grid for the whole clip: frames and channels are stacked as channels of a
            # single image, so the warp is computed once instead of once per frame.
            frames, channels = video.shape[:2]
            grid = F.affine_grid(theta[None], [1, 1, height, width], align_corners=False)
            video = F.grid_sample(
                video.reshape(1, frames * channels, height, width), grid, mode="bilinear", padding_mode="zeros", align_corners=False
            ).reshape(frames, channels, height, width)
            if masks is not None:
                stacked = masks.reshape(1, -1, height, width).to(video.dtype)
                warped = F.grid_sample(stacked, grid, mode="nearest", padding_mode="zeros", align_corners=False)
                masks = warped.reshape(masks.shape).to(masks.dtype)
        if self.contrast or self.brightness:
            gain = rng.uniform(1 - self.contrast, 1 + self.contrast) if self.contrast else 1.0
            offset = rng.uniform(-self.brightness, self.brightness) if self.brightness else 0.0
            video = (video * gain + offset).clamp_(0.0, 1.0)
        return video, masks


NO_AUGMENT = ClipAugment(rotation=0.0, pad=0, brightness=0.0, contrast=0.0)
