"""Nothing lost, nothing silent: interrupted runs, reused folders, resumes and requeued SLURM jobs (issue 16).

Each run here is a real ``cli.py fit`` of the small encoder on CIFAR-format files of real
images, 2 batches an epoch; interruptions are real signals sent at a chosen batch
(``tests/interrupt.py``).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
from pathlib import Path

import pytest
import torch

import cli
from datamodules.sampling import ShardedEpochSampler
from tests.conftest import ROOT, quick_args, run_dir

SIGNAL_AT = "tests.interrupt.SignalAt"


def callback(class_path: str, **init_args) -> str:
    return "--trainer.callbacks+=" + json.dumps({"class_path": class_path, "init_args": init_args})


def rows(metrics_csv: Path) -> list[dict[str, str]]:
    with open(metrics_csv, newline="") as f:
        return [{k: v for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def in_step_order(found: list[dict[str, str]]) -> list[dict[str, str]]:
    """``found`` sorted by step, then by content (rows of one step in any order)."""
    return sorted(found, key=lambda r: (int(r.get("step", -1)), sorted(r.items())))


def val_rows(metrics_csv: Path) -> dict[str, dict[str, str]]:
    """epoch -> the row of its embedding metrics (each epoch once)."""
    found = [r for r in rows(metrics_csv) if "val/uniformity" in r]
    epochs = [r["epoch"] for r in found]
    assert len(epochs) == len(set(epochs)), f"an epoch's metrics logged twice: {epochs}"
    return {r["epoch"]: r for r in found}


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# ------------------------------------------------------------------------- 1. interruptions
def test_a_non_finite_epoch_never_replaces_the_last_good_checkpoint(cifar_small, tmp_path):
    """The epoch's checkpoint is written before its metrics: the NaN check must come before both."""
    args = quick_args(cifar_small, tmp_path, callback("tests.interrupt.PoisonAt", epoch=1, batch=1),
                      "--model.init_args.check_finite_every_n_steps=1000", epochs=2)
    assert cli.run_from_command_line(args) != 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0  # epoch 0's checkpoint, not the poisoned epoch 1's
    assert all(torch.isfinite(w).all() for w in saved["state_dict"].values() if w.is_floating_point())


def test_sigterm_mid_epoch_exits_143_and_says_how_to_resume(cifar_small, tmp_path, capsys):
    args = quick_args(cifar_small, tmp_path, callback(SIGNAL_AT, signum=15, epoch=1, batch=0), epochs=3)
    assert cli.run_from_command_line(args) == 128 + signal.SIGTERM  # today: 0, as if finished
    err = capsys.readouterr().err.strip().splitlines()
    folder = run_dir(tmp_path)
    last = folder / "checkpoints" / "last.ckpt"
    assert err[-3] == "error: interrupted by SIGTERM during epoch 1 of 3: the run did not finish"
    assert err[-2] == f"run folder: {folder}"
    assert err[-1].startswith("resume: python ") and err[-1].endswith(f" --ckpt_path={last}")
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["run"]["epochs_completed"] == 1 and saved["run"]["max_epochs"] == 3


@pytest.mark.slow
def test_resume_continues_the_same_folder_and_ends_as_an_uninterrupted_run(cifar_small, tmp_path, capsys):
    base = quick_args(cifar_small, tmp_path / "a", epochs=3)
    assert cli.run_from_command_line([*base, callback(SIGNAL_AT, signum=15, epoch=1, batch=1)]) == 143
    folder = run_dir(tmp_path / "a")
    assert cli.run_from_command_line([*base, f"--ckpt_path={folder / 'checkpoints/last.ckpt'}"]) == 0
    assert sorted(p.name for p in (tmp_path / "a/pretrain").iterdir()) == ["version_0"]  # today: a version_1
    assert cli.run_from_command_line(quick_args(cifar_small, tmp_path / "b", epochs=3)) == 0
    reference = run_dir(tmp_path / "b")
    assert_same_weights(folder / "checkpoints/last.ckpt", reference / "checkpoints/last.ckpt")
    # one metrics.csv that reads as the uninterrupted run's: the same rows, epoch -1 to 2 (in step order: where the
    # metrics overlap the next epoch, their row comes when that epoch ends, or, resumed, when the run starts again)
    assert in_step_order(rows(folder / "metrics.csv")) == in_step_order(rows(reference / "metrics.csv"))


