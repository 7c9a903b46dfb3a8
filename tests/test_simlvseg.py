"""Being the published SimLVSeg when asked: its exact UNet3D and its Lightning checkpoints.

``PublishedUNet3D`` below re-implements the published ``simlvseg/model/unet_3d.py`` from its
source (module names, unit counts, MONAI blocks and arguments), independently of
``unilvseg.models``; ``PublishedLightningModule`` holds it as ``self.model`` like the published
``Seg3DModule`` / ``Seg3DSSLMaskingModule``, so its ``state_dict()`` has the published layout.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.networks.blocks.convolutions import Convolution, ResidualUnit
from monai.networks.layers.factories import Act, Norm

from unilvseg.errors import UserError
from unilvseg.models import build_network


class PublishedUNet3D(nn.Module):
    """The published UNet3D (``small=False``: 2/3/4/6/3 units) or UNet3DSmall (2 units each).

    ``width`` scales the channels (16 in the published code) only so tests can stay small."""

    def __init__(self, small: bool = False, width: int = 16):
        super().__init__()
        c = [width * 2**i for i in range(5)]
        units = [2, 2, 2, 2, 2] if small else [2, 3, 4, 6, 3]
        self.encoder1 = self._encoder_block(3, [c[0]] * units[0])
        self.encoder2 = self._encoder_block(c[0], [c[1]] * units[1])
        self.encoder3 = self._encoder_block(c[1], [c[2]] * units[2])
        self.encoder4 = self._encoder_block(c[2], [c[3]] * units[3])
        self.encoder5 = self._encoder_block(c[3], [c[4]] * units[4])
        self.decoder4 = self._decoder_block(c[3] * 2, c[3], False)
        self.decoder3 = self._decoder_block(c[2] * 2, c[2], False)
        self.decoder2 = self._decoder_block(c[1] * 2, c[1], False)
        self.decoder1 = self._decoder_block(c[0] * 2, 1, True)
        self.upconv5 = self._up_conv(c[4], c[3])
        self.upconv4 = self._up_conv(c[3], c[2])
        self.upconv3 = self._up_conv(c[2], c[1])
        self.upconv2 = self._up_conv(c[1], c[0])
        self.maxpool = nn.MaxPool3d(2, 2)

    def forward(self, x):
        x1 = self.encoder1(x)
        x2 = self.encoder2(self.maxpool(x1))
        x3 = self.encoder3(self.maxpool(x2))
        x4 = self.encoder4(self.maxpool(x3))
        x = self.encoder5(self.maxpool(x4))
        x = self.decoder4(torch.cat([self.upconv5(x), x4], dim=1))
        x = self.decoder3(torch.cat([self.upconv4(x), x3], dim=1))
        x = self.decoder2(torch.cat([self.upconv3(x), x2], dim=1))
        return self.decoder1(torch.cat([self.upconv2(x), x1], dim=1))

    @staticmethod
    def _unit(cin, cout, last_conv_only=False):
        return ResidualUnit(3, cin, cout, strides=1, kernel_size=3, subunits=2, act=Act.PRELU, norm=Norm.INSTANCE,
                            dropout=0.0, bias=True, last_conv_only=last_conv_only, adn_ordering="NDA")

    def _encoder_block(self, cin, channels):
        full = [cin, *channels]
        units = [self._unit(full[i], full[i + 1]) for i in range(len(channels) - 1)]
        units.append(self._unit(channels[-2], channels[-1]))
        return nn.Sequential(*units)

    def _decoder_block(self, cin, cout, is_top):
        return self._unit(cin, cout, last_conv_only=is_top)

    @staticmethod
    def _up_conv(cin, cout):
        return Convolution(3, cin, cout, strides=2, kernel_size=3, act=Act.PRELU, norm=Norm.INSTANCE, dropout=0.0,
                           bias=True, is_transposed=True, adn_ordering="NDA")


class PublishedLightningModule(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.model = PublishedUNet3D(**kwargs)


# Written out by hand from the two sources, not with unilvseg.models.simlvseg's rules.
PUBLISHED_TO_OURS = {
    "encoder1.": "encoder.0.", "encoder2.": "encoder.1.", "encoder3.": "encoder.2.", "encoder4.": "encoder.3.",
    "encoder5.": "encoder.4.", "upconv5.": "upsamplers.0.", "upconv4.": "upsamplers.1.", "upconv3.": "upsamplers.2.",
    "upconv2.": "upsamplers.3.", "decoder4.": "decoder.0.0.", "decoder3.": "decoder.1.0.", "decoder2.": "decoder.2.0.",
    "decoder1.": "head.",
}


def ours(published_name: str) -> str:
    prefix = next(p for p in PUBLISHED_TO_OURS if published_name.startswith(p))
    return PUBLISHED_TO_OURS[prefix] + published_name[len(prefix):]


def save_published_checkpoint(module: PublishedLightningModule, path) -> None:
    """What pytorch_lightning's ModelCheckpoint writes for the published modules (no hyperparameters)."""
    torch.save({"epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.5.10", "state_dict": module.state_dict(),
                "callbacks": {}, "optimizer_states": [], "lr_schedulers": []}, path)


