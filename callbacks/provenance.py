"""Provenance of every run: the resolved config, the code version and the dataset, in checkpoints and loggers."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import SaveConfigCallback

from datamodules.base import ContrastiveDataModule

REPO = Path(__file__).resolve().parents[1]


def code_version() -> dict[str, Any]:
    """The git commit of the code and whether the tree had uncommitted changes (None outside git)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    # an installed package (site-packages) may sit inside someone else's repository: record no commit rather
    # than that repository's
    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != REPO:
        return {"git_commit": None, "git_dirty": None}
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def dataset_info(trainer: pl.Trainer) -> dict[str, Any]:
    """The datamodule's ``describe()`` (name, location, sizes); empty for a datamodule of another kind."""
    dm = trainer.datamodule
    return dm.describe() if isinstance(dm, ContrastiveDataModule) else {}


class ProvenanceSaveConfig(SaveConfigCallback):
    """Saves ``config.yaml`` as LightningCLI does, and records the run's provenance.

    The resolved config, the git commit and the dataset's name and size go into every
    checkpoint (``checkpoint["provenance"]``) and into each logger's hyper-parameters
    (for W&B, the run's config). Source: no paper; it extends Lightning's
    ``SaveConfigCallback`` (``pytorch_lightning.cli``), which ``cli.py`` hands the parser.

    Example:
        >>> sorted(code_version())  # what every run records of the code
        ['git_commit', 'git_dirty']
        >>> issubclass(ProvenanceSaveConfig, SaveConfigCallback)
        True
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.provenance = {
            "config": self.parser.dump(self.config, skip_none=False, skip_validation=True),
            "code": code_version(),
            "dataset": dataset_info(trainer),
        }
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        flat = {"code": self.provenance["code"], "dataset": self.provenance["dataset"],
                "config": self.config.as_dict() if hasattr(self.config, "as_dict") else dict(self.config)}
        for logger in trainer.loggers:
            logger.log_hyperparams(flat)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["provenance"] = getattr(self, "provenance", None)
