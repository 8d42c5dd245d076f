"""A recorder of the tensor ops that would make the host wait for the device (shared by the tests)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "masked_scatter", "unique", "_unique", "_unique2",
            "unique_consecutive", "unique_dim", "repeat_interleave", "equal", "is_nonzero"}


class RecordOps(TorchDispatchMode):
    """Records every aten op; flags those whose output shape or value the host must wait for."""

    def __init__(self) -> None:
        super().__init__()
        self.syncing: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        bool_index = name in ("index", "index_put", "index_put_") and any(
            isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in (args[1] or []) if t is not None)
        if name in SYNC_OPS or bool_index:
            self.syncing.append(name)
        return func(*args, **(kwargs or {}))
