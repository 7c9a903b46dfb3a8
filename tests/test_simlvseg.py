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

    earlier = WeakSegmentationTask(encoder="3d_unet_tiny_head", frames=16)
    hparams = {**dict(earlier.hparams), "encoder": "3d_unet_tiny"}  # what such a run recorded
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": earlier.state_dict(), "hyper_parameters": hparams, "unilvseg_task": earlier.task_name}, path)
    task = load_task(path)
    assert task.hparams.encoder == "3d_unet_tiny_head"
    x = torch.randn(1, 3, 32, 32, 16)
    earlier.eval()
    with torch.no_grad():
        assert torch.equal(task.network(x), earlier.network(x))


def test_published_checkpoint_of_another_network_is_a_clear_error(tmp_path):
    from unilvseg.tasks.checkpoints import load_task

    module = PublishedLightningModule(small=True, width=4)
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("model.encoder3.1.")}
    torch.save({"state_dict": state}, tmp_path / "odd.ckpt")
    with pytest.raises(UserError, match="residual units"):
        load_task(tmp_path / "odd.ckpt")
