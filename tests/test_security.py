"""Untrusted input stays contained: checkpoints that cannot run code, names that cannot leave
their folder (docs: Security)."""

from __future__ import annotations

import collections
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_hostile import run_command, snapshot  # noqa: E402

from unilvseg.data.index import index_video_folder, load_index  # noqa: E402
from unilvseg.errors import DataError, UserError  # noqa: E402
from unilvseg.untrusted import load_checkpoint, name_problem, path_under  # noqa: E402

TRAIN_FAST = [
    "--encoder", "3d_unet_tiny", "--frames", "16", "--batch_size", "2", "--epochs", "1",
    "--limit_train_batches", "1", "--limit_val_batches", "1", "--progress_bar", "false",
    "--accelerator", "cpu", "--devices", "1",
]


class _MakesMarker:
    """Unpickling this calls ``open(marker, "w")``: the stand-in for a ``__reduce__`` to os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_checkpoint(tmp_path: Path, base: dict | None = None) -> tuple[Path, Path]:
    marker = tmp_path / "MARKER"
    checkpoint = dict(base or {})
    checkpoint["payload"] = _MakesMarker(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(checkpoint, path)
    return path, marker


@pytest.fixture(scope="module")
def weak_run(tiny_phantom, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("security") / "weak"
    assert run_command("train_weak", ["--data_path", tiny_phantom, *TRAIN_FAST, "--run_dir", run]) == 0
    return run


def _evil_copy_of(checkpoint_path: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A real, otherwise valid checkpoint of ours with a payload added: only the payload is wrong."""
    with torch.serialization.safe_globals([]):
        base = load_checkpoint(checkpoint_path)
    return _evil_checkpoint(tmp_path, base)


def test_load_checkpoint_refuses_code_and_loads_it_only_when_trusted(tmp_path):
    path, marker = _evil_checkpoint(tmp_path, {"state_dict": {"w": torch.zeros(2)}})
    with pytest.raises(UserError) as refused:
        load_checkpoint(path)
    assert not marker.exists()
    message = str(refused.value)
    assert str(path) in message and "io.open" in message and "--trust_checkpoint" in message
    loaded = load_checkpoint(path, trust=True)
    assert marker.exists() and torch.equal(loaded["state_dict"]["w"], torch.zeros(2))


@pytest.mark.parametrize("command", ["predict", "train_ssl_checkpoint", "train_weak_checkpoint", "train_labelfree", "train_weak_resume"])
def test_every_command_refuses_a_checkpoint_that_runs_code(command, weak_run, tiny_phantom, tmp_path, capsys):
    from unilvseg.cli.labelfree import main as labelfree_main

    evil, marker = _evil_copy_of(weak_run / "checkpoints" / "last.ckpt", tmp_path)
    out = tmp_path / "out"
    if command == "train_weak_resume":
        # --resume reads the run folder's config.yaml: put the evil file where last.ckpt was.
        run = tmp_path / "run"
        shutil.copytree(weak_run, run)
        shutil.copy(evil, run / "checkpoints" / "last.ckpt")
        evil = run / "checkpoints" / "last.ckpt"
    argv = {
        "predict": ["--checkpoint", evil, "--data_path", tiny_phantom, "--save_dir", out, "--device", "cpu", "--size", "32", "32"],
        "train_ssl_checkpoint": ["--data_path", tiny_phantom, *TRAIN_FAST, "--run_dir", out, "--checkpoint", evil],
        "train_weak_checkpoint": ["--data_path", tiny_phantom, *TRAIN_FAST, "--run_dir", out, "--checkpoint", evil],
        "train_labelfree": ["--data_path", tiny_phantom, "--run_dir", out, "--checkpoint", evil, "--early_epochs", "1",
                            "--rounds", "0", "--size", "32", "32", "--progress_bar", "false"],
        "train_weak_resume": ["--resume", evil],
    }[command]
    argv = [str(a) for a in argv]
    capsys.readouterr()
    if command == "train_labelfree":
        status = labelfree_main(argv)
    else:
        status = run_command({"predict": "predict", "train_ssl_checkpoint": "train_ssl"}.get(command, "train_weak"), argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert not marker.exists(), "the checkpoint's code ran"
    assert "refused" in err and "--trust_checkpoint" in err and "Traceback" not in err, err
    # With the opt-in the same file loads (its code runs: that is what trusting means).
    if command == "train_labelfree":
        trusted = labelfree_main(argv + ["--trust_checkpoint", "true"])
    elif command == "predict":
        trusted = run_command("predict", argv + ["--trust_checkpoint"])
    else:
        trusted = run_command({"train_ssl_checkpoint": "train_ssl"}.get(command, "train_weak"),
                              argv + ["--trust_checkpoint", "true"] + (["--epochs", "2"] if command == "train_weak_resume" else []))
    assert marker.exists() and trusted == 0, capsys.readouterr().err[-2000:]


def test_own_checkpoints_resume_without_the_opt_in(weak_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(weak_run, run)
    # One more epoch on top of the finished one: Lightning's own loader reads last.ckpt.
    argv = ["--resume", str(run / "checkpoints" / "last.ckpt"), "--epochs", "2"]
    before = load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    assert run_command("train_weak", argv) == 0
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == before + 1


def _lightning1_checkpoint(state_dict: dict) -> dict:
    """Every top-level entry a pytorch_lightning 1.x ModelCheckpoint writes, with the types it
    pickles (AttributeDict hyperparameters under its 1.x module name, a MultiStepLR state with a
    Counter, tensors in the callback state, numpy scalars)."""
    network = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-4, amsgrad=True)
    network(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[45, 60], gamma=0.1)
    scheduler_state = scheduler.state_dict()
    assert isinstance(scheduler_state["milestones"], collections.Counter)
    callback_key = ("ModelCheckpoint{'monitor': 'val_dsc', 'mode': 'max', 'every_n_train_steps': 0, "
                    "'every_n_epochs': 1, 'train_time_interval': None, 'save_on_train_epoch_end': False}")
    return {
        "epoch": 69,
        "global_step": 52430,
        "pytorch-lightning_version": "1.7.2",
        "state_dict": state_dict,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 70, "completed": 69}},
                               "epoch_loop.batch_progress": {"total": {"ready": 52430}}}},
        "callbacks": {callback_key: {
            "monitor": "val_dsc", "best_model_score": torch.tensor(0.9251), "best_model_path": "lightning_logs/best.ckpt",
            "current_score": torch.tensor(0.9249), "dirpath": "lightning_logs/version_0/checkpoints",
            "best_k_models": {"lightning_logs/best.ckpt": torch.tensor(0.9251)}, "kth_best_model_path": "",
            "kth_value": torch.tensor(float("-inf")), "last_model_path": "lightning_logs/last.ckpt",
        }},
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [scheduler_state],
        "hparams_name": "kwargs",
        "hyper_parameters": _attribute_dict({"encoder": "3d_unet", "pretrained_type": "pl_full", "lr": np.float64(3e-4)}),
    }


