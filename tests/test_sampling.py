"""The training sampler: the same global batches and augmentations on any number of processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import transforms as T
from datamodules.base import IndexedDataset
from datamodules.sampling import ShardedEpochSampler


def batches(sampler: ShardedEpochSampler, local_batch: int) -> list[list[tuple[int, int]]]:
    items = list(sampler)
    return [items[i:i + local_batch] for i in range(0, len(items), local_batch)]


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_split_each_global_batch_of_the_single_process_run(world):
    single = ShardedEpochSampler(96, batch_size=16, seed=3)
    shards = [ShardedEpochSampler(96, batch_size=16, rank=r, world_size=world, seed=3) for r in range(world)]
    for epoch in (0, 1):
        for s in [single, *shards]:
            s.set_epoch(epoch)
        one = batches(single, 16)
        many = [batches(s, 16 // world) for s in shards]
        assert len(one) == 6 and all(len(m) == 6 for m in many)
        for g, global_batch in enumerate(one):
            assert global_batch == [item for rank in range(world) for item in many[rank][g]]


def test_every_index_once_per_epoch_and_a_new_order_each_epoch():
    sampler = ShardedEpochSampler(50, batch_size=10, seed=0)
    sampler.set_epoch(0)
    first = [i for i, _ in sampler]
    assert sorted(first) == list(range(50))
    assert first == [i for i, _ in sampler]  # the same epoch gives the same order
    sampler.set_epoch(1)
    second = [i for i, _ in sampler]
    assert sorted(second) == list(range(50)) and second != first


def test_incomplete_last_batch_is_padded_to_equal_shares_or_dropped():
    padded = [ShardedEpochSampler(21, batch_size=8, rank=r, world_size=2) for r in range(2)]
    assert len(padded[0]) == len(padded[1]) == 11
    seen = [i for s in padded for i, _ in s]
    assert set(seen) == set(range(21)) and len(seen) == 22  # one repeat pads the last batch
    dropped = ShardedEpochSampler(21, batch_size=8, drop_last=True)
    assert len(dropped) == 16 and len({i for i, _ in dropped}) == 16


def test_sample_seeds_depend_on_seed_epoch_and_index_only():
    a = dict(ShardedEpochSampler(20, batch_size=4, seed=1))
    b = {}
    for r in range(2):
        b.update(dict(ShardedEpochSampler(20, batch_size=4, rank=r, world_size=2, seed=1)))
    assert a == b
    other = ShardedEpochSampler(20, batch_size=4, seed=1)
    other.set_epoch(1)
    assert dict(other) != a


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        ShardedEpochSampler(10, batch_size=5, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        ShardedEpochSampler(10, batch_size=4, rank=2, world_size=2)


def test_seeded_augmentation_is_reproducible_and_leaves_the_global_rng_alone():
    rng = np.random.default_rng(0)
    images = [(Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)), 0) for _ in range(2)]
    dataset = IndexedDataset(images, T.build("cifar", "pretrain"), num_views=2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    _, (v1, v2), _ = dataset[(0, 42)]
    assert torch.equal(torch.get_rng_state(), state)
    _, (w1, w2), _ = dataset[(0, 42)]
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    assert not torch.equal(v1, v2)  # two views of one image differ
    _, (u1, _), _ = dataset[(0, 43)]
    assert not torch.equal(u1, v1)
