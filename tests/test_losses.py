"""The four losses against brute-force float64 references and the paper's analytic properties (Eq 1-9)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from lightning_modules.losses import (ContrastiveLoss, ContrastiveLossBase, HardContrastiveLoss,
                                      HardSimpleContrastiveLoss, SimpleContrastiveLoss)

ALL_LOSSES = (ContrastiveLoss, SimpleContrastiveLoss, HardContrastiveLoss, HardSimpleContrastiveLoss)


def sims(b: int, k: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Random similarities in [-1, 1]: pos (B,), neg (B, K)."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(b, generator=g, dtype=torch.float64) * 2 - 1
    neg = torch.rand(b, k, generator=g, dtype=torch.float64) * 2 - 1
    return pos.to(dtype), neg.to(dtype)


def grads(loss, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pos = pos.clone().requires_grad_(True)
    neg = neg.clone().requires_grad_(True)
    value = loss(pos, neg)
    value.backward()
    return value.detach(), pos.grad, neg.grad


# ---- brute-force references: python floats, one anchor at a time ----------------------------------------

def kept_negatives(row: list[float], num_negatives: int | None, alpha: float | None) -> list[float]:
    ranked = sorted(row, reverse=True)
    if num_negatives is not None:
        return ranked[:num_negatives]
    k = math.ceil(round(alpha * len(row), 6))
    return [s for s in row if s >= ranked[k - 1]]


def ref_contrastive_row(s_ii: float, row: list[float], t: float) -> float:
    top = math.exp(s_ii / t)
    return -math.log(top / (top + sum(math.exp(s / t) for s in row)))


def ref_simple_row(s_ii: float, row: list[float], lam: float | None) -> float:
    weight = 1 / len(row) if lam is None else lam
    return -s_ii + weight * sum(row)


def ref_mean(row_loss, pos: torch.Tensor, neg: torch.Tensor) -> float:
    rows = neg.tolist()
    return sum(row_loss(p, rows[i]) for i, p in enumerate(pos.tolist())) / len(rows)


# ---- values ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_contrastive_matches_brute_force(t):
    pos, neg = sims(6, 20, seed=1, dtype=torch.float32)
    got = ContrastiveLoss(t)(pos, neg)
    want = ref_mean(lambda p, r: ref_contrastive_row(p, r, t), pos.double(), neg.double())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("lam", [None, 0.3])
def test_simple_matches_brute_force(lam):
    pos, neg = sims(6, 20, seed=2, dtype=torch.float32)
    got = SimpleContrastiveLoss(lam)(pos, neg)
    want = ref_mean(lambda p, r: ref_simple_row(p, r, lam), pos.double(), neg.double())
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)


SELECTIONS = [dict(num_negatives=1), dict(num_negatives=7), dict(alpha=0.1), dict(alpha=0.37), dict(alpha=0.999)]


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("t", [0.1, 0.7])
def test_hard_contrastive_matches_brute_force(selection, t):
    pos, neg = sims(5, 30, seed=3, dtype=torch.float32)
    got = HardContrastiveLoss(t, **selection)(pos, neg)
    want = ref_mean(lambda p, r: ref_contrastive_row(p, kept_negatives(r, **_both(selection)), t),
                    pos.double(), neg.double())
    assert got.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("lam", [None, 0.05])
def test_hard_simple_matches_brute_force(selection, lam):
    pos, neg = sims(5, 30, seed=4, dtype=torch.float32)
    got = HardSimpleContrastiveLoss(lam, **selection)(pos, neg)
    want = ref_mean(lambda p, r: ref_simple_row(p, kept_negatives(r, **_both(selection)), lam),
                    pos.double(), neg.double())
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)


def _both(selection: dict) -> dict:
    return {"num_negatives": selection.get("num_negatives"), "alpha": selection.get("alpha")}


@pytest.mark.parametrize("loss", [ContrastiveLoss(0.2), SimpleContrastiveLoss(), HardContrastiveLoss(0.2, alpha=0.2),
                                  HardSimpleContrastiveLoss(num_negatives=3)], ids=repr)
def test_forward_is_the_mean_of_per_anchor(loss):
    pos, neg = sims(7, 15, seed=5)
    per = loss.per_anchor(pos, neg)
    assert per.shape == (7,)
    assert torch.equal(loss(pos, neg), per.mean())
    assert per.std() > 0  # the anchors differ, so a broadcast bug would show


@pytest.mark.parametrize("loss", [ContrastiveLoss(0.3), SimpleContrastiveLoss(0.2),
                                  HardContrastiveLoss(0.3, num_negatives=4), HardContrastiveLoss(0.3, alpha=0.3),
                                  HardSimpleContrastiveLoss(num_negatives=4), HardSimpleContrastiveLoss(alpha=0.3)],
                         ids=repr)
def test_gradcheck_in_float64(loss):
    pos, neg = sims(3, 10, seed=6)
    assert torch.autograd.gradcheck(loss, (pos.requires_grad_(), neg.requires_grad_()))


# ---- Eq 4 and Eq 5: the gradient and the relative penalty -------------------------------------------------

@pytest.mark.parametrize("t", [0.07, 0.5])
def test_eq4_gradient(t):
    b, k = 6, 12
    pos, neg = sims(b, k, seed=7)
    _, d_pos, d_neg = grads(ContrastiveLoss(t), pos, neg)
    # Eq 2 by hand: P over the positive and the negatives of each anchor
    p_pos, p_neg = torch.empty(b, dtype=torch.float64), torch.empty(b, k, dtype=torch.float64)
    for i in range(b):
        e = [math.exp(pos[i].item() / t)] + [math.exp(s / t) for s in neg[i].tolist()]
        p_pos[i] = e[0] / sum(e)
        p_neg[i] = torch.tensor(e[1:], dtype=torch.float64) / sum(e)
    torch.testing.assert_close(d_pos, -(1 / t) * p_neg.sum(1) / b, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(d_neg, (1 / t) * p_neg / b, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(p_neg.sum(1), 1 - p_pos)  # sanity of the hand computation


@pytest.mark.parametrize("t", [0.05, 0.3, 2.0])
def test_negative_gradients_sum_to_the_positive_gradient(t):
    pos, neg = sims(5, 40, seed=8)
    _, d_pos, d_neg = grads(ContrastiveLoss(t), pos, neg)
    assert (d_pos < 0).all() and (d_neg > 0).all()
    torch.testing.assert_close(d_neg.abs().sum(1) / d_pos.abs(), torch.ones(5, dtype=torch.float64))


def test_relative_penalty_is_boltzmann_and_its_entropy_falls_with_t():
    pos, neg = sims(4, 50, seed=9)
    entropies = []
    for t in [5.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02]:
        _, d_pos, d_neg = grads(ContrastiveLoss(t), pos, neg)
        r = d_neg.abs() / d_pos.abs().unsqueeze(1)  # (B, K), Eq 5
        torch.testing.assert_close(r, torch.softmax(neg / t, dim=1))
        entropies.append(-(r * r.log()).sum(1))  # (B,)
    entropies = torch.stack(entropies)  # (T, B), t falling down the rows
    assert (entropies[1:] < entropies[:-1]).all(), entropies
    assert entropies[0].min() > math.log(50) - 0.1  # large t: nearly uniform
    assert entropies[-1].max() < math.log(50) / 2  # small t: concentrated on the hardest


# ---- Eq 6 and Eq 7: the two limits of the temperature -----------------------------------------------------

@pytest.mark.parametrize("case", ["hard_negative_above_positive", "positive_above_all"])
def test_eq6_small_temperature_gives_a_triplet_loss(case):
    pos, neg = sims(6, 25, seed=10, dtype=torch.float32)
    neg = neg * 0.8  # in [-0.8, 0.8]
    pos = neg.amax(1) + (0.15 if case == "positive_above_all" else -0.3)  # margin >> t
    want = (neg.amax(1) - pos).clamp_min(0)  # (B,)
    errors = []
    for t in [1e-1, 1e-2, 1e-3]:
        got = t * ContrastiveLoss(t).per_anchor(pos, neg)
        assert torch.isfinite(got).all()
        errors.append((got - want).abs().max().item())
    assert errors[-1] < 1e-3 * math.log(26) + 1e-5
    assert errors[2] < errors[1] < errors[0]
    if case == "hard_negative_above_positive":
        assert (want > 0.29).all()
    else:
        assert (want == 0).all()


def test_eq7_large_temperature_gives_the_simple_loss():
    pos, neg = sims(6, 25, seed=11)  # float64: the limit subtracts two nearly equal numbers
    k = neg.shape[1]
    want = SimpleContrastiveLoss(lam=None).per_anchor(pos, neg)
    errors = []
    for t in [1.0, 10.0, 100.0, 1000.0]:
        scaled = t * (ContrastiveLoss(t).per_anchor(pos, neg) - math.log(k + 1)) * (k + 1) / k
        errors.append((scaled - want).abs().max().item())
    assert all(b < a / 5 for a, b in zip(errors, errors[1:])), errors  # O(1/t)
    assert errors[-1] < 1e-3


# ---- hard variants ---------------------------------------------------------------------------------------

HARD = [HardContrastiveLoss(0.1, num_negatives=5), HardContrastiveLoss(0.1, alpha=0.15),
        HardSimpleContrastiveLoss(num_negatives=5), HardSimpleContrastiveLoss(0.5, alpha=0.15)]


@pytest.mark.parametrize("loss", HARD, ids=repr)
def test_hard_losses_give_exactly_zero_gradient_outside_the_chosen_negatives(loss):
    pos, neg = sims(6, 40, seed=12, dtype=torch.float32)
    mask = loss.select(neg)
    want = torch.tensor([[s in kept_negatives(r, loss.num_negatives, loss.alpha) for s in r] for r in neg.tolist()])
    assert torch.equal(mask, want)
    assert (mask.sum(1) == (5 if loss.num_negatives else 6)).all()  # ceil(0.15 * 40) = 6, no ties
    _, _, d_neg = grads(loss, pos, neg)
    assert (d_neg[~mask] == 0).all()  # exactly, not approximately
    assert (d_neg[mask] != 0).all()


@pytest.mark.parametrize("selection", [dict(num_negatives=6), dict(alpha=0.2)])
def test_hard_contrastive_eq8_ratio_over_the_chosen_negatives(selection):
    t = 0.2
    loss = HardContrastiveLoss(t, **selection)
    pos, neg = sims(5, 30, seed=13)
    mask = loss.select(neg)
    _, d_pos, d_neg = grads(loss, pos, neg)
    r = d_neg / d_pos.abs().unsqueeze(1)  # (B, K)
    chosen_softmax = torch.softmax(neg.masked_fill(~mask, -math.inf) / t, dim=1)  # zero off the mask
    torch.testing.assert_close(r, chosen_softmax)
    torch.testing.assert_close(r.sum(1), torch.ones(5, dtype=torch.float64))
    # and the positive's gradient is Eq 4 over the chosen negatives only
    chosen = torch.where(mask, (neg / t).exp(), torch.zeros_like(neg)).sum(1)
    p_neg_total = chosen / (chosen + (pos / t).exp())
    torch.testing.assert_close(d_pos, -(1 / t) * p_neg_total / 5)


@pytest.mark.parametrize("extra", [0, 1, 100])
def test_hard_with_every_negative_is_the_ordinary_loss(extra):
    pos, neg = sims(6, 20, seed=14, dtype=torch.float32)
    k = neg.shape[1] + extra
    for hard, plain in [(HardContrastiveLoss(0.07, num_negatives=k), ContrastiveLoss(0.07)),
                        (HardContrastiveLoss(0.07, alpha=1.0), ContrastiveLoss(0.07)),
                        (HardSimpleContrastiveLoss(num_negatives=k), SimpleContrastiveLoss()),
                        (HardSimpleContrastiveLoss(0.1, alpha=1), SimpleContrastiveLoss(0.1))]:
        assert torch.equal(hard(pos, neg), plain(pos, neg)), hard
        assert hard.select(neg).all()


def test_hard_fewer_than_all_differs_from_the_ordinary_loss():
    pos, neg = sims(6, 20, seed=14, dtype=torch.float32)
    assert HardContrastiveLoss(0.5, num_negatives=19)(pos, neg) < ContrastiveLoss(0.5)(pos, neg)
    assert HardSimpleContrastiveLoss(num_negatives=19)(pos, neg) > SimpleContrastiveLoss()(pos, neg)


def test_alpha_keeps_every_negative_tied_at_the_threshold():
    neg = torch.tensor([[0.5, 0.3, 0.1, 0.3, 0.0, 0.3, -0.2, -0.5],
                        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]])
    pos = torch.tensor([0.2, 0.1])
    alpha = 0.25  # k = ceil(0.25 * 8) = 2: the 2nd largest is 0.3 in row 0, tied three times
    hard = HardContrastiveLoss(0.1, alpha=alpha)
    mask = hard.select(neg)
    assert mask.tolist() == [[True, True, False, True, False, True, False, False],
                             [True, True, False, False, False, False, False, False]]
    _, _, d_neg = grads(hard, pos, neg)
    assert ((d_neg != 0) == mask).all()
    kept = [[0.5, 0.3, 0.3, 0.3], [0.9, 0.8]]
    want = sum(ref_contrastive_row(p, r, 0.1) for p, r in zip(pos.tolist(), kept)) / 2
    assert hard(pos, neg).item() == pytest.approx(want, rel=1e-5)
    simple = HardSimpleContrastiveLoss(alpha=alpha)  # lam = 1/4 in row 0, 1/2 in row 1
    want = sum(ref_simple_row(p, r, None) for p, r in zip(pos.tolist(), kept)) / 2
    assert simple(pos, neg).item() == pytest.approx(want, rel=1e-5)
    _, _, d_neg = grads(simple, pos, neg)
    torch.testing.assert_close(d_neg, mask / mask.sum(1, keepdim=True) / 2)


def test_fixed_count_keeps_exactly_that_many_even_with_ties():
    neg = torch.tensor([[0.3, 0.3, 0.3, 0.3, 0.1]])
    mask = HardContrastiveLoss(0.1, num_negatives=2).select(neg)
    assert mask.sum().item() == 2 and not mask[0, 4]


@pytest.mark.parametrize("k, kept", [(50_000, 4095), (49_999, 4095), (100, 9), (10, 1), (3, 1)])
def test_alpha_count_is_ceil_of_alpha_times_k(k, kept):
    loss = HardContrastiveLoss(0.07, alpha=0.0819)
    assert loss.quantile_count(k) == kept
    if k <= 100:  # distinct values: the mask holds exactly that many
        neg = torch.randperm(k).float().unsqueeze(0) / k
        assert loss.select(neg).sum().item() == kept


# ---- numerics ---------------------------------------------------------------------------------------------

FOUR = [ContrastiveLoss(0.01), SimpleContrastiveLoss(), HardContrastiveLoss(0.01, num_negatives=4095),
        HardContrastiveLoss(0.01, alpha=0.0819), HardSimpleContrastiveLoss(num_negatives=4095),
        HardSimpleContrastiveLoss(alpha=0.0819)]


@pytest.mark.parametrize("loss", FOUR, ids=repr)
def test_finite_at_t_001_with_50000_negatives_in_fp32(loss):
    pos, neg = sims(4, 50_000, seed=15, dtype=torch.float32)
    pos[0], neg[0] = -1.0, 1.0  # worst case: logits of -100 against 100
    pos[1], neg[1] = 1.0, -1.0  # easiest case: the loss underflows towards 0
    value, d_pos, d_neg = grads(loss, pos, neg)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert torch.isfinite(d_pos).all() and torch.isfinite(d_neg).all()
    if isinstance(loss, (HardContrastiveLoss, ContrastiveLoss)):
        per = loss.per_anchor(pos, neg)
        # row 0: every negative ties at 1.0, so alpha keeps all of them (ties at the threshold count)
        kept = 4095 if getattr(loss, "num_negatives", None) else 50_000
        assert per[0].item() == pytest.approx(200 + math.log(kept), rel=1e-5)
        assert 0 <= per[1].item() < 1e-30


@pytest.mark.parametrize("loss", FOUR, ids=repr)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_under_autocast_compute_in_fp32(loss, dtype):
    pos, neg = sims(8, 5000, seed=16)
    pos_h = pos.to(dtype).requires_grad_()
    neg_h = neg.to(dtype).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(pos_h, neg_h)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert pos_h.grad.dtype == dtype and torch.isfinite(pos_h.grad).all() and torch.isfinite(neg_h.grad).all()
    exact = loss(pos_h.detach().double(), neg_h.detach().double())  # same inputs, float64
    assert value.item() == pytest.approx(exact.item(), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("loss", FOUR, ids=repr)
def test_forward_and_backward_need_no_data_on_the_host(loss):
    # meta tensors have no values: any .item() / bool(tensor) / data-dependent shape would raise
    pos = torch.empty(4, device="meta", requires_grad=True)
    neg = torch.empty(4, 6000, device="meta", requires_grad=True)
    value = loss(pos, neg)
    assert value.shape == () and value.dtype == torch.float32
    value.backward()
    assert neg.grad.shape == (4, 6000)


# ---- validation -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: ContrastiveLoss(0.1), lambda: SimpleContrastiveLoss(),
                                  lambda: HardContrastiveLoss(0.1, num_negatives=2),
                                  lambda: HardSimpleContrastiveLoss(alpha=0.5)])
@pytest.mark.parametrize("pos_shape, neg_shape, message", [
    ((4, 1), (4, 5), "pos must be 1-D"),
    ((4,), (4,), "neg must be 2-D"),
    ((4,), (4, 5, 1), "neg must be 2-D"),
    ((4,), (3, 5), "same number of anchors"),
    ((4,), (4, 0), "at least one negative"),
])
def test_bad_shapes_are_errors(make, pos_shape, neg_shape, message):
    with pytest.raises(ValueError, match=message):
        make()(torch.zeros(pos_shape), torch.zeros(neg_shape))


@pytest.mark.parametrize("make, message", [
    (lambda: ContrastiveLoss(-0.1), r"temperature must be > 0.*got -0\.1"),
    (lambda: ContrastiveLoss(0), r"temperature must be > 0.*got 0"),
    (lambda: ContrastiveLoss(float("inf")), "temperature must be > 0 and finite.*got inf"),
    (lambda: ContrastiveLoss(float("nan")), "temperature.*got nan"),
    (lambda: HardContrastiveLoss(-1.0, num_negatives=5), r"temperature must be > 0.*got -1\.0"),
    (lambda: HardContrastiveLoss(0.1, num_negatives=0), "num_negatives must be an integer >= 1.*got 0"),
    (lambda: HardContrastiveLoss(0.1, num_negatives=-3), "num_negatives.*got -3"),
    (lambda: HardSimpleContrastiveLoss(num_negatives=2.5), r"num_negatives.*got 2\.5"),
    (lambda: HardContrastiveLoss(0.1, alpha=0.0), r"alpha must be in \(0, 1\].*got 0\.0"),
    (lambda: HardContrastiveLoss(0.1, alpha=1.5), r"alpha must be in \(0, 1\].*got 1\.5"),
    (lambda: HardSimpleContrastiveLoss(alpha=-0.1), r"alpha.*got -0\.1"),
    (lambda: HardSimpleContrastiveLoss(alpha=float("nan")), "alpha.*got nan"),
    (lambda: HardContrastiveLoss(0.1, num_negatives=5, alpha=0.1), "exactly one of num_negatives and alpha"),
    (lambda: HardContrastiveLoss(0.1), "exactly one of num_negatives and alpha.*neither"),
    (lambda: HardSimpleContrastiveLoss(num_negatives=5, alpha=0.1), "exactly one"),
    (lambda: HardSimpleContrastiveLoss(), "exactly one.*neither"),
    (lambda: SimpleContrastiveLoss(0.0), "lam must be > 0.*got 0.0"),
    (lambda: SimpleContrastiveLoss(-1.0), "lam must be > 0.*got -1.0"),
    (lambda: HardSimpleContrastiveLoss(float("inf"), num_negatives=5), "lam.*got inf"),
])
def test_bad_arguments_are_errors_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ---- the CLI-facing surface -------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ALL_LOSSES)
def test_docstring_and_type_hints_for_the_cli(cls):
    assert issubclass(cls, ContrastiveLossBase)
    doc = inspect.getdoc(cls)
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert params and "Args:" in doc
    for p in params:
        assert p.annotation is not inspect.Parameter.empty, p.name
        assert f"    {p.name}:" in doc, p.name


@pytest.mark.parametrize("loss, text", [
    (ContrastiveLoss(0.07), "ContrastiveLoss(temperature=0.07)"),
    (SimpleContrastiveLoss(), "SimpleContrastiveLoss(lam=1/K)"),
    (SimpleContrastiveLoss(0.5), "SimpleContrastiveLoss(lam=0.5)"),
    (HardContrastiveLoss(0.3, num_negatives=4095), "HardContrastiveLoss(temperature=0.3, num_negatives=4095)"),
    (HardContrastiveLoss(0.3, alpha=0.0819), "HardContrastiveLoss(temperature=0.3, alpha=0.0819)"),
    (HardSimpleContrastiveLoss(alpha=0.0819), "HardSimpleContrastiveLoss(lam=1/k, alpha=0.0819)"),
])
def test_repr(loss, text):
    assert repr(loss) == text


def test_base_class_has_no_loss_of_its_own():
    with pytest.raises(NotImplementedError):
        ContrastiveLossBase()(torch.zeros(2), torch.zeros(2, 3))


# ---- the early phase: invariance to a common shift of the keys (docs/reproduce.md) --------------------------

@pytest.mark.parametrize("loss", [ContrastiveLoss(0.07), ContrastiveLoss(1.0),
                                  HardContrastiveLoss(0.2, num_negatives=5)])
def test_gradient_wrt_f_is_unchanged_when_every_key_moves_by_one_vector(loss):
    """s_ij = f_i . g_j: adding c to every key g (the positive's too) adds f_i . c to every logit of
    row i, which the softmax cancels; so d loss / d f_i is the same, and a shared component of the
    keys is attacked only through the softmax weights (Eq 4)."""
    g = torch.Generator().manual_seed(3)
    f = torch.nn.functional.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=1)
    keys = torch.nn.functional.normalize(torch.randn(20, 8, generator=g, dtype=torch.float64), dim=1)
    own = torch.arange(6)  # anchor i's positive key is keys[i]

    def grad_f(k: torch.Tensor) -> torch.Tensor:
        q = f.clone().requires_grad_(True)
        s = q @ k.T  # (6, 20)
        pos = s[own, own]
        neg = torch.stack([torch.cat([s[i, :i], s[i, i + 1:]]) for i in range(6)])  # (6, 19)
        loss(pos, neg).backward()
        return q.grad

    shift = 0.7 * torch.randn(8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(grad_f(keys + shift), grad_f(keys), rtol=1e-10, atol=1e-12)
    # the simple loss is not invariant: its negatives' weights do not sum to the positive's
    q = f.clone().requires_grad_(True)
    s = q @ (keys + shift).T
    SimpleContrastiveLoss()(s[own, own], torch.stack([torch.cat([s[i, :i], s[i, i + 1:]]) for i in range(6)])
                            ).backward()
    assert not torch.allclose(q.grad, grad_f(keys))


def test_author_selection_takes_the_top_k_plus_one_of_all_keys():
    pos, neg = sims(5, 12, seed=9)
    t, k = 0.3, 4
    loss = HardContrastiveLoss(t, num_negatives=k, selection="all")
    expected = []
    for p, row in zip(pos.tolist(), neg.tolist()):
        top = sorted([p, *row], reverse=True)[: k + 1]  # the positive only when it ranks there
        expected.append(math.log(sum(math.exp(s / t) for s in top)) - p / t)
    torch.testing.assert_close(loss.per_anchor(pos, neg), torch.tensor(expected, dtype=torch.float64))
    # when the positive is the nearest key both selections are the same loss
    pos_top = neg.max(dim=1).values + 0.1
    torch.testing.assert_close(loss.per_anchor(pos_top, neg),
                               HardContrastiveLoss(t, num_negatives=k).per_anchor(pos_top, neg))
    # ... and when it is not, the author's denominator swaps the positive for the (k+1)-th negative,
    # which is larger: a larger loss than Eq 9's
    far = neg.min(dim=1).values - 0.5
    assert (loss.per_anchor(far, neg) > HardContrastiveLoss(t, num_negatives=k).per_anchor(far, neg)).all()
    with pytest.raises(ValueError, match="selection"):
        HardContrastiveLoss(t, num_negatives=k, selection="top")


@pytest.mark.parametrize("make", [lambda: HardContrastiveLoss(0.5, num_negatives=3),
                                  lambda: HardSimpleContrastiveLoss(num_negatives=3)])
def test_positive_in_hard_set_counts_anchors_whose_positive_reaches_the_kth_negative(make):
    neg = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.5, 0.4, 0.3, 0.2], [0.2, 0.6, 0.1, 0.0]])
    pos = torch.tensor([0.75, 0.1, 0.1])  # row 0: 0.75 >= 3rd largest 0.7; row 1: 0.1 < 0.3; row 2: = 0.1
    assert float(make().positive_in_hard_set(pos, neg)) == pytest.approx(2 / 3)
