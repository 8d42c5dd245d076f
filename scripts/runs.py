"""Run discovery: every finished (or partial) run under a folder, and the groups of seeds the reports average.

``scripts/report.py``, ``scripts/dilemma.py``, ``scripts/compare.py`` and ``scripts/figures.py`` read runs
only through this module. Two layouts are found under a root folder:

* ``scripts/sweep.py`` cells: ``<cell>/finished.json``, ``<cell>/pretrain/version_N/{config.yaml,metrics.csv}``,
  ``<cell>/linear/version_N/metrics.csv``;
* plain ``python cli.py fit`` runs (``<name>/version_N`` with any names, e.g. ``runs/pretrain/version_0``
  and ``runs/linear/version_0``): a linear evaluation belongs to the pretraining run whose checkpoint
  its ``--model.init_args.pretrained`` names.

A run is described by its resolved pretraining ``config.yaml``, never by its folder name: the loss's
catalogue ``key`` and ``temperature`` are read from the loss class itself
(:func:`lightning_modules.losses.loss_classes`), and its *recipe* is the whole config minus what may
differ between seeds of one cell (:data:`NOT_RECIPE`). :func:`group_runs` puts runs together only when
their recipes are equal (and they trained the same number of epochs); groups that share a loss and a
temperature but not a recipe get keys that name what differs. Accuracies (``top1``/``top5`` keys) are
in percent here, everywhere (metrics and trajectories).
"""

from __future__ import annotations

import copy
import csv
import importlib
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: entries of a resolved config that are not part of its recipe: they may differ between the seeds of
#: one cell (the seed, where the files go, logger names and ids, checkpoints, how progress is shown)
NOT_RECIPE = ("seed_everything", "ckpt_path", "trainer.logger", "trainer.default_root_dir",
              "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.profiler",
              "data.init_args.num_workers",
              "overwrite_run", "allow_changed_hparams")  # cli.py's run-management flags (issue 16's branch)
#: Fig 8's two similarity profiles as EmbeddingMetrics logs them: positive key, k-th nearest negative key format
FIG8_KEYS = {"view": ("val/pos_sim", "val/neg_sim_{}"), "bank": ("val/pos_sim_bank", "val/neg_sim_bank_{}")}
#: callback arguments that name folders or files, not what is trained or measured
CALLBACK_PATHS = ("dirpath", "filename")
#: callback arguments that change how the metrics are computed, not their values (EmbeddingMetrics': where the
#: views are made, and whether the pass runs beside the next epoch; tests/test_fast_epoch.py, tests/test_overlap.py)
CALLBACK_HOW = ("prefetch_views", "overlap")
#: callbacks that only show progress
DISPLAY_CALLBACKS = ("ProgressBar",)
_ACCURACY = re.compile(r"(^|[/_])top\d+(_|$)")


@dataclass
class Run:
    """One pretraining run with what its linear evaluation measured.

    Attributes:
        name: the sweep cell's folder (relative to the root), or ``<pretraining> + <linear>`` version folders
            of a ``cli.py`` run (the pretraining folder alone while it has no linear evaluation).
        path: the cell folder (sweep) or the pretraining version folder (``cli.py``).
        dataset: ``cifar10``, ... (the datamodule class's name without ``DataModule``).
        loss: the loss class's catalogue ``key``; its class name when the class has none or cannot be imported.
        temperature: the loss's temperature (None without one).
        seed: ``seed_everything`` of the resolved pretraining config.
        recipe: the resolved pretraining config minus :data:`NOT_RECIPE`.
        finished: the pretraining completed its planned epochs and the linear evaluation ended.
        epochs: epochs completed (None when nothing was logged).
        metrics: the last epoch's ``val/*`` and ``bank/*`` and the linear run's ``test/*``; accuracies in percent.
        trajectory: epoch -> ``val/*`` and ``bank/*`` values (-1: before training); accuracies in percent.
        predictions: probe (``sgd``, ``lbfgs``) -> the linear evaluation's per-test-image predictions file.
        source: where it was read from (a folder, or ``wandb:<path>``).
    """

    name: str
    path: Path
    dataset: str
    loss: str
    temperature: float | None
    seed: int | None
    recipe: dict
    finished: bool
    epochs: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    trajectory: dict[int, dict[str, float]] = field(default_factory=dict)
    predictions: dict[str, Path] = field(default_factory=dict)
    source: str = ""

    @property
    def column(self) -> str:
        """The loss-and-temperature key, ``contrastive_tau0.3`` or ``simple`` (Table 1's column names)."""
        return column_key(self.loss, self.temperature)


