"""Label-free pipeline (stages 3-4): pseudo-label targets, stage outputs, tracing independence,
and the final checkpoint through predict.py and evaluate_bootstrap.py.

One tiny run (3d_unet_tiny, 16 frames at 32x32, one batch per epoch) is shared by most tests.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from unilvseg.errors import DataError, UserError
from unilvseg.io import save_npz

REPO = Path(__file__).resolve().parents[1]
TINY = ["--encoder", "3d_unet_tiny", "--frames", "16", "--size", "32", "32", "--batch_size", "2",
        "--early_epochs", "1", "--round_epochs", "1", "--rounds", "1",
        "--limit_train_batches", "2", "--limit_val_batches", "1", "--progress_bar", "false", "--seed", "3"]
STAGES = ["stage1_labels", "early", "round1"]


def network_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    from unilvseg.tasks.transfer import network_state, read_checkpoint

    return network_state(read_checkpoint(checkpoint))


@pytest.fixture(scope="module")
def tiny_run(tiny_phantom, tmp_path_factory) -> Path:
    """A whole label-free run through the top-level script train_labelfree.py."""
    run_dir = tmp_path_factory.mktemp("labelfree") / "run"
    argv = ["train_labelfree.py", "--data_path", str(tiny_phantom), "--run_dir", str(run_dir)] + TINY
    saved = sys.argv
    sys.argv = argv
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(REPO / "train_labelfree.py"), run_name="__main__")
    finally:
        sys.argv = saved
    assert exit_info.value.code == 0
    return run_dir


# -- pseudo-label targets ------------------------------------------------------------------------
class _Record:
    def __init__(self, file_name):
        self.file_name = file_name


def test_targets_label_exactly_the_qc_passed_frames(tmp_path):
    from unilvseg.labelfree.pipeline import PseudoLabelTargets

    masks = np.zeros((6, 8, 8), np.uint8)
    masks[:, 2:6, 3:5] = 1
    masks[4] = 0
    passed = np.array([True, False, True, True, False, True])
    save_npz(tmp_path / "video.npz", masks=masks, passed=passed)
    targets = PseudoLabelTargets(tmp_path, size=(16, 16))
    frame_index = np.array([5, 1, 2, 2, 4])
    out = targets(_Record("video"), frame_index, None, None)
    np.testing.assert_array_equal(out["labelled"], passed[frame_index])
    assert out["mask"].shape == (5, 16, 16)
    np.testing.assert_array_equal(out["mask"][0], np.kron(masks[5], np.ones((2, 2), np.uint8)))  # nearest resize
    assert not out["mask"][4].any() and not out["phase"].any()

    missing = targets(_Record("absent"), frame_index, None, None)
    assert not missing["labelled"].any() and missing["mask"].shape == (5, 16, 16)
    with pytest.raises(DataError, match="labels for 6 frames"):
        targets(_Record("video"), np.array([0, 6]), None, None)
    save_npz(tmp_path / "bad.npz", masks=masks, passed=passed[:3])
    with pytest.raises(DataError, match="bad.npz"):
        PseudoLabelTargets(tmp_path, size=(8, 8))(_Record("bad"), frame_index, None, None)


def test_label_free_task_is_a_weak_task_with_its_size():
    from unilvseg.tasks import TASKS
    from unilvseg.tasks.label_free import LabelFreeTask
    from unilvseg.tasks.weak import WeakSegmentationTask

    task = LabelFreeTask(encoder="3d_unet_tiny", frames=16, size=(32, 48), label_round=2)
    assert TASKS["label_free"] is LabelFreeTask and issubclass(LabelFreeTask, WeakSegmentationTask)
    assert task.hparams["size"] == [32, 48] and task.hparams["label_round"] == 2
    assert task.monitor == "val_dice"
    with pytest.raises(UserError, match="--size"):
        LabelFreeTask(encoder="3d_unet_tiny", frames=16, size=(0, 32))


def test_label_free_task_is_registered_on_package_import():
    """predict.py and evaluate load checkpoints through unilvseg.tasks alone (fresh interpreter)."""
    code = "from unilvseg.tasks import TASKS; import sys; sys.exit(0 if 'label_free' in TASKS else 1)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, "unilvseg/tasks/__init__.py must import unilvseg.tasks.label_free"


# -- stage outputs ---------------------------------------------------------------------------------
def test_stage_outputs_exist_and_parse(tiny_run, tiny_phantom):
    from unilvseg.data.index import load_index
    from unilvseg.data.video import read_video
    from unilvseg.tasks.checkpoints import load_task

    index = load_index(tiny_phantom, require_tracings=False)
    labelled = [r for r in index.records if r.split in ("train", "val")]
    for round_index in (0, 1):
        label_dir = tiny_run / "labels" / f"round{round_index}"
        qc = pd.read_csv(label_dir / "qc.csv", dtype={"FileName": str}, keep_default_na=False)
        summary = json.loads((label_dir / "summary.json").read_text())
        assert summary["source"] == ("classical" if round_index == 0 else "network")
        assert set(qc.FileName) == {r.file_name for r in labelled}
        assert summary["pass_rate"] == pytest.approx(qc.passed.mean())
        # Failed frames say why; passed ones do not.
        assert (qc.reasons[~qc.passed] != "").all() and (qc.reasons[qc.passed] == "").all()
        for record in labelled:
            with np.load(label_dir / f"{record.file_name}.npz") as archive:
                masks, passed = archive["masks"], archive["passed"]
            assert masks.shape == read_video(record.path).shape[:3] and masks.dtype == np.uint8
            np.testing.assert_array_equal(passed, qc[qc.FileName == record.file_name].passed.to_numpy())
    assert json.loads((tiny_run / "labels" / "round0" / "summary.json").read_text())["pass_rate"] > 0.5
    for stage in ("early", "round1"):
        stage_dir = tiny_run / "stages" / stage
        info = json.loads((stage_dir / "stage.json").read_text())
        assert (tiny_run / info["checkpoint"]).is_file() and (stage_dir / "metrics.csv").is_file()
        assert "val_dice" in pd.read_csv(stage_dir / "metrics.csv").columns
        # Stages hand on the end of their budget (--stage_checkpoint last, the default), not the
        # epoch a noisy val pseudo-Dice liked best (docs/real-echo.md, ablation).
        assert info["checkpoint"] == f"stages/{stage}/checkpoints/last.ckpt"
    assert json.loads((tiny_run / "stages" / "round1" / "stage.json").read_text())["init"] == "previous"
    task = load_task(tiny_run / "checkpoints" / "final.ckpt")
    assert task.task_name == "label_free" and task.hparams["size"] == [32, 32] and task.hparams["label_round"] == 1
    final = network_weights(tiny_run / "checkpoints" / "final.ckpt")
    chosen = json.loads((tiny_run / "stages" / "round1" / "stage.json").read_text())["checkpoint"]
    for name, tensor in network_weights(tiny_run / chosen).items():
        assert torch.equal(final[name], tensor)

    report = pd.read_csv(tiny_run / "report.csv")
    assert list(report.stage) == STAGES
    assert report.loc[0, "labels_pass_rate"] == pytest.approx(json.loads((tiny_run / "labels/round0/summary.json").read_text())["pass_rate"], abs=1e-4)
    # The classical labels of the phantom are good: the report scored them against the truth.
    assert report.loc[0, "test_dice_traced"] > 0.7 and report.loc[0, "test_dice_reference"] > 0.7
    assert report[["test_dice_traced", "test_dice_reference", "val_dice_traced"]].notna().all().all()
    markdown = (tiny_run / "report.md").read_text()
    assert all(f"| {stage} |" in markdown for stage in STAGES)


def test_training_clips_are_labelled_only_where_qc_passed(tiny_run, tiny_phantom):
    from unilvseg.labelfree.pipeline import LabelFreePipeline, PipelineConfig, PseudoLabelTargets

    config = PipelineConfig(data_path=str(tiny_phantom), frames=16, size=[32, 32], seed=3)
    pipeline = LabelFreePipeline(config, tiny_run)
    label_dir = tiny_run / "labels" / "round0"
    dataset = pipeline.datamodule(PseudoLabelTargets(label_dir, config.size)).dataset("train", train=True)
    seen_unlabelled = 0
    for key in range(len(dataset)):
        item = dataset[key]
        with np.load(label_dir / f"{item['file_name']}.npz") as archive:
            passed = archive["passed"]
        expected = passed[item["frame_index"].numpy()]
        np.testing.assert_array_equal(item["labelled"].numpy(), expected)
        seen_unlabelled += int((~expected).sum())
        assert item["mask"].shape == (1, 32, 32, 16)
    # The QC'd phantom labels: most frames pass, and those that fail are not trained on.
    assert seen_unlabelled < len(dataset) * 16


def test_trained_weights_do_not_depend_on_tracings(tiny_run, phantom_copy, tmp_path):
    """Shifting every tracing coordinate, and replacing FileList's EF, ESV and EDV, changes the
    report, never the trained network: segmentation learns from pixels only.

    This run goes through ``train_weak.py --labels pseudo``; identical weights to the shared
    run (``train_labelfree.py``, original tracings) also show the two entry points agree.
    """
    from unilvseg.cli.train import main_weak

    tracings = pd.read_csv(phantom_copy / "VolumeTracings.csv")
    for column in ("X1", "X2"):
        tracings[column] += 9.0
    for column in ("Y1", "Y2"):
        tracings[column] -= 7.0
    tracings.to_csv(phantom_copy / "VolumeTracings.csv", index=False)
    file_list = pd.read_csv(phantom_copy / "FileList.csv")
    rng = np.random.default_rng(7)
    file_list["EF"] = rng.uniform(10, 80, len(file_list))
    file_list["ESV"] = rng.uniform(20, 200, len(file_list))
    file_list["EDV"] = file_list["ESV"] * rng.uniform(1.1, 3.0, len(file_list))
    file_list.to_csv(phantom_copy / "FileList.csv", index=False)
    run_dir = tmp_path / "shifted"
    assert main_weak(["--labels", "pseudo", "--data_path", str(phantom_copy), "--run_dir", str(run_dir)] + TINY) == 0
    for stage_checkpoint in ("stages/early/checkpoints/best.ckpt", "checkpoints/final.ckpt"):
        original, shifted = network_weights(tiny_run / stage_checkpoint), network_weights(run_dir / stage_checkpoint)
        assert original.keys() == shifted.keys()
        for name in original:
            assert torch.equal(original[name], shifted[name]), f"{stage_checkpoint}: {name} differs"
    for round_index in (0, 1):
        for path in (tiny_run / "labels" / f"round{round_index}").glob("*.npz"):
            with np.load(path) as a, np.load(run_dir / "labels" / f"round{round_index}" / path.name) as b:
                np.testing.assert_array_equal(a["masks"], b["masks"])
                np.testing.assert_array_equal(a["passed"], b["passed"])
    before, after = pd.read_csv(tiny_run / "report.csv"), pd.read_csv(run_dir / "report.csv")
    np.testing.assert_allclose(before.test_dice_reference, after.test_dice_reference)  # same masks
    assert (before.test_dice_traced - after.test_dice_traced).abs().max() > 0.05  # tracings were read, for the report


def test_final_checkpoint_predicts_and_evaluates(tiny_run, tiny_phantom, tmp_path):
    from unilvseg.cli.evaluate import main as evaluate_main
    from unilvseg.cli.predict import main as predict_main

    save = tmp_path / "pred"
    assert predict_main(["--data_path", str(tiny_phantom), "--split", "test", "--checkpoint",
                         str(tiny_run / "checkpoints" / "final.ckpt"), "--save_dir", str(save)]) == 0
    masks = sorted((save / "masks").glob("*.npz"))
    assert masks
    with np.load(masks[0]) as archive:
        assert archive["masks"].shape[1:] == (112, 112)  # trained at 32x32, resized back
    out = tmp_path / "eval"
    assert evaluate_main(["--data_dir", str(tiny_phantom), "--prediction_dir", str(save), "--output_dir", str(out),
                          "--samples", "50"]) == 0
    assert (out / "summary.json").is_file() and (out / "test_dice.csv").is_file()


# -- re-runs and mistakes ------------------------------------------------------------------------------
def test_rerun_reuses_stages_and_other_settings_are_refused(tiny_run, tiny_phantom, capsys):
    from unilvseg.cli.labelfree import main

    checkpoint = tiny_run / "stages" / "early" / "checkpoints" / "best.ckpt"
    stamp = checkpoint.stat().st_mtime_ns
    assert main(["--data_path", str(tiny_phantom), "--run_dir", str(tiny_run)] + TINY) == 0
    assert checkpoint.stat().st_mtime_ns == stamp  # nothing retrained
    assert main(["--data_path", str(tiny_phantom), "--run_dir", str(tiny_run)] + TINY + ["--qc_min_solidity", "0.5"]) == 2
    assert "qc" in capsys.readouterr().err


def test_run_from_before_the_blood_pool_snap_continues_only_without_it(tiny_run, tiny_phantom, tmp_path, capsys):
    """A pipeline.json written before --pool_scale existed describes runs without the snap."""
    import shutil

    from unilvseg.cli.labelfree import main

    old_run = Path(shutil.copytree(tiny_run, tmp_path / "old"))
    settings = json.loads((old_run / "pipeline.json").read_text())
    del settings["pool_scale"]
    (old_run / "pipeline.json").write_text(json.dumps(settings))
    argv = ["--data_path", str(tiny_phantom), "--run_dir", str(old_run)] + TINY
    assert main(argv) == 2
    assert "pool_scale" in capsys.readouterr().err
    checkpoint = old_run / "stages" / "early" / "checkpoints" / "best.ckpt"
    stamp = checkpoint.stat().st_mtime_ns
    assert main(argv + ["--pool_scale", "0"]) == 0
    assert checkpoint.stat().st_mtime_ns == stamp  # continued, nothing retrained


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--epochs", "3"], "--early_epochs"),
        (["--round_init", "warm"], "--round_init"),
        (["--size", "40", "40"], "image height"),
        (["--resume", "x.ckpt"], "--run_dir"),
        (["--qc_min_area", "0.5", "--qc_max_area", "0.4"], "--qc_min_area"),
        (["--label_stride", "17"], "--label_stride"),
        (["--round_loss", "focal"], "--round_loss"),
        (["--pool_scale", "-1"], "--pool_scale"),
        (["--num_nodes", "2"], "--num_nodes"),
        (["--compile", "true"], "--compile"),
        (["--handover", "uint8"], "--handover"),
        (["--structures", "la,rv"], "must include lv"),
    ],
)
def test_flag_mistakes_are_clear_errors(tiny_phantom, tmp_path, capsys, extra, message):
    from unilvseg.cli.labelfree import main

    run_dir = tmp_path / "run"
    assert main(["--data_path", str(tiny_phantom), "--run_dir", str(run_dir)] + TINY + extra) == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists()


def test_round_whose_labels_all_fail_qc_ends_self_learning_with_the_last_model(tiny_phantom, tmp_path, monkeypatch, caplog):
    """A model whose masks all fail QC leaves nothing to learn from: the run keeps the stage
    that made them as final checkpoint, says so, and exits 0 (round 0 failing stays an error)."""
    from unilvseg.cli.labelfree import main
    from unilvseg.labelfree.pipeline import LabelFreePipeline, NoPseudoLabels

    original = LabelFreePipeline.produce_labels

    def produce_labels(self, round_index, segmenter):
        if round_index == 1:
            raise NoPseudoLabels("label round 1: no training frame passed quality control (test)")
        return original(self, round_index, segmenter)

    monkeypatch.setattr(LabelFreePipeline, "produce_labels", produce_labels)
    run_dir = tmp_path / "run"
    extra = ["--rounds", "2"]
    assert main(["--data_path", str(tiny_phantom), "--run_dir", str(run_dir)] + TINY + extra) == 0
    early = json.loads((run_dir / "stages" / "early" / "stage.json").read_text())["checkpoint"]
    assert (run_dir / "checkpoints" / "final.ckpt").read_bytes() == (run_dir / early).read_bytes()
    assert not (run_dir / "stages" / "round1").exists()
    assert list(pd.read_csv(run_dir / "report.csv")["stage"]) == ["stage1_labels", "early"]
    assert "self-learning stopped after stage early" in (run_dir / "report.md").read_text()
    assert "self-learning stopped after stage early" in caplog.text


def test_no_frame_passing_qc_is_an_error_naming_qc_csv(tiny_phantom, tmp_path, capsys):
    from unilvseg.cli.labelfree import main

    # Phantom LVs cover ~10 % of the fan: a 44-45 % window rejects every frame.
    argv = ["--data_path", str(tiny_phantom), "--run_dir", str(tmp_path / "run"), "--qc_min_area", "0.44"] + TINY
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no training frame passed quality control" in err and "qc.csv" in err
    assert not (tmp_path / "run" / "stages").exists()


def test_labelfree_benchmark_seeds_and_oracle(tiny_phantom, tmp_path):
    """benchmarks.labelfree_bench --seeds 2 --oracle: one run per seed plus an oracle trained on
    ReferenceMasks for the whole budget; a per-seed csv and a summary with per-stage changes."""
    from benchmarks.labelfree_bench import main as bench_main
    from unilvseg.labelfree.pipeline import read_labels

    unseeded = [flag for i, flag in enumerate(TINY) if flag != "--seed" and TINY[i - 1] != "--seed"]
    run_dir, out_dir = tmp_path / "runs", tmp_path / "out"
    argv = ["--data_path", str(tiny_phantom), "--run_dir", str(run_dir), "--out_dir", str(out_dir),
            "--name", "tiny", "--seeds", "2", "--oracle"] + unseeded
    assert bench_main(argv) == 0
    table = pd.read_csv(out_dir / "labelfree-tiny.csv")
    assert sorted(table["seed"].unique()) == [0, 1]
    assert list(table[table["seed"] == 0]["stage"]) == STAGES + ["oracle"]
    oracle = table[table["stage"] == "oracle"]
    assert (oracle["trained_on"] == "ReferenceMasks, 2 epochs").all()  # early 1 + 1 round x 1
    assert oracle["test_dice_reference"].between(0, 1).all()
    # The oracle trained on the reference masks themselves, every frame passed.
    filelist = pd.read_csv(tiny_phantom / "FileList.csv")
    name = Path(sorted(filelist[filelist["Split"].str.upper() == "TRAIN"]["FileName"])[0]).stem
    labels = read_labels(run_dir / "seed0-oracle" / "labels" / "round0", name)  # a training video: labelled
    assert labels is not None
    reference = np.load(tiny_phantom / "ReferenceMasks" / f"{name}.npz")["masks"]
    assert np.array_equal(labels[0], reference > 0) and labels[1].all()
    text = (out_dir / "labelfree-tiny.md").read_text()
    assert "Over 2 seeds" in text and "| oracle |" in text and "seeds improved" in text
    assert "at commit " in text  # the figures name the code that made them
    # Different seeds trained different networks.
    early = table[table["stage"] == "early"].set_index("seed")
    assert (run_dir / "seed1" / "checkpoints" / "final.ckpt").is_file()
    assert early.loc[0, "val_pseudo_dice"] != early.loc[1, "val_pseudo_dice"]


def test_labelfree_benchmark_seed_flag_is_not_read_as_seeds(tiny_phantom, tmp_path, capsys):
    """--seed goes to train_labelfree.py (no prefix matching onto --seeds); with --seeds it is an error."""
    from benchmarks.labelfree_bench import build_parser
    from benchmarks.labelfree_bench import main as bench_main

    args, passthrough = build_parser().parse_known_args(["--seed", "3"])
    assert args.seeds == 1 and passthrough == ["--seed", "3"]
    assert bench_main(["--data_path", str(tiny_phantom), "--out_dir", str(tmp_path), "--seeds", "2", "--seed", "3"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
