"""What the reports know beyond the runs: the losses' catalogue (read from the classes) and the paper's Table 1.

The losses are described by their classes (:func:`lightning_modules.losses.loss_classes`: ``key``,
``title``, ``tempered``, ``hard``, ``source``); no script keeps a table of loss names. The paper's
numbers are data, ``configs/experiments/paper_table1.yaml``, whose column names are loss keys with a
temperature (``contrastive_tau0.3``) or without (``simple``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lightning_modules.losses import ContrastiveLossBase, loss_classes  # noqa: E402

PAPER_TABLE = ROOT / "configs/experiments/paper_table1.yaml"
#: the paper's arXiv id, as the classes of its own losses cite it in ``source``
PAPER_ARXIV = "arXiv:2012.09740"
DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "imagenet100": "ImageNet-100"}
#: the paper's figure numbers of the per-loss figures (uniformity, tolerance) against the temperature,
#: by loss key; another tempered loss gets the same figures named after its key alone
PAPER_FIGURES = {"contrastive": {"uniformity": 4, "tolerance": 5},
                 "hard_contrastive": {"uniformity": 6, "tolerance": 7}}


def losses() -> dict[str, type[ContrastiveLossBase]]:
    """key -> loss class, in the catalogue's order (the paper's four first)."""
    return {cls.key: cls for cls in loss_classes()}


def loss_class(key: str) -> type[ContrastiveLossBase] | None:
    """The class whose ``key`` this is, or None (a run of a class this checkout lacks)."""
    return losses().get(key)


def loss_title(key: str) -> str:
    """The class's ``title``, or the key itself when no class declares it."""
    cls = loss_class(key)
    return cls.title if cls is not None else key


def is_tempered(key: str, temperatures: list[float | None] = ()) -> bool:
    """The class says it has a temperature; for an unknown key, its runs have one."""
    cls = loss_class(key)
    return cls.tempered if cls is not None else any(t is not None for t in temperatures)


def is_hard(key: str) -> bool:
    cls = loss_class(key)
    return bool(cls is not None and cls.hard)


def loss_order(key: str) -> tuple[int, str]:
    """Sort key: the catalogue's order, unknown keys last by name."""
    keys = list(losses())
    return (keys.index(key), key) if key in keys else (len(keys), key)


def dataset_title(dataset: str) -> str:
    return DATASET_TITLES.get(dataset, dataset)


def dataset_order(dataset: str) -> tuple[int, str]:
    keys = list(DATASET_TITLES)
    return (keys.index(dataset), dataset) if dataset in keys else (len(keys), dataset)


def parse_column(column: str) -> tuple[str, float | None]:
    """``contrastive_tau0.3`` -> ("contrastive", 0.3); ``simple`` -> ("simple", None)."""
    loss, sep, tau = column.rpartition("_tau")
    return (loss, float(tau)) if sep and loss else (column, None)


def paper_columns() -> list[str]:
    """The paper's Table 1 columns, in its order."""
    return list(yaml.safe_load(PAPER_TABLE.read_text())["columns"])


def paper_table() -> dict[str, dict[str, dict[str, float]]]:
    """dataset -> column -> {accuracy, uniformity, tolerance}, from ``paper_table1.yaml``."""
    table = yaml.safe_load(PAPER_TABLE.read_text())
    return {ds: {col: {m: vals[i] for m, vals in rows.items()} for i, col in enumerate(table["columns"])}
            for ds, rows in table["datasets"].items()}
