"""Augmentation is configuration: one dataclass read by the CPU and the device pipeline, shown and set by the CLI."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from torchvision.transforms import v2

from datamodules import transforms as T
from datamodules.base import ContrastiveDataModule
from datamodules.cifar import CIFAR10DataModule
from datamodules.folder import ImageFolderDataModule
from datamodules.gpu_augment import DeviceAugmentation
from datamodules.svhn import SVHNDataModule
from tests.conftest import ROOT
from tests.fakedata import write_image_folder


def cpu_parameters(aug: T.Augmentation) -> dict:
    """What the CPU pretraining pipeline built from ``aug`` does, read off its torchvision ops."""
    ops = {type(op).__name__: op for op in T.pretrain_transform(aug).transforms}
    jitter_p = 1.0
    if "RandomApply" in ops:
        jitter_p = ops["RandomApply"].p
        ops["ColorJitter"] = ops["RandomApply"].transforms[0]
    jitter = ops["ColorJitter"]
    crop = ops["RandomResizedCrop"]
    return {"size": tuple(crop.size), "scale": tuple(crop.scale), "ratio": tuple(crop.ratio),
            "jitter": jitter.brightness[1] - 1 if jitter.brightness else 0.0,
            "hue": jitter.hue[1] if jitter.hue else 0.0, "jitter_p": jitter_p,
            "grayscale_p": ops["RandomGrayscale"].p, "flip": "RandomHorizontalFlip" in ops,
            "blur": "RandomGaussianBlur" in ops, "mean": tuple(ops["Normalize"].mean),
            "std": tuple(ops["Normalize"].std)}


def device_parameters(aug: T.Augmentation) -> dict:
    """What the device pipeline built from ``aug`` does, read off its attributes."""
    dev = DeviceAugmentation.from_augmentation(aug)
    return {"size": (dev.size, dev.size), "scale": dev.scale, "ratio": dev.ratio, "jitter": dev.jitter,
            "hue": dev.hue, "jitter_p": dev.jitter_p, "grayscale_p": dev.grayscale_p, "flip": dev.flip,
            "blur": False, "mean": dev.mean, "std": dev.std}


def close(a: dict, b: dict) -> bool:
    def same(x, y):
        if isinstance(x, tuple):
            return len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) if isinstance(x, float) else x == y
    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)


VARIANTS = [T.PRESETS["cifar"], T.PRESETS["svhn"],
            T.Augmentation(size=48, crop_scale=(0.5, 0.9), crop_ratio=(0.5, 2.0), jitter=0.8, jitter_p=0.8,
                           grayscale_p=0.0, flip=False, mean=(0.5, 0.5, 0.5), std=(0.25, 0.3, 0.35)),
            T.Augmentation(jitter=0.0, jitter_p=0.0, grayscale_p=1.0)]


@pytest.mark.parametrize("aug", VARIANTS)
def test_cpu_and_device_pipelines_have_the_same_parameters(aug):
    assert close(cpu_parameters(aug), device_parameters(aug))


# one changed value per field: every pretraining field must reach both pipelines, no other field either
CHANGED = {"size": 40, "crop_scale": (0.3, 0.7), "crop_ratio": (0.6, 1.5), "jitter": 0.2, "jitter_p": 0.5,
           "grayscale_p": 0.7, "flip": False, "blur": True, "mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6),
           "linear": "crop", "eval_resize": 36}


def test_every_field_is_changed_above():
    assert set(CHANGED) == {f.name for f in dataclasses.fields(T.Augmentation)}


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_a_pretraining_field_reaches_both_pipelines_and_no_other_field_reaches_either(field):
    base = T.PRESETS["cifar"]
    changed = dataclasses.replace(base, **{field: CHANGED[field]})
    cpu_moved = not close(cpu_parameters(base), cpu_parameters(changed))
    assert cpu_moved == (field in T.PRETRAIN_FIELDS), field
    if field == "blur":  # no device blur: refused outright, never silently dropped
        with pytest.raises(ValueError, match="blur"):
            DeviceAugmentation.from_augmentation(changed)
        return
    device_moved = not close(device_parameters(base), device_parameters(changed))
    assert device_moved == (field in T.PRETRAIN_FIELDS), field


def test_print_config_shows_every_augmentation_value(capsys):
    import cli

    with pytest.raises(SystemExit):
        cli.main(["fit", "-c", str(ROOT / "configs/base.yaml"), "--print_config"])
    data = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    shown = data["augmentation"]
    assert set(shown) == {f.name for f in dataclasses.fields(T.Augmentation)}
    paper = dataclasses.asdict(T.PRESETS["cifar"])
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in shown.items()} == paper
    assert (shown["jitter"], shown["grayscale_p"], shown["crop_scale"], shown["flip"]) == (0.4, 0.2, [0.2, 1.0], True)
    assert data["train_pipeline"] == "auto"


def data_parser() -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_subclass_arguments(ContrastiveDataModule, "data")
    return parser


def test_a_command_line_value_changes_the_pipeline_and_keeps_the_datasets_other_values():
    parser = data_parser()
    cfg = parser.parse_args(["--config", str(ROOT / "configs/data/svhn.yaml"),
                             "--data.init_args.augmentation.jitter", "0.8",
                             "--data.init_args.augmentation.crop_scale", "[0.08, 1.0]"])
    dm = parser.instantiate_classes(cfg).data
    assert isinstance(dm, SVHNDataModule)
    assert (dm.augmentation.jitter, dm.augmentation.crop_scale) == (0.8, (0.08, 1.0))
    assert dm.augmentation.linear == "jitter"  # SVHN's own value, not the dataclass's
    ops = {type(op).__name__: op for op in dm.transform_for("pretrain").transforms}
    assert ops["ColorJitter"].brightness == pytest.approx((0.2, 1.8)) and ops["ColorJitter"].hue == (-0.5, 0.5)
    assert ops["RandomResizedCrop"].scale == (0.08, 1.0)
    with pytest.raises(Exception, match="jiter"):
        parser.parse_args(["--config", str(ROOT / "configs/data/svhn.yaml"), "--data.init_args.augmentation.jiter",
                           "0.8"])


def test_the_old_stage_argument_and_flip_still_work(tmp_path):
    with pytest.warns(DeprecationWarning, match="train_pipeline"):
        dm = CIFAR10DataModule(str(tmp_path), augmentation="none")
    assert dm.train_pipeline == "none" and dm.augmentation == T.PRESETS["cifar"]
    assert CIFAR10DataModule(str(tmp_path), train_pipeline="linear").train_pipeline == "linear"
    with pytest.raises(ValueError, match="disagree"):
        CIFAR10DataModule(str(tmp_path), augmentation="none", train_pipeline="linear")
    no_flip = CIFAR10DataModule(str(tmp_path), flip=False)
    assert not no_flip.augmentation.flip and not no_flip.flip
    assert "RandomHorizontalFlip" not in [type(op).__name__ for op in no_flip.transform_for("pretrain").transforms]
    with pytest.raises(ValueError, match="preset='cifar' replaces the augmentation"):
        ImageFolderDataModule(str(tmp_path), preset="cifar", augmentation=T.Augmentation(jitter=0.9))


def test_the_module_chooses_the_pipeline_through_the_one_hook(tmp_path):
    dm = CIFAR10DataModule(str(tmp_path))
    assert dm._resolve_stage() == "pretrain"
    dm.request_train_pipeline("linear")
    assert dm._resolve_stage() == "linear"
    fixed = CIFAR10DataModule(str(tmp_path), train_pipeline="none")
    fixed.request_train_pipeline("linear")
    assert fixed._resolve_stage() == "none"  # an explicit setting wins
    with pytest.raises(ValueError, match="unknown training pipeline"):
        dm.request_train_pipeline("pretrian")


# ------------------------------------------------------------------------- device augmentation on folders
class _Training:
    training = True


def test_a_folder_of_one_image_size_uses_device_augmentation(tmp_path):
    root = write_image_folder(tmp_path / "same", ["a", "b"], 4, size=40, ext="png")
    dm = ImageFolderDataModule(str(root), preset="cifar", num_workers=0, batch_size=8, device_augmentation=True)
    dm.setup("fit")
    index, images, label = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 40, 40)
    dm.trainer = _Training()
    _, views, _ = dm.on_after_batch_transfer((index, images, label), 0)
    assert views.dtype == torch.float32 and views.shape == (8, 3, 32, 32)


def test_a_folder_of_mixed_sizes_or_with_blur_is_refused_with_the_reason(tmp_path):
    root = write_image_folder(tmp_path / "mixed", ["a", "b"], 2, size=40, ext="png")
    write_image_folder(tmp_path / "other", ["b"], 1, size=(48, 40), ext="png", splits=("train",))
    (tmp_path / "other" / "train" / "b" / "b_0.png").rename(root / "train" / "b" / "b_9.png")
    dm = ImageFolderDataModule(str(root), preset="cifar", num_workers=0, device_augmentation=True)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"one size, but .*a_0\.png is 40x40 and .*b_9\.png is 48x40"):
        dm.train_dataloader()
    blurred = ImageFolderDataModule(str(root), preset="imagenet", num_workers=0, device_augmentation=True)  # blur
    with pytest.raises(ValueError, match="no Gaussian blur") as info:
        blurred._device_augmentation("pretrain")
    assert "neither" not in str(info.value)
    no_blur = ImageFolderDataModule(str(root), num_workers=0, device_augmentation=True, image_size=32,
                                    augmentation=dataclasses.replace(T.PRESETS["imagenet"], blur=False))
    no_blur.setup("fit")
    with pytest.raises(ValueError, match="one size"):
        no_blur._device_augmentation("pretrain")


def test_the_augmentation_dataclass_rejects_bad_values():
    for bad, message in (({"crop_scale": (0.9, 0.2)}, "crop_scale"), ({"jitter_p": 1.5}, "jitter_p"),
                         ({"std": (0.1, 0.0, 0.1)}, "std must be positive"), ({"size": 0}, "size"),
                         ({"linear": "rotate"}, "linear")):
        with pytest.raises(ValueError, match=message):
            T.Augmentation(**bad)
    assert T.Augmentation(mean=[0.5, 0.5, 0.5]).mean == (0.5, 0.5, 0.5)  # lists from YAML become tuples
    assert isinstance(T.pretrain_transform(T.Augmentation()), v2.Compose)
