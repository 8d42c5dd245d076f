"""Where the keys g(x_j) come from: a memory bank (the paper), the batch itself or a momentum queue.

A :class:`NegativeSource` turns one training batch into the record every loss takes, a
:class:`~lightning_modules.similarities.Similarities` with ``pos`` (B', P) and ``neg`` (B', K),
the anchors' dataset indices and, on demand, each negative's (:class:`NegativeIndex`), and
keeps whatever state it needs between steps. The LightningModule calls, per step::

    sims = source(embed, index, views)   # inside training_step, with gradients
    ...optimiser step...
    source.update()                      # after the step (on_train_batch_end)

``embed`` maps images to L2-normalised embeddings with gradients. Similarities are
computed in fp32 even under mixed precision: at tau = 0.07 a bf16 similarity is only
good to about 0.004, i.e. 0.06 in the logit.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules import distributed as D
from lightning_modules.similarities import NegativeIndex, Similarities

Embed = Callable[[torch.Tensor], torch.Tensor]


def _fp32_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    with torch.autocast(device_type=a.device.type, enabled=False):
        return a.float() @ b.float()


def drop_column(logits: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """Remove column ``column[i]`` from row i: (B, N) -> (B, N - 1), without a host sync.

    Row i keeps columns ``j < column[i]`` in place and shifts the others left by one.
    """
    n = logits.shape[1]
    j = torch.arange(n - 1, device=logits.device)  # (N-1,)
    keep_left = j.unsqueeze(0) < column.unsqueeze(1)  # (B, N-1)
    return torch.where(keep_left, logits[:, :-1], logits[:, 1:])  # (B, N-1)


def skipping_one(own: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The column map of :func:`drop_column`: column j of row i was column ``j + (j >= own[i])``."""
    def lookup(columns: torch.Tensor) -> torch.Tensor:
        return columns + (columns >= own.unsqueeze(1)).long()  # (B, M)
    return lookup


def shuffle_order(index: torch.Tensor, salt: torch.Tensor) -> torch.Tensor:
    """A permutation of ``range(len(index))`` that looks random, from the images' indices alone.

    Every process computes the same permutation from the same (gathered) indices, a resumed
    run the same as an uninterrupted one, and nothing waits for the host: the order is an
    argsort of a 31-bit integer hash of (index, salt), ties broken by position.

    Args:
        index: (N,) integer image indices.
        salt: a 0-dim integer tensor that changes from step to step (e.g. a queue pointer).
    """
    mask = (1 << 31) - 1
    x = ((index.long() & mask) * 2654435761 + (salt.long() & 0xFFFF) * 40503 + 12345) & mask  # < 2^63 before &
    x = x ^ (x >> 15)
    x = (x * 2246822519) & mask
    x = x ^ (x >> 13)
    x = (x * 3266489917) & mask
    x = x ^ (x >> 16)
    n = index.shape[0]
    return torch.argsort(x * n + torch.arange(n, device=index.device))  # (N,), x * n < 2^52


def _in_groups(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, groups: int) -> torch.Tensor:
    """``fn`` on ``groups`` consecutive slices of the batch, concatenated: per-slice BatchNorm statistics."""
    if groups <= 1:
        return fn(x)
    return torch.cat([fn(part) for part in x.tensor_split(groups)], dim=0)


