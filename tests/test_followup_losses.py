"""The losses after the paper against float64 references written out by hand, and their analytic properties.

Each reference is the formula of the loss's docstring evaluated with Python floats, one anchor
at a time, over the anchor's valid negatives only (so N is the count actually given).
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.followup_losses import (AlignUniformLoss, CosineTemperatureSchedule, DebiasedContrastiveLoss,
                                               DecoupledContrastiveLoss, DualTemperatureLoss,
                                               HardNegativeContrastiveLoss, LearnableTemperatureLoss,
                                               ModelAwareContrastiveLoss, WeightedDecoupledContrastiveLoss)
from lightning_modules.losses import ContrastiveLoss, HardContrastiveLoss
from lightning_modules.similarities import Similarities

FOLLOWUP = (DebiasedContrastiveLoss, HardNegativeContrastiveLoss, DecoupledContrastiveLoss,
            WeightedDecoupledContrastiveLoss, DualTemperatureLoss, ModelAwareContrastiveLoss,
            CosineTemperatureSchedule, LearnableTemperatureLoss, AlignUniformLoss)


def make_sims(b: int, k: int, p: int = 1, seed: int = 0, masked: bool = False) -> Similarities:
    """Random float64 similarities in [-1, 1]; with ``masked`` a ragged mask (row i keeps k - i % 3 columns)
    whose invalid entries hold garbage a loss must never see."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(b, p, generator=g, dtype=torch.float64) * 2 - 1
    neg = torch.rand(b, k, generator=g, dtype=torch.float64) * 2 - 1
    if not masked:
        return Similarities(pos, neg)
    keep = k - torch.arange(b) % 3  # (B,)
    mask = torch.arange(k).unsqueeze(0) < keep.unsqueeze(1)  # (B, K)
    neg = torch.where(mask, neg, torch.full_like(neg, 1e4))  # e^(1e4/t) would overflow if it leaked
    return Similarities(pos, neg, neg_mask=mask)


def rows(sims: Similarities) -> list[tuple[list[float], list[float]]]:
    """Per anchor: its positives and its VALID negatives, as Python floats."""
    mask = sims.valid().tolist()
    return [(p, [s for s, ok in zip(n, m) if ok]) for p, n, m in zip(sims.pos.tolist(), sims.neg.tolist(), mask)]


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def with_grad(sims: Similarities) -> Similarities:
    return Similarities(sims.pos.clone().requires_grad_(True), sims.neg.clone().requires_grad_(True), sims.neg_mask)


def grads(loss, sims: Similarities) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    sims = with_grad(sims)
    value = loss(sims)
    value.backward()
    return value.detach(), sims.pos.grad, sims.neg.grad


# ---- hand-written references: one anchor, one positive, Python floats ------------------------------------

def ref_contrastive(p: float, negs: list[float], t: float) -> float:
    top = math.exp(p / t)
    return -math.log(top / (top + sum(math.exp(s / t) for s in negs)))


def ref_debiased(p: float, negs: list[float], t: float, tau_plus: float, beta: float | None = None) -> float:
    n = len(negs)
    if beta is None:
        total = sum(math.exp(s / t) for s in negs)
    else:  # HCL: importance weights e^(beta s/t), normalised by their mean
        imp = [math.exp(beta * s / t) for s in negs]
        total = sum(w * math.exp(s / t) for w, s in zip(imp, negs)) / mean(imp)
    ng = (total - tau_plus * n * math.exp(p / t)) / (1 - tau_plus)
    ng = max(ng, n * math.exp(-1 / t))
    return -math.log(math.exp(p / t) / (math.exp(p / t) + ng))


def ref_dcl(p: float, negs: list[float], t: float, w: float = 1.0) -> float:
    return -w * p / t + math.log(sum(math.exp(s / t) for s in negs))


def ref_positive_share(p: float, negs: list[float], t: float) -> float:
    top = math.exp(p / t)
    return top / (top + sum(math.exp(s / t) for s in negs))


