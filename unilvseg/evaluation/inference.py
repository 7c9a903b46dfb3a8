"""Full-video segmentation with a clip network: overlapping sliding windows, averaged probabilities.

A clip network sees ``frames`` consecutive frames at a time. To label every frame of a video of
any length, :func:`predict_video` cuts it into windows that start every ``stride`` frames (the
last one aligned to the end, so no frame is left out), runs the windows through the network in
batches, and averages each frame's sigmoid probabilities over all the windows that contain it
before anything is thresholded. Overlap (``stride < frames``) gives every frame several temporal
contexts and removes the seams that non-overlapping windows leave at their borders.

The video is moved to the device and normalised once; windows are gathered from it on the
device by index, and probabilities are accumulated with one ``index_add_`` per batch, so there is
no per-frame Python work. Inference runs under ``torch.inference_mode`` and, where bf16 is fast
(CUDA, or a CPU with native bf16), bf16 autocast (probabilities are accumulated in float32).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from unilvseg.data.clips import ClipSampler
from unilvseg.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
log = logging.getLogger("unilvseg")


def default_stride(frames_per_clip: int) -> int:
    """Half-overlapping windows: every frame is seen in (about) two temporal contexts."""
    return max(int(frames_per_clip) // 2, 1)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for CUDA on a machine without it is an error."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")


def resize_stack(array: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resize every frame of ``(T, H, W[, C])`` to ``size = (H, W)``.

    One cv2 call per frame on purpose: stacking frames as channels of one cv2 call was measured
    4x slower (300 frames 96x80x3 -> 112x112: 0.093 s stacked vs 0.021 s per frame, OpenCV 5,
    which also caps a call at 128 channels), and each call is already a C loop over a frame.
    """
    array = np.asarray(array)
    height, width = int(size[0]), int(size[1])
    if array.shape[1:3] == (height, width):
        return array
    return np.stack([cv2.resize(frame, (width, height), interpolation=interpolation) for frame in array])


def _network_device(network: torch.nn.Module) -> torch.device:
    for tensor in network.parameters():
        return tensor.device
    for tensor in network.buffers():
        return tensor.device
    return torch.device("cpu")


def _autocast(device: torch.device, amp: bool | None):
    """bf16 autocast by default where bf16 is fast: CUDA, or a CPU with native bf16 (unilvseg.hardware)."""
    if amp is None:
        from unilvseg.hardware import bf16_is_fast

        amp = bf16_is_fast(device)
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def default_batch_size(device: str | torch.device | None) -> int:
    """Windows per forward pass: 8 on CUDA; 1 on CPU, where a 3D U-Net forward measured ~1.3x
    slower per window at batch 4 than at batch 1 (activations of one window already exceed the
    caches, more only add memory traffic)."""
    return 8 if device is not None and torch.device(device).type == "cuda" else 1


