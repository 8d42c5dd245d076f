"""The embedding metrics against brute-force float64 references, analytic values and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from callbacks import metrics as M

N, D, CHUNK = 53, 6, 7  # N is not a multiple of the chunk size: the last chunk is partial


# --------------------------------------------------------------------------- data and references
def random_points(n: int = N, d: int = D, seed: int = 0, normalize: bool = True) -> torch.Tensor:
    """Random points with exact duplicates (rows 1 and 2 copy row 0, row 10 copies row 9)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    z[1] = z[0]
    z[2] = z[0]
    z[10] = z[9]
    return F.normalize(z, dim=1) if normalize else z


def random_labels(n: int = N, seed: int = 0) -> torch.Tensor:
    """Labels in {3, 5, 8, 11} plus one singleton class 42 (row 4) and non-contiguous values."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([3, 5, 8, 11])[torch.randint(0, 4, (n,), generator=g)]
    y[4] = 42
    y[1] = y[2] = y[0]  # the duplicate points share a class: kNN ties between them cannot change a vote
    y[10] = y[9]
    return y


def uniformity_ref(z: torch.Tensor, t: float) -> float:
    d2 = torch.pdist(z.double()).square()  # (N (N-1) / 2,) strictly upper triangle
    return torch.exp(-t * d2).mean().log().item()


def tolerance_ref(z: torch.Tensor, y: torch.Tensor) -> float:
    z = z.double()
    gram = z @ z.T  # (N, N)
    mask = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool)
    return gram[mask].mean().item()


def profile_ref(q: torch.Tensor, keys: torch.Tensor, pos_index: torch.Tensor, k: int):
    q, keys = q.double(), keys.double()
    pos, negs = [], []
    for i in range(len(q)):
        sims = keys @ q[i]  # (N,)
        pos.append(sims[pos_index[i]])
        others = torch.cat([sims[: pos_index[i]], sims[pos_index[i] + 1:]])
        negs.append(others.sort(descending=True).values[:k])
    return torch.stack(pos).mean(), torch.stack(negs).mean(dim=0)


def knn_ref(train_z, train_y, test_z, test_y, k, sigma, num_classes, exclude_self=False) -> float:
    train, test = F.normalize(train_z.double(), dim=1), F.normalize(test_z.double(), dim=1)
    correct = 0
    for i in range(len(test)):
        sims = train @ test[i]
        if exclude_self:
            sims[i] = -math.inf
        order = sims.argsort(descending=True, stable=True)[:k]
        scores = torch.zeros(num_classes, dtype=torch.float64)
        top = sims[order[0]].item()  # a common factor exp(-top / sigma): same argmax, no overflow at tiny sigma
        for j in order.tolist():
            scores[train_y[j]] += math.exp((sims[j].item() - top) / sigma)
        correct += int(scores.argmax().item() == test_y[i].item())
    return correct / len(test)


class LargestTensor(TorchFunctionMode):
    """Records the largest tensor any torch call returns: the chunking guarantee, checked."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(item, torch.Tensor):
                self.numel = max(self.numel, item.numel())
        return out


# --------------------------------------------------------------------------- uniformity (Eq 10)
@pytest.mark.parametrize("chunk_size", [1, CHUNK, N - 1, N, 1000, None])
def test_uniformity_matches_pdist(chunk_size):
    z = random_points()
    assert M.uniformity(z, t=2.0, chunk_size=chunk_size).item() == pytest.approx(uniformity_ref(z, 2.0), abs=1e-10)


@pytest.mark.parametrize("t", [0.5, 2.0, 7.0])
def test_uniformity_non_normalised_fp32_matches_reference(t):
    z = (3.0 * random_points(normalize=False) + 5.0).float()  # off-centre, norms ~ 15
    got = M.uniformity(z, t=t, chunk_size=CHUNK)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(uniformity_ref(z, t), rel=1e-4)


def test_uniformity_half_precision_input_is_computed_in_fp32():
    z = random_points().bfloat16()
    got = M.uniformity(z, chunk_size=CHUNK)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(uniformity_ref(z.double(), 2.0), abs=1e-5)


