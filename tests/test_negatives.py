"""The negatives' sources against brute-force references (memory bank, in-batch, queue)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules import distributed as D
from lightning_modules import negatives as N
from lightning_modules.encoders import SmallConvEncoder


def identity_embed(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1)


def pair(sims) -> tuple[torch.Tensor, torch.Tensor]:
    """A record's one positive (B,) and its negatives (B, K), as the sources gave them before the record."""
    assert sims.pos.shape[1] == 1 and sims.neg_mask is None
    return sims.pos[:, 0], sims.neg


def test_drop_column_removes_exactly_one_column_per_row():
    logits = torch.arange(24.0).view(4, 6)
    column = torch.tensor([0, 5, 2, 2])
    out = N.drop_column(logits, column)
    expected = torch.stack([torch.cat([row[:c], row[c + 1:]]) for row, c in zip(logits, column)])
    assert torch.equal(out, expected)


def test_bank_init_is_unit_norm_and_sized():
    torch.manual_seed(0)
    bank = N.MemoryBank(size=100, dim=16)
    assert bank.bank.shape == (100, 16)
    assert torch.allclose(bank.bank.norm(dim=1), torch.ones(100), atol=1e-6)


def test_bank_raw_init_keeps_the_authors_bounds():
    torch.manual_seed(0)
    bank = N.MemoryBank(size=1000, dim=12, normalize_init=False)
    bound = 1 / math.sqrt(12 / 3)
    assert bank.bank.abs().max() <= bound
    assert bank.bank.abs().max() > 0.9 * bound  # uniform over the whole interval, not normalised
    assert not torch.allclose(bank.bank.norm(dim=1), torch.ones(1000), atol=1e-3)


def test_bank_similarities_match_brute_force():
    torch.manual_seed(0)
    bank = N.MemoryBank(size=50, dim=8)
    x = torch.randn(6, 8)
    index = torch.tensor([3, 0, 49, 10, 11, 25])
    pos, neg = pair(bank(identity_embed, index, [x]))
    q = F.normalize(x, dim=1)
    for i in range(6):
        sims = bank.bank @ q[i]
        assert torch.allclose(pos[i], sims[index[i]], atol=1e-6)
        others = torch.cat([sims[: index[i]], sims[index[i] + 1:]])
        assert torch.allclose(neg[i], others, atol=1e-6)
    assert neg.shape == (6, 49)


