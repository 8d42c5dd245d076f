"""Augmentation as configuration: every number of every pipeline of the paper, in one dataclass.

An :class:`Augmentation` holds the values (crop, colour jitter, grayscale, flip, blur,
normalisation, size, the linear-evaluation kind); every datamodule takes one as its
``augmentation`` argument, with its dataset family's values as the default, so
``--print_config`` shows the whole pipeline and ``--data.init_args.augmentation.jitter 0.8``
changes it. A stage names what a pipeline is for: ``pretrain`` (contrastive views),
``linear`` (training the linear classifier) or ``none`` (evaluation: no randomness).
The CPU pipeline (:func:`pretrain_transform`) and the device one
(:meth:`datamodules.gpu_augment.DeviceAugmentation.from_augmentation`) read the same
object, the fields of :data:`PRETRAIN_FIELDS`. Values follow
``docs/design.md`` (section "Training and linear-evaluation recipe").
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
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
class Augmentation:
    """The numbers of one dataset's pipelines; the defaults are the paper's CIFAR recipe.

    Pretraining view (Wu et al. 2018 and the paper's code; both the CPU and the device
    pipeline read these): RandomResizedCrop(``size``, ``crop_scale``, ``crop_ratio``),
    ColorJitter(``jitter`` for brightness, contrast and saturation, ``min(jitter, 0.5)``
    for hue) with probability ``jitter_p``, RandomGrayscale(``grayscale_p``), a horizontal
    flip when ``flip``, a Gaussian blur (sigma 0.1-2, probability 0.5, as SimCLR) when
    ``blur``, then Normalize(``mean``, ``std``).

    Args:
        size: side of the square output images.
        crop_scale: range of the crop's area as a fraction of the image's.
        crop_ratio: range of the crop's aspect ratio (width / height).
        jitter: colour-jitter strength (brightness, contrast, saturation; hue capped at 0.5).
        jitter_p: probability of colour jitter (the author's code: always).
        grayscale_p: probability of turning the view gray.
        flip: random horizontal flip (the paper lists it; the author's code had it commented out).
        blur: random Gaussian blur (the paper: ImageNet-100 only).
        mean: per-channel normalisation mean (RGB, in [0, 1] units).
        std: per-channel normalisation standard deviation.
        linear: the linear-evaluation training augmentation: ``flip`` (CIFAR), ``jitter``
            (SVHN: colour jitter and grayscale) or ``crop`` (ImageNet: random resized crop and flip).
        eval_resize: resize the shorter side to this, then centre-crop to ``size``, in every
            pipeline that does not crop at random (evaluation; the ``flip`` and ``jitter``
            linear kinds); None: the images already are ``size`` x ``size`` (CIFAR, SVHN).

    Example:
        >>> aug = Augmentation(jitter=0.8)
        >>> aug.size, aug.jitter, aug.hue, aug.flip
        (32, 0.8, 0.5, True)
        >>> [type(op).__name__ for op in pretrain_transform(aug).transforms][:3]
        ['RandomResizedCrop', 'ColorJitter', 'RandomGrayscale']
    """

    size: int = 32
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: float = 0.4
    jitter_p: float = 1.0
    grayscale_p: float = 0.2
    flip: bool = True
    blur: bool = False
    mean: tuple[float, float, float] = CIFAR_MEAN
    std: tuple[float, float, float] = CIFAR_STD
    linear: Literal["flip", "jitter", "crop"] = "flip"
    eval_resize: int | None = None

    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio", "mean", "std"):  # lists from YAML or Python become tuples
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"augmentation size must be an integer >= 1, got {self.size!r}")
        lo, hi = self.crop_scale if len(self.crop_scale) == 2 else (0.0, -1.0)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale}")
        lo, hi = self.crop_ratio if len(self.crop_ratio) == 2 else (0.0, -1.0)
        if not 0 < lo <= hi < float("inf"):
            raise ValueError(f"crop_ratio must be (lo, hi) with 0 < lo <= hi, got {self.crop_ratio}")
        if not 0 <= self.jitter < float("inf"):
            raise ValueError(f"jitter must be a finite number >= 0, got {self.jitter}")
        for name in ("jitter_p", "grayscale_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need one value per RGB channel, got {self.mean} and {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {list(self.std)}")
        if self.linear not in ("flip", "jitter", "crop"):
            raise ValueError(f"linear must be 'flip', 'jitter' or 'crop', got {self.linear!r}")
        if self.eval_resize is not None and self.eval_resize < 1:
            raise ValueError(f"eval_resize must be >= 1 or null, got {self.eval_resize}")

    @property
    def hue(self) -> float:
        """The hue-jitter strength: ``jitter`` capped at 0.5 (half the hue circle)."""
        return min(self.jitter, 0.5)


#: the old name of :class:`Augmentation`
Preset = Augmentation

#: the fields the pretraining view reads: the CPU pipeline and DeviceAugmentation both read each of them
PRETRAIN_FIELDS = ("size", "crop_scale", "crop_ratio", "jitter", "jitter_p", "grayscale_p", "flip", "blur", "mean",
                   "std")
assert set(PRETRAIN_FIELDS) <= {f.name for f in fields(Augmentation)}

PRESETS: dict[str, Augmentation] = {
    "cifar": Augmentation(size=32, mean=CIFAR_MEAN, std=CIFAR_STD, linear="flip"),
    "svhn": Augmentation(size=32, mean=CIFAR_MEAN, std=CIFAR_STD, linear="jitter"),
    "imagenet": Augmentation(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, blur=True, linear="crop",
                             eval_resize=256),
}


def get_preset(name: str, **overrides) -> Augmentation:
    """The dataset family ``name``'s values (:data:`PRESETS`), with any field replaced by ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def resize_preset(p: Augmentation, size: int) -> Augmentation:
    """``p`` at another image side; its evaluation resize scales with it (256/224 for ImageNet)."""
    if size < 1:
        raise ValueError(f"image size must be >= 1, got {size}")
    eval_resize = None if p.eval_resize is None else int(round(size * p.eval_resize / p.size))
    return replace(p, size=size, eval_resize=eval_resize)


def _fixed_size(p: Augmentation) -> list:
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


def _to_tensor(p: Augmentation) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(p.mean, p.std)]


def pretrain_transform(p: Augmentation, flip: bool | None = None) -> v2.Compose:
    """The paper's contrastive view: crop, colour jitter, grayscale, (flip), (blur); ``flip`` None reads ``p.flip``."""
    flip = p.flip if flip is None else flip
    ops: list = [v2.RandomResizedCrop(p.size, scale=p.crop_scale, ratio=p.crop_ratio, antialias=True)]
    jitter = v2.ColorJitter(p.jitter, p.jitter, p.jitter, p.hue)
    ops.append(jitter if p.jitter_p >= 1.0 else v2.RandomApply([jitter], p=p.jitter_p))
    ops.append(v2.RandomGrayscale(p=p.grayscale_p))
    if flip:
        ops.append(v2.RandomHorizontalFlip())
    if p.blur:
        kernel = 2 * (p.size // 20) + 1  # about 10% of the image side, odd, as in SimCLR
        ops.append(RandomGaussianBlur(sigma=(0.1, 2.0), p=0.5, kernel_size=kernel))
    return v2.Compose(ops + _to_tensor(p))


def linear_transform(p: Augmentation) -> v2.Compose:
    """The linear-evaluation training augmentation of the paper's recipe."""
    if p.linear == "flip":
        ops: list = _fixed_size(p) + [v2.RandomHorizontalFlip()]
    elif p.linear == "jitter":
        ops = _fixed_size(p) + [v2.ColorJitter(0.4, 0.4, 0.4, 0.4), v2.RandomGrayscale(p=0.2)]
    else:
        ops = [v2.RandomResizedCrop(p.size, antialias=True), v2.RandomHorizontalFlip()]
    return v2.Compose(ops + _to_tensor(p))


def eval_transform(p: Augmentation) -> v2.Compose:
    """Deterministic: (resize and centre crop for large images), tensor, normalise."""
    return v2.Compose(_fixed_size(p) + _to_tensor(p))


def build(preset: str | Augmentation, stage: Stage, flip: bool | None = None) -> Callable:
    """The transform of ``stage`` for ``preset`` (a name from :data:`PRESETS` or an :class:`Augmentation`).

    ``flip`` None follows the augmentation's own ``flip``.
    """
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
