"""The base class of the suite's LightningModules (the slot ``model`` of ``cli.py``), and the recipe reader."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any, Callable, Iterable

import pytorch_lightning as pl
import torch
import yaml
from torch import nn

from datamodules.batch import BatchProvider

#: the folder holding configs/: the clone's root, or contrastive_behaviour/suite/ in an installed wheel, where the
#: YAML recipes are package data beside the code (pyproject.toml), so the defaults never read the clone's files
REPO = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=None)
def _model_args(config: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / config).read_text())["model"]["init_args"]


def recipe_factory(config: str, key: str) -> Callable:
    """``model.init_args.<key>`` of the shipped YAML file ``config`` (relative to the folder of ``configs/``) as a factory.

    The optimiser and schedule defaults are written once, in the shipped YAML recipes
    (``configs/base.yaml`` for pretraining, ``configs/eval/linear.yaml`` for linear
    evaluation), where ``--print_config`` shows them and a flag changes them; a module
    built in Python without an optimiser or a scheduler gets the same ones from here.

    Args:
        config: e.g. ``"configs/base.yaml"``.
        key: ``"optimizer"`` or ``"scheduler"``, an entry ``{class_path, init_args}``.

    Returns:
        ``class_path`` with ``init_args`` bound: call it with the parameters (optimiser)
        or the optimiser (scheduler).
    """
    entry = _model_args(config)[key]
    module, name = entry["class_path"].rsplit(".", 1)
    return functools.partial(getattr(importlib.import_module(module), name), **(entry.get("init_args") or {}))
from lightning_modules.checkpoints import is_plain


class SuiteModule(pl.LightningModule):
    """A LightningModule of this suite (pretraining or linear evaluation).

    ``cli.py`` links the datamodule's ``num_train_samples`` and ``num_classes`` into
    every subclass, so each takes both arguments, even where one is unused.
    """

    #: the training pipeline this module needs (``pretrain``, ``linear``, ``none``, ``features``);
    #: :meth:`setup` hands it to the datamodule, the one hook between the two
    augmentation_stage: str = "pretrain"

    #: ``cli.py fit`` runs the test split right after training (linear evaluation: the numbers of Table 1)
    evaluates_on_test_after_fit: bool = False
    #: folder of a file logger that names none (``runs/<log_name>/version_N``), set by ``cli.py``
    log_name: str = "pretrain"

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

    # ------------------------------------------------------- training scalars, cheaply
    def track_epoch_means(self, *names: str) -> None:
        """Average the scalars ``names`` over each training epoch, in a buffer on the device.

        ``self.log(..., on_epoch=True)`` in the training step costs 0.6 ms a call on this
        project's 2-core CPU (``benchmarks/bench_log.py``; Lightning moves its whole result
        record to the value's device each time): about half of a linear probe's step. The sums
        here cost two in-place adds; the means,
        weighted by batch size as Lightning weights them, are logged once, at the end of the
        epoch (:meth:`log_epoch_means`). The sums travel in the checkpoint, so a run resumed
        in the middle of an epoch (a requeued SLURM job) logs the mean of the whole epoch.
        """
        self.epoch_mean_names = names
        self.register_buffer("_epoch_sums", torch.zeros(len(names) + 1), persistent=False)  # ..., batch sizes
        self._sums_epoch = -1  # the epoch the sums belong to

    def add_to_epoch_means(self, batch_size: int, *values: torch.Tensor) -> None:
        """One batch's scalars, in the order of :meth:`track_epoch_means` (device ops only, no host sync)."""
        if self._sums_epoch != self.current_epoch:  # the first batch of an epoch; a resumed epoch keeps its sums
            self._epoch_sums.zero_()
            self._sums_epoch = self.current_epoch
        self._epoch_sums[:-1].add_(torch.stack([v.detach().float() for v in values]), alpha=batch_size)
        self._epoch_sums[-1].add_(batch_size)

    def log_epoch_means(self, prog_bar: Iterable[str] = ()) -> None:
        """Log the epoch's means (from ``on_train_epoch_end``); nothing if the epoch had no batch."""
        if self._sums_epoch != self.current_epoch:
            return
        shown = set(prog_bar)
        for i, name in enumerate(self.epoch_mean_names):
            self.log(name, self._epoch_sums[i] / self._epoch_sums[-1], on_step=False, on_epoch=True,
                     prog_bar=name in shown)

    def logs_this_step(self) -> bool:
        """Whether Lightning writes step metrics after this training step (every ``log_every_n_steps``).

        Step values logged only then reach the loggers exactly as before and cost nothing at
        the other steps; the progress bar shows the last one written. Lightning's own test
        counts the batches that stepped the optimiser, which is ``global_step`` for these
        modules (one optimiser, a step for every batch or accumulated group).
        """
        try:
            trainer = self.trainer
        except RuntimeError:  # outside a Trainer, self.log would only warn
            return False
        every = trainer.log_every_n_steps
        return bool(trainer.fast_dev_run) or trainer.should_stop or (
            every > 0 and (self.global_step + 1) % every == 0)

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
        if hasattr(self, "_epoch_sums"):
            checkpoint["epoch_means"] = {"epoch": self._sums_epoch, "sums": self._epoch_sums.detach().cpu()}
        try:
            trainer = self.trainer
        except RuntimeError:  # saved outside a Trainer
            return
        checkpoint["run"] = run_record(trainer)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        means = checkpoint.get("epoch_means")
        if means is not None and hasattr(self, "_epoch_sums") and len(means["sums"]) == len(self._epoch_sums):
            self._epoch_sums.copy_(means["sums"])
            self._sums_epoch = int(means["epoch"])


def run_record(trainer: pl.Trainer) -> dict[str, Any]:
    """What a resume and the sweep runner need to know of the run that wrote a checkpoint.

    ``epochs_completed``: epochs whose training ended (an epoch-end checkpoint of epoch e
    says e + 1, a mid-epoch one e); with ``max_epochs`` it tells a finished run from an
    interrupted one. ``wandb_id``: the W&B run to continue. ``log_dir``: the run folder.
    """
    wandb_id = None
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            wandb_id = logger.version
    first = trainer.loggers[0] if trainer.loggers else None
    log_dir = getattr(first, "log_dir", None) if first is not None else None
    return {"epochs_completed": int(trainer.fit_loop.epoch_progress.current.processed),
            "max_epochs": trainer.max_epochs, "wandb_id": None if wandb_id is None else str(wandb_id),
            "log_dir": None if log_dir is None else str(log_dir)}
