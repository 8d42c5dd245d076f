"""Pretraining step throughput: the whole suite (Lightning + bank + loss + logging) vs a bare PyTorch loop.

    python benchmarks/bench_step.py --device cpu --batch 128 --bank 50000 --steps 5

Both sides train the same backbone on the same fixed batch with the same SGD; the bare
loop's loss is the mean of the head's output, so the ratio is everything the suite adds:
the memory bank's similarities and update, the loss, Lightning's loop and logging.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytorch_lightning as pl  # noqa: E402
from pytorch_lightning.loggers import CSVLogger  # noqa: E402

from lightning_modules.contrastive import ContrastiveModule  # noqa: E402
from lightning_modules.encoders import ResNetEncoder, SmallConvEncoder  # noqa: E402
from lightning_modules.losses import ContrastiveLoss, HardContrastiveLoss  # noqa: E402
from lightning_modules.negatives import MemoryBank  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fixed_batch(batch: int, bank: int, size: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(bank, generator=g)[:batch]
    images = torch.randn(batch, 3, size, size, generator=g)
    labels = torch.randint(0, 10, (batch,), generator=g)
    return index, images, labels


class StepTimer(pl.Callback):
    """Wall time from the start of step ``warmup`` to the end of training (all hooks included)."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device = warmup, device
        self.start: float | None = None
        self.seconds = float("nan")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            sync(self.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self.start


def make_encoder(args) -> torch.nn.Module:
    """The backbone: a ResNet, or ``small`` (a 4-layer CNN) so that the bank and the loss dominate the step."""
    if args.arch == "small":
        return SmallConvEncoder(width=16, out_dim=128)
    return ResNetEncoder(args.arch, cifar_stem=args.size <= 64)


def time_suite(args, loss) -> float:
    torch.manual_seed(0)
    module = ContrastiveModule(encoder=make_encoder(args),
                               loss=loss, negatives=MemoryBank(dim=128), num_samples=args.bank,
                               channels_last=args.channels_last)
    batch = fixed_batch(args.batch, args.bank, args.size, "cpu")
    loader = torch.utils.data.DataLoader([batch] * (args.warmup + args.steps), batch_size=None)
    timer = StepTimer(args.warmup, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1,
                             max_steps=args.warmup + args.steps, precision=args.precision,
                             logger=CSVLogger(tmp), log_every_n_steps=50, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
        trainer.fit(module, train_dataloaders=loader)
    return timer.seconds / args.steps


def time_bare(args) -> float:
    torch.manual_seed(0)
    encoder = make_encoder(args).to(args.device)
    if args.channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
    _, images, _ = fixed_batch(args.batch, args.bank, args.size, args.device)
    images = images.to(args.device)
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    autocast = args.precision.startswith("bf16")
    device_type = "cuda" if args.device.startswith("cuda") else "cpu"
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(args.device)
            start = time.perf_counter()
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            loss = encoder(images).float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(args.device)
    return (time.perf_counter() - start) / args.steps


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="resnet18",
                        help="a torchvision ResNet name, or 'small' (a 4-layer CNN: the suite's own work dominates)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--bank", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--hard", action="store_true", help="also time the hard contrastive loss (K=4095)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate bare and suite this many times; the median round counts")
    args = parser.parse_args(argv)
    torch.backends.cudnn.benchmark = True
    timers = {"bare loop (backbone fwd/bwd + SGD)": lambda: time_bare(args),
              "suite: contrastive + bank": lambda: time_suite(args, ContrastiveLoss(0.07))}
    if args.hard:
        timers["suite: hard contrastive (K=4095) + bank"] = lambda: time_suite(
            args, HardContrastiveLoss(0.07, num_negatives=4095))
    # alternating rounds: a slow spell of a shared machine then hits every variant alike
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(args.rounds):
        for name, timer in timers.items():
            samples[name].append(timer())
    rows = [{"what": name, "s_per_step": statistics.median(values), "spread": (min(values), max(values))}
            for name, values in samples.items()]
    bare = rows[0]["s_per_step"]
    print(f"\nPretraining step, {args.arch}, batch {args.batch}, bank {args.bank}, {args.size}px, "
          f"{args.device}, {args.precision}{', channels_last' if args.channels_last else ''}, "
          f"{torch.get_num_threads()} threads; median over {args.rounds} alternating rounds of the mean of "
          f"{args.steps} steps after {args.warmup} warm-up\n")
    print("| what | s/step (median) | min..max over rounds | images/s | ratio to bare |")
    print("|---|---|---|---|---|")
    for row in rows:
        row["images_per_s"] = args.batch / row["s_per_step"]
        row["ratio"] = row["s_per_step"] / bare
        low, high = row["spread"]
        print(f"| {row['what']} | {row['s_per_step']:.3f} | {low:.3f}..{high:.3f} | {row['images_per_s']:.0f} | "
              f"{row['ratio']:.3f} |")
    return rows


if __name__ == "__main__":
    main()
