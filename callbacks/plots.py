"""The per-run figures as PNG files: Fig 8 (similarity profile), Fig 3 (relative penalty), Fig 2 (2-D map).

The figures across runs (Figs 4-7 and 9, Fig 8 per temperature, the trajectories) are drawn
by ``scripts/figures.py`` for ``scripts/report.py``.

Pure matplotlib through ``matplotlib.figure.Figure`` (rendered by Agg), never ``pyplot``:
no global backend switch, no figure left open, safe in a training process. Each
``plot_*`` function creates the parent folder and returns the path it wrote.

The 2-D map offers two methods:

* ``"tsne"``: :func:`tsne`, a small exact t-SNE (van der Maaten & Hinton 2008) in torch:
  per-point perplexity by bisection, O(N^2) memory and time per iteration, 500 iterations
  with early exaggeration, momentum and per-parameter gains as in the reference
  implementation. For the paper's Fig 2 view; about 10-20 s for 2000 points on 2 CPU cores.
  scikit-learn is not a dependency.
* ``"pca"``: :func:`pca`, the two leading principal components; instant, linear, and
  shows global structure only (clusters on a 128-d sphere overlap much more than in t-SNE).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib import cm, colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from callbacks.figure_style import save_figure as _save  # one style with scripts/figures.py


# --------------------------------------------------------------------------- Fig 8
def run_label(module: Any, datamodule: Any = None) -> str:
    """What a run trains, for plot titles: the loss, its temperature (and hard negatives), the dataset.

    E.g. ``HardContrastiveLoss, tau = 0.3, 4095 hardest negatives, cifar10``.
    """
    loss = getattr(module, "loss", None)
    parts = [type(loss).__name__ if loss is not None else type(module).__name__]
    temperature = getattr(loss, "temperature", None)
    if temperature is not None:
        parts.append(f"tau = {temperature:g}")
    if getattr(loss, "num_negatives", None) is not None:
        parts.append(f"{loss.num_negatives} hardest negatives")
    elif getattr(loss, "alpha", None) is not None:
        parts.append(f"alpha = {loss.alpha:g}")
    dataset = getattr(datamodule, "dataset_name", None)
    if dataset:
        parts.append(str(dataset))
    return ", ".join(parts)


def plot_similarity_profile(history: Mapping[int, tuple[float, Sequence[float]]], path: str | Path,
                            run: str | None = None) -> Path:
    """Fig 8: the positive similarity then the top-k negative similarities, one line per epoch.

    Args:
        history: epoch -> (mean positive similarity, mean top-k negative similarities in
            descending order), e.g. from :func:`callbacks.metrics.positive_and_topk_similarities`.
        path: PNG file to write.
        run: what was trained (:func:`run_label`), shown under the title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not history:
        raise ValueError("history is empty: record at least one epoch before plotting")
    epochs = sorted(history)
    norm = Normalize(vmin=epochs[0], vmax=max(epochs[-1], epochs[0] + 1))  # a single epoch still gets a scale
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    k = 0
    for epoch in epochs:
        pos, negs = history[epoch]
        values = [float(pos), *map(float, negs)]
        k = max(k, len(values) - 1)
        ax.plot(range(len(values)), values, marker="o", markersize=3, color=cmap(norm(epoch)), linewidth=1.2)
    ax.set_xticks(range(k + 1))
    ax.set_xticklabels(["pos"] + [f"n{r}" for r in range(1, k + 1)])
    ax.set_xlabel("positive, then i-th nearest negative")
    ax.set_ylabel("mean similarity")
    ax.set_title("Positive and top-k negative similarities (Fig 8)" + (f"\n{run}" if run else ""),
                 fontsize="medium")
    ax.grid(alpha=0.3)
    colorbar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax)
    colorbar.set_label("epoch")
    return _save(fig, path)


# --------------------------------------------------------------------------- Fig 3
def _penalty_label(loss: Any) -> str:
    if type(loss).__name__ == "ContrastiveLoss":
        return f"τ = {loss.temperature:g}"  # the paper's Fig 3: one curve per temperature
    name = getattr(loss, "title", None) or type(loss).__name__
    return name if loss.temperature is None else f"{name}, τ = {loss.temperature:g}"