def test_bank_gradient_flows_only_to_the_queries():
    torch.manual_seed(0)
    bank = N.MemoryBank(size=20, dim=4)
    x = torch.randn(3, 4, requires_grad=True)
    pos, neg = pair(bank(identity_embed, torch.tensor([1, 2, 3]), [x]))
    (pos.sum() + neg.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert not bank.bank.requires_grad


def test_bank_update_is_the_momentum_rule():
    torch.manual_seed(0)
    bank = N.MemoryBank(size=10, dim=4, momentum=0.5)
    old = bank.bank.clone()
    index = torch.tensor([2, 7])
    feats = F.normalize(torch.randn(2, 4), dim=1)
    bank.write(index, feats)
    for row, i in enumerate(index):
        expected = F.normalize(0.5 * old[i] + 0.5 * feats[row], dim=0)
        assert torch.allclose(bank.bank[i], expected, atol=1e-6)
    untouched = [i for i in range(10) if i not in (2, 7)]
    assert torch.equal(bank.bank[untouched], old[untouched])
    assert torch.allclose(bank.bank.norm(dim=1), torch.ones(10), atol=1e-6)


def test_bank_momentum_weights_the_old_entry():
    bank = N.MemoryBank(size=2, dim=2, momentum=0.9)
    bank.bank.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    bank.write(torch.tensor([0]), torch.tensor([[0.0, 1.0]]))
    expected = F.normalize(torch.tensor([0.9, 0.1]), dim=0)
    assert torch.allclose(bank.bank[0], expected, atol=1e-6)


def test_bank_repeated_indices_use_the_first_occurrence():
    torch.manual_seed(0)
    bank = N.MemoryBank(size=5, dim=3)
    old = bank.bank.clone()
    index = torch.tensor([1, 4, 1, 1])  # a padding sampler repeats index 1
    feats = F.normalize(torch.randn(4, 3), dim=1)
    bank.write(index, feats)
    expected = F.normalize(0.5 * old[1] + 0.5 * feats[0], dim=0)
    assert torch.allclose(bank.bank[1], expected, atol=1e-6)


def test_bank_ignores_non_finite_features():
    bank = N.MemoryBank(size=4, dim=2)
    old = bank.bank.clone()
    feats = torch.tensor([[float("nan"), 0.0], [1.0, 0.0]])
    bank.write(torch.tensor([0, 1]), feats)
    assert torch.equal(bank.bank[0], old[0])
    assert not torch.equal(bank.bank[1], old[1])
    assert torch.isfinite(bank.bank).all()


def test_bank_update_after_forward_uses_the_forward_features():
    torch.manual_seed(0)
    bank = N.MemoryBank(size=8, dim=4)
    old = bank.bank.clone()
    x = torch.randn(2, 4)
    bank(identity_embed, torch.tensor([5, 6]), [x])
    bank.update()
    q = F.normalize(x, dim=1)
    assert torch.allclose(bank.bank[5], F.normalize(0.5 * old[5] + 0.5 * q[0], dim=0), atol=1e-6)
    bank.update()  # a second call without a forward is a no-op
    assert torch.allclose(bank.bank[5], F.normalize(0.5 * old[5] + 0.5 * q[0], dim=0), atol=1e-6)


def test_bank_size_and_dim_are_checked_against_the_data():
    enc = SmallConvEncoder(width=4, out_dim=8)
    with pytest.raises(ValueError, match="size=10 does not match the 12 training images"):
        N.MemoryBank(size=10, dim=8).bind(enc, 12, 8)
    with pytest.raises(ValueError, match="dim=16 does not match"):
        N.MemoryBank(dim=16).bind(enc, 12, 8)
    lazy = N.MemoryBank(dim=8)
    lazy.bind(enc, 12, 8)
    assert lazy.bank.shape == (12, 8)
    with pytest.raises(ValueError, match="momentum"):
        N.MemoryBank(momentum=1.0)


def test_bank_state_dict_round_trip():
    torch.manual_seed(0)
    a = N.MemoryBank(size=30, dim=4)
    a.write(torch.tensor([0, 1]), torch.randn(2, 4))
    b = N.MemoryBank(size=30, dim=4)
    assert not torch.equal(a.bank, b.bank)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.bank, b.bank)
    assert "bank" in a.state_dict()


def _nt_xent_pairs(z1: torch.Tensor, z2: torch.Tensor, own: torch.Tensor):
    """Brute force: for each local anchor (view 1 then view 2), its positive and its negatives."""
    keys = torch.cat([z1, z2])  # global (2W B, d) with view 1 block first
    total = z1.shape[0]
    pos, neg = [], []
    for view, z in enumerate((z1, z2)):
        for i in own.tolist():
            q = z[i]
            self_col = i + view * total
            pos_col = i + (1 - view) * total
            sims = keys @ q
            pos.append(sims[pos_col])
            keep = [c for c in range(2 * total) if c not in (self_col, pos_col)]
            neg.append(sims[keep])
    return torch.stack(pos), torch.stack(neg)


