"""Datamodules: one file per dataset, all yielding ``(index, views, label)`` batches (see ``base.py``)."""

from datamodules.base import ContrastiveDataModule, DatasetNotFoundError
from datamodules.cifar import CIFAR10DataModule, CIFAR100DataModule
from datamodules.folder import DatasetLayoutError, ImageFolderDataModule, ImageLoadError
from datamodules.imagenet import ImageNet100DataModule
from datamodules.svhn import SVHNDataModule

__all__ = [
    "ContrastiveDataModule",
    "DatasetNotFoundError",
    "DatasetLayoutError",
    "ImageLoadError",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "SVHNDataModule",
    "ImageNet100DataModule",
    "ImageFolderDataModule",
]
