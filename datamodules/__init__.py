"""Datamodules: one file per dataset, all yielding ``(index, views, label)`` batches (see ``batch.py``).

The names below load their module on first use (PEP 562), so importing the batch contract
(:mod:`datamodules.batch`), as the LightningModules do, loads no dataset module.
:func:`load_all` imports every one (``cli.py`` does, so that ``--help`` lists them all).
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module of this package that defines it
_EXPORTS = {
    "ContrastiveDataModule": "base",
    "DatasetNotFoundError": "base",
    "DatasetLayoutError": "folder",
    "ImageLoadError": "folder",
    "CIFAR10DataModule": "cifar",
    "CIFAR100DataModule": "cifar",
    "SVHNDataModule": "svhn",
    "ImageNet100DataModule": "imagenet",
    "ImageFolderDataModule": "folder",
}

__all__ = list(_EXPORTS) + ["load_all"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"datamodules.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")


def load_all() -> None:
    """Import every dataset module, so that every datamodule class is registered (subclasses, ``--help``)."""
    for module in sorted(set(_EXPORTS.values())):
        importlib.import_module(f"datamodules.{module}")
