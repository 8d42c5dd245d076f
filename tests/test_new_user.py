"""What a new user met on a first run (issue 16, item 6): image-folder sizes, the printed config, the noise, the summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from datamodules.folder import ImageFolderDataModule
from tests.conftest import ROOT, quick_args


def image_folder(root: Path, side: int, per_class: int = 2) -> Path:
    """``root/{train,val}/{a,b}/*.png`` of ``side`` x ``side`` random RGB images."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_a_folder_of_small_images_gets_the_cifar_recipe(tmp_path):
    """32-px images under the ImageNet default (224 crops, blur) trained ~10x slower for nothing."""
    small = ImageFolderDataModule(str(image_folder(tmp_path / "small", 32)))
    assert (small.augmentation.size, small.augmentation.blur, small.augmentation.eval_resize) == (32, False, 32)
    assert small.preset == "cifar" and small.describe()["image_size"] == 32
    tiny = ImageFolderDataModule(str(image_folder(tmp_path / "tiny", 64)))
    assert (tiny.augmentation.size, tiny.augmentation.blur) == (64, False)


def test_large_images_and_explicit_choices_keep_their_recipe(tmp_path):
    large = image_folder(tmp_path / "large", 160)
    assert ImageFolderDataModule(str(large)).augmentation.size == 224  # the ImageNet recipe
    small = image_folder(tmp_path / "small", 32)
    chosen = ImageFolderDataModule(str(small), preset="imagenet")
    assert (chosen.augmentation.size, chosen.augmentation.blur) == (224, True)  # asked for: kept
    assert ImageFolderDataModule(str(small), image_size=48).augmentation.size == 48
    assert ImageFolderDataModule(str(tmp_path / "absent")).augmentation.size == 224  # its error comes later


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_SILENT", None)
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.parametrize("extra", [["--data.init_args.preset=cifar"], []])
def test_print_config_shows_the_augmentation_in_effect(tmp_path, extra):
    """It showed size 224 and blur true under preset cifar; a re-read config must run the same recipe."""
    folder = image_folder(tmp_path / "images", 32)
    proc = run_cli(["fit", "-c", str(ROOT / "configs/base.yaml"), "-c", str(ROOT / "configs/data/imagefolder.yaml"),
                    f"--data.init_args.data_dir={folder}", *extra, "--print_config"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shown = yaml.safe_load(proc.stdout)["data"]["init_args"]
    assert (shown["augmentation"]["size"], shown["augmentation"]["blur"], shown["augmentation"]["eval_resize"]) == (
        32, False, 32)
    assert shown["preset"] is None  # the values are written out; the shortcut would be applied twice
    from datamodules.transforms import Augmentation

    values = Augmentation(**{k: tuple(v) if isinstance(v, list) else v for k, v in shown["augmentation"].items()})
    reread = ImageFolderDataModule(**{k: v for k, v in shown.items() if k != "augmentation"}, augmentation=values)
    assert reread.augmentation == ImageFolderDataModule(str(folder), preset="cifar").augmentation


def test_a_short_run_is_quiet_and_ends_with_a_summary(cifar_small, tmp_path):
    """No Lightning advert, internal deprecation or log-interval warning; the last lines give the results."""
    proc = run_cli(quick_args(cifar_small, tmp_path / "logs", epochs=2), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for noise in ("💡 Tip", "treespec", "smaller than the logging interval", "TPU available"):
        assert noise not in proc.stderr, noise
    lines = proc.stdout.strip().splitlines()
    summary = next(line for line in lines if line.startswith("pretraining finished after 2 epochs: "))
    assert "kNN top-1 0." in summary and "uniformity " in summary and "tolerance " in summary
    run = tmp_path / "logs" / "pretrain" / "version_0"
    assert f"plots: {run / 'plots'}" in lines and lines[-1] == f"run folder: {run}"
    assert "knn=0." in proc.stdout  # the bar (on stdout) of the second epoch shows the first epoch's kNN
    assert "Warning" not in proc.stderr, proc.stderr
