"""The shipped configs through ``cli.py``: composition, overrides, every loss, bad input, checkpoints."""

from __future__ import annotations

import csv
import os

import pytest
import torch
import yaml

import cli
from datamodules.base import DatasetNotFoundError
from lightning_modules.contrastive import ContrastiveModule
from lightning_modules.losses import (ContrastiveLoss, HardContrastiveLoss, HardSimpleContrastiveLoss,
                                      SimpleContrastiveLoss)
from tests.conftest import ROOT, quick_args, run_dir


def test_print_config_shows_the_papers_recipe(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit", "-c", str(ROOT / "configs/base.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    model = config["model"]["init_args"]
    assert config["model"]["class_path"].endswith("ContrastiveModule")
    assert model["encoder"]["init_args"] == {"arch": "resnet18", "cifar_stem": True, "out_dim": 128,
                                             "bn_group_size": None, "head_norm": False}
    assert model["loss"]["class_path"].endswith("ContrastiveLoss")
    assert model["loss"]["init_args"]["temperature"] == 0.07
    assert model["negatives"]["class_path"].endswith("MemoryBank")
    assert model["negatives"]["init_args"]["momentum"] == 0.5
    sgd = model["optimizer"]["init_args"]
    assert (sgd["lr"], sgd["momentum"], sgd["weight_decay"]) == (0.03, 0.9, 5e-4)
    assert model["scheduler"]["init_args"]["milestones"] == [160, 190]
    assert model["scheduler"]["init_args"]["gamma"] == 0.1
    assert config["trainer"]["max_epochs"] == 200
    assert config["data"]["class_path"].endswith("CIFAR10DataModule")
    assert config["data"]["init_args"]["batch_size"] == 128


def test_help_lists_the_losses_and_sources(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    out = capsys.readouterr().out
    for name in ("ContrastiveLoss", "SimpleContrastiveLoss", "HardContrastiveLoss", "HardSimpleContrastiveLoss",
                 "MemoryBank", "InBatchNegatives", "MomentumQueue", "CIFAR10DataModule"):
        assert name in out


@pytest.mark.parametrize("loss_config, loss_class", [
    ("configs/loss/contrastive.yaml", ContrastiveLoss),
    ("configs/loss/simple.yaml", SimpleContrastiveLoss),
    ("configs/loss/hard_contrastive.yaml", HardContrastiveLoss),
    ("configs/loss/hard_simple.yaml", HardSimpleContrastiveLoss),
])
def test_fit_runs_every_loss_on_cifar_format_data(cifar_small, tmp_path, loss_config, loss_class, capsys):
    run = cli.main(quick_args(cifar_small, tmp_path, configs=(loss_config,)))
    model = run.model
    assert isinstance(model.loss, loss_class)
    assert model.negatives.bank.shape == (256, 128)  # sized from the data, not the default 50,000
    assert run.trainer.global_step == 2
    folder = run_dir(tmp_path)
    assert (folder / "config.yaml").is_file()
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert f"run folder: {folder}" in capsys.readouterr().out.splitlines()  # fit ends by naming its folder
    from PIL import Image

    with Image.open(folder / "plots" / "similarity_profile.png") as image:
        title = image.text["Title"]
    temperature = getattr(model.loss, "temperature", None)
    assert loss_class.__name__ in title and "cifar10" in title
    assert ("tau = " in title) == (temperature is not None)
    if temperature is not None:
        assert f"tau = {temperature:g}" in title
    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_command_line_override_reaches_the_loss(cifar_small, tmp_path):
    run = cli.main(quick_args(cifar_small, tmp_path, "--model.init_args.loss.init_args.temperature=0.3",
                              batches=1))
    assert run.model.loss.temperature == 0.3
    saved = yaml.safe_load((run_dir(tmp_path) / "config.yaml").read_text())
    assert saved["model"]["init_args"]["loss"]["init_args"]["temperature"] == 0.3


def test_checkpoint_round_trip_keeps_the_bank(cifar_small, tmp_path):
    run = cli.main(quick_args(cifar_small, tmp_path, batches=3))
    ckpt = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    loaded = ContrastiveModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert torch.equal(loaded.negatives.bank, run.model.negatives.bank.cpu())
    assert loaded.num_samples == 256
    for (name, a), b in zip(run.model.encoder.state_dict().items(), loaded.encoder.state_dict().values()):
        assert torch.equal(a.cpu(), b), name
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert saved["provenance"]["dataset"]["num_train_samples"] == 256
    assert "git_commit" in saved["provenance"]["code"]
    assert "ContrastiveModule" in saved["provenance"]["config"]


@pytest.mark.parametrize("override, message", [
    ("--model.init_args.loss.init_args.temperature=0", "temperature"),
    ("--model.init_args.loss.init_args.temperature=-0.5", "temperature"),
])
def test_bad_temperature_fails_before_training(cifar_small, tmp_path, override, message):
    with pytest.raises((ValueError, SystemExit)) as err:
        cli.main(quick_args(cifar_small, tmp_path, override))
    assert message in str(err.value) or isinstance(err.value, SystemExit)
    assert not (tmp_path / "pretrain").exists() or not list((tmp_path / "pretrain").rglob("*.ckpt"))


@pytest.mark.parametrize("loss_args, message", [
    ("num_negatives: 0", "num_negatives"),
    ("num_negatives: null\n        alpha: 1.5", "alpha"),
    ("num_negatives: null\n        alpha: 0.0", "alpha"),
])
def test_bad_hard_loss_arguments_fail_before_training(cifar_small, tmp_path, loss_args, message):
    bad = tmp_path / "bad_loss.yaml"
    bad.write_text("model:\n  init_args:\n    loss:\n      init_args:\n        " + loss_args + "\n")
    args = quick_args(cifar_small, tmp_path, "-c", str(bad), configs=("configs/loss/hard_contrastive.yaml",))
    with pytest.raises(ValueError, match=message):
        cli.main(args)


def test_both_num_negatives_and_alpha_is_an_error(cifar_small, tmp_path):
    args = quick_args(cifar_small, tmp_path, "--model.init_args.loss.init_args.alpha=0.1",
                      configs=("configs/loss/hard_contrastive.yaml",))
    with pytest.raises(ValueError, match="exactly one"):
        cli.main(args)


def test_typo_in_a_config_is_an_error(cifar_small, tmp_path, capsys):
    bad = tmp_path / "typo.yaml"
    bad.write_text("model:\n  init_args:\n    loss:\n      init_args:\n        temprature: 0.1\n")
    with pytest.raises(SystemExit) as err:
        cli.main(quick_args(cifar_small, tmp_path, "-c", str(bad)))
    assert err.value.code != 0
    assert "temprature" in capsys.readouterr().err


def test_bank_size_that_does_not_match_the_data_fails_before_training(cifar_small, tmp_path):
    with pytest.raises(ValueError, match="does not match the 256 training images"):
        cli.main(quick_args(cifar_small, tmp_path, "--model.init_args.negatives.init_args.size=1000"))


def test_missing_dataset_offline_fails_fast_with_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        cli.main(quick_args(missing, tmp_path, "--data.init_args.download=false"))
    assert str(missing) in str(err.value)
    assert "cifar-10-python.tar.gz" in str(err.value)


def test_failed_download_names_the_path(tmp_path, monkeypatch):
    import urllib.error

    from torchvision import datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        cli.main(quick_args(missing, tmp_path))
    assert str(missing) in str(err.value) and "download failed" in str(err.value)


def test_wrong_number_of_views_for_the_source_is_explained(cifar_small, tmp_path):
    with pytest.raises(ValueError, match="num_views 2"):
        cli.main(quick_args(cifar_small, tmp_path, "--data.init_args.num_views=1",
                            configs=("configs/negatives/in_batch.yaml",)))


@pytest.mark.parametrize("dataset, data_class", [
    ("cifar10", "CIFAR10DataModule"), ("cifar100", "CIFAR100DataModule"), ("svhn", "SVHNDataModule"),
    ("imagenet100", "ImageNet100DataModule"), ("imagefolder", "ImageFolderDataModule"),
])
def test_data_configs_keep_each_stages_batch_size(capsys, dataset, data_class):
    """Swapping the dataset keeps pretraining's batch of 128 and linear evaluation's 256."""
    for first, expected in (("configs/base.yaml", 128), ("configs/eval/linear.yaml", 256)):
        args = ["fit", "-c", str(ROOT / first), "-c", str(ROOT / f"configs/data/{dataset}.yaml"), "--print_config"]
        if "linear" in first:
            args.append("--model.init_args.pretrained=x.ckpt")  # required, not opened by --print_config
        with pytest.raises(SystemExit):
            cli.main(args)
        config = yaml.safe_load(capsys.readouterr().out)
        assert config["data"]["class_path"].endswith(data_class)
        assert config["data"]["init_args"]["batch_size"] == expected


@pytest.mark.parametrize("source_config, source_class, views", [
    ("configs/negatives/memory_bank.yaml", "MemoryBank", 1),
    ("configs/negatives/in_batch.yaml", "InBatchNegatives", 2),
    ("configs/negatives/momentum_queue.yaml", "MomentumQueue", 2),
])
def test_fit_runs_every_source_of_negatives(cifar_small, tmp_path, source_config, source_class, views):
    run = cli.main(quick_args(cifar_small, tmp_path, "--model.init_args.negatives.init_args.queue_size=64"
                              if "queue" in source_config else "--trainer.max_epochs=1",
                              configs=(source_config, "configs/loss/hard_contrastive.yaml")))
    assert type(run.model.negatives).__name__ == source_class
    assert run.datamodule.num_views == views
    assert run.trainer.global_step == 2
    assert torch.isfinite(run.trainer.callback_metrics["train/loss_epoch"])
    assert "val/uniformity" in run.trainer.callback_metrics


def test_missing_dataset_from_the_command_line_is_one_error_line(tmp_path):
    import subprocess
    import sys

    missing = tmp_path / "nowhere"
    proc = subprocess.run([sys.executable, "cli.py", "fit", "-c", "configs/base.yaml", "-c", "configs/logger/csv.yaml",
                           f"--data.init_args.data_dir={missing}", "--data.init_args.download=false",
                           f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "error: cifar10 not found" in proc.stderr and str(missing) in proc.stderr


# ------------------------------------------------------------------- W&B follows WANDB_MODE
def wandb_logger_of(run):
    from pytorch_lightning.loggers import WandbLogger

    (logger,) = [lg for lg in run.trainer.loggers if isinstance(lg, WandbLogger)]
    return logger


def wandb_args(data_dir, tmp_path, config="configs/logger/wandb.yaml"):
    """A one-batch fit with the shipped logger config ``config``, its folders moved into ``tmp_path``."""
    shipped = yaml.safe_load((ROOT / config).read_text())
    for logger in shipped["trainer"]["logger"]:
        logger["init_args"]["save_dir"] = str(tmp_path)
    here = tmp_path / "loggers.yaml"
    here.write_text(yaml.safe_dump(shipped))
    args = quick_args(data_dir, tmp_path, "-c", str(here), batches=1)
    return [a for a in args if not a.startswith("--trainer.logger.init_args.save_dir")]


def test_wandb_is_offline_when_wandb_mode_is_unset(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert cli.default_wandb_mode() == "offline"
    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert cli.default_wandb_mode() == "online"  # a value that is set is kept


@pytest.mark.parametrize("mode", [pytest.param("offline", marks=pytest.mark.slow), "disabled"])
def test_wandb_logs_in_the_mode_wandb_mode_names(cifar_small, tmp_path, monkeypatch, mode):
    import wandb

    monkeypatch.setenv("WANDB_MODE", mode)
    wandb.teardown()  # W&B reads WANDB_MODE once per process: forget what an earlier test set up
    cli.main(wandb_args(cifar_small, tmp_path))
    wandb.finish()
    wandb.teardown()
    assert os.environ["WANDB_MODE"] == mode  # nothing switched it (Lightning's offline=True used to: "dryrun")
    offline_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == (1 if mode == "offline" else 0)
    assert not list((tmp_path / "wandb").glob("run-*"))


@pytest.mark.parametrize("config, env, expected", [
    ("configs/logger/wandb.yaml", "online", "online"),           # WANDB_MODE decides
    ("configs/logger/wandb.yaml", None, "offline"),              # unset: offline
    ("configs/logger/wandb_online.yaml", "offline", "online"),   # the explicit config wins
])
def test_the_mode_wandb_init_is_given(cifar_small, tmp_path, monkeypatch, config, env, expected):
    """Online without a network: wandb.init is replaced by a recorder of the mode W&B would resolve."""
    import wandb
    from wandb.sdk.lib import RunDisabled

    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    seen = []

    def fake_init(**kwargs):
        seen.append(kwargs.get("mode") or os.environ.get("WANDB_MODE"))  # an init argument wins over the variable
        return RunDisabled()

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setattr(wandb, "run", None)
    shipped = yaml.safe_load((ROOT / config).read_text())["trainer"]["logger"][1]
    assert "offline" not in shipped["init_args"]  # offline: true would override WANDB_MODE
    run = cli.main(wandb_args(cifar_small, tmp_path, config=config)[1:], run=False)  # [1:]: no subcommand
    _ = wandb_logger_of(run).experiment
    assert seen == [expected]


# ------------------------------------------------------------------------- small things
def test_progress_bar_can_be_switched_off(cifar_small, tmp_path):
    from pytorch_lightning.callbacks import ProgressBar

    run = cli.main(quick_args(cifar_small, tmp_path, "--trainer.enable_progress_bar=false"))
    assert run.trainer.global_step == 2
    assert not any(isinstance(c, ProgressBar) for c in run.trainer.callbacks)
    on = cli.main(quick_args(cifar_small, tmp_path / "on", batches=1)[1:], run=False)  # [1:]: no subcommand
    bars = [c for c in on.trainer.callbacks if isinstance(c, ProgressBar)]
    assert len(bars) == 1 and bars[0].refresh_rate == 50  # base.yaml's bar, kept when nothing switches it off
