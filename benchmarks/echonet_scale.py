"""EchoNet-Dynamic-sized data layer: indexing, DataModule set-up, first-epoch decoding, cache size.

``python -m benchmarks.echonet_scale [--videos 10030] [--sources 8] [--decode_sample 200]``

Builds an EchoNet-format folder of ``--videos`` videos (EchoNet-Dynamic: 10,030) whose AVIs are
hard links to ``--sources`` phantom videos (EchoNet's ~177 frames on average: the phantom
draws 140-215), with a FileList.csv split like EchoNet's (7,465 / 1,288 / 1,277) and a
VolumeTracings.csv of 42 rows per video (EchoNet's format: long axis + 20 chords, ED and ES),
then measures in one process:

- indexing (``load_index`` of FileList + VolumeTracings): wall time and resident memory added;
- DataModule set-up: index, splits, cache preparation (sweep + size tally) and the three loaders;
- first-epoch decoding: ``--decode_sample`` videos chosen evenly over the list are decoded into
  an empty frame cache (each hard link is its own path, so its own entry); the per-video time is
  extrapolated to all videos and stated as extrapolated;
- one training sample from the warm cache (the steady state after the first epoch);
- cache size: bytes per frame measured on the sample's entries, projected to the folder's frames
  and to EchoNet-Dynamic's (10,030 videos x 177 frames of 112 x 112).

Results: ``benchmarks/results/echonet_scale-<tag>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, current_rss_mb, load_average, machine_info, peak_rss_mb

ECHONET_VIDEOS = 10_030
ECHONET_MEAN_FRAMES = 177  # EchoNet-Dynamic FileList: mean NumberOfFrames (about 177)
ECHONET_SPLITS = {"TRAIN": 7465, "VAL": 1288, "TEST": 1277}


def build_folder(out: Path, videos: int, sources: int, seed: int = 0) -> Path:
    """EchoNet-format folder of ``videos`` hard links to ``sources`` phantom videos."""
    from unilvseg.data.phantom import generate_phantom

    source_root = Path(generate_phantom(out / "sources", videos=sources, seed=seed, min_frames=140, max_frames=215))
    filelist = pd.read_csv(source_root / "FileList.csv")
    tracings = pd.read_csv(source_root / "VolumeTracings.csv")
    root = out / "echonet"
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    splits = np.concatenate([[s] * n for s, n in ECHONET_SPLITS.items()])
    splits = np.resize(np.random.default_rng(seed).permutation(splits), videos)  # EchoNet's proportions
    rows, tracing_tables = [], []
    by_source = {name: table for name, table in tracings.groupby("FileName")}
    for i in range(videos):
        source = filelist.iloc[i % sources]
        name = f"0X{i:014X}"
        os.link(source_root / "Videos" / f"{source.FileName}.avi", root / "Videos" / f"{name}.avi")
        row = source.to_dict()
        row.update(FileName=name, Split=splits[i])
        rows.append(row)
        table = by_source[f"{source.FileName}.avi"].copy()
        table["FileName"] = f"{name}.avi"
        tracing_tables.append(table)
    pd.DataFrame(rows).to_csv(root / "FileList.csv", index=False)
    pd.concat(tracing_tables).to_csv(root / "VolumeTracings.csv", index=False, float_format="%.4f")
    return root


def measure(root: Path, cache_dir: Path, decode_sample: int, frames: int) -> dict:
    from unilvseg.data.dataset import EchoNetDataModule
    from unilvseg.data.index import load_index

    result: dict = {}
    rss_before = current_rss_mb()
    start = time.perf_counter()
    index = load_index(root)
    result["index_seconds"] = time.perf_counter() - start
    result["index_rss_added_mb"] = current_rss_mb() - rss_before
    result["indexed_videos"] = len(index)
    result["tracing_rows"] = int(sum(1 for _ in open(root / "VolumeTracings.csv")) - 1)
    del index

    start = time.perf_counter()
    datamodule = EchoNetDataModule(root, scheme="weak", frames=frames, batch_size=4, cache_dir=cache_dir, seed=0)
    datamodule.setup("fit")
    loaders = [datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader()]
    result["datamodule_setup_seconds"] = time.perf_counter() - start
    result["loader_items"] = {name: len(loader.dataset) for name, loader in zip(("train", "val", "test"), loaders)}

    records = datamodule.index.records
    chosen = [records[int(i)] for i in np.linspace(0, len(records) - 1, min(decode_sample, len(records)))]
    cache = datamodule.cache
    per_video = []
    for record in chosen:
        start = time.perf_counter()
        cache.stored_frames(record.path)
        per_video.append(time.perf_counter() - start)
    entries = [cache.entry(r.path) for r in chosen]
    entry_bytes = sum(e.stat().st_size for e in entries)
    sample_frames = sum(r.n_frames for r in chosen)
    all_frames = sum(r.n_frames for r in records)
    result["decode"] = {
        "videos_decoded": len(chosen),
        "seconds_per_video_median": statistics.median(per_video),
        "seconds_per_video_mean": statistics.mean(per_video),
        "first_epoch_decode_seconds_extrapolated": statistics.mean(per_video) * len(records),
        "note": f"measured on {len(chosen)} of {len(records)} videos, extrapolated linearly to all; one process, no workers",
    }
    bytes_per_frame = entry_bytes / sample_frames
    result["cache"] = {
        "grey_entries": int(sum(np.load(e, mmap_mode="r").ndim == 3 for e in entries)),
        "entries_measured": len(entries),
        "bytes_per_frame": bytes_per_frame,
        "bytes_per_frame_three_channels": 112 * 112 * 3,
        "folder_frames": all_frames,
        "folder_projected_gb": bytes_per_frame * all_frames / 1e9,
        "echonet_dynamic_projected_gb": bytes_per_frame * ECHONET_VIDEOS * ECHONET_MEAN_FRAMES / 1e9,
        "echonet_dynamic_three_channel_gb": 112 * 112 * 3 * ECHONET_VIDEOS * ECHONET_MEAN_FRAMES / 1e9,
        "default_bound_gb": cache.max_gb,
    }
    train = loaders[0].dataset
    cached_positions = [i for i, item in enumerate(train.items) if cache.entry(item.record.path).is_file()][:50]
    train[cached_positions[0]]
    timings = []
    for position in cached_positions:
        start = time.perf_counter()
        train[position]
        timings.append(time.perf_counter() - start)
    result["warm_sample_ms_median"] = 1000 * statistics.median(timings)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def write_markdown(result: dict, path: Path) -> None:
    cache, decode = result["cache"], result["decode"]
    lines = [
        f"# EchoNet-sized data layer ({result['videos']} videos)",
        "",
        f"`python -m benchmarks.echonet_scale --videos {result['videos']} --sources {result['sources']} "
        f"--decode_sample {result['decode_sample']}`; {result['machine']['cpu_model']}, "
        f"{result['machine']['cpus_usable']} usable CPUs, load average at start {result['load_average_start']}; one run.",
        "",
        "| what | measured |",
        "|---|---|",
        f"| index FileList + VolumeTracings ({result['indexed_videos']} videos, {result['tracing_rows']:,} tracing rows) | "
        f"{result['index_seconds']:.1f} s, +{result['index_rss_added_mb']:.0f} MiB resident |",
        f"| DataModule set-up (index, splits, cache sweep, 3 loaders) | {result['datamodule_setup_seconds']:.1f} s |",
        f"| first-epoch decode into the cache | {decode['seconds_per_video_mean'] * 1000:.0f} ms per video (median "
        f"{decode['seconds_per_video_median'] * 1000:.0f}); {decode['first_epoch_decode_seconds_extrapolated'] / 60:.1f} min "
        f"for all {result['videos']} (**extrapolated** from {decode['videos_decoded']} videos, one process) |",
        f"| training sample from the warm cache | {result['warm_sample_ms_median']:.1f} ms |",
        f"| cache bytes per frame (112 x 112) | {cache['bytes_per_frame']:,.0f} ({cache['grey_entries']}/{cache['entries_measured']} "
        f"entries grey; 3 channels would be {cache['bytes_per_frame_three_channels']:,}) |",
        f"| cache for this folder ({cache['folder_frames']:,} frames) | {cache['folder_projected_gb']:.1f} GB projected |",
        f"| cache for EchoNet-Dynamic (10,030 x 177 frames) | {cache['echonet_dynamic_projected_gb']:.1f} GB projected "
        f"(3 channels: {cache['echonet_dynamic_three_channel_gb']:.1f} GB); default bound {cache['default_bound_gb']:g} GB |",
        f"| peak resident memory of the whole benchmark | {result['peak_rss_mb']:.0f} MiB |",
        "",
    ]
    from unilvseg.io import write_text

    write_text("\n".join(lines), path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=ECHONET_VIDEOS)
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--decode_sample", type=int, default=200)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--work_dir", type=Path, default=None, help="where the folder and cache go (default: a temporary folder, removed)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args(argv)
    from unilvseg.io import write_json

    work = Path(tempfile.mkdtemp(prefix="echonet-scale-")) if args.work_dir is None else args.work_dir
    try:
        load_start = load_average()
        start = time.perf_counter()
        root = build_folder(work, args.videos, args.sources)
        build_seconds = time.perf_counter() - start
        result = measure(root, work / "cache", args.decode_sample, args.frames)
        result.update(videos=args.videos, sources=args.sources, decode_sample=args.decode_sample,
                      folder_build_seconds=build_seconds, load_average_start=load_start, machine=machine_info("cpu"))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(result, args.out / f"echonet_scale-{args.tag}.json")
    write_markdown(result, args.out / f"echonet_scale-{args.tag}.md")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
