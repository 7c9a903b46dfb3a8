"""The EchoNet-scale benchmark runs end to end on a small folder and reports what it promises."""

from __future__ import annotations

import os

import pandas as pd

from benchmarks import echonet_scale


def test_echonet_scale_benchmark_on_a_small_folder(tmp_path):
    root = echonet_scale.build_folder(tmp_path / "work", videos=12, sources=2)
    filelist = pd.read_csv(root / "FileList.csv")
    assert len(filelist) == 12 and filelist["FileName"].is_unique
    assert set(filelist["Split"]) <= {"TRAIN", "VAL", "TEST"}
    videos = sorted((root / "Videos").glob("*.avi"))
    assert len(videos) == 12 and os.stat(videos[0]).st_nlink >= 2  # hard links, not copies
    assert len(pd.read_csv(root / "VolumeTracings.csv")) == 12 * 42  # long axis + 20 chords, ED and ES

    result = echonet_scale.measure(root, tmp_path / "cache", decode_sample=3, frames=16)
    assert result["indexed_videos"] == 12
    cache = result["cache"]
    assert cache["entries_measured"] == 3 and cache["grey_entries"] == 3
    assert 112 * 112 <= cache["bytes_per_frame"] < 112 * 112 + 10  # one byte per pixel (+ .npy header)
    expected = cache["bytes_per_frame"] * echonet_scale.ECHONET_VIDEOS * echonet_scale.ECHONET_MEAN_FRAMES / 1e9
    assert abs(cache["echonet_dynamic_projected_gb"] - expected) < 1e-9
    decode = result["decode"]
    assert decode["first_epoch_decode_seconds_extrapolated"] == decode["seconds_per_video_mean"] * 12
