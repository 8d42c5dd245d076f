"""Seconds of the L-BFGS linear probe (lightning_modules/probe.py) on features of a given size.

    python benchmarks/bench_probe.py --n 50000 --dim 512 --classes 10

The features are Gaussian class clusters with heavy overlap (a probe that converges in one step
would flatter it); the whole probe is timed: 5 L2 strengths on 90%, the refit on 100%, the test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_modules.probe import lbfgs_probe  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--n-test", type=int, default=10_000)
    opts = parser.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(opts.classes, opts.dim, generator=g) * 0.15
    y, yt = torch.arange(opts.n) % opts.classes, torch.arange(opts.n_test) % opts.classes
    x = centres[y] + torch.randn(opts.n, opts.dim, generator=g)
    xt = centres[yt] + torch.randn(opts.n_test, opts.dim, generator=g)
    start = time.perf_counter()
    result = lbfgs_probe(x, y, xt, yt, opts.classes)
    seconds = time.perf_counter() - start
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"| {opts.n} x {opts.dim}, {opts.classes} classes | {seconds:.1f} s | top-1 {100 * result['top1']:.1f}% | "
          f"L2 {result['l2']:g} | {torch.get_num_threads()} threads, load average {load:.1f} |")


if __name__ == "__main__":
    main()
