"""``EmbeddingMetrics(overlap=true)``: an epoch's metrics on another thread, the same values and the same training.

The pass runs on a snapshot of the encoder and the bank while the next epoch trains. The
first test runs the CPU recipe twice, in place and overlapped, and compares what was logged and
trained (the pending mark left in ``last.ckpt`` shows the overlapped run did overlap): the metrics must be the same numbers at the same epoch and step, and the training
itself (its losses and weights) must not notice the thread, which would happen if the pass
drew from the global random generator the training's augmentation draws from.
"""

from __future__ import annotations

import copy
import csv
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from callbacks.embedding_metrics import EmbeddingMetrics


def _logged(folder: Path) -> dict[tuple[str, int | None, int], float]:
    """(key, epoch, step) -> value of every value in ``metrics.csv`` (each once)."""
    out = {}
    for row in csv.DictReader(open(folder / "metrics.csv")):
        for key, value in row.items():
            if value != "" and key not in ("epoch", "step"):
                where = (key, int(row["epoch"]) if row["epoch"] else None, int(row["step"]))
                assert where not in out, f"{where} logged twice"
                out[where] = float(value)
    return out


class KeepLastCheckpoint(pl.Callback):
    """When epoch ``epoch`` starts, copy ``last.ckpt`` aside."""

    def __init__(self, epoch: int, to: Path) -> None:
        self.epoch, self.to = epoch, to

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            shutil.copy(trainer.checkpoint_callback.last_model_path, self.to)


