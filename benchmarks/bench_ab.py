"""The training step of this tree against a git revision's, alternating in ONE process (A/B).

    python benchmarks/bench_ab.py --ref main --batch 128 --bank 50000 --rounds 20

A shared machine's load drifts by tens of percent between processes; here both versions run in
the same process, one short block of steps each, in alternation (ABBA), so a drift hits both
alike. The revision is exported with ``git archive`` into a temporary folder and imported under
its own module objects. One step is what ``ContrastiveModule.training_step`` does (the source's
similarities, the loss, the label bookkeeping; logging switched off, no logging step), then the
backward pass and the source's ``update()``; Lightning's loop and the optimiser, which neither
version changes, are left out (``--lightning`` puts them back: each block is then a ``Trainer.fit``
of that many steps, as in ``bench_step.py``). The encoder is the small CNN, so the bank and the
loss dominate.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lightning_modules", "datamodules", "callbacks")


def load(tree: Path) -> dict:
    """Import the module classes of ``tree``, then forget them so that another tree can be imported."""
    sys.path.insert(0, str(tree))
    try:
        mods = {name: importlib.import_module(f"lightning_modules.{name}")
                for name in ("contrastive", "encoders", "losses", "negatives")}
    finally:
        sys.path.remove(str(tree))
        for key in [k for k in sys.modules if k.split(".")[0] in PACKAGES]:
            del sys.modules[key]  # the objects above keep their own references
    return mods


def build(mods: dict, args) -> tuple:
    torch.manual_seed(0)
    module = mods["contrastive"].ContrastiveModule(
        encoder=mods["encoders"].SmallConvEncoder(width=16, out_dim=128), loss=mods["losses"].ContrastiveLoss(0.07),
        negatives=mods["negatives"].MemoryBank(dim=128), num_samples=args.bank, penalty_entropy_every_n_steps=0)
    if not args.lightning:
        module.log = lambda *a, **k: None  # no Trainer: logging is not what is timed
    g = torch.Generator().manual_seed(1)
    batch = (torch.randperm(args.bank, generator=g)[:args.batch], torch.randn(args.batch, 3, 32, 32, generator=g),
             torch.randint(0, 10, (args.batch,), generator=g))
    return module, batch


def time_fit(module, batch, steps: int) -> float:
    """A ``Trainer.fit`` of ``1 + steps`` steps on the fixed batch; the time of the last ``steps``."""
    import pytorch_lightning as pl  # noqa: PLC0415

    marks: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 1:
                marks.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module) -> None:
            marks.append(time.perf_counter())

    trainer = pl.Trainer(accelerator="cpu", max_steps=1 + steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Clock()])
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch] * (1 + steps), batch_size=None))
    return (marks[1] - marks[0]) / steps


def time_block(module, batch, steps: int, lightning: bool = False) -> float:
    if lightning:
        return time_fit(module, batch, steps)
    start = time.perf_counter()
    for _ in range(steps):
        module.zero_grad(set_to_none=True)
        module.training_step(batch, 0).backward()
        module.negatives.update()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="main", help="the git revision to compare against (the A side)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--bank", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=5, help="steps per block")
    parser.add_argument("--rounds", type=int, default=20, help="ABBA rounds: each times both once")
    parser.add_argument("--lightning", action="store_true", help="time Trainer.fit blocks (with the optimiser)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:  # kept until the end: the revision may read its configs
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.ref], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        sides = {"ref": build(load(Path(tmp)), args), "tree": build(load(ROOT), args)}
        return compare(sides, args)


def compare(sides: dict, args) -> dict:
    for module, batch in sides.values():
        time_block(module, batch, 2, args.lightning)  # warm-up
    times: dict[str, list[float]] = {"ref": [], "tree": []}
    for r in range(args.rounds):
        for side in (("ref", "tree") if r % 2 == 0 else ("tree", "ref")):
            module, batch = sides[side]
            times[side].append(time_block(module, batch, args.steps, args.lightning))
    ratios = [t / r for t, r in zip(times["tree"], times["ref"])]
    what = "Trainer.fit step" if args.lightning else "Step without Lightning's loop"
    print(f"\n{what} (small CNN, batch {args.batch}, bank {args.bank}, contrastive loss, "
          f"{torch.get_num_threads()} threads), {args.rounds} ABBA rounds of {args.steps} steps\n")
    print("| side | s/step median | min |")
    print("|---|---|---|")
    for side, values in times.items():
        name = args.ref if side == "ref" else "this tree"
        print(f"| {name} | {statistics.median(values):.4f} | {min(values):.4f} |")
    print(f"\nratio this tree / {args.ref}, per round: min {min(ratios):.3f}, median {statistics.median(ratios):.3f}, "
          f"max {max(ratios):.3f}; ratio of the minima {min(times['tree']) / min(times['ref']):.3f}")
    return {"times": times, "ratios": ratios}


if __name__ == "__main__":
    main()
