"""What the reports know beyond the runs: the losses' catalogue (read from the classes) and the paper's Table 1.

The losses are described by their classes (:func:`lightning_modules.losses.loss_classes`: ``key``,
``title``, ``tempered``, ``hard``, ``source``); no script keeps a table of loss names. The paper's
numbers are data, ``configs/experiments/paper_table1.yaml``, whose column names are loss keys with a
temperature (``contrastive_tau0.3``) or without (``simple``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
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
#: (quantity, y label, title) of the per-loss figures against the temperature
METRICS = (("uniformity", "-L_uniformity", "Uniformity"), ("tolerance", "tolerance", "Tolerance"))
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


# ------------------------------------------------------------- the per-loss figures
def tempered_losses(cells: Iterable[tuple[str, float | None]]) -> list[str]:
    """The loss keys with a temperature among ``cells`` ((loss key, tau) of the cells that ran), catalogue order."""
    cells = list(cells)
    keys = sorted({key for key, _ in cells}, key=loss_order)
    return [k for k in keys if is_tempered(k, [tau for key, tau in cells if key == k])]


def untempered_losses(cells: Iterable[tuple[str, float | None]]) -> list[str]:
    """The loss keys without a temperature among ``cells``, catalogue order (the figures' flat references)."""
    cells = list(cells)
    tempered = set(tempered_losses(cells))
    return sorted({key for key, _ in cells if key not in tempered}, key=loss_order)


@dataclass(frozen=True)
class MetricFigure:
    """One per-loss figure: a metric of a tempered loss against tau (Figs 4-7 for the paper's losses)."""

    name: str  # file name: fig4_uniformity_contrastive.png for the paper's losses, uniformity_<key>.png else
    loss: str  # the tempered loss's key
    quantity: str  # "uniformity" or "tolerance"
    flat: tuple[str, ...]  # untempered losses of the same kind (hard or not) that ran: dotted levels
    ylabel: str
    title: str


def metric_figures(cells: Iterable[tuple[str, float | None]]) -> list[MetricFigure]:
    """The uniformity and tolerance figures of every tempered loss among ``cells`` ((loss key, tau) that ran).

    The paper's Figs 4-7 are these figures for the contrastive and hard contrastive losses (their file
    names kept); the untempered losses of the same kind are the flat references (simple for contrastive,
    hard simple for hard contrastive, as in the paper).
    """
    cells = list(cells)
    flat = untempered_losses(cells)
    out = []
    for loss in tempered_losses(cells):
        same_kind = tuple(k for k in flat if is_hard(k) == is_hard(loss))
        for quantity, ylabel, what in METRICS:
            number = PAPER_FIGURES.get(loss, {}).get(quantity)
            name = f"fig{number}_{quantity}_{loss}.png" if number else f"{quantity}_{loss}.png"
            title = f"{what}, {loss_title(loss)}" + (f" (Fig {number})" if number else "")
            out.append(MetricFigure(name, loss, quantity, same_kind, ylabel, title))
    return out