class NegativeSource(nn.Module):
    """Base class of the negatives' sources.

    Subclasses set :attr:`num_views` (augmented views per image they need), implement
    :meth:`forward` and, if they keep state, :meth:`update`; a source that keeps one key
    per training image exposes it as :attr:`indexed_keys`. Sizes come from :meth:`bind`
    (the embedding dimension from the encoder, the bank size from the data), so a
    config never repeats them. Source: the paper's instance-discrimination setting (Wang &
    Liu 2021, arXiv:2012.09740, section 5.1), where the negatives are a memory bank's.

    :meth:`forward` returns a :class:`~lightning_modules.similarities.Similarities`; a source
    that still returns ``(pos (B,), neg (B, K))`` works (the module wraps it, with no index).

    Example:
        >>> class Others(NegativeSource):  # the batch's other images, one view each (the positive: itself)
        ...     def forward(self, embed, index, views):
        ...         z = embed(views[0]); s = z @ z.t(); own = torch.arange(len(z))
        ...         return Similarities(s.diagonal().unsqueeze(1), drop_column(s, own), index=index)
        >>> [t.shape for t in (lambda r: (r.pos, r.neg))(Others()(lambda x: x, torch.arange(3), [torch.eye(3)]))]
        [torch.Size([3, 1]), torch.Size([3, 2])]
    """

    #: augmented views per image and step that this source needs from the datamodule
    num_views: int = 1

    def bind(self, encoder: nn.Module, num_samples: int, dim: int | None = None) -> None:
        """Called once by the LightningModule's ``__init__`` with the encoder and the data's size.

        Args:
            encoder: the online encoder (a momentum source copies it).
            num_samples: the training split's size.
            dim: the embedding dimension; None reads the encoder's ``out_dim``.
        """

    @property
    def indexed_keys(self) -> torch.Tensor | None:
        """(N, d) one key per training image, row i for the image of index i, or None.

        The metrics callback reads these, and only these, as the training split's
        embedding: the kNN monitor's neighbours and the ``bank/*`` metrics. A source
        without such a table (in-batch, a queue) returns None; the monitor then embeds
        the training split itself.
        """
        return None

    def forward(self, embed: Embed, index: torch.Tensor, views: list[torch.Tensor]) -> Similarities:
        """The step's similarities, with gradients.

        Args:
            embed: images -> L2-normalised embeddings, with gradients.
            index: (B,) the images' dataset indices.
            views: the batch's augmented views, ``num_views`` tensors (B, C, H, W).
        """
        raise NotImplementedError

    @torch.no_grad()
    def update(self) -> None:
        """Apply the state change of the last :meth:`forward` (after the optimiser step)."""


