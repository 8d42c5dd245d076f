"""Augmented images per second of one data-loading worker, for every pipeline of the suite.

    python benchmarks/bench_augment.py --seconds 3

One process, one torch thread, no DataLoader: what a single worker delivers. Each item
goes through the datamodule's own path, ``IndexedDataset[(index, seed)]``: the dataset's
``__getitem__`` (CIFAR/SVHN: array to PIL image; ImageNet: the JPEG read from disk and
decoded), the per-image seeding of :mod:`datamodules.sampling` and the transform of
:mod:`datamodules.transforms`. The data are written first in the real on-disk formats
from the CIFAR-10 images of ``tests/data`` (``tests/fakedata.py``); the ImageNet stand-ins are those
pictures upscaled to --jpeg-size and saved as JPEG (quality 90), read through the page
cache. One image = one view: with ``num_views=2`` a worker delivers half as many pairs.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datamodules import CIFAR10DataModule, ImageNet100DataModule, SVHNDataModule  # noqa: E402
from datamodules.base import IndexedDataset  # noqa: E402
from datamodules.imagenet import CLASS_LIST, read_class_list  # noqa: E402
from tests.fakedata import write_cifar10, write_image_folder, write_svhn  # noqa: E402


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def throughput(dataset: IndexedDataset, seconds: float, min_images: int, warmup: int = 5) -> tuple[float, int]:
    """(images per second, images timed): items drawn in turn until both limits are reached."""
    n = len(dataset)
    for i in range(warmup):
        dataset[(i % n, i)]
    done, start = 0, time.perf_counter()
    while done < min_images or time.perf_counter() - start < seconds:
        dataset[(done % n, 1000 + done)]  # (index, per-image augmentation seed), as the sampler yields
        done += 1
    return done / (time.perf_counter() - start), done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timing per pipeline")
    parser.add_argument("--min-images", type=int, default=50, help="minimum images timed per pipeline")
    parser.add_argument("--jpeg-size", default="500x375", help="WxH of the ImageNet stand-in JPEGs")
    parser.add_argument("--jpegs-per-class", type=int, default=2, help="JPEGs per class (100 classes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a DataLoader worker runs torch with one thread
    width, height = (int(v) for v in args.jpeg_size.split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        common = dict(num_workers=0, download=False)
        cifar = CIFAR10DataModule(str(write_cifar10(tmp_path / "cifar")), verify_checksums=False, **common)
        svhn = SVHNDataModule(str(write_svhn(tmp_path / "svhn")), verify_checksums=False, **common)
        write_image_folder(tmp_path / "imagenet", read_class_list(CLASS_LIST), args.jpegs_per_class,
                           size=(width, height), splits=("train", "val"))
        imagenet = ImageNet100DataModule(str(tmp_path / "imagenet"), **common)
        for dm in (cifar, svhn, imagenet):
            dm.setup("fit")

        rows = [
            ("cifar pretrain", cifar, "pretrain", "32x32 array"),
            ("cifar linear", cifar, "linear", "32x32 array"),
            ("cifar eval", cifar, "none", "32x32 array"),
            ("svhn pretrain", svhn, "pretrain", "32x32 array"),
            ("svhn linear", svhn, "linear", "32x32 array"),
            ("imagenet pretrain", imagenet, "pretrain", f"{width}x{height} JPEG file"),
            ("imagenet linear", imagenet, "linear", f"{width}x{height} JPEG file"),
            ("imagenet eval", imagenet, "none", f"{width}x{height} JPEG file"),
        ]
        results = []
        for name, dm, stage, source in rows:
            transform = dm.eval_transform() if stage == "none" else dm.transform_for(stage)
            dataset = IndexedDataset(dm._raw("train"), transform)
            side = dataset[(0, 0)][1].shape[-1]
            rate, count = throughput(dataset, args.seconds, args.min_images)
            results.append((name, source, f"{side}x{side}", rate, count))
            print(f"{name}: {rate:.0f} images/s", file=sys.stderr, flush=True)

    print(f"\nOne worker (1 process, torch threads = 1), {cpu_name()}, torch {torch.__version__}; "
          f"at least {args.seconds:g} s and {args.min_images} images per row.\n")
    print("| pipeline | source | output | images/s per worker | ms/image | images timed |")
    print("|---|---|---|---:|---:|---:|")
    for name, source, out, rate, count in results:
        print(f"| {name} | {source} | {out} | {rate:,.0f} | {1000 / rate:.2f} | {count} |")


if __name__ == "__main__":
    main()
