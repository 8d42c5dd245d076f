"""Shuffled BatchNorm for the momentum queue: a positive key never shares batch statistics with its query.

The probe encoder is a BatchNorm1d on one-hot images: row i of its output is non-zero
exactly at the images normalised together with image i, so the BatchNorm batch of every
query and every key can be read off the embeddings.
"""

from __future__ import annotations

import copy
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules import distributed as D
from lightning_modules.negatives import MomentumQueue, shuffle_order

N_IDS = 64


class OneHotBatchNorm(nn.Module):
    """(B, N_IDS) one-hot images -> BatchNorm1d without affine parameters (batch statistics in training)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(N_IDS, affine=False)
        self.out_dim = N_IDS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


def one_hot(index: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, N_IDS).float()


def bn_batch(row: torch.Tensor) -> frozenset[int]:
    """The images a probe output row was normalised with."""
    return frozenset(torch.nonzero(row.abs() > 1e-6).flatten().tolist())


def run_queue(source: MomentumQueue, enc: nn.Module, index: torch.Tensor):
    """One forward of ``source`` on identical views; (pos, query rows, key rows) in the batch's order."""
    queries: list[torch.Tensor] = []

    def embed(x):
        out = F.normalize(enc(x), dim=1)
        queries.append(out.detach())
        return out

    x = one_hot(index)
    pos = source(embed, index, [x, x.clone()]).pos[:, 0]
    return pos, torch.cat(queries), source._pending


@pytest.fixture
def index() -> torch.Tensor:
    return torch.randperm(N_IDS, generator=torch.Generator().manual_seed(0))[:16]


def test_without_shuffling_the_key_shares_its_querys_statistics(index):
    enc = OneHotBatchNorm()
    source = MomentumQueue(queue_size=32, shuffle_bn=False)
    source.bind(enc, 100)
    pos, q, k = run_queue(source, enc, index)
    whole = frozenset(index.tolist())
    assert all(bn_batch(r) == whole for r in q) and all(bn_batch(r) == whole for r in k)
    torch.testing.assert_close(pos, torch.ones(16))  # same image, same statistics: the positive is exact


def test_shuffled_groups_give_every_key_other_statistics_than_its_query(index):
    enc = OneHotBatchNorm()
    source = MomentumQueue(queue_size=32)  # on by default: 4 groups on one process
    source.bind(enc, 100)
    assert source.groups_for(16) == 4
    pos, q, k = run_queue(source, enc, index)
    for i, image in enumerate(index.tolist()):
        query_batch, key_batch = bn_batch(q[i]), bn_batch(k[i])
        assert image in query_batch and image in key_batch  # each row is its own image's
        assert len(query_batch) == len(key_batch) == 4
        assert query_batch != key_batch, image
    assert frozenset().union(*(bn_batch(r) for r in k)) == frozenset(index.tolist())
    overlap = sum(len(bn_batch(q[i]) & bn_batch(k[i])) - 1 for i in range(16)) / 16
    assert overlap < 1.5  # about one other image shared in 4-groups of 16 (3/15 * 3 on average)
    assert (pos < 1 - 1e-3).all()


def test_the_shuffle_is_a_permutation_that_moves_with_the_step():
    index = torch.arange(100, 164)
    a, b = shuffle_order(index, torch.tensor(0)), shuffle_order(index, torch.tensor(64))
    assert sorted(a.tolist()) == list(range(64)) and sorted(b.tolist()) == list(range(64))
    assert not torch.equal(a, b) and not torch.equal(a, torch.arange(64))
    torch.testing.assert_close(shuffle_order(index, torch.tensor(0)), a)  # a function of its inputs only
    repeats = torch.tensor([5, 5, 5, 7])  # a padding sampler repeats indices: still a permutation
    assert sorted(shuffle_order(repeats, torch.tensor(3)).tolist()) == [0, 1, 2, 3]


class FakeWorld:
    """Collectives of ``world`` threads, one per pretend process (all-gather in rank order)."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.barrier = threading.Barrier(world, timeout=60)
        self.slots: list[torch.Tensor | None] = [None] * world
        self.local = threading.local()

    def rank(self) -> int:
        return self.local.rank

    def world_size(self) -> int:
        return self.world

    def gather(self, tensor: torch.Tensor, with_grad: bool = False) -> torch.Tensor:
        self.slots[self.rank()] = tensor
        self.barrier.wait()
        out = torch.cat([t for t in self.slots])
        self.barrier.wait()  # everyone has read before the slots are reused
        return out


def test_across_processes_each_process_encodes_a_shuffled_share_of_the_global_keys(monkeypatch, index):
    world = FakeWorld(2)
    monkeypatch.setattr(D, "gather", world.gather)
    monkeypatch.setattr(D, "rank", world.rank)
    monkeypatch.setattr(D, "world_size", world.world_size)
    enc = OneHotBatchNorm()
    shares = index.view(2, 8)
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []

    def process(rank: int) -> None:
        try:
            world.local.rank = rank
            own = copy.deepcopy(enc)
            source = MomentumQueue(queue_size=32)
            source.bind(own, 100)
            results[rank] = run_queue(source, own, shares[rank])
        except BaseException as err:  # noqa: BLE001  (re-raised in the test's thread)
            errors.append(err)

    threads = [threading.Thread(target=process, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    key_batches = set()
    for rank in range(2):
        pos, q, k = results[rank]
        local = frozenset(shares[rank].tolist())
        for i, image in enumerate(shares[rank].tolist()):
            assert bn_batch(q[i]) == local  # one BatchNorm group per process, as in MoCo
            key_batch = bn_batch(k[i])
            assert image in key_batch and len(key_batch) == 8
            assert key_batch != local, image
            key_batches.add(key_batch)
        assert (pos < 1 - 1e-3).all()
    assert len(key_batches) == 2 and frozenset().union(*key_batches) == frozenset(index.tolist())