def ref_dual(p: float, negs: list[float], t: float, dt_m: float) -> float:
    p_a, p_e = ref_positive_share(p, negs, t), ref_positive_share(p, negs, t * dt_m)
    return (1 - p_e) / (1 - p_a) * -math.log(p_a)


def ref_per_anchor(sims: Similarities, one) -> list[float]:
    """Mean over each anchor's positives of ``one(p, valid negatives)``."""
    return [mean(one(p, negs) for p in ps) for ps, negs in rows(sims)]


# ---- values against the references ------------------------------------------------------------------------

@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("t,tau_plus", [(0.5, 0.1), (0.2, 0.05), (1.0, 0.3)])
def test_debiased_matches_the_hand_formula(t, tau_plus, masked):
    sims = make_sims(6, 7, p=2, masked=masked)
    got = DebiasedContrastiveLoss(t, tau_plus).per_anchor(sims)
    want = ref_per_anchor(sims, lambda p, negs: ref_debiased(p, negs, t, tau_plus))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_debiased_counts_only_the_negatives_given():
    """N is each row's number of valid negatives: with tau+ > 0 a padded row differs from a 2B - 2 formula."""
    sims = make_sims(3, 5, masked=True)
    loss = DebiasedContrastiveLoss(0.5, 0.2)
    short = Similarities(sims.pos[2:3], sims.neg[2:3, :3])  # row 2 keeps 3 of 5 columns
    torch.testing.assert_close(loss.per_anchor(sims)[2], loss.per_anchor(short)[0], rtol=1e-13, atol=0)


def test_debiased_clamp_is_reached_and_then_the_negatives_get_no_gradient():
    # a positive far above negatives at -1: the estimate goes below N e^(-1/t), the clamp holds it there
    sims = Similarities(torch.tensor([[0.9]], dtype=torch.float64), torch.full((1, 4), -0.99, dtype=torch.float64))
    loss = DebiasedContrastiveLoss(0.5, 0.3)
    value, _, neg_grad = grads(loss, sims)
    assert value.item() == pytest.approx(ref_debiased(0.9, [-0.99] * 4, 0.5, 0.3), rel=1e-12)
    assert torch.equal(neg_grad, torch.zeros_like(neg_grad))
    assert torch.equal(loss.relative_penalty(sims), torch.full((1, 4), 0.25, dtype=torch.float64))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_hcl_matches_the_hand_formula(beta, masked):
    sims = make_sims(6, 7, p=2, seed=1, masked=masked)
    got = HardNegativeContrastiveLoss(0.5, 0.1, beta).per_anchor(sims)
    want = ref_per_anchor(sims, lambda p, negs: ref_debiased(p, negs, 0.5, 0.1, beta))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_dcl_matches_the_hand_formula(t, masked):
    sims = make_sims(5, 6, p=2, seed=2, masked=masked)
    got = DecoupledContrastiveLoss(t).per_anchor(sims)
    want = ref_per_anchor(sims, lambda p, negs: ref_dcl(p, negs, t))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("masked", [False, True])
def test_dclw_matches_the_hand_formula(masked):
    sims = make_sims(5, 6, p=2, seed=3, masked=masked)
    t, sigma = 0.1, 0.5
    everyone = [p for ps in sims.pos.tolist() for p in ps]
    norm = mean(math.exp(p / sigma) for p in everyone)
    got = WeightedDecoupledContrastiveLoss(t, sigma).per_anchor(sims)
    want = ref_per_anchor(sims, lambda p, negs: ref_dcl(p, negs, t, 2 - math.exp(p / sigma) / norm))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("t,dt_m", [(0.1, 10.0), (0.2, 3.0), (0.5, 0.5)])
def test_dual_temperature_matches_the_hand_formula(t, dt_m, masked):
    sims = make_sims(5, 6, p=2, seed=4, masked=masked)
    got = DualTemperatureLoss(t, dt_m).per_anchor(sims)
    want = ref_per_anchor(sims, lambda p, negs: ref_dual(p, negs, t, dt_m))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("t0,alpha,a0", [(0.1, 0.5, 0.0), (0.2, 0.3, 0.5), (0.1, 0.0, 0.0)])
