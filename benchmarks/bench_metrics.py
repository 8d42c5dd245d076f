"""Time and memory of each embedding metric at CIFAR scale, one fresh process per metric.

    python benchmarks/bench_metrics.py --n 50000 --dim 128 --device cpu --pdist-n 10000

Data: N random unit vectors (d = --dim) with 10 labels; a second view ``normalize(z + 0.1 noise)``
for alignment; --test-n further points as kNN queries. Each metric runs in its own
subprocess: inputs are built, a small warm-up call initialises the kernels, then the peak
resident set is reset (``/proc/self/clear_refs``; else the ``ru_maxrss`` high-water mark
is used, which can under-count) and the metric is timed once. "Peak extra" is the peak RSS
during the call minus the RSS before it: the metric's own working memory, inputs excluded.
On CUDA the device's peak allocation is reported as well. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METRICS = ["uniformity", "tolerance", "alignment", "pos_top10", "knn", "uniformity_small", "pdist_small"]
DESCRIPTION = {
    "uniformity": "uniformity (ours, exact, chunked)",
    "tolerance": "tolerance (per-class sums)",
    "alignment": "alignment",
    "pos_top10": "positive + top-10 negatives (queries = keys = N)",
    "knn": "weighted kNN (k 200, train N, test {test_n})",
    "uniformity_small": "uniformity (ours, exact, chunked)",
    "pdist_small": "uniformity, naive `torch.pdist`",
}


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def _reset_peak() -> bool:
    """Reset the kernel's high-water mark of this process (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_kib(reset_ok: bool) -> int:
    if reset_ok:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; a lifetime maximum


def worker(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    # callbacks/metrics.py needs torch only; loading it by path skips the package's __init__
    # (Lightning, datamodules), which would only add start-up time to every subprocess
    spec = importlib.util.spec_from_file_location("bench_metrics_target", ROOT / "callbacks" / "metrics.py")
    M = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(M)

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    n = args.pdist_n if args.worker.endswith("_small") else args.n

    def unit(rows: int) -> torch.Tensor:
        return F.normalize(torch.randn(rows, args.dim, generator=g), dim=1).to(device)

    z = unit(n)  # (N, d)
    labels = torch.randint(0, 10, (n,), generator=g).to(device)
    extra: dict[str, torch.Tensor] = {}
    if args.worker == "alignment":
        extra["z2"] = F.normalize(z + 0.1 * torch.randn(n, args.dim, generator=g).to(device), dim=1)
    if args.worker == "knn":
        extra["test_z"] = unit(args.test_n)
        extra["test_y"] = torch.randint(0, 10, (args.test_n,), generator=g).to(device)
    arange = torch.arange(n, device=device)

    def call(m: int) -> object:  # the metric on the first m points (m = n: the timed run)
        zz, yy = z[:m], labels[:m]
        if args.worker in ("uniformity", "uniformity_small"):
            return -M.uniformity(zz)
        if args.worker == "pdist_small":
            return -torch.exp(-2.0 * torch.pdist(zz).square()).mean().log()
        if args.worker == "tolerance":
            return M.tolerance(zz, yy)
        if args.worker == "alignment":
            return M.alignment(zz, extra["z2"][:m])
        if args.worker == "pos_top10":
            pos, negs = M.positive_and_topk_similarities(zz, zz, arange[:m], k=10)
            return torch.cat([pos.view(1), negs])
        if args.worker == "knn":
            q = min(m, args.test_n)
            return M.knn_accuracy(zz, yy, extra["test_z"][:q], extra["test_y"][:q], k=200, sigma=0.07, num_classes=10)
        raise ValueError(f"unknown metric {args.worker}")

    call(min(n, 1000))  # warm-up: thread pools, kernel dispatch, allocator
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    rss_before = _rss_kib()
    reset_ok = _reset_peak()
    start, cpu_start = time.perf_counter(), time.process_time()
    value = call(n)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    out = {
        "metric": args.worker,
        "n": n,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "extra_mib": max(0, _peak_kib(reset_ok) - rss_before) / 1024,
        "peak_exact": reset_ok,
        "value": torch.as_tensor(value).flatten()[:3].tolist(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        out["cuda_extra_mib"] = (torch.cuda.max_memory_allocated() - cuda_before) / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="points (CIFAR's training split: 50,000)")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--pdist-n", type=int, default=10_000, help="N of the naive torch.pdist comparison")
    parser.add_argument("--test-n", type=int, default=10_000, help="kNN queries (CIFAR's test split: 10,000)")
    parser.add_argument("--metrics", nargs="+", choices=METRICS, default=METRICS, help="which to run")
    parser.add_argument("--worker", choices=METRICS, help=argparse.SUPPRESS)  # internal: one metric, JSON out
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    load_before = os.getloadavg()[0]
    rows = []
    for metric in args.metrics:
        cmd = [sys.executable, __file__, "--worker", metric, "--n", str(args.n), "--dim", str(args.dim),
               "--device", args.device, "--pdist-n", str(args.pdist_n), "--test-n", str(args.test_n)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"{metric} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            rows.append({"metric": metric, "failed": True})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    cuda = args.device.startswith("cuda")
    header = "| metric | N | seconds | CPU seconds | peak extra RSS (MiB) |" + (" peak extra CUDA (MiB) |" if cuda else "") + " value |"
    print(f"\nd = {args.dim}, device = {args.device}, torch threads = {rows[0].get('threads', '?')}, "
          f"1-min load average {load_before:.2f} before and {os.getloadavg()[0]:.2f} after "
          f"(a load well above 0 before the run: other processes shared the CPUs, and CPU seconds are the steadier figure)\n")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        name = DESCRIPTION[row["metric"]].format(test_n=args.test_n)
        if row.get("failed"):
            print(f"| {name} | | failed | | |" + (" |" if cuda else "") + " |")
            continue
        value = ", ".join(f"{v:.4f}" for v in row["value"])
        cells = f"| {name} | {row['n']:,} | {row['seconds']:.2f} | {row['cpu_seconds']:.2f} | {row['extra_mib']:.0f}"
        cells += "" if row["peak_exact"] else " (ru_maxrss)"
        cells += f" | {row['cuda_extra_mib']:.0f}" if cuda else ""
        print(f"{cells} | {value} |")
    full = [r for r in rows if not r.get("failed") and not r["metric"].endswith("_small")]
    if full:
        total, cpu_total = sum(r["seconds"] for r in full), sum(r["cpu_seconds"] for r in full)
        print(f"| **all metrics at N = {args.n:,}** | | **{total:.2f}** | **{cpu_total:.2f}** "
              f"| **{max(r['extra_mib'] for r in full):.0f}** (max)"
              + (" |" if cuda else "") + " |")


if __name__ == "__main__":
    main()
