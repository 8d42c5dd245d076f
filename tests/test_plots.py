"""The figures are written as real PNGs; t-SNE and PCA place points where they should."""

from __future__ import annotations

import math

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from callbacks import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_side: int = 200) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    image = mpimg.imread(path)  # (H, W, 4) floats in [0, 1]
    assert image.ndim == 3 and image.shape[0] >= min_side and image.shape[1] >= min_side
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas
    return image


def two_blobs(n: int = 120, d: int = 20, gap: float = 8.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g)
    labels = torch.arange(n) % 2
    z[labels == 1, 0] += gap
    return z, labels


def separated(coords: torch.Tensor, labels: torch.Tensor) -> bool:
    """Every point is nearer its own cluster's centroid, and centroids are 3x further apart than the mean radius."""
    centroids = torch.stack([coords[labels == c].mean(dim=0) for c in (0, 1)])  # (2, 2)
    nearest = torch.cdist(coords, centroids).argmin(dim=1)
    radius = torch.cat([(coords[labels == c] - centroids[c]).norm(dim=1) for c in (0, 1)]).mean()
    return bool((nearest == labels).all()) and (centroids[0] - centroids[1]).norm() > 3 * radius


# --------------------------------------------------------------------------- Fig 8
def test_similarity_profile_writes_a_png(tmp_path):
    history = {e: (0.9 - 0.01 * e, [0.5 - 0.02 * r - 0.01 * e for r in range(10)]) for e in range(0, 50, 5)}
    path = plots.plot_similarity_profile(history, tmp_path / "sub" / "profile.png")
    assert path == tmp_path / "sub" / "profile.png"
    assert_png(path)


def test_similarity_profile_title_names_the_loss_tau_and_dataset(tmp_path):
    from types import SimpleNamespace

    from lightning_modules.losses import HardContrastiveLoss, SimpleContrastiveLoss

    module = SimpleNamespace(loss=HardContrastiveLoss(temperature=0.3, num_negatives=4095))
    label = plots.run_label(module, SimpleNamespace(dataset_name="cifar10"))
    assert label == "HardContrastiveLoss, tau = 0.3, 4095 hardest negatives, cifar10"
    assert plots.run_label(SimpleNamespace(loss=SimpleContrastiveLoss()), SimpleNamespace(dataset_name="svhn")) \
        == "SimpleContrastiveLoss, svhn"  # no temperature to name
    path = plots.plot_similarity_profile({0: (0.8, [0.4, 0.3])}, tmp_path / "p.png", run=label)
    from PIL import Image

    with Image.open(path) as image:
        title = image.text["Title"]
    assert "Fig 8" in title and "HardContrastiveLoss" in title and "tau = 0.3" in title and "cifar10" in title
    assert_png(path)


def test_similarity_profile_with_a_single_epoch(tmp_path):
    assert_png(plots.plot_similarity_profile({3: (0.8, [0.4, 0.3, 0.2])}, tmp_path / "one.png"))