def plot_relative_penalty(losses: Any, path: str | Path, num_points: int = 400, num_negatives: int = 4096,
                          seed: int = 0, log_scale: bool = False, positive: float = 0.5) -> Path:
    """Fig 3: each negative's relative penalty ``r`` against its similarity s, for each loss.

    As in the paper, ``num_negatives`` similarities are drawn uniformly from [-1, 1] (a fixed
    seed, so every call draws the same set); ``r`` is the loss's own
    :meth:`~lightning_modules.losses.ContrastiveLossBase.relative_penalty` (its gradient's
    share per negative, Eq 5 for the contrastive loss: the same function the training log's
    ``train/penalty_entropy`` reads), and ``num_points`` of the sorted samples are drawn.

    Args:
        losses: one loss or temperature, or several; a number tau stands for
            ``ContrastiveLoss(tau)`` (the paper's figure: several tau).
        path: PNG file to write.
        num_points: points drawn per curve (evenly spaced over the sorted samples).
        num_negatives: size of the sampled set of negatives (the denominator of Eq 5).
        seed: seed of the draw.
        log_scale: logarithmic y axis (shows every tau's tail; the paper's figure is linear).
        positive: the anchor's positive similarity (Eq 5 does not depend on it; other losses may).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from lightning_modules.losses import ContrastiveLoss, ContrastiveLossBase  # noqa: PLC0415
    from lightning_modules.similarities import Similarities  # noqa: PLC0415

    items = list(losses) if isinstance(losses, (list, tuple)) else [losses]
    bad = [x for x in items if not isinstance(x, ContrastiveLossBase)
           and (isinstance(x, bool) or not isinstance(x, (int, float)) or not x > 0)]
    if not items or bad:
        raise ValueError(f"temperatures must be one or more values > 0 (or losses), got {losses}")
    if num_negatives < 2 or num_points < 2:
        raise ValueError(f"num_negatives and num_points must be >= 2, got {num_negatives} and {num_points}")
    numbers = sorted(float(x) for x in items if not isinstance(x, ContrastiveLossBase))
    curves = [ContrastiveLoss(t) for t in numbers] + [x for x in items if isinstance(x, ContrastiveLossBase)]
    generator = torch.Generator().manual_seed(seed)
    s = torch.rand(num_negatives, generator=generator, dtype=torch.float64).mul(2).sub(1).sort().values  # (K,)
    shown = torch.linspace(0, num_negatives - 1, min(num_points, num_negatives)).round().long()  # (P,)
    record = Similarities(torch.full((1, 1), positive, dtype=torch.float64), s.unsqueeze(0))  # one anchor
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    for loss in curves:
        r = loss.relative_penalty(record)[0]  # (K,) from the loss's gradient
        ax.plot(s[shown].numpy(), r[shown].numpy(), label=_penalty_label(loss), linewidth=1.5)
    ax.set_xlabel("similarity $s_{i,j}$")
    ax.set_ylabel("relative penalty $r_{i,j}$")
    ax.set_title(f"Relative penalty, {num_negatives} negatives ~ U[-1, 1] (Fig 3)")
    if log_scale:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- Fig 2
def pca(z: Tensor, dim: int = 2) -> Tensor:
    """Coordinates of ``z`` (N, d) on its ``dim`` leading principal components, (N, dim).

    Signs are fixed (each component's largest-magnitude loading is positive) so the map
    does not flip between calls.
    """
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"z must be (N, d) with N >= 2, got shape {tuple(z.shape)}")
    x = z.detach().double()
    x = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)  # vh (min(N, d), d)
    components = vh[:dim]  # (dim, d)
    signs = components.gather(1, components.abs().argmax(dim=1, keepdim=True)).sign()  # (dim, 1)
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    out = x @ components.T  # (N, <=dim)
    if out.shape[1] < dim:  # d or N below dim: pad with zeros
        out = torch.cat([out, out.new_zeros(out.shape[0], dim - out.shape[1])], dim=1)
    return out.float()


def _squared_distances(x: Tensor) -> Tensor:
    sq = x.square().sum(dim=1)  # (N,)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * x @ x.T).clamp_(min=0)  # (N, N)
    return d2.fill_diagonal_(0)


def conditional_probabilities(z: Tensor, perplexity: float = 30.0, tol: float = 1e-5,
                              max_iter: int = 200) -> Tensor:
    """t-SNE's input affinities ``p_{j|i}`` (N, N): a Gaussian per row, its width set by bisection
    so that each row's perplexity ``exp(H(P_i))`` equals ``perplexity`` (all rows at once).

    Args:
        z: points (N, d), N >= 2.
        perplexity: target perplexity; capped at (N - 1) / 3 for small N (as a usable value).
        tol: tolerance on the entropy (nats).
        max_iter: bisection steps.

    Returns:
        (N, N) fp64, rows sum to 1, zero diagonal.
    """
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"t-SNE needs at least 2 points, got {n}")
    if not perplexity > 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    perplexity = min(perplexity, max((n - 1) / 3, 1.0))
    d2 = _squared_distances(z.detach().double())  # (N, N)
    d2 = d2 / d2[d2 > 0].median().clamp(min=1e-12) if (d2 > 0).any() else d2  # scale-free start for beta
    target = math.log(perplexity)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    beta = torch.ones(n, dtype=torch.float64, device=z.device)  # 1 / (2 sigma_i^2)
    lo = torch.zeros_like(beta)
    hi = torch.full_like(beta, math.inf)
    for _ in range(max_iter):
        log_p = torch.log_softmax((-d2 * beta.unsqueeze(1)).masked_fill(eye, -math.inf), dim=1)  # (N, N)
        entropy = torch.special.entr(log_p.exp()).sum(dim=1)  # (N,)
        if (entropy - target).abs().max() < tol:
            break
        too_flat = entropy > target  # too wide a Gaussian: raise beta
        lo = torch.where(too_flat, beta, lo)
        hi = torch.where(too_flat, hi, beta)
        beta = torch.where(torch.isinf(hi), beta * 2, (lo + hi) / 2)
    return log_p.exp()


def tsne(z: Tensor, perplexity: float = 30.0, num_iters: int = 500, seed: int = 0, init: str = "pca",
         early_exaggeration: float = 12.0, exaggeration_iters: int = 125) -> Tensor:
    """Exact t-SNE (van der Maaten & Hinton 2008) of ``z`` (N, d) to (N, 2), in torch on z's device.

    Gradient descent on KL(P || Q) with the reference recipe: early exaggeration (x12 for
    the first ``exaggeration_iters`` steps, momentum 0.5, then 0.8), per-parameter gains
    and learning rate ``max(N / early_exaggeration / 4, 50)`` (scikit-learn's "auto").
    Memory and time are O(N^2): meant for up to a few thousand points.

    Args:
        z: points (N, d).
        perplexity: effective number of neighbours (see :func:`conditional_probabilities`).
        num_iters: gradient steps.
        seed: seed of the ``"random"`` initialisation (``"pca"`` is deterministic).
        init: ``"pca"`` (scaled PCA, std 1e-4) or ``"random"`` (Gaussian, std 1e-4).
        early_exaggeration: factor on P during the first steps.
        exaggeration_iters: steps with exaggeration.

    Returns:
        (N, 2) float32 coordinates.
    """
    if z.dim() != 2:
        raise ValueError(f"z must be (N, d), got shape {tuple(z.shape)}")
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    n = z.shape[0]
    p = conditional_probabilities(z, perplexity)  # (N, N)
    p = ((p + p.T) / (2 * n)).clamp_(min=1e-12).float()  # joint, symmetric
    p.fill_diagonal_(0)
    if init == "pca":
        y = pca(z).to(z.device)
        y = y / y[:, 0].std().clamp(min=1e-12) * 1e-4
    elif init == "random":
        y = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)).to(z.device) * 1e-4
    else:
        raise ValueError(f"init must be 'pca' or 'random', got {init!r}")
    lr = max(n / early_exaggeration / 4, 50.0)
    update = torch.zeros_like(y)
    gains = torch.ones_like(y)
    for step in range(num_iters):
        exaggerate = step < exaggeration_iters
        num = 1.0 / (1.0 + _squared_distances(y))  # (N, N) Student-t kernel
        num.fill_diagonal_(0)
        q = num / num.sum()
        w = ((early_exaggeration * p if exaggerate else p) - q) * num  # (N, N)
        grad = 4.0 * (w.sum(dim=1, keepdim=True) * y - w @ y)  # (N, 2)
        same_sign = (grad > 0) == (update > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_(min=0.01)
        update = (0.5 if exaggerate else 0.8) * update - lr * gains * grad
        y = y + update
    return y - y.mean(dim=0, keepdim=True)


def plot_embedding_2d(z: Tensor, labels: Tensor, path: str | Path, method: str = "tsne", max_points: int = 2000,
                      seed: int = 0) -> Path:
    """Fig 2: a 2-D map of the embeddings coloured by class.

    Args:
        z: embeddings (N, d).
        labels: integer labels (N,).
        path: PNG file to write.
        method: ``"tsne"`` (:func:`tsne`, the paper's view, O(max_points^2)) or ``"pca"``
            (:func:`pca`, instant, linear).
        max_points: a random subset of this many points (seeded) when N is larger.
        seed: seed of the subset and of t-SNE.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if z.dim() != 2 or labels.shape != (z.shape[0],):
        raise ValueError(f"z must be (N, d) and labels (N,), got {tuple(z.shape)} and {tuple(labels.shape)}")
    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    z, labels = z.detach().float().cpu(), labels.detach().cpu()
    if z.shape[0] > max_points:
        keep = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
        z, labels = z[keep], labels[keep]
    coords = (tsne(z, seed=seed) if method == "tsne" else pca(z)).numpy()  # (n, 2)
    classes = torch.unique(labels).tolist()
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "turbo"]
    fig = Figure(figsize=(6.0, 6.0))
    ax = fig.add_subplot()
    for rank, c in enumerate(classes):
        mask = (labels == c).numpy()
        color = cmap(rank % cmap.N) if len(classes) <= 20 else cmap(rank / max(len(classes) - 1, 1))
        ax.scatter(coords[mask, 0], coords[mask, 1], s=4, color=color, label=str(c), linewidths=0)
    if len(classes) <= 20:
        ax.legend(markerscale=3, fontsize="small", loc="best", title="class")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{'t-SNE' if method == 'tsne' else 'PCA'} of {len(z)} embeddings (Fig 2)")
    return _save(fig, path)
