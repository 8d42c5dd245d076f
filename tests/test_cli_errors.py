"""Mistakes end ``python cli.py`` with one ``error:`` line and a non-zero exit status, never a traceback.

Every case runs ``cli.py`` in its own process, as a user would. The processes are started
together by a module fixture (two at a time): each one pays Python's start-up and imports,
which is most of its cost. `make test` runs one case of each kind; CI (`MARK=`) runs them all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, quick_args

HARD = ("configs/loss/hard_contrastive.yaml",)


def loss_yaml(folder: Path, name: str, text: str) -> str:
    """A config file setting the loss's init_args (a YAML null, which the command line cannot give)."""
    path = folder / f"{name}.yaml"
    path.write_text("model:\n  init_args:\n    loss:\n      init_args:\n" +
                    "".join(f"        {line}\n" for line in text.splitlines()))
    return str(path)


def linear(data: Path, logs: Path, *extra: str) -> list[str]:
    return ["fit", "-c", str(ROOT / "configs/eval/linear.yaml"), "-c", str(ROOT / "configs/logger/csv.yaml"),
            "-c", str(ROOT / "configs/trainer/cpu.yaml"), f"--trainer.default_root_dir={logs}",
            f"--trainer.logger.init_args.save_dir={logs}", "--trainer.max_epochs=1",
            f"--data.init_args.data_dir={data}", "--data.init_args.verify_checksums=false",
            "--data.init_args.num_workers=0", *extra]


class Evil:
    """Unpickling this calls ``os.system``: what a hostile checkpoint would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def write_unsafe_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint with real encoder tensors whose pickle, read unsafely, creates ``marker``."""
    from lightning_modules.encoders import SmallConvEncoder

    encoder = SmallConvEncoder()
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in encoder.state_dict().items()},
                "encoder_config": encoder.describe(), "hyper_parameters": {"note": Evil(f"touch {marker}")}}, path)
    return path


def cases(data: Path, tmp: Path) -> dict[str, tuple[list[str], dict[str, str], tuple[str, ...]]]:
    """name -> (cli.py arguments, extra environment, words the error line must hold)."""
    logs = tmp / "logs"
    garbage = tmp / "garbage.ckpt"
    garbage.write_bytes(b"\x00\x01 these bytes are not a checkpoint \xff" * 8)
    unsafe = write_unsafe_checkpoint(tmp / "unsafe.ckpt", tmp / "PWNED")
    missing = tmp / "nowhere" / "last.ckpt"
    q = lambda *extra, configs=(): quick_args(data, logs, *extra, configs=configs)  # noqa: E731
    broken = tmp / "broken.yaml"
    broken.write_text("trainer:\n  max_epochs: [1, 2\nmodel: {\n")
    images = tmp / "images"
    for split in ("train", "val"):
        (images / split / "cat").mkdir(parents=True)
        (images / split / "cat" / "0.png").write_bytes(b"not decoded: the layout is what gives it away")
    return {
        # the README's list of bad input
        "temperature 0": (q("--model.init_args.loss.init_args.temperature=0"), {},
                          ("--model.init_args.loss", "temperature must be > 0", "got 0.0")),
        "num_negatives 0": (q("--model.init_args.loss.init_args.num_negatives=0", configs=HARD), {},
                            ("num_negatives must be an integer >= 1", "got 0")),
        "alpha 1.5": (q("-c", loss_yaml(tmp, "alpha", "num_negatives: null\nalpha: 1.5"), configs=HARD), {},
                      ("alpha must be in (0, 1]", "got 1.5")),
        "both": (q("--model.init_args.loss.init_args.alpha=0.1", configs=HARD), {},
                 ("exactly one of num_negatives and alpha", "num_negatives=4095 and alpha=0.1")),
        "neither": (q("-c", loss_yaml(tmp, "neither", "num_negatives: null"), configs=HARD), {},
                    ("exactly one of num_negatives and alpha", "got neither")),
        "unknown loss": (q("--model.init_args.loss=ContrastivLoss"), {},
                         ("--model.init_args.loss", "unknown loss 'ContrastivLoss'", "ContrastiveLoss",
                          "SimpleContrastiveLoss", "HardContrastiveLoss", "HardSimpleContrastiveLoss")),
        "typo in a flag": (q("--model.init_args.loss.init_args.temprature=0.1"), {},
                           ("temprature", "not accepted")),
        "abbreviated flag": (q("--trainer.max_e=3"), {}, ("unrecognized arguments", "--trainer.max_e=3")),
        "bank size": (q("--model.init_args.negatives.init_args.size=1000"), {},
                      ("does not match the 256 training images",)),
        "views": (q("--data.init_args.num_views=1", configs=("configs/negatives/in_batch.yaml",)), {},
                  ("needs 2 view(s)", "--data.init_args.num_views 2")),
        "corrupt dataset": (q("--data.init_args.verify_checksums=true"), {},
                            ("failed torchvision's check", str(data / "cifar-10-batches-py"))),
        "batch not divisible": (q("--data.init_args.batch_size=33", configs=("configs/trainer/ddp_cpu.yaml",)), {},
                                ("--data.init_args.batch_size=33", "divisible by the number of processes (2)")),
        # linear evaluation and checkpoints
        "pretrained unset": (linear(data, logs), {}, ("--model.init_args.pretrained",)),
        "pretrained missing": (linear(data, logs, f"--model.init_args.pretrained={missing}"), {},
                               ("--model.init_args.pretrained", "checkpoint not found", str(missing))),
        "pretrained garbage": (linear(data, logs, f"--model.init_args.pretrained={garbage}"), {},
                               ("--model.init_args.pretrained", str(garbage), "not a readable PyTorch checkpoint")),
        "pretrained unsafe": (linear(data, logs, f"--model.init_args.pretrained={unsafe}"), {},
                              ("--model.init_args.pretrained", "refusing", "posix.system", "could run code")),
        "ckpt_path garbage": (q(f"--ckpt_path={garbage}"), {},
                              ("--ckpt_path", str(garbage), "not a readable PyTorch checkpoint")),
        "ckpt_path missing": (q(f"--ckpt_path={missing}"), {}, ("--ckpt_path", "checkpoint not found")),
        "ckpt_path unsafe": (q(f"--ckpt_path={unsafe}"), {}, ("--ckpt_path", "refusing", "could run code")),
        # issue 16: what a new user hit
        "negative lr": (quick_args(data, tmp / "logs_lr", "--model.init_args.optimizer.init_args.lr=-0.1"), {},
                        ("--model.init_args.optimizer", "Invalid learning rate: -0.1")),
        "YAML syntax error": (q("-c", str(broken)), {}, (str(broken), "YAML syntax error", "line 3")),
        "grid file": (q("-c", str(ROOT / "configs/experiments/grid_short.yaml")), {},
                      ("grid_short.yaml", "is a grid of runs", "scripts/sweep.py")),
        "GPU without GPU": (q(configs=("configs/trainer/gpu.yaml",)), {},
                            ("--trainer.accelerator=gpu", "no GPU", "configs/trainer/cpu.yaml")),
        "image folder to CIFAR": (quick_args(images, logs), {}, (str(images), "configs/data/imagefolder.yaml")),
        "batch larger than split": (q("--data.init_args.batch_size=300"), {},
                                    ("--data.init_args.batch_size=300", "larger than the training split (256 images)")),
    }


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "WANDB_MODE": "disabled", **env})