def test_uniformity_of_identical_points_is_zero():
    z = F.normalize(torch.ones(17, 4), dim=1)
    assert M.uniformity(z, chunk_size=5).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_uniformity_of_two_antipodal_points_is_minus_4t(t):
    z = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    assert M.uniformity(z, t=t).item() == pytest.approx(-4.0 * t, abs=1e-5)


def test_uniformity_excludes_self_pairs():
    # 3 points: a, a, b far away. Distinct pairs: (a, a) -> 1, (a, b) x 2 -> ~0: L = log(1/3).
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    expected = math.log((1 + 2 * math.exp(-8)) / 3)
    assert M.uniformity(z, chunk_size=1).item() == pytest.approx(expected, abs=1e-6)


def test_uniformity_of_random_points_on_a_high_dim_sphere_tends_to_minus_4():
    torch.manual_seed(0)
    z = F.normalize(torch.randn(2000, 512), dim=1)
    assert 3.9 < -M.uniformity(z).item() < 4.0


def test_uniformity_never_holds_n_by_n():
    z = random_points(n=400, d=8).float()
    with LargestTensor() as spy:
        M.uniformity(z, chunk_size=16)
    assert 0 < spy.numel <= 16 * 400


def test_default_chunk_is_a_100_to_200_mb_block_at_cifar_size():
    rows = M._rows_per_chunk(None, 50_000)
    assert 100e6 <= rows * 50_000 * 4 <= 200e6


@pytest.mark.parametrize("bad", [dict(z=torch.randn(1, 3)), dict(z=torch.randn(5)), dict(z=torch.randn(4, 3), t=0.0),
                                 dict(z=torch.randn(4, 3), t=-1.0), dict(z=torch.randn(4, 3), chunk_size=0)])
def test_uniformity_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        M.uniformity(**bad)


# --------------------------------------------------------------------------- tolerance (Eq 11)
def test_tolerance_matches_brute_force_with_a_singleton_class():
    z, y = random_points(), random_labels()
    assert (y == 42).sum() == 1
    assert M.tolerance(z, y).item() == pytest.approx(tolerance_ref(z, y), abs=1e-12)


def test_tolerance_is_pooled_over_pairs_not_averaged_over_classes():
    # class 0: 3 identical points (6 ordered pairs, sim 1); class 1: 2 antipodal points (2 pairs, sim -1)
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    y = torch.tensor([0, 0, 0, 1, 1])
    assert M.tolerance(z, y).item() == pytest.approx((6 * 1 - 2 * 1) / 8)  # a per-class mean would give 0


def test_tolerance_of_identical_unit_vectors_is_one():
    z = F.normalize(torch.randn(1, 8), dim=1).repeat(20, 1)
    assert M.tolerance(z, torch.zeros(20, dtype=torch.long)).item() == pytest.approx(1.0, abs=1e-6)


def test_tolerance_of_two_antipodal_same_class_points_is_minus_one():
    z = torch.tensor([[0.6, 0.8], [-0.6, -0.8], [1.0, 0.0]])
    y = torch.tensor([1, 1, 2])  # the third point is alone in its class: no pair
    assert M.tolerance(z, y).item() == pytest.approx(-1.0, abs=1e-6)


def test_tolerance_is_linear_in_scale_on_unnormalised_input():
    z, y = random_points(normalize=False), random_labels()
    assert M.tolerance(2 * z, y).item() == pytest.approx(4 * tolerance_ref(z, y), rel=1e-10)


