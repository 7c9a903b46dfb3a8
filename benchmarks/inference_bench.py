"""Full-video prediction speed: unilvseg's batched sliding windows vs the published loop.

Methods, all on the same videos and the same (randomly initialised) network:

* ``published``: one video at a time, non-overlapping windows (the last one padded by repeating
  the last frame), normalised on the CPU, in fp32 under ``torch.no_grad`` (the loop of the
  published UniLVSeg/SimLVSeg inference script, re-written here); on CUDA its windows go 16 to a
  forward pass as the published script batches them, on CPU one at a time;
* ``ours_overlap``: :func:`unilvseg.evaluation.inference.predict_video` as ``predict.py`` runs it:
  windows every ``frames // 2`` (twice the network work of non-overlapping windows),
  ``torch.inference_mode``, bf16 autocast where bf16 is fast (CUDA, or a CPU with native bf16:
  :mod:`unilvseg.hardware`); batch: the published baseline's on CUDA (16, so GPU rows compare
  equal batch sizes), predict.py's default of 1 on CPU;
* ``ours_stride_frames``: the same code with ``stride = frames`` (non-overlapping), the
  like-for-like comparison with ``published``.

Reported: frames per second of full-video prediction (all frames of all videos / the median
wall time of ``repeats`` timed passes after one warm-up pass; the methods take turns pass by
pass so changes in machine load hit all of them alike), the number of windows each method
runs, the load average before and after (the machine is shared), and how closely
``ours_stride_frames`` agrees with ``published`` on frames both predict from identical windows
(largest probability difference, and the fraction of pixels whose 0.5-thresholded mask agrees:
bf16 moves probabilities by ~1e-2, masks almost never).

    python benchmarks/inference_bench.py [--quick] [--device cpu|cuda] [--repeats N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unilvseg.data.dataset import ECHONET_MEAN, ECHONET_STD  # noqa: E402
from unilvseg.evaluation.inference import default_batch_size, predict_video, resolve_device  # noqa: E402
from unilvseg.hardware import bf16_is_fast  # noqa: E402

FULL = dict(encoder="3d_unet", frames=32, video_lengths=(112, 150), repeats=3)
QUICK = dict(encoder="3d_unet_small", frames=16, video_lengths=(40, 52), repeats=3)


# Windows per forward pass of the published inference script on a GPU.
PUBLISHED_GPU_BATCH = 16


def published_batch_size(device: torch.device) -> int:
    return PUBLISHED_GPU_BATCH if device.type == "cuda" else 1


def published_predict(network, video: np.ndarray, frames: int, mean, std, device, batch_size: int = 1) -> np.ndarray:
    """The published loop: non-overlapping windows, ``batch_size`` per forward pass, fp32, no_grad."""
    n_frames = len(video)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    starts = list(range(0, n_frames, frames))
    outputs = []
    with torch.no_grad():
        for first in range(0, len(starts), batch_size):
            clips = []
            for start in starts[first : first + batch_size]:
                index = np.minimum(np.arange(start, start + frames), n_frames - 1)
                clip = torch.from_numpy(video[index]).permute(3, 1, 2, 0).float() / 255.0  # (3, H, W, T)
                clips.append((clip - mean_t) / std_t)
            logits = network(torch.stack(clips).to(device))
            outputs += list(torch.sigmoid(logits)[:, 0].permute(0, 3, 1, 2).cpu().numpy())
    return np.concatenate(outputs)[:n_frames]


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_interleaved(methods: dict, videos, device, repeats: int) -> tuple[dict, dict, dict]:
    """Per method: wall and process-CPU times of ``repeats`` passes over all videos, and the
    last pass's outputs. On a shared CPU the process time is the steadier figure: it does not
    count the time other programs hold the cores (it does include this process's own threads).

    One warm-up pass per method (allocator, oneDNN/cuDNN plans), then the methods take turns
    pass by pass, so a change in machine load hits all of them alike rather than one.
    """
    outputs = {name: [method(video) for video in videos] for name, method in methods.items()}
    _synchronise(device)
    times = {name: [] for name in methods}
    cpu_times = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            outputs[name] = [method(video) for video in videos]
            _synchronise(device)
            times[name].append(time.perf_counter() - started)
            cpu_times[name].append(time.process_time() - cpu_started)
    return times, cpu_times, outputs


def _windows(n_frames: int, frames: int, stride: int) -> int:
    from unilvseg.data.clips import ClipSampler

    return len(ClipSampler(frames).windows(n_frames, stride))


def run(quick: bool = False, device: str = "cpu", repeats: int | None = None, seed: int = 0) -> dict:
    from unilvseg.models import build_network

    config = dict(QUICK if quick else FULL)
    repeats = int(repeats or config["repeats"])
    device_t = resolve_device(device)
    frames = config["frames"]
    published_batch = published_batch_size(device_t)
    # CPU: predict.py's default (1). CUDA: the published baseline's 16, so rows compare equal batches.
    batch_size = published_batch if device_t.type == "cuda" else default_batch_size(device_t)
    torch.manual_seed(seed)
    network = build_network(config["encoder"], frames=frames).to(device_t).eval()
    rng = np.random.default_rng(seed)
    videos = [rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8) for n in config["video_lengths"]]
    total_frames = sum(len(v) for v in videos)
    mean, std = ECHONET_MEAN, ECHONET_STD

    methods = {
        "published": (
            lambda v: published_predict(network, v, frames, mean, std, device_t, published_batch),
            sum(-(-len(v) // frames) for v in videos),
        ),
        "ours_overlap": (
            lambda v: predict_video(network, v, frames, frames // 2, batch_size, mean, std, device_t),
            sum(_windows(len(v), frames, frames // 2) for v in videos),
        ),
        "ours_stride_frames": (
            lambda v: predict_video(network, v, frames, frames, batch_size, mean, std, device_t),
            sum(_windows(len(v), frames, frames) for v in videos),
        ),
    }
    load_before = os.getloadavg()
    times, cpu_times, outputs = _time_interleaved({name: method for name, (method, _) in methods.items()}, videos, device_t, repeats)
    results = {}
    for name, (_, windows) in methods.items():
        median = statistics.median(times[name])
        results[name] = {
            "median_s": round(median, 4),
            "frames_per_s": round(total_frames / median, 2),
            "windows": windows,
            "windows_per_s": round(windows / median, 2),
            "times_s": [round(t, 4) for t in times[name]],
            "median_cpu_s": round(statistics.median(cpu_times[name]), 4),
            "frames_per_cpu_s": round(total_frames / statistics.median(cpu_times[name]), 2),
        }
    load_after = os.getloadavg()

    # Frames before the last window start come from identical windows in both methods.
    agreement, mask_agreement = [], []
    for video, ours, published in zip(videos, outputs["ours_stride_frames"], outputs["published"]):
        shared = max(len(video) - frames, 0) // frames * frames if len(video) % frames else len(video)
        if shared:
            agreement.append(float(np.abs(ours[:shared] - published[:shared]).max()))
            mask_agreement.append(float(((ours[:shared] > 0.5) == (published[:shared] > 0.5)).mean()))
    base = results["published"]["frames_per_s"]
    return {
        "benchmark": "inference",
        "quick": quick,
        "device": str(device_t),
        "device_name": torch.cuda.get_device_name(device_t) if device_t.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "encoder": config["encoder"],
        "frames": frames,
        "batch_size": batch_size,
        "published_batch_size": published_batch,
        "video_lengths": list(config["video_lengths"]),
        "total_frames": total_frames,
        "repeats": repeats,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "results": results,
        "speedup_vs_published": {name: round(r["frames_per_s"] / base, 3) for name, r in results.items()},
        "max_abs_prob_diff_stride_frames_vs_published": max(agreement) if agreement else None,
        "mask_agreement_stride_frames_vs_published": min(mask_agreement) if mask_agreement else None,
        "bf16_autocast": bf16_is_fast(device_t),
    }


def format_table(report: dict) -> str:
    lines = [
        f"{report['encoder']}, {report['frames']}-frame windows, videos {report['video_lengths']} frames, "
        f"device {report['device']} ({report['torch_threads']} threads), median of {report['repeats']} interleaved passes after warm-up, "
        f"load {report['load_average_before'][0]} -> {report['load_average_after'][0]}",
        f"{'method':<20} {'windows':>8} {'median s':>10} {'frames/s':>10} {'vs published':>13} {'frames/cpu-s':>13}",
    ]
    for name, result in report["results"].items():
        lines.append(
            f"{name:<20} {result['windows']:>8} {result['median_s']:>10.3f} {result['frames_per_s']:>10.1f} "
            f"{report['speedup_vs_published'][name]:>12.2f}x {result['frames_per_cpu_s']:>13.1f}"
        )
    diff = report["max_abs_prob_diff_stride_frames_vs_published"]
    if diff is not None:
        lines.append(f"max |p_ours(stride=frames) - p_published| on identical windows: {diff:.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3d_unet_small, 16-frame windows, short videos")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    report = run(quick=args.quick, device=args.device, repeats=args.repeats)
    print(format_table(report))
    print(json.dumps(report))
    if args.out:
        from unilvseg.io import write_json

        write_json(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
