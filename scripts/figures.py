"""Cross-run figures of the report (``scripts/report.py``): matplotlib's ``Figure`` rendered by Agg, no pyplot."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

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
