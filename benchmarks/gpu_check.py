"""One-go GPU check: CUDA tests, no host sync in the step, pretraining throughput, a ResNet-18 grid.

    bash benchmarks/gpu_check.sh --out results/gpu           # on a machine with one CUDA GPU (~8 min)
    bash benchmarks/gpu_check.sh --tiny --out /tmp/gpu_tiny   # the same code paths on a CPU in ~1 min

Four parts, each timed and recorded even when another fails (the exit code is 1 if any did):

1. ``cuda_tests``: the test suite's CUDA tests (``CUDA_TESTS``; with ``--tiny``, only collected).
2. ``sync``: three training steps (embed, negatives, loss, backward, SGD step, bank/queue update)
   of every loss with every source of negatives under ``torch.cuda.set_sync_debug_mode("error")``,
   so any operation that waits for the GPU raises. On a CPU the steps run without that check.
3. ``throughput``: ResNet-18 (CIFAR stem) pretraining steps at 32x32 against a 50,000-entry
   memory bank with device-side augmentation of uint8 batches copied from pinned host memory, for
   fp32/bf16, channels_last and ``torch.compile``: images/s of each, the best one named.
4. ``grid``: ResNet-18 on the repository's real CIFAR-10 images (``tests/data``), one short
   pretraining per cell within a shared time budget; each cell's last -L_uniformity, tolerance,
   centroid norm and kNN accuracy, and whether the paper's orderings hold.

Writes ``<out>/gpu_check.json`` (everything) and ``<out>/summary.md`` (the tables). Needs torch,
torchvision, pytorch-lightning and torchmetrics; not jsonargparse or wandb (it builds the modules
in Python, so a machine without them can run it).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datamodules.gpu_augment import DeviceAugmentation  # noqa: E402
from lightning_modules.contrastive import ContrastiveModule  # noqa: E402
from lightning_modules.encoders import ResNetEncoder, SmallConvEncoder  # noqa: E402
from lightning_modules.losses import (ContrastiveLoss, HardContrastiveLoss, HardSimpleContrastiveLoss,  # noqa: E402
                                      SimpleContrastiveLoss)
from lightning_modules.negatives import InBatchNegatives, MemoryBank, MomentumQueue  # noqa: E402

LOSSES: dict[str, Callable[[], torch.nn.Module]] = {
    "contrastive": lambda: ContrastiveLoss(0.07),
    "simple": lambda: SimpleContrastiveLoss(),
    "hard_contrastive": lambda: HardContrastiveLoss(0.07, alpha=0.0819),
    "hard_simple": lambda: HardSimpleContrastiveLoss(alpha=0.0819),
}
SOURCES: dict[str, Callable[[int], torch.nn.Module]] = {
    "memory_bank": lambda dim: MemoryBank(dim=dim),
    "in_batch": lambda dim: InBatchNegatives(),
    "momentum_queue": lambda dim: MomentumQueue(queue_size=1024, dim=dim),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def encoder(tiny: bool) -> torch.nn.Module:
    return SmallConvEncoder(width=8) if tiny else ResNetEncoder("resnet18", cifar_stem=True)


def step(module: ContrastiveModule, optimizer: torch.optim.Optimizer, index: torch.Tensor,
         views: list[torch.Tensor]) -> torch.Tensor:
    """One pretraining step as ContrastiveModule.training_step does it, without Lightning's loop."""
    loss = module.loss(module.negatives(module.embed, index, views))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    module.negatives.update()
    return loss.detach()


# ------------------------------------------------------------------------ 1. CUDA tests
#: the tests that skip without CUDA
CUDA_TESTS = ("tests/test_gpu_augment.py::test_no_host_sync_on_cuda", "tests/test_metrics.py::test_metrics_on_gpu_match_cpu")


def cuda_tests(opts: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *CUDA_TESTS]
    if opts.tiny:
        cmd.append("--collect-only")  # on a CPU they would only skip: check that they are found
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=opts.budget_tests)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
    if proc.returncode != 0 or (opts.tiny and f"{len(CUDA_TESTS)} tests collected" not in proc.stdout):
        raise RuntimeError("CUDA tests failed:\n" + "\n".join(tail))
    return {"command": " ".join(cmd[2:]), "summary": tail[-1] if tail else ""}


