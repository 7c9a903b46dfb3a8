"""Video reading and the decoded-frame cache.

Decoding an AVI is the hot path of every epoch: the published code decodes the whole video
for every sample to use 32 frames of it. Here each video is decoded once into a uint8 ``.npy``
file that later samples memory-map, so a sample touches only the frames it uses. A cache entry
is keyed by the source's path, size and modification time, so editing a video invalidates it.

Sized for EchoNet-Dynamic (10,030 videos, ~177 frames of 112x112): a video whose three
channels are identical (EchoNet's are) is stored as one grey channel, 12,544 bytes per frame
(22 GB for the whole data set instead of 67 GB); the cache has a size bound with
least-recently-used eviction; entries of moved or edited videos and the temporaries of killed
writes are removed; a cache that cannot be written stops the run with a :class:`CacheError`.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from unilvseg.errors import CacheError, DataError
from unilvseg.io import TMP_PREFIX, atomic_path

log = logging.getLogger("unilvseg")

# OpenCV's own thread pool fights with torch/dataloader workers on small machines.
cv2.setNumThreads(1)


def cache_root() -> Path:
    """Root of everything unilvseg caches: ``$UNILVSEG_CACHE`` or ``~/.cache/unilvseg``."""
    return Path(os.environ.get("UNILVSEG_CACHE", Path.home() / ".cache" / "unilvseg")).expanduser()


def read_video(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a whole video to uint8 (T, H, W, 3); resize frames to ``size`` = (H, W) if given.

    Grey videos come back with three identical channels, as EchoNet stores them (see
    :func:`decode_video`).
    """
    video = decode_video(path, size)
    return np.ascontiguousarray(as_three_channels(video))


# A grey MJPEG frame decodes to red = blue = the stored luma and a green channel that the
# decoder's fixed-point YCbCr->RGB conversion rounds up to this many levels away from it
# (measured on EchoNet-Dynamic videos: 53-70 % of pixels differ by 1-2 levels).
GREY_DECODER_TOLERANCE = 2


