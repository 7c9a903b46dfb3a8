"""``--augment published``: the training augmentation of the published SimLVSeg code.

simlvseg/augmentation.py: ColorJitter(0.2, 0.2, 0.2, 0.2, p=0.5), CLAHE(p=0.5),
Rotate(20, linear, black, p=1), PadIfNeeded(124, 124, black), RandomCrop(112, 112), in that
order, with one parameter draw shared by all frames of a clip (albumentations applies it to
uint8 frames). Colour comes before the warp, so the black border stays black; the warp (rotation
and crop offset in one affine map) is the same single OpenCV call as :mod:`unilvseg.data.augment`.
The only per-frame loop is CLAHE, which equalises each frame's own tiles (a C++ call per frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from unilvseg.data.augment import ClipAugment

COLOUR_STEPS = ("brightness", "contrast", "saturation", "hue")
_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])  # OpenCV's RGB -> gray


@dataclass(frozen=True)
class PublishedTransform:
    """One clip's draw of the published pipeline. ``order`` is the order of the colour steps
    (albumentations' ColorJitter shuffles them per call); factors of 1 and hue 0 change nothing."""

    jitter: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: tuple[int, ...] = (0, 1, 2, 3)
    clahe: bool = False
    clip_limit: float = 4.0
    angle_degrees: float = 0.0
    shift: tuple[int, int] = (0, 0)  # (x, y) pixels the content moves by pad-and-crop
    gain: float = 1.0  # the warp helper's intensity step: unused here (colour is done before)
    offset: float = 0.0

    @property
    def moves(self) -> bool:
        return bool(self.angle_degrees) or any(self.shift)

    def matrix(self, height: int, width: int) -> np.ndarray:
        """Output -> input map: rotate about the centre (cv2.getRotationMatrix2D, as Rotate
        does), then move by the crop offset; inverted for the inverse-map warp."""
        forward = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), self.angle_degrees, 1.0)
        forward[:, 2] += self.shift
        return cv2.invertAffineTransform(forward)