def test_macl_matches_the_hand_formula(t0, alpha, a0, masked):
    sims = make_sims(5, 6, p=2, seed=5, masked=masked)
    alignment = mean(p for ps in sims.pos.tolist() for p in ps)
    t = t0 * (1 + alpha * (alignment - a0))

    def one(p, negs):
        share = ref_positive_share(p, negs, t)
        return -1 / (1 - share + 1e-8) * math.log(share)

    got = ModelAwareContrastiveLoss(t0, alpha, a0).per_anchor(sims)
    torch.testing.assert_close(got, torch.tensor(ref_per_anchor(sims, one), dtype=torch.float64),
                               rtol=1e-12, atol=1e-12)


def test_macl_reports_the_temperature_of_the_last_batch():
    loss = ModelAwareContrastiveLoss(0.1, 0.5, 0.0)
    assert loss.current_temperature().item() == pytest.approx(0.1) and loss.temperature == 0.1
    sims = make_sims(4, 5, seed=6)
    loss(sims)
    assert loss.current_temperature().item() == pytest.approx(0.1 * (1 + 0.5 * sims.pos.mean().item()), rel=1e-6)
    assert loss.temperature == 0.1  # the run's label stays t0
    calls = []

    def counting_gather(x):  # under DDP each call is a collective
        calls.append(x.shape)
        return x

    loss.gather = counting_gather
    loss(sims)
    assert len(calls) == 1  # the logged temperature reuses the one the loss computed


@pytest.mark.parametrize("epoch,expected", [(0, 1.0), (100, 0.55), (200, 0.1), (300, 0.55), (400, 1.0)])
def test_cosine_schedule_values(epoch, expected):
    schedule = CosineTemperatureSchedule(temperature_min=0.1, temperature_max=1.0, half_period=200)
    schedule.set_epoch(epoch)
    assert schedule.temperature == pytest.approx(expected, abs=1e-12)
    assert schedule.current_temperature() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("masked", [False, True])
def test_cosine_schedule_is_the_wrapped_loss_at_the_scheduled_temperature(masked):
    sims = make_sims(5, 6, p=2, seed=7, masked=masked)
    schedule = CosineTemperatureSchedule(temperature_min=0.1, temperature_max=1.0, half_period=10)
    for epoch in (0, 3, 10):
        schedule.set_epoch(epoch)
        t = 0.1 + 0.45 * (1 + math.cos(math.pi * epoch / 10))
        want = ref_per_anchor(sims, lambda p, negs: ref_contrastive(p, negs, t))
        torch.testing.assert_close(schedule.per_anchor(sims), torch.tensor(want, dtype=torch.float64),
                                   rtol=1e-12, atol=1e-12)


def test_cosine_schedule_wraps_any_tempered_loss():
    hard = HardContrastiveLoss(temperature=0.5, num_negatives=2)
    schedule = CosineTemperatureSchedule(loss=hard, temperature_min=0.2, temperature_max=0.4, half_period=4)
    schedule.set_epoch(4)
    sims = make_sims(4, 6, seed=8)
    assert hard.temperature == pytest.approx(0.2)
    torch.testing.assert_close(schedule(sims), HardContrastiveLoss(temperature=0.2, num_negatives=2)(sims))
    assert schedule.positive_in_hard_set(sims) is not None