def test_tolerance_without_any_pair_raises():
    with pytest.raises(ValueError, match="two members"):
        M.tolerance(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize("labels", [torch.zeros(5, dtype=torch.long), torch.zeros(6, 1, dtype=torch.long),
                                    torch.zeros(6)])
def test_tolerance_rejects_bad_labels(labels):
    with pytest.raises(ValueError):
        M.tolerance(torch.randn(6, 3), labels)


def test_tolerance_is_o_n_d():
    z, y = random_points(n=400, d=8), random_labels(n=400)
    with LargestTensor() as spy:
        M.tolerance(z, y)
    assert spy.numel <= 400 * 8


# --------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_loop(alpha):
    z1, z2 = random_points(seed=1), random_points(seed=2)
    expected = sum((z1[i] - z2[i]).norm().item() ** alpha for i in range(N)) / N
    assert M.alignment(z1, z2, alpha=alpha).item() == pytest.approx(expected, rel=1e-12)


def test_alignment_of_identical_views_is_zero_and_of_antipodal_views_is_four():
    z = random_points()
    assert M.alignment(z, z).item() == 0.0
    assert M.alignment(z, -z).item() == pytest.approx(4.0)


@pytest.mark.parametrize("z2, alpha", [(torch.randn(5, 3), 2.0), (torch.randn(4, 2), 2.0), (torch.randn(4, 3), 0.0)])
def test_alignment_rejects_bad_input(z2, alpha):
    with pytest.raises(ValueError):
        M.alignment(torch.randn(4, 3), z2, alpha=alpha)


# --------------------------------------------------------------------------- Fig 8 profile
@pytest.mark.parametrize("chunk_size", [1, CHUNK, None])
def test_profile_matches_brute_force(chunk_size):
    keys = random_points(seed=3)
    queries = random_points(n=31, seed=4)
    queries[5] = keys[0]  # a query equal to three duplicate keys
    pos_index = torch.randint(0, N, (31,), generator=torch.Generator().manual_seed(5))
    pos_index[5] = 1  # its positive is one of the duplicates: the others stay negatives
    pos, negs = M.positive_and_topk_similarities(queries, keys, pos_index, k=10, chunk_size=chunk_size)
    pos_ref, negs_ref = profile_ref(queries, keys, pos_index, 10)
    assert negs.shape == (10,)
    assert pos.item() == pytest.approx(pos_ref.item(), abs=1e-12)
    assert torch.allclose(negs, negs_ref, atol=1e-12)
    assert torch.all(negs[:-1] >= negs[1:])


def test_profile_on_a_hand_built_example():
    keys = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos_index = torch.tensor([0, 4])
    # query 0: positive 1.0; negatives 0.8, 0.0, -1.0, 0.6 -> top-2 (0.8, 0.6)
    # query 1: positive 0.8; negatives 0.0, 0.6, 1.0, 0.0 -> top-2 (1.0, 0.6)
    pos, negs = M.positive_and_topk_similarities(queries, keys, pos_index, k=2, chunk_size=1)
    assert pos.item() == pytest.approx(0.9)
    assert negs.tolist() == pytest.approx([0.9, 0.6])


def test_profile_with_self_as_positive_excludes_self():
    z = random_points()
    pos, negs = M.positive_and_topk_similarities(z, z, torch.arange(N), k=3, chunk_size=CHUNK)
    assert pos.item() == pytest.approx(1.0)
    # rows 0, 1, 2 are copies, and 9, 10: those rows' nearest negative is a copy (similarity 1)
    first = (z @ z.T).fill_diagonal_(-math.inf).max(dim=1).values.mean()
    assert negs[0].item() == pytest.approx(first.item())
    assert negs[0].item() < 1.0


def test_profile_never_holds_n_by_n():
    z = random_points(n=400, d=8)
    with LargestTensor() as spy:
        M.positive_and_topk_similarities(z, z, torch.arange(400), k=10, chunk_size=16)
    assert 0 < spy.numel <= 16 * 400


@pytest.mark.parametrize("kwargs", [dict(k=0), dict(k=5), dict(pos_index=torch.tensor([0, 1, 2])),
                                    dict(pos_index=torch.tensor([0, 1, 2, 5])),
                                    dict(pos_index=torch.tensor([0.0, 1.0, 2.0, 3.0])),
                                    dict(keys=torch.randn(5, 2))])
def test_profile_rejects_bad_input(kwargs):
    args = dict(queries=torch.randn(4, 3), keys=torch.randn(5, 3), pos_index=torch.arange(4), k=2) | kwargs
    with pytest.raises(ValueError):
        M.positive_and_topk_similarities(**args)


# --------------------------------------------------------------------------- kNN monitor
@pytest.mark.parametrize("chunk_size, k, sigma", [(CHUNK, 5, 0.07), (1, 20, 0.5), (None, 53, 0.07), (CHUNK, 1, 0.07)])
def test_knn_matches_brute_force(chunk_size, k, sigma):
    train_z, train_y = random_points(normalize=False), random_labels()
    test_z = random_points(n=40, seed=7, normalize=False)
    test_y = random_labels(n=40, seed=8)
    got = M.knn_accuracy(train_z, train_y, test_z, test_y, k=k, sigma=sigma, num_classes=43, chunk_size=chunk_size)
    expected = knn_ref(train_z, train_y, test_z, test_y, k, sigma, 43)
    assert 0.0 < expected < 1.0  # the case says something
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_knn_on_a_toy_example_known_by_hand():
    # class 0 around +x, class 1 around +y; the third query sits nearer a class 1 point
    train_z = torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    train_y = torch.tensor([0, 0, 1, 1])
    test_z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.3, 1.0]])
    assert M.knn_accuracy(train_z, train_y, test_z, torch.tensor([0, 1, 1]), k=1).item() == 1.0
    assert M.knn_accuracy(train_z, train_y, test_z, torch.tensor([0, 1, 0]), k=1).item() == pytest.approx(2 / 3)


