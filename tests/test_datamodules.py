"""The datamodules on data written in each dataset's on-disk format: contract, splits, bad data, configs."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from PIL import Image, ImageFile
from PIL.ImageFilter import GaussianBlur as ImageFilterBlur
from torch.utils.data import DataLoader

from datamodules import (CIFAR100DataModule, DatasetLayoutError, DatasetNotFoundError, ImageFolderDataModule,
                         ImageLoadError, ImageNet100DataModule, SVHNDataModule)
from datamodules import transforms as T
from datamodules.base import ContrastiveDataModule
from datamodules.imagenet import CLASS_LIST, read_class_list
from tests.conftest import ROOT
from tests.fakedata import _fine_labels, load_subset, write_cifar100, write_image_folder, write_svhn

CMC_FIRST_TEN = ["n02869837", "n01749939", "n02488291", "n02107142", "n13037406",
                 "n02091831", "n04517823", "n04589890", "n03062245", "n01773797"]
EXTRA_WNIDS = ["n01440764", "n01443537", "n09999999"]  # in the folder, not in the CMC list
FOLDER_CLASSES = ["cat", "dog", "ship"]


# ---------------------------------------------------------------------------- data on disk
@pytest.fixture(scope="module")
def cifar100_dir(tmp_path_factory) -> Path:
    return write_cifar100(tmp_path_factory.mktemp("cifar100"), n_train=500, n_test=200)


@pytest.fixture(scope="module")
def svhn_dir(tmp_path_factory) -> Path:
    return write_svhn(tmp_path_factory.mktemp("svhn"), n_train=500, n_test=200)


@pytest.fixture(scope="module")
def folder_dir(tmp_path_factory) -> Path:
    """3 classes x 8 JPEGs of 40x30 pixels per split."""
    return write_image_folder(tmp_path_factory.mktemp("folder"), FOLDER_CLASSES, 8, size=(40, 30))


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory) -> Path:
    """An ImageNet-like folder: the 100 CMC classes plus 3 others, 2 train / 1 val image each."""
    root = tmp_path_factory.mktemp("imagenet")
    classes = read_class_list(CLASS_LIST) + EXTRA_WNIDS
    write_image_folder(root, classes, 2, size=48, splits=("train",))
    write_image_folder(root, classes, 1, size=48, splits=("val",))
    return root


def make(kind: str, root: Path, **kwargs) -> ContrastiveDataModule:
    kwargs.setdefault("num_workers", 0)
    kwargs.setdefault("batch_size", 16)
    if kind == "cifar100":
        return CIFAR100DataModule(str(root), verify_checksums=False, **kwargs)
    if kind == "svhn":
        return SVHNDataModule(str(root), verify_checksums=False, **kwargs)
    if kind == "folder":
        return ImageFolderDataModule(str(root), preset="cifar", image_size=32, **kwargs)
    return ImageNet100DataModule(str(root), image_size=64, **kwargs)  # 64: keeps the test fast


@pytest.fixture
def roots(cifar100_dir, svhn_dir, folder_dir, imagenet_dir) -> dict[str, Path]:
    return {"cifar100": cifar100_dir, "svhn": svhn_dir, "folder": folder_dir, "imagenet100": imagenet_dir}


def fake_trainer(world_size: int, rank: int = 0) -> SimpleNamespace:
    return SimpleNamespace(world_size=world_size, global_rank=rank, lightning_module=None, training=False)


def train_indices(dm: ContrastiveDataModule) -> list[int]:
    return [i for index, _, _ in dm.train_dataloader() for i in index.tolist()]


# ------------------------------------------------------------------------- batch contract
@pytest.mark.parametrize("kind,side", [("cifar100", 32), ("svhn", 32), ("folder", 32), ("imagenet100", 64)])
@pytest.mark.parametrize("num_views", [1, 2])
def test_batch_is_index_views_label(kind, side, num_views, roots):
    dm = make(kind, roots[kind], num_views=num_views, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    index, views, label = next(iter(dm.train_dataloader()))
    assert index.dtype == torch.int64 and index.shape == (8,)
    assert label.dtype == torch.int64 and label.shape == (8,)
    assert 0 <= int(label.min()) and int(label.max()) < dm.num_classes
    if num_views == 1:
        assert isinstance(views, torch.Tensor) and views.shape == (8, 3, side, side)
    else:
        assert isinstance(views, list) and len(views) == 2
        assert all(v.shape == (8, 3, side, side) and v.dtype == torch.float32 for v in views)
        assert not torch.equal(views[0], views[1])  # two independent augmentations
    assert dm.labels("train").tolist() == [dm.train_split()[i][1] for i in range(len(dm.train_split()))]


@pytest.mark.parametrize("kind", ["svhn", "folder"])
@pytest.mark.parametrize("val_fraction", [0.0, 0.2])
def test_every_training_index_once_per_epoch_and_it_addresses_its_image(kind, val_fraction, roots):
    dm = make(kind, roots[kind], batch_size=32, val_fraction=val_fraction, augmentation="none")
    dm.setup("fit")
    n = dm.num_train_samples
    full = len(dm._raw("train"))
    assert n == full - int(full * val_fraction)
    seen, checked = [], 0
    eval_tf = dm.eval_transform()
    for index, views, _ in dm.train_dataloader():
        seen += index.tolist()
        for row in range(0, len(index), 7):  # the views are those of the image at that index
            assert torch.equal(views[row], eval_tf(dm.train_split()[int(index[row])][0]))
            checked += 1
    assert sorted(seen) == list(range(n)) and checked > 0
    if val_fraction:
        train_idx, held_idx = dm._train_indices()
        assert set(train_idx).isdisjoint(held_idx) and len(train_idx) + len(held_idx) == full
        assert sum(len(i) for i, _, _ in dm.val_dataloader()) == len(held_idx)


def test_global_batch_is_split_over_the_processes(svhn_dir):
    seen = []
    for rank in (0, 1):
        dm = make("svhn", svhn_dir, batch_size=128, augmentation="none")
        dm.trainer = fake_trainer(2, rank)
        dm.setup("fit")
        assert dm.per_device_batch_size == 64
        loader = dm.train_dataloader()
        assert loader.batch_size == 64
        seen += train_indices(dm)
    assert sorted(seen) == list(range(500))  # the two shards cover the epoch exactly once


def test_global_batch_not_divisible_by_the_processes_fails_in_setup(svhn_dir):
    dm = make("svhn", svhn_dir, batch_size=127)
    dm.trainer = fake_trainer(2)
    with pytest.raises(ValueError, match="batch_size=127.*divisible"):
        dm.setup("fit")


# -------------------------------------------------------------------------- CIFAR-100, SVHN
def test_cifar100_sizes_labels_and_pixels(cifar100_dir):
    dm = make("cifar100", cifar100_dir)
    dm.setup("fit")
    subset = load_subset()
    assert dm.num_classes == 100 and dm.num_train_samples == 500 and len(dm._raw("test")) == 200
    assert dm.labels("train").tolist() == _fine_labels(subset["y_train"][:500]).tolist()
    assert set(dm.labels("train").tolist()) == set(range(100))
    assert 0 <= int(dm.labels("test").min()) and int(dm.labels("test").max()) <= 99
    assert np.array_equal(np.asarray(dm._raw("train")[3][0]), subset["x_train"][3])
    assert dm._raw("train").classes[:3] == ["apple", "aquarium_fish", "baby"]


def test_svhn_sizes_labels_and_pixels(svhn_dir):
    dm = make("svhn", svhn_dir)
    assert dm.num_train_samples == 500
    assert "train" not in dm._splits  # counted from the .mat header, pixels not read
    dm.setup("fit")
    subset = load_subset()
    assert dm.num_classes == 10 and len(dm._raw("train")) == 500 and len(dm._raw("test")) == 200
    labels = dm.labels("train")
    assert labels.tolist() == subset["y_train"][:500].tolist()  # digit 0 was stored as 10
    assert (subset["y_train"][:500] == 0).any() and int(labels.min()) == 0 and int(labels.max()) == 9
    assert dm.labels("test").tolist() == subset["y_test"][:200].tolist()
    for i in (0, 123):
        assert np.array_equal(np.asarray(dm._raw("train")[i][0]), subset["x_train"][i])
    assert dm.official_train_size == 73_257 and dm.preset == "svhn"


def test_svhn_checksums_are_checked_by_default(svhn_dir):
    dm = SVHNDataModule(str(svhn_dir), num_workers=0)
    with pytest.raises(DatasetNotFoundError, match="MD5.*verify_checksums=False") as err:
        dm.setup("fit")
    assert str(svhn_dir / "train_32x32.mat") in str(err.value)


def test_svhn_labels_outside_1_to_10_are_an_error(tmp_path):
    from scipy.io import savemat

    x = np.zeros((32, 32, 3, 2), np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[3], [11]], np.uint8)})
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[1], [10]], np.uint8)})
    with pytest.raises(ValueError, match=r"train_32x32.mat has labels outside 1..10.*\[11\]"):
        make("svhn", tmp_path).setup("fit")


# ------------------------------------------------------------------------------ ImageNet-100
def test_shipped_class_list_is_cmcs():
    wnids = read_class_list(CLASS_LIST)
    assert len(wnids) == 100 and len(set(wnids)) == 100
    assert wnids[:10] == CMC_FIRST_TEN and wnids[-1] == "n02090622"
    assert CLASS_LIST.read_text() == "\n".join(wnids) + "\n"  # one wnid per line, nothing else


def test_imagenet100_keeps_the_listed_classes_in_list_order(imagenet_dir):
    dm = make("imagenet100", imagenet_dir)
    dm.setup("fit")
    wnids = read_class_list(CLASS_LIST)
    assert dm.num_classes == 100 and dm.classes == wnids
    assert dm.num_train_samples == 200 and len(dm._raw("test")) == 100
    for split in ("train", "test"):
        data = dm._raw(split)
        folders = [Path(p).parent.name for p in data.paths]
        assert [wnids[t] for t in data.targets] == folders  # label i is the list's i-th wnid
        assert not set(folders) & set(EXTRA_WNIDS)
    assert dm._raw("train").targets[:2] == [0, 0] and Path(dm._raw("train").paths[0]).parent.name == "n02869837"


def test_imagenet100_folder_with_only_the_listed_classes(tmp_path):
    wnids = ["n02869837", "n01749939", "n02488291"]
    (tmp_path / "list.txt").write_text("# a comment\n" + "\n".join(wnids) + "\n\n")
    write_image_folder(tmp_path / "in", wnids, 2, size=40)
    dm = ImageNet100DataModule(str(tmp_path / "in"), class_list=str(tmp_path / "list.txt"), num_workers=0)
    assert dm.num_classes == 3 and dm.num_train_samples == 6
    assert dm._raw("train").targets == [0, 0, 1, 1, 2, 2]  # list order, not sorted (n017... < n024... < n028...)


@pytest.mark.parametrize("split", ["train", "val"])
def test_imagenet100_wnid_missing_from_a_split_is_named(tmp_path, split):
    wnids = ["n02869837", "n01749939", "n02488291"]
    (tmp_path / "list.txt").write_text("\n".join(wnids) + "\n")
    write_image_folder(tmp_path / "in", wnids, 1, size=40, splits=("train",) if split == "val" else ("val",))
    write_image_folder(tmp_path / "in", wnids[:2], 1, size=40, splits=(split,))
    dm = ImageNet100DataModule(str(tmp_path / "in"), class_list=str(tmp_path / "list.txt"), num_workers=0)
    with pytest.raises(DatasetLayoutError) as err:
        dm.setup("fit")
    assert str(tmp_path / "in" / split / "n02488291") in str(err.value)
    assert "list.txt" in str(err.value)


def test_imagenet100_loose_validation_images_get_a_hint(tmp_path):
    wnids = ["n02869837"]
    (tmp_path / "list.txt").write_text("n02869837\n")
    write_image_folder(tmp_path / "in", wnids, 1, size=40, splits=("train",))
    (tmp_path / "in" / "val").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DatasetLayoutError, match="valprep"):
        ImageNet100DataModule(str(tmp_path / "in"), class_list=str(tmp_path / "list.txt")).setup("fit")


def test_bad_class_lists_are_rejected(tmp_path):
    (tmp_path / "dup.txt").write_text("n02869837\nn01749939\nn02869837\n")
    with pytest.raises(ValueError, match="repeats n02869837"):
        ImageNet100DataModule(str(tmp_path), class_list=str(tmp_path / "dup.txt"))
    (tmp_path / "odd.txt").write_text("n02869837\ncat\n")
    with pytest.raises(ValueError, match="not WordNet ids.*cat"):
        ImageNet100DataModule(str(tmp_path), class_list=str(tmp_path / "odd.txt"))


def test_imagenet100_uses_the_imagenet_preset_at_224(imagenet_dir):
    dm = ImageNet100DataModule(str(imagenet_dir), num_workers=0)
    p = dm.augmentation_preset
    assert (p.size, p.blur, p.eval_resize, p.linear) == (224, True, 256, "crop")
    assert p.mean == T.IMAGENET_MEAN and p.std == T.IMAGENET_STD
    names = [type(op).__name__ for op in dm.transform_for("pretrain").transforms]
    assert names[0] == "RandomResizedCrop" and "RandomGaussianBlur" in names
    assert dm.eval_transform()(dm._raw("test")[0][0]).shape == (3, 224, 224)


def test_blur_matches_torchvisions_and_follows_the_per_image_seed():
    from torchvision.transforms.v2 import functional as F

    from datamodules.sampling import seeded

    image = Image.fromarray(load_subset()["x_train"][7]).resize((96, 96), Image.BICUBIC)
    ours = np.asarray(image.filter(ImageFilterBlur(1.5)), dtype=float)
    theirs = np.asarray(F.gaussian_blur(image, [23, 23], [1.5, 1.5]), dtype=float)
    assert np.abs(ours - theirs)[12:-12, 12:-12].mean() < 2.0  # PIL's box approximation, off by < 1%
    blur = T.RandomGaussianBlur(sigma=(0.1, 2.0), p=1.0)
    with seeded(3):
        first = np.asarray(blur(image))
    with seeded(3):
        again = np.asarray(blur(image))
    assert np.array_equal(first, again) and not np.array_equal(first, np.asarray(image))
    assert T.RandomGaussianBlur(p=0.0)(image) is image
    tensor = F.pil_to_tensor(image)
    assert blur(tensor).shape == tensor.shape


# ----------------------------------------------------------------------------- image folder
def test_image_folder_classes_sizes_and_overrides(folder_dir):
    dm = ImageFolderDataModule(str(folder_dir), preset="imagenet", image_size=48, mean=(0.5, 0.5, 0.5),
                               std=(0.25, 0.25, 0.25), num_workers=0)
    assert dm.classes == FOLDER_CLASSES and dm.num_classes == 3 and dm.num_train_samples == 24
    p = dm.augmentation_preset
    assert (p.size, p.eval_resize, p.mean, p.std, p.blur) == (48, 55, (0.5,) * 3, (0.25,) * 3, True)
    white = Image.new("RGB", (60, 50), (255, 255, 255))
    out = dm.eval_transform()(white)
    assert out.shape == (3, 48, 48) and torch.allclose(out, torch.full_like(out, 2.0))  # (1 - 0.5) / 0.25
    for stage in ("pretrain", "linear"):
        assert dm.transform_for(stage)(white).shape == (3, 48, 48)


def test_png_folder_reads_back_the_exact_pixels(tmp_path):
    root = write_image_folder(tmp_path, ["x", "y"], 3, ext="png")
    dm = ImageFolderDataModule(str(root), preset="cifar", num_workers=0)
    subset = load_subset()
    image, label = dm._raw("train")[3]  # class "y" gets CIFAR-10 class 1 pictures, the first one first
    assert label == 1 and image.mode == "RGB"
    assert np.array_equal(np.asarray(image), subset["x_train"][np.flatnonzero(subset["y_train"] == 1)[0]])


@pytest.mark.parametrize("preset", ["cifar", "svhn"])
def test_image_folder_with_a_32_pixel_preset_resizes_any_image(folder_dir, preset):
    dm = ImageFolderDataModule(str(folder_dir), preset=preset, num_workers=0)  # images are 40x30
    for stage in ("pretrain", "linear", "none"):
        assert dm.transform_for(stage)(dm._raw("train")[0][0]).shape == (3, 32, 32)


def test_unknown_preset_and_bad_normalisation_are_rejected(folder_dir):
    with pytest.raises(ValueError, match="unknown augmentation preset 'imagenette'"):
        ImageFolderDataModule(str(folder_dir), preset="imagenette")
    with pytest.raises(ValueError, match="mean must have 3 values"):
        ImageFolderDataModule(str(folder_dir), mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="std must be positive"):
        ImageFolderDataModule(str(folder_dir), std=(0.2, 0.0, 0.2))


# -------------------------------------------------------------------------------- bad data
@pytest.fixture
def small_folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "data", ["a", "b"], 2, size=40)


def folder_error(root: Path, error: type) -> str:
    with pytest.raises(error) as err:
        ImageFolderDataModule(str(root), num_workers=0).setup("fit")
    return str(err.value)


def test_missing_split_folder_is_named(small_folder):
    shutil.rmtree(small_folder / "val")
    assert str(small_folder / "val") in folder_error(small_folder, DatasetNotFoundError)


def test_missing_class_folder_in_val_is_named(small_folder):
    shutil.rmtree(small_folder / "val" / "b")
    assert str(small_folder / "val" / "b") + " is missing" in folder_error(small_folder, DatasetLayoutError)


def test_class_folder_only_in_val_is_named(small_folder):
    write_image_folder(small_folder, ["c"], 1, size=40, splits=("val",))
    assert "class folders that" in folder_error(small_folder, DatasetLayoutError)


def test_empty_class_is_named(small_folder):
    (small_folder / "train" / "c").mkdir()
    (small_folder / "train" / "c" / "notes.txt").write_text("not an image")
    assert str(small_folder / "train" / "c") + " holds no images" in folder_error(small_folder, DatasetLayoutError)


def test_unreadable_image_is_named_at_load_time(small_folder):
    bad = small_folder / "train" / "a" / "a_0.JPEG"
    bad.write_bytes(b"this is not a JPEG" * 10)
    dm = ImageFolderDataModule(str(small_folder), num_workers=0, batch_size=4, augmentation="none")
    dm.setup("fit")  # the listing is fine; the file is read when loaded
    with pytest.raises(ImageLoadError, match="cannot read image " + str(bad)):
        list(dm.train_dataloader())


@pytest.mark.parametrize("num_workers", [0, 1])
def test_truncated_jpeg_raises_instead_of_being_padded(small_folder, num_workers):
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    bad = small_folder / "val" / "b" / "b_1.JPEG"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 2 // 3])
    dm = ImageFolderDataModule(str(small_folder), num_workers=0, augmentation="none")
    dm.setup("fit")
    batches = iter(DataLoader(dm.test_dataloader().dataset, batch_size=4, num_workers=num_workers))
    try:
        with pytest.raises(ImageLoadError) as err:  # a worker re-raises it with the original message
            next(batches)
    finally:  # else the worker lingers until garbage collection, which then waits 5 s for it
        getattr(batches, "_shutdown_workers", lambda: None)()
    assert str(bad) in str(err.value) and "truncated" in str(err.value)


# -------------------------------------------------------------------- missing data, offline
def offline(*args, **kwargs):
    raise urllib.error.URLError("no network")


def test_svhn_missing_offline_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        SVHNDataModule(str(missing), download=False).prepare_data()
    assert str(missing) in str(err.value) and "train_32x32.mat" in str(err.value)
    assert "with internet access and --data.init_args.download=true" in str(err.value)  # the switch is off
    from torchvision.datasets import svhn as tv_svhn

    monkeypatch.setattr(tv_svhn, "download_url", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        SVHNDataModule(str(missing), download=True).prepare_data()
    assert str(missing) in str(err.value) and "download failed" in str(err.value) and "no network" in str(err.value)
    assert "run again with internet access" in str(err.value)
    assert "and --data.init_args.download=true" not in str(err.value)  # it is on already: not advised again


def test_cifar100_missing_offline_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        CIFAR100DataModule(str(missing), download=False).prepare_data()
    assert str(missing / "cifar-100-python") in str(err.value) and "cifar-100-python.tar.gz" in str(err.value)
    from torchvision.datasets import cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    assert "with internet access and --data.init_args.download=true" in str(err.value)  # the switch is off
    with pytest.raises(DatasetNotFoundError, match="download failed") as err:
        CIFAR100DataModule(str(missing), download=True).prepare_data()
    assert "run again with internet access" in str(err.value)
    assert "and --data.init_args.download=true" not in str(err.value)  # it is on already: not advised again


@pytest.mark.parametrize("download", [False, True])
def test_imagenet_missing_names_the_path_and_how_to_get_it(tmp_path, download):
    missing = tmp_path / "imagenet"
    dm = ImageNet100DataModule(str(missing), download=download)
    with pytest.raises(DatasetNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(missing / "train") in message and "image-net.org" in message and "cannot be downloaded" in message
    with pytest.raises(DatasetNotFoundError, match="image-net.org"):
        dm._download()
    with pytest.raises(DatasetNotFoundError, match=str(missing)):
        _ = dm.num_train_samples  # linked into the model at instantiation: fails there, not later


def test_image_folder_missing_names_the_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "none" / "train")):
        _ = ImageFolderDataModule(str(tmp_path / "none")).num_classes


# ------------------------------------------------------------------------------ the configs
DATA_CONFIGS = {
    "cifar10.yaml": ("datamodules.cifar.CIFAR10DataModule", "data/cifar10"),
    "cifar100.yaml": ("datamodules.cifar.CIFAR100DataModule", "data/cifar100"),
    "svhn.yaml": ("datamodules.svhn.SVHNDataModule", "data/svhn"),
    "imagenet100.yaml": ("datamodules.imagenet.ImageNet100DataModule", "data/imagenet"),
    "imagefolder.yaml": ("datamodules.folder.ImageFolderDataModule", "data/images"),
}


def test_every_data_config_is_shipped_and_of_the_common_form():
    shipped = sorted(p.name for p in (ROOT / "configs/data").glob("*.yaml"))
    assert shipped == sorted(DATA_CONFIGS)
    for name, (class_path, data_dir) in DATA_CONFIGS.items():
        text = (ROOT / "configs/data" / name).read_text()
        assert text.startswith("# ")
        data = yaml.safe_load(text)["data"]
        assert data["class_path"] == class_path
        assert data["init_args"]["data_dir"] == data_dir
        assert "batch_size" not in data["init_args"]  # the stage (base.yaml or eval/linear.yaml) sets it


def data_parser() -> ArgumentParser:
    """The ``data`` part of the CLI's parser: the shipped YAML files are read as ``-c`` files."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_subclass_arguments(ContrastiveDataModule, "data")
    return parser


