"""Linear-evaluation throughput: the paper's protocol (frozen encoder run every epoch) vs cached features.

    python benchmarks/bench_linear.py --device cpu --n-train 2000 --arch resnet18

Both runs go through LinearEvalModule and the CIFAR-10 datamodule on real CIFAR-10 images
(those of ``tests/data``, written in the official format). The plain run uses the paper's
linear-evaluation augmentation (flip), so the encoder runs on every image every epoch; the
cached run embeds the training split once and then trains the linear layer on the features.
The 100-epoch figures are extrapolated from the measured per-epoch costs (a line through two
run lengths) and printed as such.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytorch_lightning as pl  # noqa: E402

from datamodules.cifar import CIFAR10DataModule  # noqa: E402
from lightning_modules.contrastive import ContrastiveModule  # noqa: E402
from lightning_modules.encoders import ResNetEncoder  # noqa: E402
from lightning_modules.linear_eval import LinearEvalModule  # noqa: E402
from tests.fakedata import write_cifar10  # noqa: E402


def fit_seconds(ckpt: Path, data: Path, epochs: int, cache: bool, args) -> float:
    dm = CIFAR10DataModule(data_dir=str(data), verify_checksums=False, batch_size=256, eval_batch_size=512,
                           num_workers=args.workers)
    module = LinearEvalModule(pretrained=str(ckpt), cache_features=cache)
    trainer = pl.Trainer(accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1,
                         max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--n-train", type=int, default=2000,
                        help="training images (the 1000 of tests/data, repeated beyond that)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--short", type=int, default=1, help="epochs of the short runs")
    parser.add_argument("--long", type=int, default=3, help="epochs of the long run, paper protocol")
    parser.add_argument("--cached-long", type=int, default=51, help="epochs of the long run, cached features")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_cifar10(Path(tmp) / "cifar", n_train=args.n_train, n_test=200, cycle=True)
        ckpt = Path(tmp) / "pretrained.ckpt"
        module = ContrastiveModule(encoder=ResNetEncoder(args.arch), num_samples=args.n_train)
        trainer = pl.Trainer(max_epochs=0, logger=False, enable_checkpointing=False)
        trainer.strategy.connect(module)
        trainer.save_checkpoint(ckpt)
        rows = {}
        for name, cache, n_long in (("paper protocol (encoder every epoch, flip)", False, args.long),
                                    ("cached features", True, args.cached_long)):
            short = fit_seconds(ckpt, data, args.short, cache, args)
            long = fit_seconds(ckpt, data, n_long, cache, args)
            per_epoch = (long - short) / (n_long - args.short)
            fixed = short - per_epoch * args.short
            rows[name] = {"short": short, "long": long, "n_long": n_long, "per_epoch": per_epoch, "fixed": fixed,
                          "100_epochs": fixed + 100 * per_epoch}
    print(f"\nLinear evaluation, {args.arch}, {args.n_train} real CIFAR-10 images, batch 256, {args.device}, "
          f"{torch.get_num_threads()} threads, {args.workers} loader workers\n")
    print(f"| path | {args.short} epoch(s), s | long run, s | s/epoch | one-off s | 100 epochs, s (extrapolated) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['short']:.1f} | {r['long']:.1f} ({r['n_long']} epochs) | {r['per_epoch']:.3f} | "
              f"{r['fixed']:.1f} | {r['100_epochs']:.0f} |")
    plain, cached = rows.values()
    print(f"\nspeed-up of 100 epochs with cached features: {plain['100_epochs'] / cached['100_epochs']:.1f}x "
          f"(per epoch: {plain['per_epoch'] / max(cached['per_epoch'], 1e-9):.0f}x)")
    return rows


if __name__ == "__main__":
    main()