def test_knn_weighted_vote_disagrees_with_majority_vote():
    # k = 3: one class-0 neighbour at similarity 0.99, two class-1 neighbours at 0.5.
    # weighted (sigma 0.07): e^(0.99/0.07) > 2 e^(0.5/0.07) -> class 0; majority (huge sigma) -> class 1
    a = math.acos(0.5)
    train_z = torch.tensor([[math.cos(math.acos(0.99)), math.sin(math.acos(0.99))],
                            [math.cos(a), math.sin(a)], [math.cos(a), -math.sin(a)], [-1.0, 0.0]])
    train_y = torch.tensor([0, 1, 1, 0])
    query, label = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    assert M.knn_accuracy(train_z, train_y, query, label, k=3, sigma=0.07).item() == 1.0
    assert M.knn_accuracy(train_z, train_y, query, label, k=3, sigma=1e6).item() == 0.0


def test_knn_is_stable_at_tiny_sigma():
    train_z, train_y = random_points(), random_labels()
    # exp(1 / 1e-4) overflows any float: the weights must be shifted before exp
    got = M.knn_accuracy(train_z.float(), train_y, train_z.float(), train_y, k=10, sigma=1e-4, exclude_self=True)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(knn_ref(train_z, train_y, train_z, train_y, 10, 1e-4, 43, exclude_self=True))


def test_knn_exclude_self_is_leave_one_out():
    z, y = random_points(), random_labels()
    assert M.knn_accuracy(z, y, z, y, k=1).item() == 1.0  # every point finds itself (or its copy)
    got = M.knn_accuracy(z, y, z, y, k=5, exclude_self=True, chunk_size=CHUNK)
    expected = knn_ref(z, y, z, y, 5, 0.07, 43, exclude_self=True)
    assert expected < 1.0
    assert got.item() == pytest.approx(expected)


def test_knn_caps_k_at_the_number_of_training_points():
    z, y = random_points(), random_labels()
    assert M.knn_accuracy(z, y, z[:9], y[:9], k=500).item() == pytest.approx(knn_ref(z, y, z[:9], y[:9], N, 0.07, 43))


def test_knn_never_holds_n_by_n():
    z, y = random_points(n=400, d=8), random_labels(n=400)
    with LargestTensor() as spy:
        M.knn_accuracy(z, y, z, y, k=20, chunk_size=16)
    assert 0 < spy.numel <= 16 * 400


@pytest.mark.parametrize("kwargs", [dict(k=0), dict(sigma=0.0), dict(test_y=torch.zeros(3, dtype=torch.long)),
                                    dict(num_classes=1), dict(train_y=-torch.ones(6, dtype=torch.long)),
                                    dict(test_z=torch.randn(4, 2)), dict(exclude_self=True)])
def test_knn_rejects_bad_input(kwargs):
    args = dict(train_z=torch.randn(6, 3), train_y=torch.tensor([0, 1, 0, 1, 0, 1]), test_z=torch.randn(4, 3),
                test_y=torch.tensor([0, 1, 1, 0])) | kwargs
    with pytest.raises(ValueError):
        M.knn_accuracy(**args)


