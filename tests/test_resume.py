"""Faults and interruption: SIGKILL mid-run then resume, diverging losses, deterministic clips.

The kill tests run the real scripts in subprocesses (one thread each, CPU) and compare with an
uninterrupted run of the same seed, bit for bit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["--encoder", "3d_unet_tiny", "--frames", "16", "--batch_size", "2", "--progress_bar", "false", "--seed", "0"]


def subprocess_env() -> dict:
    # UNILVSEG_CACHE is the session's throw-away cache (set by conftest); one thread makes CPU
    # results independent of scheduling.
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def start(script: str, *argv, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen(
        [sys.executable, str(REPO / script), *map(str, argv)], cwd=REPO, env=subprocess_env(),
        stdout=handle, stderr=subprocess.STDOUT,
    )


def kill_when(process: subprocess.Popen, ready, timeout: float = 300) -> bool:
    """SIGKILL ``process`` as soon as ``ready()``; False when it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "process never reached the kill point"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def finish(process: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    assert process.wait(timeout) == 0, log.read_text()[-4000:]


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".tmp-*"))


def load_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


# -- training ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_training_resumes_bit_for_bit(tiny_phantom, tmp_path):
    argv = ["--data_path", tiny_phantom, *TINY_TRAIN, "--epochs", "3", "--val_check_interval", "1.0"]
    full_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    full = start("train_weak.py", *argv, "--run_dir", full_dir, log=tmp_path / "full.log")
    killed = start("train_weak.py", *argv, "--run_dir", killed_dir, log=tmp_path / "killed.log")
    last = killed_dir / "checkpoints" / "last.ckpt"
    assert kill_when(killed, last.is_file), "run finished before it could be killed"
    resume_step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert resume_step >= 2  # at least one whole epoch (2 batches) done

    resumed = start("train_weak.py", *argv, "--run_dir", killed_dir, "--resume", last, log=tmp_path / "resumed.log")
    finish(resumed, tmp_path / "resumed.log")
    finish(full, tmp_path / "full.log")

    expected, actual = load_state(full_dir / "checkpoints" / "last.ckpt"), load_state(last)
    assert expected.keys() == actual.keys()
    differ = [name for name in expected if not torch.equal(expected[name], actual[name])]
    assert not differ, f"{len(differ)} tensors differ after resume, e.g. {differ[:3]}"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 2
    assert not temporaries(killed_dir)

    # Every metric recomputed after the checkpoint matches the uninterrupted run, none twice.
    columns = lambda t: t.drop(columns=["epoch_seconds"], errors="ignore")  # noqa: E731 - wall time differs
    full_metrics = columns(pd.read_csv(full_dir / "metrics.csv"))
    resumed_metrics = columns(pd.read_csv(killed_dir / "metrics.csv"))[full_metrics.columns]
    after = lambda t: t[t["step"] >= resume_step].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(after(resumed_metrics), after(full_metrics))
    assert not resumed_metrics.duplicated().any()


# -- prediction -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weak_checkpoint(tiny_phantom, tmp_path_factory) -> Path:
    from unilvseg.cli.train import main_weak

    run = tmp_path_factory.mktemp("resume-weak") / "run"
    assert main_weak(["--data_path", str(tiny_phantom), *TINY_TRAIN, "--epochs", "1", "--limit_train_batches", "1",
                      "--limit_val_batches", "1", "--run_dir", str(run)]) == 0
    return run / "checkpoints" / "last.ckpt"


def assert_outputs_readable(folder: Path) -> None:
    """Every file under a finished-looking name is complete (a killed writer leaves only .tmp-*)."""
    import cv2

    for path in folder.rglob("*"):
        if not path.is_file() or path.name.startswith(".tmp-"):
            continue
        if path.suffix == ".npz":
            with np.load(path) as stored:
                assert stored["masks"].ndim == 3, path
        elif path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".png":
            assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None, path


