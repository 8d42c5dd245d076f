"""The report's figures across runs: ``python scripts/figures.py RUNS --out DIR`` draws them without the tables.

    python scripts/figures.py runs/cpu --out runs/cpu/figures
    python scripts/figures.py runs --out runs/figures --include-unfinished   # cli.py runs under runs/

Reads the runs as ``scripts/report.py`` does (``scripts/runs.py``) and writes, for the losses that have runs
(the losses are read from their classes, ``lightning_modules.losses.loss_classes``):

    fig3_relative_penalty.png                   analytic (Eq 5), the runs' temperatures
    uniformity_<loss>.png, tolerance_<loss>.png one pair per tempered loss with runs: the metric against tau,
                                                the untempered losses of the same kind (hard or not) as flat
                                                lines; the paper's names for its losses:
                                                fig4_uniformity_contrastive.png, fig5_tolerance_contrastive.png,
                                                fig6_uniformity_hard_contrastive.png,
                                                fig7_tolerance_hard_contrastive.png
    fig8_similarities_<dataset>.png             positive + top-10 negatives per cell
    fig9_accuracy.png                           linear top-1 against tau (when accuracies exist)
    trajectories.png                            uniformity, tolerance, centroid norm against the epoch

A figure with nothing of ours to draw is not written. Drawn with matplotlib's ``Figure`` rendered by Agg
(no pyplot) and saved by ``callbacks/figure_style.py``, the style the per-run plots (``callbacks/plots.py``)
share.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from matplotlib import colormaps  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from callbacks.figure_style import save_figure  # noqa: E402
from scripts import catalogue  # noqa: E402
from scripts.runs import Group, Run, family_labels, find_runs, group_runs  # noqa: E402

#: (metric key in metrics.csv, panel title) of the trajectory figure
TRAJECTORY_PANELS = (("val/uniformity", "-L_uniformity (test split)"),
                     ("val/tolerance", "tolerance (test split)"),
                     ("val/centroid_norm", "centroid norm (test split)"))


def plot_trajectories(runs: Mapping[str, Mapping[int, Mapping[str, float]]], path: str | Path,
                      panels: tuple[tuple[str, str], ...] = TRAJECTORY_PANELS,
                      title: str = "Trajectories: when each ordering appears") -> Path:
    """One panel per metric against the epoch, one line per run (epoch -1 is the untrained encoder).

    Args:
        runs: label -> epoch -> {metric key: value}, e.g. the rows of each run's metrics.csv.
        path: PNG file to write.
        panels: (metric key, panel title) pairs.
        title: the figure's title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not runs:
        raise ValueError("runs is empty: give at least one run")
    cmap = colormaps["tab10"] if len(runs) <= 10 else colormaps["tab20"]
    fig = Figure(figsize=(5.0 * len(panels), 4.2))
    for p, (key, panel_title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for i, (label, history) in enumerate(runs.items()):
            points = sorted((epoch, values[key]) for epoch, values in history.items() if key in values)
            if points:
                style = "--" if "seed" in label else "-"
                ax.plot([e for e, _ in points], [v for _, v in points], style, color=cmap(i % cmap.N),
                        linewidth=1.3, label=label)
        ax.set_xlabel("epoch (-1: before training)")
        ax.set_title(panel_title)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_metric_vs_temperature(curves: Mapping[str, Mapping[float, float]], path: str | Path, ylabel: str,
                               title: str, references: Mapping[str, Mapping[float, float]] | None = None,
                               levels: Mapping[str, float] | None = None) -> Path:
    """Figs 4-7 and 9: one metric of several runs against their temperature.

    Args:
        curves: label (e.g. a dataset) -> {tau: value}; one solid line with markers each
            (a label without points is left out).
        path: PNG file to write.
        ylabel: the metric's name on the y axis.
        title: the figure's title.
        references: label -> {tau: value} drawn dashed in the colour of the same label
            in ``curves`` (the paper's numbers beside ours).
        levels: label -> value drawn as a dotted horizontal line (runs without a
            temperature, e.g. the simple loss).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    references = references or {}
    levels = levels or {}
    curves = {label: points for label, points in curves.items() if points}
    labels = list(dict.fromkeys([*curves, *references]))
    if not curves and not levels:
        raise ValueError("nothing of ours to plot: curves and levels are empty (references alone make no figure)")
    cmap = colormaps["tab10"]
    color = {label: cmap(i % cmap.N) for i, label in enumerate(labels)}
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    taus: set[float] = set()
    for label in labels:
        points = sorted((float(t), float(v)) for t, v in curves.get(label, {}).items())
        taus.update(t for t, _ in points)
        if points:
            ax.plot(*zip(*points), marker="o", color=color[label], linewidth=1.5, label=label)
        ref = sorted((float(t), float(v)) for t, v in references.get(label, {}).items())
        taus.update(t for t, _ in ref)
        if ref:
            ax.plot(*zip(*ref), marker="x", linestyle="--", color=color[label], linewidth=1.0, alpha=0.7,
                    label=f"{label}, paper")
    for i, (label, value) in enumerate(levels.items()):
        ax.axhline(float(value), linestyle=":", linewidth=1.2, color=colormaps["Dark2"](i % 8), label=label)
    if taus:
        ax.set_xticks(sorted(taus))
        ax.set_xticklabels([f"{t:g}" for t in sorted(taus)])
    ax.set_xlabel("temperature τ")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_similarity_profiles(profiles: Mapping[str, tuple[float, Sequence[float]]], path: str | Path,
                             title: str = "Positive and top-k negative similarities (Fig 8)") -> Path:
    """Fig 8 across runs: the positive then the top-k negative similarities, one line per run.

    Args:
        profiles: label (e.g. "τ = 0.3") -> (mean positive similarity, mean top-k negative
            similarities in descending order), e.g. each run's last ``val/pos_sim`` and
            ``val/neg_sim_1..k``; lines are coloured in the given order.
        path: PNG file to write.
        title: the figure's title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not profiles:
        raise ValueError("profiles is empty: give at least one run")
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    k = 0
    for i, (label, (pos, negs)) in enumerate(profiles.items()):
        values = [float(pos), *map(float, negs)]
        k = max(k, len(values) - 1)
        ax.plot(range(len(values)), values, marker="o", markersize=3, linewidth=1.2, label=label,
                color=cmap(i / max(len(profiles) - 1, 1)))
    ax.set_xticks(range(k + 1))
    ax.set_xticklabels(["pos"] + [f"n{r}" for r in range(1, k + 1)])
    ax.set_xlabel("positive, then i-th nearest negative")
    ax.set_ylabel("mean similarity")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


# ------------------------------------------------------------- the report's figures
def _mean(group: Group, quantity: str) -> float | None:
    values = group.values(quantity)
    return sum(values) / len(values) if values else None


def _suffix(group: Group) -> str:
    """`` [epochs=120]`` for a group that shares its loss and temperature with another, else ``""``."""
    return f" {group.suffix}" if group.suffix else ""


def _cell_label(group: Group) -> str:
    tau = "" if group.temperature is None else f" τ={group.temperature:g}"
    return f"{catalogue.loss_title(group.loss)}{tau}{_suffix(group)}"


def report_figures(groups: list[Group], out: Path, paper: Mapping | None = None,
                   runs: list[Run] | None = None) -> list[Path]:
    """Every figure of the report that has something of ours to show (see the module's docstring).

    Args:
        groups: the cells (:func:`scripts.runs.group_runs`); each point is the mean over a group's runs.
        out: the folder to write to.
        paper: dataset -> column -> {accuracy, uniformity, tolerance}, drawn beside ours
            (:func:`scripts.catalogue.paper_table`); None: ours only.
        runs: the runs whose trajectories are drawn (default: every run of the groups).

    Returns:
        The files written.
    """
    from callbacks import plots  # noqa: PLC0415  (Fig 3 is the training callback's, drawn analytically)

    paper = paper or {}
    runs = [r for g in groups for r in g.runs] if runs is None else runs
    written = []
    taus = sorted({g.temperature for g in groups if g.temperature is not None}) or [0.07, 0.3, 0.7, 1.0]
    written.append(plots.plot_relative_penalty(taus, out / "fig3_relative_penalty.png"))
    datasets = sorted({g.dataset for g in groups}, key=catalogue.dataset_order)
    cells = [(g.loss, g.temperature) for g in groups]
    family = family_labels(groups)  # one line per recipe (but the loss), not per group
    tempered, flat_losses = catalogue.tempered_losses(cells), catalogue.untempered_losses(cells)

    def curves(loss: str, quantity: str, named: bool = False) -> dict[str, dict[float, float]]:
        """label (the dataset, the loss when ``named``, the family) -> tau -> the group's mean."""
        out_curves: dict[str, dict[float, float]] = {}
        for g in groups:
            value = _mean(g, quantity)
            if g.loss == loss and g.temperature is not None and value is not None:
                title = f", {catalogue.loss_title(loss)}" if named else ""
                label = " ".join(filter(None, (f"{catalogue.dataset_title(g.dataset)}{title}", family[g.key])))
                out_curves.setdefault(label, {})[g.temperature] = value
        return out_curves

    def references(loss: str, paper_key: str) -> dict[str, dict[float, float]]:
        refs = {}
        for d in datasets:
            points = {tau: vals[paper_key] for col, vals in paper.get(d, {}).items()
                      for key, tau in [catalogue.parse_column(col)]
                      if key == loss and tau is not None and paper_key in vals}
            if points:
                refs[catalogue.dataset_title(d)] = points
        return refs

    def levels(loss: str, quantity: str, paper_key: str) -> dict[str, float]:
        title = catalogue.loss_title(loss)
        mine = {" ".join(filter(None, (f"{catalogue.dataset_title(g.dataset)}, {title}", family[g.key], "(ours)"))):
                value for g in groups
                if g.loss == loss and (value := _mean(g, quantity)) is not None}
        if not mine:
            return {}
        theirs = {f"{catalogue.dataset_title(d)}, {title} (paper)": paper[d][loss][paper_key]
                  for d in datasets if paper_key in paper.get(d, {}).get(loss, {})}
        return {**mine, **theirs}

    for spec in catalogue.metric_figures(cells):  # Figs 4-7, and their like for every other tempered loss
        ours = curves(spec.loss, spec.quantity)
        if ours:  # nothing of ours (e.g. no run logged the metric): no figure
            flat = {label: v for k in spec.flat for label, v in levels(k, spec.quantity, spec.quantity).items()}
            written.append(plot_metric_vs_temperature(ours, out / spec.name, spec.ylabel, spec.title,
                                                      references(spec.loss, spec.quantity), flat))
    traced = {r.name: r.trajectory for r in sorted(runs, key=lambda r: r.name) if r.trajectory}
    if traced:
        written.append(plot_trajectories(traced, out / "trajectories.png"))
    acc = {label: points for loss in tempered for label, points in curves(loss, "top1_last", named=True).items()}
    if acc or any(levels(k, "top1_last", "accuracy") for k in flat_losses):
        acc_refs = {f"{d}, {catalogue.loss_title(loss)}": pts for loss in tempered
                    for d, pts in references(loss, "accuracy").items()}
        flat = {label: v for k in flat_losses for label, v in levels(k, "top1_last", "accuracy").items()}
        written.append(plot_metric_vs_temperature(acc, out / "fig9_accuracy.png", "linear top-1 (%, last epoch)",
                                                  "Linear evaluation accuracy (Fig 9)", acc_refs, flat))
    for d in datasets:
        profiles = {}
        for g in sorted((g for g in groups if g.dataset == d),
                        key=lambda g: (catalogue.loss_order(g.loss), g.temperature or math.inf, g.key)):
            pos, negs = _mean(g, "pos_sim"), [_mean(g, f"neg_sim_{k}") for k in range(1, 11)]
            negs = [v for v in negs if v is not None]
            if pos is not None and negs:
                profiles[_cell_label(g)] = (pos, negs)
        if profiles:
            written.append(plot_similarity_profiles(
                profiles, out / f"fig8_similarities_{d}.png",
                f"{catalogue.dataset_title(d)}: positive and top-10 negative similarities (Fig 8)"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path,
                        help="folders of runs: a scripts/sweep.py --out folder, or the folder holding cli.py's "
                             "run folders (its CSV logger's save_dir, runs/ by default)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--include-unfinished", action="store_true",
                        help="also runs still training, interrupted, or without a linear evaluation")
    parser.add_argument("--no-paper", action="store_true", help="ours only, without the paper's numbers")
    opts = parser.parse_args(argv)
    runs: list[Run] = []
    for root in opts.runs:
        if not root.is_dir():
            parser.error(f"{root} is not a folder")
        runs += find_runs(root, opts.include_unfinished)
    if not runs:
        print(f"error: no {'' if opts.include_unfinished else 'finished '}run under "
              f"{', '.join(map(str, opts.runs))} (see scripts/report.py --help for what is looked for)",
              file=sys.stderr)
        return 1
    written = report_figures(group_runs(runs), opts.out, None if opts.no_paper else catalogue.paper_table())
    print(f"{len(runs)} runs; wrote " + ", ".join(p.name for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
