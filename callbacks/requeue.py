"""A requeue signal (SLURM's ``--signal=USR1@90``) acted on between two training batches, never inside one."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class RequeueAtBatchBoundary(Callback):
    """Runs the requeue handler at the next batch boundary instead of wherever the signal lands.

    With ``SLURMEnvironment(auto_requeue=True)`` (``configs/trainer/multi_node.yaml``)
    Lightning saves ``hpc_ckpt_N.ckpt`` and calls ``scontrol requeue`` from inside the
    signal handler, i.e. at any point of a training step: after the optimiser step but
    before the memory bank's update, say, so the checkpoint holds new weights with an old
    bank and a batch counter that makes the restarted job train on that batch twice. This
    callback keeps Lightning's handler but calls it only at the start of the next batch
    where weights, bank, optimiser and batch counter agree;
    with the sampler skipping the batches already done (``datamodules.sampling``), the
    requeued job then ends bit-identical to an uninterrupted one. ``cli.py`` adds it to
    every fit; it does nothing when no handler for ``signum`` is installed.

    Each process acts on the signal it receives (SLURM signals every task of the job),
    as Lightning's handler does; nothing is exchanged between processes at each step.

    Args:
        signum: the requeue signal (``SLURMEnvironment``'s ``requeue_signal``, SIGUSR1 by default).

    Example:
        >>> callback = RequeueAtBatchBoundary()
        >>> callback.signum == signal.SIGUSR1, callback.pending
        (True, None)
    """

    def __init__(self, signum: int = int(signal.SIGUSR1)) -> None:
        self.signum = signal.Signals(signum)
        self.pending: int | None = None
        self._handler: Any = None

    def _defer(self, signum: int, frame: Any) -> None:
        self.pending = signum  # acted on at the next batch boundary

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning installs its handlers just before training starts: wrap whatever is there now
        handler = signal.getsignal(self.signum)
        if callable(handler) and threading.current_thread() is threading.main_thread():
            self._handler = handler
            signal.signal(self.signum, self._defer)

    def _act(self) -> None:
        if self.pending is not None and self._handler is not None:
            signum, self.pending = self.pending, None
            self._handler(signum, None)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._act()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a signal during the last epoch's metrics: the job ends now, finished; nothing to requeue
        self.pending = None
        if self._handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(self.signum, self._handler)
            self._handler = None