class MemoryBank(NegativeSource):
    """Instance discrimination against a bank of one entry per training image (Wu et al. 2018).

    Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
    CVPR 2018, arXiv:1805.01978; the paper's negatives (Wang & Liu 2021, section 5.1).
    The positive key of image i is its bank entry ``m_i``; the negatives are all other
    N - 1 entries (the full softmax, no sampling). After each optimiser step the entries
    of the batch move towards the new embeddings:
    ``m_i <- normalize(momentum * m_i + (1 - momentum) * f(x_i))``, so ``momentum`` is
    the weight of the OLD entry (0.5 in the paper). Under data parallelism every process
    applies every process's updates, so all ranks keep the same bank.

    Args:
        size: number of entries, the training-split size; None takes it from the data
            (the module's ``num_samples``). A given size must match the data.
        dim: embedding dimension; None (the default) takes the encoder's ``out_dim`` in
            :meth:`bind`. A given one must match it (kept for old configs).
        momentum: weight of the old entry in the update, in [0, 1).
        normalize_init: start from unit-norm rows (default); False keeps the author's
            raw uniform initialisation in [-1/sqrt(dim/3), 1/sqrt(dim/3)].

    Example:
        >>> bank = MemoryBank(momentum=0.5)
        >>> bank.bind(nn.Linear(4, 8), num_samples=100, dim=8)  # size from the data, dim from the encoder
        >>> sims = bank(lambda x: F.normalize(x, dim=1), torch.tensor([3, 7]), [torch.randn(2, 8)])
        >>> bank.indexed_keys.shape, sims.pos.shape, sims.neg.shape, sims.neg_index_at(torch.tensor([[2, 3]] * 2)).tolist()
        (torch.Size([100, 8]), torch.Size([2, 1]), torch.Size([2, 99]), [[2, 4], [2, 3]])
    """

    num_views = 1

    def __init__(self, size: int | None = None, dim: int | None = None, momentum: float = 0.5,
                 normalize_init: bool = True) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if dim is not None and dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.momentum = momentum
        self.dim = dim
        self.normalize_init = normalize_init
        self.register_buffer("bank", torch.empty(0, dim or 0))
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._size = size
        if size is not None and dim is not None:
            self._allocate(size)

    def _allocate(self, size: int) -> None:
        if size < 2:
            raise ValueError(f"the memory bank needs at least 2 entries, got size={size}")
        bound = 1.0 / math.sqrt(self.dim / 3)  # the author's init: unit variance per coordinate times 1/dim
        bank = torch.rand(size, self.dim) * (2 * bound) - bound  # (N, d)
        if self.normalize_init:
            bank = F.normalize(bank, dim=1)
        self.bank = bank

    @property
    def size(self) -> int:
        return self.bank.shape[0]

    @property
    def indexed_keys(self) -> torch.Tensor | None:
        """The bank itself, (N, d), once allocated."""
        return self.bank if self.bank.numel() else None

    def bind(self, encoder: nn.Module, num_samples: int, dim: int | None = None) -> None:
        dim = encoder.out_dim if dim is None else dim
        if self.dim is None:
            self.dim = dim
        elif dim != self.dim:
            raise ValueError(f"MemoryBank dim={self.dim} does not match the encoder's output dim {dim}; "
                             f"leave the bank's dim unset (null) to take it from the encoder")
        if self.size == 0:
            size = num_samples if self._size is None else self._size
            self._allocate(size)
        if self.size != num_samples:
            raise ValueError(
                f"MemoryBank size={self.size} does not match the {num_samples} training images; "
                "leave size unset (null) to take it from the data")

    def forward(self, embed: Embed, index: torch.Tensor, views: list[torch.Tensor]) -> Similarities:
        q = embed(views[0]).float()  # (B, d)
        logits = _fp32_matmul(q, self.bank.t())  # (B, N)
        pos = logits.gather(1, index.unsqueeze(1))  # (B, 1)
        neg = drop_column(logits, index)  # (B, N-1)
        self._pending = (index, q.detach())
        # negative j of anchor i is entry j, or j + 1 past the anchor's own: computed only when asked
        return Similarities(pos, neg, neg_index=NegativeIndex(skipping_one(index), neg.shape), index=index)

    @torch.no_grad()
    def update(self) -> None:
        if self._pending is None:
            return
        index, features = self._pending
        self._pending = None
        self.write(D.gather(index), D.gather(features))

    @torch.no_grad()
    def write(self, index: torch.Tensor, features: torch.Tensor) -> None:
        """Momentum-update the entries ``index`` (M,) with ``features`` (M, d), in place.

        An index may repeat (a distributed sampler pads its last batch with repeats):
        every copy then writes the value computed from the index's FIRST occurrence, so
        the result does not depend on the order of the scatter. Rows whose features are
        not finite leave their entry unchanged (the step's NaN check reports them).
        """
        m = index.shape[0]
        position = torch.arange(m, device=index.device)  # (M,)
        first = torch.full((self.size,), m, dtype=torch.long, device=index.device)
        first.scatter_reduce_(0, index, position, reduce="amin")  # first occurrence per entry
        source = first[index]  # (M,) row whose features each copy uses
        features = features.to(self.bank.dtype)[source]  # (M, d)
        old = self.bank[index]  # (M, d)
        new = F.normalize(self.momentum * old + (1.0 - self.momentum) * features, dim=1)
        finite = torch.isfinite(new).all(dim=1, keepdim=True)  # (M, 1)
        self.bank.index_copy_(0, index, torch.where(finite, new, old))

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, momentum={self.momentum}"


