"""The one record a negatives' source hands a loss: :class:`Similarities`.

Every source (memory bank, in-batch, momentum queue) returns one, and every loss reads one
(:class:`lightning_modules.losses.ContrastiveLossBase`). It holds, per anchor i:

- ``pos`` (B, P): the similarities s_i+ to its P >= 1 positives (two views: P = 1);
- ``neg`` (B, K): the similarities s_ij to its K >= 1 negatives;
- ``neg_mask`` (B, K) bool or None: True where column j is a real negative of row i (a source
  whose rows hold different numbers of negatives pads them and says so here; None = all valid);
- ``neg_index``: the dataset index of each negative's image, (B, K) long with -1 for unknown, or
  a :class:`NegativeIndex` that computes only the columns asked for (the 10 nearest, say), so
  that a step which never reads it pays nothing;
- ``index`` (B,) or None: the anchors' own dataset indices.

Building a record checks shapes and dtypes only (free: no value is read, nothing waits for the
device). :meth:`Similarities.check_values` also checks that every anchor keeps at least one
valid negative; it reads values, so the training step does not call it (the sources build
their masks so that it holds) and tests do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

__all__ = ["Similarities", "NegativeIndex", "as_similarities"]


class NegativeIndex:
    """The dataset index of negative (i, j), computed on demand for the columns asked for.

    A source knows how column j of row i maps to an image (the bank skips the anchor's own
    entry, in-batch negatives skip the anchor's two views, the queue keeps an index per slot),
    so it hands over that map instead of a (B, K) table that most steps would never read. A
    lookup may run a collective (in-batch negatives gather every process's indices): call it on
    every process alike, as the module's logging steps do, and before the source's ``update()``.

    Args:
        lookup: maps columns (B, M) long to dataset indices (B, M) long, -1 for unknown.
        shape: (B, K), the shape of the ``neg`` matrix it describes.

    Example:
        >>> own = torch.tensor([0, 2])  # a bank of 4: row i skips entry own[i]
        >>> idx = NegativeIndex(lambda cols: cols + (cols >= own.unsqueeze(1)).long(), (2, 3))
        >>> idx.gather(torch.tensor([[0], [2]])).tolist(), idx.dense().tolist()
        ([[1], [3]], [[1, 2, 3], [0, 1, 3]])
    """

    def __init__(self, lookup: Callable[[Tensor], Tensor], shape: tuple[int, int]) -> None:
        self._lookup = lookup
        self.shape = (int(shape[0]), int(shape[1]))

    def gather(self, columns: Tensor) -> Tensor:
        """Dataset indices (B, M) of the negatives at ``columns`` (B, M) of each row."""
        if columns.dim() != 2 or columns.shape[0] != self.shape[0]:
            raise ValueError(f"columns must be ({self.shape[0]}, M), got shape {tuple(columns.shape)}")
        return self._lookup(columns.long())

    def dense(self) -> Tensor:
        """The whole (B, K) table (tests and small problems; the training step reads columns only)."""
        b, k = self.shape
        return self.gather(torch.arange(k).expand(b, k))


@dataclass
class Similarities:
    """What a negatives' source gives a loss: positives, negatives and who they are.

    Args:
        pos: (B, P) positive similarities, P >= 1 (two views: P = 1).
        neg: (B, K) negative similarities, K >= 1.
        neg_mask: (B, K) bool, True = a valid negative; None = all valid.
        neg_index: the dataset index of each negative, (B, K) long with -1 for unknown, or a
            :class:`NegativeIndex`; None = unknown.
        index: (B,) long, the anchors' dataset indices; None = unknown.

    Example:
        >>> s = Similarities(torch.tensor([[0.9], [0.8]]), torch.tensor([[0.1, 0.5], [0.2, 0.0]]),
        ...                  neg_mask=torch.tensor([[True, True], [True, False]]))
        >>> s.num_anchors, s.num_positives, s.num_negatives, s.neg_index_at(torch.zeros(2, 1)).tolist()
        (2, 1, 2, [[-1], [-1]])
    """

    pos: Tensor
    neg: Tensor
    neg_mask: Tensor | None = None
    neg_index: Tensor | NegativeIndex | None = None
    index: Tensor | None = None

    def __post_init__(self) -> None:
        pos, neg = self.pos, self.neg
        if not isinstance(pos, Tensor) or not isinstance(neg, Tensor):
            raise TypeError(f"pos and neg must be tensors, got {type(pos).__name__} and {type(neg).__name__}")
        if pos.dim() != 2:
            raise ValueError(f"pos must be 2-D (B, P) holding each anchor's P >= 1 positive similarities, "
                             f"got shape {tuple(pos.shape)}")
        if neg.dim() != 2:
            raise ValueError(f"neg must be 2-D (B, K) holding s_ij per anchor, got shape {tuple(neg.shape)}")
        if neg.shape[0] != pos.shape[0]:
            raise ValueError(f"pos and neg must have the same number of anchors B, got pos {tuple(pos.shape)} "
                             f"and neg {tuple(neg.shape)}")
        if pos.shape[1] < 1:
            raise ValueError(f"pos must hold at least one positive per anchor (P >= 1), got shape {tuple(pos.shape)}")
        if neg.shape[1] < 1:
            raise ValueError(f"neg must hold at least one negative per anchor (K >= 1), got shape {tuple(neg.shape)}")
        if not (pos.is_floating_point() and neg.is_floating_point()):
            raise TypeError(f"pos and neg must be floating point, got {pos.dtype} and {neg.dtype}")
        if self.neg_mask is not None:
            mask = self.neg_mask
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != neg.shape:
                got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
                raise ValueError(f"neg_mask must be a bool tensor of neg's shape {tuple(neg.shape)}, got {got}")
        if self.neg_index is not None:
            shape = (self.neg_index.shape if isinstance(self.neg_index, NegativeIndex)
                     else tuple(self.neg_index.shape))
            if tuple(shape) != tuple(neg.shape):
                raise ValueError(f"neg_index must describe neg's shape {tuple(neg.shape)}, got {tuple(shape)}")
            if isinstance(self.neg_index, Tensor) and self.neg_index.dtype != torch.long:
                raise ValueError(f"neg_index must be a long tensor (-1 for unknown), got {self.neg_index.dtype}")
        if self.index is not None and (self.index.dim() != 1 or self.index.shape[0] != pos.shape[0]):
            raise ValueError(f"index must be ({pos.shape[0]},), one dataset index per anchor, "
                             f"got shape {tuple(self.index.shape)}")

    @property
    def num_anchors(self) -> int:
        return self.neg.shape[0]

    @property
    def num_positives(self) -> int:
        return self.pos.shape[1]

    @property
    def num_negatives(self) -> int:
        """K, the columns of ``neg`` (valid or not)."""
        return self.neg.shape[1]

    def check_values(self) -> "Similarities":
        """Check that every anchor has at least one valid negative; returns the record.

        Reads the mask's values (a host sync on an accelerator): for tests and one-off checks,
        not for the training step.
        """
        if self.neg_mask is not None:
            empty = ~self.neg_mask.any(dim=1)  # (B,)
            if bool(empty.any()):
                rows = empty.nonzero().flatten()[:5].tolist()
                raise ValueError(f"every anchor needs at least one valid negative; rows {rows} have none "
                                 "(neg_mask is all False there)")
        return self

    def detach(self) -> "Similarities":
        """The same record with ``pos`` and ``neg`` cut from the graph."""
        return Similarities(self.pos.detach(), self.neg.detach(), self.neg_mask, self.neg_index, self.index)

    def valid(self) -> Tensor:
        """The mask of valid negatives as a tensor, (B, K) bool (all True when ``neg_mask`` is None)."""
        if self.neg_mask is not None:
            return self.neg_mask
        return torch.ones(self.neg.shape, dtype=torch.bool, device=self.neg.device)

    def neg_index_at(self, columns: Tensor) -> Tensor:
        """Dataset indices (B, M) of the negatives at ``columns`` (B, M); -1 where unknown.

        Args:
            columns: (B, M) column positions in ``neg``.
        """
        columns = columns.long().to(self.neg.device)
        if self.neg_index is None:
            return torch.full_like(columns, -1)
        if isinstance(self.neg_index, NegativeIndex):
            return self.neg_index.gather(columns)
        return self.neg_index.gather(1, columns)


def as_similarities(sims: Similarities | Tensor, neg: Tensor | None = None) -> Similarities:
    """A record from either a record or the old ``(pos (B,), neg (B, K))`` pair (then P = 1).

    Args:
        sims: a :class:`Similarities`, or ``pos`` (B,) of the old pair.
        neg: (B, K) of the old pair; None with a record.
    """
    if isinstance(sims, Similarities):
        if neg is not None:
            raise TypeError("pass either a Similarities record or the pair (pos, neg), not both")
        return sims
    if not isinstance(sims, Tensor) or not isinstance(neg, Tensor):
        raise TypeError("a loss takes a Similarities record, or pos (B,) and neg (B, K) tensors; got "
                        f"{type(sims).__name__} and {type(neg).__name__}")
    if sims.dim() != 1:
        raise ValueError(f"pos must be 1-D (B,) holding s_ii per anchor, got shape {tuple(sims.shape)} "
                         "(pass a Similarities record for several positives per anchor)")
    return Similarities(sims.unsqueeze(1), neg)
