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
    return _save(fig, path)


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
    return _save(fig, path)


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
    return _save(fig, path)


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
    return _save(fig, path)


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
        for title, pos_key, neg_key in (("positive: a second view (test images)", "val/pos_sim", "val/neg_sim_{}"),
                                        ("positive: its own bank entry, the paper's s_ii (training images)",
                                         "val/pos_sim_bank", "val/neg_sim_bank_top{}")):
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
