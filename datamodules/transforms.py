"""Augmentation presets: the one place that defines every pipeline of the paper.

A preset names a dataset family (``cifar``, ``svhn``, ``imagenet``); a stage names
what the pipeline is for: ``pretrain`` (contrastive views), ``linear`` (training the
linear classifier) or ``none`` (evaluation: no randomness). Values follow
``docs/design.md`` (section "Training and linear-evaluation recipe").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Literal

import torch
from PIL import Image, ImageFilter
from torchvision.transforms import v2

Stage = Literal["pretrain", "linear", "none"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)  # the author's values (not the true per-channel std)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preset:
    """The numbers of one dataset family's pipelines."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_scale: tuple[float, float] = (0.2, 1.0)
    jitter: float = 0.4  # brightness, contrast, saturation and hue strength
    jitter_p: float = 1.0  # the author's code applies colour jitter always
    grayscale_p: float = 0.2
    blur: bool = False  # random Gaussian blur (ImageNet-100 only, per the paper)
    linear: Literal["flip", "jitter", "crop"] = "flip"  # linear-eval augmentation kind
    #: resize the shorter side to this, then centre-crop to ``size``, in every pipeline that does
    #: not crop at random (evaluation; the ``flip`` and ``jitter`` linear kinds). None: the
    #: images already are ``size`` x ``size`` (CIFAR, SVHN).
    eval_resize: int | None = None


PRESETS: dict[str, Preset] = {
    "cifar": Preset(size=32, mean=CIFAR_MEAN, std=CIFAR_STD, linear="flip"),
    "svhn": Preset(size=32, mean=CIFAR_MEAN, std=CIFAR_STD, linear="jitter"),
    "imagenet": Preset(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, blur=True, linear="crop",
                       eval_resize=256),
}


def get_preset(name: str, **overrides) -> Preset:
    """The preset called ``name``, with any field replaced by ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def resize_preset(p: Preset, size: int) -> Preset:
    """``p`` at another image side; its evaluation resize scales with it (256/224 for ImageNet)."""
    if size < 1:
        raise ValueError(f"image size must be >= 1, got {size}")
    eval_resize = None if p.eval_resize is None else int(round(size * p.eval_resize / p.size))
    return replace(p, size=size, eval_resize=eval_resize)


def _fixed_size(p: Preset) -> list:
    """Resize and centre crop to ``size`` (nothing when the preset's images already have it)."""
    if p.eval_resize is None:
        return []
    return [v2.Resize(p.eval_resize, antialias=True), v2.CenterCrop(p.size)]


class RandomGaussianBlur(torch.nn.Module):
    """Gaussian blur with probability ``p`` and sigma ~ U(``sigma``), as in SimCLR and MoCo v2.

    A PIL image is blurred by PIL's filter (radius = sigma, as MoCo v2 does): on one CPU
    thread it is about 6x faster at 224 px than torchvision's depthwise-convolution blur,
    which costs about 11 ms per image, most of an ImageNet worker's time. Tensors go
    through torchvision's blur with ``kernel_size``. The random draws come from torch's
    generator, so the per-image seeds of :mod:`datamodules.sampling` fix them.

    Args:
        sigma: range of the blur's standard deviation, in pixels.
        p: probability of blurring.
        kernel_size: odd kernel side for tensor inputs.
    """

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5, kernel_size: int = 23) -> None:
        super().__init__()
        self.sigma = sigma
        self.p = p
        self.kernel_size = kernel_size

    def forward(self, image):
        if float(torch.rand(())) >= self.p:
            return image
        sigma = float(torch.empty(()).uniform_(self.sigma[0], self.sigma[1]))
        if isinstance(image, Image.Image):
            return image.filter(ImageFilter.GaussianBlur(radius=sigma))
        return v2.functional.gaussian_blur(image, [self.kernel_size] * 2, [sigma, sigma])

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, p={self.p}, kernel_size={self.kernel_size}"


def _to_tensor(p: Preset) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(p.mean, p.std)]


def pretrain_transform(p: Preset, flip: bool = True) -> v2.Compose:
    """The paper's contrastive view: crop, colour jitter, grayscale, (flip), (blur)."""
    ops: list = [v2.RandomResizedCrop(p.size, scale=p.crop_scale, antialias=True)]
    jitter = v2.ColorJitter(p.jitter, p.jitter, p.jitter, min(p.jitter, 0.5))
    ops.append(jitter if p.jitter_p >= 1.0 else v2.RandomApply([jitter], p=p.jitter_p))
    ops.append(v2.RandomGrayscale(p=p.grayscale_p))
    if flip:
        ops.append(v2.RandomHorizontalFlip())
    if p.blur:
        kernel = 2 * (p.size // 20) + 1  # about 10% of the image side, odd, as in SimCLR
        ops.append(RandomGaussianBlur(sigma=(0.1, 2.0), p=0.5, kernel_size=kernel))
    return v2.Compose(ops + _to_tensor(p))


def linear_transform(p: Preset) -> v2.Compose:
    """The linear-evaluation training augmentation of the paper's recipe."""
    if p.linear == "flip":
        ops: list = _fixed_size(p) + [v2.RandomHorizontalFlip()]
    elif p.linear == "jitter":
        ops = _fixed_size(p) + [v2.ColorJitter(0.4, 0.4, 0.4, 0.4), v2.RandomGrayscale(p=0.2)]
    else:
        ops = [v2.RandomResizedCrop(p.size, antialias=True), v2.RandomHorizontalFlip()]
    return v2.Compose(ops + _to_tensor(p))


def eval_transform(p: Preset) -> v2.Compose:
    """Deterministic: (resize and centre crop for large images), tensor, normalise."""
    return v2.Compose(_fixed_size(p) + _to_tensor(p))


def build(preset: str | Preset, stage: Stage, flip: bool = True) -> Callable:
    """The transform of ``stage`` for ``preset`` (a name from :data:`PRESETS` or a :class:`Preset`)."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    if stage == "pretrain":
        return pretrain_transform(p, flip=flip)
    if stage == "linear":
        return linear_transform(p)
    if stage == "none":
        return eval_transform(p)
    raise ValueError(f"unknown augmentation stage {stage!r}; choose pretrain, linear or none")


def to_uint8_tensor(image) -> torch.Tensor:
    """A PIL image or HWC array as a (3, H, W) uint8 tensor, for augmentation on the device."""
    return v2.functional.pil_to_tensor(image) if not isinstance(image, torch.Tensor) else image
