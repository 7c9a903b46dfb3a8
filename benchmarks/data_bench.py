"""Data-loading benchmark: training samples/s of our loader vs the published way, weak and SSL.

Ours: ``EchoClipDataset`` reading a warm ``FrameCache`` (memory-mapped uint8 frames, a sample
touches only its 32 frames) and augmenting the whole clip with one ``ClipAugment`` warp.

Published (EchoNet-Dynamic ``echonet.utils.loadvideo`` + SimLVSeg ``Seg3DDataset`` with its
albumentations pipeline, re-implemented below without albumentations): every sample decodes
the WHOLE AVI with OpenCV into a preallocated array (``cvtColor`` per frame), picks a clip by
rejection sampling, rasterises the trace mask again (weak), then runs a per-frame Python loop:
colour jitter, ``Rotate(20)`` with ``cv2.warpAffine``, ``PadIfNeeded(124)`` +
``RandomCrop(112)``, ``Normalize`` and ``ToTensor`` on every frame (the mask is rotated and
cropped with the same parameters). SimLVSeg's CLAHE (p=0.5) is left out, which only makes the
published way faster than it really is.

Same data for both (a 20-video phantom generated into the cache when ``data_path`` is None; 8
videos with ``--quick``), clip length 32, batch 4, the same collate function. Each
configuration runs in a fresh process so its peak RSS (sampled with psutil over the process and
its DataLoader workers) is its own; samples/s is the median over ``repeats`` epochs of
``samples`` random samples after one warm-up epoch (which also starts persistent workers).

    OMP_NUM_THREADS=1 python -m benchmarks.data_bench --quick
    OMP_NUM_THREADS=1 python -m benchmarks.data_bench            # 20 videos, more repeats
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import portable_path  # noqa: E402 - after the path set-up for script use

FRAMES = 32
BATCH = 4
PAD = 12
ROTATION = 20.0
BRIGHTNESS = 0.2
CONTRAST = 0.2
RESULTS = Path(__file__).resolve().parent / "results" / "data_bench.json"
#: Clips/s one H200 at 30 % MFU would consume training the published 3D U-Net (issue 25's estimate).
GPU_DEMAND_CLIPS_PER_S = 1400


# ---------------------------------------------------------------- faithful published loader
def published_loadvideo(path: str):
    """echonet.utils.loadvideo: decode every frame of the AVI into (C, F, H, W) uint8."""
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(path)
    frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frame_width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    frame_height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    video = np.zeros((frame_count, frame_height, frame_width, 3), np.uint8)
    for count in range(frame_count):
        ret, frame = capture.read()
        if not ret:
            raise ValueError(f"Failed to load frame #{count} of {path}.")
        video[count, :, :] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    capture.release()
    return video.transpose((3, 0, 1, 2))


class PublishedDataset:
    """SimLVSeg-style dataset: whole-video decode per sample, per-frame augmentation loop."""

    def __init__(self, records, mode: str, mean, std):
        import numpy as np

        self.records = list(records)
        self.mode = mode
        self.mean = np.asarray(mean, np.float32) * 255.0  # albumentations Normalize(max_pixel_value=255)
        self.std = np.asarray(std, np.float32) * 255.0

    def __len__(self):
        return len(self.records)

    def _augment(self, video, mask, rng):
        """Per-frame loop, one set of random parameters per clip (albumentations replay)."""
        import cv2
        import numpy as np
        import torch

        _, height, width, _ = video.shape
        jitter = rng.random() < 0.5
        gain = rng.uniform(1 - CONTRAST, 1 + CONTRAST)
        offset = rng.uniform(-BRIGHTNESS, BRIGHTNESS) * 255
        angle = rng.uniform(-ROTATION, ROTATION)
        rotation = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
        top, left = rng.integers(0, 2 * PAD + 1, size=2)
        out = []
        for frame in video:
            if jitter:
                frame = np.clip(frame.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
            frame = cv2.warpAffine(frame, rotation, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            frame = cv2.copyMakeBorder(frame, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT, value=0)
            frame = frame[top:top + height, left:left + width]
            frame = (frame.astype(np.float32) - self.mean) / self.std
            out.append(torch.from_numpy(frame.transpose(2, 0, 1).astype("float32")))
        if mask is not None:
            mask = cv2.warpAffine(mask, rotation, (width, height), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            mask = cv2.copyMakeBorder(mask, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT, value=0)
            mask = torch.from_numpy(mask[top:top + height, left:left + width][None].astype("float32"))
        return torch.stack(out), mask

    def __getitem__(self, i):
        import numpy as np
        import skimage.draw
        import torch

        from unilvseg.data.tracings import polygon_from_rows

        record = self.records[i]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        video = published_loadvideo(str(record.path))
        c, f, h, w = video.shape
        if f < FRAMES:
            video = np.concatenate((video, np.zeros((c, FRAMES - f, h, w), video.dtype)), axis=1)
            f = FRAMES
        sample = {"file_name": record.file_name}
        mask = None
        if self.mode == "weak":
            trace_index = record.ed_frame if rng.random() < 0.5 else record.es_frame
            rows = record.ed_rows if trace_index == record.ed_frame else record.es_rows
            xs, ys = polygon_from_rows(rows)
            r, cc = skimage.draw.polygon(np.rint(ys).astype(int), np.rint(xs).astype(int), (h, w))
            mask = np.zeros((h, w), np.float32)
            mask[r, cc] = 1
            while True:  # SimLVSeg's rejection sampling of a clip containing the traced frame
                start = rng.choice(f - (FRAMES - 1))
                index = start + np.arange(FRAMES)
                if trace_index in index:
                    break
            sample["rel_trace_index"] = torch.tensor(int(trace_index - start))
        else:
            start = rng.choice(f - (FRAMES - 1))
            index = start + np.arange(FRAMES)
        clip = video[:, index].transpose((1, 2, 3, 0))  # (T, H, W, C)
        clip, mask = self._augment(clip, mask, rng)
        sample["video"] = clip.permute(1, 2, 3, 0).contiguous()  # (C, H, W, T)
        sample["frame_index"] = torch.from_numpy(index.astype(np.int64))
        if mask is not None:
            sample["mask"] = mask
        return sample


# ---------------------------------------------------------------- one configuration (child)
def _child(spec: dict) -> dict:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from unilvseg.data.augment import ClipAugment
    from unilvseg.data.clips import ClipSampler
    from unilvseg.data.dataset import ECHONET_MEAN, ECHONET_STD, EchoClipDataset, collate_clips, normalise_batch
    from unilvseg.data.index import load_index
    from unilvseg.data.video import FrameCache

    torch.set_num_threads(1)
    torch.manual_seed(0)
    weak = spec["mode"] == "weak"
    index = load_index(spec["data_path"], require_tracings=weak)
    if spec["loader"] in ("ours", "ours_uint8"):
        dataset = EchoClipDataset(
            index, ClipSampler(FRAMES), clip="traced_random" if weak else "random",
            targets="tracings" if weak else None,
            augment=ClipAugment(rotation=ROTATION, pad=PAD, brightness=BRIGHTNESS, contrast=CONTRAST),
            cache=FrameCache(spec["cache_dir"]), handover="uint8" if spec["loader"] == "ours_uint8" else "float",
        )
    else:
        dataset = PublishedDataset(index.records, spec["mode"], ECHONET_MEAN, ECHONET_STD)
    workers = spec["workers"]
    loader = DataLoader(
        dataset, batch_size=BATCH, num_workers=workers, collate_fn=collate_clips,
        sampler=RandomSampler(dataset, replacement=True, num_samples=spec["samples"]),
        persistent_workers=workers > 0,
    )
    import psutil

    def tree_cpu_seconds() -> float:
        """CPU seconds of this process and its live DataLoader workers (persistent: alive throughout)."""
        total = 0.0
        for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    times, cpu = [], []
    for epoch in range(spec["repeats"] + 1):  # epoch 0 = warm-up (worker start, page cache)
        started, cpu_started = time.perf_counter(), tree_cpu_seconds()
        seen = 0
        for batch in loader:
            # A sample counts once it is a normalised float batch where training runs (here the
            # CPU): the uint8 hand-over's normalisation is inside the measurement.
            batch = normalise_batch(batch, ECHONET_MEAN, ECHONET_STD)
            seen += batch["video"].shape[0]
            assert batch["video"].shape[1:] == (3, 112, 112, FRAMES) and batch["video"].dtype == torch.float32
        if epoch:
            times.append(time.perf_counter() - started)
            cpu.append(tree_cpu_seconds() - cpu_started)
    assert seen == spec["samples"]
    rates = [spec["samples"] / t for t in times]
    return {"samples_per_s": statistics.median(rates), "samples_per_s_runs": [round(r, 2) for r in rates],
            "cpu_s_per_sample": round(statistics.median(c / spec["samples"] for c in cpu), 5)}


def _run_child(spec: dict) -> dict:
    """Run one configuration in a fresh interpreter, sampling the RSS of it and its workers."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    from benchmarks.common import TreeRssSampler

    with TreeRssSampler(process.pid) as memory:
        stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"benchmark configuration {spec} failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(memory.peak_mb, 1)
    result["peak_rss_with_workers_mb"] = round(memory.peak_tree_mb, 1)
    return result


