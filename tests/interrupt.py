"""Callbacks that interrupt a run at a chosen moment, as a signal, Ctrl-C or a requeue would (tests only)."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from callbacks.embedding_metrics import EmbeddingMetrics


class SignalAt(Callback):
    """Sends ``signum`` to this process at the end of batch ``batch`` of epoch ``epoch``.

    The end of a batch is where Lightning's own requeue handler would have saved the
    worst checkpoint (after the optimiser step, before the memory bank's update).

    Args:
        signum: e.g. 15 (SIGTERM) or 10 (SIGUSR1).
        epoch: the epoch.
        batch: the batch index within that epoch.
    """

    def __init__(self, signum: int = 15, epoch: int = 0, batch: int = 0) -> None:
        self.signum, self.epoch, self.batch = signum, epoch, batch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


class StopAfterRequeue(Callback):
    """Ends the job once a requeue checkpoint exists, as SLURM does after ``scontrol requeue`` (SIGTERM).

    Args:
        folder: where ``hpc_ckpt_*.ckpt`` appears (the trainer's ``default_root_dir``).
    """

    def __init__(self, folder: str = ".") -> None:
        self.folder = folder
        self.before: set[str] = set()

    def _saved(self) -> set[str]:
        return {name for name in os.listdir(self.folder) if name.startswith("hpc_ckpt_")}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.before = self._saved()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._saved() - self.before:  # the requeue checkpoint of this job: SLURM ends it now
            os.kill(os.getpid(), signal.SIGTERM)


class MetricsInterruptedAt(EmbeddingMetrics):
    """:class:`EmbeddingMetrics` that gets a SIGINT (Ctrl-C) inside the metrics of epoch ``stop_epoch``.

    Args:
        stop_epoch: the epoch whose metrics are interrupted (once: a resumed run computes them).
        every_n_epochs: as for EmbeddingMetrics.
        plot: as for EmbeddingMetrics.
    """

    def __init__(self, stop_epoch: int = 0, every_n_epochs: int = 1, plot: bool = False) -> None:
        super().__init__(every_n_epochs=every_n_epochs, plot=plot)
        self.stop_epoch = stop_epoch

    def compute(self, trainer: pl.Trainer, module: pl.LightningModule, initial: bool = False,
                epoch: int | None = None):
        if not initial and epoch is None and trainer.current_epoch == self.stop_epoch:
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt here
        return super().compute(trainer, module, initial=initial, epoch=epoch)


class PoisonAt(Callback):
    """Sets every encoder weight to NaN at the start of batch ``batch`` of epoch ``epoch`` (the loss turns NaN).

    Args:
        epoch: the epoch.
        batch: the batch index within that epoch.
    """

    def __init__(self, epoch: int = 1, batch: int = 0) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            for p in pl_module.encoder.parameters():
                p.data.fill_(float("nan"))
