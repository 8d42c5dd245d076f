"""What a ``self.log`` call in the training step costs: a Lightning fit of one linear layer, with and without.

    python benchmarks/bench_log.py --steps 500 --rounds 3

The model is the size of a linear probe's classifier (64 features, 10 classes, batch 64), so the step
itself costs well under a millisecond and the logging shows. Each round fits once with ``--calls``
``self.log`` calls a step (the first on_step and on_epoch, the rest on_epoch, as the suite's modules
logged before they kept their epoch means on the device) and once without; CPU milliseconds a step of
the training process, every round printed, with the median difference per call.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F


class Probe(pl.LightningModule):
    def __init__(self, calls: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)
        self.calls = calls

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.layer(x), y)
        for k in range(self.calls):
            self.log(f"value{k}", loss, on_step=k == 0, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def ms_per_step(calls: int, loader: torch.utils.data.DataLoader) -> float:
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=50, accelerator="cpu")
    start = time.process_time()
    trainer.fit(Probe(calls), loader)
    return (time.process_time() - start) / len(loader) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2, help="self.log calls a step in the logging fit")
    opts = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64 * opts.steps, 64, generator=g),
                                          torch.randint(0, 10, (64 * opts.steps,), generator=g))
    loader = torch.utils.data.DataLoader(data, batch_size=64)
    with_log, without = [], []
    for _ in range(opts.rounds):
        with_log.append(ms_per_step(opts.calls, loader))
        without.append(ms_per_step(0, loader))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {opts.steps} steps a fit, CPU ms a step")
    print(f"| round | {opts.calls} self.log calls | none | difference per call |")
    print("|---|---:|---:|---:|")
    for r, (a, b) in enumerate(zip(with_log, without)):
        print(f"| {r} | {a:.2f} | {b:.2f} | {(a - b) / opts.calls:.2f} |")
    per_call = statistics.median((a - b) / opts.calls for a, b in zip(with_log, without))
    print(f"median cost of one self.log call: {per_call:.2f} ms a step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