# ------------------------------------------------------------------------ 2. no host sync
def sync_check(opts: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(opts.device)
    batch, bank = (16, 256) if opts.tiny else (256, 50_000)
    results = {}
    for loss_name, make_loss in LOSSES.items():
        for source_name, make_source in SOURCES.items():
            torch.manual_seed(0)
            enc = encoder(opts.tiny)
            module = ContrastiveModule(encoder=enc, loss=make_loss(), negatives=make_source(enc.out_dim),
                                       num_samples=bank).to(device)
            optimizer = torch.optim.SGD(module.parameters(), lr=0.03, momentum=0.9)
            views_n = module.negatives.num_views
            index = torch.randperm(bank, device=device)[:batch]
            views = [torch.randn(batch, 3, 32, 32, device=device) for _ in range(views_n)]
            step(module, optimizer, index, views)  # warm-up: lazy initialisation may sync once
            sync(device)
            checked = device.type == "cuda"
            if checked:
                torch.cuda.set_sync_debug_mode("error")
            try:
                for _ in range(3):
                    loss = step(module, optimizer, index, views)
            finally:
                if checked:
                    torch.cuda.set_sync_debug_mode("default")
            value = float(loss)  # after the check: reading the loss back is allowed here
            if value != value:
                raise FloatingPointError(f"{loss_name} + {source_name}: non-finite loss")
            results[f"{loss_name}+{source_name}"] = {"loss": value, "sync_checked": checked}
    return {"steps": results, "all_sync_checked": all(r["sync_checked"] for r in results.values())}


# ------------------------------------------------------------------------ 3. throughput
def throughput(opts: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(opts.device)
    cuda = device.type == "cuda"
    batch, bank, steps, warmup = (16, 256, 2, 1) if opts.tiny else (512, 50_000, 30, 10)
    combos = [("fp32", False, False), ("bf16", False, False), ("bf16", True, False), ("fp32", True, False),
              ("bf16", True, True)]
    if opts.tiny:  # compile on a CPU costs minutes (tests/test_options.py covers it); the rest, briefly
        combos = [("fp32", False, False), ("bf16", True, False)]
    host = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    if cuda:
        host = host.pin_memory()
    rows = []
    for precision, channels_last, compiled in combos:
        torch.manual_seed(0)
        if cuda:
            torch.cuda.empty_cache()
        module = ContrastiveModule(encoder=encoder(opts.tiny), loss=ContrastiveLoss(0.07), negatives=MemoryBank(),
                                   num_samples=bank, channels_last=channels_last, compile=compiled).to(device)
        optimizer = torch.optim.SGD(module.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
        augment = DeviceAugmentation().to(device)
        index = torch.randperm(bank, device=device)[:batch]
        start = None
        compile_s = None
        t0 = time.perf_counter()
        for i in range(warmup + steps):
            if i == 1 and compile_s is None:
                sync(device)
                compile_s = time.perf_counter() - t0  # the first step: compilation when compiled
            if i == warmup:
                sync(device)
                start = time.perf_counter()
            images = augment(host.to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                step(module, optimizer, index, [images])
        sync(device)
        seconds = time.perf_counter() - start
        rows.append({"precision": precision, "channels_last": channels_last, "compile": compiled,
                     "images_per_s": batch * steps / seconds, "first_step_s": compile_s, "batch": batch,
                     "steps": steps})
    best = max(rows, key=lambda r: r["images_per_s"])
    return {"rows": rows, "best": best, "model": type(encoder(opts.tiny)).__name__, "bank": bank}


# ------------------------------------------------------------------------ 4. ResNet-18 grid
GRID = [("contrastive_tau0.07", lambda: ContrastiveLoss(0.07)), ("contrastive_tau0.2", lambda: ContrastiveLoss(0.2)),
        ("contrastive_tau1.0", lambda: ContrastiveLoss(1.0)),
        ("hard_contrastive_tau0.07", lambda: HardContrastiveLoss(0.07, alpha=0.0819)),
        ("simple", lambda: SimpleContrastiveLoss())]


def grid(opts: argparse.Namespace) -> dict[str, Any]:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from callbacks.embedding_metrics import EmbeddingMetrics
    from datamodules.cifar import CIFAR10DataModule
    from tests.fakedata import write_cifar10

    cuda = torch.device(opts.device).type == "cuda"
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    n_train, n_test = (128, 64) if opts.tiny else (None, None)
    data_dir = write_cifar10(work / "data", n_train=n_train, n_test=n_test)
    per_cell = opts.budget_grid / len(GRID)
    cells = {}
    for name, make_loss in GRID:
        pl.seed_everything(0, verbose=False)
        dm = CIFAR10DataModule(str(data_dir), verify_checksums=False, batch_size=16 if opts.tiny else 128,
                               eval_batch_size=512, num_workers=0, device_augmentation=True, download=False)
        module = ContrastiveModule(encoder=encoder(opts.tiny), loss=make_loss(), negatives=MemoryBank(),
                                   num_samples=dm.num_train_samples, channels_last=cuda)
        trainer = pl.Trainer(accelerator="gpu" if cuda else "cpu", devices=1,
                             precision="bf16-mixed" if cuda else "32-true",
                             max_epochs=2 if opts.tiny else 400, max_time={"seconds": per_cell},
                             logger=CSVLogger(work / "runs", name=name), enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                             num_sanity_val_steps=0, use_distributed_sampler=False, log_every_n_steps=10,
                             callbacks=[EmbeddingMetrics(plot=False, knn_k=20 if opts.tiny else 200)])
        start = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        rows = list(csv.DictReader(open(Path(trainer.logger.log_dir) / "metrics.csv")))
        last = [r for r in rows if r.get("val/uniformity")][-1]
        cells[name] = {"epochs": int(last["epoch"]) + 1, "steps": trainer.global_step,
                       "seconds": time.perf_counter() - start,
                       **{k: float(last[f"val/{k}"]) for k in ("uniformity", "tolerance", "centroid_norm", "knn_top1")}}
    u = {k: v["uniformity"] for k, v in cells.items()}
    t = {k: v["tolerance"] for k, v in cells.items()}
    claims = {
        "uniformity falls as tau rises (0.07 > 0.2 > 1.0)":
            u["contrastive_tau0.07"] > u["contrastive_tau0.2"] > u["contrastive_tau1.0"],
        "tolerance rises with tau (0.07 < 0.2 < 1.0)":
            t["contrastive_tau0.07"] < t["contrastive_tau0.2"] < t["contrastive_tau1.0"],
        "simple is the least uniform": u["simple"] == min(u.values()),
    }
    return {"cells": cells, "claims": claims, "train_images": dm.num_train_samples, "budget_s": opts.budget_grid}


# ------------------------------------------------------------------------ report
def summary(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [f"# GPU check ({'tiny, ' if result['tiny'] else ''}{env['device_name']}, torch {env['torch']})", ""]
    for part, info in result["parts"].items():
        lines.append(f"- {part}: {info['status']} in {info['seconds']:.1f} s" +
                     (f" — {info['error'].splitlines()[0]}" if info["status"] != "ok" else ""))
    tp = result["parts"].get("throughput", {}).get("result")
    if tp:
        lines += ["", f"## Pretraining throughput ({tp['model']}, 32x32, bank {tp['bank']}, device augmentation)", "",
                  "| precision | channels_last | compile | images/s | first step (s) |", "|---|---|---|---|---|"]
        for r in tp["rows"]:
            lines.append(f"| {r['precision']} | {r['channels_last']} | {r['compile']} | {r['images_per_s']:,.0f} | "
                         f"{r['first_step_s']:.1f} |")
        b = tp["best"]
        lines.append(f"\nBest: {b['precision']}, channels_last={b['channels_last']}, compile={b['compile']}: "
                     f"{b['images_per_s']:,.0f} images/s.")
    sc = result["parts"].get("sync", {}).get("result")
    if sc:
        how = "checked with set_sync_debug_mode('error')" if sc["all_sync_checked"] else "ran (no CUDA: not checked)"
        lines += ["", f"## No host sync in the step: {len(sc['steps'])} loss x source pairs, {how}"]
    gr = result["parts"].get("grid", {}).get("result")
    if gr:
        lines += ["", f"## Grid on {gr['train_images']} real CIFAR-10 images ({gr['budget_s']:.0f} s in all)", "",
                  "| cell | epochs | steps | -L_uniformity | tolerance | centroid norm | kNN top-1 |",
                  "|---|---|---|---|---|---|---|"]
        for name, c in gr["cells"].items():
            lines.append(f"| {name} | {c['epochs']} | {c['steps']} | {c['uniformity']:.3f} | {c['tolerance']:.3f} | "
                         f"{c['centroid_norm']:.3f} | {c['knn_top1']:.3f} |")
        lines += [""] + [f"- {claim}: {'holds' if ok else 'does not hold'}" for claim, ok in gr["claims"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and summary.md")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: the same code paths in about a minute")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", default="cuda_tests,sync,throughput,grid")
    parser.add_argument("--budget-grid", type=float, default=None, help="seconds for the whole grid")
    parser.add_argument("--budget-tests", type=float, default=180)
    opts = parser.parse_args(argv)
    if opts.budget_grid is None:
        opts.budget_grid = 30.0 if opts.tiny else 240.0
    if not opts.tiny and not torch.cuda.is_available():
        parser.error("no CUDA device here: run with --tiny for the CPU dry run")
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    parts = {"cuda_tests": cuda_tests, "sync": sync_check, "throughput": throughput, "grid": grid}
    chosen = [p.strip() for p in opts.parts.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(parts))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {sorted(parts)}")
    result: dict[str, Any] = {
        "tiny": opts.tiny,
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "device_name": torch.cuda.get_device_name() if opts.device.startswith("cuda") else "CPU"},
        "parts": {}}
    opts.out.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        start = time.perf_counter()
        try:
            value, status, error = parts[name](opts), "ok", ""
        except Exception:  # recorded; the other parts still run
            value, status, error = None, "failed", traceback.format_exc()
        result["parts"][name] = {"status": status, "seconds": time.perf_counter() - start, "result": value,
                                 "error": error}
        print(f"[gpu_check] {name}: {status} ({time.perf_counter() - start:.1f} s)", flush=True)
        (opts.out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    text = summary(result)
    (opts.out / "summary.md").write_text(text)
    print(text)
    return 0 if all(p["status"] == "ok" for p in result["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
