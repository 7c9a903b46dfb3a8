"""A Lightning job run under DDP by ``tests/test_ddp.py`` (CPU, gloo), or in one process.

``python tests/ddp_job.py validate|fit --data D --out OUT.json --devices N [...]``. With N > 1,
Lightning's subprocess launcher re-runs this script once per extra rank; every rank runs the job
and writes ``OUT.json`` (validate: rank 0 only) or ``OUT.rank<r>.json`` (fit).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def make_trainer(devices: int, **kwargs):
    import lightning as L

    return L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, **kwargs,
    )


def datamodule(data: str | Path, batch_size: int, frames: int = 16):
    from unilvseg.data.dataset import EchoNetDataModule

    return EchoNetDataModule(data_path=data, scheme="weak", frames=frames, batch_size=batch_size, seed=0)


def validate(data: str | Path, checkpoint: str | Path, devices: int, batch_size: int) -> dict[str, float]:
    """Validation metrics of ``checkpoint`` on ``data``'s VAL split, as every rank sees them."""
    from unilvseg.tasks.checkpoints import load_task

    task = load_task(checkpoint)
    results = make_trainer(devices).validate(task, datamodule=datamodule(data, batch_size), verbose=False)
    return {name: float(value) for name, value in results[0].items()}


class ClipRecorder:
    """Which (video, frame indices) every training batch of this rank held, per epoch."""

    def __new__(cls, out: Path):
        import lightning as L

        class _Recorder(L.Callback):
            def __init__(self):
                self.clips: list[dict] = []

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if "file_name" not in batch:  # every video of the batch failed to decode
                    self.clips.append({"epoch": trainer.current_epoch, "video": None, "frames": []})
                    return
                for name, index in zip(batch["file_name"], batch["frame_index"].tolist()):
                    self.clips.append({"epoch": trainer.current_epoch, "video": name, "frames": index})

            def on_train_end(self, trainer, module):
                path = out.with_name(f"{out.stem}.rank{trainer.global_rank}.json")
                path.write_text(json.dumps({"world_size": trainer.world_size, "clips": self.clips}))

        return _Recorder()


def fit(data: str | Path, out: Path, devices: int, batch_size: int, epochs: int) -> None:
    import lightning as L

    from unilvseg.tasks.weak import WeakSegmentationTask

    L.seed_everything(0, verbose=False)
    task = WeakSegmentationTask(encoder="3d_unet_tiny", frames=16)
    trainer = make_trainer(devices, max_epochs=epochs, limit_val_batches=0, callbacks=[ClipRecorder(out)])
    trainer.fit(task, datamodule=datamodule(data, batch_size))


def main() -> int:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("job", choices=["validate", "fit"])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--checkpoint")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if args.job == "validate":
        metrics = validate(args.data, args.checkpoint, args.devices, args.batch_size)
        from lightning.pytorch.utilities import rank_zero_only

        if rank_zero_only.rank == 0:
            args.out.write_text(json.dumps(metrics))
    else:
        fit(args.data, args.out, args.devices, args.batch_size, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
