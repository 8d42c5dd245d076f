"""All benchmarks of the suite, one after another, each printing its own table.

    python benchmarks/run_all.py --device cpu            # or cuda; --quick for smaller sizes

1. bench_step.py        pretraining step: the whole suite vs a bare PyTorch loop (ratio)
2. bench_augment.py     data pipelines: augmented images per second per worker, every preset
3. bench_gpu_augment.py batched device-side augmentation vs the CPU pipeline
4. bench_metrics.py     every embedding metric at N = 50,000 (seconds, peak extra memory)
5. bench_linear.py      linear evaluation: paper protocol vs cached features
6. bench_epoch.py       a whole epoch (loader, steps, metrics, checkpoints) vs a bare loop (ratio)
7. bench_log.py         what one self.log call in the training step costs (CPU)

Each runs in its own process (its own memory peak, its own thread pool); a failure is reported
and the others still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run, not the reported figures")
    parser.add_argument("--only", nargs="+", default=None, help="names of the benchmarks to run (e.g. step metrics)")
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    quick = args.quick
    plan = {
        "step": ["bench_step.py", "--device", args.device, "--hard"] + (["--steps", "2", "--warmup", "1", "--rounds", "1"] if quick else []),
        "augment": ["bench_augment.py"] + (["--seconds", "0.5"] if quick else []),
        "gpu_augment": ["bench_gpu_augment.py", "--device", args.device] + (["--iters", "3"] if quick else []),
        "metrics": ["bench_metrics.py", "--device", args.device] + (["--n", "5000", "--pdist-n", "2000",
                                                                     "--test-n", "1000"] if quick else []),
        "linear": ["bench_linear.py", "--device", args.device] + (["--n-train", "300", "--long", "2",
                                                                   "--cached-long", "6"] if quick else []),
        "epoch": ["bench_epoch.py", "--device", "gpu" if args.device == "cuda" else "cpu"]
        + (["--epochs", "2", "--recipes", "cpu", "--train", "512", "--test", "128"] if quick else []),
        "log": ["bench_log.py"] + (["--steps", "50", "--rounds", "1"] if quick else []),
    }
    failures = []
    for name, command in plan.items():
        if args.only and name not in args.only:
            continue
        print(f"\n## {name}: python benchmarks/{' '.join(command)}\n", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], cwd=HERE.parent)
        print(f"\n({name}: {time.perf_counter() - start:.0f} s wall)", flush=True)
        if proc.returncode:
            failures.append(name)
    if failures:
        print(f"\nfailed: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