@pytest.mark.parametrize("name,kind", [("cifar100.yaml", "cifar100"), ("svhn.yaml", "svhn"),
                                       ("imagenet100.yaml", "imagenet100"), ("imagefolder.yaml", "folder")])
def test_data_configs_parse_and_load_a_batch(name, kind, roots):
    parser = data_parser()
    overrides = [f"--data.init_args.data_dir={roots[kind]}", "--data.init_args.num_workers=0",
                 "--data.init_args.batch_size=4"]
    if kind in ("cifar100", "svhn"):
        overrides.append("--data.init_args.verify_checksums=false")
    if kind in ("imagenet100", "folder"):
        overrides += ["--data.init_args.image_size=32",  # the shipped preset, small for speed
                      "--data.init_args.mean=[0.5, 0.5, 0.5]"]
    cfg = parser.parse_args(["--config", str(ROOT / "configs/data" / name), *overrides])
    dm = parser.instantiate_classes(cfg).data
    if kind in ("imagenet100", "folder"):
        assert dm.augmentation_preset.mean == (0.5, 0.5, 0.5) and dm.augmentation_preset.size == 32
    expected = {"cifar100": 100, "svhn": 10, "imagenet100": 100, "folder": 3}[kind]
    assert dm.num_classes == expected
    dm.setup("fit")
    index, views, label = next(iter(dm.train_dataloader()))
    assert views.shape == (4, 3, 32, 32) and index.shape == label.shape == (4,)


