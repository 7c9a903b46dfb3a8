"""Networks for clip segmentation: 3D U-Nets and super-image 2D U-Nets, all (B, C, H, W, T)."""

from unilvseg.models.registry import (
    NETWORKS,
    NetworkSpec,
    build_network,
    check_input_shape,
    head_parameter_names,
    is_super_image,
    list_networks,
    network_spec,
)
from unilvseg.models.super_image import EncoderWeightsReport, SuperImageNet, load_encoder_weights, tile_clip, untile_clip
from unilvseg.models.unet3d import MonaiUNet3D, UNet3D, fast_cpu_enabled

__all__ = [
    "NETWORKS",
    "EncoderWeightsReport",
    "MonaiUNet3D",
    "NetworkSpec",
    "SuperImageNet",
    "UNet3D",
    "build_network",
    "check_input_shape",
    "fast_cpu_enabled",
    "head_parameter_names",
    "is_super_image",
    "list_networks",
    "load_encoder_weights",
    "network_spec",
    "tile_clip",
    "untile_clip",
]
