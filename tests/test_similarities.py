"""The record every source hands a loss, the loss contract on it, and the relative penalty derived by autograd.

References are written out by hand (python floats, one anchor at a time) in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from lightning_modules.losses import (ContrastiveLoss, ContrastiveLossBase, HardContrastiveLoss,
                                      HardSimpleContrastiveLoss, SimpleContrastiveLoss, masked_logsumexp)
from lightning_modules.similarities import NegativeIndex, Similarities, as_similarities
from tests.toys import TauLoss


def draw(b: int, k: int, p: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, p, generator=g, dtype=torch.float64) * 2 - 1,
            torch.rand(b, k, generator=g, dtype=torch.float64) * 2 - 1)


def ragged_mask(b: int, k: int, seed: int = 1) -> torch.Tensor:
    """A random mask with at least 3 valid negatives per row."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, k, generator=g) < 0.6
    mask[:, :3] = True
    return mask[:, torch.randperm(k, generator=g)]


# ---- the record -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pos, neg, extra, message", [
    ((4,), (4, 5), {}, "pos must be 2-D"),
    ((4, 1), (4,), {}, "neg must be 2-D"),
    ((4, 1), (3, 5), {}, "same number of anchors"),
    ((4, 0), (4, 5), {}, "at least one positive"),
    ((4, 1), (4, 0), {}, "at least one negative"),
    ((4, 1), (4, 5), {"neg_mask": torch.ones(4, 5)}, "neg_mask must be a bool tensor"),
    ((4, 1), (4, 5), {"neg_mask": torch.ones(4, 4, dtype=torch.bool)}, "neg_mask must be a bool tensor"),
    ((4, 1), (4, 5), {"neg_index": torch.zeros(4, 4, dtype=torch.long)}, "neg_index must describe"),
    ((4, 1), (4, 5), {"neg_index": torch.zeros(4, 5)}, "neg_index must be a long tensor"),
    ((4, 1), (4, 5), {"index": torch.zeros(3, dtype=torch.long)}, r"index must be \(4,\)"),
])
def test_the_record_checks_shapes_and_dtypes(pos, neg, extra, message):
    with pytest.raises(ValueError, match=message):
        Similarities(torch.zeros(pos), torch.zeros(neg), **extra)


def test_check_values_finds_an_anchor_without_a_valid_negative():
    mask = torch.tensor([[True, False], [False, False], [False, True]])
    sims = Similarities(torch.zeros(3, 1), torch.zeros(3, 2), neg_mask=mask)
    with pytest.raises(ValueError, match=r"rows \[1\] have none"):
        sims.check_values()
    mask[1, 0] = True
    assert sims.check_values() is sims


def test_neg_index_as_a_table_or_on_demand():
    table = torch.tensor([[5, 6, 7], [8, -1, 9]])
    cols = torch.tensor([[2, 0], [1, 2]])
    sims = Similarities(torch.zeros(2, 1), torch.zeros(2, 3), neg_index=table)
    assert sims.neg_index_at(cols).tolist() == [[7, 5], [-1, 9]]
    asked = []
    lazy = NegativeIndex(lambda c: (asked.append(c.shape), table.gather(1, c))[1], (2, 3))
    sims = Similarities(torch.zeros(2, 1), torch.zeros(2, 3), neg_index=lazy)
    assert asked == []  # nothing computed until a column is asked for
    assert sims.neg_index_at(cols).tolist() == [[7, 5], [-1, 9]]
    assert asked == [(2, 2)] and lazy.dense().tolist() == table.tolist()
    assert Similarities(torch.zeros(2, 1), torch.zeros(2, 3)).neg_index_at(cols).tolist() == [[-1, -1], [-1, -1]]


def test_the_old_pair_becomes_a_record_with_one_positive():
    pos, neg = torch.rand(3), torch.rand(3, 4)
    sims = as_similarities(pos, neg)
    assert sims.pos.shape == (3, 1) and sims.neg is neg and sims.neg_mask is None
    with pytest.raises(ValueError, match="pos must be 1-D"):
        as_similarities(torch.rand(3, 1), neg)
    with pytest.raises(TypeError, match="not both"):
        as_similarities(sims, neg)


# ---- the loss contract: masks and several positives -----------------------------------------------------

