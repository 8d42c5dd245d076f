"""Training scalars kept on the device and logged once an epoch give the values Lightning's own logging gave.

``SuiteModule.track_epoch_means`` replaces ``self.log(..., on_epoch=True)`` in the training
steps (a call cost milliseconds, a tenth of the CPU recipe's step, and more than a linear
probe's step), and step values are logged only at the steps where Lightning writes them.
Each run below is repeated with the modules switched back to Lightning's way (every value
through ``self.log`` at every step), and ``metrics.csv`` must hold the same rows and values.
"""

from __future__ import annotations

import csv

import pytest
import torch

from lightning_modules.contrastive import ContrastiveModule
from lightning_modules.linear_eval import LinearEvalModule


class LightningWay:
    """The modules as they logged before: ``self.log`` on every step, Lightning averaging each epoch."""

    def add_to_epoch_means(self, batch_size: int, *values: torch.Tensor) -> None:
        for name, value in zip(self.epoch_mean_names, values):
            self.log(name, value, on_step=False, on_epoch=True, batch_size=batch_size,
                     prog_bar=name == "train/loss_epoch")

    def log_epoch_means(self, prog_bar=()) -> None:
        pass

    def logs_this_step(self) -> bool:
        return True  # Lightning writes step values only every log_every_n_steps itself


class ContrastiveLightningWay(LightningWay, ContrastiveModule):
    pass


class LinearLightningWay(LightningWay, LinearEvalModule):
    def training_step(self, batch, batch_idx):  # the metric updated and logged at every step, as before
        loss = super().training_step(batch, batch_idx)
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        pass


def _rows(folder) -> list[dict[str, str]]:
    return list(csv.DictReader(open(folder / "metrics.csv")))


def _same_rows(new: list[dict], old: list[dict]) -> None:
    assert len(new) == len(old) and new and set(new[0]) == set(old[0])
    for a, b in zip(new, old, strict=True):
        assert {k for k, v in a.items() if v != ""} == {k for k, v in b.items() if v != ""}, (a, b)
        for key, value in a.items():
            if value != "":
                assert float(value) == pytest.approx(float(b[key]), rel=1e-5, abs=1e-6), (key, a["step"])


def _fit(args: list[str], cls: type | None):
    import cli

    run = cli.main(args[1:], run=False)
    if cls is not None:
        run.model.__class__ = cls  # same state, Lightning's way of logging
    run.trainer.fit(run.model, datamodule=run.datamodule)
    return run


@pytest.mark.slow
def test_a_pretraining_run_logs_what_lightning_logged(cifar_small, tmp_path):
    from tests.conftest import quick_args, run_dir

    def args(out):
        # 256 images in batches of 64 (the last one short, so the batch-size weighting counts), steps logged every 3
        return quick_args(cifar_small, out, "--data.init_args.train_subset=250", "--data.init_args.test_subset=64",
                          "--trainer.log_every_n_steps=3", epochs=3, batches=None, batch_size=64,
                          configs=("configs/experiments/cpu_reproduction.yaml",))

    new = _fit(args(tmp_path / "new"), None)
    old = _fit(args(tmp_path / "old"), ContrastiveLightningWay)
    rows_new, rows_old = _rows(run_dir(tmp_path / "new")), _rows(run_dir(tmp_path / "old"))
    _same_rows(rows_new, rows_old)
    steps = [int(r["step"]) for r in rows_new if r.get("train/loss_step")]
    assert steps == [s for s in range(3 * 4) if (s + 1) % 3 == 0]  # 4 steps an epoch, every third written
    epochs = [r for r in rows_new if r.get("train/loss_epoch")]
    assert len(epochs) == 3 and all(r.get("train/pos_sim") for r in epochs)
    assert set(new.trainer.progress_bar_metrics) >= {"train/loss_step", "train/loss_epoch"}
    trained, reference = new.model.encoder.state_dict(), old.model.encoder.state_dict()
    assert all(torch.equal(trained[k], reference[k]) for k in reference)  # the logging changed no step


@pytest.mark.slow
def test_a_linear_evaluation_logs_what_lightning_logged(cifar_small, tmp_path):
    from tests.conftest import quick_args, run_dir
    from tests.test_linear_eval import linear_args

    _fit(quick_args(cifar_small, tmp_path / "pre", epochs=1, batches=2), None)
    ckpt = run_dir(tmp_path / "pre") / "checkpoints" / "last.ckpt"

    def args(out):  # 256 images in batches of 60: the last one short
        return linear_args(cifar_small, out, ckpt, "--model.init_args.cache_features=true",
                           "--data.init_args.batch_size=60", "--trainer.log_every_n_steps=2", epochs=3)

    _fit(args(tmp_path / "new"), None)
    _fit(args(tmp_path / "old"), LinearLightningWay)
    rows = _rows(run_dir(tmp_path / "new", name="linear"))
    _same_rows(rows, _rows(run_dir(tmp_path / "old", name="linear")))
    assert sum(1 for r in rows if r.get("train/top1")) == 3 and sum(1 for r in rows if r.get("train/loss_step")) > 0


def test_the_epoch_sums_travel_in_the_checkpoint_and_a_new_epoch_starts_from_zero():
    from lightning_modules.encoders import SmallConvEncoder

    def module():
        return ContrastiveModule(encoder=SmallConvEncoder(width=8, out_dim=16), num_samples=10)

    a = module()
    a.add_to_epoch_means(4, torch.tensor(1.0), torch.tensor(0.5))
    a.add_to_epoch_means(2, torch.tensor(4.0), torch.tensor(0.25))
    assert torch.allclose(a._epoch_sums, torch.tensor([12.0, 2.5, 6.0]))
    checkpoint: dict = {}
    a.on_save_checkpoint(checkpoint)
    b = module()
    b.on_load_checkpoint(checkpoint)  # a run resumed in the middle of epoch 0 keeps the epoch's sums
    b.add_to_epoch_means(2, torch.tensor(1.0), torch.tensor(1.0))
    assert torch.allclose(b._epoch_sums, torch.tensor([14.0, 4.5, 8.0]))
    b._sums_epoch = -5  # the sums of an earlier epoch: the next batch starts the epoch's anew
    b.add_to_epoch_means(3, torch.tensor(2.0), torch.tensor(0.0))
    assert torch.allclose(b._epoch_sums, torch.tensor([6.0, 0.0, 3.0]))
