"""The fast epoch (batched uint8 reads, cached and prefetched metrics passes) changes no value.

A reference kept here computes every metric the straightforward way, as the callback did
before: the images read one by one through the datamodule's dataset, the augmented views
seeded with ``torch.manual_seed`` per image, every metric from full similarity matrices. It
runs beside the real callback in a 3-epoch run of the CPU recipe, and the logged values
must match it to float tolerance; the bank-positive Fig 8 profile (``val/pos_sim_bank``) is
checked against the same kind of hand-written computation. With ``views_on_device`` the
reference draws the test views from the device augmentation the same way.
"""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning import Callback

from datamodules import transforms as T
from datamodules.batch import IndexedDataset, InMemoryImages, image_seed


# --------------------------------------------------------------------------- the training loader
@pytest.mark.parametrize("dataset", ["cifar10", "svhn"])
@pytest.mark.parametrize("subset", [{}, {"train_subset": 200, "val_fraction": 0.1}])
def test_batched_uint8_reads_give_the_batches_of_per_image_reads(tmp_path, dataset, subset):
    from datamodules.cifar import CIFAR10DataModule
    from datamodules.svhn import SVHNDataModule
    from tests.fakedata import write_cifar10, write_svhn

    cls, write = (CIFAR10DataModule, write_cifar10) if dataset == "cifar10" else (SVHNDataModule, write_svhn)
    dm = cls(str(write(tmp_path, n_train=300, n_test=20)), batch_size=32, num_workers=0, device_augmentation=True,
             verify_checksums=False, sampling_seed=3, **subset)
    dm.setup()
    fast = dm.train_dataloader()
    assert isinstance(fast.dataset, InMemoryImages)
    # the old path: each image through the dataset class and to_uint8_tensor, then the default collate
    slow = torch.utils.data.DataLoader(IndexedDataset(dm.train_split(), T.to_uint8_tensor), batch_size=32,
                                       sampler=fast.sampler)
    for epoch in (0, 1):
        fast.sampler.set_epoch(epoch)
        pairs = list(zip(fast, slow, strict=True))
        assert len(pairs) == math.ceil(len(dm.train_split()) / 32)
        for a, b in pairs:
            for x, y in zip(a, b, strict=True):
                assert x.dtype == y.dtype and torch.equal(x, y)