def test_similarity_profile_rejects_an_empty_history(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plots.plot_similarity_profile({}, tmp_path / "none.png")


# --------------------------------------------------------------------------- Fig 3
@pytest.mark.parametrize("temperatures", [0.07, [0.07, 0.2, 0.3, 0.7, 1.0]])
def test_relative_penalty_writes_a_png(tmp_path, temperatures):
    assert_png(plots.plot_relative_penalty(temperatures, tmp_path / "penalty.png"))


def test_relative_penalty_log_scale_writes_a_png(tmp_path):
    assert_png(plots.plot_relative_penalty([0.07, 1.0], tmp_path / "penalty_log.png", num_points=50,
                                           num_negatives=100, log_scale=True))


@pytest.mark.parametrize("temperatures", [0.0, [0.1, -1.0], []])
def test_relative_penalty_rejects_bad_temperatures(tmp_path, temperatures):
    with pytest.raises(ValueError):
        plots.plot_relative_penalty(temperatures, tmp_path / "bad.png")


def test_fig3_is_drawn_from_each_losss_own_relative_penalty(tmp_path, monkeypatch):
    """The curves come from ContrastiveLossBase.relative_penalty, the function train/penalty_entropy reads,
    for any loss (a hard one, one without a temperature), not from Eq 5 written out again."""
    from lightning_modules.losses import (ContrastiveLoss, ContrastiveLossBase, HardContrastiveLoss,
                                          SimpleContrastiveLoss)

    drawn = []
    real = ContrastiveLossBase.relative_penalty

    def spy(self, sims, neg=None):
        r = real(self, sims, neg)
        drawn.append((type(self).__name__, sims.neg, r))
        return r

    monkeypatch.setattr(ContrastiveLossBase, "relative_penalty", spy)
    hard = HardContrastiveLoss(0.2, num_negatives=100)
    assert_png(plots.plot_relative_penalty([0.5, hard, SimpleContrastiveLoss()], tmp_path / "fig3.png",
                                           num_negatives=1000))
    assert [(name, tuple(neg.shape)) for name, neg, _ in drawn] == [
        ("ContrastiveLoss", (1, 1000)), ("HardContrastiveLoss", (1, 1000)), ("SimpleContrastiveLoss", (1, 1000))]
    (_, neg, eq5), (_, _, eq8), (_, _, flat) = drawn
    torch.testing.assert_close(eq5, torch.softmax(neg / 0.5, dim=1))  # Eq 5 over the sampled negatives
    assert (eq8 > 0).sum() == 100 and torch.allclose(flat, torch.full_like(flat, 1e-3))


# --------------------------------------------------------------------------- Fig 2
def test_conditional_probabilities_reach_the_target_perplexity():
    z, _ = two_blobs(n=150)
    p = plots.conditional_probabilities(z, perplexity=20.0)
    assert torch.allclose(p.sum(dim=1), torch.ones(150, dtype=torch.float64), atol=1e-10)
    assert torch.all(p.diagonal() == 0)
    entropy = torch.special.entr(p).sum(dim=1)
    assert torch.allclose(entropy.exp(), torch.full((150,), 20.0, dtype=torch.float64), rtol=1e-3)


def test_tsne_separates_two_blobs_and_is_deterministic():
    z, labels = two_blobs()
    coords = plots.tsne(z, perplexity=15)
    assert coords.shape == (120, 2) and torch.isfinite(coords).all()
    assert separated(coords, labels)
    assert torch.equal(coords, plots.tsne(z, perplexity=15))


def test_tsne_separates_blobs_from_a_random_start():
    z, labels = two_blobs(seed=1)
    assert separated(plots.tsne(z, init="random", seed=3), labels)


def test_tsne_keeps_local_neighbours():
    # 4 tight clusters placed on a line: each point's 2-D nearest neighbour is from its own cluster
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(160) % 4
    z = 0.3 * torch.randn(160, 10, generator=g)
    z[:, 0] += 3.0 * labels
    coords = plots.tsne(z, perplexity=10)
    d = torch.cdist(coords, coords).fill_diagonal_(math.inf)
    assert (labels[d.argmin(dim=1)] == labels).float().mean() > 0.97


def test_pca_finds_the_dominant_direction():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(300, 8, generator=g)
    z[:, 3] *= 10.0
    coords = plots.pca(z)
    assert coords.shape == (300, 2)
    corr = torch.corrcoef(torch.stack([coords[:, 0], z[:, 3]]))[0, 1]
    assert corr > 0.99  # sign fixed: the largest loading (on axis 3) is positive
    assert coords[:, 0].var() > 20 * coords[:, 1].var()


def test_pca_separates_two_blobs():
    z, labels = two_blobs(gap=20.0)
    assert separated(plots.pca(z), labels)


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_embedding_map_writes_a_png(tmp_path, method):
    z, labels = two_blobs(n=300)
    path = plots.plot_embedding_2d(z, labels, tmp_path / f"{method}.png", method=method, max_points=150)
    assert_png(path)


def test_embedding_map_with_many_classes(tmp_path):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 16, generator=g)
    labels = torch.arange(200) % 25
    assert_png(plots.plot_embedding_2d(z, labels, tmp_path / "many.png", method="pca"))


@pytest.mark.parametrize("kwargs", [dict(method="umap"), dict(labels=torch.zeros(3)), dict(max_points=1)])
def test_embedding_map_rejects_bad_input(tmp_path, kwargs):
    args = dict(z=torch.randn(10, 4), labels=torch.zeros(10, dtype=torch.long), path=tmp_path / "x.png") | kwargs
    with pytest.raises(ValueError):
        plots.plot_embedding_2d(**args)