@pytest.mark.parametrize("encoder,small", [("3d_unet", False), ("3d_unet_small", True)])
def test_network_has_the_published_parameter_shapes(encoder, small):
    published = PublishedUNet3D(small=small)
    network = build_network(encoder, frames=32)
    expected = {ours(name): tuple(t.shape) for name, t in published.state_dict().items()}
    assert {name: tuple(t.shape) for name, t in network.state_dict().items()} == expected
    count = sum(p.numel() for p in network.parameters())
    assert count == sum(p.numel() for p in published.parameters())
    if encoder == "3d_unet":
        assert count == 18_832_525  # the count of the published UNet3D


def test_earlier_top_is_kept_under_its_own_name():
    earlier = build_network("3d_unet_head", frames=32)
    assert sum(p.numel() for p in earlier.parameters()) == 18_852_913
    assert isinstance(earlier.head, nn.Conv3d) and earlier.head.kernel_size == (1, 1, 1)


@pytest.mark.parametrize("small", [False, True])
def test_published_checkpoint_loads_and_predicts_identically(tmp_path, small):
    from unilvseg.tasks.checkpoints import load_task

    torch.manual_seed(0)
    module = PublishedLightningModule(small=small)
    with torch.no_grad():  # not the initial PReLU 0.25s everywhere: every tensor must land in its place
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    path = tmp_path / "epoch=3-step=120.ckpt"
    save_published_checkpoint(module, path)
    task = load_task(path)
    assert task.hparams.encoder == ("3d_unet_small" if small else "3d_unet") and task.hparams.frames == 32
    x = torch.randn(1, 3, 32, 32, 32)  # a 2x2x2 bottleneck: instance norm there is not trivial
    module.eval()
    with torch.no_grad():
        assert torch.equal(task.network(x), module.model(x))


def test_published_ssl_checkpoint_initialises_weak_training_fully(tmp_path):
    from unilvseg.tasks.weak import WeakSegmentationTask

    torch.manual_seed(1)
    module = PublishedLightningModule(small=True, width=4)  # the SSL module: same network, 1 output channel
    path = tmp_path / "ssl.ckpt"
    save_published_checkpoint(module, path)
    weak = WeakSegmentationTask(checkpoint=str(path), encoder="3d_unet_small", width=4, frames=16)
    report = weak.transfer_report
    assert not report.skipped and report.source_task == "published SimLVSeg"
    state = weak.network.state_dict()
    for name, tensor in module.model.state_dict().items():
        assert torch.equal(state[ours(name)], tensor)


