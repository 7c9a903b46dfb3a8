"""One clip dataset and one DataModule for every training scheme.

What differs between schemes is two choices, not a class each:
- ``clip``: how a clip is placed in its video (``random`` anywhere, ``traced_random`` around a
  traced frame for weak training, ``traced_centred`` deterministic around a traced frame for
  evaluation, ``centred`` deterministic around the middle of the video, ``traced_or_random``
  around a traced frame in traced videos and anywhere in the others);
- ``targets``: what comes with the clip (nothing for self-supervision, the ED/ES tracings for
  weak supervision, or any :class:`ClipTargets` callable: pseudo-labels, position maps).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from unilvseg.data.augment import NO_AUGMENT, ClipAugment
from unilvseg.data.published_augment import PublishedAugment
from unilvseg.data.clips import ClipSampler
from unilvseg.data.index import VIEWS, DatasetIndex, VideoRecord, index_video_folder, load_index, only_view
from unilvseg.data.tracings import tracing_mask
from unilvseg.data.video import SHARED_CACHE_SIZE, FrameCache, as_three_channels, resize_frames
from unilvseg.errors import DataError, UserError

log = logging.getLogger("unilvseg")

# EchoNet-Dynamic pixel statistics on [0, 1] pixels, as used by UniLVSeg.
ECHONET_MEAN = (0.12741163, 0.1279413, 0.12912785)
ECHONET_STD = (0.19557191, 0.19562256, 0.1965878)

CLIP_PLACEMENTS = ("random", "traced_random", "traced_centred", "centred", "traced_or_random")
#: What a loader worker hands over: normalised float32 clips, or uint8 pixels with each clip's
#: gain and offset, normalised after the transfer (normalise_batch; 4x fewer bytes per clip).
HANDOVERS = ("float", "uint8")


def normalise_batch(batch: dict, mean: Sequence[float], std: Sequence[float]) -> dict:
    """A uint8 hand-over batch made what the float hand-over gives: ``video`` float32
    ``(B, 3, H, W, T)`` normalised with ``mean``/``std``; ``gain``/``offset`` removed. Runs on
    whatever device the batch is on; other batches pass unchanged."""
    from unilvseg.data.augment import unit_pixels

    video = batch.get("video") if isinstance(batch, dict) else None
    if video is None or video.dtype != torch.uint8:
        return batch
    clip = unit_pixels(video, batch.pop("gain"), batch.pop("offset"))
    device = clip.device
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)
    batch["video"] = clip.sub_(mean_t).div_(std_t)
    return batch
PHASES = {"ED": 1, "ES": 2}



#: ``--augment`` values besides true/false: our augmentation, the published one, none.
AUGMENTATIONS = ("unilvseg", "published", "none")


def make_augment(value):
    """``--augment``: true/"unilvseg" (ClipAugment), "published"
    (unilvseg.data.published_augment.PublishedAugment), false/"none"."""
    if isinstance(value, (ClipAugment, PublishedAugment)):
        return value
    if value is True or value == "unilvseg":
        return ClipAugment()
    if value is False or value is None or value == "none":
        return NO_AUGMENT
    if value == "published":
        return PublishedAugment()
    raise UserError(f"--augment {value!r}: expected one of true, false, {', '.join(AUGMENTATIONS)}")


class ClipTargets(Protocol):
    """Targets for a clip: ``{"mask": (T, H, W), "labelled": (T,) bool, optional "phase": (T,)}``.

    ``frames`` are the clip's uint8 (T, H, W, 3) frames, ``phase`` is the traced phase the item
    was built around (None for non-traced placements). Masks are warped with the video.
    """

    def __call__(self, record: VideoRecord, frame_index: np.ndarray, frames: np.ndarray, phase: str | None) -> dict: ...


class TracingTargets:
    """Weak supervision: masks only at the traced ED/ES frames inside the clip."""

    def __init__(self, size: tuple[int, int] = (112, 112)):
        self.size = tuple(size)
        # Rasterised tracings per (video, phase), bit-packed: a polygon fill costs ~0.5 ms, more
        # than the rest of a cached sample's target, while a packed 112x112 mask is 1.6 kB
        # (EchoNet's 7,465 training videos: 23 MB per worker instead of 187 MB unpacked).
        self._packed: dict[tuple[str, str], np.ndarray] = {}

    def traced_mask(self, record: VideoRecord, name: str) -> np.ndarray:
        height, width = self.size
        key = (str(record.path), name)
        packed = self._packed.get(key)
        if packed is None:
            rows = record.ed_rows if name == "ED" else record.es_rows
            mask = tracing_mask(rows, record.height, record.width)
            if mask.shape != (height, width):
                mask = resize_frames(mask[None], (height, width), nearest=True)[0]
            packed = self._packed[key] = np.packbits(mask.astype(bool))
        return np.unpackbits(packed, count=height * width).reshape(height, width)

    def __call__(self, record, frame_index, frames, phase):
        height, width = self.size
        mask = np.zeros((len(frame_index), height, width), dtype=np.uint8)
        labelled = np.zeros(len(frame_index), dtype=bool)
        phases = np.zeros(len(frame_index), dtype=np.int64)
        for name, frame in record.traced_frames.items():
            # Evaluation items score only the phase they were built around, so ED and ES each
            # count once per video; training uses every traced frame that falls in the clip.
            if phase is not None and phase.startswith("only:") and name != phase[5:]:
                continue
            hits = np.flatnonzero(frame_index == frame)[:1]  # padded clips repeat the last frame
            if not len(hits):
                continue
            mask[hits] = self.traced_mask(record, name)
            labelled[hits] = True
            phases[hits] = PHASES[name]
        return {"mask": mask, "labelled": labelled, "phase": phases}


class TracingsFirstTargets:
    """Tracings where a video has them, ``fallback`` targets (e.g. QC'd pseudo-labels) everywhere else.

    A traced frame inside the clip takes its tracing (mask, ``labelled``, ED/ES phase) whatever the
    fallback says there; every other frame keeps the fallback's mask and ``labelled`` (a
    pseudo-label that failed QC stays unlabelled); untraced videos get the fallback alone.
    """

    def __init__(self, fallback: ClipTargets, size: tuple[int, int] = (112, 112)):
        self.fallback = fallback
        self.tracings = TracingTargets(size)

    def __call__(self, record, frame_index, frames, phase):
        target = self.fallback(record, frame_index, frames, phase)
        if not record.traced:
            return target
        traced = self.tracings(record, frame_index, frames, phase)
        hit = traced["labelled"]
        mask = np.array(target["mask"], dtype=np.uint8)  # a copy: fallbacks may return cached arrays
        mask[hit] = traced["mask"][hit]
        phases = np.asarray(target.get("phase", np.zeros(len(frame_index), np.int64)), dtype=np.int64)
        return {
            "mask": mask,
            "labelled": np.asarray(target["labelled"], dtype=bool) | hit,
            "phase": np.where(hit, traced["phase"], phases),
        }


class ReferenceTargets:
    """Dense targets from a data set's ``ReferenceMasks``: every frame of a video that has one is
    labelled, with its label map of every structure where the folder has them
    (:mod:`unilvseg.data.structures`), else its LV masks (LV = 1). Fully supervised training on
    the phantom, or on any folder with dense masks (``train_weak.py --labels reference``)."""

    def __init__(self, data_path: str | Path, size: tuple[int, int] = (112, 112)):
        self.data_path = Path(data_path)
        self.size = tuple(size)
        self._maps: dict[str, np.ndarray | None] = {}

    def reference(self, record: VideoRecord) -> np.ndarray | None:
        if record.file_name not in self._maps:
            from unilvseg.data.index import reference_masks
            from unilvseg.data.structures import reference_labels

            loaded = reference_labels(self.data_path, record.file_name)
            maps = loaded[0] if loaded is not None else reference_masks(self.data_path, record.file_name)
            if maps is not None and maps.shape[1:] != self.size:
                maps = resize_frames(maps, self.size, nearest=True)
            self._maps[record.file_name] = None if maps is None else np.ascontiguousarray(maps, dtype=np.uint8)
        return self._maps[record.file_name]

    def __call__(self, record, frame_index, frames, phase):
        frame_index = np.asarray(frame_index)
        maps = self.reference(record)
        count = len(frame_index)
        if maps is None:
            return {"mask": np.zeros((count,) + self.size, np.uint8), "labelled": np.zeros(count, bool), "phase": np.zeros(count, np.int64)}
        # Decoders can disagree on a video's last frame or two: frames past the reference stay unlabelled.
        inside = frame_index < len(maps)
        mask = np.zeros((count,) + self.size, np.uint8)
        mask[inside] = maps[frame_index[inside]]
        return {"mask": mask, "labelled": inside, "phase": np.zeros(count, np.int64)}


@dataclass
class _Item:
    record: VideoRecord
    phase: str | None = None


class EchoClipDataset(Dataset):
    """Clips of ``sampler.frames`` frames as dicts of tensors (see :func:`collate_clips`).

    A video that fails to decode is skipped, not fatal: the item comes back as ``None`` with a
    logged warning and :func:`collate_clips` counts it, so one broken file cannot end a run.
    """

    def __init__(
        self,
        index: DatasetIndex | Sequence[VideoRecord],
        sampler: ClipSampler,
        clip: str = "random",
        targets: ClipTargets | str | None = None,
        augment: ClipAugment | None = None,
        cache: FrameCache | None = None,
        mean: Sequence[float] = ECHONET_MEAN,
        std: Sequence[float] = ECHONET_STD,
        size: tuple[int, int] = (112, 112),
        seed: int | None = None,
        handover: str = "float",
    ):
        if clip not in CLIP_PLACEMENTS:
            raise UserError(f"clip placement {clip!r}: expected one of {CLIP_PLACEMENTS}")
        records = list(index.records if isinstance(index, DatasetIndex) else index)
        self.sampler = sampler
        self.clip = clip
        self.size = tuple(size)
        self.targets = TracingTargets(self.size) if targets == "tracings" else targets
        self.augment = augment or NO_AUGMENT
        self.cache = cache or FrameCache(size=cache_size_for(self.size))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
        self.seed = seed
        if handover not in HANDOVERS:
            raise UserError(f"--handover {handover!r}: expected one of {', '.join(HANDOVERS)}")
        self.handover = handover
        self.epoch = 0
        if clip in ("traced_random", "traced_centred"):
            records = [r for r in records if r.traced]
        if clip == "traced_centred":
            self.items = [_Item(r, f"only:{p}") for r in records for p in ("ED", "ES")]
        else:
            self.items = [_Item(r) for r in records]

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer keys (keys from :class:`EpochSampler` carry their own)."""
        self.epoch = int(epoch)

    def _rng(self, index: int, epoch: int) -> np.random.Generator:
        if self.seed is None:
            # Drawn from torch's generator so Lightning's seeding (main process and per-worker
            # seeds) makes clips reproducible, yet different every epoch.
            return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        # A pure function of (seed, epoch, item): a run resumed from a checkpoint, or one with
        # any number of workers, draws exactly the clips and augmentations of an uninterrupted run.
        return np.random.default_rng([int(self.seed) % 2**63, int(epoch), int(index)])

    def frame_index(self, item: _Item, n_frames: int, rng: np.random.Generator) -> np.ndarray:
        record = item.record
        if self.clip == "random" or (self.clip == "traced_or_random" and not record.traced):
            return self.sampler.random_clip(n_frames, rng)
        if self.clip == "centred":
            return self.sampler.centred_clip(n_frames, n_frames // 2)
        if self.clip == "traced_random" or (self.clip == "traced_or_random" and record.traced):
            frame = record.ed_frame if rng.random() < 0.5 else record.es_frame
            return self.sampler.clip_containing(n_frames, frame, rng)
        frame = record.traced_frames[item.phase[5:]]
        return self.sampler.centred_clip(n_frames, frame)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        # ``(epoch, i)`` keys come from EpochSampler; a plain ``i`` uses the dataset's own epoch.
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        item = self.items[i]
        record = item.record
        rng = self._rng(i, epoch)
        try:
            video = self.cache.stored_frames(record.path)  # (T, H, W) grey or (T, H, W, 3)
        except DataError as error:
            log.warning("skipping video in this batch: %s", error)
            return None
        if self.clip.startswith("traced") and record.traced and max(record.traced_frames.values()) >= len(video):
            # A truncated AVI can still decode its first frames; its tracings then point past the end.
            log.warning(
                "skipping video in this batch: %s decodes to %d frames but is traced at frame %d (truncated file?)",
                record.path, len(video), max(record.traced_frames.values()),
            )
            return None
        frame_index = self.frame_index(item, len(video), rng)
        frames = np.asarray(video[frame_index])  # reads only these frames from the memory map
        if frames.shape[1:3] != self.size:
            # Entries are shared at SHARED_CACHE_SIZE by every task; other input sizes per clip.
            frames = resize_frames(frames, self.size)
        sample = {"file_name": record.file_name, "frame_index": torch.from_numpy(frame_index.astype(np.int64))}
        target = self.targets(record, frame_index, as_three_channels(frames), item.phase) if self.targets is not None else None

        masks = np.asarray(target["mask"])[:, None] if target is not None else None
        # Warped as uint8 straight from the cache (one OpenCV call per clip) into (C, H, W, T)
        # floats; a grey clip is warped once, not three times, and becomes three channels in
        # the normalisation below (broadcast against the per-channel mean and std).
        frames = frames if frames.ndim == 4 else frames[..., None]
        if self.handover == "uint8":
            # A quarter of float32's bytes cross from the worker; normalise_batch finishes the
            # job on the training device (same values: unilvseg.data.augment.unit_pixels).
            pixels, masks, transform = self.augment.pixels_from_frames(frames, masks, rng)
            sample["video"] = pixels.expand(3, -1, -1, -1).contiguous() if len(pixels) == 1 else pixels.contiguous()
            sample["gain"] = torch.tensor(float(transform.gain), dtype=torch.float64)
            sample["offset"] = torch.tensor(float(transform.offset), dtype=torch.float32)
        else:
            clip, masks = self.augment.clip_from_frames(frames, masks, rng)
            sample["video"] = clip.sub_(self.mean).div_(self.std) if len(clip) == 3 else (clip - self.mean).div_(self.std)
        if target is not None:
            sample["mask"] = masks.float()  # (1, H, W, T), float per the contract
            sample["labelled"] = torch.as_tensor(np.asarray(target["labelled"], dtype=bool))
            phase = target.get("phase")
            sample["phase"] = torch.as_tensor(
                np.zeros(len(frame_index), dtype=np.int64) if phase is None else np.asarray(phase, dtype=np.int64)
            )
        return sample


def cache_size_for(size: tuple[int, int]) -> tuple[int, int]:
    """Frame size of the cache entries a dataset of input ``size`` reads: the shared
    EchoNet-size entries for inputs up to that size (resized per clip), else ``size`` itself."""
    size = tuple(size)
    return SHARED_CACHE_SIZE if all(s <= c for s, c in zip(size, SHARED_CACHE_SIZE)) else size


def collate_clips(items: list[dict | None]) -> dict:
    """Stack clip dicts; ``skipped`` counts items whose video failed to decode."""
    kept = [item for item in items if item is not None]
    batch: dict = {"skipped": torch.tensor(len(items) - len(kept))}
    if not kept:
        return batch
    for key in kept[0]:
        values = [item[key] for item in kept]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch


class EpochSampler(Sampler):
    """Keys ``(epoch, index)`` in an order that is a function of (seed, epoch) only.

    Lightning calls ``set_epoch`` before every epoch (with the epoch restored from a checkpoint
    on resume), and the epoch travels inside each key to the dataset, so persistent worker
    processes see it too; clip placement and augmentation follow from (seed, epoch, index).
    """

    def __init__(self, size: int, shuffle: bool, seed: int):
        self.size = int(size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed) % 2**63
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 2**32]).permutation(self.size)
        else:
            order = np.arange(self.size)
        return iter([(self.epoch, int(i)) for i in order])


