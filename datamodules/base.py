"""The datamodule base class every dataset builds on.

The batch contract (``(index, views, label)`` batches, :class:`IndexedDataset`,
:func:`as_views`) lives in :mod:`datamodules.batch`; it is re-exported here for old imports.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from datamodules import transforms as T
from datamodules.batch import (BatchProvider, IndexedDataset, IndexOnly, InMemoryImages, SeededKeys, SeededOrder, as_views,
                              collate_batch)
from datamodules.sampling import ShardedEpochSampler

__all__ = ["ContrastiveDataModule", "DatasetNotFoundError", "IndexedDataset", "as_views"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is missing on disk and could not be downloaded."""


def refuse_image_folder(data_dir: Path, dataset_name: str) -> None:
    """An image folder (``train/<class>/<images>``) given to a datamodule of packed files is an error saying which to use.

    Called where the dataset's own files are missing, before any download would write them
    into someone's image folder.
    """
    train = Path(data_dir) / "train"
    if train.is_dir() and any(entry.is_dir() for entry in os.scandir(train)):
        raise ValueError(f"{data_dir} is a folder of images (train/<class>/<images>), not {dataset_name}'s files: "
                         "use -c configs/data/imagefolder.yaml (ImageFolderDataModule) with "
                         f"--data.init_args.data_dir={data_dir}")


#: which pipeline the training loader applies: ``auto`` follows the module's request
TrainPipeline = Literal["auto", "pretrain", "linear", "none"]
#: the old name of :data:`TrainPipeline` (the ``augmentation`` argument used to take these values)
AugmentationChoice = TrainPipeline


def split_augmentation(augmentation: T.Augmentation | str | None, train_pipeline: str
                       ) -> tuple[T.Augmentation | None, str]:
    """(pipeline values, training pipeline) from the ``augmentation`` and ``train_pipeline`` arguments.

    ``augmentation`` used to name the training pipeline (``auto``, ``pretrain``, ``linear``,
    ``none``); such a string still works, as ``train_pipeline``, with a DeprecationWarning.
    """
    if train_pipeline not in ("auto", "pretrain", "linear", "none"):
        raise ValueError(f"train_pipeline must be auto, pretrain, linear or none, got {train_pipeline!r}")
    if not isinstance(augmentation, str):
        return augmentation, train_pipeline
    if augmentation not in ("auto", "pretrain", "linear", "none"):
        raise ValueError(f"augmentation must be the pipeline's values (datamodules.transforms.Augmentation) or, "
                         f"as before, a training pipeline name (auto, pretrain, linear, none); got {augmentation!r}")
    if train_pipeline != "auto" and train_pipeline != augmentation:
        raise ValueError(f"augmentation={augmentation!r} (the old name of train_pipeline) and "
                         f"train_pipeline={train_pipeline!r} disagree: give train_pipeline only")
    warnings.warn(f"augmentation={augmentation!r} names the training pipeline, which is now train_pipeline: "
                  f"write train_pipeline: {augmentation}", DeprecationWarning, stacklevel=3)
    return None, augmentation


