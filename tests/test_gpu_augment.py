"""DeviceAugmentation against torchvision: exact for given parameters, equal in distribution when random.

References: ``torchvision.transforms.v2.functional`` applied image by image (exactness),
``RandomResizedCrop.get_params`` and ColorJitter's documented distributions (parameters),
and the project's CPU pipeline ``datamodules.transforms.build("cifar", "pretrain")`` on PIL
images (end-to-end statistics).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T1
from torchvision.transforms.v2 import functional as TF

from datamodules import transforms as presets
from datamodules.gpu_augment import DeviceAugmentation
from tests.fakedata import load_subset
from tests.sync_ops import RecordOps

JITTER_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")
EXACT_ATOL = 1e-4  # after normalisation (std ~0.2): ~2e-5 in [0, 1], well above float32 rounding


@pytest.fixture(scope="module")
def cifar() -> torch.Tensor:
    """The first 512 real CIFAR-10 training images of tests/data, (512, 3, 32, 32) uint8."""
    return torch.from_numpy(load_subset()["x_train"][:512]).permute(0, 3, 1, 2).contiguous()


def reference(aug: DeviceAugmentation, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """torchvision.transforms.v2.functional, one image at a time, with the same parameters."""
    p = {k: v.tolist() for k, v in params.items()}
    mean, std = list(aug.mean), list(aug.std)
    out = []
    for b, image in enumerate(images):
        x = TF.to_dtype(image, torch.float32, scale=True)
        x = TF.resized_crop(x, p["top"][b], p["left"][b], p["height"][b], p["width"][b],
                            [aug.size, aug.size], antialias=False)
        if p["jitter"][b]:
            for op in p["order"][b]:
                x = JITTER_OPS[op](x, p[JITTER_KEYS[op]][b])
        if p["gray"][b]:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        if p["flip"][b]:
            x = TF.hflip(x)
        out.append(TF.normalize(x, mean, std))
    return torch.stack(out)


def hand_params(rows: list[tuple]) -> dict[str, torch.Tensor]:
    """Params from rows (top, left, h, w, b, c, s, hue, order, jitter, gray, flip)."""
    cols = list(zip(*rows))
    f32 = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return {
        "top": torch.tensor(cols[0]), "left": torch.tensor(cols[1]),
        "height": torch.tensor(cols[2]), "width": torch.tensor(cols[3]),
        "brightness": f32(cols[4]), "contrast": f32(cols[5]), "saturation": f32(cols[6]), "hue": f32(cols[7]),
        "order": torch.tensor(cols[8]), "jitter": torch.tensor(cols[9]),
        "gray": torch.tensor(cols[10]), "flip": torch.tensor(cols[11]),
    }


# ---------------------------------------------------------------- exact for given parameters
def test_identity_crop_without_colour_ops_is_plain_normalisation(cifar):
    aug = DeviceAugmentation()
    x = cifar[:16]
    rows = [(0, 0, 32, 32, 1.0, 1.0, 1.0, 0.0, [0, 1, 2, 3], False, False, False)] * len(x)
    out = aug.apply(x, hand_params(rows))
    expected = TF.normalize(TF.to_dtype(x, torch.float32, scale=True), list(presets.CIFAR_MEAN),
                            list(presets.CIFAR_STD))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_integer_scale_crop_matches_interpolate_on_the_crop(cifar):
    """A 16x16 crop doubled to 32x32 (and a 8x16 crop) is F.interpolate(align_corners=False) of the slice."""
    aug = DeviceAugmentation(mean=(0, 0, 0), std=(1, 1, 1))
    x = cifar[:4]
    rows = [(8, 8, 16, 16), (0, 16, 16, 16), (16, 0, 8, 16), (3, 5, 16, 8)]
    params = hand_params([r + (1.0, 1.0, 1.0, 0.0, [0, 1, 2, 3], False, False, False) for r in rows])
    out = aug.apply(x, params)
    xf = x.float() / 255
    for b, (top, left, h, w) in enumerate(rows):
        expected = F.interpolate(xf[b:b + 1, :, top:top + h, left:left + w], size=(32, 32), mode="bilinear",
                                 align_corners=False)
        torch.testing.assert_close(out[b:b + 1], expected, rtol=0, atol=2e-6)
    # The crop's edge is clamped to the crop, not to the image: sampling outside it would differ.
    outside = F.interpolate(xf[:1], size=(64, 64), mode="bilinear", align_corners=False)[:, :, 16:48, 16:48]
    assert (out[:1] - outside).abs().max() > 1e-3


def test_hand_built_params_match_torchvision_functional(cifar):
    aug = DeviceAugmentation()
    rows = [  # (top, left, h, w, brightness, contrast, saturation, hue, order, jitter, gray, flip)
        (0, 0, 32, 32, 1.4, 0.6, 1.3, 0.4, [3, 2, 1, 0], True, False, False),   # identity crop, hue first
        (8, 8, 16, 16, 0.6, 1.4, 0.6, -0.4, [0, 1, 2, 3], True, False, True),   # 2x upscale, hue last, flip
        (5, 3, 17, 23, 1.1, 0.9, 1.2, 0.1, [1, 3, 0, 2], True, True, False),    # odd box, grayscale
        (12, 0, 20, 29, 0.8, 1.2, 0.7, -0.25, [2, 0, 3, 1], True, False, True),
        (0, 15, 27, 17, 1.3, 1.3, 1.4, 0.33, [3, 0, 1, 2], True, True, True),
        (20, 20, 12, 12, 0.9, 0.7, 1.0, -0.05, [1, 2, 3, 0], False, False, True),  # no jitter at all
        (1, 2, 31, 30, 1.0, 1.0, 0.0, 0.5, [2, 3, 1, 0], True, False, False),   # saturation 0, hue 0.5
        (4, 9, 14, 22, 1.2, 0.8, 1.1, 0.2, [0, 2, 1, 3], True, True, False),
    ]
    x = cifar[:len(rows)]
    params = hand_params(rows)
    out = aug.apply(x, params)
    assert out.shape == (len(rows), 3, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out, reference(aug, x, params), rtol=0, atol=EXACT_ATOL)


def test_every_jitter_order_matches_torchvision(cifar):
    """All 24 orders of the four ops, each on one image, against the loop of v2.ColorJitter."""
    aug = DeviceAugmentation(grayscale_p=0.0)
    orders = list(itertools.permutations(range(4)))
    rows = [(2, 1, 28, 30, 1.35, 0.65, 1.4, 0.3 if k % 2 else -0.35, list(o), True, False, False)
            for k, o in enumerate(orders)]
    x = cifar[100:100 + len(rows)]
    params = hand_params(rows)
    torch.testing.assert_close(aug.apply(x, params), reference(aug, x, params), rtol=0, atol=EXACT_ATOL)


@pytest.mark.parametrize("kwargs, shape", [
    ({}, (32, 32)),
    ({"jitter_p": 0.5, "grayscale_p": 0.5}, (32, 32)),
    ({"size": 48}, (24, 40)),         # non-square input, upscaling
    ({"size": 20}, (40, 28)),         # downscaling: matches antialias=False (torchvision defaults to True)
    ({"jitter": 0.0, "hue": 0.2}, (32, 32)),
])
def test_sampled_params_match_torchvision_functional(cifar, kwargs, shape):
    aug = DeviceAugmentation(**kwargs)
    x = cifar[:32]
    if shape != (32, 32):
        x = F.interpolate(x.float(), size=shape, mode="bilinear", align_corners=False).round().to(torch.uint8)
    params = aug.sample_params(len(x), *shape, "cpu", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(aug.apply(x, params), reference(aug, x, params), rtol=0, atol=EXACT_ATOL)


# ---------------------------------------------------------------- parameter distributions
def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (works for discrete values)."""
    grid = np.union1d(a, b)
    cdf = lambda s: np.searchsorted(np.sort(s), grid, side="right") / len(s)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