def test_pretrained_type_encoder_loads_only_the_encoder(tmp_path):
    from unilvseg.tasks.weak import WeakSegmentationTask

    torch.manual_seed(2)
    module = PublishedLightningModule(small=True, width=4)
    path = tmp_path / "ssl.ckpt"
    save_published_checkpoint(module, path)
    torch.manual_seed(3)
    fresh = build_network("3d_unet_small", width=4, frames=16).state_dict()
    torch.manual_seed(3)
    weak = WeakSegmentationTask(checkpoint=str(path), pretrained_type="encoder", encoder="3d_unet_small", width=4, frames=16)
    state, source = weak.network.state_dict(), module.model.state_dict()
    for name, tensor in source.items():
        expected = tensor if name.startswith("encoder") else fresh[ours(name)]
        assert torch.equal(state[ours(name)], expected), name
    with pytest.raises(UserError, match="--pretrained_type"):
        WeakSegmentationTask(checkpoint=str(path), pretrained_type="decoder", encoder="3d_unet_small", width=4, frames=16)


def test_predict_reads_a_published_checkpoint(tmp_path, tiny_phantom):
    from unilvseg.cli.predict import main as predict_main

    torch.manual_seed(4)
    module = PublishedLightningModule(small=True, width=4)
    path = tmp_path / "published.ckpt"
    save_published_checkpoint(module, path)
    save = tmp_path / "pred"
    argv = ["--checkpoint", path, "--data_path", tiny_phantom, "--save_dir", save, "--frames", "16", "--device", "cpu", "--size", "32", "32"]
    assert predict_main([str(a) for a in argv]) == 0
    masks = sorted((save / "masks").glob("*.npz"))
    assert masks
    import json

    assert json.loads((save / "run.json").read_text())["frames"] == 16


def test_checkpoint_of_the_earlier_top_still_loads(tmp_path):
    from unilvseg.tasks.checkpoints import load_task
    from unilvseg.tasks.weak import WeakSegmentationTask

    earlier = WeakSegmentationTask(encoder="3d_unet_small_head", width=4, frames=16)
    hparams = {**dict(earlier.hparams), "encoder": "3d_unet_small"}  # what such a run recorded
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": earlier.state_dict(), "hyper_parameters": hparams, "unilvseg_task": earlier.task_name}, path)
    task = load_task(path)
    assert task.hparams.encoder == "3d_unet_small_head"
    x = torch.randn(1, 3, 32, 32, 16)
    earlier.eval()
    with torch.no_grad():
        assert torch.equal(task.network(x), earlier.network(x))


def test_ssl_head_into_the_published_top_starts_at_zero_and_learns(tmp_path):
    from unilvseg.tasks.ssl import TemporalMaskingTask
    from unilvseg.tasks.weak import WeakSegmentationTask

    network = dict(encoder="3d_unet_small", width=4, frames=16)
    ssl = TemporalMaskingTask(**network)  # 3 output channels: the head does not fit segmentation
    path = tmp_path / "ssl.ckpt"
    torch.save({"state_dict": ssl.state_dict(), "hyper_parameters": dict(ssl.hparams), "unilvseg_task": ssl.task_name}, path)
    weak = WeakSegmentationTask(checkpoint=str(path), **network)
    head = dict(weak.network.head.named_parameters())
    assert head["conv.unit1.conv.weight"].abs().sum() == 0 and head["residual.weight"].abs().sum() == 0
    assert head["conv.unit0.conv.weight"].abs().sum() > 0  # random: gradients must reach it
    x = torch.randn(2, 3, 32, 32, 16)
    output = weak.network(x)
    assert output.abs().max() == 0
    output.sum().backward()
    assert head["conv.unit1.conv.weight"].grad.abs().sum() > 0 and head["residual.weight"].grad.abs().sum() > 0


