"""The paper's qualitative claims, checked on a grid of runs: verdict, margin, seed spread, first epoch.

    python scripts/claims.py runs/cpu            # prints the Markdown table
    python scripts/report.py runs/cpu --out R    # writes it as R/claims.md beside Table 1

Each claim is a predicate on per-column values (a column is a loss and temperature). The runs are
grouped by ``scripts/runs.py`` (seeds of one recipe are averaged) and the claims compare the groups
of one *family*: the groups whose recipes are equal but for the loss, the largest such family (the
other groups are listed as not compared, with what sets them apart). A claim whose cells are missing
is listed as not tested, with the cells it lacks. It is evaluated on the final values and on every
epoch of the trajectories:
"holds from epoch e" means it holds at e and at every later epoch (epoch -1 is the untrained encoder).
The margin is the claim's own difference (e.g. -L_uniformity at tau 0.07 minus at 1.0); the spread is
the largest range over seeds of any quantity the claim reads.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.runs import Group, Run, column_key, families, family_differences, find_runs, group_runs  # noqa: E402

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
    need: str = ""  # what the claim needs when it reads every available column of a kind (e.g. every tau)
    min_columns: int = 2  # the fewest columns it compares


def _q(v: Values, column: str, key: str) -> float:
    return v[column][key]


def _decreasing(v: Values, cols: tuple[str, ...], key: str) -> bool:
    return all(_q(v, a, key) > _q(v, b, key) for a, b in zip(cols, cols[1:]))


def _increasing(v: Values, cols: tuple[str, ...], key: str) -> bool:
    return all(_q(v, a, key) < _q(v, b, key) for a, b in zip(cols, cols[1:]))


def tempered_columns(columns: dict[str, tuple[str, float | None]], loss: str) -> tuple[str, ...]:
    """The columns of one loss at its temperatures, in rising tau."""
    return tuple(sorted((c for c, (key, tau) in columns.items() if key == loss and tau is not None),
                        key=lambda c: columns[c][1]))


def claims(columns: dict[str, tuple[str, float | None]]) -> list[Claim]:
    """The claims on the available columns (column -> (loss key, temperature))."""
    available = set(columns)
    cc = tempered_columns(columns, "contrastive")
    lo, hi = (cc[0], cc[-1]) if cc else ("contrastive_tau0.07", "contrastive_tau1.0")
    hard = tempered_columns(columns, "hard_contrastive")
    h_lo, h_hi = (hard[0], hard[-1]) if hard else ("hard_contrastive_tau0.07", "hard_contrastive_tau1.0")
    moderate = tuple(c for c in cc if c not in (lo, hi))
    every = tuple(sorted(available | {"simple"}))  # the simple claims need a simple cell
    taus = "contrastive at two or more temperatures"
    out = [
        Claim("-L_uniformity falls as tau rises (contrastive)", cc, ("uniformity",),
              lambda v: _decreasing(v, cc, "uniformity"),
              lambda v: _q(v, lo, "uniformity") - _q(v, hi, "uniformity"), f"U({lo}) - U({hi})", need=taus),
        Claim("tolerance rises with tau (contrastive)", cc, ("tolerance",),
              lambda v: _increasing(v, cc, "tolerance"),
              lambda v: _q(v, hi, "tolerance") - _q(v, lo, "tolerance"), f"tol({hi}) - tol({lo})", need=taus),
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
              f"gap({lo}) - gap({hi}), gap = pos_sim - neg_sim_1", need=taus),
        Claim("Fig 8: the larger tau, the closer the positive similarity to 1", cc, ("pos_sim",),
              lambda v: _increasing(v, cc, "pos_sim"), lambda v: _q(v, hi, "pos_sim") - _q(v, lo, "pos_sim"),
              f"pos({hi}) - pos({lo})", need=taus),
    ]
    for probe, key in (("SGD probe (paper)", "top1_last"), ("L-BFGS probe", "top1_lbfgs")):
        out.append(Claim(f"accuracy, {probe}: a moderate tau beats 0.07 and 1.0 (contrastive)", cc, (key,),
                         lambda v, k=key: max(_q(v, c, k) for c in moderate) > max(_q(v, lo, k), _q(v, hi, k)),
                         lambda v, k=key: max(_q(v, c, k) for c in moderate) - max(_q(v, lo, k), _q(v, hi, k)),
                         "best moderate - best of the extremes (points)", per_epoch=False,
                         need="contrastive at three or more temperatures", min_columns=3))
        out.append(Claim(f"accuracy, {probe}: the hard loss gains at large tau", (hi, h_hi), (key,),
                         lambda v, k=key: _q(v, h_hi, k) > _q(v, hi, k),
                         lambda v, k=key: _q(v, h_hi, k) - _q(v, hi, k), f"acc({h_hi}) - acc({hi}) (points)",
                         per_epoch=False))
    return out


def _final_values(groups: list[Group]) -> tuple[Values, dict[str, dict[str, float]]]:
    """column -> quantity -> mean over the group's runs, and column -> quantity -> range over them."""
    values: Values = {}
    spread: dict[str, dict[str, float]] = {}
    for group in groups:
        column = column_key(group.loss, group.temperature)
        values[column], spread[column] = {}, {}
        for key in ("top1_last", "top1_lbfgs", "uniformity", "tolerance", "pos_sim", "neg_sim_1"):
            vs = group.values(key)
            if vs:
                values[column][key] = sum(vs) / len(vs)
                spread[column][key] = max(vs) - min(vs)
        if "pos_sim" in values[column] and "neg_sim_1" in values[column]:
            values[column]["gap"] = values[column]["pos_sim"] - values[column]["neg_sim_1"]
    return values, spread


