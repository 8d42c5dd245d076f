"""CIFAR-10 and CIFAR-100 on torchvision's datasets (official python-pickle format)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets

from datamodules import transforms as T
from datamodules.base import ContrastiveDataModule, DatasetNotFoundError, TrainPipeline, refuse_image_folder


def _unverified(cls: type) -> type:
    """A torchvision CIFAR class that checks files exist instead of their MD5 sums.

    For CIFAR-format subsets and test fixtures; the real release is verified by default.
    """

    class Unverified(cls):  # type: ignore[misc, valid-type]
        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    Unverified.__name__ = f"Unverified{cls.__name__}"
    return Unverified


def _download_hint(download: bool) -> str:
    """The second way to get the files: turn the download on, or, when it is on already, retry online."""
    if download:
        return "run again with internet access (the download is on: --data.init_args.download=true)"
    return "run once with internet access and --data.init_args.download=true"

class CIFAR10DataModule(ContrastiveDataModule):
    """CIFAR-10 (50,000 train / 10,000 test, 32x32, 10 classes) with the paper's pipelines.

    Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009; the paper's
    main dataset (Wang & Liu 2021, arXiv:2012.09740, section 5.1). Expects
    ``<data_dir>/cifar-10-batches-py/`` (the extracted official ``cifar-10-python.tar.gz``);
    ``prepare_data`` downloads it when missing.

    Example:
        >>> dm = CIFAR10DataModule("data/cifar10", batch_size=256)
        >>> dm.num_classes, dm.augmentation.jitter, dm.augmentation.crop_scale
        (10, 0.4, (0.2, 1.0))
        >>> [type(op).__name__ for op in dm.transform_for("pretrain").transforms][:2]
        ['RandomResizedCrop', 'ColorJitter']

    Args:
        augmentation: every value of the pipelines (:class:`~datamodules.transforms.Augmentation`);
            the default is the paper's CIFAR recipe.
        verify_checksums: check the files' MD5 sums against the official release;
            turn off for a CIFAR-format subset.
        **kwargs: see :class:`~datamodules.base.ContrastiveDataModule`.
    """

    num_classes = 10
    dataset_name = "cifar10"
    official_train_size = 50_000
    preset = "cifar"
    fixed_image_size = 32
    _tv_class = datasets.CIFAR10
    _url_hint = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

    def __init__(self, *args, augmentation: T.Augmentation | TrainPipeline = T.PRESETS["cifar"],
                 verify_checksums: bool = True, **kwargs) -> None:
        super().__init__(*args, augmentation=augmentation, **kwargs)
        self.verify_checksums = verify_checksums

    @property
    def _folder(self) -> Path:
        return self.data_dir / self._tv_class.base_folder

    def _dataset_class(self) -> type:
        return self._tv_class if self.verify_checksums else _unverified(self._tv_class)

    def _check_available(self) -> None:
        names = [n for n, _ in self._tv_class.train_list + self._tv_class.test_list]
        names.append(self._tv_class.meta["filename"])
        missing = [n for n in names if not (self._folder / n).is_file()]
        if missing:
            refuse_image_folder(self.data_dir, self.dataset_name)
            raise DatasetNotFoundError(
                f"{self.dataset_name} not found: expected {', '.join(missing)} in {self._folder}. "
                f"Download {self._url_hint} and extract it into {self.data_dir} (it creates "
                f"{self._tv_class.base_folder}/), or {_download_hint(self.download)}."
            )

    def _download(self) -> None:
        self._tv_class(str(self.data_dir), train=True, download=True)

    def _load_split(self, split: Literal["train", "test"]) -> Dataset:
        try:
            return self._dataset_class()(str(self.data_dir), train=split == "train", download=False)
        except RuntimeError as err:  # torchvision's "not found or corrupted"
            raise DatasetNotFoundError(
                f"{self.dataset_name} files in {self._folder} failed torchvision's check ({err}). "
                "Re-download them, or pass verify_checksums=False for a CIFAR-format subset."
            ) from None

    def _count_train(self) -> int:
        return len(self._raw("train"))

    def _array_images(self, split: Literal["train", "test"]) -> torch.Tensor | None:
        data = self._raw(split)
        while isinstance(data, Subset):
            data = data.dataset
        return torch.from_numpy(data.data).permute(0, 3, 1, 2)  # (N, 32, 32, 3) HWC -> (N, 3, 32, 32)


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (50,000 train / 10,000 test, 32x32, 100 fine classes) with the paper's pipelines.

    Krizhevsky 2009 (as CIFAR-10); Table 1 of Wang & Liu 2021. Expects
    ``<data_dir>/cifar-100-python/`` (the extracted official ``cifar-100-python.tar.gz``).

    Example:
        >>> dm = CIFAR100DataModule("data/cifar100")
        >>> dm.num_classes, dm.augmentation == CIFAR10DataModule("data/cifar10").augmentation
        (100, True)

    Args:
        verify_checksums: check the files' MD5 sums against the official release.
        **kwargs: see :class:`~datamodules.base.ContrastiveDataModule`.
    """

    num_classes = 100
    dataset_name = "cifar100"
    _tv_class = datasets.CIFAR100
    _url_hint = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