def test_published_checkpoint_of_another_network_is_a_clear_error(tmp_path):
    from unilvseg.tasks.checkpoints import load_task

    module = PublishedLightningModule(small=True, width=4)
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("model.encoder3.1.")}
    torch.save({"state_dict": state}, tmp_path / "odd.ckpt")
    with pytest.raises(UserError, match="residual units"):
        load_task(tmp_path / "odd.ckpt")


# -- --augment published -----------------------------------------------------------------------
def test_published_augmentation_draws_from_the_published_ranges():
    from scipy import stats

    from unilvseg.data.published_augment import PublishedAugment

    rng = np.random.default_rng(0)
    draws = [PublishedAugment().draw(rng) for _ in range(20_000)]
    n = len(draws)
    tolerance = 4 * np.sqrt(0.25 / n)  # 4 standard errors of a p = 0.5 share
    jitter = np.array([d.jitter for d in draws])
    clahe = np.array([d.clahe for d in draws])
    assert abs(jitter.mean() - 0.5) < tolerance and abs(clahe.mean() - 0.5) < tolerance
    assert abs((jitter & clahe).mean() - 0.25) < tolerance  # independent steps
    jittered = [d for d in draws if d.jitter]
    for name in ("brightness", "contrast", "saturation"):
        values = np.array([getattr(d, name) for d in jittered])
        assert 0.8 <= values.min() and values.max() <= 1.2
        assert stats.kstest(values, stats.uniform(0.8, 0.4).cdf).pvalue > 1e-3, name
        assert all(getattr(d, name) == 1.0 for d in draws if not d.jitter)
    hue = np.array([d.hue for d in jittered])
    assert stats.kstest(hue, stats.uniform(-0.2, 0.4).cdf).pvalue > 1e-3
    orders = {d.order for d in jittered}
    assert len(orders) == 24  # every order of the four colour steps occurs
    limits = np.array([d.clip_limit for d in draws if d.clahe])
    assert stats.kstest(limits, stats.uniform(1, 3).cdf).pvalue > 1e-3
    angles = np.array([d.angle_degrees for d in draws])
    assert stats.kstest(angles, stats.uniform(-20, 40).cdf).pvalue > 1e-3
    shifts = np.array([d.shift for d in draws])
    values, counts = np.unique(shifts, return_counts=True)
    assert values.tolist() == list(range(-6, 7))  # pad to 124 + crop 112: +-6, not +-12
    for axis in (0, 1):
        _, counts = np.unique(shifts[:, axis], return_counts=True)
        assert stats.chisquare(counts).pvalue > 1e-3


def _test_frames():
    frames = np.full((4, 112, 112, 3), 90, np.uint8)
    frames[:, 40:60, 30:50] = 200
    frames[1] = 30
    return frames


def test_published_pad_and_crop_moves_content_by_the_drawn_shift():
    from unilvseg.data.augment import ClipAugment
    from unilvseg.data.published_augment import PublishedTransform

    frames = _test_frames()
    masks = (frames[:, None, :, :, 0] == 200).astype(np.uint8)
    transform = PublishedTransform(shift=(3, -2))
    clip, warped = ClipAugment._clip_from_frames(frames, masks, transform)
    expected = np.zeros_like(frames)
    expected[:, 0:110, 3:112] = frames[:, 2:112, 0:109]  # content moves right 3, up 2; black fill
    assert np.array_equal((clip.permute(3, 1, 2, 0).numpy() * 255).round().astype(np.uint8), expected)
    assert np.array_equal(warped.permute(3, 0, 1, 2).numpy()[:, 0], (expected[..., 0] == 200).astype(np.uint8))