@pytest.mark.parametrize("shape", [(32, 32), (24, 40)])
def test_crop_boxes_follow_random_resized_crop(shape):
    H, W = shape
    n = 20000
    aug = DeviceAugmentation()
    p = aug.sample_params(n, H, W, "cpu", generator=torch.Generator().manual_seed(0))
    h, w, top, left = (p[k].numpy() for k in ("height", "width", "top", "left"))
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= H).all() and (left + w <= W).all()
    frac = h * w / (H * W)
    # Rounding each side to whole pixels moves the area fraction off [0.2, 1] by at most
    # (sqrt(a r) + sqrt(a / r)) / 2 pixels at the extreme ratio: torchvision's boxes do the same.
    a = 0.2 * H * W
    slack = 0.5 * (math.sqrt(a * 4 / 3) + math.sqrt(a * 3 / 4)) / (H * W)
    assert frac.min() >= 0.2 - slack and frac.max() <= 1.0

    torch.manual_seed(0)
    image = torch.zeros(3, H, W)
    ref = np.array([T1.RandomResizedCrop.get_params(image, [0.2, 1.0], [3 / 4, 4 / 3]) for _ in range(n)])
    rtop, rleft, rh, rw = ref.T
    rfrac = rh * rw / (H * W)
    assert rfrac.min() >= 0.2 - slack
    se = math.sqrt(frac.var() / n + rfrac.var() / n)
    assert abs(frac.mean() - rfrac.mean()) < 4 * se, (frac.mean(), rfrac.mean(), se)
    # KS critical value at alpha = 0.001 for two samples of n: 1.95 * sqrt(2 / n) ~ 0.0195.
    crit = 1.95 * math.sqrt(2 / n)
    for ours, theirs in ((h, rh), (w, rw), (frac, rfrac), (top / np.maximum(H - h, 1), rtop / np.maximum(H - rh, 1)),
                         (left / np.maximum(W - w, 1), rleft / np.maximum(W - rw, 1))):
        assert ks_distance(ours, theirs) < crit


