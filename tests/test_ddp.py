"""Multi-process (DDP) training and validation give the numbers of one process.

CPU, gloo backend, 2 processes, ``3d_unet_tiny``: Lightning's ``strategy="ddp"`` re-launches
``tests/ddp_job.py`` (or ``train_weak.py``) once per extra rank, as it does for users.
"""

from __future__ import annotations

import json
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ddp_job  # noqa: E402

TINY = ["--encoder", "3d_unet_tiny", "--frames", "16", "--batch_size", "2", "--progress_bar", "false", "--seed", "0"]
DDP = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]


def run_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))


def run(argv: list, log: Path, cwd: Path = REPO, timeout: float = 300) -> None:
    with open(log, "w") as handle:
        done = subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=run_env(), stdout=handle,
                              stderr=subprocess.STDOUT, timeout=timeout)
    assert done.returncode == 0, log.read_text()[-4000:]


@pytest.fixture(scope="module")
def three_val_videos(tiny_phantom, tmp_path_factory) -> Path:
    """The tiny phantom with 3 VAL videos (6 validation items: ED and ES of each) and 3 TRAIN."""
    import shutil

    root = Path(shutil.copytree(tiny_phantom, tmp_path_factory.mktemp("ddp") / "echonet"))
    filelist = pd.read_csv(root / "FileList.csv")
    filelist["Split"] = ["VAL", "VAL", "VAL", "TRAIN", "TRAIN", "TRAIN"]
    filelist.to_csv(root / "FileList.csv", index=False)
    return root


@pytest.fixture(scope="module")
def weak_checkpoint(three_val_videos, tmp_path_factory) -> Path:
    from unilvseg.cli.train import main_weak

    run_dir = tmp_path_factory.mktemp("ddp-weak") / "run"
    assert main_weak(["--data_path", str(three_val_videos), *TINY, "--epochs", "2", "--limit_val_batches", "1",
                      "--run_dir", str(run_dir)]) == 0
    return run_dir / "checkpoints" / "last.ckpt"


def pooled_dice_by_hand(data: Path, checkpoint: Path) -> dict[str, float]:
    """Pooled Dice of the VAL split's traced frames, summed item by item outside Lightning."""
    from unilvseg.tasks.checkpoints import load_task

    task = load_task(checkpoint)
    dataset = ddp_job.datamodule(data, batch_size=1).dataset("val", train=False)
    sums = {phase: [0.0, 0.0] for phase in ("ED", "ES")}
    for i in range(len(dataset)):
        item = dataset[i]
        with torch.inference_mode():
            predicted = (task(item["video"][None])[0, 0] > 0).numpy()  # (H, W, T)
        for t in np.flatnonzero(item["labelled"].numpy()):
            phase = "ED" if int(item["phase"][t]) == 1 else "ES"
            truth = item["mask"][0, :, :, t].numpy() > 0
            sums[phase][0] += 2 * np.logical_and(predicted[:, :, t], truth).sum()
            sums[phase][1] += predicted[:, :, t].sum() + truth.sum()
    both = [sums["ED"][k] + sums["ES"][k] for k in (0, 1)]
    return {"val_dice": both[0] / both[1], "val_dice_ed": sums["ED"][0] / sums["ED"][1], "val_dice_es": sums["ES"][0] / sums["ES"][1]}


def test_ddp_validation_dice_equals_one_process(three_val_videos, weak_checkpoint, tmp_path):
    """(a) Same checkpoint and data: 2-rank DDP Dice (overall, ED, ES) = 1-process Dice = by hand.

    With 2 ranks, rank 0 holds only ED items and rank 1 only ES items (items alternate), the
    case where a rank-local gate before the all-reduce paired ED sums with ES sums.
    """
    # Batches of one item: the soft-Dice part of the loss is pooled per batch, so only then is
    # val_loss independent of how items are grouped into batches on each rank.
    single = ddp_job.validate(three_val_videos, weak_checkpoint, devices=1, batch_size=1)
    out = tmp_path / "ddp.json"
    run([REPO / "tests" / "ddp_job.py", "validate", "--data", three_val_videos, "--checkpoint", weak_checkpoint,
         "--devices", 2, "--batch_size", 1, "--out", out], tmp_path / "ddp.log")
    ddp = json.loads(out.read_text())
    expected = pooled_dice_by_hand(three_val_videos, weak_checkpoint)
    assert 0.05 < expected["val_dice_ed"] < 0.99 and 0.05 < expected["val_dice_es"] < 0.99  # a non-trivial model
    assert abs(expected["val_dice_ed"] - expected["val_dice_es"]) > 1e-3  # a swap of phases would show
    for name, value in expected.items():
        assert name in single and name in ddp, (name, sorted(single), sorted(ddp))
        assert single[name] == pytest.approx(value, abs=1e-6), name
        assert ddp[name] == pytest.approx(value, abs=1e-6), name
    assert ddp["val_loss"] == pytest.approx(single["val_loss"], rel=1e-6)


