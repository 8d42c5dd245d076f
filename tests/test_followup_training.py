"""The losses after the paper train from ``cli.py`` with every source that can serve them (2 batches each).

``make test`` runs every preset of configs/loss/ for 2 batches (a bank, or in-batch keys where a loss needs
them), one with the queue, and the schedule and the learned temperature; CI runs every (preset, source) pair.
A preset a source cannot serve (alignment + uniformity with a bank or a queue) is a one-line error.
"""

from __future__ import annotations

import csv
import math

import pytest
import torch

import cli
from lightning_modules import distributed as D
from lightning_modules.contrastive import ContrastiveModule
from lightning_modules.encoders import SmallConvEncoder
from lightning_modules.followup_losses import (AlignUniformLoss, CosineTemperatureSchedule, DebiasedContrastiveLoss,
                                               DecoupledContrastiveLoss, DualTemperatureLoss,
                                               HardNegativeContrastiveLoss, LearnableTemperatureLoss,
                                               ModelAwareContrastiveLoss, WeightedDecoupledContrastiveLoss)
from lightning_modules.negatives import InBatchNegatives, MemoryBank, MomentumQueue
from tests.conftest import ROOT, quick_args, run_dir

CLASSES = (DebiasedContrastiveLoss, HardNegativeContrastiveLoss, DecoupledContrastiveLoss,
           WeightedDecoupledContrastiveLoss, DualTemperatureLoss, ModelAwareContrastiveLoss,
           CosineTemperatureSchedule, LearnableTemperatureLoss, AlignUniformLoss)
SOURCES = ("memory_bank", "in_batch", "momentum_queue")
#: the losses whose temperature moves during training: they log train/temperature each step
MOVING = (ModelAwareContrastiveLoss, CosineTemperatureSchedule, LearnableTemperatureLoss)


#: the pair of the default tier, with the metrics callbacks (test_every_loss_preset_trains_two_batches below
#: runs every preset with a bank, or in-batch keys, in that tier)
DEFAULT = {("macl", "momentum_queue")}


def pairs() -> list:
    """(class, source) for every pair a source can serve; the DEFAULT ones outside the slow tier."""
    out = []
    for cls in CLASSES:
        usable = ["in_batch"] if cls.needs_in_batch else list(SOURCES)
        for source in usable:
            marks = () if (cls.key, source) in DEFAULT else (pytest.mark.slow,)
            out.append(pytest.param(cls, source, marks=marks, id=f"{cls.key}-{source}"))
    return out


def read_metrics(folder) -> list[dict[str, str]]:
    with open(folder / "metrics.csv") as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


@pytest.mark.parametrize("cls,source", pairs())
def test_preset_trains_with_the_source(cifar_small, tmp_path, cls, source):
    run = cli.main(quick_args(cifar_small, tmp_path, "--trainer.callbacks.init_args.plot=false",
                              "--trainer.log_every_n_steps=1", "--model.init_args.penalty_entropy_every_n_steps=1",
                              configs=(f"configs/loss/{cls.key}.yaml", f"configs/negatives/{source}.yaml")))
    assert type(run.model.loss) is cls and run.trainer.global_step == 2
    rows = read_metrics(run_dir(tmp_path))
    losses, entropy = column(rows, "train/loss_step"), column(rows, "train/penalty_entropy")
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert len(entropy) == 2 and all(0 <= x <= math.log(4096) for x in entropy)  # at most log K
    temperature = column(rows, "train/temperature")
    if cls in MOVING:
        assert len(temperature) == 2 and all(0 < t <= 1.0 for t in temperature)
    else:
        assert temperature == []


