"""Losses written after the paper, each aimed at the uniformity-tolerance dilemma it ends on.

Wang & Liu (arXiv:2012.09740) close on the question of which loss escapes the dilemma;
these are later answers, on the same contract as the paper's four losses
(:class:`~lightning_modules.losses.ContrastiveLossBase`): each takes the positives (B, P),
the negatives (B, K) and an optional mask of valid negatives, and returns one loss per
anchor. Each class cites its paper and the reference code read to confirm its formula,
and says where the two disagree.

| key | loss | source |
|---|---|---|
| debiased | :class:`DebiasedContrastiveLoss` | Chuang et al. 2020, arXiv:2007.00224 |
| hcl | :class:`HardNegativeContrastiveLoss` | Robinson et al. 2021, arXiv:2010.04592 |
| dcl, dclw | :class:`DecoupledContrastiveLoss`, :class:`WeightedDecoupledContrastiveLoss` | Yeh et al. 2022, arXiv:2110.06848 |
| dual_temperature | :class:`DualTemperatureLoss` | Zhang et al. 2022, arXiv:2203.17248 |
| macl | :class:`ModelAwareContrastiveLoss` | Huang et al. 2023, arXiv:2207.07874 |
| cosine_temperature | :class:`CosineTemperatureSchedule` | Kukleva et al. 2023, arXiv:2303.13664 |
| learnable_temperature | :class:`LearnableTemperatureLoss` | Radford et al. 2021, arXiv:2103.00020 |
| align_uniform | :class:`AlignUniformLoss` | Wang & Isola 2020, arXiv:2005.10242 |

Two hooks the LightningModule (:class:`~lightning_modules.contrastive.ContrastiveModule`)
calls, so that no loss holds ``torch.distributed`` or logs:

- ``gather``: losses with ``uses_global_batch`` normalise over the global batch (DCLW's
  weights, MACL's alignment); during its training step the module sets ``loss.gather`` to a
  function that concatenates a tensor from every process (elsewhere it is the identity, so a
  plot drawn on one process runs no collective).
- ``set_epoch(epoch)`` and ``current_temperature()``: a loss whose temperature moves
  (schedule, learnable, adaptive) follows the epoch and reports its temperature, which the
  module logs as ``train/temperature`` each step.

Numerics: everything runs in log space (log-sum-exp with the row maximum taken out), so
the losses stay finite at t = 0.01 in fp32; invalid negatives are removed with
``torch.where`` before any exponential, so their gradient is exactly zero.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar

import torch
from torch import Tensor, nn

from lightning_modules.losses import ContrastiveLoss, ContrastiveLossBase, masked_logsumexp
from lightning_modules.similarities import Similarities, as_similarities

__all__ = ["DebiasedContrastiveLoss", "HardNegativeContrastiveLoss", "DecoupledContrastiveLoss",
           "WeightedDecoupledContrastiveLoss", "DualTemperatureLoss", "ModelAwareContrastiveLoss",
           "CosineTemperatureSchedule", "LearnableTemperatureLoss", "AlignUniformLoss"]


# --------------------------------------------------------------------------- argument checks
def _number(name: str, value: float, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number ({hint}), got {value!r}")
    return float(value)


def _positive(name: str, value: float, hint: str) -> float:
    value = _number(name, value, hint)
    if not value > 0:
        raise ValueError(f"{name} must be > 0 ({hint}), got {value}")
    return value


def _non_negative(name: str, value: float, hint: str) -> float:
    value = _number(name, value, hint)
    if value < 0:
        raise ValueError(f"{name} must be >= 0 ({hint}), got {value}")
    return value


def _class_prior(tau_plus: float) -> float:
    tau_plus = _number("tau_plus", tau_plus, "the class prior, in [0, 1); the reference uses 0.1")
    if not 0 <= tau_plus < 1:
        raise ValueError(f"tau_plus must be in [0, 1) (the share of same-class negatives; the reference uses "
                         f"0.1, 0 is the contrastive loss), got {tau_plus}")
    return tau_plus


# --------------------------------------------------------------------------- shared pieces
def _lse(x: Tensor, mask: Tensor | None) -> Tensor:
    """Log-sum-exp over dim 1 of the valid entries, (B, 1): invalid ones get exactly zero gradient."""
    return masked_logsumexp(x, mask, dim=1).unsqueeze(1)  # (B, 1)


def _count(neg: Tensor, mask: Tensor | None) -> Tensor:
    """N, the number of valid negatives of each anchor, (B, 1) in neg's dtype."""
    if mask is None:
        return torch.full((neg.shape[0], 1), float(neg.shape[1]), dtype=neg.dtype, device=neg.device)
    return mask.sum(dim=1, keepdim=True).to(neg.dtype)  # (B, 1)


