"""Videos with the predicted LV outline drawn on them, for looking at what a model does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unilvseg.io import atomic_path

OVERLAY_FORMATS = ("avi", "gif")
OUTLINE_COLOUR = (255, 64, 64)  # RGB: red stands out on gray ultrasound


def mask_outline(masks: np.ndarray) -> np.ndarray:
    """bool (T, H, W): the mask pixels with at least one 4-neighbour outside the mask.

    Computed for all frames at once with shifted views; a mask touching the image border is
    outlined along the border too (pixels beyond the image count as background).
    """
    masks = np.asarray(masks) > 0
    if masks.ndim == 2:
        return mask_outline(masks[None])[0]
    if masks.ndim != 3:
        raise ValueError(f"mask_outline expects masks of shape (T, H, W), got {masks.shape}")
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    interior = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    return masks & ~interior


def draw_outline(frames: np.ndarray, masks: np.ndarray, colour: tuple[int, int, int] = OUTLINE_COLOUR) -> np.ndarray:
    """uint8 (T, H, W, 3) copy of RGB ``frames`` with each frame's mask outline painted in ``colour``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"draw_outline expects frames of shape (T, H, W, 3), got {frames.shape}")
    if np.shape(masks) != frames.shape[:3]:
        raise ValueError(f"draw_outline: masks {np.shape(masks)} do not match frames {frames.shape[:3]}")
    painted = np.array(frames, dtype=np.uint8, copy=True)
    painted[mask_outline(masks)] = np.asarray(colour, dtype=np.uint8)
    return painted


def write_video(path: str | Path, frames: np.ndarray, fps: float = 50.0) -> Path:
    """Write RGB uint8 ``(T, H, W, 3)`` frames as ``.avi`` (MJPG) or ``.gif``, chosen by the suffix."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in OVERLAY_FORMATS:
        raise ValueError(f"{path}: overlay format must be one of {', '.join(OVERLAY_FORMATS)}")
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 50.0
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    with atomic_path(path) as tmp:  # the temporary keeps the suffix both writers need
        if kind == "avi":
            import cv2

            height, width = frames.shape[1:3]
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height), True)
            if not writer.isOpened():
                raise OSError(f"OpenCV cannot write an MJPG video to {path}")
            try:
                for frame in frames[..., ::-1]:  # OpenCV writes BGR
                    writer.write(np.ascontiguousarray(frame))
            finally:
                writer.release()
        else:
            from PIL import Image

            images = [Image.fromarray(frame) for frame in frames]
            images[0].save(
                tmp, format="GIF", save_all=True, append_images=images[1:], duration=max(int(round(1000 / fps)), 20), loop=0
            )
    return path


def write_overlay(path: str | Path, frames: np.ndarray, masks: np.ndarray, fps: float = 50.0) -> Path:
    """Video of ``frames`` with the outline of ``masks`` drawn on every frame (format from the suffix)."""
    return write_video(path, draw_outline(frames, masks), fps)
