"""Throughput of DeviceAugmentation against the CPU PIL pipeline, on real CIFAR-10 images.

    python benchmarks/bench_gpu_augment.py --device cpu --batch 512 --size 32 --iters 20

Prints a Markdown table of images per second. The CPU pipeline is
``datamodules.transforms.build(preset, "pretrain")`` run image by image in this one
process (a DataLoader with W workers scales it by at most W); DeviceAugmentation runs on
the whole uint8 batch on ``--device``. Images come from ``tests/data/cifar10_mini.npz``
(resized with PIL when ``--size`` is not 32, so the crop works at that resolution).
On a CPU shared with other busy processes, torch's intra-op threads spin against them:
compare ``--threads 1`` with the default before trusting a multi-thread figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datamodules import transforms as presets  # noqa: E402
from datamodules.gpu_augment import DeviceAugmentation  # noqa: E402
from tests.fakedata import load_subset  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=512, help="images per batch")
    parser.add_argument("--size", type=int, default=32, help="input and output side in pixels")
    parser.add_argument("--iters", type=int, default=20, help="timed batches per pipeline")
    parser.add_argument("--cpu-iters", type=int, default=None,
                        help="timed batches for the (slow) PIL pipeline; default: --iters")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    return parser.parse_args(argv)


def load_images(batch: int, size: int) -> list[Image.Image]:
    """``batch`` real CIFAR-10 training images as PIL images of ``size`` x ``size`` (cycled if needed)."""
    x = load_subset()["x_train"]
    images = [Image.fromarray(x[i % len(x)]) for i in range(batch)]
    if size != 32:
        images = [im.resize((size, size), Image.BILINEAR) for im in images]
    return images


def time_device(aug: DeviceAugmentation, batch: torch.Tensor, iters: int, warmup: int) -> float:
    """Seconds per batch of DeviceAugmentation, the device synchronised before each clock read."""
    sync = torch.cuda.synchronize if batch.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(warmup):
            aug(batch)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            aug(batch)
        sync()
    return (time.perf_counter() - start) / iters


def time_pil(transform, images: list[Image.Image], iters: int, warmup: int) -> float:
    """Seconds per batch of the CPU pipeline, image by image, including the final stack."""
    for _ in range(min(warmup, 1)):
        torch.stack([transform(im) for im in images])
    start = time.perf_counter()
    for _ in range(iters):
        torch.stack([transform(im) for im in images])
    return (time.perf_counter() - start) / iters


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but CUDA is not available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    images = load_images(args.batch, args.size)
    batch = torch.from_numpy(np.stack([np.asarray(im) for im in images]))  # (B, H, W, 3)
    batch = batch.permute(0, 3, 1, 2).contiguous().to(args.device)  # (B, 3, H, W) uint8
    preset = presets.get_preset("cifar", size=args.size)
    aug = DeviceAugmentation(size=args.size, mean=preset.mean, std=preset.std).to(args.device)
    transform = presets.build(preset, "pretrain")

    t_dev = time_device(aug, batch, args.iters, args.warmup)
    t_pil = time_pil(transform, images, args.cpu_iters or args.iters, args.warmup)
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"batch {args.batch}, {args.size}x{args.size}, torch {torch.__version__}\n")
    print("| pipeline | where | ms / batch | images / s |")
    print("|---|---|---:|---:|")
    print(f"| DeviceAugmentation | {name} | {1e3 * t_dev:.1f} | {args.batch / t_dev:,.0f} |")
    print(f"| CPU PIL pipeline (1 process) | cpu | {1e3 * t_pil:.1f} | {args.batch / t_pil:,.0f} |")


if __name__ == "__main__":
    main()
