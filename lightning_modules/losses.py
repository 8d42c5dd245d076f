"""The four losses of the paper (section 3, Table 1): contrastive, simple, hard contrastive, hard simple.

Wang & Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021, arXiv:2012.09740.

Every loss takes the similarities a negatives' source produces, ``pos`` (B,) with
``pos[i] = s_ii`` and ``neg`` (B, K) with ``neg[i, j] = s_ij``, and returns the mean
over the B anchors of the per-anchor loss (:meth:`ContrastiveLossBase.per_anchor`
gives the (B,) vector). The losses know nothing about where the negatives come from.

Numerics: inputs are upcast to at least fp32 (float64 stays float64), so the losses
are safe under bf16/fp16 autocast; Eq 1 is evaluated as
``log(1 + exp(logsumexp_k(s_ik / t) - s_ii / t))`` (``torch.logaddexp`` with 0), which never concatenates the positive
onto the (B, K) matrix, does not overflow at t = 0.01 and keeps small losses accurate.
The hard losses drop unselected negatives with ``torch.topk`` (fixed K) or with a
per-row threshold and ``torch.where`` (quantile alpha), so an unselected negative's
gradient is exactly zero. No Python loop over the batch and no host sync in forward.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

__all__ = ["ContrastiveLossBase", "ContrastiveLoss", "SimpleContrastiveLoss", "HardContrastiveLoss",
           "HardSimpleContrastiveLoss", "relative_penalty", "relative_penalty_entropy"]


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


class ContrastiveLossBase(nn.Module):
    """Base class of the losses: ``loss(pos, neg)`` is the mean over anchors of :meth:`per_anchor`.

    Subclasses implement :meth:`_per_anchor` on validated, at-least-fp32 inputs, and set
    :attr:`temperature` when the loss has one (whatever its constructor calls it): the
    penalty-entropy log, the Fig 3 plot and the report's temperature column read it here.
    A hard loss also overrides :meth:`positive_in_hard_set`. Source: the paper's section 3
    (Wang & Liu 2021, arXiv:2012.09740); Eq 5 for :meth:`relative_penalty`.

    Example:
        >>> class Margin(ContrastiveLossBase):  # a hinge on the hardest negative, no temperature
        ...     def _per_anchor(self, pos, neg):
        ...         return (neg.max(dim=1).values - pos + 0.5).clamp(min=0)
        >>> round(Margin()(torch.tensor([0.9]), torch.tensor([[0.1, 0.6]])).item(), 4), Margin().temperature
        (0.2, None)
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

    def relative_penalty(self, pos: Tensor, neg: Tensor) -> Tensor | None:
        """Eq 5's relative penalty of each negative, (B, K) rows summing to 1; None without a temperature.

        Args:
            pos: (B,) positive similarities (only checked: r does not depend on them).
            neg: (B, K) negative similarities.
        """
        if self.temperature is None:
            return None
        self._check_shapes(pos, neg)
        return relative_penalty(neg, self.temperature)

    def penalty_entropy(self, pos: Tensor, neg: Tensor) -> Tensor | None:
        """Mean entropy (nats) of :meth:`relative_penalty` over the anchors; None without a temperature."""
        if self.temperature is None:
            return None
        return relative_penalty_entropy(pos, neg, self.temperature)

    def positive_in_hard_set(self, pos: Tensor, neg: Tensor) -> Tensor | None:
        """Hard losses: fraction of anchors whose positive ranks among the kept negatives; None otherwise."""
        return None

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        """The loss averaged over the B anchors: a scalar, fp32 (fp64 for fp64 inputs).

        Args:
            pos: (B,) positive similarities s_ii.
            neg: (B, K) negative similarities s_ij, K >= 1.
        """
        return self.per_anchor(pos, neg).mean()

    def per_anchor(self, pos: Tensor, neg: Tensor) -> Tensor:
        """The loss of each anchor, (B,).

        Args:
            pos: (B,) positive similarities s_ii.
            neg: (B, K) negative similarities s_ij, K >= 1.
        """
        self._check_shapes(pos, neg)
        return self._per_anchor(_at_least_fp32(pos), _at_least_fp32(neg))

    def _per_anchor(self, pos: Tensor, neg: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _per_anchor(pos, neg)")

    @staticmethod
    def _check_shapes(pos: Tensor, neg: Tensor) -> None:
        if pos.dim() != 1:
            raise ValueError(f"pos must be 1-D (B,) holding s_ii per anchor, got shape {tuple(pos.shape)}")
        if neg.dim() != 2:
            raise ValueError(f"neg must be 2-D (B, K) holding s_ij per anchor, got shape {tuple(neg.shape)}")
        if neg.shape[0] != pos.shape[0]:
            raise ValueError(f"pos and neg must have the same number of anchors B, got pos {tuple(pos.shape)} "
                             f"and neg {tuple(neg.shape)}")
        if neg.shape[1] < 1:
            raise ValueError(f"neg must hold at least one negative per anchor (K >= 1), got shape {tuple(neg.shape)}")


def _contrastive(pos: Tensor, neg: Tensor, temperature: float) -> Tensor:
    """Eq 1 per anchor, (B,); ``neg`` may hold -inf for dropped negatives."""
    # -log(e^a / (e^a + e^b)) = log(1 + e^(b - a)); logaddexp with 0 is accurate for tiny losses, never
    # overflows, and unlike F.softplus (linear above 20) keeps the gradient sigmoid(b - a) exact
    margin = torch.logsumexp(neg / temperature, dim=1) - pos / temperature  # (B,)
    return torch.logaddexp(margin, torch.zeros_like(margin))  # (B,)


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
    """

    key = "contrastive"  # the catalogue (ContrastiveLossBase): Table 1 key, configs/loss/contrastive.yaml
    title = "contrastive loss (Eq 1)"
    tempered = True
    hard = False
    source = "Wang & Liu 2021, arXiv:2012.09740"

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)

    def _per_anchor(self, pos: Tensor, neg: Tensor) -> Tensor:
        return _contrastive(pos, neg, self.temperature)

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

    def _per_anchor(self, pos: Tensor, neg: Tensor) -> Tensor:
        total = neg.mean(dim=1) if self.lam is None else self.lam * neg.sum(dim=1)  # (B,)
        return total - pos

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

    def _hardest(self, neg: Tensor) -> tuple[Tensor, Tensor | None]:
        """The kept negatives as (values, mask): (B, k) values and None for a fixed count,
        (B, K) ``neg`` and its (B, K) boolean mask for a quantile; ``neg`` and None if all are kept."""
        num_available = neg.shape[1]
        k = self.quantile_count(num_available)
        if k >= num_available:
            return neg, None  # every negative: identical to the ordinary loss
        if self.alpha is None:
            return neg.topk(k, dim=1, sorted=False).values, None  # (B, k); gradient flows to these only
        # k-th largest = (K - k + 1)-th smallest; no gradient through the threshold
        threshold = neg.detach().kthvalue(num_available - k + 1, dim=1, keepdim=True).values  # (B, 1)
        return neg, neg >= threshold  # (B, K), (B, K)

    @torch.no_grad()
    def select(self, neg: Tensor) -> Tensor:
        """Which negatives the loss uses: a (B, K) boolean mask, True for the chosen s_ij.

        Args:
            neg: (B, K) negative similarities s_ij.
        """
        if neg.dim() != 2 or neg.shape[1] < 1:
            raise ValueError(f"neg must be 2-D (B, K) with K >= 1, got shape {tuple(neg.shape)}")
        neg = _at_least_fp32(neg)
        values, mask = self._hardest(neg)
        if mask is not None:
            return mask
        if values is neg:
            return torch.ones_like(neg, dtype=torch.bool)
        index = neg.topk(values.shape[1], dim=1, sorted=False).indices  # (B, k), same call as _hardest
        return torch.zeros_like(neg, dtype=torch.bool).scatter_(1, index, True)  # (B, K)

    @torch.no_grad()
    def positive_in_hard_set(self, pos: Tensor, neg: Tensor) -> Tensor:
        """Fraction of anchors whose positive ranks among the chosen negatives (a scalar tensor).

        That is, ``s_ii`` is at least the smallest kept ``s_ij``: the positive is then no
        closer than the hardest negatives, the situation in which Eq 9's loss pulls the
        positive's gradient against its own nearest neighbours (and, in the author's
        selection, ``selection="all"``, the positive joins the denominator's set).
        """
        self._check_shapes(pos, neg)
        neg = _at_least_fp32(neg.detach())
        k = self.quantile_count(neg.shape[1])
        threshold = neg.topk(k, dim=1).values[:, -1]  # (B,) the k-th largest negative
        return (_at_least_fp32(pos.detach()).reshape(-1) >= threshold).float().mean()

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

    def _per_anchor(self, pos: Tensor, neg: Tensor) -> Tensor:
        if self.selection == "all":
            keys = torch.cat([pos.reshape(-1, 1), neg], dim=1)  # (B, 1 + K): every key, the positive first
            top = keys.topk(min(self.quantile_count(neg.shape[1]) + 1, keys.shape[1]), dim=1).values
            return torch.logsumexp(top / self.temperature, dim=1) - pos.reshape(-1) / self.temperature
        values, mask = self._hardest(neg)
        if mask is not None:
            # -inf drops a negative from the log-sum-exp; torch.where gives it a zero gradient
            values = torch.where(mask, values, torch.full_like(values, -math.inf))  # (B, K)
        return _contrastive(pos, values, self.temperature)

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

    def _per_anchor(self, pos: Tensor, neg: Tensor) -> Tensor:
        values, mask = self._hardest(neg)
        if mask is None:
            total = values.mean(dim=1) if self.lam is None else self.lam * values.sum(dim=1)  # (B,)
            return total - pos
        total = torch.where(mask, values, torch.zeros_like(values)).sum(dim=1)  # (B,); zero gradient off-mask
        if self.lam is None:
            total = total / mask.sum(dim=1)  # count >= 1: the threshold itself is kept
        else:
            total = self.lam * total
        return total - pos

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