def test_published_colour_steps_match_their_definitions_and_come_before_the_warp():
    from unilvseg.data.augment import ClipAugment
    from unilvseg.data.published_augment import PublishedAugment, PublishedTransform

    frames = _test_frames()
    augment = PublishedAugment()
    # Contrast alone: each frame blends with its own mean gray level, truncated to uint8.
    contrast = augment.colour(frames, PublishedTransform(jitter=True, contrast=1.2))
    for t in range(len(frames)):
        mean = frames[t, ..., 0].astype(np.float64).mean()
        assert np.array_equal(contrast[t], np.clip(frames[t] * 1.2 + mean * (1 - 1.2), 0, 255).astype(np.uint8))
    # Brightness then contrast differs from contrast then brightness (the order is drawn).
    first = augment.colour(frames, PublishedTransform(jitter=True, brightness=1.2, contrast=0.8, order=(0, 1, 2, 3)))
    second = augment.colour(frames, PublishedTransform(jitter=True, brightness=1.2, contrast=0.8, order=(1, 0, 2, 3)))
    assert not np.array_equal(first, second)
    # Gray frames: saturation and hue change nothing.
    assert np.array_equal(augment.colour(frames, PublishedTransform(jitter=True, saturation=0.8, hue=0.15)), frames)
    # A rotated, brightened clip keeps a black border: colour was applied before the warp.
    rng = np.random.default_rng(3)
    transform = PublishedTransform(jitter=True, brightness=1.2, angle_degrees=15.0, shift=(6, 6))
    clip, _ = ClipAugment._clip_from_frames(augment.colour(frames, transform), None, transform)
    assert (clip[:, :5, :5, :] == 0).all() and (clip[:, 60, 60, 0] > 0).all()
    # CLAHE changes the frame but keeps it gray.
    equalised = augment.colour(frames, PublishedTransform(clahe=True, clip_limit=3.0))
    assert not np.array_equal(equalised, frames)
    assert np.array_equal(equalised[..., 0], equalised[..., 1])
    clip, _ = augment.clip_from_frames(frames, None, rng)
    assert clip.shape == (3, 112, 112, 4) and 0 <= float(clip.min()) and float(clip.max()) <= 1


def test_augment_flag_accepts_published(tiny_phantom, tmp_path):
    from unilvseg.data.published_augment import PublishedAugment
    from unilvseg.data.dataset import EchoNetDataModule

    module = EchoNetDataModule(tiny_phantom, scheme="weak", frames=16, augment="published", cache_dir=None)
    assert isinstance(module.augment, PublishedAugment)
    batch = next(iter(module.train_dataloader()))
    assert batch["video"].shape[-1] == 16
    with pytest.raises(UserError, match="--augment"):
        EchoNetDataModule(tiny_phantom, scheme="weak", augment="strong")


# -- SSL options and flags ---------------------------------------------------------------------
MEAN, STD = [0.12741163, 0.1279413, 0.12912785], [0.19557191, 0.19562256, 0.1965878]


def test_ssl_blank_raw_fills_hidden_frames_with_black_raw_pixels():
    from unilvseg.tasks.ssl import TemporalMaskingTask, blank_frames, choose_masked_frames

    task = TemporalMaskingTask(blank="raw", mean=MEAN, std=STD, encoder="3d_unet_tiny", frames=16)
    video = torch.rand(2, 3, 8, 8, 16)
    hidden = choose_masked_frames(2, 16, 10, torch.Generator().manual_seed(0))
    blanked = blank_frames(video, hidden, task.blank_fill)
    raw_black = (torch.zeros(3) - torch.tensor(MEAN)) / torch.tensor(STD)  # a 0-valued raw pixel, normalised
    frames = blanked.permute(0, 4, 1, 2, 3)  # (B, T, C, H, W)
    assert torch.allclose(frames[hidden], raw_black[None, :, None, None].expand_as(frames[hidden]))
    assert torch.equal(frames[~hidden], video.permute(0, 4, 1, 2, 3)[~hidden])
    assert abs(float(raw_black.mean()) + 0.65) < 0.01  # the "about -0.65"
    normalised = TemporalMaskingTask(encoder="3d_unet_tiny", frames=16)
    assert (blank_frames(video, hidden, normalised.blank_fill).permute(0, 4, 1, 2, 3)[hidden] == 0).all()
    with pytest.raises(UserError, match="--ssl_blank"):
        TemporalMaskingTask(blank="grey", encoder="3d_unet_tiny", frames=16)