@pytest.mark.parametrize("rank", [0, 1])
def test_in_batch_positive_sits_at_the_ranks_offset(monkeypatch, rank):
    """Pretend to be rank r of 2 processes: the other rank's views are gathered around ours."""
    torch.manual_seed(0)
    b, d = 3, 5
    glob1, glob2 = F.normalize(torch.randn(2 * b, d), dim=1), F.normalize(torch.randn(2 * b, d), dim=1)
    mine = slice(rank * b, (rank + 1) * b)

    def fake_gather(t, with_grad=False):
        full = glob1.clone() if torch.allclose(t, glob1[mine]) else glob2.clone()
        full[mine] = t  # keep the local tensor (and its graph) in place
        return full

    monkeypatch.setattr(D, "gather", fake_gather)
    monkeypatch.setattr(D, "rank", lambda: rank)
    source = N.InBatchNegatives()
    pos, neg = pair(source(identity_embed, torch.arange(b), [glob1[mine], glob2[mine]]))
    ref_pos, ref_neg = _nt_xent_pairs(glob1, glob2, torch.arange(rank * b, (rank + 1) * b))
    assert torch.allclose(pos, ref_pos, atol=1e-6)
    assert torch.allclose(neg, ref_neg, atol=1e-6)
    assert neg.shape == (2 * b, 2 * 2 * b - 2)


def test_in_batch_single_process_matches_brute_force():
    torch.manual_seed(0)
    v1, v2 = torch.randn(4, 6), torch.randn(4, 6)
    pos, neg = pair(N.InBatchNegatives()(identity_embed, torch.arange(4), [v1, v2]))
    ref_pos, ref_neg = _nt_xent_pairs(F.normalize(v1, dim=1), F.normalize(v2, dim=1), torch.arange(4))
    assert torch.allclose(pos, ref_pos, atol=1e-6)
    assert torch.allclose(neg, ref_neg, atol=1e-6)


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out_dim = 4

    def forward(self, x):
        return self.fc(x)


def test_momentum_queue_keys_queue_and_encoder_update():
    torch.manual_seed(0)
    enc = _Linear()
    source = N.MomentumQueue(queue_size=6, dim=4, encoder_momentum=0.9)
    source.bind(enc, 100, 4)
    queue0 = source.queue.clone()
    v1, v2 = torch.randn(4, 4), torch.randn(4, 4)
    embed = lambda x: F.normalize(enc(x), dim=1)  # noqa: E731
    pos, neg = pair(source(embed, torch.arange(4), [v1, v2]))
    q, k = embed(v1), F.normalize(enc(v2), dim=1)  # key encoder starts as a copy
    assert torch.allclose(pos, (q * k).sum(1), atol=1e-6)
    assert torch.allclose(neg, q @ queue0.t(), atol=1e-6)
    # the online encoder takes a step; the key encoder follows with momentum 0.9
    with torch.no_grad():
        enc.fc.weight.add_(1.0)
    key_w0 = source.key_encoder.fc.weight.clone()
    source.update()
    assert torch.allclose(source.key_encoder.fc.weight, 0.9 * key_w0 + 0.1 * enc.fc.weight, atol=1e-6)
    assert torch.allclose(source.queue[:4], k.detach(), atol=1e-6)
    assert torch.equal(source.queue[4:], queue0[4:])
    assert int(source.queue_ptr) == 4
    # the next 4 keys wrap around: slots 4, 5, 0, 1
    source(embed, torch.arange(4), [v1, v2])
    keys2 = source._pending.clone()
    source.update()
    assert torch.allclose(source.queue[[4, 5, 0, 1]], keys2, atol=1e-6)
    assert int(source.queue_ptr) == 2
    assert not any(p.requires_grad for p in source.key_encoder.parameters())



# ---- the record each source returns: positives, negatives, and which image each negative is ------------------

