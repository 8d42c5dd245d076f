"""The paper's embedding diagnostics as pure tensor functions (sections 4-5, Eq 5, 10, 11, Fig 8).

Every function works on whatever device its inputs live on, computes in at least fp32
(fp64 inputs stay fp64) and accumulates across chunks in fp64. Pairwise quantities are
computed exactly in row chunks: a ``(chunk, N)`` block is the largest thing ever held,
never ``(N, N)``. ``chunk_size=None`` sizes the chunk so that block is about
``BLOCK_BYTES`` (128 MiB; 671 rows at N = 50,000).

No logging and no ``torch.distributed`` here: the callback gathers, calls and logs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK_BYTES = 128 * 2**20  # one (chunk, N) fp32 block: fast matmuls, far below 1 GB with its temporaries


# --------------------------------------------------------------------------- helpers
def _as_2d(z: Tensor, name: str) -> None:
    if z.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, d), got shape {tuple(z.shape)}")


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """fp32 at least (bf16/fp16 embeddings are upcast); fp64 stays fp64."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _rows_per_chunk(chunk_size: int | None, num_columns: int) -> int:
    """Rows per chunk: ``chunk_size`` if given, else whatever fills ``BLOCK_BYTES`` with fp32 columns."""
    if chunk_size is None:
        return max(1, BLOCK_BYTES // (4 * max(num_columns, 1)))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 (or None for automatic), got {chunk_size}")
    return int(chunk_size)


def _check_labels(labels: Tensor, n: int, name: str) -> None:
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the embeddings, got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {labels.dtype}")


# --------------------------------------------------------------------------- Eq 10
def uniformity(z: Tensor, t: float = 2.0, chunk_size: int | None = None) -> Tensor:
    """L_uniformity of Wang & Isola (paper Eq 10) over all distinct pairs, exactly.

    ``L = log( mean_{i<j} exp(-t * ||z_i - z_j||^2) )``. This is the loss, a number <= 0
    (about -3.9 for t = 2 on a well-spread 128-d sphere; -4 is the high-dimensional
    limit); the paper plots and tabulates ``-L``, so callers log ``-uniformity(z)``.

    Squared distances use ``||a||^2 + ||b||^2 - 2 a.b`` clamped at 0, after centring ``z``
    (distances do not change, the cancellation error does), so non-normalised ``z`` works.
    Only the strictly upper triangle (i < j) is visited; the log-sum-exp is accumulated
    across chunks in fp64.

    Args:
        z: embeddings (N, d), N >= 2; normalised or not.
        t: kernel scale t > 0 (2 in the paper).
        chunk_size: rows per chunk; None sizes a (chunk, N) fp32 block to ``BLOCK_BYTES``.

    Returns:
        A scalar tensor, L_uniformity (natural log), in z's compute dtype.
    """
    _as_2d(z, "z")
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 points (1 pair), got N = {n}")
    if not t > 0:
        raise ValueError(f"t must be > 0, got {t}")
    rows = _rows_per_chunk(chunk_size, n)
    dtype = _compute_dtype(z)
    z = z.detach().to(dtype)
    z = z - z.mean(dim=0, keepdim=True)  # translation-invariant; shrinks ||a||^2 + ||b||^2 - 2ab cancellation
    sq = z.square().sum(dim=1)  # (N,)
    total = torch.tensor(-math.inf, dtype=torch.float64, device=z.device)  # log sum over visited pairs
    for start in range(0, n - 1, rows):  # row n-1 has no partner j > i
        stop = min(start + rows, n - 1)
        m = stop - start
        keys = z[start + 1:]  # (N - start - 1, d): column c is point start + 1 + c
        # -t * ||z_i - z_j||^2 for i in [start, stop), j in [start + 1, N)
        block = torch.addmm(sq[start + 1:].unsqueeze(0), z[start:stop], keys.T, beta=1.0, alpha=-2.0)  # (m, N-start-1)
        block.add_(sq[start:stop].unsqueeze(1)).clamp_(min=0.0).mul_(-t)
        # row r (i = start + r), column c (j = start + 1 + c): j > i  <=>  c >= r; drop the strict lower triangle
        block[:, :m].masked_fill_(torch.ones(m, m, dtype=torch.bool, device=z.device).tril_(-1), -math.inf)
        peak = block.max()  # finite: column c = r is always valid
        # fp32 sum of terms in (0, 1] (CPU and CUDA reduce pairwise: ~1e-7 relative); sum(dtype=fp64) would copy
        chunk_sum = block.sub_(peak).exp_().sum()
        total = torch.logaddexp(total, peak.double() + chunk_sum.double().log())
        del block  # free it before the next addmm allocates its successor: one block alive, not two
    num_pairs = n * (n - 1) / 2
    return (total - math.log(num_pairs)).to(dtype)


# --------------------------------------------------------------------------- Eq 11
def tolerance(z: Tensor, labels: Tensor) -> Tensor:
    """Tolerance (paper Eq 11, as tabulated): mean ``z_i . z_j`` over distinct same-class pairs.

    Pooled over classes: the sum over all ordered pairs (i, j), i != j, l(i) = l(j), divided
    by their count. In O(N d) through per-class sums, in fp64:
    ``sum_{i != j in c} z_i . z_j = ||S_c||^2 - sum_{i in c} ||z_i||^2``. A class with a
    single member contributes no pair. It is the mean cosine similarity when ``z`` is
    normalised, which is what callers pass; this function does not normalise.

    Args:
        z: embeddings (N, d).
        labels: integer class labels (N,), any values (they are only compared).

    Returns:
        A scalar tensor in z's compute dtype.

    Raises:
        ValueError: on bad shapes, or if no class has two members (no pair at all).
    """
    _as_2d(z, "z")
    _check_labels(labels, z.shape[0], "labels")
    dtype = _compute_dtype(z)
    z64 = z.detach().double()
    classes, inverse = torch.unique(labels, return_inverse=True)  # inverse (N,) in [0, C)
    counts = torch.bincount(inverse, minlength=len(classes)).double()  # (C,)
    num_pairs = (counts * (counts - 1)).sum()  # ordered distinct same-class pairs
    if num_pairs.item() == 0:
        raise ValueError("tolerance needs a class with at least two members; every class here has one")
    sums = torch.zeros(len(classes), z.shape[1], dtype=torch.float64, device=z.device)
    sums.index_add_(0, inverse, z64)  # (C, d): S_c
    flat = z64.flatten()
    pair_sum = sums.square().sum() - torch.dot(flat, flat)  # dot: no (N, d) temporary
    return (pair_sum / num_pairs).to(dtype)


# --------------------------------------------------------------------------- alignment
def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> Tensor:
    """Alignment of Wang & Isola: ``mean_i ||z1_i - z2_i||_2^alpha`` over positive pairs.

    Args:
        z1: embeddings of the first views (N, d).
        z2: embeddings of the second views (N, d), row i the positive of ``z1[i]``.
        alpha: exponent > 0 (2 by default, Wang & Isola's choice).

    Returns:
        A scalar tensor in the inputs' compute dtype.
    """
    _as_2d(z1, "z1")
    _as_2d(z2, "z2")
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 1:
        raise ValueError("alignment needs at least one pair, got N = 0")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    dtype = _compute_dtype(z1, z2)
    dist = (z1.detach().to(dtype) - z2.detach().to(dtype)).norm(dim=1)  # (N,)
    return dist.pow(alpha).mean(dtype=torch.float64).to(dtype)


# --------------------------------------------------------------------------- Fig 8
def positive_and_topk_similarities(queries: Tensor, keys: Tensor, pos_index: Tensor, k: int = 10,
                                   chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Fig 8's profile: mean positive similarity and the mean k largest negative similarities.

    For query i the positive is ``keys[pos_index[i]]``; its negatives are the other N - 1
    keys (excluded by index, so a duplicate of the positive elsewhere still counts as a
    negative). The k largest negative similarities are sorted in descending order, then
    each rank is averaged over queries. Similarities are plain dot products: pass
    normalised embeddings for cosines.

    Args:
        queries: anchors (M, d).
        keys: candidates (N, d), N >= k + 1.
        pos_index: integer (M,), the index in ``keys`` of each query's positive.
        k: number of negatives per query, k >= 1.
        chunk_size: queries per chunk; None sizes a (chunk, N) fp32 block to ``BLOCK_BYTES``.

    Returns:
        ``(pos_mean, topk_mean)``: a scalar and a (k,) tensor, descending.
    """
    _as_2d(queries, "queries")
    _as_2d(keys, "keys")
    m, n = queries.shape[0], keys.shape[0]
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries and keys must share d, got {queries.shape[1]} and {keys.shape[1]}")
    if m < 1:
        raise ValueError("positive_and_topk_similarities needs at least one query, got M = 0")
    _check_labels(pos_index, m, "pos_index")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n - 1:
        raise ValueError(f"k must be <= N - 1 = {n - 1} (the negatives of each query), got k = {k}")
    if pos_index.min().item() < 0 or pos_index.max().item() >= n:
        raise ValueError(f"pos_index must lie in [0, {n}), got values in "
                         f"[{pos_index.min().item()}, {pos_index.max().item()}]")
    rows = _rows_per_chunk(chunk_size, n)
    dtype = _compute_dtype(queries, keys)
    queries, keys = queries.detach().to(dtype), keys.detach().to(dtype)
    pos_index = pos_index.to(device=keys.device, dtype=torch.long)
    pos_sum = torch.zeros((), dtype=torch.float64, device=keys.device)
    topk_sum = torch.zeros(k, dtype=torch.float64, device=keys.device)
    for start in range(0, m, rows):
        stop = min(start + rows, m)
        sims = queries[start:stop] @ keys.T  # (c, N)
        pos = pos_index[start:stop].unsqueeze(1)  # (c, 1)
        pos_sum += sims.gather(1, pos).sum(dtype=torch.float64)
        sims.scatter_(1, pos, -math.inf)  # the positive is not a negative
        topk_sum += sims.topk(k, dim=1, largest=True, sorted=True).values.sum(dim=0, dtype=torch.float64)  # (k,)
        del sims  # one (c, N) block alive at a time
    return (pos_sum / m).to(dtype), (topk_sum / m).to(dtype)


# --------------------------------------------------------------------------- kNN monitor
def knn_accuracy(train_z: Tensor, train_y: Tensor, test_z: Tensor, test_y: Tensor, k: int = 200,
                 sigma: float = 0.07, num_classes: int | None = None, chunk_size: int | None = None,
                 exclude_self: bool = False) -> Tensor:
    """Top-1 accuracy of the weighted kNN classifier of Wu et al. 2018 (InstDisc).

    Cosine similarities (both sets are normalised here), the k most similar training
    points, each weighted ``exp(sim / sigma)``; a class's score is the sum of its
    neighbours' weights; the prediction is the argmax (ties: the lowest class index).
    The weights are shifted by each query's largest similarity before ``exp``, which
    leaves the argmax unchanged and cannot overflow for any sigma. A large sigma gives a
    plain majority vote.

    Args:
        train_z: training embeddings (N, d).
        train_y: training labels (N,), integers in [0, num_classes).
        test_z: query embeddings (M, d).
        test_y: query labels (M,).
        k: neighbours, k >= 1; capped at the number of candidates (N, or N - 1 with
            ``exclude_self``) so tiny datasets still give a number.
        sigma: temperature of the weights, > 0.
        num_classes: classes; None infers ``max label + 1``.
        chunk_size: queries per chunk; None sizes a (chunk, N) fp32 block to ``BLOCK_BYTES``.
        exclude_self: the test set is the training set (same order): query i does not vote
            for itself (leave-one-out). Requires M == N.

    Returns:
        A scalar tensor in [0, 1].
    """
    _as_2d(train_z, "train_z")
    _as_2d(test_z, "test_z")
    n, m = train_z.shape[0], test_z.shape[0]
    if train_z.shape[1] != test_z.shape[1]:
        raise ValueError(f"train_z and test_z must share d, got {train_z.shape[1]} and {test_z.shape[1]}")
    _check_labels(train_y, n, "train_y")
    _check_labels(test_y, m, "test_y")
    if m < 1:
        raise ValueError("knn_accuracy needs at least one query, got M = 0")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if exclude_self and m != n:
        raise ValueError(f"exclude_self needs the test set to be the training set, got M = {m} != N = {n}")
    candidates = n - 1 if exclude_self else n
    if candidates < 1:
        raise ValueError("knn_accuracy needs at least one candidate neighbour")
    if min(train_y.min().item(), test_y.min().item()) < 0:
        raise ValueError("labels must be >= 0 (class indices)")
    largest = max(train_y.max().item(), test_y.max().item())
    if num_classes is None:
        num_classes = largest + 1
    elif largest >= num_classes:
        raise ValueError(f"labels go up to {largest}, beyond num_classes = {num_classes}; pass a larger num_classes")
    k = min(k, candidates)
    rows = _rows_per_chunk(chunk_size, n)
    dtype = _compute_dtype(train_z, test_z)
    train = F.normalize(train_z.detach().to(dtype), dim=1)  # (N, d)
    test = F.normalize(test_z.detach().to(dtype), dim=1)  # (M, d)
    train_y = train_y.to(device=train.device, dtype=torch.long)
    test_y = test_y.to(device=train.device, dtype=torch.long)
    correct = torch.zeros((), dtype=torch.long, device=train.device)
    for start in range(0, m, rows):
        stop = min(start + rows, m)
        sims = test[start:stop] @ train.T  # (c, N)
        if exclude_self:
            own = torch.arange(start, stop, device=train.device).unsqueeze(1)  # (c, 1)
            sims.scatter_(1, own, -math.inf)
        top_sims, top_idx = sims.topk(k, dim=1)  # (c, k), descending
        weights = ((top_sims - top_sims[:, :1]) / sigma).exp()  # (c, k), in (0, 1]
        scores = torch.zeros(stop - start, num_classes, dtype=dtype, device=train.device)
        scores.scatter_add_(1, train_y[top_idx], weights)  # (c, C)
        correct += (scores.argmax(dim=1) == test_y[start:stop]).sum()
        del sims  # one (c, N) block alive at a time
    return (correct.double() / m).to(dtype)


# --------------------------------------------------------------------------- collapse
def centroid_norm(z: Tensor) -> Tensor:
    """Norm of the mean embedding, ``|| (1/N) sum_i z_i ||``, for unit-norm rows ``z`` (N, d).

    1 when every row is the same point (complete collapse), about ``1/sqrt(N)`` for rows
    spread uniformly on the sphere, 0 when they are exactly centred. It measures the
    component all embeddings share, which Eq 1's gradient removes only through the
    softmax weights of the negatives (see docs/reproduce.md, the early phase).
    """
    _as_2d(z, "z")
    if z.shape[0] < 1:
        raise ValueError("z needs at least one row")
    mean = z.to(torch.promote_types(_compute_dtype(z), torch.float64)).mean(dim=0)  # (d,), fp64 sum
    return mean.norm().to(_compute_dtype(z))


# --------------------------------------------------------------------------- Eq 5
# The relative penalty belongs to the loss (ContrastiveLossBase.relative_penalty); the plain
# functions stay importable from here for old callers.
from lightning_modules.losses import relative_penalty, relative_penalty_entropy  # noqa: E402,F401