LOSSES = [ContrastiveLoss(0.2), SimpleContrastiveLoss(), SimpleContrastiveLoss(0.3),
          HardContrastiveLoss(0.2, num_negatives=4), HardContrastiveLoss(0.2, alpha=0.3),
          HardContrastiveLoss(0.2, num_negatives=4, selection="all"), HardContrastiveLoss(0.2, alpha=0.3, selection="all"),
          HardSimpleContrastiveLoss(num_negatives=4), HardSimpleContrastiveLoss(0.2, alpha=0.3), TauLoss(0.3)]


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_a_mask_is_the_loss_over_the_valid_negatives_alone(loss):
    pos, neg = draw(6, 20, seed=3)
    mask = ragged_mask(6, 20)
    garbage = torch.where(mask, neg, torch.full_like(neg, 50.0)).requires_grad_(True)  # huge invalid values
    per = loss.per_anchor(Similarities(pos, garbage, neg_mask=mask))
    want = torch.stack([loss.per_anchor(pos[i], neg[i][mask[i]].unsqueeze(0))[0] for i in range(6)])
    torch.testing.assert_close(per, want, rtol=1e-12, atol=1e-12)
    per.sum().backward()
    assert torch.isfinite(garbage.grad).all()
    assert (garbage.grad[~mask] == 0).all()  # exactly


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_several_positives_give_the_mean_of_the_one_positive_losses(loss):
    pos, neg = draw(5, 12, p=3, seed=4)
    mask = ragged_mask(5, 12, seed=2)
    per = loss.per_anchor(Similarities(pos, neg, neg_mask=mask))
    want = torch.stack([loss.per_anchor(Similarities(pos[:, j:j + 1], neg, neg_mask=mask)) for j in range(3)]).mean(0)
    torch.testing.assert_close(per, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES[:5], ids=repr)
def test_gradcheck_with_a_mask_and_two_positives(loss):
    pos, neg = draw(3, 8, p=2, seed=5)
    mask = ragged_mask(3, 8, seed=3)
    assert torch.autograd.gradcheck(lambda p, n: loss(Similarities(p, n, neg_mask=mask)),
                                    (pos.requires_grad_(), neg.requires_grad_()))


def test_masked_logsumexp_matches_the_sum_over_the_kept_entries():
    x = torch.tensor([[1.0, 900.0, -3.0], [2.0, 0.5, 700.0]], dtype=torch.float64)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    want = torch.tensor([math.log(math.exp(1) + math.exp(-3)), math.log(math.exp(2) + math.exp(0.5))],
                        dtype=torch.float64)
    torch.testing.assert_close(masked_logsumexp(x, mask, dim=1), want)
    assert masked_logsumexp(x, torch.zeros_like(mask), dim=1).eq(-math.inf).all()  # an empty sum


@pytest.mark.parametrize("make", [lambda: HardContrastiveLoss(0.5, num_negatives=2),
                                  lambda: HardSimpleContrastiveLoss(alpha=0.5)])
def test_positive_in_hard_set_ranks_among_the_valid_negatives_only(make):
    neg = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.5, 0.4, 0.3, 0.2]])
    mask = torch.tensor([[False, True, True, True], [True, True, True, True]])
    pos = torch.tensor([[0.75], [0.35]])  # row 0: kept {0.8, 0.7} (0.9 invalid) -> in; row 1: kept {0.5, 0.4} -> out
    assert float(make().positive_in_hard_set(Similarities(pos, neg, neg_mask=mask))) == 0.5
    assert float(make().positive_in_hard_set(pos[:, 0], neg)) == 0.0  # without the mask 0.9 is kept


# ---- the relative penalty from the loss itself (float64) --------------------------------------------------

def eq5(row: list[float], t: float) -> list[float]:
    e = [math.exp(s / t) for s in row]
    return [x / sum(e) for x in e]


def test_relative_penalty_of_the_contrastive_loss_is_eq5():
    pos, neg = draw(4, 30, seed=6)
    for t in (0.07, 0.5, 2.0):
        got = ContrastiveLoss(t).relative_penalty(Similarities(pos, neg))
        want = torch.tensor([eq5(r, t) for r in neg.tolist()], dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-15)
        entropy = sum(-sum(x * math.log(x) for x in row) for row in want.tolist()) / 4
        assert ContrastiveLoss(t).penalty_entropy(Similarities(pos, neg)).item() == pytest.approx(entropy, rel=1e-10)


