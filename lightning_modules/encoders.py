"""Backbones with a linear head to the embedding, built from torchvision's ResNets."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torchvision import models


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics come from groups of ``group_size`` images.

    Emulates, on one device, the per-device statistics of ``B / group_size`` devices
    (the paper's 4 GPUs x 32 images). Evaluation and the running statistics' use are
    unchanged; the running statistics are updated with the mean of the groups' ones.
    """

    def __init__(self, num_features: int, group_size: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if not self.training or b <= self.group_size:
            return super().forward(x)
        if b % self.group_size:
            raise ValueError(f"batch of {b} is not a multiple of the BatchNorm group size {self.group_size}")
        g = b // self.group_size
        xs = x.reshape(g, self.group_size, *x.shape[1:])  # (G, b/G, C, H, W)
        mean = xs.mean(dim=(1, 3, 4))  # (G, C)
        var = xs.var(dim=(1, 3, 4), unbiased=False)  # (G, C)
        n = self.group_size * x.shape[2] * x.shape[3]
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.lerp_(mean.mean(0), m)
                self.running_var.lerp_(var.mean(0) * n / max(n - 1, 1), m)
                self.num_batches_tracked.add_(1)
        y = (xs - mean[:, None, :, None, None]) * torch.rsqrt(var[:, None, :, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, None, :, None, None] + self.bias[None, None, :, None, None]
        return y.reshape_as(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", group_size={self.group_size}"


def _head(feature_dim: int, out_dim: int, head_norm: bool) -> nn.Module:
    """The linear head, optionally followed by a BatchNorm1d without affine parameters."""
    if not head_norm:
        return nn.Linear(feature_dim, out_dim)
    return nn.Sequential(nn.Linear(feature_dim, out_dim), nn.BatchNorm1d(out_dim, affine=False))


def _ghost_batchnorm(module: nn.Module, group_size: int) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by a :class:`GhostBatchNorm2d` (weights kept)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GhostBatchNorm2d):
            ghost = GhostBatchNorm2d(child.num_features, group_size, eps=child.eps, momentum=child.momentum,
                                     affine=child.affine, track_running_stats=child.track_running_stats)
            ghost.load_state_dict(child.state_dict())
            setattr(module, name, ghost)
        else:
            _ghost_batchnorm(child, group_size)
    return module


class Encoder(nn.Module):
    """Base class of encoders: a backbone to pooled features and a head to the embedding.

    Subclasses set :attr:`feature_dim` (pooled backbone features, what linear
    evaluation reads) and :attr:`out_dim` (the embedding) and implement :meth:`features`.
    """

    feature_dim: int
    out_dim: int

    def _record_init_args(self, owner: type, **init_args: Any) -> None:
        """Remember the constructor's arguments (plain values) so :meth:`describe` can rebuild this encoder.

        Name every argument: linear evaluation rebuilds the encoder from this record alone
        (``tests/test_linear_eval.py`` checks it against each encoder's signature).
        """
        self._init_args = (owner, dict(init_args))

    def describe(self) -> dict[str, Any] | None:
        """``{"class_path", "init_args"}`` that rebuilds this encoder, in plain data; None if unknown.

        Checkpoints store it, so linear evaluation can rebuild the architecture without
        unpickling objects. A subclass that does not record its own arguments (with
        :meth:`_record_init_args`) describes itself as None.
        """
        owner, init_args = getattr(self, "_init_args", (None, None))
        if owner is not type(self):
            return None
        return {"class_path": f"{owner.__module__}.{owner.__qualname__}", "init_args": dict(init_args)}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Global-pooled backbone features, (B, feature_dim)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The head's output, (B, out_dim), not normalised."""
        return self.head(self.features(x))


class ResNetEncoder(Encoder):
    """A torchvision ResNet with a linear head to the embedding.

    Args:
        arch: ``resnet18`` (512-d features; the paper's CIFAR/SVHN backbone), ``resnet34``
            or ``resnet50`` (2048-d; the paper's ImageNet-100 backbone).
        cifar_stem: for 32x32 inputs, replace the 7x7 stride-2 convolution by a 3x3
            stride-1 one and drop the max-pool.
        out_dim: embedding dimension (128 in the paper).
        bn_group_size: compute BatchNorm training statistics over groups of this many
            images (e.g. 32, the paper's per-GPU batch) instead of the whole batch;
            None uses the whole per-device batch.
        head_norm: follow the linear head by a BatchNorm1d without affine parameters, which
            centres the embedding over the batch before it is L2-normalised (the paper's
            head is linear: False). A randomly initialised network maps every image close
            to one direction; this removes that shared component from the first step.
    """

    def __init__(self, arch: Literal["resnet18", "resnet34", "resnet50"] = "resnet18", cifar_stem: bool = True,
                 out_dim: int = 128, bn_group_size: int | None = None, head_norm: bool = False) -> None:
        super().__init__()
        self._record_init_args(ResNetEncoder, arch=arch, cifar_stem=cifar_stem, out_dim=out_dim,
                               bn_group_size=bn_group_size, head_norm=head_norm)
        if out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {out_dim}")
        if bn_group_size is not None and bn_group_size < 2:
            raise ValueError(f"bn_group_size must be >= 2 (BatchNorm needs 2 images), got {bn_group_size}")
        net = getattr(models, arch)(weights=None)
        if cifar_stem:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        self.feature_dim = net.fc.in_features
        self.out_dim = out_dim
        net.fc = nn.Identity()
        if bn_group_size is not None:
            _ghost_batchnorm(net, bn_group_size)
        self.backbone = net
        self.head = _head(self.feature_dim, out_dim, head_norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # (B, feature_dim): torchvision pools and flattens before fc


class SmallConvEncoder(Encoder):
    """A four-layer convolutional encoder for tests and quick experiments on small images.

    Args:
        width: channels of the first convolution (doubled twice).
        out_dim: embedding dimension.
        batchnorm: use BatchNorm after each convolution (False: no batch statistics,
            so results do not depend on how the batch is split across devices).
        head_norm: BatchNorm1d without affine parameters after the linear head (see
            :class:`ResNetEncoder`).
    """

    def __init__(self, width: int = 16, out_dim: int = 128, batchnorm: bool = True, head_norm: bool = False) -> None:
        super().__init__()
        self._record_init_args(SmallConvEncoder, width=width, out_dim=out_dim, batchnorm=batchnorm, head_norm=head_norm)
        layers: list[nn.Module] = []
        channels = [3, width, 2 * width, 4 * width]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=not batchnorm)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU(inplace=True))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.backbone = nn.Sequential(*layers)
        self.feature_dim = channels[-1]
        self.out_dim = out_dim
        self.head = _head(self.feature_dim, out_dim, head_norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # (B, 4 * width)
