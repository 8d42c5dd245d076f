"""Table 1 and Figs 3-9 of the paper from finished runs (sweep cells, cli.py runs), the paper's numbers beside ours.

    python scripts/report.py runs/short --out runs/short/report
    python scripts/report.py runs/table1 --out report --include-unfinished     # also cells still running
    python scripts/report.py --wandb-project contrastive-behaviour --wandb-group table1 --out report   # online
    python scripts/report.py --from-data docs/results/cpu/data --out /tmp/cpu   # a committed report, rebuilt
    python scripts/report.py runs/cpu3 --out docs/results/cpu --doc docs/reproduce.md   # + the doc's verdict block

Local cells are the folders that ``scripts/sweep.py`` writes (``<cell>/finished.json``,
``<cell>/pretrain/version_N/{config.yaml,metrics.csv}``, ``<cell>/linear/version_N/metrics.csv``).
Plain ``python cli.py fit`` runs count too (``runs/pretrain/version_N`` and
``runs/linear/version_M``, any names): a linear evaluation is matched to the pretraining run whose
checkpoint its ``--model.init_args.pretrained`` names. Each cell is identified by its pretraining
``config.yaml`` (dataset, loss, temperature), not by its folder name. Our uniformity, tolerance and
Fig 8 similarities are the last logged epoch's ``val/*`` values (on the test split); accuracies are
the linear evaluation's ``test/top1_last`` and ``test/top1_best``, in percent.

Writes to ``--out``:
    table1.md, table1.csv   Table 1 (ours and the paper's per cell; one CSV row per run)
    fig3_relative_penalty.png                       analytic (Eq 5), several tau
    fig4_uniformity_contrastive.png, fig5_tolerance_contrastive.png
    fig6_uniformity_hard_contrastive.png, fig7_tolerance_hard_contrastive.png
    fig8_similarities_<dataset>.png                 positive + top-10 negatives per tau
    fig9_accuracy.png                               linear top-1 against tau, both probes, intervals
    uniformity_tolerance_<dataset>.png              the uniformity-tolerance plane, one marker per cell
    claims.md                                       the claims' verdicts (scripts/claim_catalogue.py)
    data/                                           every run's per-epoch data (scripts/report_data.py)

Cells that did not run are shown as missing ("—" in the table, absent from the figures); no
value is ever filled in.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAPER_TABLE = ROOT / "configs/experiments/paper_table1.yaml"
LOSS_KEYS = {  # class name -> Table 1 loss key
    "ContrastiveLoss": "contrastive",
    "SimpleContrastiveLoss": "simple",
    "HardContrastiveLoss": "hard_contrastive",
    "HardSimpleContrastiveLoss": "hard_simple",
}
LOSS_TITLES = {"contrastive": "contrastive", "simple": "simple", "hard_contrastive": "hard contrastive",
               "hard_simple": "hard simple"}
DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "imagenet100": "ImageNet-100"}
MISSING = "—"


# ------------------------------------------------------------------------ one run
@dataclass
class CellResult:
    """What one finished (or, with --include-unfinished, partial) cell measured."""

    name: str
    dataset: str
    loss: str
    temperature: float | None
    epochs: int | None  # epochs the last pretraining row was logged at (1-based)
    metrics: dict[str, float] = field(default_factory=dict)  # val/* of the last epoch, test/* of the linear run
    finished: bool = True
    source: str = ""
    #: epoch -> the val/* and bank/* values logged at that epoch (-1: before training), for the trajectories
    trajectory: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def column(self) -> str:
        """The Table 1 column key: ``contrastive_tau0.3``, ``simple``."""
        return f"{self.loss}_tau{float(self.temperature)}" if self.temperature is not None else self.loss


def dataset_key(class_path: str) -> str:
    """``datamodules.cifar.CIFAR10DataModule`` -> ``cifar10``."""
    name = class_path.rsplit(".", 1)[-1]
    return name[: -len("DataModule")].lower() if name.endswith("DataModule") else name.lower()


def loss_temperature(loss: dict[str, Any]) -> float | None:
    """The temperature of a resolved loss config, as the loss itself declares it.

    The loss is built from its ``class_path`` and ``init_args`` and asked for its
    ``temperature`` (``ContrastiveLossBase``'s contract), so a loss that calls its
    argument ``tau`` keeps its column. Only when the class cannot be built here (e.g. a
    W&B run of code this checkout lacks) does an ``init_args.temperature`` stand in.
    """
    init = loss.get("init_args") or {}
    try:
        module, name = loss["class_path"].rsplit(".", 1)
        temperature = getattr(importlib.import_module(module), name)(**init).temperature
    except Exception as err:  # noqa: BLE001  (any failure to build it: fall back, and say so)
        print(f"report: cannot build {loss.get('class_path')} ({err!r}); reading init_args.temperature",
              file=sys.stderr)
        temperature = init.get("temperature")
    return None if temperature is None else float(temperature)


def describe(config: dict[str, Any]) -> tuple[str, str, float | None]:
    """(dataset, loss key, temperature) of a resolved pretraining config."""
    loss = config["model"]["init_args"]["loss"]
    loss_class = loss["class_path"].rsplit(".", 1)[-1]
    key = LOSS_KEYS.get(loss_class, loss_class)
    return dataset_key(config["data"]["class_path"]), key, loss_temperature(loss)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def versions(folder: Path) -> list[Path]:
    """``version_N`` folders in numeric order (a resumed pretraining continues in the next one)."""
    found = [p for p in folder.glob("version_*") if p.is_dir() and p.name.split("_", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("_", 1)[1]))


def metrics_by_epoch(runs: Iterable[Path], prefixes: tuple[str, ...]) -> dict[int, dict[str, float]]:
    """epoch -> every metric whose name starts with one of ``prefixes``, over the runs' metrics.csv in version order.

    A resumed run continues the versions before it (later values win); a run that starts again at
    epoch 0 or -1 replaces them (the runner restarts a pretraining that died before its first checkpoint).
    """
    by_epoch: dict[int, dict[str, float]] = defaultdict(dict)
    for run in runs:
        if not (run / "metrics.csv").is_file():
            continue
        rows = [(int(float(row["epoch"])), {k: float(v) for k, v in row.items() if k.startswith(prefixes)})
                for row in read_csv_rows(run / "metrics.csv") if "epoch" in row]
        rows = [(epoch, values) for epoch, values in rows if values]
        if rows and min(epoch for epoch, _ in rows) <= 0:  # epoch -1: the metrics before training
            by_epoch.clear()  # a fresh start (not a resume): what came before it was abandoned
        for epoch, values in rows:
            by_epoch[epoch].update(values)
    return dict(sorted(by_epoch.items()))


def last_epoch_values(runs: Iterable[Path], prefix: str = "val/") -> tuple[int | None, dict[str, float]]:
    """(epochs trained, the ``prefix`` metrics of the highest epoch), or (None, {}) when nothing was logged."""
    by_epoch = metrics_by_epoch(runs, (prefix,))
    if not by_epoch:
        return None, {}
    epoch = max(by_epoch)
    return epoch + 1, by_epoch[epoch]


def trajectory(runs: Iterable[Path]) -> dict[int, dict[str, float]]:
    """epoch -> every ``val/*`` and ``bank/*`` value logged at it (the report's trajectory figure)."""
    return metrics_by_epoch(runs, ("val/", "bank/"))


def load_local_cell(cell_dir: Path) -> CellResult | None:
    """One cell of a sweep folder, or None when its pretraining has no config yet."""
    pretrain_runs = [r for r in versions(cell_dir / "pretrain") if (r / "config.yaml").is_file()]
    if not pretrain_runs:
        return None
    config = yaml.safe_load((pretrain_runs[-1] / "config.yaml").read_text())
    dataset, loss, temperature = describe(config)
    epochs, metrics = last_epoch_values(pretrain_runs, "val/")
    finished = (cell_dir / "finished.json").is_file()
    if finished:  # accuracies only from the linear run the runner saw finish, never from a partial one
        marker = json.loads((cell_dir / "finished.json").read_text())
        for row in read_csv_rows(cell_dir / marker["linear_run"] / "metrics.csv"):
            metrics.update({k: float(v) for k, v in row.items() if k.startswith("test/")})
    return CellResult(cell_dir.name, dataset, loss, temperature, epochs, metrics, finished, str(cell_dir),
                      trajectory(pretrain_runs))


def is_sweep_cell(folder: Path) -> bool:
    """A cell folder of ``scripts/sweep.py`` (its markers or its log), not a folder of plain ``cli.py`` runs."""
    return any((folder / name).is_file() for name in ("finished.json", "runner.log", "pretrain/finished.json"))


def _run_config(run: Path) -> dict[str, Any] | None:
    try:
        config = yaml.safe_load((run / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) and isinstance(config.get("model"), dict) else None


def find_cli_runs(root: Path, include_unfinished: bool) -> list[CellResult]:
    """Plain ``python cli.py fit`` runs under ``root`` (outside sweep cells), one result per pretraining.

    A linear-evaluation run (``<name>/version_N/config.yaml`` of a ``LinearEvalModule``) belongs to
    the pretraining run whose checkpoint its ``pretrained`` names: the same folder once resolved,
    else the same ``<name>/version_N`` (the runs may have been moved). It counts as finished once its
    ``metrics.csv`` holds ``test/top1_last``; pretrainings without one show up with --include-unfinished.
    """
    pretrain_runs: dict[Path, dict[str, Any]] = {}
    linear_runs: list[tuple[Path, dict[str, Any]]] = []
    for config_file in sorted(root.rglob("config.yaml")):
        run = config_file.parent
        inside = [p for p in run.parents if p == root or root in p.parents]  # the run's folders up to root
        if not run.name.startswith("version_") or any(is_sweep_cell(p) for p in inside):
            continue
        config = _run_config(run)
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

    results: dict[Path, CellResult] = {}
    for linear, config in linear_runs:
        pretrained = owner(str(config["model"].get("init_args", {}).get("pretrained", "")))
        if pretrained is None or not (linear / "metrics.csv").is_file():
            continue
        test = {k: float(v) for row in read_csv_rows(linear / "metrics.csv") for k, v in row.items()
                if k.startswith("test/")}
        if "test/top1_last" not in test:
            continue
        dataset, loss, temperature = describe(pretrain_runs[pretrained])
        epochs, metrics = last_epoch_values([pretrained], "val/")
        name = f"{pretrained.relative_to(root.resolve()).as_posix()} + {linear.relative_to(root).as_posix()}"
        results[pretrained] = CellResult(name, dataset, loss, temperature, epochs, {**metrics, **test}, True,
                                         str(linear), trajectory([pretrained]))  # a later linear run wins
    if include_unfinished:
        for run, config in pretrain_runs.items():
            if run not in results:
                dataset, loss, temperature = describe(config)
                epochs, metrics = last_epoch_values([run], "val/")
                results[run] = CellResult(run.relative_to(root.resolve()).as_posix(), dataset, loss, temperature,
                                          epochs, metrics, False, str(run), trajectory([run]))
    return [results[run] for run in sorted(results)]


def find_local_cells(root: Path, include_unfinished: bool) -> list[CellResult]:
    """Every result under ``root``: sweep cells holding ``finished.json`` (or a ``pretrain/`` with
    --include-unfinished), then plain ``cli.py`` runs (:func:`find_cli_runs`)."""
    dirs = {p.parent for p in root.rglob("finished.json") if p.parent.name != "pretrain"}
    if include_unfinished:
        dirs |= {p.parent for p in root.rglob("pretrain") if p.is_dir() and versions(p) and is_sweep_cell(p.parent)}
    cells = []
    for cell_dir in sorted(dirs):
        cell = load_local_cell(cell_dir)
        if cell is not None:
            cell.name = cell_dir.relative_to(root).as_posix() if cell_dir != root else cell_dir.name
            cells.append(cell)
    return cells + find_cli_runs(root, include_unfinished)


# ----------------------------------------------------------------- W&B (optional)
def load_wandb_cells(project: str, entity: str | None, group: str | None) -> list[CellResult]:
    """Cells from the W&B API: runs that ``scripts/sweep.py --wandb online`` logged, paired by run name.

    The pretraining run (job_type ``pretrain``) gives the config (``config`` of its W&B config,
    logged by the provenance callback) and the last ``val/*`` values (its summary); the linear
    run of the same name gives ``test/*``. Needs ``wandb`` and network access; untested offline.
    """
    try:
        import wandb  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        raise SystemExit("--wandb-project needs the wandb package (pip install wandb)") from None
    api = wandb.Api()
    filters = {"group": group} if group else {}
    path = f"{entity}/{project}" if entity else project
    pretrain: dict[str, Any] = {}
    linear: dict[str, Any] = {}
    for run in api.runs(path, filters=filters):  # newest first: keep the first seen per name
        target = linear if run.job_type == "linear" else pretrain if run.job_type == "pretrain" else None
        if target is not None and run.state == "finished":
            target.setdefault(run.name, run)
    cells = []
    for name, run in pretrain.items():
        config = run.config.get("config")
        if not isinstance(config, dict):
            continue
        dataset, loss, temperature = describe(config)
        summary = dict(run.summary)
        metrics = {k: float(v) for k, v in summary.items() if k.startswith("val/") and isinstance(v, (int, float))}
        if name in linear:
            metrics.update({k: float(v) for k, v in dict(linear[name].summary).items()
                            if k.startswith("test/") and isinstance(v, (int, float))})
        epoch = summary.get("epoch")
        cells.append(CellResult(name, dataset, loss, temperature, int(epoch) + 1 if epoch is not None else None,
                                metrics, name in linear, f"wandb:{run.path}"))
    return cells


# --------------------------------------------------------------------- the table
def paper_table() -> dict[str, dict[str, dict[str, float]]]:
    """dataset -> column -> {accuracy, uniformity, tolerance}, from configs/experiments/paper_table1.yaml."""
    table = yaml.safe_load(PAPER_TABLE.read_text())
    return {ds: {col: {m: vals[i] for m, vals in rows.items()} for i, col in enumerate(table["columns"])}
            for ds, rows in table["datasets"].items()}


def ours(cell: CellResult) -> dict[str, float | None]:
    """The Table 1 quantities of one run; accuracies in percent."""
    m = cell.metrics

    def pct(key: str) -> float | None:
        return 100.0 * m[key] if key in m else None

    out: dict[str, float | None] = {"top1_last": pct("test/top1_last"), "top1_best": pct("test/top1_best"),
                                    "top1_lbfgs": pct("test/top1_lbfgs"), "centroid_norm": m.get("val/centroid_norm"),
                                    "top5_last": pct("test/top5_last"), "uniformity": m.get("val/uniformity"),
                                    "tolerance": m.get("val/tolerance"), "alignment": m.get("val/alignment"),
                                    "knn_top1": pct("val/knn_top1"), "pos_sim": m.get("val/pos_sim")}
    for k in range(1, 11):
        out[f"neg_sim_{k}"] = m.get(f"val/neg_sim_{k}")
    return out


def column_order(columns: Iterable[str], paper_columns: list[str]) -> list[str]:
    extra = sorted(set(columns) - set(paper_columns))
    return paper_columns + extra


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(cells: list[CellResult]) -> dict[tuple[str, str], dict[str, Any]]:
    """(dataset, column) -> mean of each quantity over the runs of that cell, and the runs' count."""
    groups: dict[tuple[str, str], list[CellResult]] = defaultdict(list)
    for cell in cells:
        groups[(cell.dataset, cell.column)].append(cell)
    out = {}
    for key, group in groups.items():
        values = [ours(c) for c in group]
        agg: dict[str, Any] = {q: mean([v[q] for v in values if v[q] is not None]) for q in values[0]}
        agg["range"] = {q: (min(vs), max(vs)) for q in values[0]
                        if len(vs := [v[q] for v in values if v[q] is not None]) > 1}
        agg["n"] = len(group)
        agg["epochs"] = sorted({c.epochs for c in group if c.epochs is not None})
        agg["temperature"] = group[0].temperature
        agg["loss"] = group[0].loss
        out[key] = agg
    return out


def fmt(value: float | None, digits: int) -> str:
    return MISSING if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def write_csv(cells: list[CellResult], paper: dict, path: Path) -> None:
    fields = ["cell", "dataset", "column", "loss", "temperature", "epochs", "finished", "top1_last", "top1_best",
              "top1_lbfgs", "top5_last", "uniformity", "centroid_norm", "tolerance", "alignment", "knn_top1", "pos_sim",
              *[f"neg_sim_{k}" for k in range(1, 11)], "paper_accuracy", "paper_uniformity", "paper_tolerance",
              "source"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for cell in sorted(cells, key=lambda c: (c.dataset, c.column, c.name)):
            ref = paper.get(cell.dataset, {}).get(cell.column, {})
            row = {"cell": cell.name, "dataset": cell.dataset, "column": cell.column, "loss": cell.loss,
                   "temperature": "" if cell.temperature is None else cell.temperature, "epochs": cell.epochs or "",
                   "finished": cell.finished, "source": cell.source,
                   **{f"paper_{m}": ref.get(m, "") for m in ("accuracy", "uniformity", "tolerance")}}
            row.update({k: "" if v is None else repr(v) for k, v in ours(cell).items()})
            writer.writerow(row)


def markdown_table(cells: list[CellResult], paper: dict, paper_columns: list[str]) -> str:
    agg = aggregate(cells)
    datasets = [d for d in DATASET_TITLES if any(c.dataset == d for c in cells)]
    datasets += sorted({c.dataset for c in cells} - set(datasets))
    not_run = [DATASET_TITLES.get(d, d) for d in paper if d not in datasets]
    columns = column_order({c.column for c in cells}, paper_columns)
    epochs = sorted({e for a in agg.values() for e in a["epochs"]})
    lines = [
        "# Table 1: linear top-1 accuracy, -L_uniformity and tolerance",
        "",
        "Each entry is **ours / paper**; " + MISSING + " = not run (never filled in). Ours: linear top-1 of the",
        "last epoch's classifier (`test/top1_last`) and of the best validation epoch (`test/top1_best`, on the",
        "test split unless a held-out split was configured, as the paper's code did); uniformity",
        "(-L_uniformity, t = 2) and tolerance on the test-split embeddings at the last pretraining epoch.",
        f"Our pretraining epochs: {', '.join(map(str, epochs)) if epochs else MISSING}; the paper's: 200.",
        "",
    ]
    rows = [("top-1 last (%)", "top1_last", "accuracy", 2), ("top-1 best (%)", "top1_best", "accuracy", 2),
            ("top-1 L-BFGS probe (%)", "top1_lbfgs", None, 2),
            ("-L_uniformity", "uniformity", "uniformity", 3), ("tolerance", "tolerance", "tolerance", 3),
            ("centroid norm", "centroid_norm", None, 3)]
    present = {key for c in cells for key, v in ours(c).items() if v is not None}
    rows = [r for r in rows if r[2] is not None or r[1] in present]  # the suite's extra rows when measured
    header_names = []
    for col in columns:
        loss, _, tau = col.partition("_tau")
        header_names.append(f"{LOSS_TITLES.get(loss, loss)}" + (f" τ={float(tau):g}" if tau else ""))
    for dataset in datasets:
        lines += [f"## {DATASET_TITLES.get(dataset, dataset)}", "",
                  "| | " + " | ".join(header_names) + " |", "|---|" + "---|" * len(columns)]
        for title, ours_key, paper_key, digits in rows:
            entries = []
            for col in columns:
                mine = agg.get((dataset, col), {})
                value = fmt(mine.get(ours_key), digits)
                if mine.get("n", 0) > 1 and mine.get(ours_key) is not None:
                    low, high = mine["range"].get(ours_key, (mine[ours_key], mine[ours_key]))
                    value += f" (mean of {mine['n']}: {low:.{digits}f}-{high:.{digits}f})"
                ref = paper.get(dataset, {}).get(col, {}).get(paper_key) if paper_key else None
                entries.append(f"{value} / {MISSING if ref is None else f'{ref:g}'}")
            lines.append(f"| {title} | " + " | ".join(entries) + " |")
        lines.append("")
    if not_run:
        lines += [f"No runs on {', '.join(not_run)}: every cell missing (the paper's numbers are in "
                  "configs/experiments/paper_table1.yaml).", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------- figures
def figures(groups, paper: dict, out: Path) -> list[Path]:
    """Fig 3 (analytic) and the figures of our runs with their seeds' spread (:func:`scripts.figures.seed_figures`)."""
    from callbacks import plots  # noqa: PLC0415  (matplotlib: only the figures need it)
    from scripts.figures import seed_figures  # noqa: PLC0415

    taus = sorted({g.temperature for g in groups if g.temperature is not None}) or [0.07, 0.3, 0.7, 1.0]
    written = [plots.plot_relative_penalty(taus, out / "fig3_relative_penalty.png")]
    return written + seed_figures(groups, out, paper, DATASET_TITLES)


# ------------------------------------------------------------ runs and verdicts
CLAIMS_HEADER = ("# The paper's claims on these runs\n\n"
                 "Each claim of `scripts/claim_catalogue.py`, decided by the rule of `scripts/verdicts.py` "
                 "(docs/reproduce.md, \"How a verdict is decided\").\n\n")


def cell_from_run(run) -> CellResult:
    """A :class:`scripts.runs.Run` (accuracies in percent) as the table's :class:`CellResult` (fractions)."""
    from scripts.runs import is_accuracy  # noqa: PLC0415

    def fractions(values: dict[str, float]) -> dict[str, float]:
        return {k: v / 100.0 if is_accuracy(k) else v for k, v in values.items()}

    return CellResult(run.name, run.dataset, LOSS_KEYS.get(run.loss, run.loss), run.temperature, run.epochs,
                      fractions(run.metrics),
                      run.finished, run.source, {e: fractions(v) for e, v in run.trajectory.items()})


def verdict_markdown(groups) -> str:
    """The verdict table of every catalogued claim on these groups (the cells are the groups' keys)."""
    from scripts import claim_catalogue, report_data  # noqa: PLC0415

    return claim_catalogue.markdown(claim_catalogue.evaluate(report_data.verdict_table(groups)))


# -------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="sweep output folders (scripts/sweep.py --out)")
    parser.add_argument("--out", type=Path, required=True, help="folder for table1.md, table1.csv and the PNGs")
    parser.add_argument("--include-unfinished", action="store_true",
                        help="also cells still running or failed: their last logged epoch, accuracy missing")
    parser.add_argument("--wandb-project", help="also read runs from this W&B project (online)")
    parser.add_argument("--wandb-entity")
    parser.add_argument("--wandb-group", help="only W&B runs of this group (the grid's name)")
    parser.add_argument("--no-figures", action="store_true", help="the table only")
    parser.add_argument("--from-data", type=Path, metavar="DATA",
                        help="rebuild from a report's committed data folder (<report>/data) instead of runs")
    parser.add_argument("--doc", type=Path, action="append", default=[],
                        help="a Markdown file whose '<!-- generated:verdicts -->' ... '<!-- /generated -->' block "
                             "gets the verdict table (e.g. docs/reproduce.md); repeatable")
    opts = parser.parse_args(argv)
    from scripts import report_data  # noqa: PLC0415
    from scripts.runs import find_runs, find_wandb_runs, group_runs  # noqa: PLC0415

    if opts.from_data is not None:
        if opts.runs or opts.wandb_project:
            parser.error("--from-data rebuilds from the data alone: give no runs folder or W&B project with it")
        try:
            runs = report_data.read_runs(opts.from_data)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    elif not opts.runs and not opts.wandb_project:
        parser.error("give a runs folder, --wandb-project, --from-data, or one of the first two together")
    else:
        runs = []
        for root in opts.runs:
            if not root.is_dir():
                parser.error(f"{root} is not a folder")
            runs += find_runs(root, opts.include_unfinished)
        if opts.wandb_project:
            runs += [r for r in find_wandb_runs(opts.wandb_project, opts.wandb_entity, opts.wandb_group)
                     if r.finished or opts.include_unfinished]
    cells = [cell_from_run(r) for r in runs]
    if not any(c.finished for c in cells) and not (opts.include_unfinished and cells):
        where = ", ".join(str(r) for r in opts.runs) + (f" and W&B project {opts.wandb_project}"
                                                        if opts.wandb_project else "")
        print(f"error: no finished run found in {where or opts.from_data}. Looked for scripts/sweep.py cells "
              "(<cell>/finished.json with <cell>/pretrain/version_N/config.yaml) and for cli.py runs: a linear "
              "evaluation <name>/version_N/ whose config.yaml names a pretraining checkpoint "
              "(--model.init_args.pretrained) of a pretraining run in the same folder and whose metrics.csv holds "
              "test/top1_last. --include-unfinished also reports pretrainings without an accuracy", file=sys.stderr)
        return 1
    paper = paper_table()
    paper_columns = yaml.safe_load(PAPER_TABLE.read_text())["columns"]
    opts.out.mkdir(parents=True, exist_ok=True)
    write_csv(cells, paper, opts.out / "table1.csv")
    (opts.out / "table1.md").write_text(markdown_table(cells, paper, paper_columns) + "\n")
    written = [opts.out / "table1.md", opts.out / "table1.csv"]
    groups = group_runs(runs)
    data = opts.out / "data"
    if opts.from_data is None or data.resolve() != opts.from_data.resolve():  # never overwrite the input
        report_data.write_data(data, groups)
        written.append(data)
    verdicts = verdict_markdown(groups)
    (opts.out / "claims.md").write_text(CLAIMS_HEADER + verdicts)
    written.append(opts.out / "claims.md")
    for doc in opts.doc:
        doc.write_text(report_data.replace_block(doc.read_text(), "verdicts", verdicts))
        written.append(doc)
    if not opts.no_figures:
        written += figures(groups, paper, opts.out)
    print(f"{len(cells)} runs ({sum(c.finished for c in cells)} finished); wrote "
          + ", ".join(p.name for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
