"""Reading checkpoints of the published SimLVSeg code (github.com/fadamsyah/SimLVSeg).

Its Lightning modules (``Seg3DModule`` for weak segmentation, ``Seg3DSSLMaskingModule`` for
temporal masking) both hold the network as ``self.model``, a ``UNet3D`` or ``UNet3DSmall`` with
modules ``encoder1..5``, ``upconv5..2``, ``decoder4..1``; their checkpoints are
``{"state_dict": {"model.encoder1.0.conv.unit0.conv.weight": ..., ...}, "epoch": ..., ...}``
without hyperparameters. Both write one output channel (the SSL module reconstructs channel 0).

The same network here is :class:`unilvseg.models.unet3d.UNet3D` with ``top="residual"`` (the
``3d_unet`` / ``3d_unet_small`` registry entries); only module names differ, and
:func:`to_unilvseg_state` renames them.
"""

from __future__ import annotations

import re

import torch

from unilvseg.errors import UserError

PREFIX = "model."
STAGES = 5
# Units per encoder stage of the two published classes.
PUBLISHED_ENCODERS = {(2, 3, 4, 6, 3): "3d_unet", (2, 2, 2, 2, 2): "3d_unet_small"}
PUBLISHED_WIDTH = 16

_ENCODER = re.compile(r"^encoder(\d)\.(.*)$")
_UPCONV = re.compile(r"^upconv(\d)\.(.*)$")
_DECODER = re.compile(r"^decoder(\d)\.(.*)$")


def is_published_state(state: dict) -> bool:
    """Whether a state dict (or a Lightning checkpoint's ``state_dict``) has the published layout."""
    return any(isinstance(key, str) and key.startswith(PREFIX + "encoder1.") for key in state)


def unilvseg_name(published: str) -> str | None:
    """The tensor name here for a published module's tensor name (without ``model.``); None if unknown."""
    if match := _ENCODER.match(published):
        return f"encoder.{int(match[1]) - 1}.{match[2]}"
    if match := _UPCONV.match(published):
        return f"upsamplers.{STAGES - int(match[1])}.{match[2]}"
    if match := _DECODER.match(published):
        level = int(match[1])
        return f"head.{match[2]}" if level == 1 else f"decoder.{STAGES - 1 - level}.0.{match[2]}"
    return None


def to_unilvseg_state(state: dict) -> dict[str, torch.Tensor]:
    """Rename the ``model.*`` tensors of a published state dict to this package's UNet3D names."""
    renamed = {}
    for key, value in state.items():
        if not (isinstance(key, str) and key.startswith(PREFIX) and isinstance(value, torch.Tensor)):
            continue
        name = unilvseg_name(key[len(PREFIX):])
        if name is None:
            raise UserError(f"published SimLVSeg checkpoint: tensor {key!r} is not part of its UNet3D (only 3d_unet/3d_unet_small load)")
        renamed[name] = value
    return renamed


def published_network(state: dict) -> dict:
    """``build_network`` arguments (encoder, width, out_channels) of a published state dict."""
    units = []
    for stage in range(1, STAGES + 1):
        indices = {int(m[1]) for key in state if (m := re.match(rf"^{re.escape(PREFIX)}encoder{stage}\.(\d+)\.", str(key)))}
        units.append(len(indices))
    encoder = PUBLISHED_ENCODERS.get(tuple(units))
    if encoder is None:
        raise UserError(
            f"published SimLVSeg checkpoint: encoder stages hold {units} residual units; only UNet3D "
            f"{list(PUBLISHED_ENCODERS)[0]} (3d_unet) and UNet3DSmall (3d_unet_small) can be read"
        )
    width = int(state[PREFIX + "encoder1.0.conv.unit0.conv.weight"].shape[0])
    out_channels = int(state[PREFIX + "decoder1.residual.weight"].shape[0])
    return {"encoder": encoder, "width": None if width == PUBLISHED_WIDTH else width, "out_channels": out_channels}
