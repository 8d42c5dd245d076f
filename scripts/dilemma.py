"""The dilemma study (issue 20): does any loss written after the paper escape the uniformity-tolerance dilemma?

    python scripts/dilemma.py runs/cpu3 runs/dilemma --out docs/results/dilemma
    python scripts/dilemma.py --from-data docs/results/dilemma/data --out /tmp/dilemma   # rebuilt from the data

The first folder holds contrastive's tau curve (configs/experiments/grid_cpu3.yaml, memory bank), the second
the losses after the paper (configs/experiments/grid_dilemma.yaml); runs are found and grouped by
``scripts/runs.py`` (seeds averaged only when their recipes are equal but for the seed). Four questions, each
answered holds / not resolved / contradicted by the rule of ``scripts/verdicts.py`` (an interval at level
``1 - 0.05 / k`` for ``k`` comparisons; holds when it lies above 0, contradicted when below 0):

1. **Beyond the curve.** The curve is the piecewise-linear line through contrastive's seed means on the plane
   (x = tolerance, y = -L_uniformity), its points in order of tolerance, each axis in units of the curve's span
   (so neither axis dominates). A cell's margin is its signed distance from that line: positive on the side
   that is more tolerant at the same uniformity or more uniform at the same tolerance (left of the line's
   direction of rising tolerance), negative inside. (The dilemma's curve falls: uniformity is lost as
   tolerance is gained. Where a stretch of it rises instead, "beyond" there means more uniform at the same
   tolerance.) Its interval is a parametric bootstrap over seeds: every
   cell's mean point (the curve's and the cell's) is redrawn from a bivariate t with the seeds' covariance
   of (tolerance, uniformity) over their number, so that a seed moving both coordinates moves the point as
   a whole (the pooled variances of :func:`scripts.verdicts.pooled_variances`, uncorrelated, for a single
   seed), the curve rebuilt and the distance recomputed; percentile interval. The question holds when one cell's
   interval lies above 0 and is contradicted when every cell's lies below 0 (``AnyOf``). The cells are every
   cell but the curve's points: the study's, and also the paper's hard and simple losses when the curve's
   folder holds them (runs/cpu3 does), labelled as such in the per-cell table.
2. **Beats the best tau.** For each cell: its accuracy minus contrastive's at the tau with the best mean
   accuracy on that probe, on both probes (``top1_last``, the SGD probe; ``top1_lbfgs``), each a
   :func:`scripts.verdicts.estimate` paired over the test images. ``AnyOf`` over the cells of ``AllOf``
   over the two probes, decided by :func:`scripts.verdicts.decide`. The best tau is picked on the same runs,
   which favours contrastive: a cell that holds does so despite that choice.
3. **False negatives explain tolerance.** Pearson and Spearman correlation, over every seed of every cell
   (contrastive's curve included), of ``train/false_negative_rate`` (the mean of the steps logged in the last
   epoch) with tolerance. Interval: bootstrap over cells, then over seeds within each drawn cell. Margin:
   Pearson r minus :data:`EXPLAINS` (0.5, i.e. r^2 >= 0.25): holds when the interval lies above 0.5,
   contradicted when it lies below.
4. **Uniform enough first, then tolerant.** Let M be the cell with the highest mean uniformity. A cell is
   *uniform enough* when its uniformity is not resolved below M's (``uniformity(M) - uniformity(c)`` does
   not hold, at the Bonferroni level over the cells). Among the uniform-enough cells, let A be the one with
   the best mean accuracy (SGD probe). The account holds when A is more tolerant than every other
   uniform-enough cell (``AllOf`` of ``tolerance(A) - tolerance(c)``) and is contradicted when another
   uniform-enough cell is resolved more tolerant than A. Where the best accuracy of all cells lies is
   reported beside it.

A question whose cells have not run is "not tested" with the missing cells listed; never a made-up value.

Writes to ``--out``: ``dilemma.md`` (the four verdicts, one row per cell, the study's wall time from the second
folder's runner logs, the cells missing), ``data/`` (every run's per-epoch data and predictions,
``scripts/report_data.py``'s layout, ``train/false_negative_rate`` in the final row; ``dilemma.json``: the
cells missing and the wall time) and ``uniformity_tolerance_plane.png`` (every cell, ``scripts/figures.py``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts import report_data  # noqa: E402
from scripts.grid_times import summary as grid_summary, summary_lines  # noqa: E402
from scripts.runs import Group, Run, families, family_labels, find_runs, group_runs, versions  # noqa: E402
from scripts.verdicts import (ALPHA, CONTRADICTED, HOLDS, NOT_RESOLVED, NOT_TESTED, AllOf, AnyOf, Estimate,  # noqa: E402
                              SeedRecord, any_of, decide, greater, pooled_variances, signed)
FNR = "train/false_negative_rate"
#: question 3: the correlation above which false negatives "explain" tolerance (r^2 >= 0.25)
EXPLAINS = 0.5
#: bootstrap draws of questions 1 and 3 (question 1's interval is at level 1 - 0.05 / k for k cells: its tails
#: need many draws, e.g. 0.1% each for k = 25, 20 draws)
DRAWS = 20000
CURVE_GRID = ROOT / "configs/experiments/grid_cpu3.yaml"
STUDY_GRID = ROOT / "configs/experiments/grid_dilemma.yaml"
#: in ``<out>/data``: the cells missing and the study's wall time, for ``--from-data``
META = "dilemma.json"


@dataclass
class Cell:
    """One cell of the study: its seeds as :class:`scripts.verdicts.SeedRecord` and how to label it."""

    key: str
    loss: str
    temperature: float | None
    seeds: list[SeedRecord]
    curve: bool = False  # a point of contrastive's tau curve
    label: str = ""

    def values(self, quantity: str) -> list[float]:
        return [s.final[quantity] for s in self.seeds if quantity in s.final and not math.isnan(s.final[quantity])]

    def mean(self, quantity: str) -> float:
        values = self.values(quantity)
        return float(np.mean(values)) if values else math.nan


@dataclass
class Answer:
    """One question's outcome, the deciding margin and interval, and what it rests on."""

    question: str
    outcome: str
    estimate: Estimate | None = None
    detail: str = ""
    missing: list[str] = field(default_factory=list)
    per_cell: dict[str, Estimate] = field(default_factory=dict)


