"""The paper's qualitative claims, checked on a grid of runs: verdict, margin, seed spread, first epoch.

    python scripts/claims.py runs/cpu            # prints the Markdown table
    python scripts/report.py runs/cpu --out R    # writes it as R/claims.md beside Table 1

Each claim is a predicate on per-column values (a column is a loss and temperature; seeds of the same
column are averaged). It is evaluated on the final values and on every epoch of the trajectories:
"holds from epoch e" means it holds at e and at every later epoch (epoch -1 is the untrained encoder).
The margin is the claim's own difference (e.g. -L_uniformity at tau 0.07 minus at 1.0); the spread is
the largest range over seeds of any quantity the claim reads.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Values = dict[str, dict[str, float]]  # column -> quantity -> value


@dataclass
class Claim:
    text: str
    columns: tuple[str, ...]  # the columns it needs
    quantities: tuple[str, ...]  # the quantities it reads
    holds: Callable[[Values], bool]
    margin: Callable[[Values], float]
    margin_text: str
    per_epoch: bool = True  # accuracies exist only at the end


def _q(v: Values, column: str, key: str) -> float:
    return v[column][key]


def _decreasing(v: Values, cols: tuple[str, ...], key: str) -> bool:
    return all(_q(v, a, key) > _q(v, b, key) for a, b in zip(cols, cols[1:]))


def _increasing(v: Values, cols: tuple[str, ...], key: str) -> bool:
    return all(_q(v, a, key) < _q(v, b, key) for a, b in zip(cols, cols[1:]))


def contrastive_columns(available: set[str]) -> tuple[str, ...]:
    cols = [c for c in available if c.startswith("contrastive_tau")]
    return tuple(sorted(cols, key=lambda c: float(c.partition("_tau")[2])))


def claims(available: set[str]) -> list[Claim]:
    cc = contrastive_columns(available)
    lo, hi = (cc[0], cc[-1]) if cc else ("contrastive_tau0.07", "contrastive_tau1.0")
    hard = tuple(sorted((c for c in available if c.startswith("hard_contrastive_tau")),
                        key=lambda c: float(c.partition("_tau")[2])))
    h_lo, h_hi = (hard[0], hard[-1]) if hard else ("hard_contrastive_tau0.07", "hard_contrastive_tau1.0")
    moderate = tuple(c for c in cc if c not in (lo, hi))
    every = tuple(sorted(available | {"simple"}))  # the simple claims need a simple cell
    out = [
        Claim("-L_uniformity falls as tau rises (contrastive)", cc, ("uniformity",),
              lambda v: _decreasing(v, cc, "uniformity"),
              lambda v: _q(v, lo, "uniformity") - _q(v, hi, "uniformity"), f"U({lo}) - U({hi})"),
        Claim("tolerance rises with tau (contrastive)", cc, ("tolerance",),
              lambda v: _increasing(v, cc, "tolerance"),
              lambda v: _q(v, hi, "tolerance") - _q(v, lo, "tolerance"), f"tol({hi}) - tol({lo})"),
        Claim("hard contrastive stays uniform and flatter across tau than contrastive",
              (lo, hi, h_lo, h_hi), ("uniformity",),
              lambda v: (abs(_q(v, h_lo, "uniformity") - _q(v, h_hi, "uniformity"))
                         < abs(_q(v, lo, "uniformity") - _q(v, hi, "uniformity"))
                         and _q(v, h_hi, "uniformity") > _q(v, hi, "uniformity")),
              lambda v: (abs(_q(v, lo, "uniformity") - _q(v, hi, "uniformity"))
                         - abs(_q(v, h_lo, "uniformity") - _q(v, h_hi, "uniformity"))),
              "contrastive's U range over tau minus the hard loss's"),
        Claim("simple is the least uniform", every, ("uniformity",),
              lambda v: _q(v, "simple", "uniformity") == min(v[c]["uniformity"] for c in every),
              lambda v: min(v[c]["uniformity"] for c in every if c != "simple") - _q(v, "simple", "uniformity"),
              "next-lowest U - U(simple)"),
        Claim("simple is the most tolerant", every, ("tolerance",),
              lambda v: _q(v, "simple", "tolerance") == max(v[c]["tolerance"] for c in every),
              lambda v: _q(v, "simple", "tolerance") - max(v[c]["tolerance"] for c in every if c != "simple"),
              "tol(simple) - next-highest tol"),
        Claim("Fig 8: the smaller tau, the wider the gap between the positive and the nearest negative",
              cc, ("pos_sim", "neg_sim_1"),
              lambda v: _decreasing(v, cc, "gap"), lambda v: _q(v, lo, "gap") - _q(v, hi, "gap"),
              f"gap({lo}) - gap({hi}), gap = pos_sim - neg_sim_1"),
        Claim("Fig 8: the larger tau, the closer the positive similarity to 1", cc, ("pos_sim",),
              lambda v: _increasing(v, cc, "pos_sim"), lambda v: _q(v, hi, "pos_sim") - _q(v, lo, "pos_sim"),
              f"pos({hi}) - pos({lo})"),
    ]
    for probe, key in (("SGD probe (paper)", "top1_last"), ("L-BFGS probe", "top1_lbfgs")):
        out.append(Claim(f"accuracy, {probe}: a moderate tau beats 0.07 and 1.0 (contrastive)", cc, (key,),
                         lambda v, k=key: max(_q(v, c, k) for c in moderate) > max(_q(v, lo, k), _q(v, hi, k)),
                         lambda v, k=key: max(_q(v, c, k) for c in moderate) - max(_q(v, lo, k), _q(v, hi, k)),
                         "best moderate - best of the extremes (points)", per_epoch=False))
        out.append(Claim(f"accuracy, {probe}: the hard loss gains at large tau", (hi, h_hi), (key,),
                         lambda v, k=key: _q(v, h_hi, k) > _q(v, hi, k),
                         lambda v, k=key: _q(v, h_hi, k) - _q(v, hi, k), f"acc({h_hi}) - acc({hi}) (points)",
                         per_epoch=False))
    return out


def _final_values(cells) -> tuple[Values, dict[str, dict[str, float]]]:
    """column -> quantity -> mean over seeds, and column -> quantity -> range over seeds."""
    from scripts.report import ours

    groups: dict[str, list[dict[str, float | None]]] = defaultdict(list)
    for cell in cells:
        groups[cell.column].append(ours(cell))
    values: Values = {}
    spread: dict[str, dict[str, float]] = {}
    for column, rows in groups.items():
        values[column], spread[column] = {}, {}
        for key in rows[0]:
            vs = [r[key] for r in rows if r[key] is not None]
            if vs:
                values[column][key] = sum(vs) / len(vs)
                spread[column][key] = max(vs) - min(vs) if len(vs) > 1 else 0.0
        if "pos_sim" in values[column] and "neg_sim_1" in values[column]:
            values[column]["gap"] = values[column]["pos_sim"] - values[column]["neg_sim_1"]
    return values, spread


def _epoch_values(cells) -> dict[int, Values]:
    """epoch -> column -> quantity -> mean over the seeds that logged that epoch."""
    sums: dict[int, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for cell in cells:
        for epoch, row in cell.trajectory.items():
            for key, value in row.items():
                if key.startswith("val/"):
                    sums[epoch][cell.column][key[4:]].append(value)
    out: dict[int, Values] = {}
    for epoch, columns in sums.items():
        out[epoch] = {c: {k: sum(v) / len(v) for k, v in q.items()} for c, q in columns.items()}
        for c, q in out[epoch].items():
            if "pos_sim" in q and "neg_sim_1" in q:
                q["gap"] = q["pos_sim"] - q["neg_sim_1"]
    return dict(sorted(out.items()))


def _applies(claim: Claim, values: Values) -> bool:
    need = {"gap"} if "neg_sim_1" in claim.quantities else set(claim.quantities)
    return len(claim.columns) >= 2 and all(c in values and need <= set(values[c]) for c in claim.columns)


def evaluate(cells) -> list[dict]:
    """One row per claim that the cells can test."""
    values, spread = _final_values(cells)
    by_epoch = _epoch_values(cells)
    rows = []
    for claim in claims(set(values)):
        if not _applies(claim, values):
            continue
        since = None
        if claim.per_epoch:
            for epoch in sorted(by_epoch, reverse=True):  # walk back from the end while it holds
                if not (_applies(claim, by_epoch[epoch]) and claim.holds(by_epoch[epoch])):
                    break
                since = epoch
        seed_spread = max((spread[c].get(q, 0.0) for c in claim.columns for q in claim.quantities), default=0.0)
        rows.append({"claim": claim.text, "holds": claim.holds(values), "margin": claim.margin(values),
                     "margin_text": claim.margin_text, "seed_spread": seed_spread,
                     "holds_since_epoch": since, "per_epoch": claim.per_epoch})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| claim | holds at the end | margin | largest seed range | holds from epoch |", "|---|---|---|---|---|"]
    for r in rows:
        since = "—" if not r["per_epoch"] else ("never at the end" if r["holds_since_epoch"] is None
                                                 else str(r["holds_since_epoch"]))
        lines.append(f"| {r['claim']} | {'yes' if r['holds'] else '**no**'} | {r['margin']:+.3f} ({r['margin_text']}) "
                     f"| {r['seed_spread']:.3f} | {since} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from scripts.report import find_local_cells

    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--include-unfinished", action="store_true")
    opts = parser.parse_args(argv)
    cells = [c for root in opts.runs for c in find_local_cells(root, opts.include_unfinished)]
    if not cells:
        print(f"no finished cells under {', '.join(map(str, opts.runs))} (a cell is a folder with finished.json)")
        return 1
    print(markdown(evaluate(cells)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
