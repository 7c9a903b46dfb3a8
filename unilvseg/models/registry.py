"""Name -> network registry, size checks and head lookup for every network the CLI can build.

All networks map ``(B, in_channels, H, W, T)`` float to ``(B, out_channels, H, W, T)`` logits and
carry ``.head`` (the output block, whose tensors depend on ``out_channels``) and ``.encoder_name``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from unilvseg.errors import UserError
from unilvseg.models.super_image import SuperImageNet, grid_size
from unilvseg.models.unet3d import UNET3D_ENCODER_UNITS, MonaiUNet3D, UNet3D, divisibility_problem

UNET3D = "unet3d"
MONAI_UNET = "monai_unet"
SUPER_IMAGE = "super_image"
STAGES_3D = 5  # channels base * (1, 2, 4, 8, 16); four 2x poolings


@dataclass(frozen=True)
class NetworkSpec:
    description: str
    family: str
    width: int = 16  # base channels (3D) or last decoder channels (super-image)
    encoder_units: tuple[int, ...] = UNET3D_ENCODER_UNITS
    smp_encoder: str | None = None
    depth: int = 5
    top: str = "residual"  # 3D U-Net output block (unilvseg.models.unet3d.TOPS)  # super-image encoder depth: the mosaic must divide by 2**depth
    temporal_pools: int | None = None  # 3D U-Net pools that also halve time (None: all four)

    @property
    def size_factor(self) -> int:
        return 2 ** (STAGES_3D - 1) if self.family != SUPER_IMAGE else 2**self.depth

    @property
    def frames_factor(self) -> int:
        """What --frames must be divisible by (3D networks; super-image ones need a square)."""
        if self.family == UNET3D and self.temporal_pools is not None:
            return 2**self.temporal_pools
        return self.size_factor


def _super_image(encoder: str, note: str = "") -> NetworkSpec:
    return NetworkSpec(f"super-image 2D U-Net, smp encoder {encoder}{note}", SUPER_IMAGE, smp_encoder=encoder)


SPECS: dict[str, NetworkSpec] = {
    "3d_unet": NetworkSpec(
        "published SimLVSeg UNet3D: MONAI residual units, channels 16-256, 2/3/4/6/3 units per stage, "
        "last decoder unit 32->1 (18,832,525 params)",
        UNET3D,
    ),
    "3d_unet_small": NetworkSpec(
        "published SimLVSeg UNet3DSmall: 2 residual units per stage (~11.3 M params)", UNET3D, encoder_units=(2,) * 5
    ),
    # Not a published network: it keeps the 1x1x1 head, so label-free defaults and their measured
    # figures (README) are unchanged.
    "3d_unet_tiny": NetworkSpec(
        "3D U-Net width 4, 1 residual unit per stage, 1x1x1 head (tests/CI)", UNET3D, width=4, encoder_units=(1,) * 5, top="conv_head"
    ),
    # Temporally shallow: only H and W are pooled, so every level keeps every frame and a frame's
    # mask is not squeezed through a one-frame bottleneck (the label-free default; see
    # docs/real-echo.md for the diagnosis that chose it). --frames needs no divisibility.
    "3d_unet_tiny_spatial": NetworkSpec(
        "3d_unet_tiny pooling only height and width (every level keeps every frame)", UNET3D, width=4,
        encoder_units=(1,) * 5, top="conv_head", temporal_pools=0,
    ),
    # The earlier unilvseg variants (last decoder unit 32->16, then a 1x1x1 head): kept so that
    # checkpoints trained before 3d_unet became the published network still load and predict.
    "3d_unet_head": NetworkSpec(
        "3d_unet with the earlier unilvseg top: decoder unit 32->16 + 1x1x1 head (18,852,913 params)", UNET3D, top="conv_head"
    ),
    "3d_unet_small_head": NetworkSpec(
        "3d_unet_small with the earlier unilvseg top (32->16 + 1x1x1 head)", UNET3D, encoder_units=(2,) * 5, top="conv_head"
    ),
    "monai_3d_unet": NetworkSpec("monai.networks.nets.UNet, spatial_dims 3, channels 16-256, 2 residual units", MONAI_UNET),
    "si_tiny": NetworkSpec(
        "tiny super-image U-Net: timm resnet10t encoder depth 3, decoder 32/16/8 (tests/CI)",
        SUPER_IMAGE,
        width=8,
        smp_encoder="tu-resnet10t",
        depth=3,
    ),
    "resnet18": _super_image("resnet18"),
    "resnet34": _super_image("resnet34"),
    "resnet50": _super_image("resnet50"),
    "efficientnet-b0": _super_image("efficientnet-b0"),
    "mobilenet_v2": _super_image("mobilenet_v2"),
}

#: Registered network names and what they are; any other smp encoder name also works (super-image).
NETWORKS: dict[str, str] = {name: spec.description for name, spec in SPECS.items()}


def list_networks() -> list[str]:
    return list(NETWORKS)


def _is_smp_encoder(name: str) -> bool:
    import segmentation_models_pytorch as smp

    if name in smp.encoders.encoders:
        return True
    if name.startswith("tu-"):
        import timm

        return bool(timm.list_models(name[3:]))
    return False


def network_spec(encoder: str) -> NetworkSpec:
    """The spec for a registered name or any segmentation-models-pytorch encoder; UserError otherwise."""
    if encoder in SPECS:
        return SPECS[encoder]
    if isinstance(encoder, str) and _is_smp_encoder(encoder):
        return _super_image(encoder)
    raise UserError(
        f"--encoder {encoder!r} is not a known network; valid names: {', '.join(SPECS)}, "
        "or any segmentation-models-pytorch encoder (e.g. resnet101, efficientnet-b3, tu-<timm model>) "
        "for a super-image network"
    )


def is_super_image(encoder: str) -> bool:
    return network_spec(encoder).family == SUPER_IMAGE


def _frames_problem(encoder: str, spec: NetworkSpec, frames: int) -> str | None:
    if spec.family == SUPER_IMAGE:
        if grid_size(frames) is None:
            below = max(1, int(max(frames, 1) ** 0.5)) ** 2
            above = (int(max(frames, 1) ** 0.5) + 1) ** 2
            return (
                f"--frames {frames} is not a perfect square; super-image encoder {encoder} tiles the clip "
                f"into a square grid (e.g. --frames {below} or {above})"
            )
        return None
    return divisibility_problem(encoder, frames, spec.frames_factor, "--frames")


def check_input_shape(encoder: str, height: int, width: int, frames: int) -> None:
    """Raise UserError (naming --frames / the image size) when ``encoder`` cannot take such clips."""
    spec = network_spec(encoder)
    problems = [_frames_problem(encoder, spec, frames)]
    if spec.family == SUPER_IMAGE:
        grid = grid_size(frames)
        if grid is not None and ((height * grid) % spec.size_factor or (width * grid) % spec.size_factor or height < 1 or width < 1):
            problems.append(
                f"image size {height}x{width} tiled {grid}x{grid} (--frames {frames}) gives "
                f"{height * grid}x{width * grid}, not divisible by {spec.size_factor} "
                f"(2**depth of encoder {encoder}); resize the videos or change --frames"
            )
    else:
        for size, label in ((height, "image height"), (width, "image width")):
            problems.append(divisibility_problem(encoder, size, spec.size_factor, label))
    problems = [p for p in problems if p]
    if problems:
        raise UserError("; ".join(problems))


def build_network(
    encoder: str,
    in_channels: int = 3,
    out_channels: int = 1,
    frames: int = 32,
    width: int | None = None,
    encoder_weights: str | None = None,
) -> nn.Module:
    """Build ``encoder`` (a registry name or an smp encoder) for clips of ``frames`` frames.

    ``width`` overrides the base channel count (3D: stage widths width*1..16; super-image: the
    last decoder width, doubling towards the bottleneck). ``encoder_weights`` is a local weights
    file for a super-image encoder; nothing is downloaded unless a named weight set is given.
    """
    spec = network_spec(encoder)
    for value, flag in ((in_channels, "in_channels"), (out_channels, "out_channels")):
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{flag} must be a positive integer, got {value!r}")
    if width is not None and (not isinstance(width, int) or width < 1):
        raise UserError(f"--width must be a positive integer, got {width!r}")
    problem = _frames_problem(encoder, spec, frames)
    if problem:
        raise UserError(problem)
    base = width or spec.width
    if spec.family == SUPER_IMAGE:
        decoder_channels = tuple(base * 2 ** (spec.depth - 1 - i) for i in range(spec.depth))
        network = SuperImageNet(
            spec.smp_encoder,
            in_channels=in_channels,
            out_channels=out_channels,
            frames=frames,
            depth=spec.depth,
            decoder_channels=decoder_channels,
            encoder_weights=encoder_weights,
            encoder_name=encoder,
        )
    else:
        if encoder_weights is not None:
            raise UserError(
                f"--encoder_weights only applies to super-image encoders; {encoder} is a 3D network "
                "(initialise it from an SSL checkpoint with --checkpoint instead)"
            )
        channels = tuple(base * 2**i for i in range(STAGES_3D))
        if spec.family == UNET3D:
            network = UNet3D(
                in_channels, out_channels, channels, spec.encoder_units, encoder_name=encoder, top=spec.top,
                temporal_pools=spec.temporal_pools,
            )
        else:
            network = MonaiUNet3D(in_channels, out_channels, channels, encoder_name=encoder)
    network.encoder_name = encoder
    return network


def head_parameter_names(network: nn.Module) -> list[str]:
    """Full state-dict names of the tensors in ``network.head`` (they depend on out_channels)."""
    head = network.head
    prefix = next(name for name, module in network.named_modules() if module is head)
    return [f"{prefix}.{name}" for name in head.state_dict()]


#: Networks whose checkpoints from before the published top (unilvseg.models.unet3d.TOPS) carry
#: ``head.weight`` as a 1x1x1 conv: they are rebuilt as these ``*_head`` variants.
EARLIER_TOP = {"3d_unet": "3d_unet_head", "3d_unet_small": "3d_unet_small_head"}


def encoder_of_state(encoder: str, state: dict) -> str:
    """``encoder``, or its ``*_head`` variant when ``state`` was saved by the earlier 3D U-Net top."""
    if encoder in EARLIER_TOP and "head.weight" in state and getattr(state["head.weight"], "ndim", 0) == 5:
        return EARLIER_TOP[encoder]
    return encoder