@dataclass
class Group:
    """The seeds of one cell: runs whose recipes are equal.

    Attributes:
        key: ``contrastive_tau0.2``, with a suffix naming what differs when another group shares the loss
            and temperature, e.g. ``contrastive_tau0.2[epochs=120]``.
        runs: the runs (seeds), in name order.
        differs: for a group sharing loss and temperature with another: the recipe entries (dotted paths
            without ``init_args``) whose values differ among those groups, with this group's values.
    """

    key: str
    runs: list[Run]
    differs: dict[str, Any] = field(default_factory=dict)

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def dataset(self) -> str:
        return self.first.dataset

    @property
    def loss(self) -> str:
        return self.first.loss

    @property
    def temperature(self) -> float | None:
        return self.first.temperature

    @property
    def suffix(self) -> str:
        """What the key adds to the loss and temperature, e.g. ``[epochs=120]``; ``""`` when nothing, or when it
        names only the dataset (a table or figure of one dataset need not repeat it)."""
        extra = self.key[len(column_key(self.loss, self.temperature)):]
        return "" if extra == f"[{self.dataset}]" else extra

    def values(self, quantity: str) -> list[float]:
        """The values of one of :func:`quantities` over the runs that have it (the count behind a mean)."""
        return [v for run in self.runs if (v := quantities(run).get(quantity)) is not None]


def column_key(loss: str, temperature: float | None) -> str:
    """``contrastive_tau0.3`` (a tempered loss), ``simple`` (one without a temperature)."""
    return f"{loss}_tau{float(temperature)}" if temperature is not None else loss


# ------------------------------------------------------------------------ configs
def dataset_key(class_path: str) -> str:
    """``datamodules.cifar.CIFAR10DataModule`` -> ``cifar10``."""
    name = class_path.rsplit(".", 1)[-1]
    return name[: -len("DataModule")].lower() if name.endswith("DataModule") else name.lower()


def _loss_class(class_path: str) -> type | None:
    try:
        module, name = class_path.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def loss_temperature(loss: dict[str, Any]) -> float | None:
    """The temperature of a resolved loss config, as the loss itself declares it.

    The loss is built from its ``class_path`` and ``init_args`` and asked for its ``temperature``
    (``ContrastiveLossBase``'s contract), so a loss that calls its argument ``tau`` keeps its column.
    Only when the class cannot be built here (e.g. a W&B run of code this checkout lacks) does an
    ``init_args.temperature`` stand in, and a line on stderr says so.
    """
    init = loss.get("init_args") or {}
    try:
        module, name = loss["class_path"].rsplit(".", 1)
        temperature = getattr(importlib.import_module(module), name)(**init).temperature
    except Exception as err:  # noqa: BLE001  (any failure to build it: fall back, and say so)
        print(f"runs: cannot build {loss.get('class_path')} ({err!r}); reading init_args.temperature",
              file=sys.stderr)
        temperature = init.get("temperature")
    return None if temperature is None else float(temperature)


def loss_key(class_path: str) -> str:
    """The catalogue ``key`` of a loss class (``ContrastiveLossBase.key``), else its class name."""
    cls = _loss_class(class_path)
    key = cls.__dict__.get("key") if cls is not None else None
    return key if isinstance(key, str) else class_path.rsplit(".", 1)[-1]


