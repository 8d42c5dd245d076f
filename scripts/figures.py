"""Cross-run figures of the report (``scripts/report.py``): matplotlib's ``Figure`` rendered by Agg, no pyplot.

Figs 4-7 and 9 (a metric against the temperature), Fig 8 across runs (one similarity
profile per run) and the trajectories. The per-run figures (Fig 2, 3, 8 per epoch) are
the training callback's, in ``callbacks/plots.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

DPI = 120


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def plot_metric_vs_temperature(curves: Mapping[str, Mapping[float, float]], path: str | Path, ylabel: str,
                               title: str, references: Mapping[str, Mapping[float, float]] | None = None,
                               levels: Mapping[str, float] | None = None) -> Path:
    """Figs 4-7 and 9: one metric of several runs against their temperature.

    Args:
        curves: label (e.g. a dataset) -> {tau: value}; one solid line with markers each.
            A label with no points is drawn in the legend only, as "(no runs)".
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
    labels = list(dict.fromkeys([*curves, *references]))
    if not labels and not levels:
        raise ValueError("nothing to plot: curves, references and levels are all empty")
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
        elif label in curves:
            ax.plot([], [], color=color[label], label=f"{label} (no runs)")
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
    return _save(fig, path)


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
    return _save(fig, path)
