"""Scale-out guarantees: 2 processes == 1 process, exact resume, W&B offline files, provenance."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
import yaml

import cli
from lightning_modules.encoders import ResNetEncoder
from tests.conftest import ROOT, quick_args, run_dir


def load_state(ckpt) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def assert_same_training_state(a: dict, b: dict, atol: float) -> None:
    """Parameters and the bank agree; BatchNorm running statistics are excluded (see the test's docstring)."""
    keys = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert any(k.startswith("negatives.bank") for k in keys)
    for k in keys:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), f"{k}: max diff {(a[k] - b[k]).abs().max():.2e}"


def read_metrics(folder) -> dict[str, float]:
    """The last value of every column of a run's metrics.csv."""
    out: dict[str, float] = {}
    with open(folder / "metrics.csv") as f:
        for row in csv.DictReader(f):
            out.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return out


@pytest.mark.slow
def test_two_processes_end_with_the_weights_bank_and_metrics_of_one(cifar_small, tmp_path):
    """2-process DDP (gloo, CPU) vs 1 process with the same global batch and data order.

    The encoder has no BatchNorm here: with it, float32 rounding of a 32-image and two
    16-image batches differs by ~1e-3 relative in the backward pass (BatchNorm's mean
    subtraction cancels digits) and the runs drift apart chaotically; that BatchNorm
    part is exact in float64 (test_ghost_batchnorm_gradients_equal_per_device_batchnorm).
    """
    common = ["--model.init_args.encoder.init_args.batchnorm=false", "--trainer.limit_train_batches=3",
              "--data.init_args.batch_size=32", "--model.init_args.loss.init_args.temperature=0.2"]
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    cli.main(quick_args(cifar_small, one_dir, *common, batches=None))
    two = quick_args(cifar_small, two_dir, *common, batches=None, configs=("configs/trainer/ddp_cpu.yaml",))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), *two], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_state(run_dir(one_dir) / "checkpoints" / "last.ckpt")
    b = load_state(run_dir(two_dir) / "checkpoints" / "last.ckpt")
    start = load_state_after_init(cifar_small, tmp_path, common[0])
    assert (a["encoder.head.weight"] - start["encoder.head.weight"]).abs().max() > 1e-3  # it trained
    assert (a["negatives.bank"] - start["negatives.bank"]).abs().max() > 1e-3
    assert_same_training_state(a, b, atol=1e-6)
    m1, m2 = read_metrics(run_dir(one_dir)), read_metrics(run_dir(two_dir))
    for key in ("val/uniformity", "val/tolerance", "val/knn_top1", "val/pos_sim", "val/neg_sim_1"):
        assert m1[key] == pytest.approx(m2[key], abs=1e-4), key


def load_state_after_init(cifar_small, tmp_path, *extra) -> dict[str, torch.Tensor]:
    args = quick_args(cifar_small, tmp_path / "init", *extra, batches=1)
    run = cli.main(args[1:], run=False)  # no subcommand without run: build the model only
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def test_ghost_batchnorm_gradients_equal_per_device_batchnorm():
    """One device with bn_group_size=16 computes the gradients of 2 devices x 16 images (float64)."""
    torch.manual_seed(0)
    ghost, plain = ResNetEncoder(bn_group_size=16), ResNetEncoder()
    plain.load_state_dict(ghost.state_dict())
    ghost.double()
    plain.double()
    x = torch.randn(32, 3, 32, 32, dtype=torch.float64)
    (torch.nn.functional.normalize(ghost(x), dim=1).pow(3).sum() / 32).backward()
    summed = {k: torch.zeros_like(p) for k, p in plain.named_parameters()}
    for half in (x[:16], x[16:]):  # each "device" averages its 16, DDP averages the 2 devices
        plain.zero_grad()
        (torch.nn.functional.normalize(plain(half), dim=1).pow(3).sum() / 16).backward()
        for k, p in plain.named_parameters():
            summed[k] += p.grad / 2
    whole = ResNetEncoder()
    whole.load_state_dict(plain.state_dict())
    whole.double()
    (torch.nn.functional.normalize(whole(x), dim=1).pow(3).sum() / 32).backward()
    for k, p in ghost.named_parameters():
        assert torch.allclose(p.grad, summed[k], rtol=1e-9, atol=1e-12), k
    # and whole-batch BatchNorm does NOT give the per-device gradients
    assert not torch.allclose(dict(whole.named_parameters())["backbone.conv1.weight"].grad,
                              summed["backbone.conv1.weight"], rtol=1e-6, atol=1e-9)


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
    assert straight["epoch"] == resumed["epoch"]
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
    shipped = yaml.safe_load((ROOT / "configs/logger/wandb.yaml").read_text())
    for logger in shipped["trainer"]["logger"]:
        logger["init_args"]["save_dir"] = str(tmp_path)  # the shipped loggers, in this test's folder
    config = tmp_path / "wandb_here.yaml"
    config.write_text(yaml.safe_dump(shipped))
    args = quick_args(cifar_small, tmp_path, "-c", str(config), batches=2)
    cli.main([a for a in args if not a.startswith("--trainer.logger.init_args.save_dir")])
    import wandb

    wandb.finish()
    # finish() returns once the run is marked finished, but W&B's service closes the run's stream, which
    # writes its buffered records to run-*.wandb, after that (ServiceConnection.inform_finish does not wait):
    # read too soon, the file holds only its 7-byte header. teardown() waits for the service to shut down.
    wandb.teardown()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # the offline run's records (protobuf in W&B's log format) hold keys and config values as plain bytes
    records = next(runs[0].glob("run-*.wandb")).read_bytes()
    for key in (b"train/loss_epoch", b"val/uniformity", b"val/tolerance", b"val/knn_top1", b"val/neg_sim_10"):
        assert key in records, key
    for value in (b"ContrastiveModule", b"git_commit", b"cifar10", b"MemoryBank", b"temperature"):
        assert value in records, value
    assert list((runs[0] / "files" / "media" / "images").rglob("similarity_profile*.png"))
