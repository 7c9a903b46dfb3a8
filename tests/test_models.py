"""Networks: shapes for every registry entry, sizes, tiling, head lookup, encoder weights files."""

from __future__ import annotations


import pytest
import torch

from unilvseg.errors import UserError
from unilvseg.models import (
    NETWORKS,
    MonaiUNet3D,
    SuperImageNet,
    UNet3D,
    build_network,
    check_input_shape,
    head_parameter_names,
    is_super_image,
    list_networks,
    tile_clip,
    untile_clip,
)
from unilvseg.models.unet3d import FAST_CPU_DEFAULT

FRAMES = 16
SIZE = 32
# Full-width 3D nets are too slow for a unit-test forward pass; run them at width 4.
TEST_WIDTH = {"3d_unet_small": 4, "monai_3d_unet": 4}


def n_parameters(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


@pytest.mark.parametrize("encoder", [name for name in list_networks() if name != "3d_unet"])
def test_every_network_maps_a_clip_to_per_voxel_logits(encoder):
    torch.manual_seed(0)
    network = build_network(encoder, in_channels=3, out_channels=2, frames=FRAMES, width=TEST_WIDTH.get(encoder))
    assert network.encoder_name == encoder
    clip = torch.randn(2, 3, SIZE, SIZE, FRAMES)
    out = network(clip)
    assert out.shape == (2, 2, SIZE, SIZE, FRAMES)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # In eval mode the second clip of the batch must not leak into the first (no batch mixing).
    network.eval()
    assert torch.allclose(network(clip)[:1], network(clip[:1]), atol=1e-4, rtol=1e-4)


def test_full_3d_unet_has_the_published_size_and_stage_layout():
    network = build_network("3d_unet", frames=32)
    count = n_parameters(network)
    print(f"3d_unet parameters: {count:,}")
    assert abs(count - 18.8e6) / 18.8e6 < 0.05
    assert [len(stage) for stage in network.encoder] == [2, 3, 4, 6, 3]
    assert [stage[-1].conv.unit1.conv.out_channels for stage in network.encoder] == [16, 32, 64, 128, 256]
    # The published top: one residual unit 32 -> 1 whose last conv has no norm/activation.
    assert network.head.conv.unit0.conv.in_channels == 32 and network.head.conv.unit1.conv.out_channels == 1
    assert not hasattr(network.head.conv.unit1, "adn")
    small = build_network("3d_unet_small")
    assert [len(stage) for stage in small.encoder] == [2] * 5
    assert n_parameters(small) < count


def test_width_sets_the_base_channels():
    network = build_network("3d_unet", width=4, frames=16)
    assert [stage[0].conv.unit0.conv.out_channels for stage in network.encoder] == [4, 8, 16, 32, 64]
    tiny = build_network("3d_unet_tiny", frames=16)
    assert [len(stage) for stage in tiny.encoder] == [1] * 5
    assert tiny.encoder[-1][0].conv.unit0.conv.out_channels == 64
    si_narrow, si_wide = build_network("si_tiny", frames=16, width=4), build_network("si_tiny", frames=16)
    assert n_parameters(si_narrow) < n_parameters(si_wide)
    with pytest.raises(UserError, match="--width"):
        build_network("3d_unet_tiny", width=0)


@pytest.mark.parametrize("encoder", ["3d_unet_tiny", "si_tiny"])
def test_head_holds_exactly_the_tensors_that_depend_on_out_channels(encoder):
    torch.manual_seed(0)
    one = build_network(encoder, out_channels=1, frames=FRAMES, width=TEST_WIDTH.get(encoder))
    three = build_network(encoder, out_channels=3, frames=FRAMES, width=TEST_WIDTH.get(encoder))
    differing = {name for name, t in one.state_dict().items() if three.state_dict()[name].shape != t.shape}
    names = head_parameter_names(one)
    assert differing and differing <= set(names)
    assert all(name.startswith("head.") for name in names)
    # The head really produces the output: zeroing it zeroes the logits.
    with torch.no_grad():
        for parameter in one.head.parameters():
            parameter.zero_()
    assert one(torch.randn(1, 3, SIZE, SIZE, FRAMES)).abs().max() == 0


def test_monai_split_is_exactly_monai_unet():
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    ours = build_network("monai_3d_unet", frames=FRAMES, width=4)
    assert isinstance(ours, MonaiUNet3D)
    reference = UNet(3, 3, 1, (4, 8, 16, 32, 64), (2, 2, 2, 2), num_res_units=2, norm="INSTANCE")
    n_body = len(ours.body)
    renamed = {}
    for name, tensor in ours.state_dict().items():
        part, rest = name.split(".", 1)
        index, tail = rest.split(".", 1) if part == "body" else (str(n_body), rest)
        renamed[f"model.{index}.{tail}"] = tensor
    reference.load_state_dict(renamed)  # strict: every tensor maps one-to-one
    clip = torch.randn(1, 3, SIZE, SIZE, FRAMES)
    assert torch.equal(ours(clip), reference(clip))


def test_tiling_places_frames_row_major_and_round_trips_exactly():
    grid, frames = 3, 9
    clip = torch.randn(2, 4, 5, 7, frames)
    mosaic = tile_clip(clip, grid)
    assert mosaic.shape == (2, 4, 15, 21)
    for t in range(frames):
        row, col = divmod(t, grid)
        assert torch.equal(mosaic[:, :, row * 5 : (row + 1) * 5, col * 7 : (col + 1) * 7], clip[..., t])
    assert torch.equal(untile_clip(mosaic, grid, frames), clip)
    image = torch.randn(1, 2, 12, 18)
    assert torch.equal(tile_clip(untile_clip(image, grid, frames), grid), image)
    with pytest.raises(ValueError):
        tile_clip(torch.randn(1, 1, 4, 4, 8), 3)


def test_super_image_network_segments_each_tile_as_its_frame():
    torch.manual_seed(0)
    network = build_network("si_tiny", frames=FRAMES).eval()
    assert isinstance(network, SuperImageNet) and network.grid == 4
    clip = torch.randn(1, 3, SIZE, SIZE, FRAMES)
    expected = untile_clip(network.head(network.decoder(network.encoder(tile_clip(clip, 4)))), 4, FRAMES)
    assert torch.equal(network(clip), expected)


@pytest.mark.parametrize(
    "encoder, height, width, frames, flag",
    [
        ("3d_unet", 112, 112, 30, "--frames 30 is not divisible by 16"),
        ("3d_unet_tiny", 100, 112, 32, "image height 100"),
        ("monai_3d_unet", 112, 120, 32, "image width 120"),
        ("resnet18", 112, 112, 32, "--frames 32 is not a perfect square"),
        ("resnet18", 20, 20, 16, "image size 20x20"),
        ("si_tiny", 31, 31, 16, "image size 31x31"),
    ],
)
def test_bad_sizes_name_the_flag(encoder, height, width, frames, flag):
    with pytest.raises(UserError, match=flag):
        check_input_shape(encoder, height, width, frames)


def test_good_sizes_pass_and_build_rejects_bad_frames():
    check_input_shape("3d_unet", 112, 112, 32)
    check_input_shape("resnet50", 112, 112, 16)
    check_input_shape("si_tiny", 112, 112, 25)
    with pytest.raises(UserError, match="--frames 30"):
        build_network("3d_unet_tiny", frames=30)
    with pytest.raises(UserError, match="--frames 20"):
        build_network("si_tiny", frames=20)
    network = build_network("3d_unet_tiny", frames=16)
    with pytest.raises(UserError, match="image width 24"):
        network(torch.randn(1, 3, 32, 24, 16))
    with pytest.raises(UserError, match="--frames 16"):
        build_network("si_tiny", frames=16)(torch.randn(1, 3, 32, 32, 9))


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(UserError) as error:
        build_network("3d_unte")
    message = str(error.value)
    assert "3d_unte" in message and all(name in message for name in NETWORKS)
    with pytest.raises(UserError):
        is_super_image("not-an-encoder")


def test_super_image_accepts_any_smp_encoder_name():
    assert is_super_image("resnet101") and is_super_image("si_tiny")
    assert not is_super_image("3d_unet") and not is_super_image("monai_3d_unet")


def test_encoder_weights_file_is_loaded_and_reported(tmp_path):
    torch.manual_seed(1)
    source = build_network("si_tiny", frames=FRAMES)
    path = tmp_path / "encoder.pth"
    torch.save(source.encoder.state_dict(), path)
    torch.manual_seed(2)
    loaded = build_network("si_tiny", frames=FRAMES, encoder_weights=str(path))
    for name, tensor in source.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[name], tensor), name
    report = loaded.encoder_weights_report
    assert report.loaded == len(source.encoder.state_dict()) and not report.missing and not report.unexpected
    # A whole-network state dict works too (prefixed names); the decoder tensors are "unexpected".
    torch.save(source.state_dict(), tmp_path / "whole.pt")
    whole = build_network("si_tiny", frames=FRAMES, encoder_weights=str(tmp_path / "whole.pt"))
    assert whole.encoder_weights_report.loaded == report.loaded
    assert len(whole.encoder_weights_report.unexpected) == len(source.state_dict()) - report.loaded
    # A partial file loads what it has and counts what it lacks.
    partial = dict(list(source.encoder.state_dict().items())[:5])
    torch.save(partial, tmp_path / "partial.pt")
    some = build_network("si_tiny", frames=FRAMES, encoder_weights=str(tmp_path / "partial.pt"))
    assert some.encoder_weights_report.loaded == 5
    # (BatchNorm's num_batches_tracked is defaulted by PyTorch, never reported missing.)
    expected_missing = {k for k in source.encoder.state_dict() if k not in partial and not k.endswith("num_batches_tracked")}
    assert set(some.encoder_weights_report.missing) == expected_missing


