"""The base class of the suite's LightningModules: the slot ``model`` of ``cli.py``."""

from __future__ import annotations

from typing import Any, Iterable

import pytorch_lightning as pl
from torch import nn

from datamodules.batch import BatchProvider


class SuiteModule(pl.LightningModule):
    """A LightningModule of this suite (pretraining or linear evaluation).

    ``cli.py`` links the datamodule's ``num_train_samples`` and ``num_classes`` into
    every subclass, so each takes both arguments, even where one is unused.
    """

    #: the training pipeline this module needs (``pretrain``, ``linear``, ``none``, ``features``);
    #: :meth:`setup` hands it to the datamodule, the one hook between the two
    augmentation_stage: str = "pretrain"

    #: set by subclasses: build the optimiser from parameters, and the scheduler from the optimiser
    optimizer_factory: Any
    scheduler_factory: Any

    def setup(self, stage: str) -> None:
        """Tell the datamodule which training pipeline this module needs (subclasses call ``super().setup``)."""
        dm = self.trainer.datamodule
        if isinstance(dm, BatchProvider):
            dm.request_train_pipeline(self.augmentation_stage)

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        """What the optimiser updates (subclasses narrow it, e.g. to the linear layer)."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.trainable_parameters())
        scheduler = self.scheduler_factory(optimizer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