# ---------------------------------------------------------------- driver
def run(quick: bool = False, data_path=None, workers=(0, 1, 2), samples: int | None = None,
        repeats: int | None = None, modes=("weak", "ssl")) -> dict:
    """Benchmark both loaders in weak and SSL mode; returns a JSON-able dict of results.

    ``samples``/``repeats`` override the per-epoch sample count and timed epochs, ``modes`` the
    modes measured (the suite's ``--smoke`` mode shrinks all three to run in seconds)."""
    from unilvseg.data.index import load_index
    from unilvseg.data.video import FrameCache

    videos = 8 if quick else 20
    started = time.perf_counter()
    if data_path is None:
        from unilvseg.data.phantom import default_data_path

        data_path = default_data_path(videos=videos, seed=0)
    data_path = Path(data_path)
    data_seconds = time.perf_counter() - started
    records = load_index(data_path, require_tracings=False).records
    default_samples, default_repeats = (16, 3) if quick else (48, 5)
    samples, repeats = int(samples or default_samples), int(repeats or default_repeats)

    cache_dir = Path(tempfile.mkdtemp(prefix="unilvseg-data-bench-"))
    try:
        cache = FrameCache(cache_dir)
        started = time.perf_counter()
        for record in records:
            cache.frames(record.path)
        build_seconds = time.perf_counter() - started
        cache_mb = sum(p.stat().st_size for p in cache_dir.glob("*.npy")) / 2**20
        source_mb = sum(r.path.stat().st_size for r in records) / 2**20

        rows = []
        for mode in modes:
            for n_workers in workers:
                for loader in ("published", "ours", "ours_uint8"):
                    spec = {"loader": loader, "mode": mode, "workers": int(n_workers), "data_path": str(data_path),
                            "cache_dir": str(cache_dir), "samples": samples, "repeats": repeats}
                    result = _run_child(spec)
                    rows.append({"mode": mode, "workers": int(n_workers), "loader": loader, **result})
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    speedups = {}
    for row in rows:
        if row["loader"] in ("ours", "ours_uint8"):
            base = next(r for r in rows if r["loader"] == "published" and r["mode"] == row["mode"]
                        and r["workers"] == row["workers"])
            key = f"{row['mode']}_workers{row['workers']}" + ("_uint8" if row["loader"] == "ours_uint8" else "")
            speedups[key] = round(row["samples_per_s"] / base["samples_per_s"], 2)
    load = os.getloadavg()
    return {
        "benchmark": "data_loading",
        "quick": quick,
        "data_path": portable_path(data_path),
        "videos": len(records),
        "mean_frames_per_video": round(sum(r.n_frames or 0 for r in records) / len(records), 1),
        "clip_frames": FRAMES,
        "batch_size": BATCH,
        "samples_per_repeat": samples,
        "repeats": repeats,
        "data_ready_s": round(data_seconds, 2),
        "cache_build_s": round(build_seconds, 3),
        "cache_mb": round(cache_mb, 1),
        "source_avi_mb": round(source_mb, 1),
        "rows": rows,
        "speedup": speedups,
        "machine": {"cpus": os.cpu_count(), "loadavg_1_5_15": [round(x, 2) for x in load],
                    "python": platform.python_version(), "platform": platform.platform()},
    }