# ------------------------------------------------------------------ reading
def last_epoch_mean(folders: list[Path], key: str = FNR) -> float | None:
    """The mean of ``key`` over the steps logged in the last epoch that logged it (later versions win)."""
    by_epoch: dict[int, list[float]] = {}
    for folder in folders:
        path = folder / "metrics.csv"
        if not path.is_file():
            continue
        with open(path, newline="") as f:
            rows = [(int(float(r["epoch"])), float(r[key])) for r in csv.DictReader(f)
                    if r.get(key) not in (None, "") and r.get("epoch") not in (None, "")]
        epochs = {e for e, _ in rows}
        for e in epochs:  # a later version (a resume) replaces an epoch it logged again
            by_epoch[e] = [v for ep, v in rows if ep == e]
    if not by_epoch:
        return None
    values = by_epoch[max(by_epoch)]
    return float(np.mean(values))


def add_false_negative_rate(run: Run) -> None:
    """Put the last epoch's mean ``train/false_negative_rate`` into ``run.metrics`` (kept by the committed data)."""
    if FNR in run.metrics:
        return
    folders = versions(run.path / "pretrain") if (run.path / "pretrain").is_dir() else [run.path]
    value = last_epoch_mean(folders)
    if value is not None:
        run.metrics[FNR] = value


def seed_record(run: Run) -> SeedRecord:
    record = report_data.seed_record(run)
    if FNR in run.metrics:
        record.final["fnr"] = run.metrics[FNR]
    return record