@dataclass
class PublishedAugment:
    """The published SimLVSeg training augmentation (see COLOUR_STEPS above), same interface as
    :class:`ClipAugment` (``draw``, ``clip_from_frames``, ``__call__``)."""

    jitter: float = 0.2  # brightness, contrast, saturation factors in [1 - j, 1 + j]; hue in [-j, j]
    jitter_p: float = 0.5
    clahe_p: float = 0.5
    clahe_limit: tuple[float, float] = (1.0, 4.0)  # CLAHE(clip_limit=4) draws from [1, 4]
    clahe_tiles: int = 8
    rotation: float = 20.0
    pad_to: int = 124  # PadIfNeeded(124) then RandomCrop(112) of a 112 frame: shift in [-6, 6]
    crop: int = 112

    enabled = True

    def draw(self, rng: np.random.Generator) -> PublishedTransform:
        jitter = bool(rng.random() < self.jitter_p)
        low, high = 1 - self.jitter, 1 + self.jitter
        brightness, contrast, saturation = rng.uniform(low, high, size=3)
        hue = rng.uniform(-self.jitter, self.jitter)
        order = tuple(rng.permutation(len(COLOUR_STEPS)).tolist())
        clahe = bool(rng.random() < self.clahe_p)
        clip_limit = rng.uniform(*self.clahe_limit)
        angle = rng.uniform(-self.rotation, self.rotation)
        room = max(self.pad_to - self.crop, 0)
        start = rng.integers(0, room + 1, size=2)  # crop corner inside the padded frame
        shift = (int(room // 2 - start[0]), int(room // 2 - start[1]))
        if not jitter:
            brightness = contrast = saturation = 1.0
            hue = 0.0
        return PublishedTransform(jitter, float(brightness), float(contrast), float(saturation), float(hue), order,
                                  clahe, float(clip_limit), float(angle), shift)

    def clip_from_frames(self, frames: np.ndarray, masks: np.ndarray | None, rng: np.random.Generator):
        """uint8 ``frames (T, H, W, C)`` -> float clip ``(C, H, W, T)`` in [0, 1], masks ``(K, H, W, T)``."""
        transform = self.draw(rng)
        return ClipAugment._clip_from_frames(self.colour(frames, transform), masks, transform)

    def pixels_from_frames(self, frames: np.ndarray, masks: np.ndarray | None, rng: np.random.Generator):
        """:meth:`ClipAugment.pixels_from_frames` for the published pipeline (colour on uint8, then the warp)."""
        transform = self.draw(rng)
        pixels, masks = ClipAugment._warp_pixels(self.colour(frames, transform), masks, transform)
        return pixels, masks, transform

    def __call__(self, video: torch.Tensor, masks: torch.Tensor | None, rng: np.random.Generator):
        """video: float (T, C, H, W) in [0, 1] -> the same layout (the tensor path of ClipAugment)."""
        frames = (video.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        clip, warped = self.clip_from_frames(frames, None if masks is None else masks.numpy(), rng)
        out = clip.permute(3, 0, 1, 2).to(video.dtype).contiguous()
        return out, (None if warped is None else warped.permute(3, 0, 1, 2).contiguous())

    def colour(self, frames: np.ndarray, transform: PublishedTransform) -> np.ndarray:
        """ColorJitter then CLAHE on uint8 RGB frames ``(T, H, W, 3)``, as albumentations does them."""
        if transform.jitter:
            for step in transform.order:
                frames = getattr(self, f"_{COLOUR_STEPS[step]}")(frames, getattr(transform, COLOUR_STEPS[step]))
        if transform.clahe:
            frames = self._clahe(frames, transform.clip_limit)
        return frames

    # Each step works on all frames at once; frames are stacked into one tall image for OpenCV.
    @staticmethod
    def _brightness(frames, factor):
        return np.clip(frames * factor, 0, 255).astype(np.uint8)

    @staticmethod
    def _contrast(frames, factor):
        # Blend with each frame's own mean gray level (every frame is one albumentations image).
        # One-channel frames come from the grey frame cache: their gray level is the pixel itself.
        gray = frames[..., 0].astype(np.float64) if frames.shape[-1] == 1 else frames.astype(np.float64) @ _GRAY_WEIGHTS
        mean = gray.mean(axis=(1, 2))[:, None, None, None]
        return np.clip(frames * factor + mean * (1 - factor), 0, 255).astype(np.uint8)

    @staticmethod
    def _saturation(frames, factor):
        if frames.shape[-1] != 3:
            return frames
        tall = np.ascontiguousarray(frames.reshape(-1, frames.shape[2], 3))
        gray = cv2.cvtColor(cv2.cvtColor(tall, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        return cv2.addWeighted(tall, factor, gray, 1 - factor, 0).reshape(frames.shape)

    @staticmethod
    def _hue(frames, factor):
        if frames.shape[-1] != 3 or factor == 0:
            return frames
        hsv = cv2.cvtColor(np.ascontiguousarray(frames.reshape(-1, frames.shape[2], 3)), cv2.COLOR_RGB2HSV)
        lut = np.mod(np.arange(256, dtype=np.int16) + 180 * factor, 180).astype(np.uint8)
        hsv[..., 0] = cv2.LUT(hsv[..., 0], lut)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(frames.shape)

    def _clahe(self, frames, clip_limit):
        # CLAHE equalises each frame's own tiles, so it runs once per frame (about 30 us each at
        # 112x112); the colour conversions around it run once for the whole clip.
        clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(self.clahe_tiles, self.clahe_tiles))
        if frames.shape[-1] == 1:
            # Grey frames from the frame cache: albumentations equalises the LAB lightness of the
            # RGB image, a non-linear function of the gray level, so go the same way round.
            return self._clahe(np.repeat(frames, 3, axis=-1), clip_limit)[..., :1]
        if frames.shape[-1] != 3:
            return np.stack([clahe.apply(np.ascontiguousarray(f[..., 0]))[..., None] for f in frames])
        lab = cv2.cvtColor(np.ascontiguousarray(frames.reshape(-1, frames.shape[2], 3)), cv2.COLOR_RGB2LAB)
        lab = lab.reshape(frames.shape)
        for lightness in lab[..., 0]:
            lightness[:] = clahe.apply(np.ascontiguousarray(lightness))
        return cv2.cvtColor(np.ascontiguousarray(lab.reshape(-1, frames.shape[2], 3)), cv2.COLOR_LAB2RGB).reshape(frames.shape)