def _table(result: dict) -> str:
    lines = [
        f"Data loading, clip {result['clip_frames']} frames, batch {result['batch_size']}, "
        f"{result['videos']} phantom videos (mean {result['mean_frames_per_video']} frames); "
        f"median of {result['repeats']} epochs x {result['samples_per_repeat']} samples; "
        f"cache build {result['cache_build_s']} s ({result['cache_mb']} MB cache from {result['source_avi_mb']} MB AVI); "
        f"load average {result['machine']['loadavg_1_5_15']} on {result['machine']['cpus']} CPUs",
        "",
        "| mode | workers | loader | samples/s | runs | CPU s / sample | samples/s per core | cores for 1,400 clips/s | peak RSS MB (main / +workers) | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        key = f"{row['mode']}_workers{row['workers']}" + ("_uint8" if row["loader"] == "ours_uint8" else "")
        speedup = result["speedup"].get(key) if row["loader"] != "published" else None
        per_sample = row.get("cpu_s_per_sample")
        per_core = f"{1 / per_sample:.0f}" if per_sample else ""
        cores = f"{GPU_DEMAND_CLIPS_PER_S * per_sample:.0f}" if per_sample else ""
        lines.append(
            f"| {row['mode']} | {row['workers']} | {row['loader']} | {row['samples_per_s']:.1f} | "
            f"{row['samples_per_s_runs']} | {per_sample if per_sample is not None else ''} | {per_core} | {cores} | "
            f"{row['peak_rss_mb']:.0f} / {row['peak_rss_with_workers_mb']:.0f} | {f'{speedup:.1f}x' if speedup else ''} |"
        )
    lines += ["", f"`ours` hands over normalised float32 clips, `ours_uint8` uint8 pixels normalised in the main process "
                  f"(counted); cores for {GPU_DEMAND_CLIPS_PER_S:,} clips/s: what one H200 at 30 % MFU on the published 3D U-Net "
                  "would take (the issue's estimate), at this row's CPU seconds per sample."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 videos, 16 samples x 3 repeats")
    parser.add_argument("--data_path", type=Path, default=None, help="EchoNet folder (default: cached phantom)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--out", type=Path, default=None, help=f"also write the JSON here (e.g. {RESULTS})")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    from unilvseg.errors import UserError

    try:
        result = run(quick=args.quick, data_path=args.data_path, workers=tuple(args.workers))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(_table(result))
    print(json.dumps(result))
    if args.out is not None:
        from unilvseg.io import write_json

        write_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
