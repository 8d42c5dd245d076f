"""Shared fixtures: CIFAR-10 in its real on-disk format, and a CLI runner with per-test log folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakedata import write_cifar10

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def no_wandb_run_left_open():
    """Each test ends with no W&B run in progress: a run left open is reused by the next WandbLogger of the
    process (Lightning's rule), whose files would then land in the earlier test's folder."""
    yield
    import sys

    wandb = sys.modules.get("wandb")  # only where a test imported it: importing it costs seconds
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


@pytest.fixture(scope="session")
def cifar_small(tmp_path_factory) -> Path:
    """CIFAR-10 python batches holding 256 training and 128 test images of ``tests/data``."""
    return write_cifar10(tmp_path_factory.mktemp("cifar_small"), n_train=256, n_test=128)


@pytest.fixture(scope="session")
def cifar_subset(tmp_path_factory) -> Path:
    """CIFAR-10 python batches holding all 1000 training and 200 test images of ``tests/data``."""
    return write_cifar10(tmp_path_factory.mktemp("cifar_subset"))


def quick_args(data_dir: Path, log_dir: Path, *extra: str, epochs: int = 1, batches: int | None = 2,
               batch_size: int = 32, configs: tuple[str, ...] = ()) -> list[str]:
    """``fit`` arguments for a short CPU run of the shipped configs on a CIFAR-format folder."""
    args = ["fit", "-c", str(ROOT / "configs/base.yaml"), "-c", str(ROOT / "configs/model/small.yaml"),
            "-c", str(ROOT / "configs/logger/csv.yaml"), "-c", str(ROOT / "configs/trainer/cpu.yaml")]
    for config in configs:
        args += ["-c", str(ROOT / config)]
    args += [
        f"--trainer.default_root_dir={log_dir}",
        f"--trainer.logger.init_args.save_dir={log_dir}",
        f"--trainer.max_epochs={epochs}",
        "--trainer.enable_model_summary=false",
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.verify_checksums=false",
        "--data.init_args.num_workers=0",
        f"--data.init_args.batch_size={batch_size}",
        "--data.init_args.eval_batch_size=128",
    ]
    if batches is not None:
        args.append(f"--trainer.limit_train_batches={batches}")
    return args + list(extra)


def run_dir(log_dir: Path, name: str = "pretrain") -> Path:
    """The newest versioned run folder under ``log_dir/name``."""
    versions = sorted((log_dir / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    assert versions, f"no run folder under {log_dir / name}"
    return versions[-1]
