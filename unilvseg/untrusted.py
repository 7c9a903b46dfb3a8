"""Input that someone else wrote: checkpoints that must load as data, names that must stay names.

Two rules hold for every tool of the package (docs: Security):

* **Checkpoints are data.** ``load_checkpoint`` unpickles with ``torch.load(weights_only=True)``
  plus the short allowlist ``CHECKPOINT_TYPES``: a pickle that names any other type (e.g. a
  ``__reduce__`` to ``os.system``) is refused before anything in it runs. ``--trust_checkpoint``
  (or ``UNILVSEG_TRUST_CHECKPOINT=1``) opts in to full unpickling for a file the user trusts.
* **A name from a file is one path component.** ``name_problem`` says why a FileName could
  leave its folder (separators, ``..``, absolute or drive paths, control characters);
  ``path_under`` checks a path the tools are about to write or delete against its output folder.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from unilvseg.errors import UserError

log = logging.getLogger("unilvseg")

TRUST_ENV = "UNILVSEG_TRUST_CHECKPOINT"


def _checkpoint_types() -> list:
    """(type, the name a pickle calls it by) pairs that checkpoints may contain beyond torch's
    own allowlist (tensors, dicts, lists, OrderedDict, Counter, sets, ...). Each is a plain
    container whose unpickling only stores values; none calls anything named in the file."""
    import numpy as np

    try:  # numpy >= 2 (numpy 1.26 has a numpy._core stub without multiarray)
        from numpy._core.multiarray import scalar as numpy_scalar
    except ImportError:
        from numpy.core.multiarray import scalar as numpy_scalar
    types = [
        # Lightning's save_hyperparameters(args) with an argparse Namespace keeps the Namespace.
        argparse.Namespace,
        # Lightning stores saved hyperparameters as AttributeDict, a dict subclass with attribute
        # access (2.x and 1.x, the published SimLVSeg checkpoints, under their own modules). They
        # load as OrderedDict: the same items, and Lightning 1.x is never imported. (A dict
        # subclass of our own cannot stand in: the safe unpickler fills only dict types.)
        (collections.OrderedDict, "lightning.fabric.utilities.data.AttributeDict"),
        (collections.OrderedDict, "lightning_fabric.utilities.data.AttributeDict"),
        (collections.OrderedDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
        # Hyperparameters or metrics computed with numpy pickle as numpy scalars: a dtype and
        # raw bytes (numpy >= 2 names the module numpy._core, older numpy numpy.core).
        (numpy_scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        type(np.dtype(np.float64)),
        type(np.dtype(np.float32)),
        type(np.dtype(np.int64)),
        type(np.dtype(np.int32)),
        type(np.dtype(np.bool_)),
    ]
    if numpy_scalar.__module__.startswith("numpy._core"):
        types.append(numpy_scalar)
    return types


CHECKPOINT_TYPES = _checkpoint_types()


def trusted_by_environment() -> bool:
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def trust_checkpoints(trust: bool) -> None:
    """``--trust_checkpoint``: recorded in the environment so that every process of the run
    (DDP ranks, data workers) makes the same choice."""
    if trust:
        os.environ[TRUST_ENV] = "1"


def safe_globals():
    """Context in which ``torch.load(weights_only=True)`` (ours or Lightning's) accepts
    ``CHECKPOINT_TYPES``."""
    return torch.serialization.safe_globals(CHECKPOINT_TYPES)


def load_checkpoint(path: str | Path, flag: str = "--checkpoint", trust: bool | None = None):
    """``torch.load`` a checkpoint file as data; errors name the flag, the file and what it needs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {path}: file not found")
    if path.stat().st_size == 0:
        raise UserError(f"{flag} {path}: file is empty")
    trust = trusted_by_environment() if trust is None else trust
    readable = (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, AttributeError,
                ModuleNotFoundError, TypeError, IndexError, KeyError, UnicodeDecodeError, OverflowError, MemoryError)
    if trust:
        log.warning("%s %s: loading with full unpickling (%s / --trust_checkpoint): the file can run code", flag, path, TRUST_ENV)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except readable as error:
            raise UserError(f"{flag} {path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    try:
        with safe_globals():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        needed = _unsafe_globals(path, str(error))
        if needed:
            raise UserError(
                f"{flag} {path}: refused: it names {', '.join(needed)}, which is not plain data (unpickling it "
                f"could run code). If you trust this file, rerun with --trust_checkpoint (or {TRUST_ENV}=1)"
            ) from None
        raise UserError(f"{flag} {path}: not a readable PyTorch checkpoint (UnpicklingError: {_first_line(error)})") from None
    except readable as error:
        raise UserError(f"{flag} {path}: not a readable PyTorch checkpoint ({type(error).__name__}: {_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _unsafe_globals(path: Path, message: str) -> list[str]:
    """The types a refused checkpoint asks for, found without unpickling it."""
    names = re.findall(r"GLOBAL ([\w.]+)", message)
    try:
        with safe_globals():
            names += list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # the scan is a courtesy for the message; the refusal stands either way
        pass
    return sorted(set(names))


# --------------------------------------------------------------------------- names and paths

_DRIVE = re.compile(r"^[A-Za-z]:")


def name_problem(name: object) -> str | None:
    """Why ``name`` (a FileName from a CSV or a folder listing) cannot be used as a single path
    component, or None when it can."""
    if not isinstance(name, str):
        return f"not text ({type(name).__name__})"
    if name == "" or name.strip() == "":
        return "empty"
    if name in (".", ".."):
        return f"{name!r} is a folder reference"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "contains a control character (NUL, newline, tab, ...)"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    if os.path.isabs(name):
        return "is an absolute path"
    return None


def check_name(name: str, where: str) -> str:
    """``name`` itself, or a UserError naming ``where`` (file and row) and the problem."""
    problem = name_problem(name)
    if problem is not None:
        raise UserError(f"{where}: FileName {name!r} {problem}; a FileName must be a single file name")
    return name


def path_under(root: str | Path, path: str | Path) -> Path:
    """``path``, after checking that it lies inside ``root`` (no ``..`` or link leads out): the
    last guard before a tool writes or deletes it."""
    root_resolved = Path(root).resolve()
    resolved = Path(path).resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise UserError(f"{path}: refusing to write outside the output folder {root}")
    return Path(path)