def decode_video(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a whole video: uint8 (T, H, W) when it is grey, else (T, H, W, 3) RGB.

    Grey means red and blue are equal everywhere and green is within the decoder's rounding
    (:data:`GREY_DECODER_TOLERANCE`) of them: the file stores one grey value per pixel, which is
    the red/blue value returned. A coloured overlay (an ECG trace, annotations) keeps 3 channels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        if not capture.isOpened():
            raise DataError(f"{path}: cannot open as a video (unreadable or not a video file)")
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise DataError(f"{path}: video has no decodable frames (empty, truncated or not a video)")
    video = np.stack(frames)
    if video.ndim == 4:
        video = grey_channel(video[..., ::-1])  # OpenCV decodes BGR
    if size is not None and video.shape[1:3] != tuple(size):
        video = resize_frames(video, size)
    return np.ascontiguousarray(video)


def grey_channel(video: np.ndarray) -> np.ndarray:
    """The (T, H, W) grey frames of an RGB (T, H, W, 3) video that is grey, else ``video`` itself."""
    red, green, blue = video[..., 0], video[..., 1], video[..., 2]
    if not np.array_equal(red, blue):
        return video
    # uint8 |green - red| without a wider copy: the larger minus the smaller of the two.
    if np.max(np.maximum(green, red) - np.minimum(green, red), initial=0) > GREY_DECODER_TOLERANCE:
        return video
    return red


def resize_frames(video: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize (T, H, W[, C]) frames to size = (H, W).

    Masks (``nearest``) use OpenCV's pixel-centre-aligned nearest neighbour: plain INTER_NEAREST
    samples ``floor(x * scale)`` and so shifts a 112 -> 64 mask by ~0.75 source pixels towards
    the bottom-right relative to the INTER_AREA frames; label-free self-learning resizes its
    own predictions every round, and that shift accumulated into a drift of the LV (measured:
    Dice 0.93 -> 0.89 -> 0.87 over two rounds on the phantom).
    """
    interpolation = cv2.INTER_NEAREST_EXACT if nearest else cv2.INTER_AREA
    height, width = size
    return np.stack([cv2.resize(frame, (width, height), interpolation=interpolation) for frame in video])


# Frame size of the shared cache entries: EchoNet-Dynamic's. Tasks that train smaller resize clips.
SHARED_CACHE_SIZE = (112, 112)
# Default bound of the frame cache: the grey EchoNet-Dynamic cache (22 GB) fits with room for
# other data sets and sizes. ``--cache_max_gb`` or ``$UNILVSEG_CACHE_MAX_GB`` change it.
DEFAULT_CACHE_MAX_GB = 64.0
# A temporary this old is a killed writer's leftover, not another process's write in progress
# (writing one video's entry takes well under a second).
STALE_TEMPORARY_SECONDS = 3600.0
# Rescan the folder's total size after this many of our own writes: other processes
# (DataLoader workers, DDP ranks, other runs) write into the same cache.
_RESCAN_EVERY = 64
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def default_cache_max_gb() -> float:
    value = os.environ.get("UNILVSEG_CACHE_MAX_GB")
    if value is None:
        return DEFAULT_CACHE_MAX_GB
    try:
        return float(value)
    except ValueError:
        raise CacheError(f"UNILVSEG_CACHE_MAX_GB={value!r}: expected a number of gigabytes") from None


def as_three_channels(frames: np.ndarray) -> np.ndarray:
    """(..., H, W) grey frames as a read-only (..., H, W, 3) view (no copy); colour frames unchanged."""
    if frames.ndim == 4:
        return frames
    return np.broadcast_to(frames[..., None], frames.shape + (3,))


class FrameCache:
    """Decoded frames of each video as a memory-mapped uint8 ``.npy``, built on first use.

    Entries hold (T, H, W) for grey videos and (T, H, W, 3) where the channels differ
    (:meth:`stored_frames`); :meth:`frames` always gives (T, H, W, 3). ``size`` = (H, W) the frames
    are resized to (None: the video's own size; a video already of the asked size shares one
    entry between both). ``max_gb`` bounds the folder: past it, the least recently used entries
    are deleted (a process that has one memory-mapped keeps reading it). ``cache_dir=None``
    disables the cache (every call decodes the whole video, the published way; kept for
    benchmarks and read-only machines).

    Files: ``<stem>-<source>-<state>.npy`` (source = resolved path and frame size, state = the
    video's size and modification time) and ``<stem>-<source>.src`` holding the video's path, so
    :meth:`remove_stale` can tell entries of moved, deleted or edited videos.
    """

    def __init__(self, cache_dir: str | Path | None = "auto", size: tuple[int, int] | None = (112, 112),
                 max_gb: float | None = None):
        if cache_dir == "auto":
            cache_dir = cache_root() / "frames"
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.size = tuple(size) if size is not None else None
        self.max_gb = default_cache_max_gb() if max_gb is None else float(max_gb)
        if self.max_gb < 0:
            raise CacheError(f"--cache_max_gb must be >= 0, got {max_gb}")
        self._ready_pid: int | None = None  # prepared in this process (workers are other processes)
        self._total_bytes = 0
        self._writes_since_scan = 0
        self._touched: set[Path] = set()

    @property
    def max_bytes(self) -> int:
        return int(self.max_gb * 1e9)

    # -- naming -------------------------------------------------------------------------------
    def _frame_size(self, path: Path) -> tuple[int, int]:
        if self.size is not None:
            return self.size
        capture = cv2.VideoCapture(str(path))  # the header only: no frame is decoded
        try:
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        finally:
            capture.release()
        return height, width

    def _source_key(self, path: Path) -> str:
        height, width = self._frame_size(path)
        return hashlib.sha1(f"{path}|{height}x{width}".encode()).hexdigest()[:12]

    @staticmethod
    def _state_key(stat: os.stat_result) -> str:
        return hashlib.sha1(f"{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:8]

    def entry(self, path: str | Path) -> Path:
        path = Path(path).resolve()
        return self.cache_dir / f"{path.stem}-{self._source_key(path)}-{self._state_key(path.stat())}.npy"

    # -- reading ------------------------------------------------------------------------------
    def frames(self, path: str | Path) -> np.ndarray:
        """uint8 (T, H, W, 3) frames of the video; memory-mapped when cached (grey: a 3-channel view)."""
        return as_three_channels(self.stored_frames(path))

    def stored_frames(self, path: str | Path) -> np.ndarray:
        """The frames as stored: uint8 (T, H, W) when the video is grey, else (T, H, W, 3)."""
        if self.cache_dir is None:
            return decode_video(path, self.size)
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: video file not found")
        self.prepare()
        entry = self.entry(path)
        try:
            frames = np.load(entry, mmap_mode="r")
        except FileNotFoundError:
            return self._build(path, entry)
        except (ValueError, OSError):
            # A damaged cache file is rebuilt from the source rather than trusted.
            entry.unlink(missing_ok=True)
            return self._build(path, entry)
        if entry not in self._touched:
            # Recency for the LRU bound: once per process and entry, not per sample.
            self._touched.add(entry)
            try:
                os.utime(entry)
            except OSError:
                pass  # evicted meanwhile by another process; the open map stays valid
        return frames

    def _build(self, path: Path, entry: Path) -> np.ndarray:
        stored = decode_video(path, self.size)
        nbytes = stored.nbytes + 128  # + the .npy header
        if nbytes > self.max_bytes:
            return stored  # larger than the whole bound: decode every time rather than thrash
        try:
            seen_before = self._write_source(path, entry)
            with atomic_path(entry) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, stored)
        except OSError as error:
            raise self._error(error, f"writing {entry.name} for {path}") from None
        if seen_before:
            self._remove_other_states(entry)
        self._total_bytes += nbytes
        self._writes_since_scan += 1
        if self._total_bytes > self.max_bytes or self._writes_since_scan >= _RESCAN_EVERY:
            self.evict(keep=entry)
        return stored

    def _write_source(self, path: Path, entry: Path) -> bool:
        """Record which video the entry's source key stands for; True if it was recorded before."""
        source = self._source_file(entry)
        if source.is_file():
            return True
        with atomic_path(source) as tmp:
            tmp.write_text(str(path.resolve()) + "\n")
        return False

    @staticmethod
    def _source_file(entry: Path) -> Path:
        return entry.with_name(entry.name.rsplit("-", 1)[0] + ".src")

    def _remove_other_states(self, entry: Path) -> None:
        """The entries of earlier versions of the same video (edited in place)."""
        prefix = entry.name.rsplit("-", 1)[0]
        for other in self.cache_dir.glob(f"{glob_escape(prefix)}-*.npy"):
            if other != entry and other.name.rsplit("-", 1)[0] == prefix:
                other.unlink(missing_ok=True)

    # -- housekeeping -------------------------------------------------------------------------
    def _error(self, error: OSError, doing: str) -> CacheError:
        where = f"frame cache {self.cache_dir} (--cache_dir, default $UNILVSEG_CACHE/frames)"
        if error.errno in _DISK_FULL:
            return CacheError(
                f"{where}: the disk is full ({doing}). Free space there, lower --cache_max_gb (now {self.max_gb:g} GB) "
                "below the free space, point --cache_dir or UNILVSEG_CACHE at a larger disk, or run with "
                "--cache_dir null to decode every clip without caching"
            )
        return CacheError(
            f"{where}: cannot be written ({error.strerror or error}: {error.filename or doing}). Point --cache_dir or "
            "UNILVSEG_CACHE at a writable folder, or run with --cache_dir null to decode every clip without caching"
        )

    def prepare(self, clean: bool = False) -> None:
        """Check the cache folder can be written and tally its size, once per process; with
        ``clean`` (the main process, before training) also :meth:`remove_stale` and :meth:`evict`."""
        if self.cache_dir is None:
            return
        if clean:
            self._ready_pid = None
        if self._ready_pid == os.getpid():
            return
        try:
            if self.cache_dir.exists() and not self.cache_dir.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(self.cache_dir))
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.cache_dir / ".write-check") as probe:
                probe.write_bytes(b"ok")
        except OSError as error:
            raise self._error(error, "checking the folder") from None
        self._ready_pid = os.getpid()
        self._touched = set()
        if clean:
            self.remove_stale()
            self.evict()
        else:
            self._total_bytes = self.size_bytes()

    def entries(self) -> list[Path]:
        return [] if self.cache_dir is None or not self.cache_dir.is_dir() else list(self.cache_dir.glob("*.npy"))

    def size_bytes(self) -> int:
        """Bytes held by cache entries now."""
        total = 0
        for entry in self.entries():
            try:
                total += entry.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def evict(self, keep: Path | None = None) -> int:
        """Delete least recently used entries until the folder is within 90 % of the bound."""
        stats = []
        for entry in self.entries():
            try:
                stats.append((entry.stat().st_mtime_ns, entry.stat().st_size, entry))
            except FileNotFoundError:
                pass
        total = sum(size for _, size, _ in stats)
        removed = 0
        if total > self.max_bytes:
            target = 0.9 * self.max_bytes
            for _, size, entry in sorted(stats):
                if total <= target:
                    break
                if entry == keep:
                    continue
                entry.unlink(missing_ok=True)
                total -= size
                removed += 1
            if removed:
                log.info("frame cache %s: evicted %d least recently used entries (bound %g GB)", self.cache_dir, removed, self.max_gb)
        self._total_bytes = total
        self._writes_since_scan = 0
        return removed

    def remove_stale(self) -> int:
        """Delete entries of videos that moved, were deleted or edited, entries of an older cache
        layout, and temporaries of killed writes; returns how many files were removed."""
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return 0
        removed = 0
        now = time.time()
        for tmp in self.cache_dir.glob(f"{TMP_PREFIX}*"):
            try:
                if now - tmp.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                    tmp.unlink()
                    removed += 1
            except OSError:
                pass
        current: dict[str, str | None] = {}  # source prefix -> current state key (None: source gone)
        for source in self.cache_dir.glob("*.src"):
            try:
                video = Path(source.read_text().strip())
                current[source.stem] = self._state_key(video.stat()) if video.is_file() else None
            except OSError:
                current[source.stem] = None
        for entry in self.cache_dir.glob("*.npy"):
            prefix, _, state = entry.stem.rpartition("-")
            if prefix in current:
                stale = current[prefix] != state  # the video is gone or has changed since
            else:
                # No source record: an older cache layout, or an entry another process is
                # creating right now (it writes the record first, but after our listing).
                try:
                    stale = now - entry.stat().st_mtime > STALE_TEMPORARY_SECONDS
                except OSError:
                    stale = False
            if stale:
                entry.unlink(missing_ok=True)
                removed += 1
        for prefix, state in current.items():
            if state is None:
                (self.cache_dir / f"{prefix}.src").unlink(missing_ok=True)
        if removed:
            log.info("frame cache %s: removed %d stale file(s) (moved or edited videos, interrupted writes)", self.cache_dir, removed)
        return removed


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters taken literally (video names may contain them)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