class InBatchNegatives(NegativeSource):
    """SimCLR-style negatives: two views per image; every other view in the (global) batch is a negative.

    Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
    ICML 2020, arXiv:2002.05709 (the NT-Xent pairs). For view a of image i the positive is
    view b of the same image and the negatives are the 2 * (B_global - 1) views of the other
    images. Under data parallelism the keys are gathered (with gradients) from all ranks and
    the positive of local anchor i on rank r sits at ``r * B + i`` of each gathered view.

    Example:
        >>> source = InBatchNegatives()
        >>> sims = source(lambda x: F.normalize(x, dim=1), torch.tensor([10, 11, 12]), [torch.randn(3, 8)] * 2)
        >>> sims.pos.shape, sims.neg.shape, sims.index.tolist(), sims.neg_index_at(torch.tensor([[0, 1]] * 6))[0]
        (torch.Size([6, 1]), torch.Size([6, 4]), [10, 11, 12, 10, 11, 12], tensor([11, 12]))
    """

    num_views = 2

    def forward(self, embed: Embed, index: torch.Tensor, views: list[torch.Tensor]) -> Similarities:
        b = views[0].shape[0]
        z = embed(torch.cat(views[:2], dim=0)).float()  # (2B, d): one forward keeps BatchNorm stats joint
        z1, z2 = z[:b], z[b:]  # (B, d) each
        k1, k2 = D.gather(z1, with_grad=True), D.gather(z2, with_grad=True)  # (W*B, d) each
        keys = torch.cat([k1, k2], dim=0)  # (2WB, d)
        total = k1.shape[0]  # W*B
        own = D.rank() * b + torch.arange(b, device=z.device)  # (B,) this rank's images in the gathered batch
        queries = torch.cat([z1, z2], dim=0)  # (2B, d)
        sims = _fp32_matmul(queries, keys.t())  # (2B, 2WB)
        self_col = torch.cat([own, own + total])  # (2B,) each query's own column
        pos_col = torch.cat([own + total, own])  # (2B,) the other view of the same image
        pos = sims.gather(1, pos_col.unsqueeze(1))  # (2B, 1)
        # drop the two columns of the query's own image: self first, then the positive
        lo, hi = torch.minimum(self_col, pos_col), torch.maximum(self_col, pos_col)
        neg = drop_column(drop_column(sims, hi), lo)  # (2B, 2WB - 2)
        lookup = self._negative_index(index, lo, hi, total)
        return Similarities(pos, neg, neg_index=NegativeIndex(lookup, neg.shape), index=torch.cat([index, index]))

    @staticmethod
    def _negative_index(index: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, total: int
                        ) -> Callable[[torch.Tensor], torch.Tensor]:
        """Column j of ``neg`` -> the dataset index of its image; gathers every rank's indices when asked."""
        def lookup(columns: torch.Tensor) -> torch.Tensor:
            inner = skipping_one(lo)(columns)  # (2B, M) the column before ``lo`` was dropped
            key = skipping_one(hi)(inner)  # (2B, M) the column of the (2B, 2WB) similarities
            return D.gather(index)[key % total]  # (2B, M) views 1 and 2 of image p sit at p and p + WB
        return lookup


