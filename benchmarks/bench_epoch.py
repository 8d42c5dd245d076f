"""An epoch of the suite against a bare PyTorch loop doing the same augmentation and training steps.

    python benchmarks/bench_epoch.py                      # the CPU recipe, then the ResNet-18 recipe (few steps)
    OMP_NUM_THREADS=1 python benchmarks/bench_epoch.py --recipes cpu --data-dir data/cifar10

Each recipe is built by ``cli.py`` exactly as ``fit`` builds it (its YAML files, every
callback, the metrics every epoch on the whole test split, checkpoints) and trained for
``--epochs`` epochs. With ``--block 1``, before every epoch a callback (the first in the list,
so nothing of the suite's runs during it) times one epoch of a bare loop: the same uint8 images in memory,
a random order, the device augmentation of ``num_views`` views, the module's encoder, negatives'
source and loss (copies, so the suite's training is not touched), backward, SGD and the bank
update, without Lightning, loaders or metrics. The suite's epoch is the wall time from the end
of that bare epoch to the start of the next one (the last one ends at ``on_train_end``): its
steps, augmentation, loader, logging, metrics and checkpoints. Epoch 0 (warm-up) is left out;
the ratio of every later epoch is printed with the min and median, since bare and suite
alternate and see the same machine load.

``--block K`` (5 by default) alternates blocks of K epochs instead: K bare epochs, then K suite epochs back
to back (the last block may be shorter). That is the measure where the metrics overlap
(``EmbeddingMetrics(overlap=...)``, on by default where the steps leave a core idle, as
with ``OMP_NUM_THREADS=1``: an epoch's metrics run on another thread while the next epoch
trains), whose work would otherwise run during the bare epoch: before each
bare block the metrics under way are waited for (``EmbeddingMetrics.wait``), inside the
suite's block, so a block of K suite epochs pays for one metrics pass outside the overlap.

CPU seconds are also printed: the training process's (both sides), and separately those of
the worker processes that augment the metrics' views in the background (``prefetch_views``),
counted when they end, over all epochs.

``--profile`` adds where the suite's epoch goes: Lightning's simple profiler with its clock
switched to the training process's CPU time (``time.process_time``, so other load on the
machine does not enter), averaged over epochs 1.. (the bare epochs are left out).

The data: ``--data-dir`` (CIFAR-10 python format), else the repository's 1,000 + 200 real
images of ``tests/data`` repeated to the recipe's sizes in a temporary folder (a repeated
image costs the same).
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
from pytorch_lightning.profilers import SimpleProfiler  # noqa: E402

#: recipe -> (extra YAML files after configs/base.yaml, extra flags, train images, test images)
RECIPES = {
    "cpu": (["configs/experiments/cpu_reproduction.yaml"], [], 4000, 1000),
    # the paper's ResNet-18 recipe with the device augmentation; on a CPU a few steps per epoch
    "resnet18": ([], ["--data.init_args.device_augmentation=true"], None, None),
}
#: the recipes' loader workers on a CPU (the training images are in memory; the metrics' views get one worker)
CPU_WORKERS = {
    "cpu": None,
    "resnet18": 0,
}


#: epochs of each recipe unless --epochs says (two blocks of 5 after the warm-up; ResNet-18 steps are slow on a CPU)
DEFAULT_EPOCHS = {"cpu": 11, "resnet18": 4}


class CPUTimeProfiler(SimpleProfiler):
    """Lightning's simple profiler timing each action in CPU seconds of this process."""

    def start(self, action_name: str) -> None:
        super().start(action_name)
        self.current_actions[action_name] = time.process_time()

    def stop(self, action_name: str) -> None:
        end = time.process_time()
        self.recorded_durations[action_name].append(end - self.current_actions.pop(action_name))

    def totals(self) -> dict[str, float]:
        return {name: sum(durations) for name, durations in self.recorded_durations.items()}


#: the profile's rows: (label, the profiler's action names whose CPU time it sums)
PROFILE_ROWS = [
    ("`run_training_batch` (forward, backward, optimiser, bank update)", ["run_training_batch"]),
    ("`on_after_batch_transfer` (the device augmentation)", ["on_after_batch_transfer"]),
    ("`train_dataloader_next` (reading the uint8 batches)", ["train_dataloader_next"]),
    ("`EmbeddingMetrics.on_train_epoch_end` (the metrics pass, checkpoints first)",
     ["[Callback]EmbeddingMetrics.on_train_epoch_end"]),
]


