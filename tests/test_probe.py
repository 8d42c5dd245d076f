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
    # noisy labels: a strong penalty generalises better, and the held-out choice finds it
    g = torch.Generator().manual_seed(1)
    xn = torch.randn(400, 50, generator=g)
    yn = (xn[:, 0] > 0).long()
    flip = torch.rand(400, generator=g) < 0.3
    yn = torch.where(flip, 1 - yn, yn)
    xt2 = torch.randn(400, 50, generator=g)
    res = lbfgs_probe(xn, yn, xt2, (xt2[:, 0] > 0).long(), 2, l2_grid=(0.0, 1.0), val_fraction=0.25)
    w_free, b_free = fit_logistic(*standardize(xn)[:1], yn, 2, 0.0)
    assert res["top1"] >= accuracy(standardize(xn, xt2)[1], (xt2[:, 0] > 0).long(), w_free, b_free) - 0.02


def test_bad_arguments():
    x, y = blobs(20, 3, 2)
    with pytest.raises(ValueError, match="val_fraction"):
        lbfgs_probe(x, y, x, y, 2, val_fraction=0)
    with pytest.raises(ValueError, match="l2"):
        fit_logistic(x, y, 2, -1.0)
