"""Reading checkpoints without running code: tensors and plain data only.

``torch.load`` unpickles; a pickle can name any importable function and call it, so a
checkpoint from a colleague or a paper's page could run code the moment it is read.
Everything here reads with ``weights_only=True`` (torch's restricted unpickler: tensors,
containers, numbers, strings) and says in one line why a file was refused.

The suite's own checkpoints are plain by construction: ``cli.py`` stores hyper-parameters
as config dictionaries, and :meth:`SuiteModule.on_save_checkpoint
<lightning_modules.base.SuiteModule.on_save_checkpoint>` drops any that are Python
objects and records the encoder as ``{"class_path", "init_args"}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint file that cannot, or must not, be read."""


_TORCH_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch 2.6")


def _reason(err: Exception) -> str:
    """The specific line of torch's long report on a failed load, without its generic advice."""
    text = str(err).split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(_TORCH_ADVICE)]
    reason = lines[0] if lines else type(err).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


def read_checkpoint(path: str | Path, flag: str = "checkpoint") -> dict[str, Any]:
    """The contents of the checkpoint at ``path``, read with ``torch.load(weights_only=True)`` onto the CPU.

    Args:
        path: the ``.ckpt`` (or ``.pt``) file.
        flag: the option that named the file, for the error messages.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is not a PyTorch checkpoint, or holds pickled Python
            objects (which only an unsafe load could read).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{flag}: checkpoint not found: {path}" + (" (a folder)" if path.is_dir() else ""))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises UnpicklingError, RuntimeError, EOFError, ...)
        unsafe = re.search(r"\bGLOBAL ([\w.]+)", str(err))  # "Unsupported global: GLOBAL x.y", "... GLOBAL x.y whose"
        if unsafe:
            raise CheckpointError(
                f"{flag}: refusing to read {path}: it holds a pickled Python object ({unsafe.group(1)}), and "
                "reading it could run code. Only tensors and plain data are read (torch.load weights_only=True); "
                "checkpoints written by this suite's cli.py are plain") from None
        raise CheckpointError(f"{flag}: {path} is not a readable PyTorch checkpoint ({_reason(err)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{flag}: {path} holds a {type(ckpt).__name__}, not a checkpoint dictionary")
    return ckpt


def is_plain(value: Any) -> bool:
    """True for what ``weights_only=True`` reads back: None, bool, int, float, str, lists/tuples/dicts of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False