def test_namespace_hyperparameters_load_as_data(tmp_path):
    import argparse

    path = tmp_path / "namespace.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(encoder="3d_unet", frames=32)}, path)
    assert load_checkpoint(path)["hyper_parameters"] == argparse.Namespace(encoder="3d_unet", frames=32)


def _attribute_dict(values: dict):
    """A dict subclass that pickles as pytorch_lightning.utilities.parsing.AttributeDict."""
    cls = type("AttributeDict", (dict,), {"__module__": "pytorch_lightning.utilities.parsing"})
    return cls(values)


def _save_as_lightning1(checkpoint: dict, path: Path) -> None:
    cls = type(checkpoint["hyper_parameters"])
    modules = {}
    for name in ("pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"):
        modules[name] = sys.modules.get(name)
        sys.modules[name] = types.ModuleType(name)
    sys.modules["pytorch_lightning.utilities.parsing"].AttributeDict = cls
    try:
        torch.save(checkpoint, path)
    finally:
        for name, module in modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def test_published_lightning1_checkpoint_loads_as_data_and_predicts(tmp_path, tiny_phantom):
    from test_simlvseg import PublishedLightningModule

    torch.manual_seed(0)
    module = PublishedLightningModule(small=True)
    path = tmp_path / "published.ckpt"
    _save_as_lightning1(_lightning1_checkpoint(module.state_dict()), path)
    loaded = load_checkpoint(path)
    assert loaded["hyper_parameters"] == {"encoder": "3d_unet", "pretrained_type": "pl_full", "lr": 3e-4}
    assert loaded["lr_schedulers"][0]["milestones"] == collections.Counter({45: 1, 60: 1})
    assert set(loaded) >= {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops", "callbacks",
                           "optimizer_states", "lr_schedulers", "hyper_parameters"}
    out = tmp_path / "predictions"
    argv = ["--checkpoint", path, "--data_path", tiny_phantom, "--split", "test", "--save_dir", out,
            "--device", "cpu", "--frames", "16", "--size", "32", "32"]
    assert run_command("predict", [str(a) for a in argv]) == 0
    assert any((out / "masks").glob("*.npz"))


# --------------------------------------------------------------------------- names

HOSTILE_NAMES = ["../x", "/abs/x", "a/b", "a\\b", "nul\x00name", "new\nline", "..", "C:evil"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_name_problem_refuses_names_that_are_not_one_component(name):
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["0X10A28877E97DF540", "video 1", "a.b", "ünïcode", "...x", "x..y"])
def test_name_problem_accepts_ordinary_names(name):
    assert name_problem(name) is None


