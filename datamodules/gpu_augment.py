"""The paper's contrastive augmentation for a whole uint8 batch, on the batch's own device.

:class:`DeviceAugmentation` is the batched, on-device twin of the CPU ``pretrain``
pipeline of :mod:`datamodules.transforms` (RandomResizedCrop(size, scale=(0.2, 1)),
ColorJitter(0.4, 0.4, 0.4, 0.4) always, RandomGrayscale(0.2), RandomHorizontalFlip,
Normalize; ``docs/design.md``, section "Training and linear-evaluation recipe"). Each image gets its
own random parameters; there is no Python loop over the batch and no host-device
synchronisation (no ``.item()``, no boolean-mask indexing, no ``nonzero``): every op
has a shape fixed by the batch shape, so a CUDA stream never waits for the host.

What is exact and what is only equal in distribution:

- :meth:`DeviceAugmentation.apply` reproduces, for given parameters, the
  ``torchvision.transforms.v2.functional`` chain on the float image
  (``to_dtype(scale=True)``, ``resized_crop(antialias=False)``, the ``adjust_*`` in the
  image's order, ``rgb_to_grayscale``, ``hflip``, ``normalize``) up to float rounding
  (about 1e-6 in [0, 1]; tested below 1e-4 after normalisation).
- Crop and resize: bilinear ``grid_sample`` whose sampling coordinates are those of
  ``interpolate(align_corners=False)`` *on the crop*, clamped to the crop box (not to
  the image), so upscaling matches ``resized_crop(antialias=False)``. Downscaling
  (a crop larger than ``size``; never the case for 32x32 CIFAR at size 32) also
  matches ``antialias=False``, but torchvision's default ``antialias=True`` and PIL
  low-pass the image first: here a downscaled crop is sharper (aliased) than theirs.
- The CPU pipeline works on PIL uint8 images: PIL truncates to uint8 after every
  colour op and shifts hue in 8-bit HSV, whereas this module stays in float32 until
  the end. Statistics agree up to that quantisation (a fraction of 1/255).
- Random parameters follow torchvision's distributions (RandomResizedCrop's 10 tries
  and central-crop fallback, ColorJitter's factors and uniform random order,
  grayscale and flip coins) but are drawn from different random streams, so a
  given seed does not give the CPU pipeline's images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.transforms import CIFAR_MEAN, CIFAR_STD, Augmentation

CROP_TRIALS = 10  # torchvision's RandomResizedCrop tries 10 boxes before its central-crop fallback
IDENTITY, BRIGHTNESS, CONTRAST, SATURATION, HUE = -1, 0, 1, 2, 3  # ColorJitter's fn_idx codes
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (ITU-R 601-2)


class DeviceAugmentation(nn.Module):
    """Batched contrastive augmentation of uint8 images on their own device (CPU or CUDA).

    Per image: RandomResizedCrop to ``size`` x ``size`` (bilinear), ColorJitter with
    probability ``jitter_p`` (brightness, contrast, saturation, hue in a random order),
    grayscale with probability ``grayscale_p``, horizontal flip with probability 0.5
    (if ``flip``), then normalisation with ``mean`` and ``std``. The defaults are the
    paper's CIFAR recipe. Use it after the batch reaches the accelerator, e.g. in
    ``on_after_batch_transfer``, with a datamodule that yields unaugmented uint8 images.

    Colour jitter in a random order per image, without a loop: brightness, contrast and
    saturation are all ``clamp(f * x + (1 - f) * ref, 0, 1)`` with ``ref`` = 0, the mean
    of the grayscale image, or the grayscale image; ``f = 1`` is an exact identity. The
    image's order (a permutation of the four ops) is run as three such "blend" slots,
    one hue shift, and three more blend slots: an op before the hue goes in the first
    three slots, one after it in the last three, and unused slots get ``f = 1``. That is
    the exact torchvision result at the cost of 6 cheap blends and 1 HSV round trip,
    instead of 4 slots x 4 candidate ops (4 HSV round trips).

    Args:
        size: side of the square output crop.
        scale: range of the crop's area as a fraction of the image's, ``0 < lo <= hi <= 1``.
        ratio: range of the crop's aspect ratio (width / height), drawn log-uniformly.
        jitter: strength of brightness, contrast and saturation jitter: factors are
            uniform in ``[max(0, 1 - jitter), 1 + jitter]``; 0 disables them.
        hue: hue shift, uniform in ``[-hue, hue]`` (fraction of the hue circle),
            ``0 <= hue <= 0.5``; 0 disables it.
        jitter_p: probability that an image gets colour jitter at all (the paper: 1).
        grayscale_p: probability that an image is turned to grayscale (after jitter).
        flip: whether to flip images horizontally with probability 0.5.
        mean: per-channel mean for the normalisation (RGB, in [0, 1] units).
        std: per-channel standard deviation for the normalisation.
    """

    def __init__(self, size: int = 32, scale: tuple[float, float] = (0.2, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), jitter: float = 0.4, hue: float = 0.4,
                 jitter_p: float = 1.0, grayscale_p: float = 0.2, flip: bool = True,
                 mean: tuple[float, float, float] = CIFAR_MEAN,
                 std: tuple[float, float, float] = CIFAR_STD) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        scale = tuple(float(s) for s in scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi <= 1, got {scale}")
        ratio = tuple(float(r) for r in ratio)
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1] or not math.isfinite(ratio[1]):
            raise ValueError(f"ratio must be (lo, hi) with 0 < lo <= hi, got {ratio}")
        if not 0 <= jitter < math.inf:
            raise ValueError(f"jitter must be a finite number >= 0, got {jitter}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5] (a fraction of the hue circle), got {hue}")
        for name, p in (("jitter_p", jitter_p), ("grayscale_p", grayscale_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need one value per RGB channel, got {mean} and {std}")
        if not all(s > 0 for s in std):
            raise ValueError(f"std must be positive, got {std}")
        self.size = size
        self.scale = scale
        self.ratio = ratio
        self.jitter = float(jitter)
        self.hue = float(hue)
        self.jitter_p = float(jitter_p)
        self.grayscale_p = float(grayscale_p)
        self.flip = bool(flip)
        # Python floats, not tensors: a per-call host-to-device copy would sync, and buffers
        # would be cast by module.half() / Lightning's precision plugins and enter checkpoints.
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    @classmethod
    def from_augmentation(cls, augmentation: Augmentation) -> "DeviceAugmentation":
        """The device twin of ``pretrain_transform(augmentation)``: the same fields, read from the same object.

        Raises:
            ValueError: the augmentation asks for a Gaussian blur, which has no device version here.
        """
        if augmentation.blur:
            raise ValueError("DeviceAugmentation has no Gaussian blur and the augmentation asks for one "
                             "(blur: true): use the CPU pipeline")
        return cls(size=augmentation.size, scale=augmentation.crop_scale, ratio=augmentation.crop_ratio,
                   jitter=augmentation.jitter, hue=augmentation.hue, jitter_p=augmentation.jitter_p,
                   grayscale_p=augmentation.grayscale_p, flip=augmentation.flip, mean=augmentation.mean,
                   std=augmentation.std)

    def extra_repr(self) -> str:
        return (f"size={self.size}, scale={self.scale}, ratio={self.ratio}, jitter={self.jitter}, "
                f"hue={self.hue}, jitter_p={self.jitter_p}, grayscale_p={self.grayscale_p}, "
                f"flip={self.flip}")

    # ------------------------------------------------------------------ parameters
    def _crop_fallback(self, height: int, width: int) -> tuple[int, int, int, int]:
        """torchvision's central crop after 10 failed tries: (top, left, h, w), plain Python."""
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def sample_params(self, batch_size: int, height: int, width: int, device: torch.device | str,
                      generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Draw every image's random parameters at once, on ``device``.

        Args:
            batch_size: number of images B.
            height: input image height H.
            width: input image width W.
            device: where to draw (must be the generator's device if one is given).
            generator: random generator; ``None`` uses the device's default one.

        Returns:
            ``top``, ``left``, ``height``, ``width`` (B,) int64: the crop box;
            ``brightness``, ``contrast``, ``saturation``, ``hue`` (B,) float32: jitter factors;
            ``order`` (B, 4) int64: each row a permutation of 0..3 (brightness, contrast,
            saturation, hue), the order the jitter ops are applied in, as torchvision's ``fn_idx``;
            ``jitter``, ``gray``, ``flip`` (B,) bool: whether jitter / grayscale / flip apply.
        """
        if batch_size < 1 or height < 1 or width < 1:
            raise ValueError(f"need batch_size, height, width >= 1, got {batch_size}, {height}, {width}")
        B, T = batch_size, CROP_TRIALS

        def rand(*shape: int) -> Tensor:
            return torch.rand(*shape, device=device, generator=generator)

        # RandomResizedCrop: T candidate boxes per image, keep the first valid one (as the
        # loop does: the first success of i.i.d. tries), else the central-crop fallback.
        area = float(height * width)
        lo, hi = self.scale
        target = area * (lo + (hi - lo) * rand(B, T))  # (B, T) pixels
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * rand(B, T))  # (B, T) width / height
        w = torch.round(torch.sqrt(target * aspect))  # round half to even, like Python's round
        h = torch.round(torch.sqrt(target / aspect))
        valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (B, T)
        first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)  # (B, 1) first valid (argmax: first max)
        found = valid.any(dim=1)  # (B,)
        f_top, f_left, f_h, f_w = self._crop_fallback(height, width)
        h = torch.where(found, h.gather(1, first).squeeze(1), float(f_h)).long()  # (B,)
        w = torch.where(found, w.gather(1, first).squeeze(1), float(f_w)).long()
        u = rand(B, 2)  # uniform offsets, like randint(0, H - h + 1)
        top = torch.floor(u[:, 0] * (height - h + 1)).long().clamp_(min=0).minimum(height - h)
        left = torch.floor(u[:, 1] * (width - w + 1)).long().clamp_(min=0).minimum(width - w)
        top = torch.where(found, top, f_top)
        left = torch.where(found, left, f_left)

        # ColorJitter: factors, and a uniformly random permutation (argsort of i.i.d. uniforms).
        j, lo_j = self.jitter, max(0.0, 1.0 - self.jitter)
        factors = lo_j + (1.0 + j - lo_j) * rand(3, B)  # (3, B): brightness, contrast, saturation
        hue = self.hue * (2.0 * rand(B) - 1.0)  # (B,) in [-hue, hue)
        order = torch.argsort(rand(B, 4), dim=1)  # (B, 4)
        coins = rand(3, B)
        return {
            "top": top, "left": left, "height": h, "width": w,
            "brightness": factors[0], "contrast": factors[1], "saturation": factors[2], "hue": hue,
            "order": order,
            "jitter": coins[0] < self.jitter_p,
            "gray": coins[1] < self.grayscale_p,
            "flip": (coins[2] < 0.5) if self.flip else torch.zeros(B, dtype=torch.bool, device=device),
        }

    # ------------------------------------------------------------------ geometry
    def _sampling_grid(self, params: dict[str, Tensor], height: int, width: int) -> Tensor:
        """(B, size, size, 2) grid_sample grid: interpolate(align_corners=False) on the crop, flipped."""
        S = self.size
        device = params["top"].device
        out = torch.arange(S, device=device, dtype=torch.float32)  # (S,) output pixel index

        def axis(start: Tensor, length: Tensor, extent: int, reverse: Tensor | None) -> Tensor:
            length = length.float()[:, None]  # (B, 1)
            index = out.expand(length.shape[0], S)  # (B, S)
            if reverse is not None:  # hflip of the output = reading the output columns backwards
                index = torch.where(reverse[:, None], (S - 1) - index, index)
            # PyTorch's source index for align_corners=False, clamped to the crop as the
            # crop-then-interpolate of torchvision does (interpolate clamps at 0 and at length-1).
            src = (length / S) * (index + 0.5) - 0.5  # (B, S) in crop pixels
            src = torch.minimum(src.clamp(min=0.0), length - 1) + start.float()[:, None]  # image pixels
            return (2.0 * src + 1.0) / extent - 1.0  # grid_sample's normalised coordinate

        gx = axis(params["left"], params["width"], width, params["flip"])  # (B, S)
        gy = axis(params["top"], params["height"], height, None)  # (B, S)
        B = gx.shape[0]
        return torch.stack((gx[:, None, :].expand(B, S, S), gy[:, :, None].expand(B, S, S)), dim=-1)

    # ------------------------------------------------------------------ colour
    @staticmethod
    def _gray(x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 1, H, W), the exact op sequence of torchvision's rgb_to_grayscale."""
        r, g, b = x.unbind(dim=-3)
        return r.mul(GRAY_WEIGHTS[0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2]).unsqueeze(-3)

    @staticmethod
    def _blend_slot(x: Tensor, op: Tensor, factors: Tensor) -> Tensor:
        """One of brightness / contrast / saturation / identity per image: clamp(f x + (1 - f) ref, 0, 1).

        ``op`` (B,) holds BRIGHTNESS, CONTRAST, SATURATION or IDENTITY; ``factors`` (3, B).
        """
        gray = DeviceAugmentation._gray(x)  # (B, 1, H, W)
        mean = gray.mean(dim=(-3, -2, -1), keepdim=True)  # (B, 1, 1, 1) as adjust_contrast
        op4 = op.view(-1, 1, 1, 1)
        ref = torch.where(op4 == CONTRAST, mean, torch.where(op4 == SATURATION, gray, 0.0))  # (B, 1, H, W)
        f = factors.gather(0, op.clamp(min=0)[None]).squeeze(0)  # (B,) the image's factor
        f = torch.where(op == IDENTITY, 1.0, f).view(-1, 1, 1, 1)  # f = 1 (and ref = 0): exactly x
        return x.mul(f).add_(ref * (1.0 - f)).clamp_(0.0, 1.0)

    @staticmethod
    def _rgb_to_hsv(image: Tensor) -> Tensor:
        """torchvision's _rgb_to_hsv (after Pillow), op for op, on (..., 3, H, W)."""
        r, g, _ = image.unbind(dim=-3)
        minc, maxc = torch.aminmax(image, dim=-3)
        eqc = maxc == minc  # gray pixel: S = H = 0, and no division by zero
        channels_range = maxc - minc
        ones = torch.ones_like(maxc)
        s = channels_range / torch.where(eqc, ones, maxc)
        divisor = torch.where(eqc, ones, channels_range).unsqueeze_(dim=-3)
        rc, gc, bc = ((maxc.unsqueeze(dim=-3) - image) / divisor).unbind(dim=-3)
        maxc_neq_r = maxc != r
        maxc_eq_g = maxc == g
        hg = rc.add(2.0).sub_(bc).mul_(maxc_eq_g & maxc_neq_r)
        hr = bc.sub_(gc).mul_(~maxc_neq_r)
        hb = gc.add_(4.0).sub_(rc).mul_(maxc_neq_r.logical_and_(maxc_eq_g.logical_not_()))
        h = hr.add_(hg).add_(hb)
        h = h.mul_(1.0 / 6.0).add_(1.0).fmod_(1.0)
        return torch.stack((h, s, maxc), dim=-3)

    @staticmethod
    def _hsv_to_rgb(img: Tensor) -> Tensor:
        """torchvision's _hsv_to_rgb, op for op, on (..., 3, H, W).

        torchvision picks R, G, B out of (v, p, q, t) with a lookup table indexed by the hue
        sector i; the same selection is done here with torch.where, so no table has to be
        copied to the device.
        """
        h, s, v = img.unbind(dim=-3)
        h6 = h.mul(6)
        i = torch.floor(h6)
        f = h6.sub_(i)
        i = i.to(dtype=torch.int32)
        sxf = s * f
        one_minus_s = 1.0 - s
        q = (1.0 - sxf).mul_(v).clamp_(0.0, 1.0)
        t = sxf.add_(one_minus_s).mul_(v).clamp_(0.0, 1.0)
        p = one_minus_s.mul_(v).clamp_(0.0, 1.0)
        i.remainder_(6)
        # sector:   0  1  2  3  4  5
        # red:      v  q  p  p  t  v
        # green:    t  v  v  q  p  p
        # blue:     p  p  t  v  v  q
        r = torch.where((i == 0) | (i == 5), v, torch.where(i == 1, q, torch.where(i == 4, t, p)))
        g = torch.where((i == 1) | (i == 2), v, torch.where(i == 0, t, torch.where(i == 3, q, p)))
        b = torch.where((i == 3) | (i == 4), v, torch.where(i == 2, t, torch.where(i == 5, q, p)))
        return torch.stack((r, g, b), dim=-3)

    def _adjust_hue(self, x: Tensor, hue: Tensor) -> Tensor:
        """adjust_hue with a per-image shift ``hue`` (B,)."""
        h, s, v = self._rgb_to_hsv(x).unbind(dim=-3)
        h = h.add(hue.view(-1, 1, 1)).remainder_(1.0)
        return self._hsv_to_rgb(torch.stack((h, s, v), dim=-3))

    def _color_jitter(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """The four jitter ops in each image's own order (see the class docstring)."""
        order, on = params["order"], params["jitter"]  # (B, 4), (B,)
        B = order.shape[0]
        hue_pos = (order == HUE).to(torch.uint8).argmax(dim=1, keepdim=True)  # (B, 1) slot of the hue op
        slot = torch.arange(3, device=order.device).expand(B, 3)  # (B, 3)
        # The three blend ops in order, hue removed: order[j] for j < hue_pos, order[j + 1] after.
        blends = order.gather(1, slot + (slot >= hue_pos).long())  # (B, 3)
        before = torch.where(slot < hue_pos, blends, IDENTITY)  # (B, 3): slots before the hue shift
        after_index = (slot + hue_pos).clamp(max=2)
        after = torch.where(slot + hue_pos < 3, blends.gather(1, after_index), IDENTITY)  # (B, 3)
        off = ~on[:, None]
        before = torch.where(off, IDENTITY, before)
        after = torch.where(off, IDENTITY, after)
        factors = torch.stack((params["brightness"], params["contrast"], params["saturation"])).to(x.dtype)
        do_blends = self.jitter > 0  # a static choice: with jitter 0 every factor is 1
        if do_blends:
            for k in range(3):
                x = self._blend_slot(x, before[:, k], factors)
        if self.hue > 0:
            x = torch.where(on.view(-1, 1, 1, 1), self._adjust_hue(x, params["hue"].to(x.dtype)), x)
        if do_blends:
            for k in range(3):
                x = self._blend_slot(x, after[:, k], factors)
        return x

    # ------------------------------------------------------------------ the pipeline
    def apply(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Augment ``images`` with the given ``params`` (deterministic).

        Args:
            images: (B, 3, H, W) uint8, or floating point in [0, 1].
            params: as returned by :meth:`sample_params` for this batch, on the images' device.

        Returns:
            (B, 3, size, size) float32, normalised.
        """
        self._check_images(images)
        _, _, H, W = images.shape
        if images.dtype == torch.uint8:
            x = images.to(torch.float32).mul_(1.0 / 255)  # as to_dtype(float32, scale=True)
        else:
            x = images.to(torch.float32)
        grid = self._sampling_grid(params, H, W)  # (B, S, S, 2)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B, 3, S, S)
        if self.jitter_p > 0 and (self.jitter > 0 or self.hue > 0):
            x = self._color_jitter(x, params)
        if self.grayscale_p > 0:
            x = torch.where(params["gray"].view(-1, 1, 1, 1), self._gray(x).expand_as(x), x)
        # Per channel with Python scalars (no tensor to move); v2.Normalize's float32 values.
        return torch.stack([(x[:, c] - self.mean[c]) / self.std[c] for c in range(3)], dim=1)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw per-image parameters and augment.

        Args:
            images: (B, 3, H, W) uint8 (or floating point in [0, 1]), on any device.
            generator: random generator on the images' device; ``None`` uses the default one.

        Returns:
            (B, 3, size, size) float32, normalised, on the images' device.
        """
        self._check_images(images)
        B, _, H, W = images.shape
        params = self.sample_params(B, H, W, images.device, generator=generator)
        return self.apply(images, params)

    @staticmethod
    def _check_images(images: Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        if images.shape[0] < 1 or images.shape[2] < 1 or images.shape[3] < 1:
            raise ValueError(f"images must be a non-empty batch, got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"images must be uint8 (or float in [0, 1]), got {images.dtype}")