@pytest.mark.slow
def test_trainer_removes_temporaries_a_killed_run_left_anywhere_in_its_folder(tmp_path):
    """SIGKILL can land inside any atomic write (metrics.csv at the run folder's top, a
    checkpoint); the next trainer on that folder deletes the leftovers, keeps real files."""
    from unilvseg.io import TMP_PREFIX
    from unilvseg.training import make_trainer

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    leftovers = [run_dir / f"{TMP_PREFIX}metrics.csv-0a1b2c3d.csv", run_dir / "checkpoints" / f"{TMP_PREFIX}last.ckpt-00ff00ff.ckpt"]
    for path in leftovers:
        path.write_text("half written")
    kept = run_dir / "metrics.csv"
    kept.write_text("epoch,step\n0,1\n")
    # A subfolder the trainer does not write (a user's --run_dir may hold other work) is left alone.
    foreign = run_dir / "other_job" / f"{TMP_PREFIX}in-progress.npz"
    foreign.parent.mkdir()
    foreign.write_text("being written by someone else")
    make_trainer(run_dir, monitor="val/dice", mode="max", epochs=1, logger="csv", progress_bar=False)
    assert not any(path.exists() for path in leftovers)
    assert kept.read_text() == "epoch,step\n0,1\n"
    assert foreign.exists()


def test_killed_prediction_reruns_to_identical_outputs(tiny_phantom, weak_checkpoint, tmp_path):
    argv = ["--checkpoint", weak_checkpoint, "--data_path", tiny_phantom, "--split", "all", "--device", "cpu",
            "--stride", "2"]  # overlapping windows: slow enough per video to be killed mid-way
    full_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    full = start("predict.py", *argv, "--save_dir", full_dir, log=tmp_path / "full.log")
    killed = start("predict.py", *argv, "--save_dir", killed_dir, log=tmp_path / "killed.log")
    masks = killed_dir / "masks"
    assert kill_when(killed, lambda: masks.is_dir() and any(p.suffix == ".npz" and not p.name.startswith(".") for p in masks.iterdir())), \
        "prediction finished before it could be killed"
    assert_outputs_readable(killed_dir)
    done_before = {p.name for p in masks.glob("*.npz")}
    assert 0 < len(done_before) < 6

    rerun = start("predict.py", *argv, "--save_dir", killed_dir, log=tmp_path / "rerun.log")
    finish(rerun, tmp_path / "rerun.log")
    finish(full, tmp_path / "full.log")
    assert "already predicted" in (tmp_path / "rerun.log").read_text()

    assert not temporaries(killed_dir) and not temporaries(full_dir)
    expected = sorted(p.relative_to(full_dir) for p in full_dir.rglob("*") if p.is_file() and p.name != "run.json")
    actual = sorted(p.relative_to(killed_dir) for p in killed_dir.rglob("*") if p.is_file() and p.name != "run.json")
    assert actual == expected
    assert len([p for p in expected if p.parent.name == "masks"]) == 6
    for relative in expected:
        if relative.suffix == ".npz":
            with np.load(full_dir / relative) as a, np.load(killed_dir / relative) as b:
                np.testing.assert_array_equal(a["masks"], b["masks"])
        else:
            assert (full_dir / relative).read_bytes() == (killed_dir / relative).read_bytes(), relative


# -- diverging loss ---------------------------------------------------------------------------------


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_phantom, tmp_path, capsys, monkeypatch):
    from unilvseg.cli.train import main_weak
    from unilvseg.tasks.checkpoints import load_task
    from unilvseg.tasks.weak import WeakSegmentationTask

    compute_loss = WeakSegmentationTask.compute_loss

    def diverge_in_second_epoch(self, batch):
        loss, parts = compute_loss(self, batch)
        return (loss * float("nan") if self.current_epoch >= 1 else loss), parts

    monkeypatch.setattr(WeakSegmentationTask, "compute_loss", diverge_in_second_epoch)
    run = tmp_path / "run"
    status = main_weak(["--data_path", str(tiny_phantom), *TINY_TRAIN, "--epochs", "3", "--limit_train_batches", "1",
                        "--limit_val_batches", "1", "--run_dir", str(run)])
    err = capsys.readouterr().err
    assert status == 2
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "non-finite training loss (nan) at epoch 1" in line and "--lr" in line
    assert "Traceback" not in err

    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0  # written before the bad step
    task = load_task(last)  # refuses non-finite weights
    assert all(torch.isfinite(t).all() for t in task.network.state_dict().values() if t.is_floating_point())
    assert not temporaries(run)