@pytest.mark.parametrize("masked", [False, True])
def test_learnable_temperature_is_the_contrastive_loss_at_its_temperature(masked):
    sims = make_sims(5, 6, p=2, seed=9, masked=masked)
    loss = LearnableTemperatureLoss(temperature=0.2).double()
    t = math.exp(-loss.logit_scale.item())  # 0.2 up to the parameter's fp32 initialisation
    assert loss.current_temperature().item() == pytest.approx(t, rel=1e-15) and t == pytest.approx(0.2, rel=1e-7)
    assert loss.temperature == 0.2  # the label, to 6 digits
    want = ref_per_anchor(sims, lambda p, negs: ref_contrastive(p, negs, t))
    torch.testing.assert_close(loss.per_anchor(sims), torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_learnable_temperature_is_clamped_before_use():
    loss = LearnableTemperatureLoss(temperature=0.07, temperature_min=0.01, temperature_max=1.0).double()
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1000.0))  # t = 0.001, below the clamp: an optimiser step overshot
    assert loss.current_temperature().item() == pytest.approx(0.01)
    sims = make_sims(3, 4, seed=10)
    want = ref_per_anchor(sims, lambda p, negs: ref_contrastive(p, negs, 0.01))
    torch.testing.assert_close(loss.per_anchor(sims), torch.tensor(want, dtype=torch.float64))
    loss(sims).backward()
    assert loss.logit_scale.item() == pytest.approx(math.log(100.0))  # the parameter itself moved back in bounds
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.item() != 0  # not stuck at the bound


def test_learnable_temperature_gradient_matches_the_hand_derivative():
    """dL/d(log(1/t)) of Eq 1 is (1/t) (sum_k P_k s_k - (1 - P+) s+) per anchor, P the softmax over all keys."""
    sims = make_sims(4, 5, seed=11)
    loss = LearnableTemperatureLoss(temperature=0.3).double()
    loss(sims).backward()
    t = loss.current_temperature().item()
    want = 0.0
    for ps, negs in rows(sims):
        p = ps[0]
        share = ref_positive_share(p, negs, t)
        z = math.exp(p / t) + sum(math.exp(s / t) for s in negs)
        want += (sum(math.exp(s / t) / z * s for s in negs) - (1 - share) * p) / t
    assert loss.logit_scale.grad.item() == pytest.approx(want / 4, rel=1e-10)


