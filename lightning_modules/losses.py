"""The four losses of the paper (section 3, Table 1): contrastive, simple, hard contrastive, hard simple.

Wang & Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021, arXiv:2012.09740.

Every loss takes the record a negatives' source produces,
:class:`~lightning_modules.similarities.Similarities`: ``pos`` (B, P), ``neg`` (B, K), an
optional mask of valid negatives and their dataset indices; the old pair ``loss(pos, neg)``
with ``pos`` (B,) and ``neg`` (B, K) still works. It returns the mean over the B anchors of
the per-anchor loss (:meth:`ContrastiveLossBase.per_anchor` gives the (B,) vector). The
losses know nothing about where the negatives come from. The relative penalty of any loss is
derived from its gradient (:meth:`ContrastiveLossBase.relative_penalty`).

Numerics: inputs are upcast to at least fp32 (float64 stays float64), so the losses
are safe under bf16/fp16 autocast; Eq 1 is evaluated as
``log(1 + exp(logsumexp_k(s_ik / t) - s_ii / t))`` (``torch.logaddexp`` with 0), which never concatenates the positive
onto the (B, K) matrix, does not overflow at t = 0.01 and keeps small losses accurate.
The hard losses drop unselected negatives with ``torch.topk`` (fixed K) or with a
per-row threshold and ``torch.where`` (quantile alpha), and masked negatives with
``torch.where`` (:func:`masked_logsumexp`), so their gradient is exactly zero and no
``-inf`` padding is used. No Python loop over the batch and no host sync in forward.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from lightning_modules.similarities import Similarities, as_similarities

__all__ = ["ContrastiveLossBase", "ContrastiveLoss", "SimpleContrastiveLoss", "HardContrastiveLoss",
           "HardSimpleContrastiveLoss", "Similarities", "masked_logsumexp", "relative_penalty",
           "relative_penalty_entropy"]


def _at_least_fp32(x: Tensor) -> Tensor:
    # bf16/fp16 (autocast) -> fp32; fp64 is kept, which lets tests use gradcheck
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a number > 0 (the paper uses 0.07 to 1.0), got {temperature!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be > 0 and finite (the paper uses 0.07 to 1.0), got {temperature}")
    return float(temperature)


def _check_lam(lam: float | None) -> float | None:
    if lam is None:
        return None
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be > 0 and finite, or null for 1/K (the mean over the negatives), got {lam!r}")
    return float(lam)


# --------------------------------------------------------------------------- Eq 5
def _check_penalty_args(neg: Tensor, temperature: float) -> None:
    """The checks Eq 5's functions share: neg is (B, K) with K >= 1 and tau > 0."""
    if neg.dim() != 2:
        raise ValueError(f"neg must be 2-D (N, d), got shape {tuple(neg.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if neg.shape[1] < 1:
        raise ValueError("neg needs at least one negative per anchor, got K = 0")


def relative_penalty(neg: Tensor, temperature: float) -> Tensor:
    """Relative penalty of Eq 5: ``r_i(s_ij) = exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau)``.

    Args:
        neg: negative similarities (B, K), one row per anchor.
        temperature: tau > 0.

    Returns:
        (B, K), each row a distribution over that anchor's negatives.
    """
    _check_penalty_args(neg, temperature)
    return torch.softmax(_at_least_fp32(neg) / temperature, dim=1)


def relative_penalty_entropy(pos: Tensor, neg: Tensor, temperature: float) -> Tensor:
    """Mean over anchors of the entropy (nats) of Eq 5's distribution r_i; falls as tau falls.

    Between 0 (all penalty on one negative, tau -> 0+) and log K (uniform, tau -> inf).

    Args:
        pos: positive similarities (B,) or (B, 1); unused (r_i does not depend on it),
            accepted so that callers pass a loss's (pos, neg) pair and shapes get checked.
        neg: negative similarities (B, K).
        temperature: tau > 0.

    Returns:
        A scalar tensor.
    """
    _check_penalty_args(neg, temperature)
    if pos.numel() != neg.shape[0] or pos.dim() > 2 or (pos.dim() == 2 and pos.shape[1] != 1):
        raise ValueError(f"pos must have shape ({neg.shape[0]},) or ({neg.shape[0]}, 1) to match neg "
                         f"{tuple(neg.shape)}, got {tuple(pos.shape)}")
    log_r = torch.log_softmax(_at_least_fp32(neg) / temperature, dim=1)  # (B, K)
    entropy = torch.special.entr(log_r.exp()).sum(dim=1)  # (B,); entr(0) = 0, where r * log r would give nan
    return entropy.mean()


def masked_logsumexp(x: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """``log sum_j exp(x_j)`` over the entries where ``mask`` is True, along ``dim``.

    Masked-out entries get exactly zero gradient and never meet ``-inf`` or an overflow (they are
    replaced before the exponential, so the backward pass has no ``0 * inf``). A slice with no
    valid entry gives ``-inf`` (the log of an empty sum); a record never has one
    (:meth:`Similarities.check_values <lightning_modules.similarities.Similarities.check_values>`).

    Args:
        x: the values, any shape.
        mask: bool of ``x``'s shape, True = counted; None counts every entry (torch.logsumexp).
        dim: the dimension summed over.
    """
    if mask is None:
        return torch.logsumexp(x, dim=dim)
    low = torch.finfo(x.dtype).min
    top = torch.where(mask, x, torch.full_like(x, low)).amax(dim=dim, keepdim=True).detach()  # the valid maximum
    top = torch.where(top > low, top, torch.zeros_like(top))  # a slice with no valid entry: shift by 0
    shifted = torch.where(mask, x - top, torch.zeros_like(x))  # invalid entries never reach exp
    total = torch.where(mask, shifted.exp(), torch.zeros_like(x)).sum(dim=dim)
    return total.log() + top.squeeze(dim)


class ContrastiveLossBase(nn.Module):
    """Base class of the losses: ``loss(sims)`` is the mean over anchors of :meth:`per_anchor`.

    ``sims`` is a :class:`~lightning_modules.similarities.Similarities` record; the old call
    ``loss(pos, neg)`` with pos (B,) and neg (B, K) still works (a record with P = 1).

    Subclasses implement ``_per_anchor(pos, neg, mask)`` on at-least-fp32 inputs: pos (B, P),
    neg (B, K), mask (B, K) bool or None (None = every negative valid), returning (B,). It
    removes invalid negatives with ``torch.where`` (their gradient exactly zero; no ``-inf``
    leaves the loss, :func:`masked_logsumexp` helps), takes with P > 1 the mean over the
    positives of the one-positive loss unless its docstring says otherwise, and changes no
    state (the relative penalty calls it a second time). A loss sets :attr:`temperature` when
    it has one (whatever its constructor calls it; a property if it changes in training), and
    a hard loss overrides :meth:`positive_in_hard_set`.

    The relative penalty (:meth:`relative_penalty`, its entropy :meth:`penalty_entropy`) is
    derived here from any loss by autograd: ``r_ij = |dL_i/ds_ij| / sum_k |dL_i/ds_ik|``. It is
    Eq 5 for the contrastive loss, Eq 8 for the hard one, uniform for the simple one. Source:
    the paper's section 3 (Wang & Liu 2021, arXiv:2012.09740).

    Example:
        >>> class Margin(ContrastiveLossBase):  # a hinge on the hardest valid negative, no temperature
        ...     def _per_anchor(self, pos, neg, mask):  # an invalid s_ij becomes -2: never the hardest
        ...         return ((neg if mask is None else neg.where(mask, -2.0)).amax(1, True) - pos + 0.5).relu().mean(1)
        >>> sims = Similarities(torch.tensor([[0.9]]), torch.tensor([[0.1, 0.6, 0.8]]), torch.tensor([[1, 1, 0]]) > 0)
        >>> round(Margin()(sims).item(), 4), Margin().temperature, Margin().relative_penalty(sims).tolist()
        (0.2, None, [[0.0, 1.0, 0.0]])
    """

    #: the catalogue the scripts read (:func:`loss_classes`); every concrete loss sets the first five
    key: ClassVar[str]  # the Table 1 / report key and the preset's stem under configs/loss/
    title: ClassVar[str]  # the human label, e.g. "hard contrastive loss (Eq 9)"
    tempered: ClassVar[bool]  # has a temperature (an instance's `temperature` is its value)
    hard: ClassVar[bool]  # selects hard negatives
    source: ClassVar[str]  # the citation, e.g. "Wang & Liu 2021, arXiv:2012.09740"
    needs_in_batch: ClassVar[bool] = False  # works only with in-batch keys

    #: the loss's temperature tau (Eq 1, 9), or None for a loss without one (Eq 3)
    temperature: float | None = None

    def forward(self, sims: Similarities | Tensor, neg: Tensor | None = None) -> Tensor:
        """The loss averaged over the B anchors: a scalar, fp32 (fp64 for fp64 inputs).

        Args:
            sims: a :class:`~lightning_modules.similarities.Similarities` record, or pos (B,)
                (s_ii per anchor) of the old pair.
            neg: with the old pair, (B, K) negative similarities s_ij, K >= 1.
        """
        return self.per_anchor(sims, neg).mean()

    def per_anchor(self, sims: Similarities | Tensor, neg: Tensor | None = None) -> Tensor:
        """The loss of each anchor, (B,).

        Args:
            sims: a :class:`~lightning_modules.similarities.Similarities` record, or pos (B,).
            neg: with the old pair, (B, K) negative similarities.
        """
        sims = as_similarities(sims, neg)
        return self._per_anchor(_at_least_fp32(sims.pos), _at_least_fp32(sims.neg), sims.neg_mask)

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _per_anchor(pos, neg, mask)")

    def relative_penalty(self, sims: Similarities | Tensor, neg: Tensor | None = None) -> Tensor:
        """The share of each negative in its anchor's penalty, (B, K), rows summing to 1.

        ``r_ij = |dL_i/ds_ij| / sum_k |dL_i/ds_ik|`` over the valid negatives, 0 for the
        invalid ones, from this loss by autograd (in the inputs' precision, at least fp32): Eq 5
        for the contrastive loss. A row whose gradient is zero at every valid negative (say an
        anchor whose hinge is inactive) is defined as uniform over its valid negatives. It
        assumes L_i depends on row i's negatives only (true of every loss here). It runs a
        forward and backward pass of the loss: call it on logging steps only.

        Args:
            sims: a :class:`~lightning_modules.similarities.Similarities` record, or pos (B,).
            neg: with the old pair, (B, K) negative similarities.
        """
        sims = as_similarities(sims, neg)
        mask = sims.neg_mask
        with torch.enable_grad():
            neg = _at_least_fp32(sims.neg.detach()).requires_grad_(True)  # (B, K)
            per = self._per_anchor(_at_least_fp32(sims.pos.detach()), neg, mask)  # (B,)
            (grad,) = torch.autograd.grad(per.sum(), neg, allow_unused=True)
        size = torch.zeros_like(neg) if grad is None else grad.detach().abs()  # (B, K)
        valid = sims.valid()  # (B, K)
        size = torch.where(valid, size, torch.zeros_like(size))
        total = size.sum(dim=1, keepdim=True)  # (B, 1)
        uniform = valid.to(size.dtype) / valid.sum(dim=1, keepdim=True).clamp(min=1)  # (B, K)
        flat = total > 0  # (B, 1)
        return torch.where(flat, size / torch.where(flat, total, torch.ones_like(total)), uniform)

    def penalty_entropy(self, sims: Similarities | Tensor, neg: Tensor | None = None) -> Tensor:
        """Mean over the anchors of the entropy (nats) of :meth:`relative_penalty`'s rows, a scalar.

        Between 0 (the whole penalty on one negative) and log K (uniform, as the simple loss).

        Args:
            sims: a :class:`~lightning_modules.similarities.Similarities` record, or pos (B,).
            neg: with the old pair, (B, K) negative similarities.
        """
        r = self.relative_penalty(sims, neg)  # (B, K)
        return torch.special.entr(r).sum(dim=1).mean()  # entr(0) = 0, where r * log r would give nan

    def positive_in_hard_set(self, sims: Similarities | Tensor, neg: Tensor | None = None) -> Tensor | None:
        """Hard losses: fraction of anchors whose positive ranks among the kept negatives; None otherwise."""
        return None


def _contrastive(pos: Tensor, neg: Tensor, temperature: float, mask: Tensor | None = None) -> Tensor:
    """Eq 1 per anchor, (B,): pos (B, P), neg (B, K), the mean over the P positives."""
    # -log(e^a / (e^a + e^b)) = log(1 + e^(b - a)); logaddexp with 0 is accurate for tiny losses, never
    # overflows, and unlike F.softplus (linear above 20) keeps the gradient sigmoid(b - a) exact
    lse = masked_logsumexp(neg / temperature, mask, dim=1)  # (B,)
    if pos.shape[1] == 1:  # one positive (two views): no (B, 1) detour, the ops of the pair API
        margin = lse - pos[:, 0] / temperature  # (B,)
        return torch.logaddexp(margin, torch.zeros_like(margin))
    margin = lse.unsqueeze(1) - pos / temperature  # (B, P)
    return torch.logaddexp(margin, torch.zeros_like(margin)).mean(dim=1)  # (B,)


class ContrastiveLoss(ContrastiveLossBase):
    """The contrastive (InfoNCE) loss, Eq 1: ``-log(e^(s_ii/t) / (e^(s_ii/t) + sum_k e^(s_ik/t)))``.

    The gradient is Eq 4: ``-(1/t) sum_k P_ik`` for the positive and ``(1/t) P_ij``
    for a negative, where P is the softmax over the positive and the negatives (Eq 2).
    Source: Wang & Liu 2021 (arXiv:2012.09740), Eq 1; the InfoNCE form of van den Oord
    et al. 2018 (arXiv:1807.03748).

    Args:
        temperature: tau > 0; small values concentrate the penalty on the hardest
            negatives (the paper sweeps 0.07, 0.2, 0.3, 0.7, 1.0).

    Example:
        >>> loss = ContrastiveLoss(temperature=0.5)
        >>> pos, neg = torch.tensor([0.8, 0.2]), torch.tensor([[0.1, 0.3], [0.5, -0.2]])
        >>> round(loss(pos, neg).item(), 4), loss.penalty_entropy(pos, neg).item() > 0
        (0.8321, True)

        A record with a mask drops the masked negatives (row 1 below loses its -0.2):

        >>> sims = Similarities(pos.unsqueeze(1), neg, neg_mask=torch.tensor([[True, True], [True, False]]))
        >>> loss.per_anchor(sims)[1] == loss.per_anchor(pos[1:], neg[1:, :1])[0]
        tensor(True)
    """

    key = "contrastive"  # the catalogue (ContrastiveLossBase): Table 1 key, configs/loss/contrastive.yaml
    title = "contrastive loss (Eq 1)"
    tempered = True
    hard = False
    source = "Wang & Liu 2021, arXiv:2012.09740"

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        return _contrastive(pos, neg, self.temperature, mask)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class SimpleContrastiveLoss(ContrastiveLossBase):
    """The simple contrastive loss, Eq 3: ``-s_ii + lam * sum_j s_ij``.

    Every negative gets the same penalty ``lam``, whatever its similarity: the limit of
    Eq 1 as tau -> inf (Eq 7), up to scale and a constant. Source: Wang & Liu 2021
    (arXiv:2012.09740), Eq 3.

    Args:
        lam: weight of each negative, > 0; None uses 1/K, i.e. the mean over the
            negatives (the author's code).

    Example:
        >>> loss = SimpleContrastiveLoss()  # lam = 1/K: the mean over the negatives
        >>> round(loss(torch.tensor([0.8]), torch.tensor([[0.1, 0.3]])).item(), 4), loss.temperature
        (-0.6, None)
    """

    key = "simple"  # the catalogue (ContrastiveLossBase): Table 1 key, configs/loss/simple.yaml
    title = "simple contrastive loss (Eq 3, lambda = 1/K)"
    tempered = False
    hard = False
    source = "Wang & Liu 2021, arXiv:2012.09740"

    def __init__(self, lam: float | None = None) -> None:
        super().__init__()
        self.lam = _check_lam(lam)

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:
            total = neg.mean(dim=1) if self.lam is None else self.lam * neg.sum(dim=1)  # (B,)
        else:
            total = torch.where(mask, neg, torch.zeros_like(neg)).sum(dim=1)  # (B,); zero gradient off-mask
            total = total / mask.sum(dim=1).clamp(min=1) if self.lam is None else self.lam * total
        return total - (pos[:, 0] if pos.shape[1] == 1 else pos.mean(dim=1))  # mean over P of -s+ + lam sum s_j

    def extra_repr(self) -> str:
        return f"lam={'1/K' if self.lam is None else self.lam}"


class _HardNegatives:
    """Choice of the hardest negatives per anchor, shared by the two hard losses (a mixin).

    Fixed count: the ``num_negatives`` largest s_ij of each row (all of them if the row
    has fewer). Quantile: every s_ij at or above the row's upper-alpha quantile, i.e. the
    k-th largest with ``k = ceil(alpha * K)``; ties at the threshold are all kept, so a
    row may keep more than k.
    """

    num_negatives: int | None
    alpha: float | None

    def _init_selection(self, num_negatives: int | None, alpha: float | None) -> None:
        if (num_negatives is None) == (alpha is None):
            got = "neither" if num_negatives is None else f"num_negatives={num_negatives} and alpha={alpha}"
            raise ValueError(f"exactly one of num_negatives and alpha must be given, got {got}; e.g. "
                             f"num_negatives=4095 (the paper's nearest 4095) or alpha=0.0819, the other null")
        if num_negatives is not None:
            if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
                raise ValueError(f"num_negatives must be an integer >= 1 (e.g. 4095), got {num_negatives!r}")
        if alpha is not None:
            if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
                raise ValueError(f"alpha must be in (0, 1] (e.g. 0.0819 = 4095 of 50,000; 1 keeps all "
                                 f"negatives), got {alpha!r}")
            alpha = float(alpha)
        self.num_negatives = num_negatives
        self.alpha = alpha

    def quantile_count(self, num_available: int) -> int:
        """k = ceil(alpha * K) for K available negatives (the fixed count, capped at K, if no alpha)."""
        if self.alpha is None:
            return min(self.num_negatives, num_available)
        # round first: 0.0819 * 50000 must give 4095, not 4096 from a representation error
        return min(max(math.ceil(round(self.alpha * num_available, 6)), 1), num_available)

    def _quantile_counts(self, count: Tensor) -> Tensor:
        """:meth:`quantile_count` of a tensor of per-row counts of valid negatives (long, >= 1)."""
        wide = torch.float32 if count.device.type == "mps" else torch.float64  # fp32 would misround 4095.0000x
        k = torch.ceil(torch.round(self.alpha * count.to(wide), decimals=6)).long()
        return torch.minimum(k, count).clamp(min=1)

    def _hardest(self, neg: Tensor, mask: Tensor | None = None
                 ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The kept negatives as (values, keep, columns).

        A fixed count gives ``values`` (B, k) (from ``torch.topk``), their columns (B, k) in
        ``neg``, and ``keep`` (B, k) (which of them are valid) or None with no mask. A quantile
        gives ``neg`` itself, ``keep`` (B, K) and no columns; ``neg, None, None`` keeps all.
        With a mask only valid negatives are ranked, and the quantile counts a row's valid ones.
        """
        num_available = neg.shape[1]
        if mask is None:
            k = self.quantile_count(num_available)
            if k >= num_available:
                return neg, None, None  # every negative: identical to the ordinary loss
            if self.alpha is None:
                top = neg.topk(k, dim=1, sorted=False)  # (B, k); gradient flows to these only
                return top.values, None, top.indices
            # k-th largest = (K - k + 1)-th smallest; no gradient through the threshold
            threshold = neg.detach().kthvalue(num_available - k + 1, dim=1, keepdim=True).values  # (B, 1)
            return neg, neg >= threshold, None  # (B, K), (B, K)
        filled = torch.where(mask, neg.detach(), torch.full_like(neg, torch.finfo(neg.dtype).min))  # (B, K)
        if self.alpha is None:
            columns = filled.topk(min(self.num_negatives, num_available), dim=1, sorted=False).indices  # (B, k)
            return neg.gather(1, columns), mask.gather(1, columns), columns
        k = self._quantile_counts(mask.sum(dim=1, keepdim=True))  # (B, 1) per row: its valid negatives
        ranked = filled.sort(dim=1, descending=True).values  # (B, K)
        threshold = ranked.gather(1, k - 1)  # (B, 1) the k-th largest valid negative
        return neg, mask & (neg >= threshold), None  # (B, K), (B, K)

    @torch.no_grad()
    def select(self, neg: Tensor, mask: Tensor | None = None) -> Tensor:
        """Which negatives the loss uses: a (B, K) boolean mask, True for the chosen s_ij.

        Args:
            neg: (B, K) negative similarities s_ij.
            mask: (B, K) bool, the valid negatives (None: all).
        """
        if neg.dim() != 2 or neg.shape[1] < 1:
            raise ValueError(f"neg must be 2-D (B, K) with K >= 1, got shape {tuple(neg.shape)}")
        neg = _at_least_fp32(neg)
        _, keep, columns = self._hardest(neg, mask)
        if columns is None:
            if keep is not None:
                return keep
            return torch.ones_like(neg, dtype=torch.bool) if mask is None else mask.clone()
        chosen = torch.ones_like(columns, dtype=torch.bool) if keep is None else keep  # (B, k)
        return torch.zeros_like(neg, dtype=torch.bool).scatter_(1, columns, chosen)  # (B, K)

    @torch.no_grad()
    def positive_in_hard_set(self, sims: Similarities | Tensor, neg: Tensor | None = None) -> Tensor:
        """Fraction of anchors whose positive ranks among the chosen negatives (a scalar tensor).

        That is, ``s_ii`` is at least the smallest kept ``s_ij``: the positive is then no
        closer than the hardest negatives, the situation in which Eq 9's loss pulls the
        positive's gradient against its own nearest neighbours (and, in the author's
        selection, ``selection="all"``, the positive joins the denominator's set). With
        P > 1 positives, the fraction of (anchor, positive) pairs.

        Args:
            sims: a :class:`~lightning_modules.similarities.Similarities` record, or pos (B,).
            neg: with the old pair, (B, K) negative similarities.
        """
        sims = as_similarities(sims, neg)
        neg = _at_least_fp32(sims.neg.detach())
        if sims.neg_mask is None:
            k = self.quantile_count(neg.shape[1])
            threshold = neg.topk(k, dim=1).values[:, -1:]  # (B, 1) the k-th largest negative
        else:
            values, keep, _ = self._hardest(neg, sims.neg_mask)
            keep = torch.ones_like(values, dtype=torch.bool) if keep is None else keep
            top = torch.full_like(values, torch.finfo(values.dtype).max)
            threshold = torch.where(keep, values, top).amin(dim=1, keepdim=True)  # (B, 1) the smallest kept
        return (_at_least_fp32(sims.pos.detach()) >= threshold).float().mean()

    def _selection_repr(self) -> str:
        if self.alpha is None:
            return f"num_negatives={self.num_negatives}"
        return f"alpha={self.alpha}"


class HardContrastiveLoss(_HardNegatives, ContrastiveLossBase):
    """The hard contrastive loss, Eq 9: Eq 1 with the sum over the hardest negatives only.

    The positive is always kept; unselected negatives get exactly zero gradient and,
    among the selected ones, the relative penalty is the softmax over them (Eq 8).
    With ``num_negatives`` >= K or ``alpha = 1`` it is :class:`ContrastiveLoss`.
    Use :meth:`select` to see which negatives were chosen.

    Args:
        temperature: tau > 0 (the paper sweeps 0.07, 0.3, 0.7, 1.0).
        num_negatives: keep this many largest s_ij per anchor (the paper: 4095; all if K is smaller);
            exactly one of num_negatives and alpha.
        alpha: keep every s_ij at or above the anchor's upper-alpha quantile, the
            ceil(alpha * K)-th largest (ties included); in (0, 1], 1 keeps all
            (the paper prints 0.0819 CIFAR, 0.0315 SVHN, 0.034 ImageNet-100; the shipped presets use
            num_negatives=4095, the "nearest 4095" of its text, see docs/reproduce.md).
        selection: ``"negatives"`` (Eq 9: the hardest k negatives, the positive always
            added) or ``"all"`` (the first author's code: the largest k + 1 similarities
            among ALL keys, the positive included only when it ranks there; when it does
            not, the (k+1)-th negative takes its place in the denominator).

    Source: Wang & Liu 2021 (arXiv:2012.09740), Eq 9 (and Eq 8 for its gradient).

    Example:
        >>> loss = HardContrastiveLoss(temperature=0.2, num_negatives=1)
        >>> pos, neg = torch.tensor([0.5]), torch.tensor([[0.9, -0.9]])
        >>> loss.select(neg), round(loss(pos, neg).item(), 4)
        (tensor([[ True, False]]), 2.1269)
    """

    key = "hard_contrastive"  # the catalogue (ContrastiveLossBase): Table 1 key, configs/loss/hard_contrastive.yaml
    title = "hard contrastive loss (Eq 9)"
    tempered = True
    hard = True
    source = "Wang & Liu 2021, arXiv:2012.09740"

    def __init__(self, temperature: float, num_negatives: int | None = None,
                 alpha: float | None = None, selection: Literal["negatives", "all"] = "negatives") -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self._init_selection(num_negatives, alpha)
        if selection not in ("negatives", "all"):
            raise ValueError(f"selection must be 'negatives' (Eq 9) or 'all' (the author's code), got {selection!r}")
        self.selection = selection

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        if self.selection == "all":
            return self._author_loss(pos, neg, mask)
        values, keep, _ = self._hardest(neg, mask)
        return _contrastive(pos, values, self.temperature, keep)  # keep: masked out with zero gradient

    def _author_loss(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        """``selection="all"``: the top k + 1 of all keys, positive included, for each positive."""
        b, p = pos.shape
        k = neg.shape[1]
        t = self.temperature
        keys = torch.cat([pos.unsqueeze(2), neg.unsqueeze(1).expand(b, p, k)], dim=2)  # (B, P, 1 + K)
        if mask is None:
            top = keys.topk(min(self.quantile_count(k) + 1, k + 1), dim=2).values  # (B, P, k + 1)
            return (torch.logsumexp(top / t, dim=2) - pos / t).mean(dim=1)
        valid = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1).unsqueeze(1).expand(b, p, k + 1)
        filled = torch.where(valid, keys.detach(), torch.full_like(keys, torch.finfo(keys.dtype).min))
        if self.alpha is None:
            columns = filled.topk(min(self.num_negatives, k) + 1, dim=2).indices  # (B, P, k + 1)
            values, keep = keys.gather(2, columns), valid.gather(2, columns)
        else:
            count = self._quantile_counts(mask.sum(dim=1, keepdim=True)).unsqueeze(1)  # (B, 1, 1)
            threshold = filled.sort(dim=2, descending=True).values.gather(2, count.expand(b, p, 1))  # (B, P, 1)
            values, keep = keys, valid & (keys >= threshold)  # the k + 1 largest valid keys
        return (masked_logsumexp(values / t, keep, dim=2) - pos / t).mean(dim=1)

    def extra_repr(self) -> str:
        extra = "" if self.selection == "negatives" else f", selection={self.selection!r}"
        return f"temperature={self.temperature}, {self._selection_repr()}{extra}"


class HardSimpleContrastiveLoss(_HardNegatives, ContrastiveLossBase):
    """The hard simple loss: Eq 3 with the sum over the hardest negatives only (HardSimple, Table 1).

    Source: Wang & Liu 2021 (arXiv:2012.09740), section 5.3 and Table 1 ("HardSimple").

    Example:
        >>> loss = HardSimpleContrastiveLoss(num_negatives=1)  # -s_ii + the hardest s_ij
        >>> round(loss(torch.tensor([0.5]), torch.tensor([[0.9, -0.9]])).item(), 4)
        0.4

    Args:
        lam: weight of each kept negative, > 0; None uses 1/(number kept for that
            anchor), i.e. the mean over the kept negatives.
        num_negatives: keep this many largest s_ij per anchor (the paper: 4095; all if K is smaller);
            exactly one of num_negatives and alpha.
        alpha: keep every s_ij at or above the anchor's upper-alpha quantile, the
            ceil(alpha * K)-th largest (ties included); in (0, 1], 1 keeps all.
    """

    key = "hard_simple"  # the catalogue (ContrastiveLossBase): Table 1 key, configs/loss/hard_simple.yaml
    title = "hard simple contrastive loss (Eq 3 on the nearest negatives)"
    tempered = False
    hard = True
    source = "Wang & Liu 2021, arXiv:2012.09740"

    def __init__(self, lam: float | None = None, num_negatives: int | None = None,
                 alpha: float | None = None) -> None:
        super().__init__()
        self.lam = _check_lam(lam)
        self._init_selection(num_negatives, alpha)

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        values, keep, _ = self._hardest(neg, mask)
        if keep is None:
            total = values.mean(dim=1) if self.lam is None else self.lam * values.sum(dim=1)  # (B,)
            return total - pos.mean(dim=1)
        total = torch.where(keep, values, torch.zeros_like(values)).sum(dim=1)  # (B,); zero gradient off-mask
        if self.lam is None:
            total = total / keep.sum(dim=1).clamp(min=1)  # count >= 1 whenever the row has a valid negative
        else:
            total = self.lam * total
        return total - pos.mean(dim=1)

    def extra_repr(self) -> str:
        return f"lam={'1/k' if self.lam is None else self.lam}, {self._selection_repr()}"


# ------------------------------------------------------------------------ the catalogue
__all__ += ["loss_classes"]
#: the suite's modules that define losses, imported by :func:`loss_classes` (a missing one is skipped)
LOSS_MODULES = ("lightning_modules.losses", "lightning_modules.followup_losses")


def loss_classes() -> list[type[ContrastiveLossBase]]:
    """Every concrete :class:`ContrastiveLossBase` subclass that defines its own ``key``, in definition order.

    Imports :data:`LOSS_MODULES` first; a loss defined elsewhere (e.g. ``tests/toys.py``) counts once its
    module is imported. The scripts read the catalogue from these classes (``key``, ``title``,
    ``tempered``, ``hard``, ``source``), never from tables of names.

    Raises:
        ValueError: two different classes declare the same key.
    """
    import importlib  # noqa: PLC0415
    import inspect  # noqa: PLC0415

    for module in LOSS_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
    found: dict[str, type[ContrastiveLossBase]] = {}
    stack = list(reversed(ContrastiveLossBase.__subclasses__()))
    while stack:
        cls = stack.pop()
        stack += reversed(cls.__subclasses__())
        if "key" not in vars(cls) or inspect.isabstract(cls):
            continue
        other = found.get(cls.key)
        if other is not None and other is not cls and \
                (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"loss key {cls.key!r} is declared by both {other.__module__}.{other.__qualname__} and "
                             f"{cls.__module__}.{cls.__qualname__}: give one of them another key")
        found[cls.key] = cls  # a module imported twice (reloaded): its newest class
    return list(found.values())
