"""The UniLVSeg 3D U-Net: residual encoder/decoder over (height, width, time) volumes.

Input and output are ``(B, C, H, W, T)``; H and W must be divisible by ``2 ** (len(channels) - 1)``
because each of the four max-pools halves them, and T by ``2 ** temporal_pools``: the published
network halves T at every pool too, a temporally shallow one (``temporal_pools=0``) keeps every
frame at every level.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, ResidualUnit

from unilvseg.errors import UserError

UNET3D_CHANNELS = (16, 32, 64, 128, 256)
UNET3D_ENCODER_UNITS = (2, 3, 4, 6, 3)
FAST_CPU_ENV = "UNILVSEG_FAST_CPU"
# On by default: the allocator tuning measured 1.1-1.25x less CPU time per 3d_unet train step
# (2-core CPU) with bit-identical numerics; it only keeps freed heap pages for reuse.
# UNILVSEG_FAST_CPU=0 turns it off (the benchmarks' reference configuration does).
FAST_CPU_DEFAULT = True
# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_allocator_tuned: bool | None = None

log = logging.getLogger("unilvseg")


def fast_cpu_enabled() -> bool:
    """Whether the CPU fast path is on (``UNILVSEG_FAST_CPU=1``/``0``; default FAST_CPU_DEFAULT)."""
    value = os.environ.get(FAST_CPU_ENV, "").strip().lower()
    if not value:
        return FAST_CPU_DEFAULT
    return value not in {"0", "false", "no", "off"}


def tune_cpu_allocator() -> bool:
    """Keep freed large blocks in the glibc heap instead of returning them to the kernel.

    A CPU train step of the 3D U-Net allocates and frees hundreds of MB of activations and
    gradients, each 25-100 MB. glibc serves blocks above its mmap threshold (at most 32 MB by
    default) with fresh mmaps and unmaps them on free, so every step page-faults and the kernel
    zeroes ~0.6 GB again (~145k minor faults per step at 3x112x112x32). Raising the mmap and
    trim thresholds lets the heap reuse those pages: 0 faults after the first step, numerics
    bit-identical. Peak RSS is unchanged; memory is returned to the OS only at exit.
    Process-wide and idempotent; a no-op where glibc is absent. Returns whether it is active.
    """
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                ok_mmap = libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
                ok_trim = libc.mallopt(M_TRIM_THRESHOLD, 1 << 31)
                _allocator_tuned = bool(ok_mmap and ok_trim)
            except (OSError, AttributeError):  # musl or no libc symbol: keep the default allocator
                pass
        log.debug("CPU allocator tuning %s", "active" if _allocator_tuned else "unavailable")
    return _allocator_tuned


# Output block of the last decoder stage (``top``):
#   "residual": the published SimLVSeg UNet3D: one residual unit 2*c0 -> out_channels whose last
#               convolution has no norm/activation (MONAI ``last_conv_only``);
#   "conv_head": the earlier unilvseg variant: a residual unit 2*c0 -> c0, then a 1x1x1 conv.
TOPS = ("residual", "conv_head")


def residual_unit(in_channels: int, out_channels: int, last_conv_only: bool = False) -> ResidualUnit:
    """One MONAI residual unit: two (3x3x3 conv, instance norm, dropout 0, PReLU) subunits plus a
    skip, exactly as the published SimLVSeg ``_create_residual_unit`` builds it."""
    return ResidualUnit(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        strides=1,
        kernel_size=3,
        subunits=2,
        act="PRELU",
        norm="INSTANCE",
        dropout=0.0,
        bias=True,
        adn_ordering="NDA",
        last_conv_only=last_conv_only,
    )


def divisibility_problem(name: str, size: int, factor: int, flag: str) -> str | None:
    """A message when ``size`` is not a positive multiple of ``factor``; None when it is fine."""
    if size <= 0 or size % factor:
        lower = max(factor, size // factor * factor)
        return (
            f"{flag} {size} is not divisible by {factor} ({name} halves it "
            f"{factor.bit_length() - 1} times); use e.g. {lower} or {lower + factor}"
        )
    return None


class UNet3D(nn.Module):
    """Residual 3D U-Net: encoder stages of residual units with max-pooling in between,
    transposed-convolution upsampling, concatenated skips and residual decoder units.

    ``channels`` gives the width of each stage (deepest last) and ``encoder_units`` how many
    residual units each encoder stage stacks. With the defaults and ``top="residual"`` this is
    the published SimLVSeg ``UNet3D`` layer for layer (18,832,525 parameters; its modules are
    renamed: ``encoder1..5`` -> ``encoder.0..4``, ``upconv5..2`` -> ``upsamplers.0..3``,
    ``decoder4..2`` -> ``decoder.0..2.0``, ``decoder1`` -> ``head``; see
    :mod:`unilvseg.models.simlvseg`). ``top="conv_head"`` is the earlier unilvseg variant
    (see TOPS). ``head`` is always the block that produces ``out_channels``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = UNET3D_CHANNELS,
        encoder_units: Sequence[int] = UNET3D_ENCODER_UNITS,
        decoder_units: int = 1,
        encoder_name: str = "3d_unet",
        fast_cpu: bool | None = None,
        top: str = "residual",
        temporal_pools: int | None = None,
    ) -> None:
        super().__init__()
        if top not in TOPS:
            raise ValueError(f"top must be one of {TOPS}, got {top!r}")
        if top == "residual" and decoder_units != 1:
            raise ValueError("the published top (top='residual') has one residual unit per decoder stage")
        self.top = top
        if len(channels) != len(encoder_units) or len(channels) < 2:
            raise ValueError("channels and encoder_units need the same length (>= 2)")
        if min(encoder_units) < 1 or decoder_units < 1:
            raise ValueError("every stage needs at least one residual unit")
        self.encoder_name = encoder_name
        self.channels = tuple(int(c) for c in channels)
        self.size_factor = 2 ** (len(self.channels) - 1)
        # How many of the pools (the deepest ones) also halve time; None: all, as published. With
        # T = 16 and four time-halving pools the bottleneck holds one frame for the whole clip,
        # which on noisy per-frame labels flattened the cardiac cycle (real-echo diagnosis).
        pools = len(self.channels) - 1
        self.temporal_pools = pools if temporal_pools is None else int(temporal_pools)
        if not 0 <= self.temporal_pools <= pools:
            raise ValueError(f"temporal_pools must be between 0 and {pools}, got {temporal_pools}")
        self.frames_factor = 2**self.temporal_pools
        # None = decide per call (CPU fp32 and fast_cpu_enabled()); True/False forces it.
        # The fast path only changes how memory is allocated, never the arithmetic.
        self.fast_cpu = fast_cpu

        stages = []
        previous = in_channels
        for width, units in zip(self.channels, encoder_units):
            blocks = [residual_unit(previous, width)]
            blocks += [residual_unit(width, width) for _ in range(units - 1)]
            stages.append(nn.Sequential(*blocks))
            previous = width
        self.encoder = nn.ModuleList(stages)
        # pools[d - 1] runs before encoder stage d; the last temporal_pools of them halve T.
        self.pools = nn.ModuleList(
            nn.MaxPool3d(kernel_size=window, stride=window)
            for window in (self.pool_window(depth) for depth in range(1, pools + 1))
        )

        upsamplers, decoder = [], []
        for level, (deeper, width) in enumerate(zip(self.channels[:0:-1], self.channels[-2::-1])):
            # kernel 3, stride 2, output_padding 1: exactly doubles every size (stride 1 on an axis
            # that pool did not halve: output_padding 0, the size is kept).
            window = self.pool_window(pools - level)
            upsamplers.append(
                Convolution(
                    spatial_dims=3,
                    in_channels=deeper,
                    out_channels=width,
                    strides=2 if window == 2 else window,
                    kernel_size=3,
                    act="PRELU",
                    norm="INSTANCE",
                    dropout=0.0,
                    bias=True,
                    is_transposed=True,
                    adn_ordering="NDA",
                )
            )
            if top == "residual" and level == len(self.channels) - 2:
                break  # the last stage's unit is the head
            blocks = [residual_unit(2 * width, width)]
            blocks += [residual_unit(width, width) for _ in range(decoder_units - 1)]
            decoder.append(nn.Sequential(*blocks))
        self.upsamplers = nn.ModuleList(upsamplers)
        self.decoder = nn.ModuleList(decoder)
        if top == "residual":
            self.head = residual_unit(2 * self.channels[0], out_channels, last_conv_only=True)
        else:
            self.head = nn.Conv3d(self.channels[0], out_channels, kernel_size=1)

    def pool_window(self, depth: int):
        """The max-pool window before encoder stage ``depth`` (1-based): 2 (H, W, T), or (2, 2, 1)
        where time is kept."""
        return 2 if depth > len(self.channels) - 1 - self.temporal_pools else (2, 2, 1)

    def use_fast_cpu(self, x: torch.Tensor) -> bool:
        if self.fast_cpu is not None:
            return self.fast_cpu
        return x.device.type == "cpu" and x.dtype == torch.float32 and fast_cpu_enabled()

    def check_sizes(self, x: torch.Tensor) -> None:
        if x.ndim != 5:
            raise UserError(f"{self.encoder_name} expects (B, C, H, W, T) input, got shape {tuple(x.shape)}")
        problems = [
            divisibility_problem(self.encoder_name, size, factor, flag)
            for size, flag, factor in zip(
                x.shape[2:], ("image height", "image width", "--frames"),
                (self.size_factor, self.size_factor, getattr(self, "frames_factor", self.size_factor)),
            )
        ]
        problems = [p for p in problems if p]
        if problems:
            raise UserError("; ".join(problems))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_sizes(x)
        if self.use_fast_cpu(x):
            tune_cpu_allocator()
        skips = []
        h = x
        for depth, stage in enumerate(self.encoder):
            if depth:
                h = self.pools[depth - 1](h)
            h = stage(h)
            skips.append(h)
        stages = list(self.decoder) + ([self.head] if self.top == "residual" else [])
        for upsample, stage, skip in zip(self.upsamplers, stages, reversed(skips[:-1])):
            h = stage(torch.cat([upsample(h), skip], dim=1))
        return h if self.top == "residual" else self.head(h)


class MonaiUNet3D(nn.Module):
    """``monai.networks.nets.UNet`` (spatial_dims=3) split into ``body`` and ``head`` so transfer
    code can find the output block; ``head(body(x))`` is exactly ``UNet.forward``."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = UNET3D_CHANNELS,
        num_res_units: int = 2,
        encoder_name: str = "monai_3d_unet",
    ) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        self.encoder_name = encoder_name
        self.channels = tuple(int(c) for c in channels)
        self.size_factor = 2 ** (len(self.channels) - 1)
        unet = UNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=self.channels,
            strides=(2,) * (len(self.channels) - 1),
            num_res_units=num_res_units,
            norm="INSTANCE",
        )
        # unet.model = Sequential(first down block, nested skip connections, top up block); the top
        # up block is the only part that produces out_channels, so it is the head.
        *body, head = list(unet.model)
        self.body = nn.Sequential(*body)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        UNet3D.check_sizes(self, x)
        return self.head(self.body(x))
