"""The batch contract: what every training batch holds, and the one hook between module and data.

Every training batch is ``(index, views, label)``:

- ``index`` (B,) int64: the image's position in the training split, so an
  index-addressed memory bank can find its entry;
- ``views``: one augmented view (B, C, H, W) when ``num_views == 1``, else a
  list of ``num_views`` such tensors (two for in-batch or queue negatives);
  :func:`as_views` turns either form into a list;
- ``label`` (B,) int64: the class, used only by the metrics and linear evaluation.

Each image's augmentation is a function of its key ``(index, sample_seed)``
(:class:`IndexedDataset` under :func:`datamodules.sampling.seeded`), so the same image
gets the same pixels on any number of processes or workers.

The LightningModules import this module, never :mod:`datamodules.base`: a module sees a
datamodule only as a :class:`BatchProvider`. Importing it loads no dataset module.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset, Sampler, default_collate

from datamodules.sampling import seeded

__all__ = ["BatchProvider", "IndexedDataset", "IndexOnly", "InMemoryImages", "SeededKeys", "SeededOrder", "as_views",
           "collate_batch", "TRAIN_PIPELINES"]

#: the training pipelines a module may ask for: the paper's contrastive views, the linear-evaluation
#: augmentation, the evaluation transform, or index-only batches (a module that caches its features)
TRAIN_PIPELINES = ("pretrain", "linear", "none", "features")


class BatchProvider:
    """The datamodule as a LightningModule sees it; :class:`~datamodules.base.ContrastiveDataModule` is one.

    A module may read :attr:`num_views` and :attr:`num_train_samples` (to check its
    negatives' source and its memory bank against the data) and call
    :meth:`request_train_pipeline`, nothing else.
    """

    #: augmented views per image in each training batch
    num_views: int = 1
    #: size of the training split the batches' ``index`` addresses (a property in datamodules)
    num_train_samples: int
    _requested_pipeline: str = "pretrain"

    def request_train_pipeline(self, name: str) -> None:
        """The one hook through which the LightningModule says which training pipeline it needs.

        ``SuiteModule.setup`` calls it with the module's ``augmentation_stage`` before the
        training loader is built. A datamodule whose own setting is ``auto`` follows it;
        an explicit setting wins.

        Args:
            name: one of :data:`TRAIN_PIPELINES`.
        """
        if name not in TRAIN_PIPELINES:
            raise ValueError(f"unknown training pipeline {name!r}; choose one of {', '.join(TRAIN_PIPELINES)}")
        self._requested_pipeline = name


class IndexedDataset(Dataset):
    """Wraps an ``(image, label)`` dataset into ``(index, views, label)`` items.

    Args:
        dataset: any map-style dataset returning ``(image, label)``.
        transform: applied to the image once per view.
        num_views: how many independently augmented views of each image to return.

    Example:
        >>> data = IndexedDataset([(torch.zeros(3, 4, 4), 7)], transform=lambda x: x + 1, num_views=2)
        >>> index, views, label = data[0]
        >>> index, len(views), float(views[1].max()), label
        (0, 2, 1.0, 7)
    """

    def __init__(self, dataset: Dataset, transform: Callable | None, num_views: int = 1) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.dataset = dataset
        self.transform = transform
        self.num_views = num_views

    def __len__(self) -> int:
        return len(self.dataset)

    def _view(self, image: Any) -> Any:
        return self.transform(image) if self.transform is not None else image

    def __getitem__(self, key: int | tuple[int, int]):
        # a ShardedEpochSampler passes (index, sample_seed): the augmentation is then a
        # function of the seed alone, whatever process or worker draws it
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        image, label = self.dataset[index]
        with seeded(sample_seed):
            if self.num_views == 1:
                return index, self._view(image), int(label)
            return index, [self._view(image) for _ in range(self.num_views)], int(label)


class InMemoryImages(Dataset):
    """``(index, image, label)`` items from images already in memory as one (N, C, H, W) uint8 tensor.

    The device-side augmentation's training source when the dataset holds its pixels as an
    array (CIFAR, SVHN): a DataLoader with a batch size hands :meth:`__getitems__` the
    whole batch of keys, which reads the batch with one index into the tensor instead of
    B ``__getitem__`` calls and a collate (:func:`collate_batch` passes it through). The
    items are those of ``IndexedDataset(data, to_uint8_tensor)``: the same pixels, and
    the key's ``sample_seed`` is not needed, as reading involves no randomness.

    Args:
        images: (N, C, H, W) uint8, row i the image of index i.
        labels: (N,) integer labels.

    Example:
        >>> data = InMemoryImages(torch.arange(24, dtype=torch.uint8).reshape(4, 1, 2, 3), torch.tensor([5, 6, 7, 8]))
        >>> index, images, label = data.__getitems__([(2, 11), (0, 12)])
        >>> index.tolist(), images.shape, label.tolist(), data[(3, 0)][2]
        ([2, 0], torch.Size([2, 1, 2, 3]), [7, 5], 8)
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be (N, C, H, W) uint8, got {tuple(images.shape)} {images.dtype}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images.contiguous()
        self.labels = labels.to(torch.long)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, key: int | tuple[int, int]):
        index = key[0] if isinstance(key, tuple) else key
        return index, self.images[index], int(self.labels[index])

    def __getitems__(self, keys: list) -> "Batch":
        index = torch.tensor([k[0] if isinstance(k, tuple) else k for k in keys], dtype=torch.long)  # (B,)
        return Batch((index, self.images[index], self.labels[index]))  # (B,), (B, C, H, W), (B,)


class Batch(tuple):
    """An already collated ``(index, views, label)`` batch (from :meth:`InMemoryImages.__getitems__`)."""


def collate_batch(items: Any) -> Any:
    """The DataLoader's collate: a :class:`Batch` passes as a plain tuple, a list of items is stacked."""
    if isinstance(items, Batch):
        return tuple(items)
    return default_collate(items)


class IndexOnly(Dataset):
    """``(index, empty, -1)`` items: the batch contract when the module brings its own features and labels."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: int | tuple[int, int]):
        index = key[0] if isinstance(key, tuple) else key
        return index, torch.empty(0), -1


class SeededKeys(Dataset):
    """Turns index i into the key (i, seed of i) of an :class:`IndexedDataset`: per-image augmentation seeds."""

    def __init__(self, dataset: IndexedDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[(index, image_seed(self.seed, index))]


def image_seed(seed: int, index: int) -> int:
    """The augmentation seed of image ``index`` in a metrics pass seeded by ``seed`` (:class:`SeededKeys`)."""
    return (seed * 1_000_003 + index) % (2**63 - 1)


class SeededOrder(Sampler):
    """Yields the keys ``(i, image_seed(seed, i))`` of ``indices``, as :class:`SeededKeys` would make them.

    The seed is read when iteration starts, so one loader (with persistent workers) serves
    every epoch's augmented metrics pass: set :attr:`seed`, then ``iter(loader)``.

    Args:
        indices: the dataset positions to read, in order.
        seed: the pass's seed (the epoch).
    """

    def __init__(self, indices: Sequence[int], seed: int = 0) -> None:
        self.indices = [int(i) for i in indices]
        self.seed = seed

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        seed = self.seed
        return iter([(i, image_seed(seed, i)) for i in self.indices])


def as_views(images: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The views of a batch as a list, whatever ``num_views`` was.

    Example:
        >>> len(as_views(torch.zeros(2, 3, 8, 8))), len(as_views([torch.zeros(2, 3, 8, 8)] * 2))
        (1, 2)
    """
    return list(images) if isinstance(images, (list, tuple)) else [images]
