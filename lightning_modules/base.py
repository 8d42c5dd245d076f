"""The base class of the suite's LightningModules: the slot ``model`` of ``cli.py``."""

from __future__ import annotations

import pytorch_lightning as pl


class SuiteModule(pl.LightningModule):
    """A LightningModule of this suite (pretraining or linear evaluation).

    ``cli.py`` links the datamodule's ``num_train_samples`` and ``num_classes`` into
    every subclass, so each takes both arguments, even where one is unused.
    """

    #: which training augmentation the datamodule should apply (``pretrain``, ``linear``, ``none``)
    augmentation_stage: str = "pretrain"
