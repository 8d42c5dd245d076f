"""The verdict rule (scripts/verdicts.py) and the claim catalogue (scripts/claim_catalogue.py) on synthetic data.

The truth is known: a real difference must come out "holds", no difference "not resolved", a reversed
one "contradicted"; the rule's error rate under the null stays near its nominal level.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from scripts import claim_catalogue as cat
from scripts import verdicts as v
from tests.conftest import ROOT


def seeds(values, quantity="uniformity", traj=None):
    return [v.SeedRecord(i, {quantity: x}, traj[i] if traj else {}) for i, x in enumerate(values)]


def accuracy_cell(rng, p_correct, m=1000, n_seeds=3, base=None, flip=0.05):
    """Seeds of a model right on each test image with probability ``p_correct`` (image-level, shared by the
    seeds through ``base``), each seed flipping a few answers: paired data as linear probes give."""
    out = []
    index = np.arange(m)
    for s in range(n_seeds):
        correct = (base < p_correct).astype(np.int64)
        flips = rng.random(m) < flip
        correct = np.where(flips, 1 - correct, correct)
        out.append(v.SeedRecord(s, {"top1_last": 100.0 * correct.mean()}, {},
                                {"top1_last": (rng.permutation(index), None)}))
        idx = out[-1].predictions["top1_last"][0]
        out[-1].predictions["top1_last"] = (idx, correct[idx])  # stored in another order: matched by index
    return out


def test_a_real_difference_holds_a_null_is_not_resolved_a_reversal_is_contradicted():
    rng = np.random.default_rng(0)
    noise = lambda mu: list(mu + 0.02 * rng.standard_normal(3))  # noqa: E731
    table = {"a": seeds(noise(3.4)), "b": seeds(noise(3.0)), "c": seeds(noise(3.4)), "d": seeds(noise(3.8))}
    assert v.estimate(v.greater("a", "b", "uniformity"), table).outcome == v.HOLDS
    assert v.estimate(v.greater("a", "c", "uniformity"), table).outcome == v.NOT_RESOLVED
    assert v.estimate(v.greater("a", "d", "uniformity"), table).outcome == v.CONTRADICTED
    e = v.estimate(v.greater("a", "b", "uniformity"), table)
    means = {k: np.mean([s.final["uniformity"] for s in table[k]]) for k in table}
    assert e.value == pytest.approx(means["a"] - means["b"]) and e.low < e.value < e.high
    # Welch by hand: both cells have three seeds
    va, vb = (np.var([s.final["uniformity"] for s in table[k]], ddof=1) / 3 for k in "ab")
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    from scipy import stats
    assert e.high - e.value == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(va + vb))


def test_accuracies_are_paired_over_the_test_images():
    rng = np.random.default_rng(1)
    base = rng.random(1000)  # how hard each image is: shared by every model
    better, same, worse = (accuracy_cell(rng, p, base=base) for p in (0.55, 0.50, 0.45))
    ref = accuracy_cell(rng, 0.50, base=base)
    table = {"better": better, "same": same, "worse": worse, "ref": ref}
    assert v.estimate(v.greater("better", "ref", "top1_last"), table).outcome == v.HOLDS
    assert v.estimate(v.greater("same", "ref", "top1_last"), table).outcome == v.NOT_RESOLVED
    assert v.estimate(v.greater("worse", "ref", "top1_last"), table).outcome == v.CONTRADICTED
    # pairing matters: the same 5 points on independent images (no shared difficulty) are far noisier
    paired = v.estimate(v.greater("better", "ref", "top1_last"), table)
    unpaired = {"better": accuracy_cell(rng, 0.55, base=rng.random(1000)),
                "ref": accuracy_cell(rng, 0.50, base=rng.random(1000))}
    assert (paired.high - paired.low) < 0.7 * (v.estimate(v.greater("better", "ref", "top1_last"), unpaired).high
                                               - v.estimate(v.greater("better", "ref", "top1_last"), unpaired).low)
    # without per-image predictions the test-image noise is unknown: never decided
    for s in table["better"]:
        s.predictions.clear()
    e = v.estimate(v.greater("better", "ref", "top1_last"), table)
    assert e.outcome == v.NOT_RESOLVED and "per-image predictions" in e.reason


def test_images_must_be_the_same_test_images():
    rng = np.random.default_rng(2)
    base = rng.random(100)
    table = {"a": accuracy_cell(rng, 0.9, m=100, base=base), "b": accuracy_cell(rng, 0.1, m=100, base=base)}
    idx, ok = table["b"][0].predictions["top1_last"]
    table["b"][0].predictions["top1_last"] = (idx + 1000, ok)
    e = v.estimate(v.greater("a", "b", "top1_last"), table)
    assert e.outcome == v.NOT_RESOLVED and "other images" in e.reason


def test_the_null_is_rarely_decided():
    """Under no difference, 'holds' or 'contradicted' comes out at about the nominal 5%, not more."""
    rng = np.random.default_rng(3)
    decided = 0
    trials = 400
    for _ in range(trials):
        table = {"a": seeds(list(rng.standard_normal(3))), "b": seeds(list(rng.standard_normal(3)))}
        decided += v.estimate(v.greater("a", "b", "uniformity"), table).outcome != v.NOT_RESOLVED
    assert decided / trials < 0.09  # binomial sd of the rate at 5% is 1.1%


def test_a_single_seed_borrows_the_pooled_spread_or_stays_unresolved():
    table = {"a": seeds([3.40]), "b": seeds([3.00])}
    e = v.estimate(v.greater("a", "b", "uniformity"), table)
    assert e.outcome == v.NOT_RESOLVED and "one seed" in e.reason and e.value == pytest.approx(0.4)
    table["c"] = seeds([2.0, 2.02, 1.98])  # a third cell tells the seeds' spread
    e = v.estimate(v.greater("a", "b", "uniformity"), table)
    from scipy import stats
    assert e.outcome == v.HOLDS
    assert e.high - e.value == pytest.approx(stats.t.ppf(0.975, 2) * math.sqrt(2 * 0.0004))


def test_three_valued_logic_and_the_bonferroni_level():
    table = {"a": seeds([3.0, 3.01, 2.99]), "b": seeds([2.0, 2.01, 1.99]), "c": seeds([3.0, 3.02, 2.98])}
    up, tie, down = v.greater("a", "b", "uniformity"), v.greater("a", "c", "uniformity"), v.greater("b", "a", "uniformity")
    assert v.decide(v.AllOf((up, up)), table)[0] == v.HOLDS
    assert v.decide(v.AllOf((up, tie)), table)[0] == v.NOT_RESOLVED
    outcome, e = v.decide(v.AllOf((up, tie, down)), table)
    assert outcome == v.CONTRADICTED and e.text == down.text
    assert v.decide(v.AnyOf((tie, up)), table)[0] == v.HOLDS
    assert v.decide(v.AnyOf((tie, down)), table)[0] == v.NOT_RESOLVED
    assert v.decide(v.AnyOf((down, down)), table)[0] == v.CONTRADICTED
    assert v.decide(v.AllOf((up, tie, down, up)), table)[1].level == pytest.approx(1 - 0.05 / 4)


def test_from_epoch_is_the_first_epoch_after_which_it_always_holds():
    def traj(values):
        return {e: {"uniformity": x} for e, x in enumerate(values)}

    # a leads at epoch 0, falls behind at 1, leads from 2 on
    a = [v.SeedRecord(s, {"uniformity": 3.0 + d}, traj([2.0 + d, 1.0 + d, 2.5 + d, 3.0 + d])) for s, d in
         enumerate((0.0, 0.01, -0.01))]
    b = [v.SeedRecord(s, {"uniformity": 2.0 + d}, traj([1.0 + d, 1.5 + d, 2.0 + d, 2.0 + d])) for s, d in
         enumerate((0.0, 0.01, -0.01))]
    assert v.from_epoch(v.greater("a", "b", "uniformity"), {"a": a, "b": b}) == 2
    assert v.from_epoch(v.greater("b", "a", "uniformity"), {"a": a, "b": b}) is None


def test_every_claim_names_its_cells_and_the_untested_ones_are_catalogued():
    ids = [cl.id for cl in cat.CLAIMS]
    assert len(ids) == len(set(ids))
    for claim in cat.CLAIMS:
        assert claim.cells() and set(claim.cells()) <= set(cat.ALL_CELLS)
        assert claim.ours or claim.source != "ours"
    assert {"hard_less_tolerant_same_tau", "simple_inferior[top1_last]", "hard_simple_competitive[top1_lbfgs]",
            "fig8_gap_bank", "fig8_gap_view"} <= set(ids)
    assert next(c for c in cat.CLAIMS if c.id == "fig8_gap_view").ours  # the suite's positive, not the paper's


def test_claims_are_tested_as_stated():
    by_id = {c.id: c for c in cat.CLAIMS}
    # "as tau rises": every consecutive pair of the six temperatures
    assert [cmp.text for cmp in by_id["uniformity_falls_with_tau"].node.comparisons()] == [
        f"uniformity({cat.c(a)}) - uniformity({cat.c(b)})" for a, b in zip(cat.CONTRASTIVE_TAUS, cat.CONTRASTIVE_TAUS[1:])]
    # "at the same temperature": every tau of the hard loss
    assert len(by_id["hard_more_uniform_same_tau"].node.comparisons()) == len(cat.HARD_TAUS)
    # "large enough": hard at large tau against hard at small tau, not against contrastive
    assert by_id["hard_better_at_large_tau[top1_last]"].cells() == [cat.h(0.07), cat.h(1.0)]


def _synthetic_grid(uniformity_of=lambda k: 0.0, n=3, with_bank=True):
    """Every catalogued cell, three seeds, orderings as the paper's unless ``uniformity_of`` says otherwise."""
    rng = np.random.default_rng(5)
    base = rng.random(1000)
    table = {}
    for k in cat.ALL_CELLS:
        tau = float(k.rpartition("tau")[2]) if "tau" in k else 5.0
        hard = k.startswith("hard")
        u = (3.7 if hard else 3.6 - tau) + uniformity_of(k) - (1.5 if k == "simple" else 0)
        tol = (0.1 + 0.01 * tau if hard else 0.1 + 0.1 * tau) + (0.3 if k == "simple" else 0)
        pos = 0.4 + 0.3 * min(tau, 1)
        acc_p = {0.2: 0.6, 0.3: 0.6}.get(tau, 0.5) if not hard else (0.5 + 0.05 * tau if "tau" in k else 0.58)
        acc_p = 0.3 if k == "simple" else acc_p
        rows = []
        for s in range(n):
            d = 0.003 * rng.standard_normal()
            final = {"uniformity": u + d, "tolerance": tol + d / 10, "pos_sim": pos + d, "gap": -tau / 2 + d}
            if with_bank:
                final.update(pos_sim_bank=pos + d, gap_bank=-tau / 2 + d)
            traj = {e: {q: x * (e + 1) / 3 for q, x in final.items()} for e in range(3)}
            traj[-1] = {q: 0.0 for q in final}  # before training: everything equal
            correct = ((base < acc_p) ^ (rng.random(1000) < 0.03)).astype(np.int64)
            for q in ("top1_last", "top1_lbfgs"):
                final[q] = 100.0 * correct.mean()
            rows.append(v.SeedRecord(s, final, traj, {q: (np.arange(1000), correct) for q in ("top1_last", "top1_lbfgs")}))
        table[k] = rows
    return table


