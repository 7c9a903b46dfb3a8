"""Pieces every training command line shares: logging set-up, ``--precision auto`` and the
data/model/optimisation/run/Trainer flags (``base_parser``). ``unilvseg.cli.train`` and
``unilvseg.cli.labelfree`` both build on this module, so neither imports the other's parser.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

log = logging.getLogger("unilvseg")


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message, not at set-up (pytest,
    notebooks and embedding applications swap it; a stale, closed stream would fail to log)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def resolve_precision(precision: str | None, accelerator: str | None) -> str:
    """``--precision auto`` -> what the hardware runs fast (unilvseg.hardware); anything else as given."""
    if precision in (None, "auto"):
        from unilvseg.hardware import default_precision

        chosen = default_precision(accelerator)
        log.info("precision: %s (--precision auto)", chosen)
        return chosen
    return precision


def setup_logging(verbose: bool = False) -> None:
    logger = logging.getLogger("unilvseg")
    if not logger.handlers:
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("[unilvseg] %(message)s"))
        logger.addHandler(handler)
    # Under DDP every rank runs this script; progress messages come from rank 0 only (warnings,
    # e.g. a video skipped on another rank's shard, from every rank).
    logger.setLevel(logging.DEBUG if verbose else logging.INFO if _is_rank_zero() else logging.WARNING)


def _is_rank_zero() -> bool:
    """True in a single process and in DDP's rank 0 (ranks launched by Lightning or torchrun carry
    their rank in the environment from the start, which ``rank_zero_only.rank`` reads)."""
    from lightning.pytorch.utilities import rank_zero_only

    # A second node started by hand (NODE_RANK=1, LOCAL_RANK unset) is not rank 0 either.
    node_rank = os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or "0"
    return getattr(rank_zero_only, "rank", 0) == 0 and node_rank.strip() in ("", "0")


def error_line(error: BaseException) -> str:
    """The message of a user-facing error, also when a DataLoader worker raised it (PyTorch
    re-raises it in the main process with the worker's traceback as its text: a full disk met by
    a worker writing the frame cache must still read as one line saying what to do)."""
    text = str(error)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]  # "unilvseg.errors.CacheError: <message>"
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def add_trust_flag(group) -> None:
    group.add_argument(
        "--trust_checkpoint", type=bool, default=False,
        help="load checkpoints with full unpickling, which can run code: only for files you trust "
        "(default: checkpoints load as data; also UNILVSEG_TRUST_CHECKPOINT=1)",
    )


def base_parser(prog: str, description: str) -> ArgumentParser:
    from unilvseg.data.dataset import ECHONET_MEAN, ECHONET_STD

    parser = ArgumentParser(prog=prog, description=description, default_env=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these flags")
    data = parser.add_argument_group("data")
    data.add_argument("--data_path", type=str | None, default=None, help="EchoNet-Dynamic folder (default: built-in phantom, generated once into the cache)")
    data.add_argument("--mean", type=float, nargs=3, default=list(ECHONET_MEAN), help="per-channel mean of [0,1] pixels")
    data.add_argument("--std", type=float, nargs=3, default=list(ECHONET_STD), help="per-channel std of [0,1] pixels")
    data.add_argument("--frames", type=int, default=32, help="clip length T")
    data.add_argument("--period", type=int, default=1, help="frame step inside a clip")
    data.add_argument("--batch_size", type=int, default=4)
    data.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
    data.add_argument("--handover", type=str, default="auto",
                      help="what workers hand over: uint8 (warped pixels, normalised on the training device: 4x fewer bytes), "
                      "float (normalised clips) or auto (uint8 with --num_workers > 0)")
    data.add_argument("--augment", type=bool | str, default=True,
                      help="training-clip augmentation: true (= unilvseg: rotation +-20, shift +-12, brightness/contrast), "
                      "published (SimLVSeg: ColorJitter 0.2 p=0.5, CLAHE p=0.5, rotation +-20, pad 124 + crop 112) or false")
    data.add_argument("--cache_dir", type=str | None, default="auto", help="decoded-frame cache (default: $UNILVSEG_CACHE/frames); null disables")
    data.add_argument("--cache_max_gb", type=float | None, default=None, help="bound of the frame cache, least recently used entries evicted (default 64, or $UNILVSEG_CACHE_MAX_GB)")
    model = parser.add_argument_group("model")
    model.add_argument("--encoder", type=str, default="3d_unet_small", help="network: 3d_unet, 3d_unet_small, monai_3d_unet, 3d_unet_tiny or an smp encoder (super-image)")
    model.add_argument("--width", type=int | None, default=None, help="base channel width override (tiny models)")
    model.add_argument("--encoder_weights", type=str | None, default=None, help="local weights file for a super-image encoder (no downloads)")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--lr", type=float, default=1e-3)
    optim.add_argument("--weight_decay", type=float, default=1e-4)
    optim.add_argument("--epochs", type=int, default=5)
    optim.add_argument("--seed", type=int, default=0)
    run = parser.add_argument_group("run")
    run.add_argument("--run_dir", type=str | None, default=None, help="output folder (default runs/<kind>/<timestamp>)")
    run.add_argument("--resume", type=str | None, default=None, help="last.ckpt of an interrupted run of the same kind")
    add_trust_flag(run)
    run.add_argument("--logger", type=str, default="csv", help="csv, tensorboard or wandb (offline without a key)")
    run.add_argument("--progress_bar", type=bool, default=True)
    trainer = parser.add_argument_group("Lightning Trainer pass-through")
    trainer.add_argument("--accelerator", type=str, default="auto")
    trainer.add_argument("--devices", type=str, default="auto")
    trainer.add_argument("--num_nodes", type=int, default=1,
                         help="machines of the job (Lightning picks up SLURM, torchrun or MASTER_ADDR/MASTER_PORT/NODE_RANK; "
                         "see docs: published runs, multi-node); needs a --run_dir every node can reach")
    trainer.add_argument("--strategy", type=str, default="auto")
    trainer.add_argument("--precision", type=str, default="auto", help="auto (bf16-mixed on a GPU with bf16, else 32-true), 32-true, bf16-mixed (also on CPU: faster where bf16 is native), 16-mixed")
    trainer.add_argument("--val_check_interval", type=int | float, default=1.0, help="a whole number: every that many training batches; a fraction: that share of an epoch")
    trainer.add_argument("--limit_train_batches", type=int | float | None, default=None, help="a whole number (1, 2, ...) counts batches; a fraction such as 0.25 or 1.0 is a share of the epoch")
    trainer.add_argument("--limit_val_batches", type=int | float | None, default=None, help="as --limit_train_batches, for validation")
    trainer.add_argument("--max_steps", type=int, default=-1)
    trainer.add_argument("--max_time", type=str | None, default=None, help="wall-clock budget, DD:HH:MM:SS")
    trainer.add_argument("--accumulate_grad_batches", type=int, default=1)
    trainer.add_argument("--compile", type=bool, default=False,
                         help="torch.compile the network in place (opt-in: compiling costs minutes up front; checkpoints stay plain)")
    trainer.add_argument("--gradient_clip_val", type=float | None, default=None)
    return parser


PACKAGED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def packaged_config(path: str) -> Path | None:
    """The preset shipped in the package for ``--config path`` (``configs/simlvseg/ssl_3d.yaml``,
    ``simlvseg/ssl_3d.yaml`` or ``simlvseg/ssl_3d``), or None."""
    relative = Path(path)
    if relative.is_absolute():
        return None
    parts = relative.parts[1:] if relative.parts[:1] == ("configs",) else relative.parts
    for candidate in (PACKAGED_CONFIGS.joinpath(*parts), PACKAGED_CONFIGS.joinpath(*parts).with_suffix(".yaml")):
        if parts and candidate.is_file():
            return candidate
    return None


def resolve_config_paths(argv: list[str]) -> list[str]:
    """``--config X``: a file the user has wins; otherwise a preset shipped in the package
    (``unilvseg/configs/``); otherwise X is left for the parser to report."""
    resolved = list(argv)
    for i, value in enumerate(resolved):
        name, _, inline = value.partition("=")
        if name != "--config":
            continue
        target = inline if inline else (resolved[i + 1] if i + 1 < len(resolved) else None)
        if target is None or Path(target).exists():
            continue
        preset = packaged_config(target)
        if preset is not None:
            if inline:
                resolved[i] = f"--config={preset}"
            else:
                resolved[i + 1] = str(preset)
    return resolved


def list_presets() -> list[str]:
    return sorted(str(p.relative_to(PACKAGED_CONFIGS.parent)) for p in PACKAGED_CONFIGS.rglob("*.yaml"))