def unpadded_shards(dataset: Dataset, sampler: Sampler | None, world: int, rank: int) -> Sampler:
    """Rank ``rank``'s share (items rank, rank + world, ...) of an evaluation set, no repeats.

    A ``DistributedSampler`` subclass, so Lightning keeps it instead of inserting its padded one.
    """
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler, UnrepeatedDistributedSamplerWrapper

    if len(dataset) < world:
        raise UserError(
            f"the evaluation set has {len(dataset)} item(s), fewer than the {world} processes (--devices); "
            "use fewer devices or a larger validation split"
        )
    if sampler is None:
        return UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
    return UnrepeatedDistributedSamplerWrapper(sampler, num_replicas=world, rank=rank, shuffle=False)


SCHEMES = {
    # scheme: (train placement, val placement, targets)
    "ssl": ("random", "centred", None),
    "weak": ("traced_random", "traced_centred", "tracings"),
    "dense": ("random", "centred", None),  # targets supplied by the task (pseudo-labels, positions)
    # Tracings plus pseudo-labels (train_weak.py --labels tracings+pseudo): every video trains,
    # traced ones around their traced frames; validation scores the tracings as "weak" does.
    "weak_pseudo": ("traced_or_random", "traced_centred", "tracings"),
}


class EchoNetDataModule(L.LightningDataModule):
    """Train/val/test loaders for one training scheme over an EchoNet-Dynamic folder.

    ``data_path=None`` uses the built-in phantom (generated once into the cache folder).
    ``external_dirs`` add plain folders of unlabelled videos to self-supervised training.
    ``train_videos`` keeps the first n training videos of a seeded shuffle (low-label studies);
    ``train_fraction`` (``--pct_train``) keeps ``int(n_train * fraction + 0.5)`` of them by the same rule.
    ``seed`` (the CLIs pass ``--seed``) makes batch order, clip placement and augmentation a
    function of (seed, epoch, item), so resumed runs repeat an uninterrupted run bit for bit;
    None keeps drawing them from torch's global generator. ``view`` (a4c, a2c, sax) keeps only
    the videos of that view (FileList's View column; :func:`~unilvseg.data.index.only_view`).
    """

    def __init__(
        self,
        data_path: str | Path | None = None,
        scheme: str = "weak",
        frames: int = 32,
        period: int = 1,
        batch_size: int = 4,
        num_workers: int = 0,
        mean: Sequence[float] = ECHONET_MEAN,
        std: Sequence[float] = ECHONET_STD,
        augment: bool | str | ClipAugment = True,
        external_dirs: Sequence[str | Path] = (),
        train_targets: ClipTargets | None = None,
        val_targets: ClipTargets | None = None,
        train_videos: int | None = None,
        subset_seed: int = 0,
        train_fraction: float | None = None,
        cache_dir: str | Path | None = "auto",
        size: tuple[int, int] = (112, 112),
        seed: int | None = None,
        cache_max_gb: float | None = None,
        handover: str = "float",
        view: str | None = None,
    ):
        super().__init__()
        if view is not None and view not in VIEWS:
            raise UserError(f"--view {view!r}: expected one of {', '.join(VIEWS)}")
        self.view = view
        if handover not in HANDOVERS:
            raise UserError(f"--handover {handover!r}: expected one of {', '.join(HANDOVERS)}")
        self.handover = handover
        if scheme not in SCHEMES:
            raise UserError(f"scheme {scheme!r}: expected one of {tuple(SCHEMES)}")
        if batch_size < 1:
            raise UserError(f"--batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise UserError(f"--num_workers must be >= 0, got {num_workers}")
        for name, values in (("--mean", mean), ("--std", std)):
            if len(values) != 3:
                raise UserError(f"{name} needs 3 values (one per channel), got {len(values)}")
        if any(s <= 0 for s in std):
            raise UserError(f"--std values must be positive, got {list(std)}")
        self.data_path = data_path
        self.scheme = scheme
        self.sampler = ClipSampler(frames, period)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = make_augment(augment)
        self.external_dirs = [Path(d) for d in external_dirs]
        self.train_targets = train_targets
        self.val_targets = val_targets
        self.train_videos = train_videos
        self.train_fraction = train_fraction
        self.subset_seed = subset_seed
        self.size = tuple(size)
        self.seed = seed
        self.cache = FrameCache(cache_dir, size=cache_size_for(self.size), max_gb=cache_max_gb)
        self._index: DatasetIndex | None = None

    def setup(self, stage: str | None = None) -> None:
        # Before any loader starts: a cache that cannot be written is an error now, not in a
        # worker mid-epoch; stale entries are swept by one process (rank 0).
        self.cache.prepare(clean=self._ranks()[1] == 0)

    @property
    def root(self) -> Path:
        if self.data_path is None:
            from unilvseg.data.phantom import default_data_path

            self.data_path = default_data_path()
        return Path(self.data_path)

    @property
    def index(self) -> DatasetIndex:
        if self._index is None:
            self._index = load_index(self.root, require_tracings=self.scheme == "weak")
            if self.view is not None:
                self._index = only_view(self._index, self.view)
            log.info(
                "%s: %d videos (%s), skipped: %s",
                self.root,
                len(self._index),
                ", ".join(f"{s} {sum(r.split == s for r in self._index.records)}" for s in ("train", "val", "test")),
                self._index.skip_summary(),
            )
        return self._index

    def records(self, split: str) -> list[VideoRecord]:
        records = self.index.split(split).records
        if split == "train":
            if self.scheme == "ssl":
                for folder in self.external_dirs:
                    records = records + index_video_folder(folder).records
            keep = self.train_videos
            if self.train_fraction is not None:
                # The published pct_train rule: int(n * fraction + 0.5) videos; at least one.
                keep = max(1, int(len(records) * self.train_fraction + 0.5))
            if keep is not None:
                if keep < 1:
                    raise UserError(f"--train_videos must be >= 1, got {keep}")
                order = np.random.default_rng(self.subset_seed).permutation(len(records))
                records = [records[i] for i in sorted(order[:keep])]
        if not records:
            raise DataError(f"{self.root}: split {split!r} has no usable videos for {self.scheme} training")
        return records

    def dataset(self, split: str, train: bool) -> EchoClipDataset:
        train_clip, eval_clip, targets = SCHEMES[self.scheme]
        custom = self.train_targets if train else self.val_targets
        return EchoClipDataset(
            self.records(split),
            self.sampler,
            clip=train_clip if train else eval_clip,
            targets=custom if custom is not None else targets,
            augment=self.augment if train else NO_AUGMENT,
            cache=self.cache,
            mean=self.mean,
            std=self.std,
            size=self.size,
            seed=self.seed,
            handover=self.handover,
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 hand-over: normalise on the training device (normalise_batch)."""
        return normalise_batch(batch, self.mean, self.std)

    def _ranks(self) -> tuple[int, int]:
        """(world size, global rank) of the trainer this DataModule is attached to; (1, 0) without one."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _loader(self, dataset: EchoClipDataset, shuffle: bool) -> DataLoader:
        sampler = EpochSampler(len(dataset), shuffle, self.seed) if self.seed is not None else None
        world, rank = self._ranks()
        if not shuffle and world > 1:
            # Evaluation under DDP: each item on exactly one rank. Lightning's default
            # DistributedSampler pads the shortest shards with repeats of the first items, which
            # would count those videos twice in the pooled Dice. Unpadded shards may differ by
            # one item; nothing in a validation step is a collective, so that is safe.
            sampler = unpadded_shards(dataset, sampler, world, rank)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_clips,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("train", train=True), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val", train=False), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test", train=False), shuffle=False)