@pytest.mark.slow
def test_an_interrupt_during_the_epoch_metrics_keeps_the_epochs_training(cifar_small, tmp_path, capsys, request):
    # Ctrl-C in a terminal: under nohup or in a background job (a CI runner's, say) SIGINT arrives ignored,
    # and cli.py rightly keeps it ignored; this test is about a SIGINT that is delivered
    request.addfinalizer(lambda previous=signal.getsignal(signal.SIGINT): signal.signal(signal.SIGINT, previous))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    def callbacks(stop_epoch: int) -> str:
        config = tmp_path / f"callbacks{stop_epoch}.yaml"
        config.write_text(
            "trainer:\n  callbacks:\n"
            "    - class_path: pytorch_lightning.callbacks.ModelCheckpoint\n"
            "      init_args: {save_last: true, every_n_epochs: 1, save_top_k: 1, save_on_train_epoch_end: true}\n"
            "    - class_path: tests.interrupt.MetricsInterruptedAt\n"
            f"      init_args: {{stop_epoch: {stop_epoch}}}\n")
        return str(config)

    args = quick_args(cifar_small, tmp_path / "a", "-c", callbacks(1), epochs=2)
    assert cli.run_from_command_line(args) == 130  # Ctrl-C inside epoch 1's metrics
    last = run_dir(tmp_path / "a") / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["run"]["epochs_completed"] == 2  # epoch 1's training is kept (today: last.ckpt of epoch 0)
    assert saved["global_step"] == 4
    # the resume logs the pending metrics, as the uninterrupted run does, and trains nothing more
    assert cli.run_from_command_line([*args, f"--ckpt_path={last}"]) == 0
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4
    assert cli.run_from_command_line(quick_args(cifar_small, tmp_path / "b", "-c", callbacks(-1), epochs=2)) == 0
    resumed, reference = val_rows(last.parents[1] / "metrics.csv"), val_rows(run_dir(tmp_path / "b") / "metrics.csv")
    assert set(resumed) == {"-1", "0", "1"}
    for key in ("val/uniformity", "val/tolerance", "val/knn_top1", "val/alignment"):
        assert resumed["1"][key] == reference["1"][key], key
    assert resumed["1"]["step"] == reference["1"]["step"]


