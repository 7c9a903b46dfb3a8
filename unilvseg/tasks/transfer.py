"""Moving pre-trained weights (SSL checkpoints) into a segmentation network."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unilvseg.errors import UserError
from unilvseg.untrusted import load_checkpoint

log = logging.getLogger("unilvseg")


@dataclass
class TransferReport:
    checkpoint: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> reason
    source_task: str | None = None

    def summary(self) -> str:
        reasons = {}
        for reason in self.skipped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        skipped = ", ".join(f"{n} {r}" for r, n in reasons.items()) or "none"
        return (
            f"loaded {len(self.loaded)}/{len(self.loaded) + len(self.skipped)} tensors from {self.checkpoint}"
            f" (source task: {self.source_task or 'unknown'}; skipped: {skipped}: {', '.join(list(self.skipped)[:4])})"
        )


def read_checkpoint(path: str | Path, flag: str = "--checkpoint") -> dict:
    """A checkpoint dict, loaded as data (unilvseg.untrusted), with errors that name the flag and the file."""
    checkpoint = load_checkpoint(path, flag=flag)
    if not isinstance(checkpoint, dict):
        raise UserError(f"{flag} {path}: expected a checkpoint dict, found {type(checkpoint).__name__}")
    return checkpoint


def network_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The network's tensors from a Lightning checkpoint ("network." prefix), a published SimLVSeg
    checkpoint ("model." prefix, renamed by unilvseg.models.simlvseg) or a bare state dict."""
    from unilvseg.models.simlvseg import is_published_state, to_unilvseg_state

    state = checkpoint.get("state_dict", checkpoint)
    if is_published_state(state):
        return to_unilvseg_state(state)
    if any(key.startswith("network.") for key in state):
        state = {key[len("network."):]: value for key, value in state.items() if key.startswith("network.")}
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


PRETRAINED_TYPES = ("pl_full", "encoder")


def new_head_zero_names(network: torch.nn.Module) -> set[str]:
    """Head parameters that start at zero when the head is not loaded: all of a plain conv head;
    of a residual-unit head (the published top) its last convolution and its skip, so the output
    starts at zero while its first convolution keeps random weights: with that one zero as well,
    no gradient would ever reach either convolution again."""
    head = getattr(network, "head", None)
    if head is None:
        return set()
    names = {f"head.{n}" for n, _ in head.named_parameters()}
    if hasattr(head, "residual") and hasattr(head, "conv"):
        names = {n for n in names if not n.startswith("head.conv.unit0.")}
    return names


def load_pretrained(network: torch.nn.Module, path: str | Path, zero_new_head: bool = True, pretrained_type: str = "pl_full") -> TransferReport:
    """Copy every tensor whose name and shape match; report what loaded and what was skipped.

    ``pretrained_type`` (``--pretrained_type``, as in the published train script): ``pl_full``
    copies the whole network, ``encoder`` only the encoder's tensors (the decoder and head
    start fresh). A checkpoint that matches nothing is an error, not a silent no-op. Head
    tensors that could not be loaded (the SSL head has 3 output channels, segmentation 1)
    start at zero when ``zero_new_head`` (see new_head_zero_names): a random projection of the
    pre-trained decoder's features would push large, arbitrary gradients into the decoder in
    the first steps and erase what it learned.
    """
    if pretrained_type not in PRETRAINED_TYPES:
        raise UserError(f"--pretrained_type {pretrained_type!r}: expected one of {', '.join(PRETRAINED_TYPES)}")
    checkpoint = read_checkpoint(path)
    source = network_state(checkpoint)
    target = network.state_dict()
    report = TransferReport(str(path), source_task=checkpoint.get("unilvseg_task") or _published_task(checkpoint))
    update = {}
    for name, tensor in target.items():
        if pretrained_type == "encoder" and not name.startswith("encoder."):
            report.skipped[name] = "not encoder (--pretrained_type encoder)"
        elif name not in source:
            report.skipped[name] = "missing in checkpoint"
        elif source[name].shape != tensor.shape:
            report.skipped[name] = "shape differs"
        else:
            update[name] = source[name]
            report.loaded.append(name)
    if not update:
        raise UserError(
            f"--checkpoint {path}: no tensor matches this network ({len(target)} tensors, e.g. "
            f"{next(iter(target))}); was it trained with a different --encoder or --width?"
        )
    network.load_state_dict(update, strict=False)
    if zero_new_head and pretrained_type == "pl_full":
        head_names = new_head_zero_names(network)
        with torch.no_grad():
            for name, parameter in network.named_parameters():
                if name in report.skipped and name in head_names:
                    parameter.zero_()
    log.info(report.summary())
    return report


def _published_task(checkpoint: dict) -> str | None:
    from unilvseg.models.simlvseg import is_published_state

    state = checkpoint.get("state_dict", checkpoint)
    return "published SimLVSeg" if isinstance(state, dict) and is_published_state(state) else None