# --------------------------------------------------------------------------- relative penalty (Eq 5)
def test_relative_penalty_is_eq5():
    neg = torch.randn(4, 9, dtype=torch.float64)
    expected = torch.exp(neg / 0.3) / torch.exp(neg / 0.3).sum(dim=1, keepdim=True)
    assert torch.allclose(M.relative_penalty(neg, 0.3), expected, atol=1e-14)


def test_relative_penalty_entropy_matches_explicit_and_falls_with_temperature():
    neg = torch.rand(8, 50, dtype=torch.float64) * 1.8 - 1  # in [-1, 0.8)
    neg[:, 7] = 1.0  # one clearly hardest negative per anchor
    pos = torch.rand(8, dtype=torch.float64)
    r = M.relative_penalty(neg, 0.2)
    expected = -(r * r.log()).sum(dim=1).mean()
    assert M.relative_penalty_entropy(pos, neg, 0.2).item() == pytest.approx(expected.item(), abs=1e-12)
    entropies = [M.relative_penalty_entropy(pos, neg, t).item() for t in (0.01, 0.07, 0.2, 0.5, 1.0, 100.0)]
    assert all(a < b for a, b in zip(entropies, entropies[1:]))
    assert entropies[-1] == pytest.approx(math.log(50), abs=1e-3)  # tau -> inf: uniform
    assert entropies[0] < 1e-4  # tau -> 0: all penalty on the hardest negative


def test_relative_penalty_entropy_has_no_nan_when_r_underflows():
    neg = torch.tensor([[1.0, -1.0, -1.0]])
    got = M.relative_penalty_entropy(torch.zeros(1), neg, 1e-3)
    assert got.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("pos, neg, t", [(torch.zeros(3), torch.zeros(4, 5), 0.1), (torch.zeros(4, 2), torch.zeros(4, 5), 0.1),
                                         (torch.zeros(4), torch.zeros(4, 5), 0.0), (torch.zeros(4), torch.zeros(4, 0), 0.1)])
def test_relative_penalty_entropy_rejects_bad_input(pos, neg, t):
    with pytest.raises(ValueError):
        M.relative_penalty_entropy(pos, neg, t)


def test_relative_penalty_rejects_bad_input():
    with pytest.raises(ValueError):
        M.relative_penalty(torch.zeros(4), 0.1)
    with pytest.raises(ValueError):
        M.relative_penalty(torch.zeros(4, 2), -0.1)


# --------------------------------------------------------------------------- device
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_metrics_on_gpu_match_cpu():
    z, y = random_points().float(), random_labels()
    zc, yc = z.cuda(), y.cuda()
    assert M.uniformity(zc, chunk_size=CHUNK).item() == pytest.approx(M.uniformity(z).item(), abs=1e-5)
    assert M.tolerance(zc, yc).item() == pytest.approx(M.tolerance(z, y).item(), abs=1e-6)
    pos, negs = M.positive_and_topk_similarities(zc, zc, torch.arange(N, device="cuda"), k=5)
    pos_c, negs_c = M.positive_and_topk_similarities(z, z, torch.arange(N), k=5)
    assert torch.allclose(negs.cpu(), negs_c, atol=1e-5)
    assert M.knn_accuracy(zc, yc, zc, yc, k=5, exclude_self=True).item() == pytest.approx(
        M.knn_accuracy(z, y, z, y, k=5, exclude_self=True).item())


def test_centroid_norm_is_one_for_a_collapse_and_zero_for_antipodal_pairs():
    from callbacks.metrics import centroid_norm

    z = torch.nn.functional.normalize(torch.randn(1, 16, dtype=torch.float64), dim=1).repeat(50, 1)
    assert float(centroid_norm(z)) == pytest.approx(1.0)
    half = torch.nn.functional.normalize(torch.randn(25, 16, dtype=torch.float64), dim=1)
    assert float(centroid_norm(torch.cat([half, -half]))) == pytest.approx(0.0, abs=1e-12)
    spread = torch.nn.functional.normalize(torch.randn(20000, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    assert float(centroid_norm(spread)) == pytest.approx(1 / 20000 ** 0.5, rel=0.2)  # a random sphere: ~1/sqrt(N)
    ref = z[:5].sum(dim=0) / 5
    torch.testing.assert_close(centroid_norm(z[:5]), ref.norm())
    with pytest.raises(ValueError, match="2-D"):
        centroid_norm(z[0])