class Interleave(pl.Callback):
    """Before every block of ``block`` suite epochs (and epoch 0), as many bare epochs; records wall and CPU times."""

    def __init__(self, steps: int | None, block: int = 1) -> None:
        self.steps = steps
        self.block = block
        self.sizes: list[int] = []  # epochs in each block (the first, epoch 0, is warm-up)
        self.suite: list[float] = []
        self.bare: list[float] = []
        self.suite_cpu: list[float] = []
        self.bare_cpu: list[float] = []
        self.metrics: list[float] = []  # wall s of EmbeddingMetrics.on_train_epoch_end, each epoch
        self.metrics_cpu: list[float] = []
        self._start: tuple[float, float] | None = None
        self._bare: dict | None = None
        self.profile_from: dict[str, float] | None = None  # the profiler's totals when epoch 1 starts

    def time_metrics(self, callback: pl.Callback) -> None:
        """Time ``callback.on_train_epoch_end`` (the metrics pass) inside each suite epoch."""
        inner = callback.on_train_epoch_end

        def timed(trainer: pl.Trainer, module: pl.LightningModule) -> None:
            start = self._now(module.device)
            inner(trainer, module)
            end = self._now(module.device)
            self.metrics.append(end[0] - start[0])
            self.metrics_cpu.append(end[1] - start[1])

        callback.on_train_epoch_end = timed

    def _bare_setup(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        images = getattr(loader.dataset, "images", None)  # the uint8 pixels the suite's loader reads (InMemoryImages)
        if images is None:  # a loader reading image by image: the same pixels, stacked once
            images = torch.stack([loader.dataset[i][1] for i in range(len(loader.dataset))])
        encoder = copy.deepcopy(module.encoder)
        negatives = copy.deepcopy(module.negatives)
        params = list(encoder.parameters()) + [p for p in negatives.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=0.03, momentum=0.9, weight_decay=5e-4)
        self._bare = dict(images=images.to(module.device), encoder=encoder, negatives=negatives, loss=module.loss,
                          optimizer=optimizer, augment=trainer.datamodule._device_aug,
                          num_views=trainer.datamodule.num_views, batch=loader.batch_size, device=module.device)

    def _bare_epoch(self) -> None:
        from lightning_modules.contrastive import as_record

        b = self._bare
        encoder, negatives, optimizer = b["encoder"], b["negatives"], b["optimizer"]
        encoder.train()

        def embed(x: torch.Tensor) -> torch.Tensor:
            return F.normalize(encoder(x).float(), dim=1)

        order = torch.randperm(len(b["images"]), device=b["device"])
        starts = range(0, len(order), b["batch"])
        for step, start in enumerate(starts):
            if self.steps is not None and step >= self.steps:
                break
            index = order[start:start + b["batch"]]  # (B,)
            views = [b["augment"](b["images"][index]) for _ in range(b["num_views"])]  # each (B, 3, s, s)
            sims = as_record(negatives(embed, index, views))  # as the module's training step: a Similarities record
            loss = b["loss"](sims)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            negatives.update()
        if b["device"].type == "cuda":
            torch.cuda.synchronize()

    def _now(self, device: torch.device) -> tuple[float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from callbacks.embedding_metrics import EmbeddingMetrics

        epoch = trainer.current_epoch
        if epoch > 0 and (epoch - 1) % self.block:
            return  # inside a block: the suite's epochs run back to back
        for callback in trainer.callbacks:  # the metrics still under way on another thread belong to the suite's block
            if isinstance(callback, EmbeddingMetrics):
                callback.wait(trainer)
        now = self._now(pl_module.device)
        if self._start is not None:
            self.suite.append(now[0] - self._start[0])
            self.suite_cpu.append(now[1] - self._start[1])
        if self._bare is None:
            self._bare_setup(trainer, pl_module)
        if epoch == 1 and isinstance(trainer.profiler, CPUTimeProfiler):
            self.profile_from = trainer.profiler.totals()
        size = 1 if epoch == 0 else min(self.block, trainer.max_epochs - epoch)
        self.sizes.append(size)
        with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else []):
            for _ in range(size):
                self._bare_epoch()
        after = self._now(pl_module.device)
        self.bare.append(after[0] - now[0])
        self.bare_cpu.append(after[1] - now[1])
        self._start = self._now(pl_module.device)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = self._now(pl_module.device)
        self.suite.append(now[0] - self._start[0])
        self.suite_cpu.append(now[1] - self._start[1])


def write_data(folder: Path, n_train: int, n_test: int) -> Path:
    from tests.fakedata import write_cifar10

    return write_cifar10(folder, n_train=n_train, n_test=n_test, cycle=True)


def run_recipe(name: str, opts: argparse.Namespace, work: Path) -> dict:
    import cli

    configs, flags, n_train, n_test = RECIPES[name]
    steps = (opts.resnet_steps or None) if name == "resnet18" else None
    epochs = opts.epochs or DEFAULT_EPOCHS[name]
    if name == "resnet18":
        n_train = opts.train or (steps * 128 if steps else 50_000)
        n_test = opts.test or (256 if steps else 10_000)
    else:
        n_train, n_test = opts.train or n_train, opts.test or n_test
    data_dir = Path(opts.data_dir) if opts.data_dir else write_data(work / f"data_{name}", n_train, n_test)
    out = work / f"runs_{name}"
    args = ["fit", "-c", str(ROOT / "configs/base.yaml")]
    for config in configs:
        args += ["-c", str(ROOT / config)]
    args += ["-c", str(ROOT / "configs/logger/csv.yaml"), *flags,
             f"--data.init_args.data_dir={data_dir}", "--data.init_args.verify_checksums=false",
             f"--data.init_args.train_subset={n_train}", f"--data.init_args.test_subset={n_test}",
             f"--trainer.default_root_dir={out}", f"--trainer.logger.init_args.save_dir={out}",
             f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
             "--trainer.enable_model_summary=false"]
    if opts.device:
        args.append(f"--trainer.accelerator={opts.device}")
    workers = opts.workers
    if workers is None and (opts.device or "cpu") == "cpu":
        workers = CPU_WORKERS[name]
    if workers is not None:
        args.append(f"--data.init_args.num_workers={workers}")
    if steps:
        args.append(f"--trainer.limit_train_batches={steps}")
    if opts.views_on_device:
        args.append("--trainer.callbacks.init_args.views_on_device=true")
    sys.argv = sys.argv[:1]  # LightningCLI reads no option of this script
    if opts.overlap != "auto":
        args.append(f"--trainer.callbacks.init_args.overlap={opts.overlap}")
    run = cli.main(args[1:], run=False)
    timer = Interleave(steps, opts.block)
    run.trainer.callbacks.insert(0, timer)
    from callbacks.embedding_metrics import EmbeddingMetrics

    for callback in run.trainer.callbacks:
        if isinstance(callback, EmbeddingMetrics):
            timer.time_metrics(callback)
    if opts.profile:
        run.trainer.profiler = CPUTimeProfiler()
    children = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
    run.trainer.fit(run.model, datamodule=run.datamodule)
    profile = None
    if opts.profile and timer.profile_from is not None:
        profile = {k: v - timer.profile_from.get(k, 0.0) for k, v in run.trainer.profiler.totals().items()}
    run.trainer.callbacks.clear()  # the metrics' loaders go, and their workers end (and are counted)
    import gc

    gc.collect()
    workers_cpu = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2]) - children
    ratios = [s / b for s, b in zip(timer.suite[1:], timer.bare[1:])]
    return dict(recipe=name, steps=len(run.trainer.train_dataloader) if steps is None else steps,
                sizes=timer.sizes, suite=timer.suite, bare=timer.bare, suite_cpu=timer.suite_cpu, bare_cpu=timer.bare_cpu,
                metrics=timer.metrics, metrics_cpu=timer.metrics_cpu,
                ratios=ratios, workers_cpu=workers_cpu, profile=profile)


