"""Datasets stored as image files, one folder per class: ``<data_dir>/{train,val}/<class>/<images>``.

The listing is scanned once (no image is opened) and checked: a missing split or class
folder, an empty class or a ``val/`` whose classes differ from ``train/`` is an error
naming the path. Images are decoded when loaded; an unreadable, corrupt or truncated
file raises :class:`ImageLoadError` naming it. Nothing is skipped silently (truncated
JPEGs are not padded: ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` stays off).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Literal, Sequence

from PIL import Image
from torch.utils.data import Dataset, Subset

from datamodules import transforms as T
from datamodules.base import ContrastiveDataModule, DatasetNotFoundError, TrainPipeline, split_augmentation

#: the file extensions read as images (torchvision's ImageFolder list), compared case-insensitively
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetLayoutError(ValueError):
    """The dataset's files are there but not laid out as expected (a missing or empty class folder)."""


class ImageLoadError(OSError):
    """An image file that cannot be decoded: unreadable, not an image, corrupt or truncated."""


def load_rgb(path: str) -> Image.Image:
    """Decode ``path`` fully into an RGB image; any failure is an :class:`ImageLoadError` naming the file."""
    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            return image.convert("RGB")  # decodes now, inside the try: a truncated file raises here
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageLoadError(f"cannot read image {path}: {err}") from err


def list_classes(split_dir: Path) -> list[str]:
    """The class folders of ``split_dir``, sorted (ImageFolder's order)."""
    if not split_dir.is_dir():
        raise DatasetNotFoundError(f"split folder {split_dir} not found")
    classes = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    if not classes:
        raise DatasetLayoutError(f"{split_dir} holds no class folders: expected {split_dir}/<class>/<images>")
    return classes


def _images_under(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively), in ImageFolder's order."""
    found = []
    for root, _, names in sorted(os.walk(folder, followlinks=True)):
        found += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(IMG_EXTENSIONS)]
    return found


def scan_split(split_dir: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    """(paths, class indices) of the images of ``classes`` in ``split_dir``, class ``i`` = ``classes[i]``.

    Other folders in ``split_dir`` are ignored. Raises :class:`DatasetNotFoundError` when
    ``split_dir`` is missing and :class:`DatasetLayoutError` naming the folder when a class
    folder is missing or holds no image.
    """
    if not split_dir.is_dir():
        raise DatasetNotFoundError(f"split folder {split_dir} not found")
    paths: list[str] = []
    targets: list[int] = []
    for index, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            loose = any(e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS) for e in os.scandir(split_dir))
            hint = (f" ({split_dir} holds loose images: sort them into one folder per class, e.g. with "
                    "ImageNet's valprep.sh)") if loose else ""
            raise DatasetLayoutError(f"class folder {folder} is missing{hint}")
        files = _images_under(folder)
        if not files:
            raise DatasetLayoutError(
                f"class folder {folder} holds no images (extensions {', '.join(IMG_EXTENSIONS)})")
        paths += files
        targets += [index] * len(files)
    return paths, targets


class ImageFiles(Dataset):
    """``(RGB PIL image, class index)`` items of a list of image files.

    Args:
        paths: the image files.
        targets: their class indices.
        classes: the class names, ``classes[i]`` for index ``i``.
    """

    def __init__(self, paths: Sequence[str], targets: Sequence[int], classes: Sequence[str]) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets")
        self.paths = list(paths)
        self.targets = list(targets)
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return load_rgb(self.paths[index]), self.targets[index]