def cells_of(groups: list[Group]) -> list[Cell]:
    """The finished groups as cells; contrastive's curve is the contrastive groups of the largest family."""
    main = {g.key for g in (families(groups)[0] if groups else [])}
    labels = family_labels(groups)  # "" for the largest family, else how its recipe differs, e.g. [InBatchNegatives]
    cells = []
    for g in groups:
        seeds = [seed_record(r) for r in g.runs if r.finished]
        if not seeds:
            continue
        curve = g.loss == "contrastive" and g.temperature is not None and g.key in main
        label = f"{g.loss} {labels.get(g.key, '')}".strip()
        cells.append(Cell(g.key, g.loss, g.temperature, seeds, curve, label))
    return cells


# ------------------------------------------------------------- question 1
def _draw(cell: Cell, pooled: dict, rng: np.random.Generator, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """``draws`` redraws of the cell's mean point (tolerance, -L_uniformity), each (D,).

    The two coordinates are drawn together, as a seed moves both: a bivariate t with the seeds' sample
    covariance over their number and ``n - 1`` degrees of freedom. A cell with one seed takes the pooled
    variances of :func:`scripts.verdicts.pooled_variances` and no correlation (none can be measured).
    """
    t, u = np.array(cell.values("tolerance")), np.array(cell.values("uniformity"))
    n = len(t)
    if n >= 2:
        cov, df = np.cov(np.stack([t, u]), ddof=1), n - 1  # (2, 2)
    else:
        (vt, dft), (vu, dfu) = pooled.get("tolerance", (0.0, 1)), pooled.get("uniformity", (0.0, 1))
        cov, df = np.diag([vt, vu]), min(dft, dfu)  # zero variance without a pooled one: flagged by the caller
    z = rng.multivariate_normal(np.zeros(2), cov / n, size=draws, method="svd")  # (D, 2); svd: a rank-1 cov is fine
    scale = np.sqrt(df / rng.chisquare(df, size=draws))[:, None]  # (D, 1): one t scale for both coordinates
    point = np.array([t.mean(), u.mean()]) + z * scale  # (D, 2)
    return point[:, 0], point[:, 1]


def signed_distance(x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Signed distance of points from polylines, vectorised over draws.

    Args:
        x, y: the point per draw, (D,).
        cx, cy: the curve's points per draw, (D, P), any order (sorted by x here).

    Returns:
        (D,): the distance to the nearest segment, positive left of the direction of rising x (above a
        rising or falling curve: more uniform at the same tolerance, more tolerant at the same uniformity).
    """
    order = np.argsort(cx, axis=1)
    cx, cy = np.take_along_axis(cx, order, 1), np.take_along_axis(cy, order, 1)  # (D, P)
    ax, ay, bx, by = cx[:, :-1], cy[:, :-1], cx[:, 1:], cy[:, 1:]  # (D, P-1)
    dx, dy = bx - ax, by - ay
    px, py = x[:, None] - ax, y[:, None] - ay  # (D, P-1)
    length2 = np.maximum(dx * dx + dy * dy, 1e-24)
    s = np.clip((px * dx + py * dy) / length2, 0.0, 1.0)  # (D, P-1): the nearest point's position
    distance = np.hypot(px - s * dx, py - s * dy)  # (D, P-1)
    side = np.sign(dx * py - dy * px)  # (D, P-1): + left of the segment
    nearest = np.argmin(distance, axis=1)  # (D,)
    rows = np.arange(len(x))
    return side[rows, nearest] * distance[rows, nearest]


def beyond_curve(cells: list[Cell], alpha: float = ALPHA, draws: int = DRAWS, seed: int = 0) -> Answer:
    """Question 1: the signed distance of every other cell from contrastive's tau curve (module docstring)."""
    q = "1. Does any loss lie beyond contrastive's tau curve on the uniformity-tolerance plane?"
    curve = [c for c in cells if c.curve and c.values("tolerance") and c.values("uniformity")]
    others = [c for c in cells if not c.curve and c.values("tolerance") and c.values("uniformity")]
    if len(curve) < 2 or not others:
        return Answer(q, NOT_TESTED, detail="needs two contrastive taus and one other cell")
    table = {c.key: c.seeds for c in cells}
    pooled = pooled_variances(table, ("tolerance", "uniformity"))
    rng = np.random.default_rng(seed)
    sx = np.ptp([c.mean("tolerance") for c in curve]) or 1.0  # the curve's span: the axes' unit
    sy = np.ptp([c.mean("uniformity") for c in curve]) or 1.0
    points = [_draw(c, pooled, rng, draws) for c in curve]
    cx = np.stack([x for x, _ in points], 1) / sx  # (D, P)
    cy = np.stack([y for _, y in points], 1) / sy  # (D, P)
    mx = np.array([[c.mean("tolerance") / sx for c in curve]])  # (1, P)
    my = np.array([[c.mean("uniformity") / sy for c in curve]])
    level = 1 - alpha / len(others)
    per_cell = {}
    for c in others:
        value = float(signed_distance(np.array([c.mean("tolerance") / sx]), np.array([c.mean("uniformity") / sy]),
                                      mx, my)[0])
        x, y = _draw(c, pooled, rng, draws)
        d = signed_distance(x / sx, y / sy, cx, cy)  # (D,)
        unknown = [k.key for k in [*curve, c] for qq in ("tolerance", "uniformity")
                   if len(k.values(qq)) < 2 and qq not in pooled]
        if unknown:
            per_cell[c.key] = Estimate(f"distance({c.key})", value, -math.inf, math.inf, NOT_RESOLVED, level,
                                       f"{unknown[0]} ran one seed and no cell has two")
            continue
        low, high = (float(v) for v in np.quantile(d, [(1 - level) / 2, (1 + level) / 2]))
        outcome = HOLDS if low > 0 else CONTRADICTED if high < 0 else NOT_RESOLVED
        per_cell[c.key] = Estimate(f"distance({c.key})", value, low, high, outcome, level)
    return Answer(q, *any_of([(e.outcome, e) for e in per_cell.values()]), per_cell=per_cell,
                  detail=f"{len(curve)} contrastive taus, {len(others)} other cells; units: the curve's span "
                         f"(tolerance {sx:.3g}, -L_uniformity {sy:.3g})")


# ------------------------------------------------------------- question 2
def beats_best_tau(cells: list[Cell], alpha: float = ALPHA) -> Answer:
    """Question 2: any cell above contrastive at its best tau on both probes (paired over the test images)."""
    q = "2. Does any loss beat contrastive at its best tau in accuracy, on both probes?"
    curve = [c for c in cells if c.curve]
    others = [c for c in cells if not c.curve]
    best = {}
    for probe in ("top1_last", "top1_lbfgs"):
        measured = [c for c in curve if c.values(probe)]
        if measured:
            best[probe] = max(measured, key=lambda c: c.mean(probe)).key
    if len(best) < 2 or not others:
        return Answer(q, NOT_TESTED, detail="needs contrastive's accuracies on both probes and one other cell")
    table = {c.key: c.seeds for c in cells}
    node = AnyOf(tuple(AllOf(tuple(greater(c.key, best[p], p) for p in best)) for c in others))
    outcome, e = decide(node, table, alpha=alpha)
    per_cell = {}
    for part, c in zip(node.parts, others):
        per_cell[c.key] = decide(part, table, alpha=alpha / len(others))[1]  # the family's level per cell
    return Answer(q, outcome, e, per_cell=per_cell,
                  detail=f"contrastive's best tau: {best['top1_last']} (SGD probe), {best['top1_lbfgs']} (L-BFGS)")


# ------------------------------------------------------------- question 3
def correlations(pairs: list[list[tuple[float, float]]], alpha: float = ALPHA, draws: int = DRAWS,
                 seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Pearson and Spearman correlation of (x, y) over every seed of every cell, with bootstrap intervals.

    Args:
        pairs: one list per cell of its seeds' (x, y).
        alpha: 1 - the intervals' level.
        draws: bootstrap draws (cells drawn with replacement, then seeds within each drawn cell).
        seed: the bootstrap's random seed.

    Returns:
        ``pearson`` and ``spearman`` -> (value, low, high).
    """
    rng = np.random.default_rng(seed)
    flat = np.array([p for cell in pairs for p in cell])  # (N, 2)
    found = {"pearson": [], "spearman": []}
    for _ in range(draws):
        drawn = []
        for i in rng.integers(len(pairs), size=len(pairs)):
            cell = pairs[i]
            drawn += [cell[j] for j in rng.integers(len(cell), size=len(cell))]
        xy = np.array(drawn)  # (N', 2)
        if np.ptp(xy[:, 0]) == 0 or np.ptp(xy[:, 1]) == 0:
            continue  # a draw without spread has no correlation
        found["pearson"].append(np.corrcoef(xy[:, 0], xy[:, 1])[0, 1])
        found["spearman"].append(stats.spearmanr(xy[:, 0], xy[:, 1])[0])
    value = {"pearson": float(np.corrcoef(flat[:, 0], flat[:, 1])[0, 1]),
             "spearman": float(stats.spearmanr(flat[:, 0], flat[:, 1])[0])}
    return {k: (value[k], *(float(v) for v in np.quantile(found[k], [alpha / 2, 1 - alpha / 2]))) for k in found}


def false_negatives_explain(cells: list[Cell], alpha: float = ALPHA, draws: int = DRAWS, seed: int = 0) -> Answer:
    """Question 3: the correlation of ``train/false_negative_rate`` with tolerance, over cells and seeds."""
    q = "3. Does train/false_negative_rate explain tolerance across all cells?"
    pairs = [[(s.final["fnr"], s.final["tolerance"]) for s in c.seeds if "fnr" in s.final and "tolerance" in s.final]
             for c in cells]
    without = [c.key for c, p in zip(cells, pairs) if not p]
    pairs = [p for p in pairs if p]
    if len(pairs) < 3:
        return Answer(q, NOT_TESTED, detail="needs the false-negative rate and tolerance of three cells",
                      missing=without)
    r = correlations(pairs, alpha, draws, seed)
    value, low, high = r["pearson"]
    outcome = HOLDS if low > EXPLAINS else CONTRADICTED if high < EXPLAINS else NOT_RESOLVED
    e = Estimate(f"pearson(fnr, tolerance) - {EXPLAINS}", value - EXPLAINS, low - EXPLAINS, high - EXPLAINS,
                 outcome, 1 - alpha)
    rho = r["spearman"]
    detail = (f"Pearson r = {value:.3f} [{low:.3f}, {high:.3f}], Spearman rho = {rho[0]:.3f} [{rho[1]:.3f}, "
              f"{rho[2]:.3f}] over {sum(map(len, pairs))} runs in {len(pairs)} cells")
    return Answer(q, outcome, e, detail=detail, missing=[f"{k} (no false-negative rate)" for k in without])


# ------------------------------------------------------------- question 4
def best_where_predicted(cells: list[Cell], alpha: float = ALPHA) -> Answer:
    """Question 4: among the uniform-enough cells, is the most accurate one the most tolerant (module docstring)?"""
    q = "4. Is the best accuracy where the paper's account puts it: uniform enough first, then tolerant?"
    usable = [c for c in cells if c.values("uniformity") and c.values("tolerance") and c.values("top1_last")]
    if len(usable) < 2:
        return Answer(q, NOT_TESTED, detail="needs two cells with uniformity, tolerance and accuracy")
    table = {c.key: c.seeds for c in usable}
    top = max(usable, key=lambda c: c.mean("uniformity"))
    rest = [c for c in usable if c is not top]
    enough = [top] + [c for c in rest if decide(greater(top.key, c.key, "uniformity"), table,
                                                alpha=alpha / len(rest))[0] != HOLDS]
    best = max(enough, key=lambda c: c.mean("top1_last"))
    overall = max(usable, key=lambda c: c.mean("top1_last"))
    detail = (f"most uniform: {top.key}; uniform enough: {', '.join(c.key for c in enough)}; best accuracy among "
              f"them: {best.key}; best accuracy of all: {overall.key}"
              + ("" if overall in enough else " (not uniform enough)"))
    if len(enough) == 1:
        return Answer(q, NOT_RESOLVED, None, detail=detail + "; no other cell is uniform enough to compare")
    node = AllOf(tuple(greater(best.key, c.key, "tolerance") for c in enough if c is not best))
    outcome, e = decide(node, table, alpha=alpha)
    return Answer(q, outcome, e, detail=detail)


# ---------------------------------------------------------------- missing cells
def missing_cells(roots: list[Path], grids: list[Path], names: list[str | None]) -> list[str]:
    """Cells of each grid (only those matching its pattern) without ``finished.json`` under its folder."""
    out = []
    for root, grid, pattern in zip(roots, grids, names):
        for cell in yaml.safe_load(grid.read_text())["cells"]:
            if pattern and not re.match(pattern, cell["name"]):
                continue
            if not (root / cell["name"] / "finished.json").is_file():
                out.append(f"{root.name}/{cell['name']}")
    return out


# -------------------------------------------------------------------- report
def _spread(values: list[float], digits: int) -> str:
    if not values:
        return "—"
    text = f"{np.mean(values):.{digits}f}"
    return text + (f" ± {np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else "")


def markdown(answers: list[Answer], cells: list[Cell], missing: list[str], wall: dict | None = None) -> str:
    lines = ["# The dilemma study: every loss on the uniformity-tolerance plane", "",
             "Generated by `python scripts/dilemma.py`; the questions, the rule and the definitions are in its "
             "docstring and in docs/reproduce.md, \"Beyond the paper\". Margins and intervals at the level shown "
             "(Bonferroni over the comparisons of a question).", "",
             "| question | outcome | margin [interval] (deciding comparison; level) | detail |", "|---|---|---|---|"]
    for a in answers:
        if a.outcome == NOT_TESTED:
            lines.append(f"| {a.question} | not tested: {a.detail}"
                         + (f"; missing {', '.join(a.missing)}" if a.missing else "") + " | — | — |")
            continue
        margin = "—" if a.estimate is None else (f"{signed(a.estimate.value)} [{signed(a.estimate.low)}, "
                                                 f"{signed(a.estimate.high)}] ({a.estimate.text}; "
                                                 f"{100 * a.estimate.level:.1f}%)")
        reason = f" ({a.estimate.reason})" if a.estimate is not None and a.estimate.reason else ""
        extra = f"; also missing {', '.join(a.missing)}" if a.missing else ""
        lines.append(f"| {a.question} | **{a.outcome}**{reason} | {margin} | {a.detail}{extra} |")
    lines += ["", "## Per cell", "", "Seed means ± their standard deviation; accuracies in percent; distance: "
              "question 1's signed distance from contrastive's curve; beats best tau: question 2's deciding "
              "comparison for that cell.", "",
              "| cell | runs | -L_uniformity | tolerance | top-1 SGD | top-1 L-BFGS | false-negative rate | "
              "distance [interval] | beats best tau [interval] |", "|---|---|---|---|---|---|---|---|---|"]
    q1 = answers[0].per_cell
    q2 = answers[1].per_cell
    for c in cells:
        def verdict(per: dict[str, Estimate]) -> str:
            e = per.get(c.key)
            return "—" if e is None else f"{e.outcome}: {signed(e.value)} [{signed(e.low)}, {signed(e.high)}]"

        lines.append(f"| {c.key}{' (curve)' if c.curve else ''} | {len(c.seeds)} | {_spread(c.values('uniformity'), 3)}"
                     f" | {_spread(c.values('tolerance'), 3)} | {_spread(c.values('top1_last'), 2)} | "
                     f"{_spread(c.values('top1_lbfgs'), 2)} | {_spread(c.values('fnr'), 3)} | {verdict(q1)} | "
                     f"{verdict(q2)} |")
    if wall:
        lines += ["", "Wall time of the study's folder (`scripts/grid_times.py` on its runner logs): "
                  + " ".join(summary_lines(wall))]
    if missing:
        lines += ["", f"Cells without a finished run ({len(missing)}): " + ", ".join(missing)]
    return "\n".join(lines) + "\n"


def answers_table(text: str) -> str:
    """The four answers' table of a ``dilemma.md`` (what ``--doc`` writes into a document's generated block)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| question |"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return "\n".join(lines[start:end]) + "\n"


def analyse(cells: list[Cell], draws: int = DRAWS) -> list[Answer]:
    """The four answers on these cells."""
    return [beyond_curve(cells, draws=draws), beats_best_tau(cells), false_negatives_explain(cells, draws=draws),
            best_where_predicted(cells)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path,
                        help="contrastive's tau-curve folder (runs/cpu3), then the study's (runs/dilemma)")
    parser.add_argument("--out", type=Path, required=True, help="folder for dilemma.md, data/ and the plane")
    parser.add_argument("--from-data", type=Path, metavar="DATA", help="rebuild from a committed data folder")
    parser.add_argument("--draws", type=int, default=DRAWS, help="bootstrap draws of questions 1 and 3")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--doc", type=Path, action="append", default=[],
                        help="a Markdown file whose '<!-- generated:dilemma -->' ... '<!-- /generated -->' block gets "
                             "the four answers (e.g. docs/reproduce.md); repeatable")
    opts = parser.parse_args(argv)
    if opts.from_data is not None:
        if opts.runs:
            parser.error("--from-data rebuilds from the data alone: give no runs folder with it")
        try:
            runs = report_data.read_runs(opts.from_data)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        meta = opts.from_data / META
        meta = json.loads(meta.read_text()) if meta.is_file() else {}
        missing, wall = meta.get("missing", []), meta.get("wall")
    else:
        if not opts.runs or len(opts.runs) > 2:
            parser.error("give contrastive's tau-curve folder and the study's folder: runs/cpu3 runs/dilemma")
        for root in opts.runs:
            if not root.is_dir():
                print(f"error: {root} is not a folder; run the grids first (docs/reproduce.md, \"Beyond the "
                      "paper\")", file=sys.stderr)
                return 1
        runs = [r for root in opts.runs for r in find_runs(root)]
        for run in runs:
            add_false_negative_rate(run)
        grids, patterns = [CURVE_GRID, STUDY_GRID][:len(opts.runs)], [r"contrastive_tau", None][:len(opts.runs)]
        missing = missing_cells(opts.runs, grids, patterns)
        wall = grid_summary(opts.runs[-1]) if len(opts.runs) == 2 else None
    if not runs:
        print(f"error: no finished run in {', '.join(map(str, opts.runs)) or opts.from_data}: run the grids first "
              "(docs/reproduce.md, \"Beyond the paper\")", file=sys.stderr)
        return 1
    groups = group_runs(runs)
    cells = cells_of(groups)
    answers = analyse(cells, opts.draws)
    opts.out.mkdir(parents=True, exist_ok=True)
    text = markdown(answers, cells, missing, wall)
    (opts.out / "dilemma.md").write_text(text)
    written = ["dilemma.md"]
    for doc in opts.doc:
        doc.write_text(report_data.replace_block(doc.read_text(), "dilemma", answers_table(text)))
        written.append(str(doc))
    data = opts.out / "data"
    if opts.from_data is None or data.resolve() != opts.from_data.resolve():
        report_data.write_data(data, groups)
        (data / META).write_text(json.dumps({"missing": missing, "wall": wall}, indent=1) + "\n")
        written.append("data/")
    if not opts.no_figures:
        from scripts.figures import plot_uniformity_tolerance_plane  # noqa: PLC0415

        plot_uniformity_tolerance_plane(
            [{"loss": c.label, "temperature": c.temperature, "tolerance": c.values("tolerance"),
              "uniformity": c.values("uniformity"), "accuracy": c.values("top1_last")} for c in cells],
            opts.out / "uniformity_tolerance_plane.png", title="Every loss on the uniformity-tolerance plane")
        written.append("uniformity_tolerance_plane.png")
    print(f"{len(runs)} runs in {len(cells)} cells; " + "; ".join(f"{a.question.split('.')[0]}: {a.outcome}"
                                                                  for a in answers) + f"; wrote {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