def describe(config: dict[str, Any]) -> tuple[str, str, float | None]:
    """(dataset, loss key, temperature) of a resolved pretraining config."""
    loss = config["model"]["init_args"]["loss"]
    return dataset_key(config["data"]["class_path"]), loss_key(loss["class_path"]), loss_temperature(loss)


def _drop(config: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    node: Any = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def recipe(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved pretraining config minus :data:`NOT_RECIPE`, display-only callbacks, callbacks' paths and
    :data:`CALLBACK_HOW`."""
    out = copy.deepcopy(config)
    for dotted in NOT_RECIPE:
        _drop(out, dotted)
    callbacks = (out.get("trainer") or {}).get("callbacks")
    if isinstance(callbacks, list):
        kept = []
        for callback in callbacks:
            if isinstance(callback, dict):
                if any(name in str(callback.get("class_path", "")) for name in DISPLAY_CALLBACKS):
                    continue
                for name in CALLBACK_PATHS + CALLBACK_HOW:
                    (callback.get("init_args") or {}).pop(name, None)
            kept.append(callback)
        out["trainer"]["callbacks"] = kept
    return out


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths (``init_args`` left out, list items as ``[i]``) -> leaf values of a nested config."""
    if isinstance(config, dict):
        out: dict[str, Any] = {}
        for key, value in config.items():
            path = prefix if key == "init_args" else f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten(value, path))
        return out
    if isinstance(config, list) and any(isinstance(v, (dict, list)) for v in config):
        out = {}
        for i, value in enumerate(config):
            out.update(flatten(value, f"{prefix}[{i}]"))
        return out
    return {prefix: config}


# ----------------------------------------------------------------------- metrics
def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def versions(folder: Path) -> list[Path]:
    """``version_N`` folders in numeric order (a resumed pretraining may continue in the next one)."""
    found = [p for p in folder.glob("version_*") if p.is_dir() and p.name.split("_", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("_", 1)[1]))


def is_accuracy(key: str) -> bool:
    """``test/top1_last``, ``val/knn_top1``, ...: logged as fractions, reported in percent."""
    return bool(_ACCURACY.search(key.rsplit("/", 1)[-1]))


def _value(key: str, value: str | float) -> float:
    return 100.0 * float(value) if is_accuracy(key) else float(value)


def metrics_by_epoch(runs: Iterable[Path], prefixes: tuple[str, ...]) -> dict[int, dict[str, float]]:
    """epoch -> every metric whose name starts with one of ``prefixes``, over the runs' metrics.csv in version order.

    A resumed run continues the versions before it (later values win); a run that starts again at
    epoch 0 or -1 replaces them (the runner restarts a pretraining that died before its first checkpoint).
    Accuracies in percent.
    """
    by_epoch: dict[int, dict[str, float]] = defaultdict(dict)
    for run in runs:
        if not (run / "metrics.csv").is_file():
            continue
        rows = [(int(float(row["epoch"])), {k: _value(k, v) for k, v in row.items() if k.startswith(prefixes)})
                for row in read_csv_rows(run / "metrics.csv") if "epoch" in row]
        rows = [(epoch, values) for epoch, values in rows if values]
        if rows and min(epoch for epoch, _ in rows) <= 0:  # epoch -1: the metrics before training
            by_epoch.clear()  # a fresh start (not a resume): what came before it was abandoned
        for epoch, values in rows:
            by_epoch[epoch].update(values)
    return dict(sorted(by_epoch.items()))


def last_epoch_values(runs: Iterable[Path], prefixes: str | tuple[str, ...] = "val/"
                      ) -> tuple[int | None, dict[str, float]]:
    """(epochs trained, the ``prefixes`` metrics of the highest epoch), or (None, {}) when nothing was logged."""
    by_epoch = metrics_by_epoch(runs, (prefixes,) if isinstance(prefixes, str) else prefixes)
    if not by_epoch:
        return None, {}
    epoch = max(by_epoch)
    return epoch + 1, by_epoch[epoch]


def trajectory(runs: Iterable[Path]) -> dict[int, dict[str, float]]:
    """epoch -> every ``val/*`` and ``bank/*`` value logged at it (-1: before training)."""
    return metrics_by_epoch(runs, ("val/", "bank/"))


def planned_epochs(config: dict[str, Any]) -> int | None:
    """``trainer.max_epochs`` of a resolved config when it is a positive number, else None."""
    epochs = (config.get("trainer") or {}).get("max_epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else None


def completed(config: dict[str, Any], epochs: int | None) -> bool:
    """The pretraining logged its planned last epoch (any planned count when the config has none)."""
    planned = planned_epochs(config)
    return epochs is not None and (planned is None or epochs >= planned)


def linear_results(linear: Path) -> tuple[dict[str, float], dict[str, Path]]:
    """The ``test/*`` values (percent for accuracies) and the ``predictions_<probe>.npz`` files of a linear run."""
    test = {}
    if (linear / "metrics.csv").is_file():
        test = {k: _value(k, v) for row in read_csv_rows(linear / "metrics.csv") for k, v in row.items()
                if k.startswith("test/")}
    predictions = {p.stem.removeprefix("predictions_"): p for p in sorted(linear.glob("predictions_*.npz"))}
    return test, predictions


def _config(run: Path) -> dict[str, Any] | None:
    try:
        config = yaml.safe_load((run / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) and isinstance(config.get("model"), dict) else None


def _make_run(name: str, path: Path, config: dict[str, Any], pretrain_runs: list[Path],
              linear: tuple[dict[str, float], dict[str, Path]] | None, source: str) -> Run:
    dataset, loss, temperature = describe(config)
    _, metrics = last_epoch_values(pretrain_runs, ("val/", "bank/"))
    epochs, _ = last_epoch_values(pretrain_runs, ("val/", "bank/", "train/"))  # a run without the metrics callback
    test, predictions = linear or ({}, {})
    seed = config.get("seed_everything")
    return Run(name, path, dataset, loss, temperature, seed if isinstance(seed, int) else None, recipe(config),
               linear is not None and "test/top1_last" in test and completed(config, epochs), epochs,
               {**metrics, **test}, trajectory(pretrain_runs), predictions, source)


# ------------------------------------------------------------------ sweep cells
def is_sweep_cell(folder: Path) -> bool:
    """A cell folder of ``scripts/sweep.py`` (its markers or its log), not a folder of plain ``cli.py`` runs."""
    return any((folder / name).is_file() for name in ("finished.json", "runner.log", "pretrain/finished.json"))


def load_sweep_cell(cell_dir: Path, name: str) -> Run | None:
    """One cell of a sweep folder, or None when its pretraining has no config yet.

    Accuracies come only from the linear run that ``finished.json`` names (the runner saw it finish),
    never from a partial one.
    """
    pretrain_runs = [r for r in versions(cell_dir / "pretrain") if (r / "config.yaml").is_file()]
    if not pretrain_runs:
        return None
    config = _config(pretrain_runs[-1])
    if config is None:
        return None
    linear = None
    if (cell_dir / "finished.json").is_file():
        marker = json.loads((cell_dir / "finished.json").read_text())
        linear = linear_results(cell_dir / marker["linear_run"])
    run = _make_run(name, cell_dir, config, pretrain_runs, linear, str(cell_dir))
    if linear is not None and not run.finished:  # e.g. a runner that took an interrupted pretraining for done
        print(f"runs: {cell_dir} has finished.json but its pretraining logged {run.epochs} of "
              f"{planned_epochs(config)} epochs: counted as unfinished", file=sys.stderr)
    return run


def find_sweep_cells(root: Path, include_unfinished: bool) -> list[Run]:
    """Sweep cells holding ``finished.json`` (and, with ``include_unfinished``, every cell with a pretraining)."""
    dirs = {p.parent for p in root.rglob("finished.json") if p.parent.name != "pretrain"}
    if include_unfinished:
        dirs |= {p.parent for p in root.rglob("pretrain") if p.is_dir() and versions(p) and is_sweep_cell(p.parent)}
    runs = []
    for cell_dir in sorted(dirs):
        run = load_sweep_cell(cell_dir, cell_dir.relative_to(root).as_posix() if cell_dir != root else cell_dir.name)
        if run is not None and (run.finished or include_unfinished):
            runs.append(run)
    return runs


# ----------------------------------------------------------------- cli.py runs
def find_cli_runs(root: Path, include_unfinished: bool) -> list[Run]:
    """Plain ``python cli.py fit`` runs under ``root`` (outside sweep cells), one per pretraining.

    A linear-evaluation run (``<name>/version_N/config.yaml`` of a ``LinearEvalModule``) belongs to the
    pretraining run whose checkpoint its ``pretrained`` names: the same folder once resolved, else the
    same ``<name>/version_N`` (the runs may have been moved). A later linear run wins. Pretrainings
    without a finished evaluation are returned only with ``include_unfinished``.
    """
    pretrain_runs: dict[Path, dict[str, Any]] = {}
    linear_runs: list[tuple[Path, dict[str, Any]]] = []
    for config_file in sorted(root.rglob("config.yaml")):
        run = config_file.parent
        inside = [p for p in run.parents if p == root or root in p.parents]  # the run's folders up to root
        if not run.name.startswith("version_") or any(is_sweep_cell(p) for p in inside):
            continue
        config = _config(run)
        if config is None:
            continue
        if config["model"].get("class_path", "").endswith("LinearEvalModule"):
            linear_runs.append((run, config))
        elif isinstance(config["model"].get("init_args"), dict) and "loss" in config["model"]["init_args"]:
            pretrain_runs[run.resolve()] = config

    def owner(pretrained: str) -> Path | None:
        ckpt = Path(pretrained).expanduser()
        for guess in ([ckpt] if ckpt.is_absolute() else [Path.cwd() / ckpt, root / ckpt, root.parent / ckpt]):
            run = guess.resolve().parent.parent  # <run>/checkpoints/<file>
            if run in pretrain_runs:
                return run
        tail = ckpt.parts[-4:-2]  # (<name>, version_N)
        matches = [run for run in pretrain_runs if run.parts[-2:] == tail]
        return matches[0] if len(matches) == 1 else None

    found: dict[Path, Run] = {}
    for linear, config in linear_runs:
        pretrained = owner(str(config["model"].get("init_args", {}).get("pretrained", "")))
        if pretrained is None:
            continue
        results = linear_results(linear)
        if "test/top1_last" not in results[0]:
            continue
        name = f"{pretrained.relative_to(root.resolve()).as_posix()} + {linear.relative_to(root).as_posix()}"
        found[pretrained] = _make_run(name, pretrained, pretrain_runs[pretrained], [pretrained], results, str(linear))
    if include_unfinished:
        for run, config in pretrain_runs.items():
            if run not in found:
                found[run] = _make_run(run.relative_to(root.resolve()).as_posix(), run, config, [run], None, str(run))
    return [found[run] for run in sorted(found) if found[run].finished or include_unfinished]


def find_runs(root: Path, include_unfinished: bool = False) -> list[Run]:
    """Every run under ``root``: sweep cells, then plain ``cli.py`` runs.

    Args:
        root: a ``scripts/sweep.py --out`` folder, or the folder that holds ``cli.py``'s run folders
            (the ``save_dir``/``default_root_dir`` of its CSV logger, ``runs`` by default).
        include_unfinished: also runs still training, interrupted, or without a linear evaluation.

    Returns:
        The runs, finished or not (see :attr:`Run.finished`), sweep cells first, each in name order.
    """
    root = Path(root)
    return find_sweep_cells(root, include_unfinished) + find_cli_runs(root, include_unfinished)


# --------------------------------------------------------------- W&B (optional)
def find_wandb_runs(project: str, entity: str | None = None, group: str | None = None) -> list[Run]:
    """Runs from the W&B API that ``scripts/sweep.py --wandb online`` logged, paired by run name.

    The pretraining run (job_type ``pretrain``) gives the config (``config`` of its W&B config, logged by
    the provenance callback) and the last ``val/*`` and ``bank/*`` values (its summary); the linear run of
    the same name gives ``test/*``. Needs ``wandb`` and network access. No trajectory, no predictions.
    """
    try:
        import wandb  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        raise SystemExit("error: --wandb-project needs the wandb package (pip install wandb)") from None
    api = wandb.Api()
    pretrain: dict[str, Any] = {}
    linear: dict[str, Any] = {}
    for run in api.runs(f"{entity}/{project}" if entity else project, filters={"group": group} if group else {}):
        target = linear if run.job_type == "linear" else pretrain if run.job_type == "pretrain" else None
        if target is not None and run.state == "finished":
            target.setdefault(run.name, run)  # newest first: keep the first seen per name
    runs = []
    for name, run in pretrain.items():
        config = run.config.get("config")
        if not isinstance(config, dict):
            continue
        dataset, loss, temperature = describe(config)
        summary = dict(run.summary)
        metrics = {k: _value(k, v) for k, v in summary.items()
                   if k.startswith(("val/", "bank/")) and isinstance(v, (int, float))}
        if name in linear:
            metrics.update({k: _value(k, v) for k, v in dict(linear[name].summary).items()
                            if k.startswith("test/") and isinstance(v, (int, float))})
        epoch = summary.get("epoch")
        epochs = int(epoch) + 1 if epoch is not None else None
        seed = config.get("seed_everything")
        runs.append(Run(name, Path(name), dataset, loss, temperature, seed if isinstance(seed, int) else None,
                        recipe(config), name in linear and completed(config, epochs), epochs, metrics,
                        source=f"wandb:{'/'.join(run.path)}"))
    return runs


# ----------------------------------------------------------------------- groups
def quantities(run: Run) -> dict[str, float | None]:
    """The quantities the reports show for one run (accuracies in percent), None where not measured."""
    m = run.metrics
    out: dict[str, float | None] = {
        "top1_last": m.get("test/top1_last"), "top1_best": m.get("test/top1_best"),
        "top1_lbfgs": m.get("test/top1_lbfgs"), "top5_last": m.get("test/top5_last"),
        "uniformity": m.get("val/uniformity"), "centroid_norm": m.get("val/centroid_norm"),
        "tolerance": m.get("val/tolerance"), "alignment": m.get("val/alignment"), "knn_top1": m.get("val/knn_top1"),
        "pos_sim": m.get("val/pos_sim")}
    for k in range(1, 11):
        out[f"neg_sim_{k}"] = m.get(f"val/neg_sim_{k}")
    return out


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and "." in value and " " not in value and "/" not in value:
        return value.rsplit(".", 1)[-1]  # a class path: its class
    return str(value)


def _label(entry: str, value: Any) -> str:
    if entry == "trainer.max_epochs":
        return f"epochs={_short(value)}"
    if entry == "data.class_path":
        return dataset_key(str(value))
    if entry == "epochs done":
        return f"{value} epochs done"
    return f"{entry.rsplit('.', 1)[-1]}={_short(value)}"


def _priority(entry: str) -> tuple[int, str]:
    order = ("data.class_path", "trainer.max_epochs", "epochs done")
    return (order.index(entry), entry) if entry in order else (len(order), entry)


def group_runs(runs: list[Run]) -> list[Group]:
    """Seeds of one cell together: runs grouped only when their recipes are equal and they trained as many epochs.

    Groups that share a loss and a temperature (different recipes, or unfinished runs at different epochs)
    each get ``differs``, the entries whose values differ among them, and a key suffix naming the fewest
    of those entries (the dataset first, then the epochs, then the rest by name) that tell them apart.

    Returns:
        The groups in order of dataset, loss, temperature and key.
    """
    buckets: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: r.name):
        ident = json.dumps([run.dataset, run.loss, run.temperature, run.recipe, run.epochs], sort_keys=True,
                           default=str)
        buckets.setdefault(ident, []).append(run)
    by_column: dict[str, list[list[Run]]] = defaultdict(list)
    for members in buckets.values():
        by_column[members[0].column].append(members)
    groups = []
    for column, sets in by_column.items():
        if len(sets) == 1:
            groups.append(Group(column, sets[0]))
            continue
        flat = [{**flatten(members[0].recipe), "epochs done": members[0].epochs} for members in sets]
        entries = sorted({e for f in flat for e in f if len({json.dumps(g.get(e), default=str) for g in flat}) > 1},
                         key=_priority)
        chosen: list[str] = []
        for entry in entries:  # the fewest entries, in priority order, that tell the groups apart
            chosen.append(entry)
            if len({json.dumps([f.get(e) for e in chosen], default=str) for f in flat}) == len(flat):
                break
        for members, values in zip(sets, flat):
            suffix = ",".join(_label(e, values.get(e)) for e in chosen)
            groups.append(Group(f"{column}[{suffix}]", members, {e: values.get(e) for e in entries}))
    return sorted(groups, key=lambda g: (g.dataset, g.loss, g.temperature is not None, g.temperature or 0.0, g.key))


def _without_loss(recipe_: dict) -> dict:
    out = copy.deepcopy(recipe_)
    ((out.get("model") or {}).get("init_args") or {}).pop("loss", None)
    return out


def families(groups: list[Group]) -> list[list[Group]]:
    """Groups that may be compared across losses: equal recipes but for the loss, on one dataset, after as many
    epochs. The largest family first (ties: in the groups' order)."""
    found: dict[str, list[Group]] = {}
    for group in groups:
        ident = json.dumps([group.dataset, _without_loss(group.first.recipe), group.first.epochs], sort_keys=True,
                           default=str)
        found.setdefault(ident, []).append(group)
    return sorted(found.values(), key=lambda f: -len(f))


def family_differences(family: list[Group], reference: list[Group]) -> dict[str, Any]:
    """The recipe entries (but the loss) where ``family`` differs from ``reference``, with ``family``'s values."""
    mine = {**flatten(_without_loss(family[0].first.recipe)), "epochs done": family[0].first.epochs}
    theirs = {**flatten(_without_loss(reference[0].first.recipe)), "epochs done": reference[0].first.epochs}
    return {k: mine.get(k) for k in sorted(set(mine) | set(theirs), key=_priority) if mine.get(k) != theirs.get(k)}


def family_labels(groups: list[Group]) -> dict[str, str]:
    """group key -> ``""`` for the largest family of its dataset, else a label naming how its family differs
    from that one, e.g. ``[epochs=120]`` (the first two entries; the figures draw one line per family)."""
    labels: dict[str, str] = {}
    found = families(groups)
    for family in found:
        main = next(f for f in found if f[0].dataset == family[0].dataset)
        differs = family_differences(family, main) if family is not main else {}
        if differs and "trainer.max_epochs" in differs:
            differs.pop("epochs done", None)
        text = ",".join(_label(k, v) for k, v in list(differs.items())[:2]) + (",..." if len(differs) > 2 else "")
        for group in family:
            labels[group.key] = f"[{text}]" if text else ""
    return labels
