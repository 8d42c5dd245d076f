"""The L-BFGS linear probe: it solves the regularised logistic regression and chooses L2 on held-out data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.probe import accuracy, fit_logistic, lbfgs_probe, standardize


def blobs(n: int, d: int, c: int, seed: int = 0, spread: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(c, d, generator=g)
    y = torch.arange(n) % c
    return centres[y] + spread * torch.randn(n, d, generator=g), y


def test_fit_reaches_the_optimum_of_the_regularised_objective():
    x, y = blobs(300, 6, 3, spread=3.0)
    l2 = 1e-2
    w, b = fit_logistic(x, y, 3, l2)

    def objective(w, b):
        return F.cross_entropy(x @ w.T + b, y) + l2 * w.pow(2).sum()

    w_ = w.clone().requires_grad_(True)
    b_ = b.clone().requires_grad_(True)
    objective(w_, b_).backward()
    assert w_.grad.abs().max() < 1e-4 and b_.grad.abs().max() < 1e-4  # stationary point of a convex objective
    # and no random perturbation does better
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        assert objective(w, b) <= objective(w + 1e-2 * torch.randn(w.shape, generator=g), b) + 1e-7


def test_standardize_uses_the_training_statistics():
    x, _ = blobs(100, 4, 2)
    test = x[:10] * 2 + 1
    xs, ts = standardize(x, test)
    torch.testing.assert_close(xs.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(xs.std(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(ts, (test - x.mean(0)) / (x.std(0, unbiased=False) + 1e-5))


def test_probe_separates_separable_classes_and_picks_l2_on_held_out_data():
    x, y = blobs(600, 10, 5, spread=0.5)
    xt, yt = blobs(200, 10, 5, seed=0, spread=0.5)
    result = lbfgs_probe(x, y, xt, yt, num_classes=5, l2_grid=(1e-4, 1e-2))
    assert result["top1"] > 0.95 and result["l2"] in (1e-4, 1e-2)


def test_probe_chooses_the_l2_of_the_best_held_out_accuracy_and_refits_on_the_whole_split():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 50, generator=g)
    y = torch.where(torch.rand(400, generator=g) < 0.3, 1 - (x[:, 0] > 0).long(), (x[:, 0] > 0).long())  # 30% noise
    xt = torch.randn(400, 50, generator=g)
    yt = (xt[:, 0] > 0).long()
    grid = (0.0, 1e-2, 1.0)
    result = lbfgs_probe(x, y, xt, yt, 2, l2_grid=grid, val_fraction=0.25, seed=3)

    # the same choice written out by hand: hold out 100 of 400, standardise with the fit part's statistics
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(3))
    fit, val = perm[100:], perm[:100]
    mu, sd = x[fit].mean(0), x[fit].std(0, unbiased=False) + 1e-5
    scores = [accuracy((x[val] - mu) / sd, y[val], *fit_logistic((x[fit] - mu) / sd, y[fit], 2, l2)) for l2 in grid]
    assert len(set(scores)) > 1, scores  # the grid's strengths differ on held-out data, so the choice matters
    best = max(range(len(grid)), key=lambda i: (scores[i], grid[i]))
    assert result["l2"] == grid[best] and result["val_top1"] == pytest.approx(scores[best])
    mu, sd = x.mean(0), x.std(0, unbiased=False) + 1e-5  # the reported model: refit on all 400
    w, b = fit_logistic((x - mu) / sd, y, 2, grid[best])
    assert result["top1"] == pytest.approx(accuracy((xt - mu) / sd, yt, w, b))


def test_bad_arguments():
    x, y = blobs(20, 3, 2)
    with pytest.raises(ValueError, match="val_fraction"):
        lbfgs_probe(x, y, x, y, 2, val_fraction=0)
    with pytest.raises(ValueError, match="l2"):
        fit_logistic(x, y, 2, -1.0)
