"""Every structure, not only the LV: label maps as targets, a multi-structure head, predictions
that write label maps and chamber measurements, and LV-only runs unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from test_hostile import run_command
from unilvseg.data.structures import STRUCTURES
from unilvseg.errors import UserError
from unilvseg.evaluation.inference import label_map_from_probabilities
from unilvseg.tasks.weak import WeakSegmentationTask, check_structures, soft_dice_loss

FAST = ["--encoder", "3d_unet_tiny", "--frames", "16", "--size", "32", "32", "--batch_size", "2", "--epochs", "1",
        "--limit_train_batches", "2", "--limit_val_batches", "2", "--progress_bar", "false", "--accelerator", "cpu", "--devices", "1"]
ALL = "lv,myo,la,rv,ra"


def test_structures_flag_puts_the_lv_first_and_refuses_mistakes():
    assert check_structures(None) == ("lv",)
    assert check_structures("la, lv,rv") == ("lv", "la", "rv")
    for bad, message in (("lv,xx", "unknown xx"), ("la,rv", "must include lv"), ("lv,la,la", "twice")):
        with pytest.raises(UserError, match=message):
            check_structures(bad)


def test_label_map_targets_become_one_channel_per_structure():
    task = WeakSegmentationTask(encoder="3d_unet_tiny", frames=16, structures=["lv", "la", "rv"])
    label_map = torch.zeros(1, 1, 4, 4, 16)
    label_map[0, 0, 0, 0, :] = STRUCTURES["lv"]
    label_map[0, 0, 1, 1, :] = STRUCTURES["la"]
    label_map[0, 0, 2, 2, :] = STRUCTURES["myo"]  # not segmented by this network: background for it
    labelled = torch.zeros(1, 16, dtype=torch.bool)
    labelled[0, 3] = True
    logits = torch.zeros(1, 3, 4, 4, 16)
    selected, target = task.labelled_frames({"labelled": labelled, "mask": label_map}, logits)
    assert selected.shape == target.shape == (1, 3, 4, 4)
    assert target[0, 0, 0, 0] == 1 and target[0, 1, 1, 1] == 1 and target.sum() == 2
    # The LV-only network reads the same map as before: LV = 1, everything else background.
    lv_only = WeakSegmentationTask(encoder="3d_unet_tiny", frames=16)
    selected, target = lv_only.labelled_frames({"labelled": labelled, "mask": label_map}, torch.zeros(1, 1, 4, 4, 16))
    assert target.shape == (1, 4, 4) and target.sum() == 1 and lv_only.hparams.get("structures") is None


def test_multi_structure_dice_loss_weighs_each_structure_alike():
    logits = torch.full((2, 2, 8, 8), -20.0)
    target = torch.zeros(2, 2, 8, 8)
    target[:, 0, :6, :6] = 1  # a big structure, predicted perfectly
    logits[:, 0, :6, :6] = 20.0
    target[:, 1, 0, 0] = 1  # a tiny one, missed
    loss = soft_dice_loss(logits, target, eps=1e-6)
    assert loss.item() == pytest.approx(0.5, abs=1e-3)  # mean of 0 and 1, not pooled (which would be ~0.01)
    assert soft_dice_loss(logits[:, 0], target[:, 0]).item() < 1e-3


def test_label_map_takes_the_most_probable_structure_and_keeps_the_lv():
    p = np.zeros((3, 1, 2, 2), np.float32)  # channels lv, la, rv
    p[:, 0, 0, 0] = [0.9, 0.95, 0.1]  # LV above threshold wins even against a more probable LA
    p[:, 0, 0, 1] = [0.2, 0.7, 0.8]  # RV
    p[:, 0, 1, 0] = [0.2, 0.4, 0.3]  # nothing above threshold
    labels = label_map_from_probabilities(p, [STRUCTURES["lv"], STRUCTURES["la"], STRUCTURES["rv"]])
    assert labels[0].tolist() == [[STRUCTURES["lv"], STRUCTURES["rv"]], [0, 0]]


def test_every_structure_trains_on_reference_label_maps_and_predicts_label_maps(tiny_phantom, tmp_path):
    run, predictions = tmp_path / "run", tmp_path / "predictions"
    argv = ["--data_path", tiny_phantom, *FAST, "--run_dir", run, "--labels", "reference", "--structures", ALL]
    assert run_command("train_weak", [str(a) for a in argv]) == 0
    metrics = pd.read_csv(run / "metrics.csv")
    for name in ("val_dice", "val_dice_myo", "val_dice_la", "val_dice_rv", "val_dice_ra"):
        assert metrics[name].notna().any(), name
    argv = ["--checkpoint", run / "checkpoints" / "last.ckpt", "--data_path", tiny_phantom, "--split", "test",
            "--save_dir", predictions, "--device", "cpu"]
    assert run_command("predict", [str(a) for a in argv]) == 0
    stored = np.load(next((predictions / "masks").glob("*.npz")))
    assert set(stored.files) == {"masks", "labels"}
    assert np.array_equal(stored["labels"] == STRUCTURES["lv"], stored["masks"] == 1)
    assert set(np.unique(stored["labels"])) <= {0, *STRUCTURES.values()}
    chambers = pd.read_csv(predictions / "chambers.csv", dtype={"FileName": str})
    assert len(chambers) == 1 and {"lv_ef", "la_volume_max", "rv_fac", "ra_area_max", "lv_mass"} <= set(chambers.columns)


def test_lv_only_runs_write_no_label_maps(tiny_phantom, tmp_path, capsys):
    run, predictions = tmp_path / "run", tmp_path / "predictions"
    assert run_command("train_weak", [str(a) for a in ["--data_path", tiny_phantom, *FAST, "--run_dir", run]]) == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"].get("structures") is None
    argv = ["--checkpoint", run / "checkpoints" / "last.ckpt", "--data_path", tiny_phantom, "--split", "test",
            "--save_dir", predictions, "--device", "cpu"]
    assert run_command("predict", [str(a) for a in argv]) == 0
    assert np.load(next((predictions / "masks").glob("*.npz"))).files == ["masks"]
    assert not (predictions / "chambers.csv").exists()
    # Tracings hold the LV only: asking for more structures with them is a clear error.
    capsys.readouterr()
    bad = ["--data_path", tiny_phantom, *FAST, "--run_dir", tmp_path / "bad", "--structures", "lv,la"]
    assert run_command("train_weak", [str(a) for a in bad]) == 2
    assert "--labels reference" in capsys.readouterr().err


def test_label_free_with_every_structure_labels_trains_and_predicts_label_maps(tiny_phantom, tmp_path):
    from unilvseg.cli.labelfree import main as labelfree_main
    from unilvseg.data.video import read_video
    from unilvseg.labelfree.classical import weak_lv_labels
    from unilvseg.labelfree.four_chamber import four_chamber_labels

    run = tmp_path / "labelfree"
    argv = ["--data_path", tiny_phantom, "--structures", "lv,la,rv", "--rounds", "1", "--early_epochs", "1", "--round_epochs", "1",
            "--size", "32", "32", "--progress_bar", "false", "--run_dir", run, "--limit_train_batches", "2", "--limit_val_batches", "2"]
    assert labelfree_main([str(a) for a in argv]) == 0
    # Round 0: the classical LV plus the four-chamber label maker's LA and RV (myocardium and RA
    # were not asked for, so they are background), QC'd on the LV.
    name = sorted(p.stem for p in (run / "labels" / "round0").glob("*.npz"))[0]
    stored = np.load(run / "labels" / "round0" / f"{name}.npz")
    frames = read_video(tiny_phantom / "Videos" / f"{name}.avi")
    lv, info = weak_lv_labels(frames)
    expected, _ = four_chamber_labels(frames, lv_masks=lv, sector=info["sector"])
    expected[~np.isin(expected, [STRUCTURES["lv"], STRUCTURES["la"], STRUCTURES["rv"]])] = 0
    assert np.array_equal(stored["masks"], expected)
    assert set(np.unique(stored["masks"])) <= {0, STRUCTURES["lv"], STRUCTURES["la"], STRUCTURES["rv"]}
    final = torch.load(run / "checkpoints" / "final.ckpt", weights_only=True)
    assert final["hyper_parameters"]["structures"] == ["lv", "la", "rv"]
    predictions = tmp_path / "predictions"
    assert run_command("predict", [str(a) for a in ["--checkpoint", run / "checkpoints" / "final.ckpt", "--data_path", tiny_phantom,
                                                    "--split", "test", "--save_dir", predictions, "--device", "cpu"]]) == 0
    assert "labels" in np.load(next((predictions / "masks").glob("*.npz"))).files


def test_evaluation_scores_every_structure_against_reference_label_maps(tiny_phantom, tmp_path):
    import json

    from unilvseg.cli.evaluate import main as evaluate_main
    from unilvseg.data.index import load_index
    from unilvseg.data.structures import reference_labels

    perfect, no_la = tmp_path / "perfect", tmp_path / "no_la"
    for folder in (perfect, no_la):
        (folder / "masks").mkdir(parents=True)
    for record in load_index(tiny_phantom, split="all").records:
        labels, _ = reference_labels(tiny_phantom, record.file_name)
        lv = (labels == STRUCTURES["lv"]).astype(np.uint8)
        np.savez(perfect / "masks" / f"{record.file_name}.npz", masks=lv, labels=labels)
        np.savez(no_la / "masks" / f"{record.file_name}.npz", masks=lv, labels=np.where(labels == STRUCTURES["la"], 0, labels))
    for folder in (perfect, no_la):
        out = tmp_path / f"eval_{folder.name}"
        assert evaluate_main(["--data_dir", str(tiny_phantom), "--prediction_dir", str(folder), "--output_dir", str(out),
                              "--split", "all", "--samples", "200"]) == 0
        dice = json.loads((out / "summary.json").read_text())["structures"]["dice"]
        assert set(dice) == set(STRUCTURES)
        for name, scores in dice.items():
            expected = 0.0 if (folder is no_la and name == "la") else 1.0
            for part in ("all_frames", "ed", "es"):
                assert (scores[part]["dice"], scores[part]["low"], scores[part]["high"]) == (expected, expected, expected), (name, part)
        assert (out / "all_structures.csv").is_file()


@pytest.mark.slow
def test_compile_flag_trains_and_predicts_with_plain_checkpoints(tiny_phantom, tmp_path):
    """--compile (torch.compile in place) is opt-in: the checkpoint keeps the plain parameter
    names, so it predicts with or without compiling, and both give the same masks."""
    run = tmp_path / "run"
    argv = ["--data_path", tiny_phantom, *FAST, "--run_dir", run, "--compile", "true", "--limit_train_batches", "1"]
    assert run_command("train_weak", [str(a) for a in argv]) == 0
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in state)
    outputs = {}
    for compiled in (False, True):
        out = tmp_path / f"pred{compiled}"
        argv = ["--checkpoint", run / "checkpoints" / "last.ckpt", "--data_path", tiny_phantom, "--split", "test",
                "--save_dir", out, "--device", "cpu", "--amp", "off"] + (["--compile"] if compiled else [])
        assert run_command("predict", [str(a) for a in argv]) == 0
        outputs[compiled] = np.load(next((out / "masks").glob("*.npz")))["masks"]
    assert (outputs[False] == outputs[True]).mean() > 0.999  # compiled kernels may round differently at the threshold