def test_evaluation_shards_hold_every_item_once():
    """DistributedSampler pads short shards with repeats; evaluation shards must not."""
    from torch.utils.data import DataLoader

    from unilvseg.data.dataset import EpochSampler, unpadded_shards

    dataset = list(range(7))
    for world in (2, 3, 4):
        keys = []
        for rank in range(world):
            keys += list(unpadded_shards(dataset, EpochSampler(7, shuffle=False, seed=0), world, rank))
        assert sorted(i for _, i in keys) == list(range(7)), world
        # The padded default would repeat items: the reason it is replaced.
        from torch.utils.data import DistributedSampler

        padded = [i for rank in range(world) for i in DistributedSampler(dataset, world, rank, shuffle=False)]
        assert len(padded) > 7 or 7 % world == 0
    assert len(DataLoader(dataset, sampler=unpadded_shards(dataset, None, 3, 2))) == 2
    from unilvseg.errors import UserError

    with pytest.raises(UserError, match="fewer than the 3 processes"):
        unpadded_shards([0, 1], None, 3, 0)


def test_lightning_distributed_wrapper_forwards_the_epoch_to_our_sampler():
    """Lightning wraps our EpochSampler for DDP; clips depend on the epoch only if the wrapper's
    ``set_epoch`` reaches it (true in the installed Lightning, not guaranteed by older ones)."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    from unilvseg.data.dataset import EpochSampler

    wrapped = DistributedSamplerWrapper(EpochSampler(6, shuffle=True, seed=0), num_replicas=2, rank=1, shuffle=True)
    wrapped.set_epoch(3)
    keys = list(wrapped)
    assert len(keys) == 3 and {epoch for epoch, _ in keys} == {3}


def test_ddp_epochs_see_different_clips(three_val_videos, tmp_path):
    """(b) Under 2-rank DDP every training video is seen once per epoch, by one rank, and the
    clips of epoch 1 differ from those of epoch 0."""
    out = tmp_path / "fit.json"
    run([REPO / "tests" / "ddp_job.py", "fit", "--data", three_val_videos, "--devices", 2, "--batch_size", 1,
         "--epochs", 2, "--out", out], tmp_path / "fit.log")
    ranks = [json.loads((tmp_path / f"fit.rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    train = set(pd.read_csv(three_val_videos / "FileList.csv").query("Split == 'TRAIN'")["FileName"])
    clips = {}
    for rank, recorded in enumerate(ranks):
        for clip in recorded["clips"]:
            clips.setdefault(clip["epoch"], {}).setdefault(clip["video"], []).append((rank, tuple(clip["frames"])))
    assert sorted(clips) == [0, 1]
    for epoch, seen in clips.items():
        # 3 videos on 2 ranks: the padded training sampler repeats one (training may; evaluation may not).
        assert set(seen) == train, epoch
        assert sum(len(v) for v in seen.values()) == 4
    changed = [video for video in train if {c for _, c in clips[0][video]} != {c for _, c in clips[1][video]}]
    assert len(changed) >= 2, clips


def test_ddp_batch_of_undecodable_videos_does_not_hang_the_other_rank(three_val_videos, tmp_path):
    """A rank whose batch holds only a broken video has no loss; one process skips the step, but
    under DDP the other rank would wait in the all-reduce forever. The run must finish."""
    import shutil

    root = Path(shutil.copytree(three_val_videos, tmp_path / "echonet"))
    filelist = pd.read_csv(root / "FileList.csv")
    broken = filelist.query("Split == 'TRAIN'")["FileName"].iloc[0]
    (root / "Videos" / f"{broken}.avi").write_bytes(b"not a video" * 100)
    out = tmp_path / "fit.json"
    run([REPO / "tests" / "ddp_job.py", "fit", "--data", root, "--devices", 2, "--batch_size", 1, "--epochs", 1,
         "--out", out], tmp_path / "fit.log", timeout=150)
    clips = [c for r in (0, 1) for c in json.loads((tmp_path / f"fit.rank{r}.json").read_text())["clips"]]
    assert sum(c["video"] is None for c in clips) >= 1  # the broken video's batch(es)
    assert {c["video"] for c in clips} - {None} == set(filelist.query("Split == 'TRAIN'")["FileName"]) - {broken}


def _process_group_kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and the rank it started
    process.wait()


@pytest.mark.slow
def test_ddp_run_killed_resumes_to_the_uninterrupted_weights(tiny_phantom, tmp_path):
    """(c) train_weak.py under 2-rank DDP, SIGKILLed after its first checkpoint, resumed under
    DDP: it ends with the weights of an uninterrupted DDP run, and prints its summary once."""
    argv = [REPO / "train_weak.py", "--data_path", tiny_phantom, *TINY, *DDP, "--epochs", "2"]
    full_cwd = tmp_path / "full"
    full_cwd.mkdir()
    killed_dir = tmp_path / "killed"
    with open(tmp_path / "full.log", "w") as full_log, open(tmp_path / "killed.log", "w") as killed_log:
        # The uninterrupted run has no --run_dir: rank 1 must find rank 0's timestamped folder.
        full = subprocess.Popen([sys.executable, *map(str, argv)], cwd=full_cwd, env=run_env(), stdout=full_log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        killed = subprocess.Popen([sys.executable, *map(str, argv), "--run_dir", killed_dir], cwd=tmp_path, env=run_env(),
                                  stdout=killed_log, stderr=subprocess.STDOUT, start_new_session=True)
        last = killed_dir / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 240
        while not last.is_file():
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the DDP run never wrote a checkpoint"
            time.sleep(0.05)
        _process_group_kill(killed)
        assert full.wait(300) == 0, (tmp_path / "full.log").read_text()[-3000:]
    killed_epoch = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert killed_epoch == 0

    run([*argv, "--run_dir", killed_dir, "--resume", last], tmp_path / "resumed.log", cwd=tmp_path)
    (full_dir,) = list((full_cwd / "runs" / "weak").iterdir())  # one run folder, not one per rank
    expected = torch.load(full_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    actual = torch.load(last, map_location="cpu", weights_only=False)
    assert actual["epoch"] == expected["epoch"] == 1
    differ = [k for k in expected["state_dict"] if not torch.equal(expected["state_dict"][k], actual["state_dict"][k])]
    assert not differ, f"{len(differ)} tensors differ after a DDP resume, e.g. {differ[:3]}"
    metrics = pd.read_csv(killed_dir / "metrics.csv")
    assert sorted(metrics.dropna(subset=["val_dice"])["epoch"]) == [0, 1]
    assert {"val_dice", "val_dice_ed", "val_dice_es"} <= set(metrics.columns)
    for log in ("full.log", "resumed.log"):
        assert (tmp_path / log).read_text().count("best checkpoint:") == 1, log


def test_every_metric_a_task_logs_is_synced_over_ranks_unless_already_reduced(monkeypatch):
    """Epoch metrics (SSL's val_loss picks best.ckpt) must be the mean over all ranks' data."""
    import lightning as L

    from unilvseg.tasks.ssl import TemporalMaskingTask

    calls = []
    monkeypatch.setattr(L.LightningModule, "log", lambda self, name, value, *a, **k: calls.append((name, k.get("sync_dist"))))
    task = TemporalMaskingTask(encoder="3d_unet_tiny", frames=16)
    task.validation_step({"video": torch.zeros(1, 3, 32, 32, 16), "skipped": torch.tensor(0)}, 0)
    task.log("already_reduced", 1.0, sync_dist=False)
    assert dict(calls) == {"val_loss": True, "val_mse_masked": True, "already_reduced": False}


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_localhost_train_like_two_devices_and_validate_like_one_process(three_val_videos, tmp_path):
    """--num_nodes 2 with one process per "node" (NODE_RANK 0 and 1, MASTER_ADDR on localhost, as a
    hand-started or SLURM job sets it) trains exactly as one node with 2 devices, and its logged
    validation Dice equals one process validating the same weights."""
    flags = ["train_weak.py", "--data_path", three_val_videos, *TINY, "--epochs", "1", "--limit_train_batches", "2",
             "--accelerator", "cpu", "--strategy", "ddp"]
    one_node = tmp_path / "one_node"
    run([*flags, "--devices", "2", "--run_dir", one_node], tmp_path / "one_node.log")
    two_nodes = tmp_path / "two_nodes"
    port = _free_port()
    launchers = []
    for node in (0, 1):
        env = dict(run_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NODE_RANK=str(node))
        log = open(tmp_path / f"node{node}.log", "w")
        launchers.append((subprocess.Popen([sys.executable, *map(str, [*flags, "--devices", "1", "--num_nodes", "2", "--run_dir", two_nodes])],
                                           cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for process, log in launchers:
        assert process.wait(timeout=300) == 0, (tmp_path / f"node{launchers.index((process, log))}.log").read_text()[-3000:]
        log.close()
    expected = torch.load(one_node / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    actual = torch.load(two_nodes / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert expected.keys() == actual.keys() and all(torch.equal(expected[k], actual[k]) for k in expected)
    logged = pd.read_csv(two_nodes / "metrics.csv")["val_dice"].dropna().iloc[-1]
    assert logged == pytest.approx(pd.read_csv(one_node / "metrics.csv")["val_dice"].dropna().iloc[-1], abs=1e-7)
    single = ddp_job.validate(three_val_videos, two_nodes / "checkpoints" / "last.ckpt", devices=1, batch_size=2)
    assert logged == pytest.approx(single["val_dice"], abs=1e-6)
    assert "NODE_RANK" not in os.environ  # the launchers' environment stayed theirs


def _two_nodes(argv: list, run_dir: Path, logs: Path, tag: str, extra: list = ()) -> list:
    """Start node 0 and node 1 of a 2-node job on localhost (one process each, own sessions)."""
    port = _free_port()
    processes = []
    for node in (0, 1):
        env = dict(run_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NODE_RANK=str(node))
        log = open(logs / f"{tag}-node{node}.log", "w")
        command = [sys.executable, *map(str, [*argv, "--devices", "1", "--num_nodes", "2", "--run_dir", run_dir, *extra])]
        processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return processes


@pytest.mark.slow
def test_two_node_run_killed_resumes_to_the_uninterrupted_weights(three_val_videos, tmp_path):
    """A 2-node localhost job SIGKILLed after its first checkpoint and resumed on both nodes with
    --resume ends with the weights of an uninterrupted run of the same job, bit for bit."""
    argv = ["train_weak.py", "--data_path", three_val_videos, *TINY, "--epochs", "2", "--limit_train_batches", "2",
            "--accelerator", "cpu", "--strategy", "ddp"]
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    for process in _two_nodes(argv, full_dir, tmp_path, "full"):
        assert process.wait(300) == 0, (tmp_path / "full-node0.log").read_text()[-3000:]
    killed = _two_nodes(argv, killed_dir, tmp_path, "killed")
    last = killed_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file():
        assert all(p.poll() is None for p in killed), (tmp_path / "killed-node0.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the 2-node run never wrote a checkpoint"
        time.sleep(0.05)
    for process in killed:
        _process_group_kill(process)
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    for process in _two_nodes(argv, killed_dir, tmp_path, "resumed", ["--resume", last]):
        assert process.wait(300) == 0, (tmp_path / "resumed-node0.log").read_text()[-3000:]
    expected = torch.load(full_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    actual = torch.load(last, map_location="cpu", weights_only=True)
    assert actual["epoch"] == expected["epoch"] == 1
    differ = [k for k in expected["state_dict"] if not torch.equal(expected["state_dict"][k], actual["state_dict"][k])]
    assert not differ, f"{len(differ)} tensors differ after a 2-node resume, e.g. {differ[:3]}"
