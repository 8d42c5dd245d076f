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
from lightning_modules.losses import ContrastiveLoss, HardContrastiveLoss
from lightning_modules.negatives import InBatchNegatives, MemoryBank, MomentumQueue
from lightning_modules.similarities import Similarities
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
    # the logged penalty entropy is Eq 8's, over the kept negatives: at most log(kept), far below Eq 5's log K
    kept = run.model.loss.quantile_count(run.model.num_samples - 1)
    entropies = [float(r["train/penalty_entropy"]) for r in csv.DictReader(open(run_dir(tmp_path) / "metrics.csv"))
                 if r.get("train/penalty_entropy")]
    assert len(entropies) == 3 and all(0 < h <= math.log(kept) + 1e-6 for h in entropies), (entropies, kept)
    assert math.log(kept) < math.log(run.model.num_samples - 1) - 2


# ---- the step's diagnostics: derived from the loss and from the record -------------------------------------

def logged_step(module: ContrastiveModule, batch: tuple) -> dict[str, float]:
    """One training_step outside a Trainer (global step 0, a logging step when every == 1); what it logs."""
    logged: dict[str, float] = {}
    module.log = lambda key, value, **kwargs: logged.__setitem__(key, float(torch.as_tensor(value).detach()))  # type: ignore[method-assign]
    module.training_step(batch, 0)
    return logged


def test_the_hard_loss_logs_eq8s_entropy_over_the_kept_negatives():
    """train/penalty_entropy of the hard loss is Eq 8's (Eq 5 over the kept negatives), not Eq 5 over all K."""
    torch.manual_seed(0)
    t, k = 0.2, 3
    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), loss=HardContrastiveLoss(t, num_negatives=k),
                               negatives=MemoryBank(dim=8), num_samples=16, penalty_entropy_every_n_steps=1)
    index, images = torch.tensor([1, 5, 9, 14]), torch.randn(4, 3, 16, 16)
    bank = module.negatives.bank.clone()
    with torch.no_grad():
        q = module.embed(images).double()  # the step embeds the same images the same way (BatchNorm in train mode)
    logged = logged_step(module, (index, images, torch.tensor([0, 1, 0, 1])))
    eq8, eq5 = [], []
    for row, i in enumerate(index.tolist()):
        sims = [float(bank[j].double() @ q[row]) for j in range(16) if j != i]
        kept = sorted(sims, reverse=True)[:k]
        for chosen, out in ((kept, eq8), (sims, eq5)):
            e = [math.exp(s / t) for s in chosen]
            out.append(-sum(x / sum(e) * math.log(x / sum(e)) for x in e))
    assert logged["train/penalty_entropy"] == pytest.approx(sum(eq8) / 4, rel=1e-4)
    assert abs(logged["train/penalty_entropy"] - sum(eq5) / 4) > 0.3  # what a temperature alone gave before


def test_false_negative_rate_counts_same_class_keys_among_the_ten_nearest():
    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), negatives=MemoryBank(dim=8),
                               num_samples=20)
    module.train_labels.copy_(torch.tensor([0, 1, 0, 1, 0, 1, -1, -1, 2, 2, 0, 0, 1, 1, 2, 2, 0, 1, -1, 2]))
    neg = torch.linspace(-1, 1, 12).repeat(2, 1)  # (2, 12): the last 10 columns are the 10 nearest
    neg_index = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17, 18, 19, 0, 2, 4, 10]])
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 11] = False  # row 1's nearest column is not a negative: the 10 nearest reach back to column 1
    sims = Similarities(torch.zeros(2, 1), neg, neg_mask=mask, neg_index=neg_index, index=torch.tensor([2, 19]))
    # anchor 2 (class 0): columns 2..11 -> images 2..11, classes 0 1 0 1 -1 -1 2 2 0 0: 4 same of 8 known
    # anchor 19 (class 2): columns 1..10 -> 13 14 15 16 17 18 19 0 2 4, classes 1 2 2 0 1 -1 2 0 0 0: 3 of 9
    assert module.false_negative_rate(sims).item() == pytest.approx((4 + 3) / (8 + 9))
    assert module.false_negative_rate(Similarities(torch.zeros(2, 1), neg)) is None  # no images named
    module.train_labels.fill_(-1)
    assert math.isnan(module.false_negative_rate(sims).item())  # nothing known yet


@pytest.mark.parametrize("source", ["bank", "in_batch", "queue"])
def test_every_source_logs_the_false_negative_rate_and_the_labels_it_learned(source):
    torch.manual_seed(0)
    make, views = {"bank": (lambda: MemoryBank(dim=8), 1), "in_batch": (InBatchNegatives, 2),
                   "queue": (lambda: MomentumQueue(queue_size=8, dim=8), 2)}[source]
    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), negatives=make(), num_samples=16,
                               penalty_entropy_every_n_steps=1)
    index, labels = torch.arange(8), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    images = [torch.randn(8, 3, 16, 16) for _ in range(views)]
    logged = logged_step(module, (index, images[0] if views == 1 else images, labels))
    assert module.train_labels.tolist() == labels.tolist() + [-1] * 8
    rate = logged["train/false_negative_rate"]
    if source == "queue":  # the queue starts with random keys of no image
        assert math.isnan(rate)
        module.on_train_batch_end(None, None, 0)  # the step's keys enter the queue
        rate = logged_step(module, (index, images, labels))["train/false_negative_rate"]
    if source == "in_batch":  # 7 of every anchor's 14 negatives are other views of its class, 3 nearest at least
        assert 3 / 10 <= rate <= 7 / 10
    assert 0.0 <= rate <= 1.0


def test_a_checkpoint_without_the_label_buffer_still_loads():
    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), negatives=MemoryBank(dim=8), num_samples=16)
    old = {k: v for k, v in module.state_dict().items() if k != "train_labels"}
    module.train_labels.fill_(3)
    module.load_state_dict(old)
    assert (module.train_labels == -1).all()
    assert "train_labels" in module.state_dict()  # and the next checkpoint keeps what was learned


def test_a_source_that_returns_the_old_pair_still_feeds_the_loss():
    from lightning_modules.contrastive import as_record

    pos, neg = torch.rand(3), torch.rand(3, 5)
    sims = as_record((pos, neg))
    assert sims.pos.shape == (3, 1) and sims.neg is neg and sims.index is None and sims.neg_index is None
    assert as_record(sims) is sims
    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), negatives=MemoryBank(dim=8), num_samples=16)
    assert module.false_negative_rate(sims) is None  # no image named: nothing to count, nothing logged