def test_random_reverse_plays_half_of_the_clips_backwards():
    from unilvseg.tasks.ssl import reverse_clips

    video = torch.arange(16, dtype=torch.float32).expand(4000, 1, 1, 1, 16)
    out = reverse_clips(video, torch.Generator().manual_seed(0))
    backwards = (out[:, 0, 0, 0, 0] == 15)
    assert torch.equal(out[backwards], video[backwards].flip(-1)) and torch.equal(out[~backwards], video[~backwards])
    assert abs(backwards.float().mean().item() - 0.5) < 4 * (0.25 / 4000) ** 0.5


def _weak_checkpoint(tmp_path):
    from unilvseg.tasks.weak import WeakSegmentationTask

    torch.manual_seed(7)
    weak = WeakSegmentationTask(encoder="3d_unet_tiny", frames=16)
    path = tmp_path / "weak.ckpt"
    torch.save({"state_dict": weak.state_dict(), "hyper_parameters": dict(weak.hparams), "unilvseg_task": weak.task_name}, path)
    return weak, path


def test_train_ssl_checkpoint_initialises_from_a_weak_run(tmp_path, tiny_phantom):
    from unilvseg.cli.train import build_ssl, ssl_parser

    weak, path = _weak_checkpoint(tmp_path)
    args = ssl_parser().parse_args(["--data_path", str(tiny_phantom), "--encoder", "3d_unet_tiny", "--frames", "16", "--checkpoint", str(path)])
    task, _ = build_ssl(args)
    source = weak.network.state_dict()
    loaded = task.transfer_report.loaded
    assert len(loaded) == len(source) - len([n for n in source if n.startswith("head.")])
    assert all(torch.equal(task.network.state_dict()[n], source[n]) for n in loaded)
    resumed, _ = build_ssl(ssl_parser().parse_args(["--data_path", str(tiny_phantom), "--encoder", "3d_unet_tiny", "--frames", "16",
                                                     "--checkpoint", str(path), "--resume", str(path)]))
    assert not hasattr(resumed, "transfer_report")  # --resume restores the run's own state instead


def test_pct_train_is_a_seeded_fraction_with_the_train_videos_rule(tiny_phantom):
    from unilvseg.data.dataset import EchoNetDataModule

    def train_names(**subset):
        module = EchoNetDataModule(tiny_phantom, scheme="weak", frames=16, cache_dir=None, subset_seed=3, **subset)
        return [r.file_name for r in module.records("train")]

    everything = train_names()
    fraction = 0.5
    expected = int(len(everything) * fraction + 0.5)  # the published pct_train count
    chosen = train_names(train_fraction=fraction)
    assert len(chosen) == expected and set(chosen) < set(everything)
    assert chosen == train_names(train_videos=expected)  # same subset rule as --train_videos
    assert len(train_names(train_fraction=0.01)) == 1


def test_weak_flags_are_checked(tmp_path, tiny_phantom, capsys):
    from unilvseg.cli.train import main_weak

    base = ["--data_path", str(tiny_phantom), "--encoder", "3d_unet_tiny", "--frames", "16", "--run_dir", str(tmp_path / "r")]
    _, path = _weak_checkpoint(tmp_path)
    for extra, message in ((["--pct_train", "0.5", "--train_videos", "2"], "--pct_train"), (["--pct_train", "1.5"], "--pct_train"),
                           (["--checkpoint", str(path), "--pretrained_type", "decoder"], "--pretrained_type")):
        assert main_weak(base + extra) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# -- presets shipped in the package ------------------------------------------------------------