@pytest.mark.parametrize("source", ["memory_bank", pytest.param("momentum_queue", marks=pytest.mark.slow)])
def test_align_uniform_with_a_bank_or_queue_is_a_one_line_error(cifar_small, tmp_path, capsys, source):
    status = cli.run_from_command_line(quick_args(cifar_small, tmp_path, configs=(
        "configs/loss/align_uniform.yaml", f"configs/negatives/{source}.yaml")))
    err = capsys.readouterr().err.strip()
    assert status != 0 and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "AlignUniformLoss needs in-batch keys" in err and "configs/negatives/in_batch.yaml" in err
    assert not (tmp_path / "pretrain").exists() or not list((tmp_path / "pretrain").glob("*/checkpoints/*.ckpt"))


def test_cosine_schedule_moves_the_temperature_at_each_epoch(cifar_small, tmp_path):
    run = cli.main(quick_args(cifar_small, tmp_path, "--trainer.callbacks=[]", "--trainer.log_every_n_steps=1",
                              "--model.init_args.loss.init_args.half_period=1",
                              configs=("configs/loss/cosine_temperature.yaml",), epochs=2))
    temperature = column(read_metrics(run_dir(tmp_path)), "train/temperature")
    assert temperature == pytest.approx([1.0, 1.0, 0.1, 0.1])  # t_max at epoch 0, t_min at epoch T = 1
    assert run.model.loss.temperature == pytest.approx(0.1)


def test_learnable_temperature_is_trained_without_weight_decay_and_checkpointed(cifar_small, tmp_path):
    run = cli.main(quick_args(cifar_small, tmp_path, "--trainer.callbacks.init_args.plot=false",
                              "--trainer.log_every_n_steps=1", configs=("configs/loss/learnable_temperature.yaml",)))
    loss = run.model.loss
    optimizer = run.trainer.optimizers[0]
    groups = [g for g in optimizer.param_groups if any(p is loss.logit_scale for p in g["params"])]
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0 and len(groups[0]["params"]) == 1
    assert any(g["weight_decay"] > 0 for g in optimizer.param_groups)  # the encoder keeps the recipe's decay
    assert loss.logit_scale.item() != pytest.approx(math.log(1 / 0.07), abs=1e-7)  # it moved
    temperature = column(read_metrics(run_dir(tmp_path)), "train/temperature")
    assert temperature[0] == pytest.approx(0.07, rel=1e-5) and temperature[-1] != temperature[0]
    checkpoint = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["state_dict"]["loss.logit_scale"].item() == pytest.approx(loss.logit_scale.item())


@pytest.mark.parametrize("negatives", [MemoryBank, MomentumQueue])
def test_the_module_refuses_align_uniform_with_keys_not_from_the_batch(negatives):
    with pytest.raises(ValueError, match="AlignUniformLoss needs in-batch keys.*configs/negatives/in_batch.yaml"):
        ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), loss=AlignUniformLoss(),
                          negatives=negatives(), num_samples=16)
    ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), loss=AlignUniformLoss(),
                      negatives=InBatchNegatives(), num_samples=16)


@pytest.mark.parametrize("make", [WeightedDecoupledContrastiveLoss, ModelAwareContrastiveLoss])
def test_global_batch_losses_gather_in_the_training_step_only(monkeypatch, tmp_path, make):
    """DCLW and MACL normalise over every process's positives: within training_step the module hands them
    D.gather (detached); outside it (Fig 3, drawn on rank 0 alone) no collective may run."""
    from callbacks import plots

    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), loss=make(),
                               negatives=MemoryBank(), num_samples=16)
    seen = []
    monkeypatch.setattr(D, "gather", lambda x, with_grad=False: seen.append(x) or torch.cat([x, x + 1]))
    with module._global_batch():
        out = module.loss.gather(torch.zeros(3, 1, requires_grad=True))
    assert out.shape == (6, 1) and not out.requires_grad and len(seen) == 1 and not seen[0].requires_grad
    assert module.loss.gather(torch.zeros(3, 1)).shape == (3, 1)  # the identity again
    plots.plot_relative_penalty([module.loss], tmp_path / "fig3.png")
    assert len(seen) == 1  # the plot gathered nothing
    images = torch.randn(4, 3, 16, 16)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "log", lambda *args, **kwargs: None)
        module.training_step((torch.arange(4), images, torch.zeros(4, dtype=torch.long)), 0)
    assert any(x.shape == (4, 1) and x.is_floating_point() for x in seen[1:])  # the step gathered the positives


