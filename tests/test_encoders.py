"""Encoders: the CIFAR stem, feature sizes, and BatchNorm over groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.encoders import GhostBatchNorm2d, ResNetEncoder, SmallConvEncoder


def test_resnet18_cifar_stem_keeps_resolution():
    enc = ResNetEncoder("resnet18", cifar_stem=True, out_dim=128)
    conv = enc.backbone.conv1
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(enc.backbone.maxpool, nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    assert enc.features(x).shape == (2, 512)
    assert enc(x).shape == (2, 128)
    # the first stage sees 32x32 (stride-2 stem would give 16x16)
    stem = enc.backbone.relu(enc.backbone.bn1(enc.backbone.conv1(x)))
    assert stem.shape[-2:] == (32, 32)


def test_resnet50_imagenet_stem_and_feature_size():
    enc = ResNetEncoder("resnet50", cifar_stem=False, out_dim=64)
    assert enc.backbone.conv1.kernel_size == (7, 7)
    assert enc.feature_dim == 2048
    enc.eval()
    assert enc(torch.randn(1, 3, 64, 64)).shape == (1, 64)


def test_small_encoder_shapes():
    enc = SmallConvEncoder(width=8, out_dim=16)
    assert enc.features(torch.randn(3, 3, 32, 32)).shape == (3, 32)
    assert enc(torch.randn(3, 3, 32, 32)).shape == (3, 16)


def test_ghost_batchnorm_equals_batchnorm_on_each_group():
    torch.manual_seed(0)
    ghost = GhostBatchNorm2d(4, group_size=3)
    ref = nn.BatchNorm2d(4)
    with torch.no_grad():
        ghost.weight.uniform_(0.5, 1.5)
        ghost.bias.uniform_(-1, 1)
    ref.load_state_dict(ghost.state_dict())
    x = torch.randn(9, 4, 5, 5) * 3 + 1
    out = ghost(x)
    expected = torch.cat([ref(chunk) for chunk in x.split(3)])
    assert torch.allclose(out, expected, atol=1e-5)
    # differs from whole-batch statistics
    whole = nn.BatchNorm2d(4)
    whole.load_state_dict(ghost.state_dict())
    assert not torch.allclose(out, whole(x), atol=1e-3)


def test_ghost_batchnorm_replaces_every_batchnorm_and_validates():
    enc = ResNetEncoder("resnet18", bn_group_size=4)
    bns = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, GhostBatchNorm2d) for m in bns)
    enc.train()
    assert enc(torch.randn(8, 3, 32, 32)).shape == (8, 128)
    with pytest.raises(ValueError, match="multiple of the BatchNorm group size"):
        enc(torch.randn(6, 3, 32, 32))
    with pytest.raises(ValueError, match="bn_group_size"):
        ResNetEncoder(bn_group_size=1)