def predict_video(
    network: torch.nn.Module,
    frames_uint8: np.ndarray,
    frames_per_clip: int,
    stride: int | None = None,
    batch_size: int | None = None,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    device: str | torch.device | None = None,
    size: tuple[int, int] | None = None,
    amp: bool | None = None,
    channels: int = 1,
) -> np.ndarray:
    """LV probabilities ``float32 (T, H, W)`` for every frame of ``frames_uint8 (T, H, W, 3)``
    (with ``channels`` > 1, a multi-structure network's ``(channels, T, H, W)``, one sigmoid per
    structure).

    ``network`` maps normalised clips ``(B, 3, h, w, frames_per_clip)`` to logits ``(B, 1, h, w,
    frames_per_clip)``; it should be in eval mode and on ``device`` (default: the device of its
    parameters). ``stride`` (default ``frames_per_clip // 2``) is the step between window starts
    and must not exceed ``frames_per_clip``. Videos shorter than a clip are padded by repeating
    the last frame. ``mean``/``std`` normalise [0, 1] pixels per channel (pass the training
    statistics, e.g. ``unilvseg.data.dataset.ECHONET_MEAN/STD``). ``size = (h, w)``: the
    network's input size; frames of another size are resized to it and the probabilities are
    resized back to the video's own size. ``amp``: bf16 autocast (default: where bf16 is fast, see
    :mod:`unilvseg.hardware`).
    """
    video = np.asarray(frames_uint8)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"predict_video expects frames of shape (T, H, W, 3), got {video.shape}")
    if video.dtype != np.uint8:
        raise ValueError(f"predict_video expects uint8 frames, got {video.dtype}")
    if len(video) == 0:
        raise ValueError("predict_video: the video has no frames")
    frames_per_clip = int(frames_per_clip)
    stride = default_stride(frames_per_clip) if stride is None else int(stride)
    if not 1 <= stride <= frames_per_clip:
        raise UserError(
            f"--stride {stride}: must be between 1 and the clip length {frames_per_clip} "
            "(a longer step would leave frames between windows unpredicted)"
        )
    n_frames, height, width = video.shape[:3]
    device = _network_device(network) if device is None else resolve_device(device)
    batch_size = default_batch_size(device) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {batch_size}")

    net_size = (height, width) if size is None else (int(size[0]), int(size[1]))
    net_video = resize_stack(video, net_size, cv2.INTER_AREA) if net_size != (height, width) else video
    windows = ClipSampler(frames_per_clip).windows(n_frames, stride)  # (n_windows, frames_per_clip)
    net_height, net_width = net_size

    with torch.inference_mode():
        mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).view(3, 1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32, device=device).view(3, 1, 1, 1)
        # uint8 crosses to the device (4x less traffic than float), then (3, h, w, T) normalised once.
        pixels = torch.from_numpy(np.ascontiguousarray(net_video)).to(device, non_blocking=True)
        normalised = (pixels.permute(3, 1, 2, 0).float().div_(255.0) - mean_t) / std_t
        index = torch.from_numpy(windows.astype(np.int64)).to(device)
        sums = torch.zeros((channels, n_frames, net_height, net_width), dtype=torch.float32, device=device)
        # Padded windows of short videos repeat the last frame: each occurrence is one vote.
        counts = torch.bincount(index.reshape(-1), minlength=n_frames).to(torch.float32)
        with _autocast(device, amp):
            for start in range(0, len(index), batch_size):
                chunk = index[start : start + batch_size]  # (b, F)
                clips = normalised[:, :, :, chunk].permute(3, 0, 1, 2, 4)  # (b, 3, h, w, F)
                clips = clips.contiguous()
                logits = network(clips)
                if logits.shape != (len(chunk), channels, net_height, net_width, frames_per_clip):
                    raise ValueError(
                        f"network returned shape {tuple(logits.shape)} for input {tuple(clips.shape)}; "
                        f"expected (B, {channels}, H, W, T) segmentation logits"
                    )
                if torch.is_autocast_enabled(device.type) and not torch.isfinite(logits).all():
                    # bf16 overflow or a kernel fault must not turn into silently empty masks.
                    log.warning("non-finite bf16 output for windows %d-%d; recomputed in float32", start, start + len(chunk) - 1)
                    with torch.autocast(device.type, enabled=False):
                        logits = network(clips)
                probabilities = torch.sigmoid(logits.float())  # (b, C, h, w, F)
                for channel in range(channels):
                    per_frame = probabilities[:, channel].permute(0, 3, 1, 2).reshape(-1, net_height, net_width)
                    sums[channel].index_add_(0, chunk.reshape(-1), per_frame)
        averaged = (sums / counts.view(1, -1, 1, 1)).cpu().numpy()
    if net_size != (height, width):
        averaged = np.stack([resize_stack(channel, (height, width), cv2.INTER_LINEAR) for channel in averaged])
    averaged = averaged[0] if channels == 1 else averaged
    return np.ascontiguousarray(averaged, dtype=np.float32)


def masks_from_probabilities(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 (T, H, W) LV masks: 1 where the averaged probability exceeds ``threshold``."""
    return (np.asarray(probabilities) > threshold).astype(np.uint8)


def label_map_from_probabilities(probabilities: np.ndarray, codes, threshold: float = 0.5) -> np.ndarray:
    """uint8 (T, H, W) label map of a multi-structure network: each pixel takes the label
    (``codes[c]``) of its most probable structure where that probability exceeds ``threshold``,
    0 elsewhere; channel 0 (the LV) wins wherever it exceeds ``threshold``, so the map's LV is
    exactly :func:`masks_from_probabilities` of channel 0."""
    probabilities = np.asarray(probabilities)
    codes = np.asarray(codes, dtype=np.uint8)
    best = probabilities.argmax(axis=0)
    labels = np.where(probabilities.max(axis=0) > threshold, codes[best], 0).astype(np.uint8)
    labels[probabilities[0] > threshold] = codes[0]
    return labels