def test_bad_encoder_weights_raise_user_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(UserError, match="nope.pth"):
        build_network("si_tiny", frames=FRAMES, encoder_weights=str(missing))
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="none of its 1 tensors"):
        build_network("si_tiny", frames=FRAMES, encoder_weights=str(tmp_path / "foreign.pt"))
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pt"):
        build_network("si_tiny", frames=FRAMES, encoder_weights=str(tmp_path / "garbage.pt"))
    with pytest.raises(UserError, match="super-image"):
        build_network("3d_unet_tiny", frames=FRAMES, encoder_weights=str(tmp_path / "garbage.pt"))


@pytest.mark.parametrize("encoder", ["3d_unet_tiny", "monai_3d_unet", "si_tiny"])
def test_build_is_deterministic_under_a_seed(encoder):
    def build(seed):
        torch.manual_seed(seed)
        return build_network(encoder, frames=FRAMES, width=4 if encoder == "monai_3d_unet" else None).state_dict()

    first, second, other = build(0), build(0), build(1)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_fast_cpu_path_is_bit_identical_and_switchable(monkeypatch):
    torch.manual_seed(0)
    network = build_network("3d_unet_tiny", frames=FRAMES)
    assert isinstance(network, UNet3D)
    clip = torch.randn(2, 3, SIZE, SIZE, FRAMES)
    target = torch.rand(2, 1, SIZE, SIZE, FRAMES)

    def output_and_grads(fast):
        network.fast_cpu = fast
        network.zero_grad()
        out = network(clip)
        torch.nn.functional.binary_cross_entropy_with_logits(out, target).backward()
        return out.detach(), [p.grad.clone() for p in network.parameters()]

    ref_out, ref_grads = output_and_grads(False)
    fast_out, fast_grads = output_and_grads(True)
    assert torch.equal(fast_out, ref_out)
    assert all(torch.equal(a, b) for a, b in zip(fast_grads, ref_grads))
    # The automatic choice: CPU float32 only, switched by UNILVSEG_FAST_CPU.
    network.fast_cpu = None
    monkeypatch.setenv("UNILVSEG_FAST_CPU", "0")
    assert not network.use_fast_cpu(clip)
    monkeypatch.setenv("UNILVSEG_FAST_CPU", "1")
    assert network.use_fast_cpu(clip)
    assert not network.use_fast_cpu(clip.double())
    monkeypatch.delenv("UNILVSEG_FAST_CPU")
    assert network.use_fast_cpu(clip) == FAST_CPU_DEFAULT


