"""The few collective operations the negatives' sources need, usable without a process group.

Kept apart so a test can pretend to be rank ``r`` of ``w`` processes (see
``tests/test_negatives.py``) without starting any.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather(tensor: torch.Tensor, with_grad: bool = False) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) from all ranks along dim 0, in rank order.

    Args:
        tensor: the local tensor, (B, ...).
        with_grad: let gradients flow back to every rank's input (needed when
            the gathered tensor enters the loss, as in-batch negatives do).
    """
    if world_size() == 1:
        return tensor
    if with_grad:
        from torch.distributed.nn.functional import all_gather as all_gather_with_grad

        return torch.cat(all_gather_with_grad(tensor.contiguous()), dim=0)
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
