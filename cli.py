"""Command line of the suite: ``python cli.py {fit,validate,test} -c configs/... [--overrides]``.

Every class the configs name is importable from the packages imported here, so
``--help`` lists them and a ``class_path`` resolves.
"""

from __future__ import annotations

import sys
import warnings

from pytorch_lightning.cli import LightningCLI

import callbacks  # noqa: F401  (the callbacks' classes, for class_path)
import datamodules
import lightning_modules  # noqa: F401
from callbacks.provenance import ProvenanceSaveConfig
from datamodules.base import ContrastiveDataModule, DatasetNotFoundError
from lightning_modules.base import SuiteModule

datamodules.load_all()  # every dataset class, for class_path and --help

# pretraining keeps the datamodule's val_dataloader (linear evaluation uses it) but has no validation loop
warnings.filterwarnings("ignore", message=".*val_dataloader.* but have no `validation_step`.*")


class SuiteCLI(LightningCLI):
    """LightningCLI with the links between data and model that every run needs."""

    def add_arguments_to_parser(self, parser) -> None:
        # data-derived sizes go to top-level module arguments only (docs/architecture.md, the batch contract)
        parser.link_arguments("data.num_train_samples", "model.init_args.num_samples", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    def after_fit(self) -> None:
        """Linear evaluation ends with the test split: the numbers of Table 1."""
        model = self.model
        if isinstance(model, SuiteModule) and model.evaluates_on_test_after_fit and not self.trainer.interrupted:
            self.trainer.test(model, datamodule=self.datamodule)


def _subclasses(base: type) -> list[str]:
    found, todo = [], [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if not sub.__name__.startswith("_") and not sub.__name__.startswith("Unverified"):
                found.append(f"{sub.__module__}.{sub.__name__}")
    return sorted(set(found))


def catalogue() -> str:
    """The components a config can name, for ``--help``."""
    from datamodules.base import ContrastiveDataModule as Data
    from lightning_modules.encoders import Encoder
    from lightning_modules.losses import ContrastiveLossBase
    from lightning_modules.negatives import NegativeSource

    slots = [("model (--model)", SuiteModule), ("loss (--model.init_args.loss)", ContrastiveLossBase),
             ("negatives (--model.init_args.negatives)", NegativeSource),
             ("encoder (--model.init_args.encoder)", Encoder), ("data (--data)", Data)]
    lines = [f"{slot}: {', '.join(name.rsplit('.', 1)[1] for name in _subclasses(base))}" for slot, base in slots]
    lines.append("Arguments of one: --model.help ContrastiveModule, --model.init_args.loss.help HardContrastiveLoss")
    return "Components. " + ". ".join(lines)


def main(args: list[str] | None = None, run: bool = True) -> SuiteCLI:
    """Run the CLI on ``args`` (``sys.argv[1:]`` when None); tests call this directly."""
    return SuiteCLI(
        SuiteModule,
        ContrastiveDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_callback=ProvenanceSaveConfig,
        args=args,
        run=run,
        parser_kwargs={sub: {"epilog": catalogue()} for sub in ("fit", "validate", "test", "predict")},
    )


if __name__ == "__main__":
    try:
        main()
    except DatasetNotFoundError as err:  # a missing dataset needs a sentence, not a traceback
        sys.exit(f"error: {err}")
