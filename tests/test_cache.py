"""The decoded-frame cache at EchoNet scale: one byte per grey pixel, a size bound with LRU
eviction, stale entries and temporaries removed, and clear errors when it cannot be written."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_avi
from unilvseg.data import video as video_module
from unilvseg.data.video import FrameCache, decode_video, read_video
from unilvseg.errors import CacheError

SIZE = 112


def noise_video(n_frames: int, seed: int = 0, colour: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (n_frames, SIZE, SIZE) + ((3,) if colour else ()), dtype=np.uint8)
    if colour:
        video[..., 0] = 255 - video[..., 2]  # channels clearly different
    return video


def test_grey_video_costs_one_byte_per_pixel_and_reads_back_as_three_equal_channels(tmp_path):
    path = write_avi(tmp_path / "grey.avi", noise_video(20))  # written as 3 equal channels (EchoNet's way)
    cache = FrameCache(tmp_path / "cache")
    frames = cache.frames(path)
    assert frames.shape == (20, SIZE, SIZE, 3)
    assert np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 0], frames[..., 2])
    (entry,) = (tmp_path / "cache").glob("*.npy")
    pixels = 20 * SIZE * SIZE
    assert pixels <= entry.stat().st_size <= pixels + 128  # 1 byte per pixel + the .npy header
    np.testing.assert_array_equal(frames, read_video(path))
    # The grey value is what the file stores: OpenCV's red and blue, exactly.
    capture = __import__("cv2").VideoCapture(str(path))
    ok, bgr = capture.read()
    capture.release()
    np.testing.assert_array_equal(frames[0, ..., 0], bgr[..., 2])
    np.testing.assert_array_equal(frames[0, ..., 0], bgr[..., 0])


def test_colour_video_keeps_three_channels(tmp_path):
    path = write_avi(tmp_path / "colour.avi", noise_video(6, colour=True))
    cache = FrameCache(tmp_path / "cache")
    assert cache.stored_frames(path).shape == (6, SIZE, SIZE, 3)
    (entry,) = (tmp_path / "cache").glob("*.npy")
    assert entry.stat().st_size >= 6 * SIZE * SIZE * 3
    np.testing.assert_array_equal(cache.frames(path), read_video(path))


def test_least_recently_used_entries_are_evicted_under_a_tiny_bound(tmp_path):
    paths = [write_avi(tmp_path / f"{name}.avi", noise_video(10, seed=i)) for i, name in enumerate("abc")]
    entry_bytes = 10 * SIZE * SIZE + 128
    cache = FrameCache(tmp_path / "cache", max_gb=2.5 * entry_bytes / 1e9)  # room for two entries
    a, b, c = (cache.entry(p) for p in paths)
    cache.frames(paths[0]), cache.frames(paths[1])
    now = time.time()
    os.utime(a, (now - 100, now - 100))  # a written first ...
    os.utime(b, (now - 50, now - 50))
    fresh = FrameCache(tmp_path / "cache", max_gb=cache.max_gb)  # another run (the touch is once per process)
    fresh.frames(paths[0])  # ... but a was used again since: b is now the least recently used
    fresh.frames(paths[2])  # three entries > bound: evict down to 90 % of it
    assert a.is_file() and c.is_file() and not b.is_file()
    assert fresh.size_bytes() <= fresh.max_bytes
    np.testing.assert_array_equal(fresh.frames(paths[1]), read_video(paths[1]))  # rebuilt on demand


def test_a_video_larger_than_the_bound_is_decoded_not_cached(tmp_path):
    path = write_avi(tmp_path / "v.avi", noise_video(4))
    cache = FrameCache(tmp_path / "cache", max_gb=0)
    np.testing.assert_array_equal(cache.frames(path), read_video(path))
    assert not list((tmp_path / "cache").glob("*.npy"))


def test_stale_entries_and_killed_writes_are_removed(tmp_path):
    cache_dir = tmp_path / "cache"
    kept, moved, edited = (write_avi(tmp_path / f"{n}.avi", noise_video(5, seed=i)) for i, n in enumerate(("kept", "moved", "edited")))
    cache = FrameCache(cache_dir)
    for path in (kept, moved, edited):
        cache.frames(path)
    old_edited = cache.entry(edited)
    moved.rename(tmp_path / "elsewhere.avi")
    time.sleep(0.01)
    write_avi(edited, noise_video(7, seed=9))  # edited in place: new size and mtime
    old_tmp = cache_dir / ".tmp-x.npy-0a0b0c0d.npy"
    new_tmp = cache_dir / ".tmp-y.npy-01020304.npy"  # another process writing right now
    for tmp in (old_tmp, new_tmp):
        tmp.write_bytes(b"half")
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    legacy = cache_dir / "kept-0123456789abcdef.npy"  # the cache layout before source records
    np.save(legacy, np.zeros((2, 2), np.uint8))
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))

    removed = FrameCache(cache_dir).remove_stale()
    assert removed == 4  # moved's and edited's old entries, the old temporary, the legacy entry
    assert cache.entry(kept).is_file() and not old_edited.is_file() and new_tmp.is_file()
    assert not old_tmp.exists() and not legacy.exists()
    assert sorted(p.name.split("-")[0] for p in cache_dir.glob("*.src")) == ["edited", "kept"]
    # An entry rebuilt for an edited video replaces the old one at once, without a sweep.
    fresh = FrameCache(cache_dir)
    fresh.frames(edited)
    write_avi(edited, noise_video(8, seed=10))
    fresh.frames(edited)
    assert len([p for p in cache_dir.glob("edited-*.npy")]) == 1


def test_every_task_shares_one_entry_for_an_echonet_sized_video(tmp_path):
    """Label-free reads videos at their own size, the other tasks at 112x112: one entry."""
    path = write_avi(tmp_path / "v.avi", noise_video(5))
    FrameCache(tmp_path / "cache", size=(SIZE, SIZE)).frames(path)
    FrameCache(tmp_path / "cache", size=None).frames(path)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1


def test_smaller_inputs_are_resized_from_the_shared_entries(tmp_path):
    from conftest import tracing_rows, write_echonet
    from unilvseg.data.augment import NO_AUGMENT
    from unilvseg.data.clips import ClipSampler
    from unilvseg.data.dataset import ECHONET_MEAN, ECHONET_STD, EchoClipDataset
    from unilvseg.data.index import load_index

    root = write_echonet(tmp_path, {"a": noise_video(20)}, tracing_rows("a", 3, (56, 56), (20, 30)) + tracing_rows("a", 12, (56, 56), (15, 25)))
    dataset = EchoClipDataset(load_index(root), ClipSampler(8), clip="centred", augment=NO_AUGMENT, size=(64, 64))
    item = dataset[0]
    expected = decode_video(root / "Videos" / "a.avi", (64, 64))[item["frame_index"].numpy()] / 255.0
    mean, std = np.array(ECHONET_MEAN)[:, None, None, None], np.array(ECHONET_STD)[:, None, None, None]
    np.testing.assert_allclose(item["video"].numpy(), (expected.transpose(1, 2, 0)[None] - mean) / std, atol=1e-5)
    assert dataset.cache.size == (SIZE, SIZE)


def test_unwritable_cache_location_is_a_clear_error(tmp_path):
    path = write_avi(tmp_path / "v.avi", noise_video(3))
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("I am a file")
    with pytest.raises(CacheError, match="cannot be written.*--cache_dir null"):
        FrameCache(not_a_folder).frames(path)


def test_full_disk_is_a_clear_error(tmp_path, monkeypatch):
    path = write_avi(tmp_path / "v.avi", noise_video(3))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video_module.np, "save", disk_full)
    with pytest.raises(CacheError, match="disk is full.*--cache_max_gb"):
        FrameCache(tmp_path / "cache").frames(path)
    assert not list((tmp_path / "cache").glob(".tmp-*"))  # the half-written entry is gone


def test_training_with_an_unwritable_cache_exits_2_with_what_to_do(tiny_phantom, tmp_path, monkeypatch, capsys):
    from unilvseg.cli.train import main_weak

    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("UNILVSEG_CACHE", str(not_a_folder))
    run_dir = tmp_path / "run"
    code = main_weak(["--data_path", str(tiny_phantom), "--encoder", "3d_unet_tiny", "--frames", "16",
                      "--epochs", "1", "--run_dir", str(run_dir), "--progress_bar", "false"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: frame cache {not_a_folder}/frames" in err and "UNILVSEG_CACHE" in err and "Traceback" not in err
    assert not run_dir.exists()
    # Without --data_path the phantom would be generated into the same cache: same kind of error.
    assert main_weak(["--epochs", "1", "--run_dir", str(run_dir)]) == 2
    assert "UNILVSEG_CACHE" in capsys.readouterr().err


def test_full_disk_met_in_a_dataloader_worker_is_one_error_line(tiny_phantom, tmp_path, monkeypatch, capsys):
    """Workers build cache entries; PyTorch re-raises a worker's error with its traceback as text.
    The command still prints one line saying what to do, and exits 2."""
    from unilvseg.cli.train import main_weak

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video_module.np, "save", disk_full)  # inherited by the forked worker
    code = main_weak(["--data_path", str(tiny_phantom), "--encoder", "3d_unet_tiny", "--frames", "16", "--epochs", "1",
                      "--num_workers", "1", "--cache_dir", str(tmp_path / "cache"), "--run_dir", str(tmp_path / "run"),
                      "--progress_bar", "false"])
    err = capsys.readouterr().err
    assert code == 2
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: frame cache {tmp_path / 'cache'}") and "disk is full" in line and "--cache_max_gb" in line
    assert "Traceback" not in line
