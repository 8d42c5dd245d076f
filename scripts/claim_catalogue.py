"""The catalogue of the paper's claims, each tested as the paper states it, with three outcomes.

    python scripts/claim_catalogue.py            # prints the catalogue (quote, source, test, cells)

Each claim carries the sentence it comes from (quoted from Wang & Liu, CVPR 2021, with its section
and figure), the comparison as stated ("as tau rises": every consecutive pair of temperatures; "at
the same temperature": every temperature; "when tau is large enough": the same loss at a large tau
against a small one), and the cells it needs. Claims of our own are marked ``ours``. The outcome
rule is :mod:`scripts.verdicts`'s; this module holds data and plain-data evaluation only (a
:data:`scripts.verdicts.Table`: cell key -> seeds), nothing that finds runs.

Cell keys: ``<loss>_tau<float tau>`` (``contrastive_tau0.2``, ``hard_contrastive_tau1.0``) and
``simple``, ``hard_simple``. Quantities: ``uniformity`` (-L_uniformity), ``tolerance``,
``gap`` / ``pos_sim`` (Fig 8 with the suite's second augmented view as the positive),
``gap_bank`` / ``pos_sim_bank`` (Fig 8 with the paper's positive: the anchor against its own
memory-bank entry, training images), ``top1_last`` (the paper's SGD probe, %) and ``top1_lbfgs``
(the L-BFGS probe, %).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.verdicts import (ALPHA, HOLDS, NOT_RESOLVED, NOT_TESTED, AllOf, AnyOf, Comparison, Table, Term,  # noqa: E402
                              decide, from_epoch, greater, signed)

#: the temperatures each loss needs (grid_cpu3.yaml runs exactly these)
CONTRASTIVE_TAUS = (0.07, 0.2, 0.3, 0.5, 0.7, 1.0)
HARD_TAUS = (0.07, 0.2, 0.5, 1.0)
#: "competitive": hard simple at most this many points below a contrastive cell (our reading: the paper gives none)
COMPETITIVE_POINTS = 2.0
PROBES = (("top1_last", "SGD probe (the paper's protocol)"), ("top1_lbfgs", "L-BFGS probe (ours)"))


def c(tau: float) -> str:
    return f"contrastive_tau{float(tau)}"


def h(tau: float) -> str:
    return f"hard_contrastive_tau{float(tau)}"


ALL_CELLS = (*[c(t) for t in CONTRASTIVE_TAUS], *[h(t) for t in HARD_TAUS], "simple", "hard_simple")


@dataclass(frozen=True)
class Claim:
    """One claim: where it comes from, what is compared, on which cells.

    Attributes:
        id: a short stable name.
        source: section, figure or table of the paper (or "ours").
        quote: the sentence, verbatim (ours: our own wording).
        test: the comparison as stated, in words.
        node: the comparisons (:mod:`scripts.verdicts`).
        ours: a claim of this suite, not of the paper.
        per_epoch: evaluated on every epoch too ("from epoch"); accuracies exist only at the end.
    """

    id: str
    source: str
    quote: str
    test: str
    node: object
    ours: bool = False
    per_epoch: bool = True

    def cells(self) -> list[str]:
        return [k for k in ALL_CELLS if k in self.node.cells()]

    def quantities(self) -> set[str]:
        return {t.quantity for comp in self.node.comparisons() for t in comp.terms}


def _chain(cells: list[str], quantity: str, rising: bool) -> AllOf:
    """Every consecutive pair, in the stated direction: monotone over every cell."""
    pairs = zip(cells, cells[1:])
    return AllOf(tuple(greater(b, a, quantity) if rising else greater(a, b, quantity) for a, b in pairs))


def _claims() -> list[Claim]:
    cs = [c(t) for t in CONTRASTIVE_TAUS]
    out = [
        Claim("uniformity_falls_with_tau", "Sec 4.1, Fig 4",
              "As the temperature increases, the embedding distribution tends to be less uniform",
              "contrastive: -L_uniformity falls between every pair of consecutive tau (0.07 < 0.2 < 0.3 < 0.5 < 0.7 < 1.0)",
              _chain(cs, "uniformity", rising=False)),
        Claim("tolerance_rises_with_tau", "Sec 4.2, Fig 5",
              "We could see that the tolerance is positively related to the temperature τ",
              "contrastive: tolerance rises between every pair of consecutive tau",
              _chain(cs, "tolerance", rising=True)),
        Claim("hard_more_uniform_same_tau", "Sec 3.3 (and Sec 4.2, Figs 6-7)",
              "Using the same temperature with the contrastive loss of Eq 1, the hard contrastive loss usually "
              "generate more uniform embedding distribution",
              "at every tau of the hard loss (0.07, 0.2, 0.5, 1.0): -L_uniformity(hard) > -L_uniformity(contrastive)",
              AllOf(tuple(greater(h(t), c(t), "uniformity") for t in HARD_TAUS))),
        Claim("hard_less_tolerant_same_tau", "Sec 4.2, Figs 5 and 7",
              "Correspondingly, the tolerance to potential positive samples is decreased compared with the "
              "ordinary contrastive loss.",
              "at every tau of the hard loss: tolerance(hard) < tolerance(contrastive)",
              AllOf(tuple(greater(c(t), h(t), "tolerance") for t in HARD_TAUS))),
        Claim("hard_uniformity_stable", "Sec 4.1, Figs 4 and 6",
              "Besides, the uniformity keeps relative stable with the change of temperature compared with the "
              "ordinary contrastive loss.",
              "|U(hard 0.07) - U(hard 1.0)| < U(contrastive 0.07) - U(contrastive 1.0), U = -L_uniformity "
              "(two contrasts: the hard loss's change lies inside +- the contrastive loss's)",
              AllOf((Comparison((Term(c(0.07), "uniformity"), Term(c(1.0), "uniformity", -1.0),
                                 Term(h(0.07), "uniformity", -1.0), Term(h(1.0), "uniformity")),
                                "[U(c0.07) - U(c1.0)] - [U(h0.07) - U(h1.0)]"),
                     Comparison((Term(c(0.07), "uniformity"), Term(c(1.0), "uniformity", -1.0),
                                 Term(h(0.07), "uniformity"), Term(h(1.0), "uniformity", -1.0)),
                                "[U(c0.07) - U(c1.0)] + [U(h0.07) - U(h1.0)]")))),
        Claim("hard_tolerance_rises_with_tau", "Sec 4.2, Fig 7",
              "Relative large temperature can help be more tolerant to the potential positive samples without "
              "decreasing too much uniformity.",
              "hard contrastive: tolerance at tau 1.0 > at tau 0.07",
              greater(h(1.0), h(0.07), "tolerance")),
    ]
    for suffix, pos, gap, reads, ours in (("bank", "pos_sim_bank", "gap_bank",
                                           "positive = the anchor's own memory-bank entry (the paper's s_ii)", False),
                                          ("view", "pos_sim", "gap",
                                           "positive = a second augmented view (the suite's variant)", True)):
        out += [
            Claim(f"fig8_gap_{suffix}", "Sec 5.2, Fig 8",
                  "(1) As the τ decreases, the gap between positive samples and other confusing negative samples "
                  "are larger",
                  f"contrastive: gap = positive - nearest negative similarity falls between every pair of "
                  f"consecutive tau; {reads}", _chain(cs, gap, rising=False), ours=ours),
            Claim(f"fig8_positive_{suffix}", "Sec 5.2, Fig 8",
                  "(2) As τ increases, the positive similarities tend to be closer to 1.",
                  f"contrastive: the positive similarity rises between every pair of consecutive tau; {reads}",
                  _chain(cs, pos, rising=True), ours=ours),
        ]
    for q, probe in PROBES:
        others = [t for t in CONTRASTIVE_TAUS if t not in (0.2, 0.3)]
        out += [
            Claim(f"accuracy_best_at_0.2_or_0.3[{q}]", "Sec 5.3, Fig 9",
                  "The models achieve the best performance when the temperature is 0.2 or 0.3.",
                  f"{probe}: for every other tau (0.07, 0.5, 0.7, 1.0), contrastive 0.2 or 0.3 is more accurate",
                  AllOf(tuple(AnyOf((greater(c(0.2), c(t), q), greater(c(0.3), c(t), q))) for t in others)),
                  per_epoch=False),
            Claim(f"hard_better_at_large_tau[{q}]", "Sec 5.3, Fig 9",
                  "From Fig 9, we observe that the models trained with hard contrastive loss achieve better "
                  "results when the temperatures are large enough.",
                  f"{probe}: hard contrastive at tau 1.0 more accurate than hard contrastive at tau 0.07",
                  greater(h(1.0), h(0.07), q), per_epoch=False),
            Claim(f"simple_inferior[{q}]", "Sec 3.2 (and Sec 5.5, Table 1)",
                  "Using Eq 7 as the objective, the performances on downstream tasks are inferior to the models "
                  "trained with the ordinary contrastive loss by a relative large margin.",
                  f"{probe}: every contrastive tau more accurate than simple (the paper gives no size for "
                  "'large': the margin is reported)",
                  AllOf(tuple(greater(c(t), "simple", q) for t in CONTRASTIVE_TAUS)), per_epoch=False),
            Claim(f"hard_simple_competitive[{q}]", "Sec 3.2 (and Sec 5.5, Table 1)",
                  "However, combining the loss of Eq 7 with an explicit hard negative sampling strategy, the model "
                  "will achieve competitive downstream results",
                  f"{probe}: hard simple at most {COMPETITIVE_POINTS:g} points below every contrastive tau "
                  f"(the {COMPETITIVE_POINTS:g}-point margin is ours: the paper gives none)",
                  AllOf(tuple(greater("hard_simple", c(t), q, offset=COMPETITIVE_POINTS) for t in CONTRASTIVE_TAUS)),
                  per_epoch=False),
        ]
    others = [k for k in ALL_CELLS if k != "simple"]
    out += [
        Claim("simple_least_uniform", "ours", "The simple loss gives the least uniform embedding of all cells.",
              "-L_uniformity(simple) below every other cell's", AllOf(tuple(greater(k, "simple", "uniformity")
                                                                             for k in others)), ours=True),
        Claim("simple_most_tolerant", "ours", "The simple loss gives the most tolerant embedding of all cells.",
              "tolerance(simple) above every other cell's", AllOf(tuple(greater("simple", k, "tolerance")
                                                                         for k in others)), ours=True),
    ]
    return out


CLAIMS: list[Claim] = _claims()


def missing(claim: Claim, table: Table) -> list[str]:
    """The cells (or quantities of a cell) the claim needs and the table lacks."""
    gaps = []
    for cell in claim.cells():
        seeds = table.get(cell, ())
        if not seeds:
            gaps.append(cell)
            continue
        needed = {t.quantity for comp in claim.node.comparisons() for t in comp.terms if t.cell == cell}
        absent = sorted(q for q in needed if not all(q in s.final for s in seeds))
        if absent:
            gaps.append(f"{cell} ({', '.join(absent)})")
    return gaps


def evaluate(table: Table, claims: list[Claim] | None = None, alpha: float = ALPHA) -> list[dict]:
    """One row per claim: outcome, the deciding comparison with its interval, seeds, from epoch."""
    rows = []
    for claim in claims or CLAIMS:
        row = {"id": claim.id, "source": claim.source, "quote": claim.quote, "test": claim.test, "ours": claim.ours,
               "cells": claim.cells(), "missing": missing(claim, table), "per_epoch": claim.per_epoch}
        if row["missing"]:
            rows.append({**row, "outcome": NOT_TESTED})
            continue
        outcome, e = decide(claim.node, table, alpha=alpha)
        seeds = sorted({len(table[k]) for k in claim.cells()})
        row.update(outcome=outcome, margin=e.value, low=e.low, high=e.high, level=e.level, decisive=e.text,
                   reason=e.reason, seeds=seeds,
                   from_epoch=from_epoch(claim.node, table, alpha) if claim.per_epoch and outcome == HOLDS else None)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """The verdict table: every claim with its quote, outcome, margin and interval, seeds and from epoch."""
    lines = ["| claim | source | tested as | outcome | margin [interval] | seeds per cell | from epoch |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        quote = f"*{r['quote']}*" + (" (ours)" if r["ours"] else "")
        if r["outcome"] == NOT_TESTED:
            lines.append(f"| {quote} | {r['source']} | {r['test']} | not tested: missing "
                         f"{', '.join(r['missing'])} | — | — | — |")
            continue
        outcome = f"**{r['outcome']}**" if r["outcome"] != NOT_RESOLVED else r["outcome"]
        if r["reason"]:
            outcome += f" ({r['reason']})"
        margin = f"{signed(r['margin'])} [{signed(r['low'])}, {signed(r['high'])}] ({r['decisive']}; {100 * r['level']:.1f}%)"
        seeds = "-".join(map(str, (r["seeds"][0], r["seeds"][-1]))) if len(r["seeds"]) > 1 else str(r["seeds"][0])
        since = "—" if not r["per_epoch"] else ("not at the end" if r["from_epoch"] is None else str(r["from_epoch"]))
        lines.append(f"| {quote} | {r['source']} | {r['test']} | {outcome} | {margin} | {seeds} | {since} |")
    return "\n".join(lines) + "\n"


def catalogue_markdown(claims: list[Claim] | None = None) -> str:
    """The catalogue alone: quote, source, test, cells."""
    lines = ["| id | source | quote | tested as | cells |", "|---|---|---|---|---|"]
    for cl in claims or CLAIMS:
        lines.append(f"| {cl.id}{' (ours)' if cl.ours else ''} | {cl.source} | *{cl.quote}* | {cl.test} | "
                     f"{', '.join(cl.cells())} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(catalogue_markdown(), end="")