def test_huge_learning_rate_is_a_clear_error_and_saves_nothing_non_finite(tiny_phantom, tmp_path, capsys):
    from unilvseg.cli.train import main_weak

    run = tmp_path / "run"
    status = main_weak(["--data_path", str(tiny_phantom), *TINY_TRAIN, "--epochs", "1", "--limit_val_batches", "1",
                        "--lr", "1e30", "--run_dir", str(run)])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert any(line.startswith("error: non-finite") for line in err.splitlines()), err[-2000:]
    for checkpoint in (run / "checkpoints").glob("*.ckpt") if (run / "checkpoints").is_dir() else []:
        state = load_state(checkpoint)
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()), checkpoint


# -- what makes resuming exact ----------------------------------------------------------------------


def test_clips_are_a_function_of_seed_epoch_and_item(tiny_phantom, tmp_path):
    from unilvseg.data.dataset import EchoNetDataModule, EpochSampler

    def keys_and_frames(seed, epoch, workers):
        module = EchoNetDataModule(tiny_phantom, scheme="weak", frames=16, batch_size=2, num_workers=workers,
                                   seed=seed, cache_dir=tmp_path / "cache")
        loader = module.train_dataloader()
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        return [n for b in batches for n in b["file_name"]], torch.cat([b["frame_index"] for b in batches]), \
            torch.cat([b["video"] for b in batches])

    names, frames, video = keys_and_frames(0, 1, 0)
    names_again, frames_again, video_again = keys_and_frames(0, 1, 1)  # a worker process: same clips
    assert names == names_again and torch.equal(frames, frames_again) and torch.equal(video, video_again)
    other_epoch = keys_and_frames(0, 2, 0)
    other_seed = keys_and_frames(1, 1, 0)
    assert not torch.equal(video, other_epoch[2]) and not torch.equal(video, other_seed[2])

    sampler = EpochSampler(5, shuffle=True, seed=3)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert {k[0] for k in keys} == {epoch} and sorted(k[1] for k in keys) == list(range(5))
        orders.append([k[1] for k in keys])
    assert orders[0] == orders[2]


def test_global_generator_states_survive_a_checkpoint_round_trip(tmp_path):
    import random

    from unilvseg.tasks.base import rng_states, set_rng_states

    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    path = tmp_path / "states.pt"
    torch.save(rng_states(), path)
    expected = (torch.rand(4), np.random.rand(4), random.random())
    torch.rand(9), np.random.rand(9), random.random()
    set_rng_states(torch.load(path, weights_only=True))  # what Lightning's resume can read
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(4), expected[1]) and random.random() == expected[2]


def test_task_checkpoint_hooks_restore_generators_and_data_settings():
    """Resuming a fit goes through ClipTask.on_load_checkpoint: both the random generators (which
    frames temporal masking hides next) and the data settings must come back."""
    from unilvseg.tasks.ssl import TemporalMaskingTask

    task = TemporalMaskingTask(encoder="3d_unet_tiny", frames=16)
    task.data_settings = {"mean": [0.1, 0.2, 0.3], "size": [112, 112]}
    checkpoint: dict = {}
    torch.manual_seed(11)
    task.on_save_checkpoint(checkpoint)
    expected = torch.rand(4)
    torch.rand(7)

    resumed = TemporalMaskingTask(encoder="3d_unet_tiny", frames=16)
    resumed._trainer = object()  # attached to a Trainer: a resumed fit, not load_from_checkpoint
    resumed.on_load_checkpoint(checkpoint)
    assert torch.equal(torch.rand(4), expected)
    assert resumed.data_settings == task.data_settings