class StateMidEpoch(pl.Callback):
    """At batch 1 of epoch ``epoch``, what the metrics callback would save in a checkpoint (a requeue's)."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.saved = epoch, None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            metrics = [cb for cb in trainer.callbacks if isinstance(cb, EmbeddingMetrics)][0]
            self.saved = copy.deepcopy(metrics.state_dict())  # as saved then


def _fit(data: Path, out: Path, overlap: bool, *extra: str, keep: Path | None = None):
    import cli
    from tests.conftest import quick_args

    args = quick_args(data, out, "--data.init_args.train_subset=250", "--data.init_args.test_subset=128",
                      f"--trainer.callbacks.init_args.overlap={str(overlap).lower()}", *extra,
                      epochs=3, batches=None, batch_size=64, configs=("configs/experiments/cpu_reproduction.yaml",))
    run = cli.main(args[1:], run=False)
    if keep is not None:
        run.trainer.callbacks += [KeepLastCheckpoint(2, keep), StateMidEpoch(2)]
    run.trainer.fit(run.model, datamodule=run.datamodule)
    return run


def test_overlapped_metrics_are_the_same_numbers_and_leave_training_alone(cifar_small, tmp_path):
    from tests.conftest import run_dir

    in_place = _fit(cifar_small, tmp_path / "in_place", False)
    kept = tmp_path / "last_after_epoch_1.ckpt"
    overlapped = _fit(cifar_small, tmp_path / "overlap", True, keep=kept)
    a, b = _logged(run_dir(tmp_path / "in_place")), _logged(run_dir(tmp_path / "overlap"))
    assert set(b) == set(a)  # the same values at the same epochs and steps
    assert {e for k, e, _ in a if k == "val/knn_top1"} == {-1, 0, 1, 2} and any(k == "val/pos_sim_bank" for k, _, _ in a)
    for where in sorted(a, key=str):
        assert b[where] == pytest.approx(a[where], rel=1e-5, abs=1e-6), where
    trained, reference = overlapped.model.encoder.state_dict(), in_place.model.encoder.state_dict()
    assert all(torch.equal(trained[k], reference[k]) for k in reference)  # the same random stream trained both
    metrics = [cb for cb in overlapped.trainer.callbacks if isinstance(cb, EmbeddingMetrics)][0]
    assert metrics.overlap and metrics.pending is None and sorted(metrics.profile) == [-1, 0, 1, 2]
    # last.ckpt of epoch 1, as the next epoch starts: its metrics still pending (a resumed run computes them again)
    state = torch.load(kept, map_location="cpu", weights_only=False)["callbacks"][metrics.state_key]
    assert state["pending"] == {"epoch": 1, "step": 7} and sorted(state["profile"]) == [-1, 0]
    # a checkpoint saved in the middle of epoch 2 (a requeue): epoch 1's metrics logged first, nothing pending,
    # since a run resumed from it would compute them from weights that are no longer epoch 1's
    mid = [cb for cb in overlapped.trainer.callbacks if isinstance(cb, StateMidEpoch)][0].saved
    assert mid["pending"] is None and sorted(mid["profile"]) == [-1, 0, 1]
    final = torch.load(overlapped.trainer.checkpoint_callback.last_model_path, map_location="cpu", weights_only=False)
    assert final["callbacks"][metrics.state_key]["pending"] is None  # the last epoch's metrics: in place


def test_an_error_in_the_overlapped_pass_stops_the_run(cifar_small, tmp_path, monkeypatch):
    compute = EmbeddingMetrics.compute

    def failing(self, trainer, module, initial=False, epoch=None):
        if not initial:
            raise RuntimeError("the metrics pass failed")
        return compute(self, trainer, module, initial=initial, epoch=epoch)

    monkeypatch.setattr(EmbeddingMetrics, "compute", failing)
    with pytest.raises(RuntimeError, match="the metrics pass failed"):
        _fit(cifar_small, tmp_path, True)


def test_overlap_refuses_a_callback_that_monitors_a_metric_it_logs_late(tmp_path):
    metrics = EmbeddingMetrics(overlap=True)
    trainer = SimpleNamespace(log_dir=str(tmp_path), default_root_dir=str(tmp_path),
                              callbacks=[metrics, SimpleNamespace(monitor="val/knn_top1")])
    with pytest.raises(ValueError, match="monitors 'val/knn_top1'.*overlap to false"):
        metrics.setup(trainer, None, "fit")
    with pytest.raises(ValueError, match="overlap needs prefetch_views"):
        EmbeddingMetrics(overlap=True, prefetch_views=False)
    trainer.callbacks[1].monitor = "train/loss_epoch"  # logged by the module at the epoch's end: fine
    metrics.setup(trainer, None, "fit")
    EmbeddingMetrics(overlap=False).setup(SimpleNamespace(log_dir=str(tmp_path), default_root_dir=str(tmp_path),
                                                          callbacks=[SimpleNamespace(monitor="val/knn_top1")]),
                                          None, "fit")


def test_overlap_by_default_where_the_steps_leave_a_core_idle_and_nothing_monitors_its_metrics(tmp_path, monkeypatch):
    from lightning_modules.contrastive import ContrastiveModule
    from lightning_modules.encoders import SmallConvEncoder

    module = ContrastiveModule(encoder=SmallConvEncoder(width=8, out_dim=16), num_samples=10)

    def decides(threads: int, monitor: str | None = None, **state) -> bool:
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        metrics = EmbeddingMetrics()
        trainer = SimpleNamespace(**{"max_epochs": 5, "current_epoch": 0, "should_stop": False, "world_size": 1,
                                     "log_dir": str(tmp_path), "default_root_dir": str(tmp_path), **state},
                                  callbacks=[metrics] + ([SimpleNamespace(monitor=monitor)] if monitor else []))
        metrics.setup(trainer, module, "fit")
        return metrics._overlaps(trainer, module)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores > 1:
        assert decides(1)
        assert not decides(1, monitor="bank/uniformity")  # a monitor needs the value at the epoch's end
        assert not decides(1, current_epoch=4)  # the last epoch: in place, so fit returns with it logged
        assert not decides(1, world_size=2)  # the metrics gather across processes
    assert not decides(2)  # the steps' threads would compete with the pass's