def _epoch_values(groups: list[Group]) -> dict[int, Values]:
    """epoch -> column -> quantity -> mean over the group's runs that logged that epoch."""
    sums: dict[int, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for group in groups:
        for run in group.runs:
            for epoch, row in run.trajectory.items():
                for key, value in row.items():
                    if key.startswith("val/"):
                        sums[epoch][column_key(group.loss, group.temperature)][key[4:]].append(value)
    out: dict[int, Values] = {}
    for epoch, columns in sums.items():
        out[epoch] = {c: {k: sum(v) / len(v) for k, v in q.items()} for c, q in columns.items()}
        for c, q in out[epoch].items():
            if "pos_sim" in q and "neg_sim_1" in q:
                q["gap"] = q["pos_sim"] - q["neg_sim_1"]
    return dict(sorted(out.items()))


def _needs(claim: Claim) -> set[str]:
    return {"gap"} if "neg_sim_1" in claim.quantities else set(claim.quantities)


def _applies(claim: Claim, values: Values) -> bool:
    return len(claim.columns) >= claim.min_columns and all(c in values and _needs(claim) <= set(values[c])
                                                           for c in claim.columns)


def _missing(claim: Claim, values: Values) -> list[str]:
    """The cells (or the kind of cells) a claim lacks."""
    quantities = ", ".join(sorted(_needs(claim)))
    missing = [c if c not in values else f"{c} ({quantities})" for c in claim.columns
               if c not in values or not _needs(claim) <= set(values[c])]
    if len(claim.columns) < claim.min_columns:
        have = f"; found {', '.join(claim.columns)}" if claim.columns else ""
        missing.append(f"{claim.need or f'{claim.min_columns} cells'}{have}")
    return missing


def evaluate(runs: list[Run]) -> list[dict]:
    """One row per claim: tested (verdict, margin, spread, first epoch) or not tested (the cells it lacks).

    The claims read the largest family of groups (:func:`scripts.runs.families`: recipes equal but for the
    loss); a row ``not compared`` lists each other group with the recipe entries that set it apart.
    """
    found = families(group_runs(runs))
    family = found[0] if found else []
    values, spread = _final_values(family)
    by_epoch = _epoch_values(family)
    columns = {column_key(g.loss, g.temperature): (g.loss, g.temperature) for g in family}
    rows = []
    for claim in claims(columns):
        if not _applies(claim, values):
            rows.append({"claim": claim.text, "tested": False, "missing": _missing(claim, values)})
            continue
        since = None
        if claim.per_epoch:
            for epoch in sorted(by_epoch, reverse=True):  # walk back from the end while it holds
                if not (_applies(claim, by_epoch[epoch]) and claim.holds(by_epoch[epoch])):
                    break
                since = epoch
        seed_spread = max((spread[c].get(q, 0.0) for c in claim.columns for q in claim.quantities), default=0.0)
        rows.append({"claim": claim.text, "tested": True, "holds": claim.holds(values), "margin": claim.margin(values),
                     "margin_text": claim.margin_text, "seed_spread": seed_spread,
                     "holds_since_epoch": since, "per_epoch": claim.per_epoch})
    for other in (g for f in found[1:] for g in f):
        differs = family_differences([other], family)
        rows.append({"claim": f"not compared: {other.key}", "tested": False,
                     "missing": [", ".join(f"{k} = {v}" for k, v in differs.items()) or "its recipe"],
                     "not_compared": True})
    return rows


def markdown(rows: list[dict]) -> str:
    """The tested claims as a table, then the claims not tested with the cells they lack."""
    tested = [r for r in rows if r["tested"]]
    lines = []
    if tested:
        lines += ["| claim | holds at the end | margin | largest seed range | holds from epoch |",
                  "|---|---|---|---|---|"]
    for r in tested:
        since = "—" if not r["per_epoch"] else ("never at the end" if r["holds_since_epoch"] is None
                                                 else str(r["holds_since_epoch"]))
        lines.append(f"| {r['claim']} | {'yes' if r['holds'] else '**no**'} | {r['margin']:+.3f} ({r['margin_text']}) "
                     f"| {r['seed_spread']:.3f} | {since} |")
    untested = [r for r in rows if not r["tested"] and not r.get("not_compared")]
    if untested:
        lines += ["", "Not tested (cells missing):", ""] if tested else ["Not tested (cells missing):", ""]
        lines += [f"- {r['claim']}: needs {'; '.join(r['missing'])}" for r in untested]
    apart = [r for r in rows if r.get("not_compared")]
    if apart:
        lines += ["", "Not compared (a recipe that differs from the compared cells' in more than the loss):", ""]
        lines += [f"- {r['claim'].removeprefix('not compared: ')}: {'; '.join(r['missing'])}" for r in apart]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+",
                        help="a scripts/sweep.py --out folder, or the folder holding cli.py's run folders")
    parser.add_argument("--include-unfinished", action="store_true",
                        help="also runs still going, interrupted or without a linear evaluation")
    opts = parser.parse_args(argv)
    runs = [r for root in opts.runs for r in find_runs(root, opts.include_unfinished)]
    if not runs:
        print(f"error: no finished run under {', '.join(map(str, opts.runs))} (a sweep cell holds finished.json; "
              "see scripts/report.py --help)", file=sys.stderr)
        return 1
    print(markdown(evaluate(runs)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