@pytest.mark.parametrize("shape, ratio", [((32, 32), (2.0, 3.0)), ((32, 32), (0.25, 0.4)), ((20, 50), (3.0, 4.0)),
                                          ((50, 20), (1 / 4, 1 / 3)), ((30, 31), (2.0, 2.5))])
def test_crop_fallback_is_torchvisions_central_crop(shape, ratio):
    """scale=(1, 1) with a ratio the image cannot hold: every try fails, as in torchvision."""
    H, W = shape
    aug = DeviceAugmentation(scale=(1.0, 1.0), ratio=ratio)
    p = aug.sample_params(64, H, W, "cpu", generator=torch.Generator().manual_seed(0))
    expected = T1.RandomResizedCrop.get_params(torch.zeros(3, H, W), [1.0, 1.0], list(ratio))
    for key, value in zip(("top", "left", "height", "width"), expected):
        assert (p[key] == value).all(), (key, p[key][:4], value)


def test_jitter_order_and_coins_have_torchvisions_distributions():
    n = 24000
    aug = DeviceAugmentation(jitter_p=0.8)
    p = aug.sample_params(n, 32, 32, "cpu", generator=torch.Generator().manual_seed(1))
    order = p["order"]
    assert (order.sort(dim=1).values == torch.arange(4)).all()  # each row a permutation
    counts = torch.unique(order, dim=0, return_counts=True)[1].double()
    assert len(counts) == 24
    chi2 = ((counts - n / 24) ** 2 / (n / 24)).sum().item()
    assert chi2 < 55.0, chi2  # chi-square, 23 degrees of freedom: P(> 55) ~ 2e-4
    for key in ("brightness", "contrast", "saturation"):
        v = p[key]
        assert v.min() >= 0.6 and v.max() <= 1.4
        assert abs(v.mean().item() - 1.0) < 4 * 0.8 / math.sqrt(12 * n)
        assert ks_distance(v.numpy(), np.linspace(0.6, 1.4, n)) < 1.95 * math.sqrt(2 / n)
    hue = p["hue"]
    assert hue.min() >= -0.4 and hue.max() <= 0.4 and abs(hue.mean().item()) < 4 * 0.8 / math.sqrt(12 * n)
    for key, prob in (("jitter", 0.8), ("gray", 0.2), ("flip", 0.5)):
        frac = p[key].double().mean().item()
        assert abs(frac - prob) < 4 * math.sqrt(prob * (1 - prob) / n), (key, frac)
    no_flip = DeviceAugmentation(flip=False).sample_params(100, 32, 32, "cpu")
    assert not no_flip["flip"].any()


# ---------------------------------------------------------------- end to end against the CPU pipeline
SEEDS = 6  # draws of the whole 512-image batch per pipeline


