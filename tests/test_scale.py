"""Scale-out guarantees: 2 processes == 1 process, exact resume, W&B offline files, provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

import cli
from tests.conftest import ROOT, quick_args, run_dir

RESNET = ("--model.init_args.encoder=lightning_modules.encoders.ResNetEncoder",
          "--model.init_args.encoder.init_args.arch=resnet18")


def load_state(ckpt) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def assert_same_training_state(a: dict, b: dict, atol: float) -> None:
    """Parameters and the bank agree; BatchNorm running statistics are excluded (see the test's docstring)."""
    keys = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert any(k.startswith("negatives.bank") for k in keys)
    for k in keys:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), f"{k}: max diff {(a[k] - b[k]).abs().max():.2e}"


@pytest.mark.slow
def test_two_processes_end_with_the_weights_and_bank_of_one(cifar_small, tmp_path):
    """2-process DDP (gloo, CPU) vs 1 process with the same global batch and data order.

    The 1-process run computes BatchNorm statistics over groups of 16 images
    (``bn_group_size``), as each of the 2 processes does over its 16: the forward
    passes, gradients, weights and bank then agree to float rounding. The running
    statistics differ by design (DDP broadcasts rank 0's; the groups average theirs).
    """
    common = [*RESNET, "--trainer.limit_train_batches=3", "--data.init_args.batch_size=32",
              "--model.init_args.loss.init_args.temperature=0.2"]
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one = quick_args(cifar_small, one_dir, *common, "--model.init_args.encoder.init_args.bn_group_size=16",
                     batches=None)
    cli.main(one)
    two = quick_args(cifar_small, two_dir, *common, batches=None, configs=("configs/trainer/ddp_cpu.yaml",))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), *two], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_state(run_dir(one_dir) / "checkpoints" / "last.ckpt")
    b = load_state(run_dir(two_dir) / "checkpoints" / "last.ckpt")
    start = load_state_after_init(cifar_small, tmp_path)
    moved = (a["encoder.head.weight"] - start["encoder.head.weight"]).abs().max()
    assert moved > 1e-3  # the runs trained: agreement below is not that of two untouched models
    assert_same_training_state(a, b, atol=2e-5)


def load_state_after_init(cifar_small, tmp_path) -> dict[str, torch.Tensor]:
    run = cli.main(quick_args(cifar_small, tmp_path / "init", *RESNET, batches=1), run=False)
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


@pytest.mark.slow
def test_resume_continues_as_if_never_stopped(cifar_small, tmp_path):
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    cli.main(quick_args(cifar_small, straight_dir, epochs=2, batches=3))
    cli.main(quick_args(cifar_small, resumed_dir, epochs=1, batches=3))
    first = run_dir(resumed_dir) / "checkpoints" / "last.ckpt"
    cli.main(quick_args(cifar_small, resumed_dir, f"--ckpt_path={first}", epochs=2, batches=3))
    straight = torch.load(run_dir(straight_dir) / "checkpoints" / "last.ckpt", map_location="cpu",
                          weights_only=False)
    resumed = torch.load(run_dir(resumed_dir) / "checkpoints" / "last.ckpt", map_location="cpu",
                         weights_only=False)
    assert straight["epoch"] == resumed["epoch"] == 1
    assert straight["global_step"] == resumed["global_step"] == 6
    for k, v in straight["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k
    momentum_a = straight["optimizer_states"][0]["state"]
    momentum_b = resumed["optimizer_states"][0]["state"]
    for k in momentum_a:
        assert torch.equal(momentum_a[k]["momentum_buffer"], momentum_b[k]["momentum_buffer"])
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]


@pytest.mark.slow
def test_wandb_offline_run_holds_the_metrics_and_the_config(cifar_small, tmp_path):
    args = quick_args(cifar_small, tmp_path, "-c", str(ROOT / "configs/logger/wandb.yaml"),
                      f"--trainer.logger.0.init_args.save_dir={tmp_path}",
                      f"--trainer.logger.1.init_args.save_dir={tmp_path}", batches=2)
    args = [a for a in args if not a.startswith("--trainer.logger.init_args.save_dir")]
    cli.main(args)
    import wandb

    wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = runs[0] / "files"
    config = yaml.safe_load((files / "config.yaml").read_text())
    flat = json.dumps(config)
    assert "ContrastiveModule" in flat and "git_commit" in flat and "cifar10" in flat
    summary = json.loads((files / "wandb-summary.json").read_text())
    assert "train/loss_epoch" in summary and "val/uniformity" in summary
