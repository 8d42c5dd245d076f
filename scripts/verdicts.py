"""Three outcomes from the noise: holds, not resolved, contradicted (plain data in, no run discovery).

A claim is a tree of comparisons. A comparison is a linear contrast of cell means,
``sum_k w_k * mean(cell_k, quantity_k) + offset > 0`` (e.g. "U at tau 0.07 above U at tau 1.0" is
``U(0.07) - U(1.0) > 0``). Its interval accounts for:

- **the seeds**: each cell's mean has the variance of its seeds over their number; a cell with a
  single seed takes the pooled within-cell variance of the same quantity over every cell with two
  or more seeds (its degrees of freedom too); the terms combine as in Welch's test
  (Welch-Satterthwaite degrees of freedom);
- **the test images**, for accuracies: the same test images are scored by every model, so the
  contrast is formed per image (each cell's correctness averaged over its seeds, weighted as in the
  contrast) and its variance over the images, divided by their number, is added: a paired
  comparison, as McNemar's test is for two models.

The interval is ``value +- t(df) * se`` at level ``1 - 0.05 / k`` for a claim of ``k`` comparisons
(Bonferroni: the claim's outcome is wrong with probability at most 5% in either direction). A
comparison **holds** when its interval lies above 0, is **contradicted** when it lies below 0, and is
**not resolved** otherwise (or when its noise cannot be estimated: one seed and no pooled spread, an
accuracy without per-image predictions). ``AllOf`` and ``AnyOf`` combine outcomes in three-valued logic:
AllOf holds when every part holds and is contradicted when one part is; AnyOf holds when one part holds
and is contradicted when every part is.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

HOLDS, NOT_RESOLVED, CONTRADICTED = "holds", "not resolved", "contradicted"
#: the outcome of a claim or question whose cells did not run: no verdict is made up
NOT_TESTED = "not tested"
#: the family-wise error of one claim's outcome
ALPHA = 0.05
#: accuracy quantities (percent) whose noise includes the finite test set
ACCURACIES = ("top1_last", "top1_lbfgs")


@dataclass
class SeedRecord:
    """What one run (one seed of a cell) measured, as plain data.

    Attributes:
        seed: the run's ``seed_everything``.
        final: quantity -> value at the end (accuracies in percent).
        trajectory: epoch -> quantity -> value (-1: before training).
        predictions: accuracy quantity (``top1_last``, ``top1_lbfgs``) -> (test-image index (M,),
            correct (M,) as 0/1) of that probe.
    """

    seed: int | None
    final: dict[str, float] = field(default_factory=dict)
    trajectory: dict[int, dict[str, float]] = field(default_factory=dict)
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


#: cell key (``contrastive_tau0.2``, ``simple``) -> its seeds
Table = Mapping[str, Sequence[SeedRecord]]


@dataclass(frozen=True)
class Term:
    cell: str
    quantity: str
    weight: float = 1.0


@dataclass(frozen=True)
class Comparison:
    """``sum(weight * mean(cell, quantity)) + offset > 0``, described by ``text``."""

    terms: tuple[Term, ...]
    text: str
    offset: float = 0.0

    def cells(self) -> set[str]:
        return {t.cell for t in self.terms}

    def count(self) -> int:
        return 1

    def comparisons(self) -> list["Comparison"]:
        return [self]


@dataclass(frozen=True)
class AllOf:
    parts: tuple

    def cells(self) -> set[str]:
        return set().union(*(p.cells() for p in self.parts))

    def comparisons(self) -> list[Comparison]:
        return [c for p in self.parts for c in p.comparisons()]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple

    def cells(self) -> set[str]:
        return set().union(*(p.cells() for p in self.parts))

    def comparisons(self) -> list[Comparison]:
        return [c for p in self.parts for c in p.comparisons()]


def greater(a: str, b: str, quantity: str, offset: float = 0.0) -> Comparison:
    """``mean(a) - mean(b) + offset > 0`` for one quantity."""
    text = f"{quantity}({a}) - {quantity}({b})" + (f" + {offset:g}" if offset else "")
    return Comparison((Term(a, quantity, 1.0), Term(b, quantity, -1.0)), text, offset)


@dataclass
class Estimate:
    """A comparison's value, its interval, its outcome, and why when it cannot be decided."""

    text: str
    value: float
    low: float
    high: float
    outcome: str
    level: float
    reason: str = ""