def _identity(x: Tensor) -> Tensor:
    return x


def _debiased(logit_pos: Tensor, log_neg: Tensor, count: Tensor, tau_plus: float, temperature: float) -> Tensor:
    """Debiased InfoNCE of each (anchor, positive), (B, P), from logs, without overflow.

    ``Ng = max((e^b - tau+ N e^a) / (1 - tau+), N e^(-1/t))`` and ``-log(e^a / (e^a + Ng))``
    with ``a = s+/t`` (B, P) and ``b = log_neg`` (B, 1) the log of the negatives' (reweighted)
    sum. Both are scaled by e^-m, m the larger of a and b (detached: the value does not
    depend on m, and the clamp's side neither).
    """
    m = torch.maximum(logit_pos, log_neg).detach()  # (B, P)
    pos_term = (logit_pos - m).exp()  # (B, P), <= 1
    estimate = ((log_neg - m).exp() - tau_plus * count * pos_term) / (1.0 - tau_plus)  # (B, P)
    floor = count * (-1.0 / temperature - m).exp()  # (B, P): N e^(-1/t), the least sum s >= -1 allows
    ng = torch.where(estimate > floor, estimate, floor)  # clamped rows: zero gradient to the negatives
    return (pos_term + ng).log() + m - logit_pos  # (B, P)


# --------------------------------------------------------------------------- Chuang et al. 2020
class DebiasedContrastiveLoss(ContrastiveLossBase):
    """Debiased contrastive loss (Chuang et al., NeurIPS 2020, arXiv:2007.00224).

    Some "negatives" share the anchor's class (probability tau+). The loss replaces the sum
    over the negatives by an estimate of the sum over the TRUE negatives:
    ``Ng = max((sum_k e^(s_k/t) - tau+ N e^(s+/t)) / (1 - tau+), N e^(-1/t))``,
    ``L = -log(e^(s+/t) / (e^(s+/t) + Ng))``, where N is the number of negatives the anchor
    actually has (its valid negatives under the mask). The clamp keeps Ng at least its
    value for negatives at s = -1. With tau+ = 0 it is the contrastive loss (Eq 1); unclamped,
    its relative penalty is Eq 5's.

    Reference code: chingyaoc/DCL ``main.py`` (t = 0.5, tau+ = 0.1, batch 256, Adam 1e-3).
    Code and paper: the code hard-codes N = 2B - 2 (in-batch SimCLR pairs); here N is
    the count of valid negatives, so a memory bank or a queue gets the right estimate.

    Args:
        temperature: t > 0 (the reference: 0.5).
        tau_plus: class prior tau+ in [0, 1), the expected share of same-class negatives
            (the reference: 0.1; 1/C for C balanced classes).

    Example:
        >>> loss = DebiasedContrastiveLoss(temperature=0.5, tau_plus=0.0)  # tau+ = 0: Eq 1
        >>> pos, neg = torch.tensor([0.8]), torch.tensor([[0.1, 0.3]])
        >>> round(loss(pos, neg).item(), 4) == round(ContrastiveLoss(0.5)(pos, neg).item(), 4)
        True
    """

    key: ClassVar[str] = "debiased"
    title: ClassVar[str] = "debiased contrastive loss"
    tempered: ClassVar[bool] = True
    hard: ClassVar[bool] = False
    source: ClassVar[str] = "Chuang et al. 2020, arXiv:2007.00224"
    needs_in_batch: ClassVar[bool] = False

    def __init__(self, temperature: float = 0.5, tau_plus: float = 0.1) -> None:
        super().__init__()
        self.temperature = _positive("temperature", temperature, "the reference uses 0.5")
        self.tau_plus = _class_prior(tau_plus)

    def _log_negatives(self, neg: Tensor, mask: Tensor | None) -> Tensor:
        return _lse(neg / self.temperature, mask)  # (B, 1)

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        log_neg = self._log_negatives(neg, mask)  # (B, 1)
        per = _debiased(pos / self.temperature, log_neg, _count(neg, mask), self.tau_plus, self.temperature)
        return per.mean(dim=1)  # (B,)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, tau_plus={self.tau_plus}"


