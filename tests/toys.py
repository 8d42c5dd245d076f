"""A loss and a negatives' source written only against the base classes' contracts.

Neither is imported by the suite: ``tests/configs/toys.yaml`` names them by ``class_path`` and
``tests/test_contracts.py`` checks that every metric, plot, report column and figure still appears
(the loss declares its catalogue entry, ``key`` ... ``source``, as every loss does).
Adding a loss or a source takes such a class, such a YAML and such a test, and no other file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.losses import ContrastiveLossBase, masked_logsumexp
from lightning_modules.negatives import NegativeSource, drop_column, skipping_one
from lightning_modules.similarities import NegativeIndex, Similarities


class TauLoss(ContrastiveLossBase):
    """InfoNCE (Eq 1) written out directly, with its temperature argument named ``tau``.

    Args:
        tau: the temperature, > 0.
    """

    key = "toy_infonce"  # the catalogue: no script names this loss, yet it shows in every table and figure
    title = "toy InfoNCE (tau argument)"
    tempered = True
    hard = False
    source = "tests/toys.py: Eq 1 of Wang & Liu 2021 written out"

    def __init__(self, tau: float = 0.2) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.temperature = float(tau)  # the contract: whatever the argument is called

    def _per_anchor(self, pos: Tensor, neg: Tensor, mask: Tensor | None) -> Tensor:
        # the contract: pos (B, P), neg (B, K), mask (B, K) or None; invalid negatives leave by torch.where
        b, p = pos.shape
        neg = neg.unsqueeze(1).expand(b, p, neg.shape[1])  # (B, P, K)
        logits = torch.cat([pos.unsqueeze(2), neg], dim=2) / self.temperature  # (B, P, 1 + K)
        keep = None if mask is None else torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)  # (B, 1 + K)
        keep = None if keep is None else keep.unsqueeze(1).expand(logits.shape)  # (B, P, 1 + K)
        return (masked_logsumexp(logits, keep, dim=2) - logits[:, :, 0]).mean(dim=1)


class KeyTable(NegativeSource):
    """One key per training image, overwritten by the image's latest embedding (no momentum).

    The table is a buffer called ``table``, not ``bank``: the metrics find it through
    :attr:`indexed_keys` alone.
    """

    num_views = 1

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.empty(0, 0))
        self._pending: tuple[Tensor, Tensor] | None = None

    def bind(self, encoder: nn.Module, num_samples: int, dim: int | None = None) -> None:
        dim = encoder.out_dim if dim is None else dim
        self.table = F.normalize(torch.randn(num_samples, dim), dim=1)  # (N, d)

    @property
    def indexed_keys(self) -> Tensor | None:
        return self.table if self.table.numel() else None

    def forward(self, embed, index: Tensor, views: list[Tensor]) -> Similarities:
        q = embed(views[0]).float()  # (B, d)
        sims = q @ self.table.t()  # (B, N)
        self._pending = (index, q.detach())
        neg = drop_column(sims, index)  # (B, N - 1); column j names image j, or j + 1 past the anchor's own
        return Similarities(sims.gather(1, index.unsqueeze(1)), neg,
                            neg_index=NegativeIndex(skipping_one(index), neg.shape), index=index)

    @torch.no_grad()
    def update(self) -> None:
        if self._pending is not None:
            index, q = self._pending
            self.table.index_copy_(0, index, q)
            self._pending = None
