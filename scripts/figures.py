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
from scripts.runs import FIG8_KEYS, Group, Run, family_labels, find_runs, group_runs  # noqa: E402

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


# ------------------------------------------------------------ figures with the seeds' spread (issue 19)
#: loss key -> (title, marker) of the seed figures; other losses get a title from their key
LOSS_STYLE = {"contrastive": ("contrastive", "o"), "hard_contrastive": ("hard contrastive", "s"),
              "simple": ("simple", "^"), "hard_simple": ("hard simple", "v")}
EXTRA_MARKERS = "DP*Xhp<>"


def _loss_style(loss: str, index: int) -> tuple[str, str]:
    return LOSS_STYLE.get(loss, (loss.replace("_", " "), EXTRA_MARKERS[index % len(EXTRA_MARKERS)]))


def _spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, min, max) of the seeds' values (the mean clamped into the range against rounding)."""
    lo, hi = min(values), max(values)
    return min(max(sum(values) / len(values), lo), hi), lo, hi


def plot_metric_bands(series: Mapping[str, Mapping[float, Sequence[float]]], path: str | Path, ylabel: str,
                      title: str, references: Mapping[str, Mapping[float, float]] | None = None,
                      levels: Mapping[str, Sequence[float]] | None = None,
                      intervals: Mapping[str, Mapping[float, tuple[float, float]]] | None = None) -> Path:
    """Figs 4-7 (and one panel of Fig 9) with the seeds: mean over seeds, the seeds' range as a band.

    Args:
        series: label -> {tau: the seeds' values}; a line through the means, a shaded band from the
            lowest to the highest seed, each seed as a small dot.
        path: PNG file to write.
        ylabel: the metric's name on the y axis.
        title: the figure's title.
        references: label -> {tau: value} drawn dashed in the colour of the same label (the paper's).
        levels: label -> the seeds' values of a run without a temperature (simple): a dotted level at
            their mean with a band over their range.
        intervals: label -> {tau: (low, high)}: error bars (e.g. the verdicts' 95% interval of the mean).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    references, levels, intervals = references or {}, levels or {}, intervals or {}
    labels = list(dict.fromkeys([*series, *references]))
    if not labels and not levels:
        raise ValueError("nothing to plot: series, references and levels are all empty")
    cmap = colormaps["tab10"]
    color = {label: cmap(i % cmap.N) for i, label in enumerate(labels)}
    fig = Figure(figsize=(7.2, 4.2))
    ax = fig.add_subplot()
    taus: set[float] = set()
    for label in labels:
        points = sorted((float(t), _spread(v), list(v)) for t, v in series.get(label, {}).items() if len(v))
        taus.update(t for t, _, _ in points)
        if points:
            xs = [t for t, _, _ in points]
            n = max(len(v) for _, _, v in points)
            ax.plot(xs, [s[0] for _, s, _ in points], marker="o", color=color[label], linewidth=1.5,
                    label=f"{label} (mean of {n} seeds)" if n > 1 else label)
            ax.fill_between(xs, [s[1] for _, s, _ in points], [s[2] for _, s, _ in points], color=color[label],
                            alpha=0.2, linewidth=0)
            for t, _, values in points:
                ax.plot([t] * len(values), values, ".", color=color[label], markersize=3, alpha=0.6)
            bars = intervals.get(label, {})
            if bars:
                ts = [t for t in xs if t in bars]
                means = [s[0] for t, s, _ in points if t in bars]
                ax.errorbar(ts, means, yerr=[[max(m - bars[t][0], 0.0) for t, m in zip(ts, means)],
                                             [max(bars[t][1] - m, 0.0) for t, m in zip(ts, means)]],
                            fmt="none", ecolor=color[label], capsize=3, linewidth=1)
        ref = sorted((float(t), float(v)) for t, v in references.get(label, {}).items())
        taus.update(t for t, _ in ref)
        if ref:
            ax.plot(*zip(*ref), marker="x", linestyle="--", color=color[label], linewidth=1.0, alpha=0.7,
                    label=f"{label}, paper")
    for i, (label, values) in enumerate(levels.items()):
        c = colormaps["Dark2"](i % 8)
        m, lo, hi = _spread(values)
        ax.axhline(m, linestyle=":", linewidth=1.2, color=c, label=label)
        if len(values) > 1:
            ax.axhspan(lo, hi, color=c, alpha=0.12, linewidth=0)
    if taus:
        ax.set_xticks(sorted(taus))
        ax.set_xticklabels([f"{t:g}" for t in sorted(taus)])
    ax.set_xlabel("temperature τ")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return save_figure(fig, path)


def plot_trajectory_bands(groups: Mapping[str, Sequence[Mapping[int, Mapping[str, float]]]], path: str | Path,
                          panels: tuple[tuple[str, str], ...] = TRAJECTORY_PANELS,
                          title: str = "Trajectories: mean over seeds, band from the lowest to the highest seed") -> Path:
    """The trajectories of seed groups: one line (the seeds' mean) and one band (their range) per group.

    Args:
        groups: label -> the seeds' trajectories (epoch -> {metric key: value}); an epoch counts where
            every seed that reached it logged the metric.
        path: PNG file to write.
        panels: (metric key, panel title) pairs.
        title: the figure's title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not groups:
        raise ValueError("groups is empty: give at least one group of runs")
    cmap = colormaps["tab10"] if len(groups) <= 10 else colormaps["tab20"]
    fig = Figure(figsize=(5.0 * len(panels) + 2.5, 4.2))
    for p, (key, panel_title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for i, (label, seeds) in enumerate(groups.items()):
            epochs = sorted({e for s in seeds for e, row in s.items() if key in row})
            points = [(e, _spread([s[e][key] for s in seeds if key in s.get(e, {})])) for e in epochs]
            if points:
                xs = [e for e, _ in points]
                ax.plot(xs, [s[0] for _, s in points], color=cmap(i % cmap.N), linewidth=1.3,
                        label=f"{label} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
                if len(seeds) > 1:
                    ax.fill_between(xs, [s[1] for _, s in points], [s[2] for _, s in points], color=cmap(i % cmap.N),
                                    alpha=0.2, linewidth=0)
        ax.set_xlabel("epoch (-1: before training)")
        ax.set_title(panel_title)
        ax.grid(alpha=0.3)
    handles = max((ax.get_legend_handles_labels() for ax in fig.axes), key=lambda hl: len(hl[0]))
    fig.axes[-1].legend(*handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_similarity_panels(panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[Sequence[float]]]]],
                           path: str | Path, title: str = "Positive and top-10 negative similarities (Fig 8)") -> Path:
    """Fig 8 with the seeds, one panel per way of taking the positive, the legend beside the panels.

    Args:
        panels: panel title (e.g. "positive: second view") -> label -> (the seeds' positive similarities,
            the seeds' top-k negative similarities, each in descending order); the mean is drawn, with
            the seeds' range as error bars.
        path: PNG file to write.
        title: the figure's title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    panels = {t: p for t, p in panels.items() if p}
    if not panels:
        raise ValueError("panels is empty: give at least one profile")
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(5.2 * len(panels) + 2.5, 4.2))
    for p, (panel_title, profiles) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), p + 1)
        k = 0
        for i, (label, (pos, negs)) in enumerate(profiles.items()):
            seeds = [[float(a), *map(float, b)] for a, b in zip(pos, negs)]
            width = min(len(s) for s in seeds)
            k = max(k, width - 1)
            stats = [_spread([s[j] for s in seeds]) for j in range(width)]
            c = cmap(i / max(len(profiles) - 1, 1))
            ax.errorbar(range(width), [s[0] for s in stats], yerr=[[s[0] - s[1] for s in stats],
                                                                   [s[2] - s[0] for s in stats]],
                        marker="o", markersize=3, linewidth=1.2, capsize=2, color=c,
                        label=f"{label} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
        ax.set_xticks(range(k + 1))
        ax.set_xticklabels(["pos"] + [f"n{r}" for r in range(1, k + 1)])
        ax.set_xlabel("positive, then i-th nearest negative")
        ax.set_ylabel("mean similarity")
        ax.set_title(panel_title)
        ax.grid(alpha=0.3)
    fig.axes[-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_uniformity_tolerance_plane(cells: Sequence[Mapping], path: str | Path,
                                    title: str = "The uniformity-tolerance plane",
                                    accuracy_label: str = "linear top-1 (%)") -> Path:
    """Tolerance against -L_uniformity, one marker per cell: the paper's dilemma in one picture.

    Args:
        cells: one mapping per cell with ``loss`` (key), ``temperature`` (None without one),
            ``tolerance`` and ``uniformity`` (the seeds' values) and ``accuracy`` (the seeds' values,
            may be empty). Each cell is drawn at its seeds' mean with bars over their range, coloured
            by its mean accuracy (grey without one); the cells of a loss with a temperature are joined
            in tau order and labelled with their tau.
        path: PNG file to write.
        title: the figure's title.
        accuracy_label: the colour bar's label.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    cells = [c for c in cells if len(c["tolerance"]) and len(c["uniformity"])]
    if not cells:
        raise ValueError("no cell has both tolerance and uniformity")
    from matplotlib.colors import Normalize  # noqa: PLC0415

    accuracies = [sum(c["accuracy"]) / len(c["accuracy"]) for c in cells if len(c.get("accuracy", ()))]
    norm = Normalize(min(accuracies), max(accuracies) if max(accuracies) > min(accuracies) else min(accuracies) + 1) \
        if accuracies else None
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(7.6, 5.0))
    ax = fig.add_subplot()
    losses = list(dict.fromkeys(c["loss"] for c in cells))
    for i, loss in enumerate(losses):
        name, marker = _loss_style(loss, i)
        members = sorted((c for c in cells if c["loss"] == loss),
                         key=lambda c: -1.0 if c["temperature"] is None else float(c["temperature"]))
        xs, ys = [], []
        for c in members:
            x, x_lo, x_hi = _spread(c["tolerance"])
            y, y_lo, y_hi = _spread(c["uniformity"])
            acc = c.get("accuracy") or ()
            face = cmap(norm(sum(acc) / len(acc))) if acc and norm is not None else (0.6, 0.6, 0.6, 1.0)
            ax.errorbar([x], [y], xerr=[[x - x_lo], [x_hi - x]], yerr=[[y - y_lo], [y_hi - y]], fmt="none",
                        ecolor="0.35", linewidth=0.8, capsize=2, zorder=2)
            ax.scatter([x], [y], marker=marker, s=70, color=face, edgecolors="black", linewidths=0.7, zorder=3)
            if c["temperature"] is not None:
                ax.annotate(f"τ={float(c['temperature']):g}", (x, y), textcoords="offset points", xytext=(6, 4),
                            fontsize=7)
            xs.append(x)
            ys.append(y)
        tempered = [c["temperature"] is not None for c in members]
        if sum(tempered) > 1:
            ax.plot([x for x, t in zip(xs, tempered) if t], [y for y, t in zip(ys, tempered) if t], "-",
                    color="0.4", linewidth=1.0, zorder=1)
        n = max(len(c["tolerance"]) for c in members)
        ax.scatter([], [], marker=marker, s=50, color="white", edgecolors="black",
                   label=f"{name} ({n} seed{'s' if n > 1 else ''})")
    if norm is not None:
        from matplotlib.cm import ScalarMappable  # noqa: PLC0415

        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=accuracy_label)
    ax.set_xlabel("tolerance (more tolerant →)")
    ax.set_ylabel("-L_uniformity (more uniform →)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=4, borderaxespad=0)
    return save_figure(fig, path)


def seed_figures(groups: Sequence, out: str | Path, paper: Mapping | None = None,
                 dataset_titles: Mapping[str, str] | None = None) -> list[Path]:
    """The report's figures with the seeds' spread, from :class:`scripts.runs.Group` objects.

    Writes ``fig4``-``fig7`` (metric against tau, seed bands, the paper's values dashed),
    ``fig8_similarities_<dataset>.png`` (second-view and bank positives side by side, seed bars),
    ``fig9_accuracy.png`` (both probes, seed bands and 95% intervals of each cell's mean from seeds and
    test images), ``trajectories.png`` (seed bands) and ``uniformity_tolerance_<dataset>.png``.

    Args:
        groups: the report's groups (seeds of one recipe).
        out: the report folder.
        paper: dataset -> column -> {accuracy, uniformity, tolerance} (the paper's Table 1), or None.
        dataset_titles: dataset key -> title for labels.

    Returns:
        The files written.
    """
    from scripts.report_data import CLASS_KEYS, cell_key, verdict_table  # noqa: PLC0415
    from scripts.runs import quantities  # noqa: PLC0415
    from scripts.verdicts import Comparison, Term, estimate  # noqa: PLC0415

    out, paper, titles = Path(out), paper or {}, dataset_titles or {}
    groups = [g for g in groups if g.runs]
    if not groups:
        return []
    loss_of = {id(g): CLASS_KEYS.get(g.loss, g.loss) for g in groups}
    datasets = list(dict.fromkeys(g.dataset for g in sorted(groups, key=lambda g: g.dataset)))

    def label(g, extra: str = "") -> str:
        base = titles.get(g.dataset, g.dataset)
        column = f"{g.loss}_tau{float(g.temperature)}" if g.temperature is not None else g.loss
        suffix = g.key[len(column):] if g.key.startswith(column) else ""
        return base + (f" {suffix}" if suffix else "") + extra

    def values(g, q: str) -> list[float]:
        return [v for r in g.runs if (v := quantities(r).get(q)) is not None]

    def series(loss: str, q: str, extra: str = "") -> dict[str, dict[float, list[float]]]:
        result: dict[str, dict[float, list[float]]] = {}
        for g in groups:
            if loss_of[id(g)] == loss and g.temperature is not None and values(g, q):
                result.setdefault(label(g, extra), {})[float(g.temperature)] = values(g, q)
        return result

    def references(loss: str, key: str, extra: str = "") -> dict[str, dict[float, float]]:
        refs = {}
        for d in datasets:
            points = {float(col.partition("_tau")[2]): vals[key] for col, vals in paper.get(d, {}).items()
                      if col.startswith(f"{loss}_tau") and key in vals}
            if points:
                refs[titles.get(d, d) + extra] = points
        return refs

    def levels(loss: str, q: str, extra: str = "") -> dict[str, list[float]]:
        name = _loss_style(loss, 0)[0]
        return {f"{label(g, extra)}, {name}": values(g, q) for g in groups
                if loss_of[id(g)] == loss and values(g, q)}

    written = []
    specs = [("fig4_uniformity_contrastive.png", "contrastive", "uniformity", "simple", "-L_uniformity",
              "Uniformity, contrastive loss (Fig 4)"),
             ("fig5_tolerance_contrastive.png", "contrastive", "tolerance", "simple", "tolerance",
              "Tolerance, contrastive loss (Fig 5)"),
             ("fig6_uniformity_hard_contrastive.png", "hard_contrastive", "uniformity", "hard_simple",
              "-L_uniformity", "Uniformity, hard contrastive loss (Fig 6)"),
             ("fig7_tolerance_hard_contrastive.png", "hard_contrastive", "tolerance", "hard_simple", "tolerance",
              "Tolerance, hard contrastive loss (Fig 7)")]
    for name, loss, q, flat, ylabel, title in specs:
        if series(loss, q) or levels(flat, q):
            written.append(plot_metric_bands(series(loss, q), out / name, ylabel, title,
                                             references(loss, q), levels(flat, q)))
    table = verdict_table(groups)
    accuracy, bars, flat_acc = {}, {}, {}
    for q, probe in (("top1_last", ", SGD probe"), ("top1_lbfgs", ", L-BFGS probe")):
        for loss in ("contrastive", "hard_contrastive"):
            name = _loss_style(loss, 0)[0]
            for lab, points in series(loss, q, f", {name}{probe}").items():
                accuracy[lab] = points
            for g in groups:
                key = cell_key(g)
                if loss_of[id(g)] != loss or g.temperature is None or key not in table:
                    continue
                e = estimate(Comparison((Term(key, q),), key), table)
                if e.low > float("-inf") and e.high < float("inf"):
                    bars.setdefault(label(g, f", {name}{probe}"), {})[float(g.temperature)] = (e.low, e.high)
        for loss in ("simple", "hard_simple"):
            flat_acc.update(levels(loss, q, probe))
    if accuracy or flat_acc:
        written.append(plot_metric_bands(accuracy, out / "fig9_accuracy.png", "linear top-1 (%)",
                                         "Linear evaluation accuracy (Fig 9): both probes, 95% intervals",
                                         {**references("contrastive", "accuracy", ", contrastive, SGD probe"),
                                          **references("hard_contrastive", "accuracy",
                                                       ", hard contrastive, SGD probe")},
                                         flat_acc, bars))
    for d in datasets:
        ordered = sorted((g for g in groups if g.dataset == d),
                         key=lambda g: (loss_of[id(g)], g.temperature is not None, g.temperature or 0.0, g.key))
        panels: dict[str, dict] = {}
        for title, (pos_key, neg_key) in (("positive: a second view (test images)", FIG8_KEYS["view"]),
                                          ("positive: its own bank entry, the paper's s_ii (training images)",
                                           FIG8_KEYS["bank"])):
            profiles = {}
            for g in ordered:
                runs = [r for r in g.runs if pos_key in r.metrics and neg_key.format(1) in r.metrics]
                if runs:
                    negs = [[r.metrics[neg_key.format(k)] for k in range(1, 11) if neg_key.format(k) in r.metrics]
                            for r in runs]
                    name = _loss_style(loss_of[id(g)], 0)[0]
                    tau = "" if g.temperature is None else f" τ={g.temperature:g}"
                    suffix = label(g)[len(titles.get(d, d)):]
                    profiles[f"{name}{tau}{suffix}"] = ([r.metrics[pos_key] for r in runs], negs)
            panels[title] = profiles
        if any(panels.values()):
            written.append(plot_similarity_panels(panels, out / f"fig8_similarities_{d}.png",
                                                  f"{titles.get(d, d)}: positive and top-10 negative similarities "
                                                  "(Fig 8)"))
        cells = []
        probe = "top1_lbfgs" if all(values(g, "top1_lbfgs") for g in ordered) else "top1_last"
        for g in ordered:
            cells.append({"loss": loss_of[id(g)], "temperature": g.temperature, "tolerance": values(g, "tolerance"),
                          "uniformity": values(g, "uniformity"), "accuracy": values(g, probe)})
        if any(c["tolerance"] and c["uniformity"] for c in cells):
            written.append(plot_uniformity_tolerance_plane(
                cells, out / f"uniformity_tolerance_{d}.png", f"{titles.get(d, d)}: the uniformity-tolerance plane",
                "linear top-1 (%), " + ("L-BFGS probe" if probe == "top1_lbfgs" else "SGD probe")))
    trajectories = {g.key: [r.trajectory for r in g.runs if r.trajectory] for g in groups}
    trajectories = {k: v for k, v in trajectories.items() if v}
    if trajectories:
        written.append(plot_trajectory_bands(trajectories, out / "trajectories.png"))
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
