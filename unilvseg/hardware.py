"""What the machine can do fast: the default numeric precision for training and inference.

bf16 autocast halves the memory traffic of the 3D U-Net and, on CPUs with native bf16
instructions (AVX512-BF16 or AMX: AMD Zen 4+, Intel Sapphire Rapids+), runs oneDNN's bf16
convolutions: on the 2-core AMD EPYC of our benchmarks it roughly halves the time of a 3D U-Net
forward pass (README, Performance). Inference uses it by default where it is native (with a
float32 re-run of any window whose output is not finite); training on CPU only when asked (see
:func:`default_precision`). On CPUs without those instructions bf16 is emulated and slower than
fp32, so it is never chosen there. Losses and metrics are always computed in float32.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

# /proc/cpuinfo flags that mean oneDNN runs bf16 convolutions natively.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# UNILVSEG_CPU_BF16=0 (or 1) overrides the detection, e.g. to compare against fp32.
CPU_BF16_ENV = "UNILVSEG_CPU_BF16"


@functools.lru_cache(maxsize=None)
def _cpuinfo_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no detection, fp32
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether bf16 autocast is a speed-up on this CPU (``UNILVSEG_CPU_BF16=0/1`` overrides)."""
    override = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if override:
        return override not in {"0", "false", "no", "off"}
    return any(flag in _cpuinfo_flags() for flag in NATIVE_BF16_FLAGS)


def bf16_is_fast(device: str | torch.device) -> bool:
    """bf16 autocast pays off on ``device``: a CUDA GPU with bf16, or a CPU with native bf16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def default_precision(accelerator: str | None) -> str:
    """Lightning ``precision`` for ``--precision auto``: ``bf16-mixed`` on a CUDA GPU with bf16,
    else ``32-true``.

    CPU training stays in float32 even where bf16 is native: bf16 autocast made a CPU train step
    ~1.5x faster in our benchmark, but oneDNN's bf16 backward pass produced sporadic NaN
    gradients for tiny feature maps (2x2x1 at the 3D U-Net's bottleneck with 32x32x16 clips,
    single-threaded), and float32 keeps CPU runs bit-reproducible. ``--precision bf16-mixed``
    opts in. ``accelerator`` is the ``--accelerator`` flag (``auto``/None: CUDA when available).
    """
    name = (accelerator or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "gpu":
        name = "cuda"
    return "bf16-mixed" if name == "cuda" and bf16_is_fast(name) else "32-true"