@pytest.mark.parametrize("selection", [dict(num_negatives=6), dict(alpha=0.2)])
def test_relative_penalty_of_the_hard_loss_is_eq8_over_the_kept_negatives(selection):
    t = 0.2
    loss = HardContrastiveLoss(t, **selection)
    pos, neg = draw(5, 30, seed=7)
    got = loss.relative_penalty(pos[:, 0], neg)
    want = torch.zeros(5, 30, dtype=torch.float64)
    for i, row in enumerate(neg.tolist()):
        ranked = sorted(row, reverse=True)
        k = selection.get("num_negatives") or math.ceil(round(0.2 * 30, 6))
        kept = [j for j, s in enumerate(row) if s >= ranked[k - 1]]
        share = eq5([row[j] for j in kept], t)  # Eq 8: Eq 5 over the kept negatives
        want[i, kept] = torch.tensor(share, dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-15)
    assert (got[~loss.select(neg)] == 0).all()
    entropy = torch.special.entr(want).sum(1).mean()
    torch.testing.assert_close(loss.penalty_entropy(pos[:, 0], neg), entropy)
    # not Eq 5 over all K negatives, which is what a temperature alone would give
    all_k = torch.special.entr(torch.softmax(neg / t, dim=1)).sum(1).mean()
    assert loss.penalty_entropy(pos[:, 0], neg) < all_k - 0.5


def test_relative_penalty_of_the_simple_losses_is_uniform():
    pos, neg = draw(4, 25, seed=8)
    mask = ragged_mask(4, 25, seed=4)
    for loss in (SimpleContrastiveLoss(), SimpleContrastiveLoss(3.0)):
        torch.testing.assert_close(loss.relative_penalty(Similarities(pos, neg)),
                                   torch.full((4, 25), 1 / 25, dtype=torch.float64))
        want = mask / mask.sum(1, keepdim=True)  # uniform over the valid ones, 0 elsewhere
        torch.testing.assert_close(loss.relative_penalty(Similarities(pos, neg, neg_mask=mask)), want.double())
    hard = HardSimpleContrastiveLoss(num_negatives=5)
    kept = hard.select(neg)
    torch.testing.assert_close(hard.relative_penalty(Similarities(pos, neg)), kept.double() / 5)


def test_relative_penalty_with_a_mask_is_zero_there_and_eq5_over_the_rest():
    pos, neg = draw(4, 20, seed=9)
    mask = ragged_mask(4, 20, seed=5)
    got = ContrastiveLoss(0.3).relative_penalty(Similarities(pos, neg, neg_mask=mask))
    want = torch.softmax(neg.masked_fill(~mask, -math.inf) / 0.3, dim=1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-15)


class Hinge(ContrastiveLossBase):
    """A hinge on the hardest negative: zero gradient for the anchors whose margin is met. Source: no paper."""

    def _per_anchor(self, pos, neg, mask):
        hardest = (neg if mask is None else neg.where(mask, -2.0)).amax(dim=1, keepdim=True)  # (B, 1)
        return (hardest - pos + 0.1).clamp(min=0).mean(dim=1)


def test_a_row_without_gradient_is_uniform_over_its_valid_negatives():
    pos = torch.tensor([[0.9], [0.0]], dtype=torch.float64)
    neg = torch.tensor([[0.1, 0.2, 0.3], [0.1, 0.5, 0.3]], dtype=torch.float64)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    got = Hinge().relative_penalty(Similarities(pos, neg, neg_mask=mask))
    assert got.tolist() == [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]  # row 0: margin met, no gradient


def test_the_relative_penalty_leaves_no_gradient_and_needs_no_grad_mode():
    pos, neg = draw(3, 10, seed=10)
    neg.requires_grad_(True)
    with torch.no_grad():
        r = ContrastiveLoss(0.1).relative_penalty(Similarities(pos, neg))
    assert not r.requires_grad and neg.grad is None
    torch.testing.assert_close(r.sum(1), torch.ones(3, dtype=torch.float64))


class InfWatch(torch.utils._python_dispatch.TorchDispatchMode):
    """Records every op whose output holds an infinity."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and torch.isinf(t).any():
                self.seen.append(func.overloadpacket.__name__)
        return out


@pytest.mark.parametrize("loss", [HardContrastiveLoss(0.1, alpha=0.2), HardContrastiveLoss(0.1, num_negatives=4),
                                  HardSimpleContrastiveLoss(alpha=0.2), ContrastiveLoss(0.1)], ids=repr)
@pytest.mark.parametrize("masked", [False, True])
def test_no_infinity_is_used_to_drop_a_negative(loss, masked):
    """The hard losses once padded unselected negatives with -inf; masks and torch.where do it now."""
    pos, neg = draw(4, 20, seed=11)
    neg.requires_grad_(True)
    sims = Similarities(pos, neg, neg_mask=ragged_mask(4, 20) if masked else None)
    with InfWatch() as watch:
        loss(sims).backward()
        loss.relative_penalty(sims)
    assert watch.seen == []