class MomentumQueue(NegativeSource):
    """MoCo-style negatives: keys from a momentum copy of the encoder, negatives from a FIFO queue.

    He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning",
    arXiv:1911.05722. Two views per image: the query comes from view 1 through the encoder,
    its positive key from view 2 through the momentum encoder (no gradient); the negatives
    are the ``queue_size`` most recent keys. After each step the momentum encoder moves
    towards the encoder, ``theta_k <- m * theta_k + (1 - m) * theta_q``, and the batch's
    keys (gathered from all ranks) replace the oldest entries of the queue.

    Shuffled BatchNorm (MoCo, section 3.3; on by default): if a query and its positive key
    were normalised with the statistics of the same images, the batch statistics would
    tell the positive apart from the queue's keys, a shortcut that leaks through
    BatchNorm. So the key batch is shuffled before the key encoder and unshuffled after:
    across processes under data parallelism (each process encodes a random share of the
    global batch, as MoCo does), and on one process by BatchNorm groups, as if on
    ``bn_groups`` devices: the query batch is encoded in ``bn_groups`` consecutive slices,
    the shuffled key batch likewise, so a key's statistics come from other images than
    its query's. The permutation is a hash of the images' indices (:func:`shuffle_order`):
    the same on every process, exact on resume, no host sync. In groups, the online
    encoder's running statistics are updated once per group.

    Args:
        queue_size: number of negatives kept (at least the global batch size).
        dim: embedding dimension; None (the default) takes the encoder's ``out_dim`` in
            :meth:`bind`. A given one must match it (kept for old configs).
        encoder_momentum: m above (0.999 in MoCo).
        shuffle_bn: shuffle the keys' BatchNorm batches as above; False encodes the query
            and the key batches whole, each with its own batch statistics (the old behaviour).
        bn_groups: BatchNorm groups per process (at most half the local batch, so each holds
            2 images or more); None is 1 with several processes (each process is a group, as
            in MoCo) and 4 on a single process (the paper's 4 GPUs).

    Example:
        >>> enc = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8))
        >>> queue = MomentumQueue(queue_size=16)
        >>> queue.bind(enc, num_samples=100, dim=8)  # 4 BatchNorm groups of 2 below
        >>> sims = queue(lambda x: F.normalize(enc(x), dim=1), torch.arange(8), [torch.randn(8, 6)] * 2)
        >>> sims.pos.shape, sims.neg.shape, queue.groups_for(8), sims.neg_index_at(torch.tensor([[0]] * 8))[0]
        (torch.Size([8, 1]), torch.Size([8, 16]), 4, tensor([-1]))
    """

    num_views = 2

    def __init__(self, queue_size: int = 4096, dim: int | None = None, encoder_momentum: float = 0.999,
                 shuffle_bn: bool = True, bn_groups: int | None = None) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not 0.0 <= encoder_momentum <= 1.0:
            raise ValueError(f"encoder_momentum must be in [0, 1], got {encoder_momentum}")
        if bn_groups is not None and (isinstance(bn_groups, bool) or bn_groups < 1):
            raise ValueError(f"bn_groups must be an integer >= 1 or null, got {bn_groups!r}")
        self.shuffle_bn = shuffle_bn
        self.bn_groups = bn_groups
        if dim is not None and dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.queue_size = queue_size
        self.encoder_momentum = encoder_momentum
        self.register_buffer("queue", torch.empty(queue_size, 0))  # (Q, d) once bind() knows d
        if dim is not None:
            self._allocate(dim)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        # the dataset index of each slot's image, -1 for the random keys it starts with
        self.register_buffer("queue_index", torch.full((queue_size,), -1, dtype=torch.long))
        self.key_encoder: nn.Module | None = None
        self._encoder: list[nn.Module] = []  # a list, so the online encoder is not registered twice
        self._pending: torch.Tensor | None = None
        self._pending_index: torch.Tensor | None = None
        self._global_index: torch.Tensor | None = None  # gathered by the shuffle already: reused by update()

    def _allocate(self, dim: int) -> None:
        self.dim = dim
        self.queue = F.normalize(torch.randn(self.queue_size, dim), dim=1)  # (Q, d) random unit keys

    def bind(self, encoder: nn.Module, num_samples: int, dim: int | None = None) -> None:
        dim = encoder.out_dim if dim is None else dim
        if self.dim is None:
            self._allocate(dim)
        elif dim != self.dim:
            raise ValueError(f"MomentumQueue dim={self.dim} does not match the encoder's output dim {dim}; "
                             "leave the queue's dim unset (null) to take it from the encoder")
        self._encoder = [encoder]
        self.key_encoder = copy.deepcopy(encoder)
        self.key_encoder.requires_grad_(False)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("shuffle_bn", False)  # pickled before the option existed: keep what it did then
        state.setdefault("bn_groups", None)
        state.setdefault("_pending_index", None)
        state.setdefault("_global_index", None)
        super().__setstate__(state)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # checkpoints written before the queue kept its images' indices: every slot unknown
        if prefix + "queue" in state_dict and prefix + "queue_index" not in state_dict:
            size = state_dict[prefix + "queue"].shape[0]
            state_dict[prefix + "queue_index"] = torch.full((size,), -1, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def groups_for(self, batch: int) -> int:
        """The BatchNorm groups a local batch of ``batch`` images is split into."""
        if not self.shuffle_bn:
            return 1
        groups = self.bn_groups if self.bn_groups is not None else (4 if D.world_size() == 1 else 1)
        return max(1, min(groups, batch // 2))

    def _encode_keys(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        return _in_groups(lambda part: F.normalize(self.key_encoder(part).float(), dim=1), x, groups)

    @torch.no_grad()
    def keys(self, index: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The positive keys of a local batch, (B, d), in the batch's order, with shuffled BatchNorm batches."""
        groups = self.groups_for(images.shape[0])
        if not self.shuffle_bn:
            return self._encode_keys(images, 1)
        world = D.world_size()
        if world == 1:
            order = shuffle_order(index, self.queue_ptr)  # (B,) the shuffled batch's j-th image is order[j]
            shuffled = self._encode_keys(images[order], groups)  # (B, d)
            return torch.empty_like(shuffled).index_copy_(0, order, shuffled)  # back in the batch's order
        b = images.shape[0]
        everyone = D.gather(images)  # (W*B, C, H, W): every process sees the global key batch
        self._global_index = D.gather(index)  # (W*B,) kept for update(): no second gather
        order = shuffle_order(self._global_index, self.queue_ptr)  # (W*B,), the same on every process
        mine = order.view(world, b)[D.rank()]  # (B,) the global positions this process encodes
        encoded = D.gather(self._encode_keys(everyone[mine], groups))  # (W*B, d) in shuffled order
        ordered = torch.empty_like(encoded).index_copy_(0, order, encoded)  # (W*B, d) in global order
        return ordered[D.rank() * b:(D.rank() + 1) * b]  # this process's images

    def forward(self, embed: Embed, index: torch.Tensor, views: list[torch.Tensor]) -> Similarities:
        if self.key_encoder is None:
            raise RuntimeError("MomentumQueue.bind(encoder, ...) must be called before use")
        self._global_index = None
        q = _in_groups(embed, views[0], self.groups_for(views[0].shape[0])).float()  # (B, d)
        k = self.keys(index, views[1])  # (B, d), no gradient
        pos = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
        neg = _fp32_matmul(q, self.queue.clone().t())  # (B, Q)
        self._pending, self._pending_index = k, index
        slots = self.queue_index  # read before update() overwrites it (the module reads it in the step)
        lookup = NegativeIndex(lambda columns: slots[columns], neg.shape)  # (B, M) of the asked columns
        return Similarities(pos, neg, neg_index=lookup, index=index)

    @torch.no_grad()
    def update(self) -> None:
        if self._pending is None or self.key_encoder is None:
            return
        keys = D.gather(self._pending)  # (W*B, d)
        index = self._global_index if self._global_index is not None else D.gather(self._pending_index)  # (W*B,)
        self._pending = self._pending_index = self._global_index = None
        for p_k, p_q in zip(self.key_encoder.parameters(), self._encoder[0].parameters()):
            p_k.mul_(self.encoder_momentum).add_(p_q.detach(), alpha=1.0 - self.encoder_momentum)
        for b_k, b_q in zip(self.key_encoder.buffers(), self._encoder[0].buffers()):
            b_k.copy_(b_q)
        size = self.queue.shape[0]
        if keys.shape[0] > size:  # two keys would land in one slot
            raise ValueError(f"queue_size={size} is smaller than the global batch ({keys.shape[0]} keys)")
        slots = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size  # (W*B,)
        self.queue.index_copy_(0, slots, keys.to(self.queue.dtype))
        self.queue_index.index_copy_(0, slots, index.to(self.queue_index.dtype))
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % size)

    def extra_repr(self) -> str:
        return (f"queue_size={self.queue.shape[0]}, dim={self.dim}, encoder_momentum={self.encoder_momentum}, "
                f"shuffle_bn={self.shuffle_bn}, bn_groups={self.bn_groups}")
