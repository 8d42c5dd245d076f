"""The base class of the suite's LightningModules: the slot ``model`` of ``cli.py``."""

from __future__ import annotations

from typing import Any, Iterable

import pytorch_lightning as pl
from torch import nn

from lightning_modules.checkpoints import is_plain


class SuiteModule(pl.LightningModule):
    """A LightningModule of this suite (pretraining or linear evaluation).

    ``cli.py`` links the datamodule's ``num_train_samples`` and ``num_classes`` into
    every subclass, so each takes both arguments, even where one is unused.
    """

    #: which training augmentation the datamodule should apply (``pretrain``, ``linear``, ``none``)
    augmentation_stage: str = "pretrain"

    #: folder of a file logger that names none (``runs/<log_name>/version_N``), set by ``cli.py``
    log_name: str = "pretrain"

    #: set by subclasses: build the optimiser from parameters, and the scheduler from the optimiser
    optimizer_factory: Any
    scheduler_factory: Any

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        """What the optimiser updates (subclasses narrow it, e.g. to the linear layer)."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.trainable_parameters())
        scheduler = self.scheduler_factory(optimizer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the checkpoint readable without unpickling code (``torch.load(weights_only=True)``).

        Hyper-parameters built by ``cli.py`` are config dictionaries already; those that are
        Python objects (a module built in Python with an encoder or loss object) are left
        out, so ``load_from_checkpoint`` of such a module needs them passed again. The
        encoder is recorded as ``encoder_config`` (``{"class_path", "init_args"}``), from
        which linear evaluation rebuilds it.
        """
        hparams = checkpoint.get("hyper_parameters")
        if isinstance(hparams, dict):
            checkpoint["hyper_parameters"] = {k: v for k, v in hparams.items() if is_plain(v)}
        describe = getattr(getattr(self, "encoder", None), "describe", None)
        description = describe() if callable(describe) else None
        if description is not None and is_plain(description):
            checkpoint["encoder_config"] = description