def test_path_under_refuses_paths_that_leave_the_folder(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    assert path_under(root, root / "masks" / "a.npz") == root / "masks" / "a.npz"
    for outside in (root / ".." / "x.npz", tmp_path / "x.npz", Path("/etc/passwd")):
        with pytest.raises(UserError, match="outside the output folder"):
            path_under(root, outside)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(UserError, match="outside the output folder"):
        path_under(root, root / "link" / "x.npz")


def _with_name(data: Path, name: str, tracings: bool = True) -> int:
    """Rename the first FileList video to ``name`` (in the CSVs only); return its line in FileList."""
    table = pd.read_csv(data / "FileList.csv", dtype={"FileName": str})
    old = table.loc[0, "FileName"]
    table.loc[0, "FileName"] = name
    table.to_csv(data / "FileList.csv", index=False)
    if tracings:
        rows = pd.read_csv(data / "VolumeTracings.csv", dtype={"FileName": str})
        rows.loc[rows["FileName"].str.replace(".avi", "") == old, "FileName"] = name + ".avi"
        rows.to_csv(data / "VolumeTracings.csv", index=False)
    return 2


@pytest.mark.parametrize("name", ["../x", "/abs/x", "a/b", "nul\x00name", "new\nline"])
def test_filelist_name_that_leaves_its_folder_is_refused_with_its_row(name, phantom_copy):
    line = _with_name(phantom_copy, name)
    with pytest.raises(DataError) as refused:
        load_index(phantom_copy)
    message = str(refused.value)
    assert "FileList.csv" in message and f"line {line}" in message and repr(name) in message


@pytest.mark.parametrize("name", ["../x", "/abs/x", "a/b", "nul\x00name", "new\nline"])
def test_predict_with_a_hostile_name_writes_and_deletes_nothing(name, phantom_copy, weak_run, tmp_path, capsys):
    # A file where the name points (a sibling of the output) that the old glob clean-up would delete.
    outside = tmp_path / "x.avi"
    outside.write_bytes(b"keep me")
    _with_name(phantom_copy, name)
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    argv = ["--checkpoint", weak_run / "checkpoints" / "last.ckpt", "--data_path", phantom_copy, "--split", "all",
            "--save_dir", out, "--device", "cpu", "--size", "32", "32"]
    capsys.readouterr()
    assert run_command("predict", [str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "FileList.csv" in err and "line 2" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before and not out.exists()


def test_volume_tracing_rows_with_hostile_names_are_a_counted_skip(phantom_copy, caplog):
    rows = pd.read_csv(phantom_copy / "VolumeTracings.csv", dtype={"FileName": str})
    bad = rows.head(3).copy()
    bad["FileName"] = ["../evil.avi", "/abs/evil.avi", "a/b.avi"]
    pd.concat([rows, bad], ignore_index=True).to_csv(phantom_copy / "VolumeTracings.csv", index=False)
    with caplog.at_level("WARNING", logger="unilvseg"):
        index = load_index(phantom_copy)
    assert len(index) == len(load_index(phantom_copy).records)
    assert any("skipped 3 row(s)" in r.getMessage() and f"line {len(rows) + 2}" in r.getMessage() for r in caplog.records)


def test_video_folder_names_with_control_characters_are_a_counted_skip(tiny_phantom, tmp_path, caplog):
    folder = tmp_path / "external"
    folder.mkdir()
    source = next((tiny_phantom / "Videos").glob("*.avi"))
    shutil.copy(source, folder / "good.avi")
    shutil.copy(source, folder / "bad\nname.avi")
    with caplog.at_level("WARNING", logger="unilvseg"):
        index = index_video_folder(folder)
    assert [r.file_name for r in index.records] == ["good"]
    assert index.skipped["unusable_name"] == ["bad\nname.avi"]
    assert any("skipped 1 video file(s) whose name cannot be used" in r.getMessage() for r in caplog.records)


def test_overlay_clean_up_deletes_only_the_files_it_wrote(weak_run, tiny_phantom, tmp_path):
    out = tmp_path / "out"
    base = ["--checkpoint", weak_run / "checkpoints" / "last.ckpt", "--data_path", tiny_phantom, "--split", "test",
            "--save_dir", out, "--device", "cpu", "--size", "32", "32"]
    base = [str(a) for a in base]
    assert run_command("predict", base + ["--overlay"]) == 0
    overlays = sorted((out / "overlays").glob("*.avi"))
    assert overlays
    name = overlays[0].stem
    kept = out / "overlays" / f"{name}.notes.txt"  # a user's file beside it, matching "<name>.*"
    kept.write_text("mine")
    assert run_command("predict", base + ["--overwrite"]) == 0
    assert not overlays[0].exists(), "the overlay of the earlier masks is removed"
    assert kept.read_text() == "mine", "a file the tool did not write is never deleted"


def test_numpy_scalars_in_hyperparameters_load_as_data(tmp_path):
    path = tmp_path / "numpy.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": np.float64(3e-4), "frames": np.int64(32)}}, path)
    loaded = load_checkpoint(path)["hyper_parameters"]
    assert loaded == {"lr": 3e-4, "frames": 32} and isinstance(loaded["lr"], np.floating)