def embeddings(b: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    y = F.normalize(x + 0.5 * torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    return x, y


@pytest.mark.parametrize("alpha,t,lam", [(2.0, 2.0, 1.0), (1.0, 1.0, 0.5), (3.0, 2.0, 2.0)])
def test_align_uniform_matches_the_hand_formula_on_embeddings(alpha, t, lam):
    """From the two views' embeddings, via InBatchNegatives: pairs of views of different images, distances squared."""
    from lightning_modules.negatives import InBatchNegatives

    x, y = embeddings(5, 8, seed=12)
    sims = InBatchNegatives()(lambda v: v, torch.arange(5), [x, y])  # fp32 similarities, as in training
    sims = sims if isinstance(sims, Similarities) else Similarities(sims[0].unsqueeze(1), sims[1])
    views = [(i, v[i]) for v in (x, y) for i in range(5)]  # (image, embedding) of all 2B views
    dist2 = lambda a, b: sum((ai - bi) ** 2 for ai, bi in zip(a.tolist(), b.tolist()))  # noqa: E731
    align = mean(dist2(x[i], y[i]) ** (alpha / 2) for i in range(5))
    pairs = [math.exp(-t * dist2(a, b)) for i, a in views for j, b in views if i != j]
    want = align + lam * math.log(mean(pairs))
    assert AlignUniformLoss(alpha, t, lam)(sims).item() == pytest.approx(want, rel=1e-6)


def test_align_uniform_with_a_mask_counts_only_valid_pairs():
    sims = make_sims(4, 6, seed=13, masked=True)
    valid = [s for _, negs in rows(sims) for s in negs]
    unif = math.log(mean(math.exp(-2.0 * (2 - 2 * s)) for s in valid))
    want = [(2 - 2 * ps[0]) + unif for ps, _ in rows(sims)]
    torch.testing.assert_close(AlignUniformLoss().per_anchor(sims), torch.tensor(want, dtype=torch.float64))


# ---- analytic properties ------------------------------------------------------------------------------------

@pytest.mark.parametrize("masked", [False, True])
def test_debiased_with_tau_plus_zero_is_the_contrastive_loss(masked):
    sims = make_sims(6, 7, seed=14, masked=masked)
    for a, b in zip(grads(DebiasedContrastiveLoss(0.5, 0.0), sims), grads(ContrastiveLoss(0.5), sims)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("masked", [False, True])
def test_hcl_with_beta_zero_is_the_debiased_loss(masked):
    sims = make_sims(6, 7, seed=15, masked=masked)
    for a, b in zip(grads(HardNegativeContrastiveLoss(0.5, 0.1, 0.0), sims), grads(DebiasedContrastiveLoss(0.5, 0.1), sims)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_dcl_gradient_has_no_positive_in_the_denominator():
    """The positive's gradient is -1/t per anchor whatever the negatives; the negatives' does not see s+."""
    sims = make_sims(4, 6, seed=16)
    loss = DecoupledContrastiveLoss(0.2)
    _, pos_grad, neg_grad = grads(loss, sims)
    torch.testing.assert_close(pos_grad, torch.full_like(pos_grad, -1 / 0.2 / 4))
    moved = Similarities(sims.pos.flip(0), sims.neg)
    _, _, neg_grad_moved = grads(loss, moved)
    torch.testing.assert_close(neg_grad_moved, neg_grad, rtol=0, atol=0)
    torch.testing.assert_close(neg_grad, torch.softmax(sims.neg / 0.2, dim=1) / 0.2 / 4)
    # InfoNCE's positive gradient carries the coupling factor (1 - P+): DCL's does not
    _, info_pos_grad, _ = grads(ContrastiveLoss(0.2), sims)
    assert (info_pos_grad.abs() < pos_grad.abs()).all()


@pytest.mark.parametrize("masked", [False, True])
def test_dual_temperature_with_dt_m_one_is_the_contrastive_loss(masked):
    sims = make_sims(6, 7, seed=17, masked=masked)
    for a, b in zip(grads(DualTemperatureLoss(0.2, 1.0), sims), grads(ContrastiveLoss(0.2), sims)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_dual_temperature_gradient_is_the_contrastive_gradient_times_the_stopped_factor():
    sims = make_sims(5, 6, seed=18)
    _, pos_grad, neg_grad = grads(DualTemperatureLoss(0.1, 10.0), sims)
    _, info_pos, info_neg = grads(ContrastiveLoss(0.1), sims)
    factor = torch.tensor([(1 - ref_positive_share(ps[0], negs, 1.0)) / (1 - ref_positive_share(ps[0], negs, 0.1))
                           for ps, negs in rows(sims)], dtype=torch.float64)  # (B,)
    torch.testing.assert_close(pos_grad, info_pos * factor.unsqueeze(1), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(neg_grad, info_neg * factor.unsqueeze(1), rtol=1e-10, atol=1e-14)


def test_macl_with_alpha_zero_is_the_reweighted_contrastive_gradient():
    sims = make_sims(5, 6, seed=19)
    _, pos_grad, neg_grad = grads(ModelAwareContrastiveLoss(0.2, 0.0, 0.0), sims)
    _, info_pos, info_neg = grads(ContrastiveLoss(0.2), sims)
    weight = torch.tensor([1 / (1 - ref_positive_share(ps[0], negs, 0.2) + 1e-8) for ps, negs in rows(sims)],
                          dtype=torch.float64).unsqueeze(1)  # (B, 1): V, detached
    torch.testing.assert_close(pos_grad, info_pos * weight, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(neg_grad, info_neg * weight, rtol=1e-10, atol=1e-14)
    # V = 1/(1 - P+) undoes the coupling factor: the positive's gradient is -1/t per anchor
    torch.testing.assert_close(pos_grad, torch.full_like(pos_grad, -1 / 0.2 / 5), rtol=1e-6, atol=0)


def test_macl_temperature_has_no_gradient():
    sims = make_sims(5, 6, seed=20)
    _, pos_grad, _ = grads(ModelAwareContrastiveLoss(0.1, 0.5, 0.0), sims)
    t = 0.1 * (1 + 0.5 * sims.pos.mean().item())
    weight = torch.tensor([1 / (1 - ref_positive_share(ps[0], negs, t) + 1e-8) for ps, negs in rows(sims)],
                          dtype=torch.float64).unsqueeze(1)
    _, info_pos, _ = grads(ContrastiveLoss(t), sims)
    torch.testing.assert_close(pos_grad, info_pos * weight, rtol=1e-10, atol=1e-14)


def test_align_uniform_gradients_are_the_hand_derivatives():
    sims = make_sims(3, 4, seed=21)
    _, pos_grad, neg_grad = grads(AlignUniformLoss(2.0, 2.0, 1.0), sims)
    torch.testing.assert_close(pos_grad, torch.full_like(pos_grad, -2 / 3))  # d(2 - 2s)/ds averaged over 3
    kernel = torch.exp(4.0 * (sims.neg - 1))  # e^(-t (2 - 2s)), t = 2
    torch.testing.assert_close(neg_grad, 4.0 * kernel / kernel.sum())  # d log mean / ds = 2t k / sum k


# ---- the relative penalty by autograd against each paper's closed form ---------------------------------

@pytest.mark.parametrize("masked", [False, True])
def test_relative_penalty_closed_forms(masked):
    sims = make_sims(6, 7, seed=22, masked=masked)
    mask = sims.valid()

    def softmax(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(torch.where(mask, logits, torch.full_like(logits, -math.inf)), dim=1)

    learned = LearnableTemperatureLoss(0.3).double()
    cases = [(DebiasedContrastiveLoss(0.5, 0.0), softmax(sims.neg / 0.5)),
             (DecoupledContrastiveLoss(0.2), softmax(sims.neg / 0.2)),
             (WeightedDecoupledContrastiveLoss(0.2, 0.5), softmax(sims.neg / 0.2)),
             (DualTemperatureLoss(0.1, 10.0), softmax(sims.neg / 0.1)),
             (learned, softmax(sims.neg / learned.current_temperature())),
             (AlignUniformLoss(2.0, 2.0, 1.0), softmax(4.0 * sims.neg)),
             (ModelAwareContrastiveLoss(0.1, 0.5, 0.0), softmax(sims.neg / (0.1 * (1 + 0.5 * sims.pos.mean()))))]
    for loss, want in cases:
        torch.testing.assert_close(loss.relative_penalty(sims), want, rtol=1e-10, atol=1e-14, msg=type(loss).__name__)


def test_debiased_relative_penalty_is_eq5_where_unclamped():
    sims = make_sims(6, 7, seed=23)  # random rows: none reaches the clamp at tau+ = 0.1
    torch.testing.assert_close(DebiasedContrastiveLoss(0.5, 0.1).relative_penalty(sims),
                               torch.softmax(sims.neg / 0.5, dim=1), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("beta", [0.5, 1.0, 4.0])
def test_hcl_relative_penalty_closed_form(beta):
    """d log(sum_k w_k e^(l_k))/dl_k = (1 + beta) q_k - beta w_k, q = softmax((1 + beta) l), w = softmax(beta l):
    easy negatives can get a negative gradient (raising them raises the mean weight), so r uses its size."""
    sims = make_sims(6, 7, seed=24)
    logits = sims.neg / 0.5
    size = ((1 + beta) * torch.softmax((1 + beta) * logits, dim=1) - beta * torch.softmax(beta * logits, dim=1)).abs()
    want = size / size.sum(dim=1, keepdim=True)
    torch.testing.assert_close(HardNegativeContrastiveLoss(0.5, 0.1, beta).relative_penalty(sims), want,
                               rtol=1e-10, atol=1e-14)


def test_cosine_schedule_relative_penalty_follows_the_epoch():
    sims = make_sims(4, 5, seed=25)
    schedule = CosineTemperatureSchedule(temperature_min=0.1, temperature_max=1.0, half_period=2)
    high = schedule.penalty_entropy(sims)
    schedule.set_epoch(2)
    torch.testing.assert_close(schedule.relative_penalty(sims), torch.softmax(sims.neg / 0.1, dim=1))
    assert schedule.penalty_entropy(sims) < high  # Fig 3: a smaller temperature concentrates the penalty


# ---- masks, gradcheck, numerics ---------------------------------------------------------------------------

def instances():
    return [DebiasedContrastiveLoss(), HardNegativeContrastiveLoss(), DecoupledContrastiveLoss(),
            WeightedDecoupledContrastiveLoss(), DualTemperatureLoss(), ModelAwareContrastiveLoss(),
            CosineTemperatureSchedule(), LearnableTemperatureLoss().double(), AlignUniformLoss()]


@pytest.mark.parametrize("loss", instances(), ids=lambda l: type(l).__name__)
def test_invalid_negatives_get_exactly_zero_gradient_and_never_leak(loss):
    sims = make_sims(6, 7, p=2, seed=26, masked=True)
    value, pos_grad, neg_grad = grads(loss, sims)
    assert torch.isfinite(value) and torch.isfinite(pos_grad).all() and torch.isfinite(neg_grad).all()
    assert torch.equal(neg_grad[~sims.neg_mask], torch.zeros_like(neg_grad[~sims.neg_mask]))
    # the same loss on the rows cut to their valid columns (row by row: ragged)
    for i in range(6):
        keep = int(sims.neg_mask[i].sum())
        if keep == 7:
            continue
        alone = Similarities(sims.pos[i:i + 1], sims.neg[i:i + 1, :keep])
        if not isinstance(loss, (WeightedDecoupledContrastiveLoss, ModelAwareContrastiveLoss, AlignUniformLoss)):
            torch.testing.assert_close(loss.per_anchor(sims)[i:i + 1], loss.per_anchor(alone))


@pytest.mark.parametrize("loss", [DebiasedContrastiveLoss(0.5, 0.1), HardNegativeContrastiveLoss(0.5, 0.1, 1.0),
                                  DecoupledContrastiveLoss(0.2), AlignUniformLoss(2.0, 2.0, 1.0),
                                  AlignUniformLoss(3.0, 1.0, 0.5)], ids=lambda l: type(l).__name__)
def test_gradcheck_in_float64(loss):
    """The losses without a stop-gradient: autograd equals finite differences (with the mask too)."""
    for masked in (False, True):
        sims = make_sims(3, 4, p=2, seed=27, masked=masked)
        pos = sims.pos.clone().requires_grad_(True)
        neg = sims.neg.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda p, n: loss(Similarities(p, n, sims.neg_mask)), (pos, neg))


def test_gradcheck_of_the_learnable_temperature():
    loss = LearnableTemperatureLoss(0.2).double()
    for masked in (False, True):
        sims = make_sims(3, 4, p=2, seed=28, masked=masked)
        pos = sims.pos.clone().requires_grad_(True)
        neg = sims.neg.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda p, n: loss(Similarities(p, n, sims.neg_mask)), (pos, neg))


@pytest.mark.parametrize("loss", instances()[:-2] + [AlignUniformLoss()], ids=lambda l: type(l).__name__)
def test_finite_in_fp32_at_a_small_temperature_with_many_negatives(loss):
    g = torch.Generator().manual_seed(29)
    neg = torch.rand(8, 50_000, generator=g) * 2 - 1
    pos = torch.ones(8, 1) * 0.95
    for name in ("temperature", "base_temperature"):
        if hasattr(loss, name) and not isinstance(getattr(type(loss), name, None), property):
            setattr(loss, name, 0.01)
    sims = Similarities(pos.requires_grad_(True), neg.requires_grad_(True))
    value = loss(sims)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(sims.pos.grad).all() and torch.isfinite(sims.neg.grad).all()


@pytest.mark.parametrize("loss", instances()[:-2], ids=lambda l: type(l).__name__)
def test_half_inputs_compute_in_fp32(loss):
    sims = make_sims(4, 5, seed=30)
    half = Similarities(sims.pos.to(torch.bfloat16), sims.neg.to(torch.bfloat16))
    value = loss(half)
    assert value.dtype == torch.float32
    reference = loss(Similarities(half.pos.double(), half.neg.double()))
    assert value.item() == pytest.approx(reference.item(), rel=1e-5)


# ---- DCLW and MACL normalise over the GLOBAL batch -----------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: WeightedDecoupledContrastiveLoss(0.1, 0.5),
                                  lambda: ModelAwareContrastiveLoss(0.1, 0.5, 0.0)], ids=["dclw", "macl"])
def test_two_fake_ranks_give_the_one_process_loss(make):
    """Rank r of 2 sees half the anchors; with the gathered positives its per-anchor losses are the
    single-process ones, so the mean over both ranks (DDP's gradient average) is the one-process loss."""
    sims = make_sims(8, 6, seed=31)
    whole = make().per_anchor(sims)
    ranks = [slice(0, 4), slice(4, 8)]
    sent = []  # what each rank hands to gather (a loss may gather a transform of its positives)
    for mine in ranks:
        loss = make()
        loss.gather = lambda x: sent.append(x) or x
        local = loss.per_anchor(Similarities(sims.pos[mine], sims.neg[mine]))  # each rank on its own
    parts = []
    for rank, mine in enumerate(ranks):
        loss = make()
        loss.gather = lambda x, rank=rank: torch.cat([x if r == rank else sent[r] for r in range(2)], dim=0)
        parts.append(loss.per_anchor(Similarities(sims.pos[mine], sims.neg[mine])))
    assert not torch.allclose(local, parts[-1])  # the global normaliser matters
    torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-13, atol=1e-14)


# ---- arguments, catalogue, CLI hints ---------------------------------------------------------------------

@pytest.mark.parametrize("make,message", [
    (lambda: DebiasedContrastiveLoss(temperature=0.0), "temperature must be > 0"),
    (lambda: DebiasedContrastiveLoss(tau_plus=1.0), r"tau_plus must be in \[0, 1\)"),
    (lambda: DebiasedContrastiveLoss(tau_plus=-0.1), r"tau_plus must be in \[0, 1\)"),
    (lambda: HardNegativeContrastiveLoss(beta=-1.0), "beta must be >= 0"),
    (lambda: DecoupledContrastiveLoss(temperature=float("nan")), "temperature must be a finite number"),
    (lambda: WeightedDecoupledContrastiveLoss(sigma=0), "sigma must be > 0"),
    (lambda: DualTemperatureLoss(dt_m=-1.0), "dt_m must be > 0"),
    (lambda: ModelAwareContrastiveLoss(alpha=1.0, a0=0.5), r"alpha \* \(1 \+ a0\) must be < 1"),
    (lambda: ModelAwareContrastiveLoss(a0=2.0), r"a0 must be in \[0, 1\]"),
    (lambda: CosineTemperatureSchedule(temperature_min=1.0, temperature_max=0.5), "temperature_max must be >="),
    (lambda: CosineTemperatureSchedule(half_period=0), "half_period must be an integer >= 1"),
    (lambda: CosineTemperatureSchedule(loss=LearnableTemperatureLoss()), "no fixed temperature to schedule"),
    (lambda: LearnableTemperatureLoss(temperature=2.0), "temperature must be within"),
    (lambda: AlignUniformLoss(t=True), "t must be a finite number"),
    (lambda: AlignUniformLoss(lam=0), "lam must be > 0"),
])
def test_bad_arguments_are_one_line_errors(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls", FOLLOWUP)
def test_catalogue_attributes_and_docstrings(cls):
    assert cls.__dict__.get("key") or cls.key  # every class names its preset
    assert (pytest.importorskip("pathlib").Path(__file__).parents[1] / f"configs/loss/{cls.key}.yaml").is_file()
    assert isinstance(cls.title, str) and cls.title
    assert "arXiv:" in cls.source and "arXiv:" in cls.__doc__
    assert isinstance(cls.tempered, bool) and isinstance(cls.hard, bool) and isinstance(cls.needs_in_batch, bool)
    assert (cls().temperature is not None) == cls.tempered
    doc = inspect.getdoc(cls)
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        assert parameter.annotation is not inspect.Parameter.empty, f"{cls.__name__}.{name} has no type hint"
        assert f"{name}:" in doc, f"{cls.__name__} docstring does not describe {name}"


def test_keys_are_unique():
    keys = [cls.key for cls in FOLLOWUP]
    assert len(set(keys)) == len(keys)