def pooled_variances(table: Table, quantities: Iterable[str], epoch: int | None = None) -> dict[str, tuple[float, int]]:
    """quantity -> (pooled within-cell variance over the cells with >= 2 seeds, its degrees of freedom)."""
    out = {}
    for q in quantities:
        ss, df = 0.0, 0
        for seeds in table.values():
            values = [v for v in (_value(s, q, epoch) for s in seeds) if v is not None]
            if len(values) >= 2:
                ss += float(np.var(values, ddof=1)) * (len(values) - 1)
                df += len(values) - 1
        if df:
            out[q] = (ss / df, df)
    return out


def _value(seed: SeedRecord, quantity: str, epoch: int | None) -> float | None:
    source = seed.final if epoch is None else seed.trajectory.get(epoch, {})
    value = source.get(quantity)
    return None if value is None or math.isnan(value) else float(value)


def _image_term(comparison: Comparison, table: Table) -> tuple[float, int] | str:
    """(variance of the per-image contrast's mean, its df), or why it cannot be formed."""
    per_image = None
    index0 = None
    for term in comparison.terms:
        seeds = table[term.cell]
        if not all(term.quantity in s.predictions for s in seeds):
            return f"no per-image predictions for {term.cell} ({term.quantity})"
        correct = []
        for s in seeds:
            index, ok = s.predictions[term.quantity]
            order = np.argsort(index, kind="stable")
            index, ok = np.asarray(index)[order], np.asarray(ok, dtype=float)[order]
            if index0 is None:
                index0 = index
            elif not np.array_equal(index, index0):
                return f"{term.cell} was tested on other images than {comparison.terms[0].cell}"
            correct.append(ok)
        contribution = 100.0 * term.weight * np.mean(correct, axis=0)  # (M,) percent
        per_image = contribution if per_image is None else per_image + contribution
    m = len(per_image)
    if m < 2:
        return "fewer than two test images"
    return float(np.var(per_image, ddof=1)) / m, m - 1


def estimate(comparison: Comparison, table: Table, level: float = 1 - ALPHA, epoch: int | None = None,
             pooled: Mapping[str, tuple[float, int]] | None = None) -> Estimate:
    """The comparison's value and interval from the seeds (and, for accuracies, the test images).

    Args:
        comparison: the contrast.
        table: cell -> seeds.
        level: the interval's coverage.
        epoch: read this epoch of the trajectories instead of the final values (no image term).
        pooled: quantity -> (variance, df) for single-seed cells; None computes it from ``table``.

    Returns:
        An :class:`Estimate`.
    """
    if pooled is None:
        pooled = pooled_variances(table, {t.quantity for t in comparison.terms}, epoch)
    terms: dict[tuple[str, str], float] = defaultdict(float)
    for t in comparison.terms:
        terms[(t.cell, t.quantity)] += t.weight
    value, reason = comparison.offset, ""
    parts: dict[object, list] = {}  # variance source -> [its share of the variance, its df]
    for (cell, q), w in terms.items():
        values = [v for v in (_value(s, q, epoch) for s in table.get(cell, ())) if v is not None]
        if not values:
            return Estimate(comparison.text, math.nan, -math.inf, math.inf, NOT_RESOLVED, level,
                            f"{cell} has no {q}")
        value += w * float(np.mean(values))
        if len(values) >= 2:
            source, var, df = (cell, q), float(np.var(values, ddof=1)), len(values) - 1
        elif q in pooled:  # one estimate shared by every single-seed cell: its shares add, its df counts once
            source, (var, df) = ("pooled", q), pooled[q]
        else:
            reason = f"{cell} ran one seed and no cell has two (the spread of {q} is unknown)"
            continue
        share = parts.setdefault(source, [0.0, df])
        share[0] += w * w * var / len(values)
    if epoch is None and any(t.quantity in ACCURACIES for t in comparison.terms):
        image = _image_term(comparison, table)
        if isinstance(image, str):
            reason = reason or image
        else:
            parts["images"] = list(image)
    if reason:
        return Estimate(comparison.text, value, -math.inf, math.inf, NOT_RESOLVED, level, reason)
    variance = sum(a for a, _ in parts.values())
    if variance == 0:
        half = 0.0
    else:  # Welch-Satterthwaite
        df = variance ** 2 / sum(a * a / d for a, d in parts.values() if a > 0)
        half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(variance)
    low, high = value - half, value + half
    outcome = HOLDS if low > 0 else CONTRADICTED if high < 0 else NOT_RESOLVED
    return Estimate(comparison.text, value, low, high, outcome, level)