class ContrastiveDataModule(BatchProvider, pl.LightningDataModule):
    """Base class: loaders with the batch contract, the per-device batch split and a held-out split.

    Batches follow :mod:`datamodules.batch`; the training order and each image's augmentation
    follow :mod:`datamodules.sampling`; the pipelines are the paper's (Wang & Liu 2021,
    arXiv:2012.09740, section 5.1, after Wu et al. 2018, arXiv:1805.01978).

    Subclasses implement :meth:`_load_split` (returns the raw ``(image, label)`` dataset of
    ``"train"`` or ``"test"``), :meth:`_check_available` and set :attr:`num_classes`,
    :attr:`dataset_name` and :attr:`preset` (the family whose values are the default
    ``augmentation``; a subclass repeats that default in its signature, so that
    ``--print_config`` shows it).

    Args:
        data_dir: folder holding (or receiving) the dataset files.
        batch_size: the GLOBAL batch size; each of the ``world_size`` processes loads
            ``batch_size // world_size`` images per step.
        eval_batch_size: global batch size of the non-augmented loaders (metrics, test).
        num_workers: data-loading worker processes per device.
        num_views: augmented views per image and step (1 for a memory bank, 2 for
            in-batch or queue negatives).
        augmentation: every value of the pipelines (:class:`~datamodules.transforms.Augmentation`:
            crop, colour jitter, grayscale, flip, blur, normalisation, size); None is the
            dataset family's (:attr:`preset`). The CPU and the device pipeline both read it.
            A pipeline name (``auto``, ``pretrain``, ``linear``, ``none``), this argument's
            old meaning, still works as ``train_pipeline`` (deprecated).
        flip: deprecated alias of ``augmentation.flip``; None keeps the augmentation's.
        val_fraction: fraction of the training split held out (stratified by nothing,
            a seeded random subset) as a validation split for model selection; 0 uses
            the test split for validation, as the paper's code did.
        split_seed: seed of the held-out split.
        sampling_seed: seed of the training order and of every image's augmentation
            (see :mod:`datamodules.sampling`); None takes ``seed_everything``'s.
        download: download the dataset in ``prepare_data`` when it is missing.
        pin_memory: pin host memory in the loaders (faster host-to-GPU copies).
        drop_last: drop the last incomplete training batch.
        train_subset: keep only the first ``train_subset`` images of the official training
            split (in the official order), e.g. 4000 for a CPU-sized reproduction; None
            keeps all. The held-out split (``val_fraction``) is taken from this subset.
        test_subset: keep only the first ``test_subset`` images of the official test split.
        device_augmentation: load the training images as uint8 and apply the pretraining
            augmentation on the accelerator, batched with per-image parameters
            (:class:`~datamodules.gpu_augment.DeviceAugmentation`, built from the same
            ``augmentation``); for training images of one size (CIFAR, SVHN, such image
            folders) and a recipe without blur. Same distribution as the CPU pipeline,
            different random streams.
        train_pipeline: the training loader's pipeline: ``pretrain`` (the paper's
            contrastive views), ``linear`` (the linear-evaluation augmentation), ``none``
            (the evaluation transform) or ``auto`` (whatever the LightningModule asks for
            through :meth:`~datamodules.batch.BatchProvider.request_train_pipeline`;
            ``pretrain`` if it says nothing). A module that trains on cached features
            asks for ``features``: the loader then yields only indices.

    Example:
        >>> from datamodules.cifar import CIFAR10DataModule
        >>> dm = CIFAR10DataModule("data/cifar10", batch_size=128, num_views=2, train_pipeline="pretrain")
        >>> dm.per_device_batch_size, dm.num_views, dm.augmentation.flip
        (128, 2, True)
    """

    num_classes: int = 0
    dataset_name: str = "dataset"
    #: official training-split size, used for linking before the files exist
    official_train_size: int = 0

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 4,
        num_views: int = 1,
        augmentation: T.Augmentation | TrainPipeline | None = None,
        flip: bool | None = None,
        val_fraction: float = 0.0,
        split_seed: int = 0,
        sampling_seed: int | None = None,
        download: bool = True,
        pin_memory: bool = True,
        drop_last: bool = False,
        device_augmentation: bool = False,
        train_subset: int | None = None,
        test_subset: int | None = None,
        train_pipeline: TrainPipeline = "auto",
    ) -> None:
        super().__init__()
        augmentation, train_pipeline = split_augmentation(augmentation, train_pipeline)
        if augmentation is None:
            augmentation = T.get_preset(self.preset)
        if flip is not None:
            augmentation = replace(augmentation, flip=flip)
        for name, value in (("train_subset", train_subset), ("test_subset", test_subset)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 (the first n images of the split) or null, "
                                 f"got {value!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {eval_batch_size}")
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.data_dir = Path(data_dir).expanduser().absolute()  # absolute: error messages name the real place
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.num_views = num_views
        #: every value of the pipelines; transform_for and the device augmentation read it
        self.augmentation: T.Augmentation = augmentation
        self.train_pipeline = train_pipeline
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.sampling_seed = sampling_seed
        self.download = download
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.device_augmentation = device_augmentation
        self.train_subset = train_subset
        self.test_subset = test_subset
        self._device_aug: Any = None
        self._splits: dict[str, Dataset] = {}
        self._memory: dict[str, torch.Tensor | None] = {}  # split -> its uint8 pixels (_in_memory_images)

    # ----------------------------------------------------------------- subclass API
    def _load_split(self, split: Literal["train", "test"]) -> Dataset:
        """Return the raw ``(PIL image, label)`` dataset of ``split``."""
        raise NotImplementedError

    def _check_available(self) -> None:
        """Raise :class:`DatasetNotFoundError` naming the expected path if files are missing."""
        raise NotImplementedError

    def _download(self) -> None:
        """Fetch the dataset files (called by ``prepare_data`` when they are missing)."""
        raise NotImplementedError

    def _is_available(self) -> bool:
        try:
            self._check_available()
        except DatasetNotFoundError:
            return False
        return True

    def _count_train(self) -> int:
        """Number of images of the full training split on disk (subclasses may do it cheaper)."""
        return len(self._raw("train"))

    def transform_for(self, stage: Literal["pretrain", "linear", "none"]) -> Callable:
        """The training transform of ``stage`` for this dataset."""
        return T.build(self.augmentation, stage)

    #: the dataset family whose values (:data:`datamodules.transforms.PRESETS`) are the default augmentation
    preset: str = "cifar"

    @property
    def augmentation_preset(self) -> T.Augmentation:
        """The old name of :attr:`augmentation`."""
        return self.augmentation

    @property
    def flip(self) -> bool:
        """Whether the pretraining view flips (``augmentation.flip``)."""
        return self.augmentation.flip

    # ------------------------------------------------------------------ properties
    @property
    def num_train_samples(self) -> int:
        """Size of the training split the model trains on (after any held-out split).

        Read from disk when the files are there; before the download it is the
        official size, which :meth:`setup` checks once the files exist.
        """
        full = self._count_train() if self._is_available() else self.official_train_size
        return self._after_subset(full)

    def _after_subset(self, full: int) -> int:
        """Training images left of ``full`` after ``train_subset`` and the held-out part."""
        if self.train_subset is not None:
            full = min(full, self.train_subset)
        return full - self._num_held_out(full)

    def _num_held_out(self, full: int) -> int:
        return int(math.floor(full * self.val_fraction))

    @property
    def world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.world_size if trainer is not None else 1

    @property
    def global_rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.global_rank if trainer is not None else 0

    @property
    def seed(self) -> int:
        """Base seed of the training order and augmentations: ``seed_everything``'s unless set."""
        if self.sampling_seed is not None:
            return self.sampling_seed
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    @property
    def per_device_batch_size(self) -> int:
        return self._split_batch(self.batch_size, "batch_size")

    @property
    def per_device_eval_batch_size(self) -> int:
        return max(1, self.eval_batch_size // self.world_size)

    def _split_batch(self, global_size: int, name: str) -> int:
        world = self.world_size
        if global_size % world:
            raise ValueError(
                f"{name}={global_size} is the global batch size and must be divisible by the "
                f"number of processes ({world}); choose a multiple of {world}."
            )
        return global_size // world

    # ------------------------------------------------------------------- lifecycle
    def prepare_data(self) -> None:
        if self._is_available():
            return
        if not self.download:
            self._check_available()  # raises with the expected path
        try:
            self._download()
        except Exception as err:  # urllib, ssl, socket, http errors: all mean "not here"
            try:
                self._check_available()
            except DatasetNotFoundError as missing:
                raise DatasetNotFoundError(f"{missing}\nThe download failed: {err!r}") from None
            raise

    def _raw(self, split: Literal["train", "test"]) -> Dataset:
        """The split as the suite sees it: the first ``train_subset``/``test_subset`` images when set."""
        if split not in self._splits:
            self._check_available()
            data = self._load_split(split)
            n = self.train_subset if split == "train" else self.test_subset
            if n is not None:
                if n > len(data):
                    raise ValueError(f"{split}_subset={n} but the {self.dataset_name} {split} split in "
                                     f"{self.data_dir} has only {len(data)} images; choose at most {len(data)}")
                data = Subset(data, range(n))
            self._splits[split] = data
        return self._splits[split]

    def setup(self, stage: str | None = None) -> None:
        self._check_available()
        self._raw("train")
        self._raw("test")
        _ = self.per_device_batch_size  # fail now, not at the first batch, on a bad split

    def _array_images(self, split: Literal["train", "test"]) -> torch.Tensor | None:
        """The whole raw ``split`` as one (N, C, H, W) uint8 tensor when the dataset holds it as an array, else None.

        Subclasses whose dataset keeps its pixels in memory (CIFAR, SVHN) return them, in
        the order and with the pixels of ``to_uint8_tensor(dataset[i][0])``; the default
        (image folders) returns None and the images are read one by one.
        """
        return None

    def _in_memory_images(self, split: Literal["train", "test"]) -> torch.Tensor | None:
        """(N, C, H, W) uint8 of :meth:`train_split` (``train``) or the test split, or None (see :meth:`_array_images`)."""
        if split not in self._memory:
            images = self._array_images(split)
            if images is not None:
                data = self.train_split() if split == "train" else self._raw("test")
                index = _subset_positions(data)
                images = images.contiguous() if index is None else images[torch.as_tensor(index, dtype=torch.long)]
            self._memory[split] = images
        return self._memory[split]

    def _train_indices(self) -> tuple[list[int] | None, list[int] | None]:
        """(train, held-out) positions in the full training split; None, None without a held-out split."""
        full = len(self._raw("train"))
        held = self._num_held_out(full)
        if held == 0:
            return None, None
        perm = torch.randperm(full, generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        return sorted(perm[held:]), sorted(perm[:held])

    def train_split(self) -> Dataset:
        """The raw training images the model trains on (the held-out ones removed)."""
        train_idx, _ = self._train_indices()
        raw = self._raw("train")
        return raw if train_idx is None else Subset(raw, train_idx)

    def _resolve_stage(self) -> str:
        if self.train_pipeline != "auto":
            return self.train_pipeline
        return self._requested_pipeline  # what the module asked for (request_train_pipeline), else pretrain

    # ------------------------------------------------------------------- loaders
    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, drop_last: bool = False,
                sampler: Any = None, generator: torch.Generator | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            collate_fn=collate_batch,
            batch_size=batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            drop_last=drop_last,
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )

    #: side of every image of the dataset when they all share one (device augmentation needs it)
    fixed_image_size: int | None = None

    def _check_one_image_size(self) -> None:
        """Raise unless every training image has the same size (a batch of them must stack)."""
        if self.fixed_image_size is None:
            raise ValueError(f"device_augmentation needs training images of one size, and {type(self).__name__} "
                             "does not declare one (fixed_image_size): use the CPU pipeline")

    def _device_augmentation(self, stage: str) -> Any:
        """The :class:`DeviceAugmentation` of the training loader, or None when the CPU pipeline runs."""
        if not self.device_augmentation or stage != "pretrain":
            return None
        if self.augmentation.blur:
            raise ValueError(f"device_augmentation has no Gaussian blur, and {type(self).__name__}'s augmentation "
                             "has blur: true; use the CPU pipeline (device_augmentation false), or a recipe without "
                             "blur (--data.init_args.augmentation.blur false)")
        self._check_one_image_size()
        from datamodules.gpu_augment import DeviceAugmentation

        return DeviceAugmentation.from_augmentation(self.augmentation)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Apply the device-side augmentation to uint8 training batches (``device_augmentation``)."""
        if self._device_aug is None or not getattr(self.trainer, "training", False):
            return batch
        index, images, label = batch
        if images.dtype != torch.uint8:
            return batch
        views = [self._device_aug(images) for _ in range(self.num_views)]  # each (B, 3, s, s) float
        return index, views[0] if self.num_views == 1 else views, label

    def train_dataloader(self) -> DataLoader:
        stage = self._resolve_stage()
        self._device_aug = self._device_augmentation(stage)
        if self._device_aug is not None:
            # uint8 images; on_after_batch_transfer makes the views on the device. Pixels already in
            # memory are read a batch at a time: per-image reads cost more than the step on a CPU
            images = self._in_memory_images("train")
            if images is not None:
                dataset: Dataset = InMemoryImages(images, self.labels("train"))
            else:
                dataset = IndexedDataset(self.train_split(), T.to_uint8_tensor, num_views=1)
        elif stage == "features":
            # the module trains on features it computed once: the loader only draws indices
            dataset = IndexOnly(len(self.train_split()))
        else:
            dataset = IndexedDataset(self.train_split(), self.transform_for(stage), self.num_views)
        sampler = ShardedEpochSampler(len(dataset), self.batch_size, rank=self.global_rank,
                                      world_size=self.world_size, seed=self.seed, drop_last=self.drop_last,
                                      batches_done=self._batches_done_this_epoch)
        return self._loader(dataset, self.per_device_batch_size, shuffle=False, sampler=sampler)

    def _batches_done_this_epoch(self) -> int:
        """Batches of the current training epoch already trained on: non-zero only in an epoch resumed mid-way.

        Lightning restores its batch counter from a mid-epoch checkpoint (a requeued job's
        ``hpc_ckpt``) but iterates the loader from the start; the sampler skips this many.
        Read when the epoch's iteration starts, after Lightning has reset the counter (0 at a
        fresh epoch, the completed batches in a restarted one).
        """
        trainer = getattr(self, "trainer", None)
        if trainer is None or not trainer.training:
            return 0
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)

    def _eval_loader(self, dataset: Dataset, distributed: bool | None = None,
                     generator: torch.Generator | None = None) -> DataLoader:
        """In order; under data parallelism each process reads its shard (padded with repeats)."""
        distributed = self.world_size > 1 if distributed is None else distributed
        sampler = None
        if distributed:
            sampler = DistributedSampler(dataset, shuffle=False, num_replicas=self.world_size, rank=self.global_rank)
        return self._loader(dataset, self.per_device_eval_batch_size, shuffle=False, sampler=sampler,
                            generator=generator)

    def val_dataloader(self) -> DataLoader:
        _, held_idx = self._train_indices()
        if held_idx is None:
            return self.test_dataloader()
        return self._eval_loader(IndexedDataset(Subset(self._raw("train"), held_idx), self.eval_transform()))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(IndexedDataset(self._raw("test"), self.eval_transform()))

    def eval_transform(self) -> Callable:
        return T.build(self.augmentation, "none")

    def eval_dataloader(self, split: Literal["train", "test"], distributed: bool | None = None,
                        stage: Literal["none", "pretrain"] = "none", num_views: int = 1,
                        augmentation_seed: int = 0) -> DataLoader:
        """Loader over ``split`` for metrics, in dataset order; not augmented unless ``stage`` says so.

        ``train`` is the split the model trains on, so its indices address the memory
        bank. Under data parallelism each process reads its shard (``distributed``
        defaults to ``world_size > 1``); the sampler pads with repeated indices, which
        callers remove by scattering through the index. Augmented views are seeded per
        image by ``augmentation_seed`` and the index, whatever the process count.
        """
        data = self.train_split() if split == "train" else self._raw("test")
        transform = self.eval_transform() if stage == "none" else self.transform_for(stage)
        dataset: Dataset = IndexedDataset(data, transform, num_views)
        if stage != "none":
            dataset = SeededKeys(dataset, augmentation_seed)
        # its own generator: iterating it draws nothing from the global one, so a metrics pass on
        # another thread (EmbeddingMetrics(overlap=true)) leaves training's random stream alone
        return self._eval_loader(dataset, distributed, generator=torch.Generator())

    def background_eval_loader(self, split: Literal["train", "test"], num_views: int = 1, limit: int | None = None,
                               background: bool = True, prefetch_bytes: int = 1 << 30) -> DataLoader:
        """A loader of augmented (``pretrain``) views for metrics that works ahead in worker processes.

        The same batches as ``eval_dataloader(split, stage="pretrain", num_views=...,
        augmentation_seed=s)`` (the first ``limit`` images when given): set
        ``loader.sampler.seed = s`` and call ``iter(loader)``, and its workers (at least one,
        kept between passes) augment the whole pass while training goes on, up to
        ``prefetch_bytes`` of views ahead. ``background`` False: the datamodule's
        ``num_workers`` as they are (0: in this process, when iterated).
        """
        data = self.train_split() if split == "train" else self._raw("test")
        n = len(data) if limit is None else min(limit, len(data))
        positions = list(range(n))
        if self.world_size > 1:  # this process's shard, padded with repeats as in eval_dataloader
            positions = list(DistributedSampler(range(n), shuffle=False, num_replicas=self.world_size,
                                                rank=self.global_rank))
        dataset = IndexedDataset(data, self.transform_for("pretrain"), num_views)
        workers = max(1, self.num_workers) if background else self.num_workers
        batch = self.per_device_eval_batch_size
        prefetch = None
        if workers:
            view_bytes = sum(v.numel() * v.element_size() for v in as_views(dataset[(0, 0)][1]))
            batches = math.ceil(len(positions) / batch)
            prefetch = math.ceil(max(1, min(batches, prefetch_bytes // max(1, view_bytes * batch))) / workers)
        return DataLoader(dataset, batch_size=batch, sampler=SeededOrder(positions), num_workers=workers,
                          collate_fn=collate_batch, pin_memory=self.pin_memory and torch.cuda.is_available(),
                          persistent_workers=workers > 0, prefetch_factor=prefetch)

    @property
    def augments_in_memory(self) -> bool:
        """Whether :meth:`device_views` makes training views (device augmentation of pixels held in memory)."""
        return (self._device_augmentation(self._resolve_stage()) is not None
                and self._in_memory_images("train") is not None)

    def device_views(self, split: Literal["train", "test"], indices: torch.Tensor, seed: int,
                     device: torch.device | str, num_views: int = 1) -> list[torch.Tensor] | None:
        """``num_views`` views of images ``indices`` of ``split`` made as the training loader makes them, on ``device``.

        With ``device_augmentation`` (and the pixels in memory): the device augmentation of
        the uint8 images, every view drawn in turn from one generator seeded by ``seed``;
        otherwise None, and callers read :meth:`background_eval_loader` (the CPU pipeline,
        seeded per image).

        Returns:
            ``num_views`` float tensors (len(indices), C, H, W), or None.
        """
        if not self.augments_in_memory:
            return None
        images = self._in_memory_images(split)
        if images is None:
            return None
        if len(indices) == 0:
            return [images[:0].float() for _ in range(num_views)]
        augment = self._device_augmentation(self._resolve_stage())
        generator = torch.Generator(device=device).manual_seed(seed)
        images = images[indices.cpu()].to(device)  # (B, C, H, W) uint8
        return [augment(images, generator=generator) for _ in range(num_views)]  # each (B, C, H, W)

    def labels(self, split: Literal["train", "test"]) -> torch.Tensor:
        """The labels of ``split`` in index order, (N,) int64, read without decoding images."""
        data = self.train_split() if split == "train" else self._raw("test")
        return torch.as_tensor(_labels_of(data), dtype=torch.long)

    def describe(self) -> dict[str, Any]:
        """Provenance: the dataset's name, its location and the sizes of its splits."""
        return {
            "name": self.dataset_name,
            "data_dir": str(self.data_dir),
            "num_train_samples": self.num_train_samples,
            "num_classes": self.num_classes,
            "val_fraction": self.val_fraction,
        }


def _subset_positions(dataset: Dataset) -> list[int] | None:
    """Positions in the innermost dataset of a chain of :class:`Subset` (None: no Subset)."""
    if not isinstance(dataset, Subset):
        return None
    inner = _subset_positions(dataset.dataset)
    return [int(i) for i in dataset.indices] if inner is None else [inner[i] for i in dataset.indices]


def _labels_of(dataset: Dataset) -> list[int]:
    if isinstance(dataset, Subset):
        parent = _labels_of(dataset.dataset)
        return [parent[i] for i in dataset.indices]
    for name in ("targets", "labels"):
        values = getattr(dataset, name, None)
        if values is not None:
            return [int(v) for v in values]
    return [int(dataset[i][1]) for i in range(len(dataset))]  # generic fallback: decodes every image

