"""No op in the training step makes the host wait for the device (.item(), nonzero, mask indexing, ...).

On the CPU nothing waits, but the ops that would are recorded, so this shows it without a GPU
for every loss and every source of negatives: training_step and the bank/queue update afterwards.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lightning_modules.contrastive import ContrastiveModule
from lightning_modules.encoders import SmallConvEncoder
from lightning_modules.losses import (ContrastiveLoss, HardContrastiveLoss, HardSimpleContrastiveLoss,
                                      SimpleContrastiveLoss)
from lightning_modules.negatives import InBatchNegatives, MemoryBank, MomentumQueue
from tests.sync_ops import RecordOps

LOSSES = {
    "contrastive": lambda: ContrastiveLoss(0.07),
    "simple": lambda: SimpleContrastiveLoss(),
    "hard_k": lambda: HardContrastiveLoss(0.07, num_negatives=5),
    "hard_alpha": lambda: HardContrastiveLoss(0.07, alpha=0.2),
    "hard_simple": lambda: HardSimpleContrastiveLoss(num_negatives=5),
}
SOURCES = {
    "bank": (lambda: MemoryBank(dim=8), 1),
    "in_batch": (lambda: InBatchNegatives(), 2),
    "queue": (lambda: MomentumQueue(queue_size=16, dim=8), 2),
}


def recorded_steps(module: ContrastiveModule, views: int, steps: int = 3) -> list[list[str]]:
    """Fit ``steps`` steps; the ops that would sync, per step, in training_step and the update after it."""
    records: list[list[str]] = []
    step, end = module.training_step, module.on_train_batch_end

    def training_step(*args, **kwargs):
        with RecordOps() as rec:
            out = step(*args, **kwargs)
        records.append(rec.syncing)
        return out

    def on_train_batch_end(*args, **kwargs):
        with RecordOps() as rec:
            end(*args, **kwargs)
        records[-1] += rec.syncing

    module.training_step, module.on_train_batch_end = training_step, on_train_batch_end
    torch.manual_seed(0)
    images = [torch.randn(8, 3, 16, 16) for _ in range(views)]
    batch = (torch.arange(8), images[0] if views == 1 else images, torch.zeros(8, dtype=torch.long))
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader([batch] * steps, batch_size=None))
    return records


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_training_step_has_no_host_sync(loss, source):
    make_source, views = SOURCES[source]
    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), loss=LOSSES[loss](),
                               negatives=make_source(), num_samples=8, penalty_entropy_every_n_steps=1)
    records = recorded_steps(module, views)
    assert len(records) == 3
    assert records == [[], [], []]


def test_the_recorder_sees_the_periodic_finite_check():
    """With a check every step, the read-back of the NaN flag is recorded: the test above can fail."""
    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), loss=ContrastiveLoss(0.1),
                               negatives=MemoryBank(dim=8), num_samples=8, check_finite_every_n_steps=1)
    records = recorded_steps(module, 1)
    assert all("_local_scalar_dense" in r for r in records)