def test_a_typo_in_a_data_config_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    config = yaml.safe_load((ROOT / "configs/data/imagefolder.yaml").read_text())
    config["data"]["init_args"]["imgae_size"] = 64
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(Exception, match="imgae_size"):
        data_parser().parse_args(["--config", str(bad)])


def test_image_folder_config_trains_through_the_cli(folder_dir, tmp_path):
    import cli  # the whole suite: links num_train_samples and num_classes into the model

    args = ["fit"] + [a for c in ("base", "model/small", "logger/csv", "trainer/cpu", "data/imagefolder")
                      for a in ("-c", str(ROOT / f"configs/{c}.yaml"))]
    args += [f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}",
             "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
             "--trainer.enable_model_summary=false", f"--data.init_args.data_dir={folder_dir}",
             "--data.init_args.num_workers=0", "--data.init_args.batch_size=8", "--data.init_args.eval_batch_size=32",
             "--data.init_args.preset=cifar", "--data.init_args.image_size=32"]
    run = cli.main(args)
    assert run.trainer.global_step == 2
    assert (run.model.hparams["num_samples"], run.model.hparams["num_classes"]) == (24, 3)


# ------------------------------------------------------------------------- train_subset / test_subset
@pytest.mark.parametrize("kind", ["cifar100", "svhn", "folder", "imagenet100"])
def test_subsets_keep_the_first_n_images_of_each_split(kind, roots):
    full = make(kind, roots[kind])
    full.setup("fit")
    n_train, n_test = len(full.train_split()) - 3, len(full._raw("test")) - 1
    sub = make(kind, roots[kind], train_subset=n_train, test_subset=n_test)
    sub.setup("fit")
    assert sub.num_train_samples == n_train
    assert len(sub.train_split()) == n_train and len(sub._raw("test")) == n_test
    assert sub.labels("train").tolist() == full.labels("train").tolist()[:n_train]
    assert sub.labels("test").tolist() == full.labels("test").tolist()[:n_test]
    # the same pictures, in the official order
    for split, i in (("train", n_train - 1), ("test", n_test - 1)):
        a, b = sub._raw(split)[i][0], full._raw(split)[i][0]
        assert list(a.getdata()) == list(b.getdata())
    assert sorted(train_indices(sub)) == list(range(n_train))
    eval_batches = list(sub.eval_dataloader("test"))
    assert sum(len(idx) for idx, _, _ in eval_batches) == n_test


def test_a_subset_larger_than_the_split_names_the_split_size(svhn_dir):
    dm = make("svhn", svhn_dir, train_subset=10**6)
    with pytest.raises(ValueError, match=r"train_subset=1000000 .* has only \d+ images"):
        dm.setup("fit")


@pytest.mark.parametrize("value", [0, -5, 2.5, True])
def test_bad_subset_values_are_errors(value, svhn_dir):
    with pytest.raises(ValueError, match="test_subset must be an integer >= 1"):
        make("svhn", svhn_dir, test_subset=value)


def test_cifar10_subset_of_4000_and_1000_is_the_first_images_of_the_official_files(cifar_subset):
    from datamodules.cifar import CIFAR10DataModule
    from tests.fakedata import load_subset

    dm = CIFAR10DataModule(str(cifar_subset), verify_checksums=False, train_subset=300, test_subset=50)
    dm.setup("fit")
    data = load_subset()
    assert dm.labels("train").tolist() == data["y_train"][:300].tolist()
    assert np.asarray(dm._raw("test")[49][0]).tolist() == data["x_test"][49].tolist()
    assert dm.num_train_samples == 300
