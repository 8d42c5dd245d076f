"""Speed options train on the CPU: device-side augmentation, channels_last, bf16 autocast, torch.compile."""

from __future__ import annotations

import pytest
import torch

import cli
from datamodules.cifar import CIFAR10DataModule
from tests.conftest import quick_args


def trained(run) -> bool:
    return run.trainer.global_step > 0 and bool(torch.isfinite(run.trainer.callback_metrics["train/loss_epoch"]))


def test_device_augmentation_yields_uint8_then_augmented_views(cifar_small):
    dm = CIFAR10DataModule(data_dir=str(cifar_small), verify_checksums=False, num_workers=0, batch_size=16,
                           device_augmentation=True, num_views=2)
    dm.setup("fit")
    index, images, label = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (16, 3, 32, 32)

    class _Trainer:  # the hook only augments while training
        training = True

    dm.trainer = _Trainer()
    _, views, _ = dm.on_after_batch_transfer((index, images, label), 0)
    assert len(views) == 2 and views[0].dtype == torch.float32 and views[0].shape == (16, 3, 32, 32)
    assert not torch.equal(views[0], views[1])
    assert views[0].mean().abs() < 1.5  # normalised, not raw 0..255


@pytest.mark.parametrize("extra", [
    ("--data.init_args.device_augmentation=true",),
    ("--model.init_args.channels_last=true",),
    ("--trainer.precision=bf16-mixed",),
])
def test_option_trains(cifar_small, tmp_path, extra):
    run = cli.main(quick_args(cifar_small, tmp_path, *extra, batches=2))
    assert trained(run)
    assert run.model.negatives.bank.dtype == torch.float32  # the bank stays fp32 under autocast


def test_device_augmentation_refuses_blurred_or_variable_size_data(tmp_path):
    from datamodules.folder import ImageFolderDataModule

    dm = ImageFolderDataModule(data_dir=str(tmp_path), device_augmentation=True)
    with pytest.raises(ValueError, match="device_augmentation"):
        dm._device_augmentation("pretrain")


@pytest.mark.slow
def test_compile_trains(cifar_small, tmp_path):
    run = cli.main(quick_args(cifar_small, tmp_path, "--model.init_args.compile=true", batches=2))
    assert trained(run)
    assert all(not k.startswith("_") and "_orig_mod" not in k for k in run.model.state_dict())