# ------------------------------------------------------------------- 2. other runs' folders
def test_a_folder_holding_a_run_is_refused_before_anything_is_touched(cifar_small, tmp_path, capsys):
    assert cli.run_from_command_line(quick_args(cifar_small, tmp_path)) == 0
    folder = run_dir(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    again = quick_args(cifar_small, tmp_path, "--trainer.logger.init_args.version=0")
    assert cli.run_from_command_line(again) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: --trainer.logger: {folder} already holds a run (checkpoints, config.yaml, "
                       f"hparams.yaml, metrics.csv); choose a new version (leave version unset for the next free "
                       f"one), resume it with --ckpt_path {folder / 'checkpoints/last.ckpt'}, or replace it with "
                       "--overwrite_run=true")
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before  # today: metrics.csv deleted
    assert sorted(p.name for p in (tmp_path / "pretrain").iterdir()) == ["version_0"]


@pytest.mark.slow
def test_overwrite_run_replaces_the_run_in_the_folder(cifar_small, tmp_path, capsys):
    assert cli.run_from_command_line(quick_args(cifar_small, tmp_path)) == 0
    again = quick_args(cifar_small, tmp_path, "--trainer.logger.init_args.version=0", "--overwrite_run=true",
                       "--model.init_args.loss.init_args.temperature=0.5")
    assert cli.run_from_command_line(again) == 0  # the explicit choice
    config = (run_dir(tmp_path) / "config.yaml").read_text()
    assert "temperature: 0.5" in config and "overwrite_run: true" in config


def test_resuming_a_finished_run_says_so_and_creates_nothing(cifar_small, tmp_path, capsys):
    args = quick_args(cifar_small, tmp_path)
    assert cli.run_from_command_line(args) == 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert cli.run_from_command_line([*args, f"--ckpt_path={last}"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --ckpt_path: {last} is a finished run (1 of 1 epochs done): nothing to resume. To train it "
        "longer, add --trainer.max_epochs=N with N > 1; to start a new run, drop --ckpt_path")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # today: an empty version_1


# --------------------------------------------------------------------------- 3. one run
def test_a_changed_hyperparameter_on_resume_is_refused_unless_intended(cifar_small, tmp_path, capsys):
    args = quick_args(cifar_small, tmp_path)
    assert cli.run_from_command_line(args) == 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    changed = [*args, f"--ckpt_path={last}", "--trainer.max_epochs=2",
               "--model.init_args.loss.init_args.temperature=0.5", "--model.init_args.encoder.init_args.width=32"]
    assert cli.run_from_command_line(changed) == 1  # today: accepted, and the checkpoint's values silently used
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --ckpt_path: {last} was trained with other values")
    assert ("model.init_args.encoder.init_args.width: 16 -> 32; "
            "model.init_args.loss.init_args.temperature: 0.07 -> 0.5") in err[0]
    assert "--allow_changed_hparams=true" in err[0]


@pytest.mark.slow
def test_an_intended_change_on_resume_uses_the_values_given(cifar_small, tmp_path):
    args = quick_args(cifar_small, tmp_path)
    assert cli.run_from_command_line(args) == 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    run = cli.main([*args, f"--ckpt_path={last}", "--trainer.max_epochs=2",
                    "--model.init_args.loss.init_args.temperature=0.5", "--allow_changed_hparams=true"])
    assert run.model.loss.temperature == 0.5 and run.trainer.current_epoch == 2


def test_a_linear_evaluation_checkpoint_is_refused_as_pretrained(cifar_small, tmp_path, capsys):
    assert cli.run_from_command_line(quick_args(cifar_small, tmp_path)) == 0
    pretrained = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    linear = ["fit", "-c", str(ROOT / "configs/eval/linear.yaml"), "-c", str(ROOT / "configs/trainer/cpu.yaml"),
              "-c", str(ROOT / "configs/logger/csv.yaml"), f"--trainer.default_root_dir={tmp_path}",
              f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.max_epochs=1",
              "--trainer.limit_train_batches=2", "--trainer.enable_model_summary=false",
              f"--data.init_args.data_dir={cifar_small}", "--data.init_args.verify_checksums=false",
              "--data.init_args.num_workers=0", "--data.init_args.batch_size=64",
              "--model.init_args.cache_features=true"]
    assert cli.run_from_command_line([*linear, f"--model.init_args.pretrained={pretrained}"]) == 0
    linear_ckpt = run_dir(tmp_path, "linear") / "checkpoints" / "last.ckpt"
    assert cli.run_from_command_line([*linear, f"--model.init_args.pretrained={linear_ckpt}"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --model.init_args.pretrained: {linear_ckpt} is a linear-evaluation checkpoint (of {pretrained}); "
        f"expected a pretraining checkpoint, e.g. runs/pretrain/version_N/checkpoints/last.ckpt: use {pretrained}")


def test_a_moved_run_folder_resumes_into_its_own_last_checkpoint(cifar_small, tmp_path):
    """A run folder moved elsewhere (scratch to home, another machine) and resumed: last.ckpt is the final epoch."""
    base = quick_args(cifar_small, tmp_path / "a", epochs=1)
    assert cli.run_from_command_line(base) == 0
    moved = tmp_path / "b"
    (tmp_path / "a").rename(moved)
    folder = run_dir(moved)
    last = folder / "checkpoints" / "last.ckpt"
    args = [a.replace(str(tmp_path / "a"), str(moved)) for a in base]
    assert cli.run_from_command_line([*args, f"--ckpt_path={last}", "--trainer.max_epochs=2"]) == 0
    assert not list((folder / "checkpoints").glob("last-v*.ckpt"))  # before: last-v1.ckpt beside a stale last.ckpt
    assert torch.load(last, map_location="cpu", weights_only=True)["run"]["epochs_completed"] == 2


@pytest.mark.slow  # W&B's offline run costs a few seconds to start and stop
def test_resume_continues_the_same_wandb_run(cifar_small, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_RESUME", raising=False)
    args = quick_args(cifar_small, tmp_path, "-c", str(ROOT / "configs/logger/wandb.yaml"),
                      f"--trainer.logger.init_args.save_dir={tmp_path}")
    args = [a for a in args if not a.startswith("--trainer.logger.init_args.save_dir")]
    args += ['--trainer.logger=[{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "'
             + str(tmp_path) + '"}}, {"class_path": "pytorch_lightning.loggers.WandbLogger", "init_args": '
             '{"save_dir": "' + str(tmp_path) + '", "project": "test"}}]']
    assert cli.run_from_command_line(args) == 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    first_id = torch.load(last, map_location="cpu", weights_only=True)["run"]["wandb_id"]
    assert first_id
    import wandb

    wandb.finish()  # as a new process would start: no run in progress to reuse
    assert cli.run_from_command_line([*args, f"--ckpt_path={last}", "--trainer.max_epochs=2"]) == 0
    assert torch.load(last, map_location="cpu", weights_only=True)["run"]["wandb_id"] == first_id
    assert {p.name.rsplit("-", 1)[-1] for p in (tmp_path / "wandb").glob("offline-run-*")} == {first_id}


# ------------------------------------------------------------------------ 7. SLURM requeue
def test_a_resumed_epoch_skips_the_batches_already_done():
    full = list(ShardedEpochSampler(40, batch_size=8, seed=3))
    done = 2
    rest = list(ShardedEpochSampler(40, batch_size=8, seed=3, batches_done=lambda: done))
    assert rest == full[2 * 8:]  # the same images with the same augmentation seeds, from batch 2 on
    shards = [list(ShardedEpochSampler(40, batch_size=8, rank=r, world_size=2, seed=3, batches_done=lambda: done))
              for r in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(full[16:])
    with pytest.raises(ValueError, match="cannot skip 6 batches"):
        list(ShardedEpochSampler(40, batch_size=8, batches_done=lambda: 6))


def slurm(monkeypatch, tmp_path: Path) -> Path:
    """SLURM's variables and a stand-in ``scontrol`` on PATH that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for key, value in {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "pretrain",
                       "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
                       "SLURM_NODELIST": "localhost"}.items():
        monkeypatch.setenv(key, value)
    return tmp_path / "scontrol.log"


@pytest.mark.slow
def test_a_requeued_slurm_job_ends_bit_identical_to_an_uninterrupted_one(cifar_small, tmp_path, monkeypatch,
                                                                         capsys):
    def args(root: Path) -> list[str]:
        return quick_args(cifar_small, root, "-c", str(ROOT / "configs/trainer/multi_node.yaml"),
                          "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=1",
                          "--trainer.strategy=auto", "--trainer.precision=32-true", "--trainer.benchmark=false",
                          epochs=3, batches=None)  # 8 batches an epoch

    assert cli.run_from_command_line(args(tmp_path / "ref")) == 0
    reference = run_dir(tmp_path / "ref")

    log = slurm(monkeypatch, tmp_path)
    job = args(tmp_path / "job")
    # SIGUSR1 at the end of batch 3 of epoch 1 (after the optimiser step, before the bank's update); the
    # job saves hpc_ckpt_1.ckpt, calls `scontrol requeue`, and is then ended as SLURM would end it
    first = [*job, callback(SIGNAL_AT, signum=int(signal.SIGUSR1), epoch=1, batch=3),
             callback("tests.interrupt.StopAfterRequeue", folder=str(tmp_path / "job"))]
    assert cli.run_from_command_line(first) == 143
    assert log.read_text().split() == ["requeue", "4242"]
    hpc = torch.load(tmp_path / "job/hpc_ckpt_1.ckpt", map_location="cpu", weights_only=True)
    assert (hpc["epoch"], hpc["global_step"]) == (1, 12)  # 8 + 4 batches done
    # the relaunched job (the same command) restores it by itself, in the same run folder
    assert cli.run_from_command_line(job) == 0
    folder = run_dir(tmp_path / "job")
    assert folder.name == "version_0" and not (tmp_path / "job/pretrain/version_1").exists()
    assert torch.load(folder / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 24
    # today the weights differ (the restarted epoch replayed its first batches)
    assert_same_weights(folder / "checkpoints/last.ckpt", reference / "checkpoints/last.ckpt")
    resumed, uninterrupted = val_rows(folder / "metrics.csv"), val_rows(reference / "metrics.csv")
    assert resumed["2"]["val/uniformity"] == uninterrupted["2"]["val/uniformity"]