# --------------------------------------------------------------------------- Robinson et al. 2021
class HardNegativeContrastiveLoss(DebiasedContrastiveLoss):
    """Hard negative sampling, HCL (Robinson et al., ICLR 2021, arXiv:2010.04592).

    The debiased loss with each negative reweighted by its hardness: importance weights
    ``w_k = e^(beta s_k/t) / mean_j e^(beta s_j/t)`` over the anchor's valid negatives,
    the sum ``sum_k e^(s_k/t)`` replaced by ``sum_k w_k e^(s_k/t)``, then
    ``Ng = max((that - tau+ N e^(s+/t)) / (1 - tau+), N e^(-1/t))`` and
    ``L = -log(e^(s+/t) / (e^(s+/t) + Ng))``. beta = 0 is the debiased loss; beta = 0 and
    tau+ = 0 the contrastive loss. The weights are not detached (as in the reference code),
    so the gradient also flows through them.

    Reference code: joshr17/HCL ``image/main.py`` (t = 0.5, tau+ = 0.1, beta = 1.0; an
    optional annealing of beta is not included). Code and paper: the code hard-codes
    N = 2B - 2 (here: the valid negatives); the paper writes the weights as
    e^(beta f(x)^T f(x-)), the code as e^(beta s/t), i.e. beta in units of the logit, which
    is what this class does. Its author notes (HCL issue 8) that beta is not a temperature:
    it acts on the negatives only, and is normalised across them.

    Args:
        temperature: t > 0 (the reference: 0.5).
        tau_plus: class prior tau+ in [0, 1) (the reference: 0.1).
        beta: concentration on hard negatives, >= 0 (the reference: 1.0; 0 is the debiased loss).

    Example:
        >>> loss = HardNegativeContrastiveLoss(temperature=0.5, tau_plus=0.1, beta=0.0)  # beta 0: debiased
        >>> pos, neg = torch.tensor([0.8]), torch.tensor([[0.1, 0.3]])
        >>> round(loss(pos, neg).item(), 6) == round(DebiasedContrastiveLoss(0.5, 0.1)(pos, neg).item(), 6)
        True
    """

    key: ClassVar[str] = "hcl"
    title: ClassVar[str] = "hard negative contrastive loss (HCL)"
    source: ClassVar[str] = "Robinson et al. 2021, arXiv:2010.04592"

    def __init__(self, temperature: float = 0.5, tau_plus: float = 0.1, beta: float = 1.0) -> None:
        super().__init__(temperature=temperature, tau_plus=tau_plus)
        self.beta = _non_negative("beta", beta, "the concentration on hard negatives; the reference uses 1.0")

    def _log_negatives(self, neg: Tensor, mask: Tensor | None) -> Tensor:
        logits = neg / self.temperature  # (B, K)
        # log(sum_k w_k e^(s_k/t)) with w_k = e^(beta l_k) / mean_j e^(beta l_j)
        return _lse((1.0 + self.beta) * logits, mask) - _lse(self.beta * logits, mask) + _count(neg, mask).log()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, tau_plus={self.tau_plus}, beta={self.beta}"