def per_image_features(out: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) normalised -> (B, 8): per channel pixel mean and mean square (normalised units),
    then the grayscale image's pixel std and the mean channel spread max - min (both in [0, 1] units)."""
    mean = torch.tensor(presets.CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(presets.CIFAR_STD).view(1, 3, 1, 1)
    x = out * std + mean  # back to [0, 1]
    gray = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # (B, H, W)
    return torch.cat([out.mean(dim=(2, 3)), out.pow(2).mean(dim=(2, 3)), gray.flatten(1).std(dim=1)[:, None],
                      (x.amax(dim=1) - x.amin(dim=1)).mean(dim=(1, 2))[:, None]], dim=1).double()


@pytest.fixture(scope="module")
def both_pipelines(cifar) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image features (SEEDS, 512, 8) of the CPU PIL pipeline and of DeviceAugmentation."""
    pil = [Image.fromarray(a) for a in cifar.permute(0, 2, 3, 1).numpy()]
    cpu = presets.build("cifar", "pretrain")
    aug = DeviceAugmentation()
    theirs, ours = [], []
    for s in range(SEEDS):
        torch.manual_seed(s)
        theirs.append(per_image_features(torch.stack([cpu(im) for im in pil])))
        ours.append(per_image_features(aug(cifar, generator=torch.Generator().manual_seed(1000 + s))))
    return torch.stack(theirs), torch.stack(ours)


def batch_mean_std(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, B, 8) -> the batch's per-channel (mean, std), averaged over the S draws, (2, 3), and their SEs (2, 3).

    Each batch statistic is an average over images of a per-image contribution (the std by
    the delta method), so its variance over draws is the sum over images of each image's
    variance over draws / B^2: estimated with S - 1 degrees of freedom per image, pooled
    over the 512 images, hence precise.
    """
    S, B = features.shape[:2]
    a, q = features[..., 0:3], features[..., 3:6]  # (S, B, 3): mean, mean square
    m = a.mean(dim=1)  # (S, 3)
    sd = (q.mean(dim=1) - m ** 2).sqrt()
    influence_sd = (q - 2 * m.mean(0) * a) / (2 * sd.mean(0))  # (S, B, 3)
    se = torch.stack([inf.var(dim=0).sum(dim=0).sqrt() / B / math.sqrt(S) for inf in (a, influence_sd)])
    return torch.stack((m.mean(0), sd.mean(0))), se


def test_batch_mean_and_std_match_the_cpu_pil_pipeline(both_pipelines):
    (stat_a, se_a), (stat_b, se_b) = (batch_mean_std(f) for f in both_pipelines)
    se = (se_a ** 2 + se_b ** 2).sqrt()  # (2, 3)
    diff = stat_a - stat_b  # (2, 3): PIL minus ours, for (mean, std) x channel, normalised units
    # PIL truncates to uint8 after each of brightness, contrast and saturation (Image.blend casts
    # down), lowering pixels by 0 to 1/255 each: the PIL mean may lie up to 3/255 below ours, and
    # as no pixel moves by more than that, the std by no more than that either.
    quant = 3 / 255 / torch.tensor(presets.CIFAR_STD, dtype=torch.float64)
    assert ((diff[0] <= 4 * se[0]) & (diff[0] >= -quant - 4 * se[0])).all(), (diff, se)
    assert (diff[1].abs() <= quant + 4 * se[1]).all(), (diff, se)


def augmentation_spread(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, B, F) -> the RMS over images of each image's std over draws (F,), and its SE (F,).

    This isolates what the augmentation does to one image (the image's content cancels),
    which makes it sensitive to the jitter strengths: brightness 0.3 instead of 0.4 moves it
    by about 6 standard errors.
    """
    v = features.var(dim=0)  # (B, F): each image's variance over draws
    rms = v.mean(dim=0).sqrt()
    return rms, v.std(dim=0) / math.sqrt(v.shape[0]) / (2 * rms)


def test_per_image_augmentation_spread_matches_the_cpu_pil_pipeline(both_pipelines):
    """Spread over draws of each image's channel means, contrast and colourfulness."""
    keep = [0, 1, 2, 6, 7]
    (sp_a, se_a), (sp_b, se_b) = (augmentation_spread(f[..., keep]) for f in both_pipelines)
    z = (sp_a - sp_b) / (se_a ** 2 + se_b ** 2).sqrt()
    # No quantisation allowance: uint8 truncation moves an image by nearly the same amount in
    # every draw, so it cancels in the spread over draws.
    assert (z.abs() < 4.5).all(), (sp_a, sp_b, z)


# ---------------------------------------------------------------- device, determinism, no host sync
def test_no_op_that_would_sync_the_host_on_cpu(cifar):
    aug = DeviceAugmentation(jitter_p=0.7)
    with RecordOps() as rec:
        aug(cifar[:8], generator=torch.Generator().manual_seed(0))
    assert rec.syncing == []
    with RecordOps() as rec:  # the recorder does catch .item() and mask indexing
        t = torch.arange(4.0)
        t.sum().item()
        _ = t[t > 1]
    assert "_local_scalar_dense" in rec.syncing and ("index" in rec.syncing or "nonzero" in rec.syncing)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_sync_on_cuda(cifar):
    aug = DeviceAugmentation().cuda()
    x = cifar[:64].cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    aug(x, generator=g)  # warm-up outside the check (lazy CUDA initialisation)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = aug(x, generator=g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device == x.device and out.shape == (64, 3, 32, 32)
    params = aug.sample_params(64, 32, 32, "cuda", generator=torch.Generator(device="cuda").manual_seed(1))
    expected = reference(aug, x.cpu(), {k: v.cpu() for k, v in params.items()})
    torch.testing.assert_close(aug.apply(x, params).cpu(), expected, rtol=0, atol=EXACT_ATOL)


def test_shape_dtype_device_and_seeds(cifar):
    aug = DeviceAugmentation()
    x = cifar[:32]
    with torch.no_grad():
        a = aug(x, generator=torch.Generator().manual_seed(7))
        b = aug(x, generator=torch.Generator().manual_seed(7))
        c = aug(x, generator=torch.Generator().manual_seed(8))
    assert a.shape == (32, 3, 32, 32) and a.dtype == torch.float32 and a.device == x.device
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.isfinite(a).all()
    one = aug(cifar[:1])  # batch of one, default generator
    assert one.shape == (1, 3, 32, 32)
    wide = DeviceAugmentation(size=16)(torch.randint(0, 256, (3, 3, 20, 45), dtype=torch.uint8))
    assert wide.shape == (3, 3, 16, 16)
    # Pixel range: normalised values of [0, 1] images.
    lo = (0 - torch.tensor(presets.CIFAR_MEAN)) / torch.tensor(presets.CIFAR_STD)
    hi = (1 - torch.tensor(presets.CIFAR_MEAN)) / torch.tensor(presets.CIFAR_STD)
    assert (a.amin(dim=(0, 2, 3)) >= lo - 1e-5).all() and (a.amax(dim=(0, 2, 3)) <= hi + 1e-5).all()


def test_module_has_no_state_and_ignores_dtype_casts(cifar):
    """Safe as a LightningModule's child: no checkpoint entries, and precision casts change nothing."""
    aug = DeviceAugmentation()
    assert aug.state_dict() == {}
    expected = aug(cifar[:4], generator=torch.Generator().manual_seed(0))
    out = aug.half()(cifar[:4], generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and torch.equal(out, expected)


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, "size"), ({"scale": (0.0, 1.0)}, "scale"), ({"scale": (0.8, 0.2)}, "scale"),
    ({"scale": (0.2, 1.5)}, "scale"), ({"ratio": (4 / 3, 3 / 4)}, "ratio"), ({"jitter": -0.1}, "jitter"),
    ({"hue": 0.6}, "hue"), ({"jitter_p": 1.5}, "jitter_p"), ({"grayscale_p": -0.1}, "grayscale_p"),
    ({"std": (0.2, 0.0, 0.2)}, "std"), ({"mean": (0.5, 0.5)}, "mean"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeviceAugmentation(**kwargs)


def test_bad_images_are_rejected():
    aug = DeviceAugmentation()
    with pytest.raises(ValueError, match="B, 3, H, W"):
        aug(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        aug(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(2, 3, 32, 32, dtype=torch.int64))