def decide(node, table: Table, epoch: int | None = None, alpha: float = ALPHA) -> tuple[str, Estimate]:
    """A claim's outcome and the comparison that decides it (the weakest part of an AllOf, the strongest of an AnyOf).

    Every comparison's interval has level ``1 - alpha / k``, ``k`` the claim's comparisons.
    """
    comparisons = node.comparisons()
    level = 1 - alpha / len(comparisons)
    pooled = pooled_variances(table, {t.quantity for c in comparisons for t in c.terms}, epoch)
    return _decide(node, table, epoch, level, pooled)


def _decide(node, table, epoch, level, pooled) -> tuple[str, Estimate]:
    if isinstance(node, Comparison):
        e = estimate(node, table, level, epoch, pooled)
        return e.outcome, e
    results = [_decide(p, table, epoch, level, pooled) for p in node.parts]
    outcomes = [o for o, _ in results]
    estimates = [e for _, e in results]
    if isinstance(node, AllOf):
        if CONTRADICTED in outcomes:
            return CONTRADICTED, min((e for e in estimates if e.outcome == CONTRADICTED), key=lambda e: e.high)
        outcome = HOLDS if all(o == HOLDS for o in outcomes) else NOT_RESOLVED
        return outcome, min(estimates, key=lambda e: (e.low, -e.high))  # the weakest link
    return any_of(results)


def any_of(results: list[tuple[str, "Estimate"]]) -> tuple[str, "Estimate"]:
    """``AnyOf`` in three-valued logic: holds if any part holds, contradicted if every part is, else not
    resolved; with the deciding estimate (the strongest holding part, or the one nearest to holding)."""
    outcomes = [o for o, _ in results]
    if HOLDS in outcomes:
        return HOLDS, max((e for o, e in results if o == HOLDS), key=lambda e: e.low)
    outcome = CONTRADICTED if all(o == CONTRADICTED for o in outcomes) else NOT_RESOLVED
    return outcome, max((e for _, e in results), key=lambda e: (e.high if outcome == CONTRADICTED else e.low))


def signed(x: float | None) -> str:
    """A margin or bound for the reports: ``+0.123``, ``-inf``, or ``—`` when there is none."""
    if x is None or math.isnan(x):
        return "—"
    return f"{x:+.3f}" if abs(x) != math.inf else ("+inf" if x > 0 else "-inf")


def from_epoch(node, table: Table, alpha: float = ALPHA) -> int | None:
    """The first epoch from which the claim holds at every later logged epoch (None if not at the last).

    Only epochs that every seed of every cell the claim reads logged are considered.
    """
    cells = node.cells()
    if not all(table.get(c) for c in cells):
        return None
    epochs = set.intersection(*(set(s.trajectory) for c in cells for s in table[c]))
    since = None
    for epoch in sorted(epochs, reverse=True):
        if decide(node, table, epoch, alpha)[0] != HOLDS:
            break
        since = epoch
    return since