# --------------------------------------------------------------------------- Yeh et al. 2022
class DecoupledContrastiveLoss(ContrastiveLossBase):
    """Decoupled contrastive loss, DCL (Yeh et al., ECCV 2022, arXiv:2110.06848).

    The positive leaves the denominator: ``L = -s+/t + log sum_k e^(s_k/t)`` over the
    valid negatives. InfoNCE's gradient carries the factor 1 - P+ (small once the positive
    dominates, the "negative-positive coupling"); here the positive's gradient is -1/t
    whatever the negatives, and a negative's is its softmax share over the negatives alone,
    so the relative penalty is Eq 5's.

    Reference code (no official release): lightly ``lightly/loss/dcl_loss.py`` (t = 0.1).
    Code and paper: before lightly's PR 1827 the code summed two log-sum-exps, one per
    view of the negatives, instead of one over all negatives; this follows the paper's
    Eq 6 (one sum over all negatives, as lightly does since the fix).

    Args:
        temperature: t > 0 (lightly's default: 0.1).

    Example:
        >>> loss = DecoupledContrastiveLoss(temperature=0.5)  # -s+/t + log(e^(s1/t) + e^(s2/t))
        >>> round(loss(torch.tensor([0.8]), torch.tensor([[0.1, 0.3]])).item(), 3)
        -0.487
    """

    key: ClassVar[str] = "dcl"
    title: ClassVar[str] = "decoupled contrastive loss (DCL)"
    tempered: ClassVar[bool] = True
    hard: ClassVar[bool] = False
    source: ClassVar[str] = "Yeh et al. 2022, arXiv:2110.06848"
    needs_in_batch: ClassVar[bool] = False

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = _positive("temperature", temperature, "lightly uses 0.1")

    def weights(self, pos: Tensor) -> Tensor | float:
        """The positive term's weight w for positives (B, P): 1 here."""
        return 1.0

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        per = -self.weights(pos) * pos / self.temperature + _lse(neg / self.temperature, mask)  # (B, P)
        return per.mean(dim=1)  # (B,)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class WeightedDecoupledContrastiveLoss(DecoupledContrastiveLoss):
    """Weighted decoupled contrastive loss, DCLW (Yeh et al., ECCV 2022, arXiv:2110.06848).

    DCL with the positive term weighted by a negative von Mises-Fisher factor:
    ``L = -w s+/t + log sum_k e^(s_k/t)``, ``w = 2 - e^(s+/sigma) / mean e^(s+/sigma)``,
    the mean over the GLOBAL batch's positives (every process's, through ``gather``), and w
    detached. Pairs whose views already agree get less weight (w < 1), the others more.
    With several positives per anchor the mean runs over all of them.

    Reference code: lightly ``lightly/loss/dcl_loss.py`` (t = 0.1, sigma = 0.5), whose
    weight is ``2 - B softmax(s+/sigma)``, the same thing. Code and paper: lightly
    normalises over each process's batch, the paper over the batch; this normalises over
    the global batch, so 1 and N processes give the same loss. Another public version
    (raminnakhli) omits the factor B.

    Args:
        temperature: t > 0 (lightly: 0.1).
        sigma: the weight's scale, > 0 (the paper and lightly: 0.5).

    Example:
        >>> loss = WeightedDecoupledContrastiveLoss(temperature=0.1, sigma=0.5)
        >>> loss.weights(torch.tensor([[0.9], [0.1]])).flatten()  # the aligned pair weighs less; mean 1
        tensor([0.3360, 1.6640])
    """

    key: ClassVar[str] = "dclw"
    title: ClassVar[str] = "weighted decoupled contrastive loss (DCLW)"
    #: the module sets :attr:`gather` to collect a tensor from every process
    uses_global_batch: ClassVar[bool] = True

    def __init__(self, temperature: float = 0.1, sigma: float = 0.5) -> None:
        super().__init__(temperature=temperature)
        self.sigma = _positive("sigma", sigma, "the von Mises-Fisher weight's scale; the paper uses 0.5")
        self.gather: Callable[[Tensor], Tensor] = _identity

    def weights(self, pos: Tensor) -> Tensor:
        """w = 2 - e^(s+/sigma) / mean e^(s+/sigma) for positives (B, P), the mean over the global batch; detached."""
        scaled = pos.detach() / self.sigma  # (B, P)
        everyone = self.gather(scaled).reshape(-1)  # (W*B*P,) the global batch's positives
        log_mean = torch.logsumexp(everyone, dim=0) - math.log(everyone.numel())
        return 2.0 - (scaled - log_mean).exp()  # (B, P)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, sigma={self.sigma}"


# --------------------------------------------------------------------------- Zhang et al. 2022
def _log_one_minus_p(logit_pos: Tensor, log_neg: Tensor) -> Tensor:
    """log(1 - P+) with P+ = e^a / (e^a + e^b): ``b - logaddexp(a, b)``, exact as P+ -> 1."""
    return log_neg - torch.logaddexp(logit_pos, log_neg)


class DualTemperatureLoss(ContrastiveLossBase):
    """Dual temperature InfoNCE (Zhang et al., CVPR 2022, arXiv:2203.17248).

    InfoNCE at t (intra-anchor hardness: which negatives) scaled, per anchor, by a
    stop-gradient factor computed at t * dt_m (inter-anchor hardness: which anchors):
    ``L = sg[(1 - P_e) / (1 - P_a)] * (-log P_a)``, P_a the softmax share of the positive
    at t, P_e the same at t * dt_m. With dt_m = 1 the factor is 1 and the loss is Eq 1;
    the factor is per anchor, so the relative penalty over the negatives is Eq 5's at t.

    Reference code: ChaoningZhang/Dual-temperature ``solo/losses/dual_temperature_loss.py``
    (t = 0.1, dt_m = 10). Code and paper: the code's negatives are the other images' key
    view only (B - 1 per anchor, SimMoCo); here they are whatever the source gives.

    Args:
        temperature: the intra-anchor temperature t > 0 (the reference: 0.1).
        dt_m: the inter-anchor temperature's multiple of t, > 0 (the reference: 10).

    Example:
        >>> loss = DualTemperatureLoss(temperature=0.1, dt_m=1.0)  # dt_m 1: the contrastive loss
        >>> pos, neg = torch.tensor([0.8]), torch.tensor([[0.1, 0.3]])
        >>> round(loss(pos, neg).item(), 6) == round(ContrastiveLoss(0.1)(pos, neg).item(), 6)
        True
    """

    key: ClassVar[str] = "dual_temperature"
    title: ClassVar[str] = "dual temperature loss"
    tempered: ClassVar[bool] = True
    hard: ClassVar[bool] = False
    source: ClassVar[str] = "Zhang et al. 2022, arXiv:2203.17248"
    needs_in_batch: ClassVar[bool] = False

    def __init__(self, temperature: float = 0.1, dt_m: float = 10.0) -> None:
        super().__init__()
        self.temperature = _positive("temperature", temperature, "the reference uses 0.1")
        self.dt_m = _positive("dt_m", dt_m, "the inter-anchor temperature is temperature * dt_m; the reference "
                                            "uses 10, 1 is the contrastive loss")

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        t_a, t_e = self.temperature, self.temperature * self.dt_m
        log_neg_a = _lse(neg / t_a, mask)  # (B, 1)
        with torch.no_grad():
            log_neg_e = _lse(neg / t_e, mask)  # (B, 1)
            factor = (_log_one_minus_p(pos / t_e, log_neg_e) - _log_one_minus_p(pos / t_a, log_neg_a)).exp()
        nll = torch.logaddexp(pos / t_a, log_neg_a) - pos / t_a  # (B, P): -log P_a
        return (factor * nll).mean(dim=1)  # (B,)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, dt_m={self.dt_m}"