def test_bank_record_names_every_negative_and_the_anchors():
    torch.manual_seed(0)
    bank = N.MemoryBank(size=12, dim=4)
    index = torch.tensor([3, 0, 11, 7])
    x = torch.randn(4, 4)
    sims = bank(identity_embed, index, [x])
    assert sims.neg_mask is None and torch.equal(sims.index, index) and sims.pos.shape == (4, 1)
    want = [[j for j in range(12) if j != i] for i in index.tolist()]  # entry j of the bank is image j
    assert sims.neg_index.dense().tolist() == want
    q = F.normalize(x, dim=1)
    for row, i in enumerate(index.tolist()):  # each column's value is the similarity to the entry it names
        torch.testing.assert_close(sims.neg[row], bank.bank[want[row]] @ q[row])
        torch.testing.assert_close(sims.pos[row, 0], bank.bank[i] @ q[row])
    cols = torch.tensor([[0, 2], [0, 10], [10, 5], [6, 7]])
    assert sims.neg_index_at(cols).tolist() == [[want[r][c] for c in row] for r, row in enumerate(cols.tolist())]


@pytest.mark.parametrize("rank", [0, 1])
def test_in_batch_record_names_every_negative_across_ranks(monkeypatch, rank):
    """Rank r of 2: the negatives' dataset indices come from every rank's batch, at the rank's offset."""
    torch.manual_seed(0)
    b, d = 3, 5
    glob1, glob2 = F.normalize(torch.randn(2 * b, d), dim=1), F.normalize(torch.randn(2 * b, d), dim=1)
    glob_index = torch.tensor([40, 41, 42, 50, 51, 52])  # rank 0's images, then rank 1's
    mine = slice(rank * b, (rank + 1) * b)

    def fake_gather(t, with_grad=False):
        if t.dtype == torch.long:
            return glob_index.clone()
        full = glob1.clone() if torch.allclose(t, glob1[mine]) else glob2.clone()
        full[mine] = t
        return full

    monkeypatch.setattr(D, "gather", fake_gather)
    monkeypatch.setattr(D, "rank", lambda: rank)
    sims = N.InBatchNegatives()(identity_embed, glob_index[mine], [glob1[mine], glob2[mine]])
    ref_pos, ref_neg = _nt_xent_pairs(glob1, glob2, torch.arange(rank * b, (rank + 1) * b))
    torch.testing.assert_close(sims.pos[:, 0], ref_pos)
    torch.testing.assert_close(sims.neg, ref_neg)
    assert sims.neg_mask is None
    assert sims.index.tolist() == glob_index[mine].tolist() * 2  # view 1's anchors, then view 2's
    want = []
    for view in (0, 1):  # the same column order as _nt_xent_pairs: both views of every other image
        for i in range(rank * b, (rank + 1) * b):
            want.append([glob_index[c % (2 * b)].item() for c in range(4 * b) if c % (2 * b) != i])
    assert sims.neg_index.dense().tolist() == want


def test_queue_record_names_each_slot_by_its_image_after_the_update():
    torch.manual_seed(0)
    enc = _Linear()
    source = N.MomentumQueue(queue_size=6, dim=4, shuffle_bn=False)
    source.bind(enc, 100, 4)
    embed = lambda x: F.normalize(enc(x), dim=1)  # noqa: E731
    v1, v2 = torch.randn(4, 4), torch.randn(4, 4)
    sims = source(embed, torch.tensor([10, 11, 12, 13]), [v1, v2])
    assert sims.neg_mask is None and sims.index.tolist() == [10, 11, 12, 13]
    assert (sims.neg_index.dense() == -1).all()  # the random keys the queue starts with belong to no image
    source.update()
    sims = source(embed, torch.tensor([20, 21, 22, 23]), [v1, v2])
    assert sims.neg_index.dense().tolist() == [[10, 11, 12, 13, -1, -1]] * 4
    torch.testing.assert_close(sims.neg, embed(v1) @ source.queue.t())
    source.update()  # wraps around: slots 4, 5, 0, 1
    assert source.queue_index.tolist() == [22, 23, 12, 13, 20, 21]


def test_queue_reads_a_checkpoint_without_the_slots_indices():
    source = N.MomentumQueue(queue_size=6, dim=4)
    old = {k: v for k, v in source.state_dict().items() if k != "queue_index"}  # as written before the record
    source.queue_index.fill_(7)
    source.load_state_dict(old)
    assert source.queue_index.tolist() == [-1] * 6
