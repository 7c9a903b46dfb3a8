"""Training schemes: masking, weak loss, weight transfer, determinism, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from unilvseg.errors import UserError
from unilvseg.tasks.ssl import TemporalMaskingTask, blank_frames, choose_masked_frames, masked_frame_count
from unilvseg.tasks.transfer import load_pretrained
from unilvseg.tasks.weak import WeakSegmentationTask

TINY = dict(encoder="3d_unet_tiny", frames=16)


def tiny_cli(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "--data_path", str(data), "--encoder", "3d_unet_tiny", "--frames", "16", "--batch_size", "2",
        "--epochs", "1", "--limit_train_batches", "2", "--limit_val_batches", "2",
        "--run_dir", str(run_dir), "--progress_bar", "false", *extra,
    ]


# Hand-worked counts: 9.6 -> 10, 19.2 -> 19, 4, 18, 6.75 -> 7; ties round half to even as
# Python's round() (the docstring's definition): 2.5 -> 2, 3.5 -> 4, 4.5 -> 4.
@pytest.mark.parametrize("frames,ratio,count", [(16, 0.6, 10), (32, 0.6, 19), (16, 0.25, 4), (36, 0.5, 18), (9, 0.75, 7),
                                                (5, 0.5, 2), (14, 0.25, 4), (18, 0.25, 4)])
def test_exactly_round_ratio_frames_are_blanked(frames, ratio, count):
    assert masked_frame_count(frames, ratio) == count
    hidden = choose_masked_frames(5, frames, count, torch.Generator().manual_seed(0))
    assert (hidden.sum(dim=1) == count).all()
    video = torch.randn(5, 3, 8, 8, frames)
    blanked = blank_frames(video, hidden)
    zero_frames = (blanked.abs().sum(dim=(1, 2, 3)) == 0)
    assert torch.equal(zero_frames, hidden)


@pytest.mark.parametrize("encoder,frames", [("3d_unet_tiny", 16), ("si_tiny", 16)])
def test_masking_task_blanks_the_ratio_for_3d_and_super_image(encoder, frames):
    task = TemporalMaskingTask(mask_ratio=0.6, encoder=encoder, frames=frames)
    seen = {}

    def spy(module, inputs):
        seen["input"] = inputs[0].detach().clone()

    task.network.register_forward_pre_hook(spy)
    video = torch.randn(2, 3, 32, 32, frames) + 5.0  # no frame is naturally all zero
    loss, parts = task.compute_loss({"video": video})
    blanked = (seen["input"].abs().sum(dim=(1, 2, 3)) == 0).sum(dim=1)
    assert blanked.tolist() == [round(0.6 * frames)] * 2
    assert torch.isfinite(loss)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5, 0.01])
def test_degenerate_mask_ratio_is_a_clear_error(ratio):
    with pytest.raises(UserError, match="--mask_ratio"):
        TemporalMaskingTask(mask_ratio=ratio, **TINY)


def test_masked_only_loss_ignores_visible_frames():
    torch.manual_seed(0)
    task = TemporalMaskingTask(mask_ratio=0.5, loss_on="masked", **TINY)
    video = torch.randn(1, 3, 32, 32, 16)
    generator = torch.Generator().manual_seed(3)
    loss, parts = task.reconstruction_loss({"video": video}, generator)
    assert torch.isclose(loss, parts["mse_masked"])
    task_all = TemporalMaskingTask(mask_ratio=0.5, loss_on="all", **TINY)
    task_all.load_state_dict(task.state_dict())
    loss_all, parts_all = task_all.reconstruction_loss({"video": video}, torch.Generator().manual_seed(3))
    assert torch.isclose(loss_all, (parts_all["mse_masked"] + parts_all["mse_visible"]) / 2, atol=1e-6)


def _weak_batch(frames=16, size=32):
    torch.manual_seed(0)
    video = torch.randn(2, 3, size, size, frames)
    mask = torch.zeros(2, 1, size, size, frames)
    mask[..., 8:20, 10:22, :] = 1
    labelled = torch.zeros(2, frames, dtype=torch.bool)
    labelled[0, 3] = labelled[1, 7] = labelled[1, 12] = True
    phase = labelled.long()
    return {"video": video, "mask": mask, "labelled": labelled, "phase": phase, "skipped": torch.tensor(0)}


def test_weak_loss_only_sees_traced_frames():
    task = WeakSegmentationTask(**TINY).eval()
    batch = _weak_batch()
    loss, _ = task.compute_loss(batch)
    # Change the targets of untraced frames: the loss must not move.
    changed = dict(batch)
    changed["mask"] = batch["mask"].clone()
    untraced = ~batch["labelled"]
    changed["mask"].permute(0, 4, 1, 2, 3)[untraced] = 1.0 - changed["mask"].permute(0, 4, 1, 2, 3)[untraced]
    loss_changed, _ = task.compute_loss(changed)
    assert torch.equal(loss, loss_changed)
    # Changing a traced frame's target does move it.
    changed["mask"].permute(0, 4, 1, 2, 3)[0, 3] = 1.0
    loss_traced, _ = task.compute_loss(changed)
    assert not torch.isclose(loss, loss_traced)


def test_weak_loss_is_zero_gradient_on_untraced_frames():
    task = WeakSegmentationTask(**TINY)
    batch = _weak_batch()
    video = batch["video"].requires_grad_(True)
    logits = task(video)
    logits.retain_grad()
    selected, target = task.labelled_frames(batch, logits)
    loss, _ = task.criterion(selected, target)
    loss.backward()
    per_frame = logits.grad.abs().sum(dim=(1, 2, 3))  # (B, T)
    assert (per_frame[~batch["labelled"]] == 0).all()
    assert (per_frame[batch["labelled"]] > 0).all()


def test_unknown_loss_name_is_an_error():
    with pytest.raises(UserError, match="--loss"):
        WeakSegmentationTask(loss=["focal"], **TINY)


def test_ssl_weights_transfer_to_weak_and_head_is_skipped(tmp_path):
    ssl = TemporalMaskingTask(**TINY)
    path = tmp_path / "ssl.pt"
    torch.save({"state_dict": {f"network.{k}": v for k, v in ssl.network.state_dict().items()}, "unilvseg_task": "temporal_masking"}, path)
    weak = WeakSegmentationTask(checkpoint=str(path), **TINY)
    report = weak.transfer_report
    total = len(weak.network.state_dict())
    assert len(report.loaded) + len(report.skipped) == total
    assert report.skipped and all(name.startswith("head") for name in report.skipped)
    for name in report.loaded:
        assert torch.equal(weak.network.state_dict()[name], ssl.network.state_dict()[name])
    assert all((weak.network.state_dict()[n] == 0).all() for n in report.skipped if "head" in n)


def test_checkpoint_that_matches_nothing_is_an_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"network.something.weight": torch.zeros(3)}}, path)
    with pytest.raises(UserError, match="no tensor matches"):
        WeakSegmentationTask(checkpoint=str(path), **TINY)
    with pytest.raises(UserError, match="not found"):
        WeakSegmentationTask(checkpoint=str(tmp_path / "missing.ckpt"), **TINY)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a readable"):
        load_pretrained(WeakSegmentationTask(**TINY).network, corrupt)


def test_train_ssl_then_weak_from_its_checkpoint(tiny_phantom, tmp_path):
    from unilvseg.cli.train import main_ssl, main_weak

    ssl_dir = tmp_path / "ssl"
    assert main_ssl(tiny_cli(tiny_phantom, ssl_dir, "--mask_ratio", "0.5")) == 0
    for name in ("config.yaml", "metrics.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (ssl_dir / name).is_file(), name
    metrics = pd.read_csv(ssl_dir / "metrics.csv")
    assert "val_loss" in metrics and metrics["val_loss"].notna().any()

    weak_dir = tmp_path / "weak"
    ckpt = ssl_dir / "checkpoints" / "best.ckpt"
    assert main_weak(tiny_cli(tiny_phantom, weak_dir, "--checkpoint", str(ckpt))) == 0
    metrics = pd.read_csv(weak_dir / "metrics.csv")
    for column in ("val_dice", "val_dice_ed", "val_dice_es", "train_loss_epoch"):
        assert column in metrics and metrics[column].notna().any(), column
    saved = torch.load(weak_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["unilvseg_task"] == "weak_segmentation"
    # Prediction normalises exactly as training did: the data settings travel with the weights.
    from unilvseg.data.dataset import ECHONET_MEAN

    assert saved["unilvseg_data"]["mean"] == pytest.approx(list(ECHONET_MEAN))
    assert saved["unilvseg_data"]["size"] == [112, 112]
    assert "frames: 16" in (weak_dir / "config.yaml").read_text()

    # ... then predict.py and evaluate_bootstrap.py on its last checkpoint: the user's whole chain.
    from unilvseg.cli.evaluate import main as evaluate_main
    from unilvseg.cli.predict import main as predict_main

    predictions, evaluation = tmp_path / "predictions", tmp_path / "evaluation"
    assert predict_main(["--data_path", str(tiny_phantom), "--checkpoint", str(weak_dir / "checkpoints" / "last.ckpt"),
                         "--save_dir", str(predictions), "--device", "cpu"]) == 0
    size = pd.read_csv(predictions / "size.csv")
    test_videos = set(pd.read_csv(tiny_phantom / "FileList.csv").query("Split == 'TEST'")["FileName"])
    assert set(size["FileName"]) == test_videos
    assert size["Traced"].value_counts().to_dict() == {"ED": len(test_videos), "ES": len(test_videos)}
    assert len(list(predictions.glob("*_ED.png"))) == len(test_videos) == len(list((predictions / "masks").glob("*.npz")))
    # No --data_dir: evaluate_bootstrap.py reads the data set predict.py recorded in run.json.
    assert evaluate_main(["--prediction_dir", str(predictions), "--output_dir", str(evaluation), "--samples", "50"]) == 0
    summary = json.loads((evaluation / "summary.json").read_text())
    dice = pd.read_csv(evaluation / "test_dice.csv")
    # The summary's Dice is the ratio of sums of the per-video counts the table lists.
    counts = {c: dice[f"{c}ED"].sum() + dice[f"{c}ES"].sum() for c in ("Intersection", "PredArea", "TrueArea")}
    pooled = 2 * counts["Intersection"] / (counts["PredArea"] + counts["TrueArea"])
    assert summary["n_videos"] == len(test_videos) and summary["overall"]["dice"] == pytest.approx(pooled, rel=1e-9)
    assert summary["overall"]["low"] <= summary["overall"]["dice"] <= summary["overall"]["high"]
    assert len(dice) == len(test_videos) and "test dice (overall): " in (evaluation / "log.csv").read_text()


def test_seeded_cpu_runs_give_identical_metrics(tiny_phantom, tmp_path):
    from unilvseg.cli.train import main_weak

    tables = []
    for run in ("a", "b"):
        assert main_weak(tiny_cli(tiny_phantom, tmp_path / run, "--seed", "7")) == 0
        table = pd.read_csv(tmp_path / run / "metrics.csv")
        # Wall-clock columns measure the machine, not the model.
        tables.append(table.drop(columns=[c for c in table.columns if c.endswith("seconds")]))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert tables[0]["train_loss_step"].notna().sum() >= 2


def test_config_file_and_print_config(tiny_phantom, tmp_path, capsys):
    from unilvseg.cli.train import ssl_parser

    parser = ssl_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--print_config", "--frames", "16"])
    printed = capsys.readouterr().out
    assert "frames: 16" in printed and "mask_ratio: 0.6" in printed
    config = tmp_path / "ssl.yaml"
    config.write_text(printed.replace("mask_ratio: 0.6", "mask_ratio: 0.25"))
    args = parser.parse_args(["--config", str(config)])
    assert args.mask_ratio == 0.25 and args.frames == 16


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--frames", "20"], "--frames"),
        (["--encoder", "si_tiny", "--frames", "20"], "--frames"),
        (["--encoder", "no_such_net"], "no_such_net"),
        (["--batch_size", "0"], "--batch_size"),
        (["--mask_ratio", "1.0"], "--mask_ratio"),
        (["--pretext", "jigsaw"], "--pretext"),
    ],
)
def test_bad_ssl_flags_give_clear_errors(tiny_phantom, tmp_path, capsys, extra, message):
    from unilvseg.cli.train import main_ssl

    run_dir = tmp_path / "run"
    assert main_ssl(tiny_cli(tiny_phantom, run_dir, *extra)) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert not run_dir.exists(), "a rejected run must not leave a run folder behind"


def test_missing_checkpoint_file_is_a_clear_error(tiny_phantom, tmp_path, capsys):
    from unilvseg.cli.train import main_weak

    assert main_weak(tiny_cli(tiny_phantom, tmp_path / "run", "--checkpoint", str(tmp_path / "nope.ckpt"))) == 2
    assert "nope.ckpt" in capsys.readouterr().err


@pytest.mark.parametrize("parser_name", ["weak_parser", "ssl_parser"])
def test_batch_limits_read_whole_numbers_as_counts_and_fractions_as_shares(parser_name):
    # Lightning reads an int as a number of batches and a float as a share of the epoch:
    # "--limit_val_batches 1" must be one batch, not 1.0 (every batch).
    import unilvseg.cli.train as train_cli

    parser = getattr(train_cli, parser_name)()
    for flag in ("--limit_val_batches", "--limit_train_batches", "--val_check_interval"):
        one = getattr(parser.parse_args([flag, "1"]), flag[2:])
        assert one == 1 and isinstance(one, int), flag
        whole = getattr(parser.parse_args([flag, "1.0"]), flag[2:])
        assert whole == 1.0 and isinstance(whole, float), flag
        assert getattr(parser.parse_args([flag, "0.25"]), flag[2:]) == 0.25
    assert isinstance(parser.parse_args([]).val_check_interval, float)  # default: once per epoch