def test_the_catalogue_on_a_grid_where_the_paper_is_right():
    rows = {r["id"]: r for r in cat.evaluate(_synthetic_grid())}
    for claim_id in ("uniformity_falls_with_tau", "tolerance_rises_with_tau", "fig8_gap_bank", "fig8_positive_view",
                     "accuracy_best_at_0.2_or_0.3[top1_last]", "hard_better_at_large_tau[top1_lbfgs]",
                     "simple_inferior[top1_last]", "simple_least_uniform", "hard_uniformity_stable"):
        assert rows[claim_id]["outcome"] == v.HOLDS, claim_id
    assert rows["uniformity_falls_with_tau"]["from_epoch"] == 0  # equal at epoch -1, ordered from epoch 0
    assert rows["uniformity_falls_with_tau"]["low"] > 0
    md = cat.markdown(list(rows.values()))
    assert md.count("\n") == len(cat.CLAIMS) + 2 and "not tested" not in md


def test_missing_cells_and_quantities_are_not_tested():
    table = _synthetic_grid(with_bank=False)
    del table[cat.c(0.3)]
    rows = {r["id"]: r for r in cat.evaluate(table)}
    assert rows["uniformity_falls_with_tau"]["outcome"] == cat.NOT_TESTED
    assert rows["uniformity_falls_with_tau"]["missing"] == [cat.c(0.3)]
    assert rows["fig8_gap_bank"]["missing"][0] == f"{cat.c(0.07)} (gap_bank)"
    assert rows["hard_more_uniform_same_tau"]["outcome"] == v.HOLDS  # needs no tau 0.3
    assert re.search(r"not tested: missing contrastive_tau0\.3", cat.markdown(list(rows.values())))


def test_a_reversed_order_is_contradicted():
    # the hard loss less uniform than contrastive at tau 0.07 by a clear margin
    table = _synthetic_grid(uniformity_of=lambda k: -0.5 if k == cat.h(0.07) else 0.0)
    rows = {r["id"]: r for r in cat.evaluate(table)}
    row = rows["hard_more_uniform_same_tau"]
    assert row["outcome"] == v.CONTRADICTED and row["decisive"] == f"uniformity({cat.h(0.07)}) - uniformity({cat.c(0.07)})"
    assert row["high"] < 0