# --------------------------------------------------------------------------- the metrics
def _embed(module, images: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([module.embed(images[i:i + batch]) for i in range(0, len(images), batch)]).float()


def _old_views(dm, split: str, seed: int, num_views: int, limit: int | None = None) -> list[torch.Tensor]:
    """Augmented views as before: each image through the pretraining transform under torch.manual_seed."""
    data = dm.eval_dataloader(split, stage="pretrain", num_views=num_views).dataset.dataset  # IndexedDataset
    transform = T.build(dm.augmentation, "pretrain")
    views = [[] for _ in range(num_views)]
    for i in range(len(data) if limit is None else min(limit, len(data))):
        image, _ = data.dataset[i]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(image_seed(seed, i))
            for v in range(num_views):
                views[v].append(transform(image))
    return [torch.stack(v) for v in views]


def _plain_images(dm, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = dm.eval_dataloader(split).dataset  # IndexedDataset with the evaluation transform
    items = [data[i] for i in range(len(data))]
    return torch.stack([x for _, x, _ in items]), torch.tensor([y for _, _, y in items])


def _topk_profile(queries: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[float, list[float]]:
    """Mean s(q_i, k_i) and mean of the k largest s(q_i, k_j), j != i, by the full matrix."""
    sims = queries.double() @ keys.double().T  # (M, N)
    m = len(queries)
    pos = sims[torch.arange(m), torch.arange(m)]
    others = sims.clone()
    others[torch.arange(m), torch.arange(m)] = -math.inf
    top = others.sort(dim=1, descending=True).values[:, :k]  # (M, k)
    return float(pos.mean()), top.mean(dim=0).tolist()


def _knn(train_z, train_y, test_z, test_y, k: int, sigma: float, num_classes: int) -> float:
    sims = F.normalize(test_z.double(), dim=1) @ F.normalize(train_z.double(), dim=1).T
    top, idx = sims.topk(min(k, len(train_z)), dim=1)
    weights = ((top - top[:, :1]) / sigma).exp()
    scores = torch.zeros(len(test_z), num_classes, dtype=torch.float64).scatter_add_(1, train_y[idx], weights)
    return float((scores.argmax(dim=1) == test_y).double().mean())


class Reference(Callback):
    """Every metric of EmbeddingMetrics, the straightforward way, at the same moments."""

    def __init__(self, metrics) -> None:
        self.metrics = metrics  # the real callback, for its settings
        self.rows: dict[int, dict[str, float]] = {}

    def compute(self, trainer, module, epoch: int, initial: bool) -> None:
        cb, dm = self.metrics, trainer.datamodule
        was_training = module.training
        module.eval()
        batch = dm.per_device_eval_batch_size
        x, y = _plain_images(dm, "test")
        z = _embed(module, x, batch).double()
        if cb.views_on_device:  # the device augmentation's two views, drawn in turn from one seeded generator
            views = dm.device_views("test", torch.arange(len(x)), trainer.current_epoch, module.device, num_views=2)
        else:
            views = _old_views(dm, "test", trainer.current_epoch, 2)
        z1, z2 = (_embed(module, v, batch).double() for v in views)
        n = len(z)
        d2 = torch.cdist(z, z).square()
        pairs = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        same = (y[:, None] == y[None, :]) & ~torch.eye(n, dtype=torch.bool)
        row = {"val/uniformity": -math.log(float(torch.exp(-cb.uniformity_t * d2[pairs]).mean())),
               "val/tolerance": float((z @ z.T)[same].mean()),
               "val/alignment": float((z1 - z2).norm(dim=1).square().mean()),
               "val/centroid_norm": float(z.mean(0).norm())}
        pos, negs = _topk_profile(z1, z2, cb.top_k)
        row["val/pos_sim"] = pos
        row.update({f"val/neg_sim_{r + 1}": v for r, v in enumerate(negs)})
        bank = module.negatives.indexed_keys.detach().double()
        row["bank/centroid_norm"] = float(bank.mean(0).norm())
        # Fig 8 the paper's way: one training view per image (as the training loader makes it), own bank entry
        m = min(cb.bank_profile_images, len(bank))
        (views,) = dm.device_views("train", torch.arange(m), trainer.current_epoch, module.device)
        queries = _embed(module, views, batch).double()
        pos_b, negs_b = _topk_profile(queries, bank, cb.top_k)
        row["val/pos_sim_bank"] = pos_b
        row.update({f"val/neg_sim_bank_{r + 1}": v for r, v in enumerate(negs_b)})
        if initial:
            xt, yt = _plain_images(dm, "train")
            train_z, train_y = _embed(module, xt, batch), yt
        else:
            train_z, train_y = bank, dm.labels("train")
        row["val/knn_top1"] = _knn(train_z, train_y, z, y, cb.knn_k, cb.knn_sigma, dm.num_classes)
        module.train(was_training)
        self.rows[epoch] = row

    def on_train_start(self, trainer, module) -> None:
        with torch.random.fork_rng(devices=[]):
            self.compute(trainer, module, -1, initial=True)

    def on_train_epoch_end(self, trainer, module) -> None:
        with torch.random.fork_rng(devices=[]):
            self.compute(trainer, module, trainer.current_epoch, initial=False)


@pytest.mark.slow
@pytest.mark.parametrize("prefetch, on_device", [(True, False), (False, False), (True, True)])
def test_a_three_epoch_run_logs_the_metrics_of_the_straightforward_computation(cifar_small, tmp_path, prefetch,
                                                                               on_device):
    import cli
    from callbacks.embedding_metrics import EmbeddingMetrics
    from tests.conftest import quick_args, run_dir

    args = quick_args(cifar_small, tmp_path, "--data.init_args.train_subset=256", "--data.init_args.test_subset=128",
                      f"--trainer.callbacks.init_args.prefetch_views={str(prefetch).lower()}",
                      "--trainer.callbacks.init_args.bank_profile_images=100",
                      f"--trainer.callbacks.init_args.views_on_device={str(on_device).lower()}",
                      epochs=3, batches=None, batch_size=64, configs=("configs/experiments/cpu_reproduction.yaml",))
    run = cli.main(args[1:], run=False)
    metrics = next(c for c in run.trainer.callbacks if isinstance(c, EmbeddingMetrics))
    reference = Reference(metrics)
    run.trainer.callbacks.append(reference)
    run.trainer.fit(run.model, datamodule=run.datamodule)

    rows = [r for r in csv.DictReader(open(run_dir(tmp_path) / "metrics.csv")) if r.get("val/uniformity")]
    logged = {int(r["epoch"]): r for r in rows}
    assert sorted(logged) == sorted(reference.rows) == [-1, 0, 1, 2]
    for epoch, expected in reference.rows.items():
        assert len(expected) == 4 + 1 + 10 + 1 + 1 + 10 + 1
        for key, value in expected.items():
            assert float(logged[epoch][key]) == pytest.approx(value, rel=1e-5, abs=2e-6), (epoch, key)
    # the bank profile is its own measurement: its positive is not the second view's
    assert logged[2]["val/pos_sim_bank"] != logged[2]["val/pos_sim"]
    # no worker process is left behind
    assert not metrics._background and not metrics._pending
    # Fig 8 is drawn once, at the end, with every epoch
    assert (run_dir(tmp_path) / "plots" / "similarity_profile.png").is_file()
    assert sorted(metrics.profile) == [-1, 0, 1, 2]