@pytest.fixture(scope="module")
def outcomes(cifar_small, tmp_path_factory, request):
    """Runs the cases whose tests were selected (``-m "not slow"`` keeps a few), two processes at a time."""
    tmp = tmp_path_factory.mktemp("errors")
    table = cases(cifar_small, tmp)
    assert sorted(table) == sorted(CASE_NAMES)  # every case is a test below
    selected = {item.callspec.params["name"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_a_mistake_ends_in_one_error_line"}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_cli, args, env) for name, (args, env, _) in table.items() if name in selected}
        results = {name: future.result() for name, future in futures.items()}
    return tmp, table, results


# every case runs in CI (make test MARK=); these few, one of each kind, in the default `make test`
DEFAULT_CASES = ("temperature 0", "unknown loss", "abbreviated flag", "pretrained unsafe", "ckpt_path garbage",
                 "negative lr")
CASE_NAMES = ["temperature 0", "num_negatives 0", "alpha 1.5", "both", "neither", "unknown loss", "typo in a flag",
              "abbreviated flag", "bank size", "views", "corrupt dataset", "batch not divisible", "pretrained unset",
              "pretrained missing", "pretrained garbage", "pretrained unsafe", "ckpt_path garbage",
              "ckpt_path missing", "ckpt_path unsafe", "negative lr", "YAML syntax error", "grid file",
              "GPU without GPU", "image folder to CIFAR", "batch larger than split"]
#: cases that need the machine to lack something
NEEDS = {"GPU without GPU": pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[m for m in (NEEDS.get(n),) if m] +
                                               ([] if n in DEFAULT_CASES else [pytest.mark.slow]))
                                  for n in CASE_NAMES])
def test_a_mistake_ends_in_one_error_line(outcomes, name):
    tmp, table, results = outcomes
    proc, words = results[name], table[name][2]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
    for word in words:
        assert word in errors[0], (word, errors[0])
    assert not list((tmp / "logs").rglob("*.ckpt")), "a run started"
    if name == "negative lr":  # it failed after the run folder was made (in a folder of its own, to see that)
        assert not list((tmp / "logs_lr").rglob("version_*")), "a run folder was left behind"
    assert not (tmp / "PWNED").exists(), "a checkpoint's pickle ran code"


def test_the_unsafe_checkpoint_would_run_code_if_read_unsafely(tmp_path):
    """The refusal above matters: read the way linear evaluation used to (weights_only=False), the file runs code."""
    marker = tmp_path / "ran"
    path = write_unsafe_checkpoint(tmp_path / "unsafe.ckpt", marker)
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("how", ["flag", pytest.param("environment", marks=pytest.mark.slow)])
def test_debug_shows_the_traceback(cifar_small, tmp_path, how):
    args = quick_args(cifar_small, tmp_path, "--model.init_args.loss.init_args.temperature=0")
    proc = run_cli(args + (["--debug"] if how == "flag" else []), {"CLI_DEBUG": "1"} if how == "environment" else {})
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "temperature must be > 0" in proc.stderr