# --------------------------------------------------------------------------- Huang et al. 2023
class ModelAwareContrastiveLoss(ContrastiveLossBase):
    """Model-aware contrastive loss, MACL (Huang et al., ICML 2023, arXiv:2207.07874).

    The temperature follows the alignment: ``t_A = t0 (1 + alpha (A - A0))`` with A the
    mean positive similarity of the (global) batch, detached: a poorly aligned model gets a
    small temperature (uniformity first), a well aligned one a larger one (tolerance). The
    loss at t_A is reweighted by ``V = 1 / (1 - P+ + eps)``, detached, against the gradient
    shrinking as P+ -> 1: ``L = -sg[V] log P+``. The relative penalty is Eq 5's at t_A.

    Reference code: lightly ``lightly/loss/macl_loss.py`` (t0 = 0.1, alpha = 0.5, A0 = 0,
    eps = 1e-8). Code and paper: lightly averages the alignment over each process's batch;
    this averages over the global batch (through ``gather``), so 1 and N processes agree.
    lightly accepts any alpha in [0, 1] and A0 in [0, 1], which can make t_A <= 0 when the
    alignment is poor (alpha (1 + A0) >= 1); this refuses such pairs.

    Args:
        temperature: the base temperature t0 > 0 (the reference: 0.1).
        alpha: how strongly the temperature follows the alignment, >= 0 (the reference: 0.5).
        a0: the alignment at which t_A = t0, in [0, 1] (the reference: 0).

    Example:
        >>> loss = ModelAwareContrastiveLoss(temperature=0.1, alpha=0.5, a0=0.0)
        >>> value = loss(torch.tensor([0.8, 0.4]), torch.tensor([[0.1, 0.3], [0.2, 0.0]]))
        >>> round(loss.current_temperature().item(), 4)  # 0.1 (1 + 0.5 * mean(0.8, 0.4))
        0.13
    """

    key: ClassVar[str] = "macl"
    title: ClassVar[str] = "model-aware contrastive loss (MACL)"
    tempered: ClassVar[bool] = True
    hard: ClassVar[bool] = False
    source: ClassVar[str] = "Huang et al. 2023, arXiv:2207.07874"
    needs_in_batch: ClassVar[bool] = False
    uses_global_batch: ClassVar[bool] = True

    #: the reference's guard against 1 - P+ = 0
    eps: ClassVar[float] = 1e-8

    def __init__(self, temperature: float = 0.1, alpha: float = 0.5, a0: float = 0.0) -> None:
        super().__init__()
        self.base_temperature = _positive("temperature", temperature, "the base temperature t0; the reference "
                                                                      "uses 0.1")
        self.alpha = _non_negative("alpha", alpha, "the reference uses 0.5")
        self.a0 = _number("a0", a0, "the reference uses 0")
        if not 0 <= self.a0 <= 1:
            raise ValueError(f"a0 must be in [0, 1] (the reference uses 0), got {a0}")
        if self.alpha * (1 + self.a0) >= 1:
            raise ValueError(f"alpha * (1 + a0) must be < 1 so that the temperature t0 (1 + alpha (A - a0)) stays > 0 "
                             f"for every alignment A >= -1, got alpha={alpha}, a0={a0}; the reference uses 0.5 and 0")
        self.gather: Callable[[Tensor], Tensor] = _identity
        self.register_buffer("_last_temperature", torch.tensor(self.base_temperature), persistent=False)

    @property
    def temperature(self) -> float:
        """The base temperature t0 (the run's label); :meth:`current_temperature` is the adaptive one."""
        return self.base_temperature

    def adaptive_temperature(self, pos: Tensor) -> Tensor:
        """t_A of a batch of positives (B, P), a detached 0-dim tensor (the global batch's mean alignment)."""
        alignment = self.gather(pos.detach()).mean()
        return self.base_temperature * (1.0 + self.alpha * (alignment - self.a0))

    def current_temperature(self) -> Tensor:
        """t_A of the last batch seen by :meth:`forward` (t0 before the first), a 0-dim tensor."""
        return self._last_temperature

    def forward(self, sims: Similarities | Tensor, neg: Tensor | None = None) -> Tensor:
        sims = as_similarities(sims, neg)
        value = super().forward(sims)
        # kept for train/temperature: the t that _per_anchor computed (computing it again here would
        # cost a second gather of the positives under DDP)
        self._last_temperature = self._computed_temperature
        return value

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        t = self.adaptive_temperature(pos)  # 0-dim, no gradient
        self._computed_temperature = t
        logit_pos = pos / t  # (B, P)
        log_neg = _lse(neg / t, mask)  # (B, 1)
        log_p = logit_pos - torch.logaddexp(logit_pos, log_neg)  # (B, P)
        with torch.no_grad():
            weight = 1.0 / (_log_one_minus_p(logit_pos, log_neg).exp() + self.eps)  # (B, P): V
        return (-weight * log_p).mean(dim=1)  # (B,)

    def extra_repr(self) -> str:
        return f"temperature={self.base_temperature}, alpha={self.alpha}, a0={self.a0}"