def report_profile(result: dict) -> None:
    """Seconds of the training process's CPU an epoch, by part, over epochs 1.. of the suite."""
    epochs = sum(result["sizes"][1:])
    profile = result["profile"]
    epoch = sum(result["suite_cpu"][1:]) / epochs
    steps = sum(result["bare_cpu"][1:]) / epochs
    print(f"\nwhere the suite's epoch goes: CPU s of the training process an epoch, epochs 1..{epochs}")
    print("| part | CPU s an epoch | share |")
    print("|---|---:|---:|")
    listed = 0.0
    for label, names in PROFILE_ROWS:
        seconds = sum(v for k, v in profile.items() if any(k == n or k.endswith("." + n) for n in names)) / epochs
        listed += seconds
        print(f"| {label} | {seconds:.2f} | {seconds / epoch:.0%} |")
    print(f"| the rest of the epoch (Lightning's loop and logging, other callbacks) | {epoch - listed:.2f} | "
          f"{(epoch - listed) / epoch:.0%} |")
    print(f"| the suite's epoch / the bare loop's (augmentation + steps) | {epoch:.2f} / {steps:.2f} = "
          f"{epoch / steps:.2f} | |")


def report(result: dict) -> None:
    sizes = result["sizes"]
    print(f"\n== {result['recipe']} recipe: {result['steps']} steps an epoch, {sum(sizes)} epochs "
          "(epoch 0 is warm-up) ==")
    print("| epochs | bare s | suite s | ratio | of which metrics s | bare CPU s | suite CPU s | of which metrics CPU s "
          "| CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = zip(sizes, result["bare"], result["suite"], result["bare_cpu"], result["suite_cpu"])
    first = 0
    for size, b, s, bc, sc in rows:  # "of which metrics": the metrics' time on the training thread
        m, mc = sum(result["metrics"][first:first + size]), sum(result["metrics_cpu"][first:first + size])
        label = str(first) if size == 1 else f"{first}-{first + size - 1}"
        print(f"| {label} | {b:.2f} | {s:.2f} | {s / b:.3f} | {m:.2f} | {bc:.2f} | {sc:.2f} | {mc:.2f} | {sc / bc:.3f} |")
        first += size
    r = result["ratios"]
    if r:
        cpu = [s / b for s, b in zip(result["suite_cpu"][1:], result["bare_cpu"][1:])]
        unit = "epochs" if max(sizes[1:]) == 1 else "blocks of epochs"
        print(f"ratio suite / bare over the {unit} 1..: min {min(r):.3f}, median {statistics.median(r):.3f}, "
              f"all together {sum(result['suite'][1:]) / sum(result['bare'][1:]):.3f} "
              f"(CPU time of the training process, its threads together: min {min(cpu):.3f}, "
              f"median {statistics.median(cpu):.3f})")
    print(f"CPU of the metrics' background workers, all epochs: {result['workers_cpu']:.2f} s")
    if result.get("profile") is not None:
        report_profile(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="cpu,resnet18", help="comma-separated: cpu, resnet18")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per recipe, the first a warm-up (default: cpu 11, resnet18 4)")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 python-format folder; default: tests/data repeated")
    parser.add_argument("--device", default=None, help="trainer accelerator (cpu, gpu); default: the recipe's")
    parser.add_argument("--resnet-steps", type=int, default=3,
                        help="ResNet-18 steps an epoch (batch 128); 0: whole epochs (on a GPU)")
    parser.add_argument("--train", type=int, default=None,
                        help="training images (default: cpu 4,000; resnet18 steps x 128, or 50,000 with whole epochs)")
    parser.add_argument("--test", type=int, default=None,
                        help="test images, the metrics' split (default: cpu 1,000; resnet18 256, or 10,000 with whole epochs)")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the recipe's)")
    parser.add_argument("--views-on-device", action="store_true",
                        help="EmbeddingMetrics(views_on_device=true): the test views from the device augmentation")
    parser.add_argument("--overlap", choices=["auto", "true", "false"], default="auto",
                        help="EmbeddingMetrics' overlap (an epoch's metrics on another thread while the next trains): "
                             "auto, the callback's own choice (on where the steps leave a core idle), or true / false")
    parser.add_argument("--block", type=int, default=5,
                        help="bare and suite epochs alternate in blocks of this many (1: epoch by epoch; more "
                             "where the metrics overlap, which a bare epoch would otherwise run beside)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where the suite's epoch goes (CPU time by part, Lightning's profiler)")
    opts = parser.parse_args(argv)
    if opts.block < 1:
        parser.error(f"--block must be >= 1, got {opts.block}")
    os.environ.setdefault("WANDB_MODE", "disabled")
    names = [n.strip() for n in opts.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {sorted(RECIPES)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            report(run_recipe(name, opts, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
