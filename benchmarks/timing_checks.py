"""Timing and page-fault checks moved out of the unit tests (they depend on how busy the CPU is).

    python -m benchmarks.timing_checks          # exit 1 when a limit is exceeded

* label-free stage 1 (``weak_lv_labels``): at most 2 s of CPU per phantom video (40-60 frames);
* glibc allocator tuning (``tune_cpu_allocator``): a reused 96 MB tensor block must not page
  fault again (untuned, every such allocation is a fresh mmap: ~24k minor faults each time).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from unilvseg.data.phantom import generate_phantom
from unilvseg.data.video import read_video
from unilvseg.labelfree.classical import weak_lv_labels
from unilvseg.models.unet3d import tune_cpu_allocator

WEAK_LABEL_CPU_SECONDS = 2.0
REUSED_BLOCK_FAULTS = 1000


def weak_label_seconds(videos: int = 3) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(generate_phantom(Path(folder) / "echonet", videos=6, seed=0, min_frames=40, max_frames=60))
        seconds = []
        for path in sorted((root / "Videos").glob("*.avi"))[:videos]:
            frames = read_video(path)
            start = time.process_time()
            weak_lv_labels(frames)
            seconds.append(time.process_time() - start)
        return seconds


def reused_block_faults() -> list[int] | None:
    if not sys.platform.startswith("linux") or not tune_cpu_allocator():
        return None

    def faults_for_big_tensor():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = torch.empty(24 * 2**20)  # 96 MB: above glibc's largest default mmap threshold
        block.fill_(1.0)
        del block
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_for_big_tensor()  # the first touch of fresh heap pages always faults
    return [faults_for_big_tensor() for _ in range(3)]


def main() -> int:
    failures = []
    seconds = weak_label_seconds()
    print(f"weak_lv_labels CPU seconds per video: {[round(s, 2) for s in seconds]} (limit {WEAK_LABEL_CPU_SECONDS})")
    if max(seconds) >= WEAK_LABEL_CPU_SECONDS:
        failures.append("weak_lv_labels too slow")
    faults = reused_block_faults()
    print(f"minor page faults per reused 96 MB block: {faults} (limit {REUSED_BLOCK_FAULTS}; None = not glibc)")
    if faults is not None and min(faults) >= REUSED_BLOCK_FAULTS:
        failures.append("allocator tuning does not stop page faults")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