# --------------------------------------------------------------------------- Kukleva et al. 2023
class CosineTemperatureSchedule(ContrastiveLossBase):
    """A tempered loss whose temperature follows a cosine over the epochs (Kukleva et al., ICLR 2023).

    Kukleva et al., "Temperature Schedules for Self-Supervised Contrastive Methods on
    Long-Tail Data", arXiv:2303.13664. At epoch e the wrapped loss runs at
    ``t(e) = t_min + (t_max - t_min) (1 + cos(pi e / T)) / 2``: t_max at epoch 0, t_min
    at epoch T, back to t_max at 2T (a period of 2T epochs), switching between group-wise
    (large t) and instance discrimination (small t). The module calls :meth:`set_epoch` at
    the start of each epoch and logs ``train/temperature`` each step. Any loss whose
    ``temperature`` is a plain attribute can be wrapped (the contrastive loss by default,
    as the paper); its own temperature value is replaced.

    Reference code: Annusha/temperature_schedules ``train_simCLR.py`` (t_min = 0.1,
    t_max = 1.0, T = 200 in the README's commands; the argument parser's t_max default is
    0.5), where the epoch is an integer, as here.

    Args:
        loss: the tempered loss to schedule; None is the contrastive loss (Eq 1).
        temperature_min: t_min > 0 (the reference: 0.1).
        temperature_max: t_max >= t_min (the reference: 1.0).
        half_period: T, the epochs from t_max down to t_min, >= 1 (the reference: 200).

    Example:
        >>> schedule = CosineTemperatureSchedule(temperature_min=0.1, temperature_max=1.0, half_period=200)
        >>> [round(schedule.temperature_at(epoch), 3) for epoch in (0, 100, 200, 400)]
        [1.0, 0.55, 0.1, 1.0]
    """

    key: ClassVar[str] = "cosine_temperature"
    title: ClassVar[str] = "contrastive loss, cosine temperature schedule"
    tempered: ClassVar[bool] = True
    hard: ClassVar[bool] = False
    source: ClassVar[str] = "Kukleva et al. 2023, arXiv:2303.13664"
    needs_in_batch: ClassVar[bool] = False

    def __init__(self, loss: ContrastiveLossBase | None = None, temperature_min: float = 0.1,
                 temperature_max: float = 1.0, half_period: int = 200) -> None:
        super().__init__()
        self.temperature_min = _positive("temperature_min", temperature_min, "the reference uses 0.1")
        self.temperature_max = _positive("temperature_max", temperature_max, "the reference uses 1.0")
        if self.temperature_max < self.temperature_min:
            raise ValueError(f"temperature_max must be >= temperature_min, got {temperature_max} < {temperature_min}")
        if isinstance(half_period, bool) or not isinstance(half_period, int) or half_period < 1:
            raise ValueError(f"half_period must be an integer >= 1 (epochs from t_max to t_min; the reference uses "
                             f"200), got {half_period!r}")
        self.half_period = half_period
        inner = loss if loss is not None else ContrastiveLoss(temperature=self.temperature_max)
        if not isinstance(inner, ContrastiveLossBase) or isinstance(inner, CosineTemperatureSchedule):
            raise ValueError(f"loss must be one tempered loss of this suite, got {type(inner).__name__}")
        if inner.temperature is None or isinstance(getattr(type(inner), "temperature", None), property):
            raise ValueError(f"{type(inner).__name__} has no fixed temperature to schedule; wrap a tempered loss "
                             "such as lightning_modules.losses.ContrastiveLoss")
        self.loss = inner
        self.epoch = 0
        self.set_epoch(0)

    def temperature_at(self, epoch: int) -> float:
        """t(epoch) of the cosine schedule."""
        cosine = math.cos(math.pi * epoch / self.half_period)
        return self.temperature_min + 0.5 * (self.temperature_max - self.temperature_min) * (1.0 + cosine)

    def set_epoch(self, epoch: int) -> None:
        """Move the wrapped loss to the temperature of ``epoch`` (the module calls it at each epoch's start)."""
        self.epoch = int(epoch)
        self.loss.temperature = self.temperature_at(self.epoch)

    @property
    def temperature(self) -> float:
        """The wrapped loss's current temperature."""
        return self.loss.temperature

    def current_temperature(self) -> float:
        return self.loss.temperature

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        return self.loss._per_anchor(pos, neg, mask)

    def positive_in_hard_set(self, *args, **kwargs):  # noqa: D102 - the wrapped loss's
        return self.loss.positive_in_hard_set(*args, **kwargs)

    def extra_repr(self) -> str:
        return (f"temperature_min={self.temperature_min}, temperature_max={self.temperature_max}, "
                f"half_period={self.half_period}, epoch={self.epoch}")


