"""SVHN (cropped digits) on torchvision's dataset (official ``*_32x32.mat`` files)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import scipy.io
import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision.datasets import svhn as tv_svhn

from datamodules import transforms as T
from datamodules.base import ContrastiveDataModule, DatasetNotFoundError, TrainPipeline, refuse_image_folder
from datamodules.cifar import _download_hint


class _UnverifiedSVHN(datasets.SVHN):
    """torchvision's SVHN checking that the file exists instead of its MD5 sum (SVHN-format subsets)."""

    def _check_integrity(self) -> bool:
        return (Path(self.root) / self.filename).is_file()


class SVHNDataModule(ContrastiveDataModule):
    """SVHN (73,257 train / 26,032 test, 32x32, 10 digit classes) with the paper's pipelines.

    Netzer et al., "Reading Digits in Natural Images with Unsupervised Feature Learning",
    NIPS workshop 2011; Table 1 of Wang & Liu 2021. Uses the ``train`` split (not ``extra``), as the paper does. Expects
    ``<data_dir>/train_32x32.mat`` and ``<data_dir>/test_32x32.mat``; ``prepare_data``
    downloads them when missing. Labels are the digits 0..9 (the files store digit 0
    as 10; torchvision maps it back).

    Args:
        augmentation: every value of the pipelines (:class:`~datamodules.transforms.Augmentation`);
            the default is the paper's SVHN recipe (the CIFAR view; colour jitter and grayscale
            for the linear classifier).
        verify_checksums: check the files' MD5 sums against the official release;
            turn off for an SVHN-format subset.
        **kwargs: see :class:`~datamodules.base.ContrastiveDataModule`.

    Example:
        >>> dm = SVHNDataModule("data/svhn", device_augmentation=True)
        >>> dm.num_classes, dm.augmentation.linear, dm.official_train_size
        (10, 'jitter', 73257)
    """

    num_classes = 10
    dataset_name = "svhn"
    official_train_size = 73_257
    preset = "svhn"
    fixed_image_size = 32

    def __init__(self, *args, augmentation: T.Augmentation | TrainPipeline = T.PRESETS["svhn"],
                 verify_checksums: bool = True, **kwargs) -> None:
        super().__init__(*args, augmentation=augmentation, **kwargs)
        self.verify_checksums = verify_checksums

    def _file(self, split: Literal["train", "test"]) -> Path:
        return self.data_dir / datasets.SVHN.split_list[split][1]

    def _check_available(self) -> None:
        missing = [self._file(s).name for s in ("train", "test") if not self._file(s).is_file()]
        if missing:
            refuse_image_folder(self.data_dir, self.dataset_name)
            urls = " and ".join(datasets.SVHN.split_list[s][0] for s in ("train", "test"))
            raise DatasetNotFoundError(
                f"{self.dataset_name} not found: expected {', '.join(missing)} in {self.data_dir}. "
                f"Download {urls} into {self.data_dir}, or {_download_hint(self.download)}."
            )

    def _download(self) -> None:
        for split in ("train", "test"):
            url, filename, md5 = datasets.SVHN.split_list[split]
            tv_svhn.download_url(url, str(self.data_dir), filename, md5)  # skips a file already verified

    def _load_split(self, split: Literal["train", "test"]) -> Dataset:
        cls = datasets.SVHN if self.verify_checksums else _UnverifiedSVHN
        try:
            data = cls(str(self.data_dir), split=split, download=False)
        except RuntimeError as err:  # torchvision's "not found or corrupted"
            raise DatasetNotFoundError(
                f"{self._file(split)} failed torchvision's MD5 check ({err}). Re-download it, or pass "
                "verify_checksums=False for an SVHN-format subset."
            ) from None
        except (ValueError, OSError, KeyError, scipy.io.matlab.MatReadError) as err:  # not MATLAB, or no X / y
            raise ValueError(f"{self._file(split)} is not a readable SVHN .mat file: {err!r}") from None
        labels = np.asarray(data.labels)
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise ValueError(f"{self._file(split)} has labels outside 1..10 (10 meaning digit 0): "
                             f"found {sorted(set(labels.tolist()) - set(range(10)))}")
        if len(labels) != len(data.data):
            raise ValueError(f"{self._file(split)} has {len(data.data)} images but {len(labels)} labels")
        return data

    def _array_images(self, split: Literal["train", "test"]) -> torch.Tensor | None:
        data = self._raw(split)
        while isinstance(data, Subset):
            data = data.dataset
        return torch.from_numpy(data.data)  # torchvision keeps SVHN as (N, 3, 32, 32) already

    def _count_train(self) -> int:
        """The number of training images, from the .mat header (without reading the 180 MB of pixels)."""
        if "train" in self._splits:
            return len(self._splits["train"])
        try:
            shapes = {name: shape for name, shape, _ in scipy.io.whosmat(str(self._file("train")))}
            return int(shapes["X"][-1])  # X is (32, 32, 3, N)
        except Exception:  # unreadable header: loading the split raises the clear error
            return len(self._raw("train"))
