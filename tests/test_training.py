"""Training behaviour: the loss falls on real images; a non-finite loss stops the run with its step."""

from __future__ import annotations

import csv
import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

import cli
from lightning_modules.contrastive import ContrastiveModule, NonFiniteLossError
from lightning_modules.encoders import SmallConvEncoder
from lightning_modules.losses import ContrastiveLoss
from lightning_modules.negatives import MemoryBank
from tests.conftest import ROOT, quick_args, run_dir


@pytest.mark.slow
def test_loss_falls_on_real_cifar_images(cifar_subset, tmp_path):
    """4 epochs on the 1000 real training images: once the bank holds features (epoch 1), the loss falls.

    Batches of 32: 32 steps an epoch, as many as batches of 128 gave on a 4000-image split.
    """
    cli.main(quick_args(cifar_subset, tmp_path, "--model.init_args.loss.init_args.temperature=0.2",
                        "--model.init_args.optimizer.init_args.lr=0.1", epochs=4, batches=None, batch_size=32))
    with open(run_dir(tmp_path) / "metrics.csv") as f:
        losses = [float(r["train/loss_epoch"]) for r in csv.DictReader(f) if r.get("train/loss_epoch")]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert losses[2] < losses[1] and losses[3] < losses[2]
    assert losses[3] < losses[1] - 0.5


@pytest.mark.parametrize("every", [1, 3, 4])
def test_non_finite_loss_stops_the_run_naming_the_step(tmp_path, every):
    torch.manual_seed(0)
    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), loss=ContrastiveLoss(0.1),
                               negatives=MemoryBank(dim=8), num_samples=8, check_finite_every_n_steps=every)
    good = torch.randn(8, 3, 16, 16)
    bad = good.clone()
    bad[0, 0, 0, 0] = float("nan")
    loader = DataLoader([(torch.arange(8), good, torch.zeros(8, dtype=torch.long))] * 2
                        + [(torch.arange(8), bad, torch.zeros(8, dtype=torch.long))] * 4, batch_size=None)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    bank_before_nan = None

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            nonlocal bank_before_nan
            if batch_idx == 2:
                bank_before_nan = pl_module.negatives.bank.clone()

    trainer.callbacks.append(Spy())
    # the check runs every `every` steps (and at the epoch's end) but names the first bad step exactly
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step 2 \(epoch 0\)"):
        trainer.fit(module, train_dataloaders=loader)
    assert torch.isfinite(module.negatives.bank).all()  # the bank never took the NaN features
    assert torch.equal(module.negatives.bank, bank_before_nan)


def test_hard_losses_log_how_often_the_positive_joins_the_hard_set(cifar_small, tmp_path):
    import csv

    run = cli.main(quick_args(cifar_small, tmp_path, "-c", str(ROOT / "configs/loss/hard_contrastive_alpha.yaml"),
                              "--model.init_args.penalty_entropy_every_n_steps=1", "--trainer.log_every_n_steps=1",
                              "--trainer.callbacks.init_args.plot=false", epochs=1, batches=3))
    values = [float(r["train/pos_in_hard_set"]) for r in csv.DictReader(open(run_dir(tmp_path) / "metrics.csv"))
              if r.get("train/pos_in_hard_set")]
    assert len(values) == 3 and all(0.0 <= v <= 1.0 for v in values)
    # an untrained encoder against a random bank: the positive is no nearer than the hardest negatives
    assert values[0] < 0.5
    assert run.model.loss.alpha == 0.0819 and run.model.loss.num_negatives is None