# --------------------------------------------------------------------------- CLIP
class LearnableTemperatureLoss(ContrastiveLossBase):
    """The contrastive loss (Eq 1) with a learned temperature, as in CLIP (Radford et al. 2021, arXiv:2103.00020).

    ``logit_scale = log(1/t)`` is a parameter, trained with the encoder (without weight
    decay, as CLIP's training code excludes it), starting at log(1/0.07). It is clamped to
    ``[log(1/t_max), log(1/t_min)]`` in place at the start of each :meth:`forward`, which is
    CLIP's clamp after each optimiser step (logits scaled by at most 100: t_min = 0.01)
    deferred to the next step. A clamp inside the graph would zero its gradient at and beyond
    the bound (``torch.clamp``'s), leaving it stuck there; the graph only takes the clamped
    value with the identity's gradient, for calls that skip :meth:`forward`. The loss is
    Eq 1 at t = e^(-logit_scale); the module logs t each step.

    Reference: the CLIP paper, section 2.5; open_clip's training loop clamps to [0, log 100]
    (t in [0.01, 1]), the defaults here.

    Args:
        temperature: the initial temperature (CLIP: 0.07), within the bounds.
        temperature_min: the least temperature, > 0 (CLIP: 0.01, i.e. logits scaled by at most 100).
        temperature_max: the largest temperature (open_clip: 1).

    Example:
        >>> loss = LearnableTemperatureLoss(temperature=0.07)
        >>> [name for name, _ in loss.named_parameters()], round(loss.temperature, 4)
        (['logit_scale'], 0.07)
    """

    key: ClassVar[str] = "learnable_temperature"
    title: ClassVar[str] = "contrastive loss, learned temperature"
    tempered: ClassVar[bool] = True
    hard: ClassVar[bool] = False
    source: ClassVar[str] = "Radford et al. 2021, arXiv:2103.00020"
    needs_in_batch: ClassVar[bool] = False

    def __init__(self, temperature: float = 0.07, temperature_min: float = 0.01, temperature_max: float = 1.0) -> None:
        super().__init__()
        self.temperature_min = _positive("temperature_min", temperature_min, "CLIP uses 0.01")
        self.temperature_max = _positive("temperature_max", temperature_max, "open_clip uses 1.0")
        initial = _positive("temperature", temperature, "the initial temperature; CLIP uses 0.07")
        if not self.temperature_min <= initial <= self.temperature_max:
            raise ValueError(f"temperature must be within [temperature_min, temperature_max] = "
                             f"[{temperature_min}, {temperature_max}], got {temperature}")
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / initial)))

    def _bounds(self) -> tuple[float, float]:
        return math.log(1.0 / self.temperature_max), math.log(1.0 / self.temperature_min)

    def forward(self, sims: Similarities | Tensor, neg: Tensor | None = None) -> Tensor:
        with torch.no_grad():  # before the graph is built: the step's backward sees no in-place change
            self.logit_scale.clamp_(*self._bounds())
        return super().forward(sims, neg)

    @property
    def temperature(self) -> float:
        """The current temperature to 6 significant digits (a label: 0.07, not the fp32 parameter's
        0.0700000003); it reads the device, so the training step logs :meth:`current_temperature` instead."""
        return float(f"{float(self.current_temperature()):.6g}")

    def current_temperature(self) -> Tensor:
        """The current temperature, a detached 0-dim tensor (no host sync)."""
        return (-self.logit_scale.detach().clamp(*self._bounds())).exp()

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        # the clamped value with the identity's gradient (torch.clamp's is 0 at the bound: stuck there)
        logit_scale = self.logit_scale + (self.logit_scale.clamp(*self._bounds()) - self.logit_scale).detach()
        scale = logit_scale.exp().to(device=neg.device, dtype=neg.dtype)  # 1/t, with gradient (Fig 3: on the CPU)
        margin = _lse(neg * scale, mask) - pos * scale  # (B, P)
        return torch.logaddexp(margin, torch.zeros_like(margin)).mean(dim=1)  # (B,)

    def extra_repr(self) -> str:
        return f"temperature_min={self.temperature_min}, temperature_max={self.temperature_max}"