class ImageFolderDataModule(ContrastiveDataModule):
    """Any ``<data_dir>/{train,val}/<class>/<images>`` folder (torchvision's ImageFolder layout).

    The classes are the sub-folders of ``train/`` (sorted); ``val/`` must hold the same
    ones. ``val/`` plays the part of the test split (and of validation unless
    ``val_fraction`` holds part of ``train/`` out). Images of any size are resized for
    the pipelines that do not crop at random. A folder whose training images all have
    one size can use ``device_augmentation`` (checked from the files' headers). The layout is
    torchvision's ``ImageFolder``'s; the default recipe is the paper's ImageNet-100 one
    (Wang & Liu 2021, arXiv:2012.09740, section 5.1).

    Args:
        data_dir: the folder holding ``train/`` and ``val/``.
        preset: a shortcut that replaces ``augmentation`` by a family's values (``cifar``,
            ``svhn``, ``imagenet``; :data:`datamodules.transforms.PRESETS`); give it or
            change ``augmentation``, not both. None keeps ``augmentation``.
        image_size: side of the augmented images, scaling the evaluation resize with it;
            None keeps the augmentation's (224 by default).
        mean: per-channel normalisation mean replacing the augmentation's, e.g. ``[0.5, 0.5, 0.5]``.
        std: per-channel normalisation std replacing the augmentation's.
        train_folder: name of the training split's folder.
        test_folder: name of the held-out split's folder.
        augmentation: every value of the pipelines (:class:`~datamodules.transforms.Augmentation`);
            the default is the paper's ImageNet-100 recipe (224-pixel crops, blur), or the
            CIFAR recipe at the images' own size when the training images are small (shorter
            side at most :data:`SMALL_IMAGE_SIDE` pixels; :func:`detect_family`). Without an
            ``eval_resize`` the evaluation resizes to ``size``.
        **kwargs: see :class:`~datamodules.base.ContrastiveDataModule` (``download`` is
            ignored: a folder is there or it is not).

    Example:
        >>> dm = ImageFolderDataModule("data/images", preset="cifar")  # 32-pixel crops, no blur
        >>> dm.augmentation.size, dm.augmentation.blur, dm.augmentation.eval_resize
        (32, False, 32)
        >>> ImageFolderDataModule("data/images", image_size=96).augmentation.eval_resize  # 256 * 96 / 224
        110
    """

    dataset_name = "imagefolder"
    preset = "imagenet"
    #: with no recipe chosen, small training images get the CIFAR recipe (:meth:`resolve_augmentation`)
    detects_small_images: bool = True

    def __init__(
        self,
        data_dir: str = "data",
        preset: str | None = None,
        image_size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        train_folder: str = "train",
        test_folder: str = "val",
        augmentation: T.Augmentation | TrainPipeline = T.PRESETS["imagenet"],
        **kwargs,
    ) -> None:
        for name, value in (("mean", mean), ("std", std)):
            if value is not None and len(value) != 3:
                raise ValueError(f"{name} must have 3 values (R, G, B), got {list(value)}")
        if std is not None and min(std) <= 0:
            raise ValueError(f"std must be positive, got {list(std)}")
        values, kwargs["train_pipeline"] = split_augmentation(augmentation, kwargs.get("train_pipeline", "auto"))
        p, family = self.resolve_augmentation(data_dir, preset, image_size, mean, std, values, train_folder)
        super().__init__(data_dir=data_dir, augmentation=p, **kwargs)
        self.preset = family
        self.train_folder = train_folder
        self.test_folder = test_folder
        self._scans: dict[str, tuple[list[str], list[int]]] = {}
        self._one_size_checked = False
        self._classes: list[str] | None = None

    @classmethod
    def resolve_augmentation(cls, data_dir: str, preset: str | None, image_size: int | None,
                             mean: Sequence[float] | None, std: Sequence[float] | None,
                             values: T.Augmentation | None, train_folder: str = "train") -> tuple[T.Augmentation, str]:
        """(the augmentation in effect, its family) from the arguments of :meth:`__init__`.

        With nothing chosen (no ``preset``, ``image_size`` or changed ``augmentation``), the
        family follows the training images' size (:func:`detect_family`): a folder of 32-pixel
        images gets the CIFAR recipe, not ImageNet's 224-pixel crops and blur, which would
        upscale every image 7 times. ``cli.py`` writes the result into ``config.yaml`` and
        ``--print_config``, so they show the values in effect.
        """
        default = T.get_preset(cls.preset)
        family = cls.preset
        if preset is not None:
            if values is not None and values != default:
                raise ValueError(f"preset={preset!r} replaces the augmentation, which was also changed: give the "
                                 "preset or the augmentation's values, not both")
            values, family = T.get_preset(preset), preset
        elif cls.detects_small_images and image_size is None and (values is None or values == default):
            detected = detect_family(Path(data_dir).expanduser() / train_folder)
            if detected is not None and detected[0] != family:
                family = detected[0]
                values = T.resize_preset(T.get_preset(family), detected[1])
        p = default if values is None else values
        if image_size is not None:
            p = T.resize_preset(p, image_size)
        if p.eval_resize is None:  # folder images come in any size: bring every pipeline to the size
            p = replace(p, eval_resize=p.size)
        p = replace(p, mean=p.mean if mean is None else tuple(mean), std=p.std if std is None else tuple(std))
        return p, family

    # ------------------------------------------------------------------ the listing
    def _split_dir(self, split: Literal["train", "test"]) -> Path:
        return self.data_dir / (self.train_folder if split == "train" else self.test_folder)

    @property
    def classes(self) -> list[str]:
        """The class names, ``classes[i]`` for label ``i``: the sub-folders of ``train/``."""
        if self._classes is None:
            self._check_root()
            self._classes = list_classes(self._split_dir("train"))
        return self._classes

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.classes)

    def _not_found(self, missing: Path) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"{self.dataset_name} not found: {missing} does not exist. Expected "
            f"{self._split_dir('train')}/<class>/<images> and {self._split_dir('test')}/<class>/<images>.")

    def _check_root(self) -> None:
        for split in ("train", "test"):
            if not self._split_dir(split).is_dir():
                raise self._not_found(self._split_dir(split))

    def _scan(self, split: Literal["train", "test"]) -> tuple[list[str], list[int]]:
        if split not in self._scans:
            self._check_root()
            if split == "test":
                self._check_same_classes()
            self._scans[split] = scan_split(self._split_dir(split), self.classes)
        return self._scans[split]

    def _check_same_classes(self) -> None:
        test_dir = self._split_dir("test")
        extra = sorted(set(list_classes(test_dir)) - set(self.classes))
        if extra:
            raise DatasetLayoutError(
                f"{test_dir} has class folders that {self._split_dir('train')} lacks: {', '.join(extra[:10])}"
                + (f" and {len(extra) - 10} more" if len(extra) > 10 else ""))

    # ----------------------------------------------------------------- base hooks
    def _check_available(self) -> None:
        self._scan("train")
        self._scan("test")

    def _download(self) -> None:
        raise self._not_found(self.data_dir)

    def prepare_data(self) -> None:
        self._check_available()  # nothing to download: fail now, naming the expected path

    def _load_split(self, split: Literal["train", "test"]) -> Dataset:
        paths, targets = self._scan(split)
        return ImageFiles(paths, targets, self.classes)

    def _count_train(self) -> int:
        return len(self._scan("train")[0])

    @property
    def num_train_samples(self) -> int:  # type: ignore[override]
        """Images in ``train/`` (less any held-out part), from the listing; the folder must exist."""
        return self._after_subset(self._count_train())

    def _check_one_image_size(self) -> None:
        """Read every training image's header (not its pixels): they must share one size."""
        if self._one_size_checked:
            return
        first: tuple[str, tuple[int, int]] | None = None
        for path in _paths_of(self.train_split()):
            try:
                with Image.open(path) as image:
                    size = image.size
            except (OSError, ValueError, SyntaxError) as err:
                raise ImageLoadError(f"cannot read image {path}: {err}") from err
            if first is None:
                first = (path, size)
            elif size != first[1]:
                raise ValueError(f"device_augmentation needs training images of one size, but {first[0]} is "
                                 f"{first[1][0]}x{first[1][1]} and {path} is {size[0]}x{size[1]}: use the CPU "
                                 "pipeline (device_augmentation false) or resize the images")
        self._one_size_checked = True

    def describe(self) -> dict:
        info = super().describe()
        info.update(preset=self.preset, image_size=self.augmentation.size,
                    num_test_samples=len(self._scan("test")[0]))
        return info


#: training images whose shorter side is at most this many pixels get the CIFAR family (at their own size)
SMALL_IMAGE_SIDE = 64


def detect_family(train_dir: Path) -> tuple[str, int] | None:
    """(``"cifar"``, side) when the first image of ``train_dir``'s first class is small, else None.

    One image header is read (not its pixels). None as well when the folder holds no image
    yet: the listing's own checks report that later, naming the folder.
    """
    try:
        classes = sorted(entry.name for entry in os.scandir(train_dir) if entry.is_dir())
        first = next((f for c in classes for f in _images_under(train_dir / c)), None)
        if first is None:
            return None
        with Image.open(first) as image:
            side = min(image.size)
    except (OSError, ValueError, SyntaxError):
        return None
    return ("cifar", side) if side <= SMALL_IMAGE_SIDE else None


def _paths_of(dataset: Dataset) -> list[str]:
    """The image files of an :class:`ImageFiles` dataset or of a (nested) ``Subset`` of one, in order."""
    if isinstance(dataset, Subset):
        parent = _paths_of(dataset.dataset)
        return [parent[i] for i in dataset.indices]
    return list(dataset.paths)