PRESETS = {"ssl_3d": "ssl", "weak_3d": "weak", "ssl_si": "ssl", "weak_si": "weak"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parses_to_its_file_from_any_folder(name, tmp_path, monkeypatch):
    import yaml

    from unilvseg.cli.common import PACKAGED_CONFIGS, resolve_config_paths
    from unilvseg.cli.train import ssl_parser, weak_parser

    monkeypatch.chdir(tmp_path)  # no configs/ folder here: the packaged preset must be found
    parser = ssl_parser() if PRESETS[name] == "ssl" else weak_parser()
    args = parser.parse_args(resolve_config_paths(["--config", f"configs/simlvseg/{name}.yaml"]))
    written = yaml.safe_load((PACKAGED_CONFIGS / "simlvseg" / f"{name}.yaml").read_text())
    for key, value in written.items():
        assert args[key] == value, key
    assert args.batch_size == 16 and args.val_check_interval == 0.25 and args.amsgrad is True
    assert args.epochs == (100 if name.startswith("ssl") else 70)
    # A user's own file of the same relative path wins over the preset.
    (tmp_path / "configs" / "simlvseg").mkdir(parents=True)
    (tmp_path / "configs" / "simlvseg" / f"{name}.yaml").write_text("epochs: 2\n")
    assert parser.parse_args(resolve_config_paths(["--config", f"configs/simlvseg/{name}.yaml"])).epochs == 2


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_starts_a_run(name, tmp_path, tiny_phantom):
    import yaml

    from unilvseg.cli.train import main_ssl, main_weak

    network = ["--encoder", "si_tiny"] if name.endswith("_si") else ["--encoder", "3d_unet_tiny"]
    tiny = ["--data_path", str(tiny_phantom), *network, "--frames", "16", "--batch_size", "2", "--num_workers", "0",
            "--epochs", "1", "--limit_train_batches", "1", "--limit_val_batches", "1", "--val_check_interval", "1.0",
            "--run_dir", str(tmp_path / "run"), "--progress_bar", "false", "--cache_dir", "null"]
    main = main_ssl if PRESETS[name] == "ssl" else main_weak
    assert main(["--config", f"configs/simlvseg/{name}.yaml", *tiny]) == 0
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["augment"] == "published" and config["amsgrad"] is True and config["seed"] == 42
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    optimiser = checkpoint["optimizer_states"][0]["param_groups"][0]
    assert optimiser["lr"] == pytest.approx(3e-4) and optimiser["amsgrad"] is True
    if PRESETS[name] == "ssl":
        assert tuple(optimiser["betas"]) == (0.9, 0.95) and optimiser["weight_decay"] == pytest.approx(1e-3)
        assert checkpoint["lr_schedulers"] == [] and checkpoint["hyper_parameters"]["blank"] == "raw"
    else:
        assert optimiser["weight_decay"] == pytest.approx(1e-5)
        assert checkpoint["lr_schedulers"][0]["milestones"] == {45: 1, 60: 1}


def test_published_colour_on_one_channel_frames_equals_three_gray_channels():
    """The grey frame cache hands one-channel frames to the augmentation; every colour step must
    give the first channel of what it gives the same frames stored as three gray channels (to one
    gray level: the RGB weights 0.299 + 0.587 + 0.114 sum to 1 only up to float rounding)."""
    from unilvseg.data.published_augment import PublishedAugment, PublishedTransform

    frames = _test_frames()
    augment = PublishedAugment()
    for transform in (
        PublishedTransform(jitter=True, brightness=1.15, contrast=0.85, saturation=1.1, hue=0.1, order=(1, 0, 3, 2)),
        PublishedTransform(jitter=True, contrast=1.2),
        PublishedTransform(clahe=True, clip_limit=2.5),
    ):
        three = augment.colour(frames, transform)
        one = augment.colour(np.ascontiguousarray(frames[..., :1]), transform)
        assert one.shape == frames.shape[:3] + (1,)
        assert np.abs(one[..., 0].astype(int) - three[..., 0]).max() <= 1