# --------------------------------------------------------------------------- Wang & Isola 2020
class AlignUniformLoss(ContrastiveLossBase):
    """Alignment and uniformity (Wang & Isola, ICML 2020, arXiv:2005.10242).

    For unit vectors ``||x - y||^2 = 2 - 2s``. Alignment pulls the positive pair together:
    ``align_i = (2 - 2 s+)^(alpha/2)``; uniformity spreads the batch with a Gaussian
    potential over its pairs: ``unif = log mean_(i,k) e^(-t (2 - 2 s_ik))`` over every
    anchor's valid in-batch negatives. ``L = mean_i align_i + lam unif``; :meth:`per_anchor`
    gives each anchor its own alignment plus the shared ``lam unif`` (the uniformity is a
    log of a batch mean, not a sum over anchors). The relative penalty of row i is
    ``softmax(2 t s_ik)`` over k: the contrastive loss's at temperature 1/(2t) = 0.25.

    It needs in-batch keys: uniformity is a property of the batch's own embeddings, which
    a bank's or a queue's stale keys are not (the module refuses them at setup).

    Reference code: SsnL/align_uniform ``align_uniform/__init__.py`` and its STL-10 example
    (alpha = 2, t = 2, weights 1 and 1). Code and this class: the reference averages the two
    views' separate uniformities (pairs within view 1, pairs within view 2); the in-batch
    record pools both views, so the pairs here are every two views of different images
    (within and across views), each pair's kernel as in the reference. Each process averages
    over its own anchors against the global batch's keys, as the reference does per process.

    Args:
        alpha: the alignment exponent, > 0 (the reference: 2).
        t: the uniformity kernel's scale, > 0 (the reference: 2).
        lam: the uniformity's weight, > 0 (the reference: 1).

    Example:
        >>> loss = AlignUniformLoss()  # alpha = 2, t = 2, lam = 1
        >>> sims = Similarities(torch.tensor([[1.0]]), torch.tensor([[-1.0]]))  # views agree, other image opposite
        >>> loss(sims).item()  # alignment 0 + log e^(-2 * 4)
        -8.0
    """

    key: ClassVar[str] = "align_uniform"
    title: ClassVar[str] = "alignment + uniformity"
    tempered: ClassVar[bool] = False
    hard: ClassVar[bool] = False
    source: ClassVar[str] = "Wang & Isola 2020, arXiv:2005.10242"
    needs_in_batch: ClassVar[bool] = True

    def __init__(self, alpha: float = 2.0, t: float = 2.0, lam: float = 1.0) -> None:
        super().__init__()
        self.alpha = _positive("alpha", alpha, "the alignment exponent; the reference uses 2")
        self.t = _positive("t", t, "the uniformity kernel's scale; the reference uses 2")
        self.lam = _positive("lam", lam, "the uniformity's weight; the reference uses 1")

    def uniformity(self, neg: Tensor, mask: Tensor | None = None) -> Tensor:
        """``log mean e^(-t (2 - 2 s))`` over every valid (anchor, negative) pair, a 0-dim tensor."""
        kernel = (2.0 * self.t) * (neg - 1.0)  # (B, K): -t ||x - y||^2
        flat = kernel.reshape(1, -1)  # (1, B*K)
        flat_mask = None if mask is None else mask.reshape(1, -1)
        return (_lse(flat, flat_mask) - _count(flat, flat_mask).log()).reshape(())

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        distance_sq = (2.0 - 2.0 * pos).clamp(min=0.0)  # (B, P); s+ may exceed 1 by rounding
        align = distance_sq.pow(self.alpha / 2.0).mean(dim=1)  # (B,)
        return align + self.lam * self.uniformity(neg, mask)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, t={self.t}, lam={self.lam}"
