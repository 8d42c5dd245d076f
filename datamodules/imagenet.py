"""ImageNet-100: the 100-class ImageNet subset of CMC (Tian et al. 2019), read from an ImageNet folder."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Literal

from datamodules import transforms as T
from datamodules.base import DatasetNotFoundError, TrainPipeline
from datamodules.folder import DatasetLayoutError, ImageFolderDataModule

#: the CMC split's class list (HobbitLong/CMC imagenet100.txt), one WordNet id per line
CLASS_LIST = Path(__file__).with_name("imagenet100_classes.txt")


def read_class_list(path: str | Path) -> list[str]:
    """The class names of a class-list file: one per line; blank lines and ``#`` comments ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class list {path} not found")
    names = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"class list {path} names no class")
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"class list {path} repeats {', '.join(duplicates)}")
    return names


class ImageNet100DataModule(ImageFolderDataModule):
    """ImageNet-100 (CMC's 100 classes; about 127k train / 5,000 val images) with the paper's pipelines.

    The split of Tian et al., "Contrastive Multiview Coding", arXiv:1906.05849; the images of
    ILSVRC2012 (Russakovsky et al. 2015); Table 1 of Wang & Liu 2021.

    Reads a standard ImageNet folder, ``<data_dir>/train/<wnid>/*.JPEG`` and
    ``<data_dir>/val/<wnid>/*.JPEG`` (the validation images sorted into class folders),
    and keeps the classes of ``class_list`` without copying any image: class ``i`` is
    the list's ``i``-th WordNet id. A folder holding only the 100 classes works too.
    Every listed class must be present, with images, in both splits.

    ImageNet cannot be downloaded automatically: get ILSVRC2012 from https://image-net.org.

    Args:
        data_dir: the ImageNet folder holding ``train/`` and ``val/``.
        class_list: a file of WordNet ids, one per line; None uses the CMC split shipped
            as ``datamodules/imagenet100_classes.txt``.
        preset: a shortcut that replaces ``augmentation`` by a family's values; None keeps it.
        image_size: side of the augmented images (scaling the evaluation resize); None keeps 224.
        mean: normalisation mean replacing the augmentation's.
        std: normalisation std replacing the augmentation's.
        augmentation: every value of the pipelines (:class:`~datamodules.transforms.Augmentation`);
            the default is the paper's ImageNet-100 recipe (224-pixel crops, Gaussian blur,
            evaluation at 256 then centre 224).
        **kwargs: see :class:`~datamodules.base.ContrastiveDataModule`.

    Example:
        >>> dm = ImageNet100DataModule("data/imagenet")  # reads the shipped class list only
        >>> len(dm.classes), dm.classes[0], dm.augmentation.size, dm.augmentation.blur
        (100, 'n02869837', 224, True)
    """

    dataset_name = "imagenet100"
    detects_small_images = False  # ImageNet's recipe, whatever the files' size

    def __init__(
        self,
        data_dir: str = "data/imagenet",
        class_list: str | None = None,
        preset: str | None = None,
        image_size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        augmentation: T.Augmentation | TrainPipeline = T.PRESETS["imagenet"],
        **kwargs,
    ) -> None:
        super().__init__(data_dir=data_dir, preset=preset, image_size=image_size, mean=mean, std=std,
                         augmentation=augmentation, **kwargs)
        self.class_list = Path(class_list) if class_list is not None else CLASS_LIST
        self._classes = read_class_list(self.class_list)
        odd = [c for c in self._classes if not re.fullmatch(r"n\d{8}", c)]
        if odd:
            raise ValueError(f"class list {self.class_list} has entries that are not WordNet ids "
                             f"(n + 8 digits): {', '.join(odd[:5])}")

    @property
    def classes(self) -> list[str]:
        """The WordNet ids of the class list, ``classes[i]`` for label ``i``."""
        return self._classes

    def _not_found(self, missing: Path) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"ImageNet-100 not found: {missing} does not exist. Expected an ImageNet folder "
            f"{self.data_dir}/train/<wnid>/*.JPEG and {self.data_dir}/val/<wnid>/*.JPEG holding the "
            f"{len(self.classes)} classes of {self.class_list}. ImageNet cannot be downloaded "
            "automatically: get ILSVRC2012 from https://image-net.org, extract the training archive "
            f"into {self.data_dir}/train/ (one folder per wnid) and sort the validation images into "
            f"{self.data_dir}/val/<wnid>/ (e.g. with valprep.sh); a folder with only the 100 classes works too.")

    def _check_same_classes(self) -> None:
        """val/ may hold more classes than the list (a full ImageNet): only the listed ones are read."""

    def _scan(self, split: Literal["train", "test"]) -> tuple[list[str], list[int]]:
        try:
            return super()._scan(split)
        except DatasetLayoutError as err:
            raise DatasetLayoutError(
                f"{err}; every WordNet id of {self.class_list} must have a folder of images in "
                f"{self._split_dir('train')} and {self._split_dir('test')}") from None