def test_spatial_pools_keep_every_frame_at_every_level_and_free_the_clip_length():
    """3d_unet_tiny halves T at each of its four pools (one frame left at the bottleneck for a
    16-frame clip); 3d_unet_tiny_spatial pools only H and W, so its bottleneck still has a
    feature per frame, and --frames need not divide by 16."""
    depths = {}
    for encoder in ("3d_unet_tiny", "3d_unet_tiny_spatial"):
        network = build_network(encoder, frames=16)
        seen = []
        network.encoder[-1].register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape)))
        assert network(torch.randn(1, 3, SIZE, SIZE, 16)).shape == (1, 1, SIZE, SIZE, 16)
        depths[encoder] = seen[0][-1]
        # Same tensors by name and shape: only the pool and upsampling strides differ.
        assert {k: v.shape for k, v in network.state_dict().items()} == {
            k: v.shape for k, v in build_network("3d_unet_tiny", frames=16).state_dict().items()
        }
    assert depths == {"3d_unet_tiny": 1, "3d_unet_tiny_spatial": 16}
    check_input_shape("3d_unet_tiny_spatial", 64, 64, 20)
    assert build_network("3d_unet_tiny_spatial", frames=20)(torch.randn(1, 3, SIZE, SIZE, 20)).shape[-1] == 20
    with pytest.raises(UserError, match="image height 24"):
        check_input_shape("3d_unet_tiny_spatial", 24, 64, 20)
    with pytest.raises(UserError, match="--frames 20"):
        check_input_shape("3d_unet_tiny", 64, 64, 20)