def test_help_lists_the_followup_losses(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for cls in CLASSES:
        assert cls.__name__ in out


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.key)
def test_training_step_has_no_host_sync(cls):
    """Every step logs the penalty entropy (autograd on the loss) and, where it moves, the temperature."""
    from tests.test_no_sync import recorded_steps

    source, views = (InBatchNegatives(), 2) if cls.needs_in_batch else (MemoryBank(dim=8), 1)
    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), loss=cls(), negatives=source,
                               num_samples=8, penalty_entropy_every_n_steps=1)
    assert recorded_steps(module, views) == [[], [], []]


def loss_class_of(preset) -> type:
    """The loss class a preset names (through the CLI's parser, without building a trainer)."""
    import yaml

    path = yaml.safe_load(preset.read_text())["model"]["init_args"]["loss"]["class_path"]
    module, name = path.rsplit(".", 1)
    return getattr(__import__(module, fromlist=[name]), name)


@pytest.mark.parametrize("preset", sorted((ROOT / "configs/loss").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_loss_preset_trains_two_batches(cifar_small, tmp_path, preset):
    """Each shipped preset (a new one included, with no edit here) trains 2 batches with a source it supports;
    the metrics callbacks are left out (other tests run them), so this stays fast."""
    cls = loss_class_of(preset)
    source = "in_batch" if getattr(cls, "needs_in_batch", False) else "memory_bank"
    run = cli.main(quick_args(cifar_small, tmp_path, "--trainer.callbacks=[]", "--trainer.log_every_n_steps=1",
                              "--model.init_args.penalty_entropy_every_n_steps=1",
                              configs=(str(preset), f"configs/negatives/{source}.yaml")))
    assert type(run.model.loss) is cls and run.trainer.global_step == 2
    rows = read_metrics(run_dir(tmp_path))
    assert len(column(rows, "train/loss_step")) == 2 and all(map(math.isfinite, column(rows, "train/loss_step")))
    assert len(column(rows, "train/penalty_entropy")) == 2


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["dclw", "macl"])
def test_two_processes_end_with_the_weights_of_one(cifar_small, tmp_path, preset):
    """DDP (gloo, 2 CPU processes) vs 1 process, same global batch: the global-batch normalisers agree,
    and Fig 3, drawn on rank 0 alone at the start, runs no collective (it would hang)."""
    import os
    import subprocess
    import sys

    from tests.test_scale import load_state

    common = ["--model.init_args.encoder.init_args.batchnorm=false", "--trainer.limit_train_batches=3",
              "--data.init_args.batch_size=32"]
    configs = (f"configs/loss/{preset}.yaml", "configs/negatives/in_batch.yaml")
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    cli.main(quick_args(cifar_small, one_dir, *common, batches=None, configs=configs))
    two = quick_args(cifar_small, two_dir, *common, batches=None, configs=(*configs, "configs/trainer/ddp_cpu.yaml"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), *two], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_state(run_dir(one_dir) / "checkpoints" / "last.ckpt")
    b = load_state(run_dir(two_dir) / "checkpoints" / "last.ckpt")
    start = {k: v for k, v in cli.main(quick_args(cifar_small, tmp_path / "init", *common[:1], batches=1,
                                                  configs=configs)[1:], run=False).model.state_dict().items()}
    assert (a["encoder.head.weight"] - start["encoder.head.weight"]).abs().max() > 1e-4  # it trained (100 x atol)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), f"{k}: max diff {(a[k] - b[k]).abs().max():.2e}"
