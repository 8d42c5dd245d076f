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
from torch.utils.data import Dataset

from datamodules.sampling import seeded

__all__ = ["BatchProvider", "IndexedDataset", "IndexOnly", "SeededKeys", "as_views", "TRAIN_PIPELINES"]

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
        return self.dataset[(index, (self.seed * 1_000_003 + index) % (2**63 - 1))]


def as_views(images: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The views of a batch as a list, whatever ``num_views`` was.

    Example:
        >>> len(as_views(torch.zeros(2, 3, 8, 8))), len(as_views([torch.zeros(2, 3, 8, 8)] * 2))
        (1, 2)
    """
    return list(images) if isinstance(images, (list, tuple)) else [images]
