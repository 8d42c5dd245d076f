"""The progress bar of the suite: Lightning's, with the last epoch's kNN accuracy beside the loss."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

#: logged value -> its short name on the bar (read back from what was logged, not recomputed)
SHOWN = {"val/knn_top1": "knn"}


class SuiteProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` that also shows ``knn``: the ``val/knn_top1`` of the last finished epoch.

    ``EmbeddingMetrics`` logs it at the end of each epoch (with ``overlap``, at the end of
    the next); the bar reads the value it last logged (``EmbeddingMetrics.latest``, else
    ``trainer.callback_metrics``), already on the host, so nothing waits for the device.
    Absent before the first epoch's metrics are logged.

    Args:
        refresh_rate: steps between refreshes of the bar (each refresh reads the logged values).
        process_position: the bar's line, for several bars at once.
        leave: keep the finished epoch's bar on screen.
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        for key, short in SHOWN.items():
            # what EmbeddingMetrics logged last (with overlap it logs after the epoch, straight to the loggers)
            logged = [cb.latest[key] for cb in trainer.callbacks if key in (getattr(cb, "latest", None) or {})]
            value = logged[0] if logged else trainer.callback_metrics.get(key)
            if value is not None:
                items[short] = f"{float(value):.3f}"
        return items
