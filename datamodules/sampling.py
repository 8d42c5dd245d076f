"""A training sampler whose global batches do not depend on the number of processes.

For epoch e the training split is shuffled by a permutation seeded with ``seed + e``
and cut into global batches of ``batch_size`` images; process r of w takes the r-th
of the w equal parts of each global batch. Every image also gets its own augmentation
seed from (seed, epoch, index). So a run on 1 process and on w processes see the same
global batches with the same augmented pixels, and a resumed run continues exactly as if
never stopped: nothing depends on the global random state, the number of data-loading
workers or the process count. A run resumed in the middle of an epoch (a requeued SLURM
job's ``hpc_ckpt``) skips the global batches that epoch had already trained on
(``batches_done``), rather than replaying the epoch from its first batch.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch.utils.data import DistributedSampler

_MIX = 1_000_003  # a prime that spreads (seed, epoch) over the 63-bit seed space


class ShardedEpochSampler(DistributedSampler):
    """Yields ``(index, sample_seed)`` for this process's share of each global batch.

    It is a :class:`~torch.utils.data.DistributedSampler`, so Lightning keeps it as it is
    (it replaces only samplers that are not), whatever ``trainer.use_distributed_sampler``
    says: the shards stay those described above.

    Args:
        size: number of images in the training split.
        batch_size: the GLOBAL batch size.
        rank: this process.
        world_size: number of processes; must divide ``batch_size``.
        seed: base seed of the permutations and the augmentations.
        shuffle: shuffle every epoch (False: dataset order).
        drop_last: drop the last global batch when it is incomplete; otherwise it is
            padded with images from the start of the epoch's order to a multiple of
            ``world_size`` (every process must take the same number of images).
        batches_done: called when an epoch's iteration starts; returns how many of its
            global batches were already trained on (non-zero only in an epoch resumed
            mid-way), which are skipped. None: none are.
    """

    def __init__(self, size: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False, batches_done: Callable[[], int] | None = None) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by world_size {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        # rank and world size given: the base class needs no process group
        super().__init__(range(size), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.size = size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.batches_done = batches_done
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(self.seed * _MIX + self.epoch)
        return torch.randperm(self.size, generator=generator)

    def _global_order(self) -> torch.Tensor:
        order = self._order()
        tail = self.size % self.batch_size
        if tail and self.drop_last:
            return order[: self.size - tail]
        pad = (-tail) % self.world_size if tail else 0
        return torch.cat([order, order[:pad]]) if pad else order

    def __len__(self) -> int:
        return len(self._global_order()) // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._global_order()
        skip = self.batches_done() if self.batches_done is not None else 0
        if not 0 <= skip * self.batch_size <= len(order):
            raise ValueError(f"cannot skip {skip} batches of {self.batch_size}: the epoch has {len(order)} images")
        local = []
        for start in range(skip * self.batch_size, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            share = len(batch) // self.world_size
            local.append(batch[self.rank * share:(self.rank + 1) * share])
        base = (self.seed * _MIX + self.epoch) * _MIX
        for index in torch.cat(local).tolist() if local else []:
            yield index, (base + index) % (2**63 - 1)


@contextlib.contextmanager
def seeded(sample_seed: int | None):
    """Run a block with torch's global generator seeded by ``sample_seed``, restoring it afterwards."""
    if sample_seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        # the CPU generator only, which is all fork_rng restores: torch.manual_seed would also
        # reseed every CUDA device (and record a stack trace per call while CUDA is not yet up,
        # 0.25 ms an image) and leave them reseeded after the block
        torch.default_generator.manual_seed(sample_seed)
        yield
