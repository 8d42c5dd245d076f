"""The suite installed from its wheel, without the repository: the command, the configs by name, the layout.

The wheel is built from a copy of the files it needs (deleted before anything runs, so
nothing can read them), installed into a fresh virtual environment without downloading
anything (``--no-deps``; a ``.pth`` file lends it this interpreter's packages: torch,
Lightning, ...), and run from an empty temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import cli
from tests.conftest import ROOT

#: what the wheel is built from (pyproject.toml lists the packages; README.md is its description)
SOURCES = ("pyproject.toml", "README.md", "requirements.txt", "requirements-test.txt", "cli.py",
           "contrastive_behaviour", "callbacks", "datamodules", "lightning_modules", "configs")


def build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "-w", str(tmp / "wheels"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.rmtree(src)  # the installation must not need the files it was built from
    wheels = list((tmp / "wheels").glob("contrastive_behaviour-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def fresh_venv(tmp: Path, wheel: Path) -> tuple[Path, Path, list[str]]:
    """(bin folder, site-packages, its entries) of a new venv holding the wheel; this interpreter's packages lent by a .pth."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--no-index", "--quiet", str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = sorted(p.name for p in purelib.iterdir())
    lent = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    (purelib / "zz_lent_packages.pth").write_text("\n".join(dict.fromkeys(lent)) + "\n")
    return venv / "bin", purelib, installed


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    wheel = build_wheel(tmp)
    bin_dir, purelib, names = fresh_venv(tmp, wheel)
    return wheel, bin_dir, purelib, names


def run_installed(bin_dir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLI_DEBUG")}
    env.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1", PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_installs_one_package_and_tests_are_an_extra(installed):
    wheel, _, _, names = installed
    assert [n for n in names if not n.endswith(".dist-info")] == ["contrastive_behaviour"], names
    with zipfile.ZipFile(wheel) as z:
        files = z.namelist()
        metadata = z.read(next(f for f in files if f.endswith(".dist-info/METADATA"))).decode()
    assert "contrastive_behaviour/suite/configs/base.yaml" in files
    assert "contrastive_behaviour/suite/configs/loss/simple.yaml" in files
    assert "contrastive_behaviour/suite/datamodules/imagenet100_classes.txt" in files
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(line.startswith("Requires-Dist: torch") for line in requires)
    assert [line for line in requires if "pytest" in line] == ['Requires-Dist: pytest>=8; extra == "test"']
    assert not [line for line in requires if "setuptools" in line and "extra ==" not in line]


@pytest.mark.slow
def test_the_installed_command_fits_from_any_folder(installed, cifar_small, tmp_path):
    """One short epoch of the shipped recipe, configs by name, from an empty folder; the optimiser default reads
    the installed recipe (it read site-packages/configs/base.yaml, which did not exist)."""
    _, bin_dir, purelib, _ = installed
    work = tmp_path / "work"
    work.mkdir()
    listing = run_installed(bin_dir, ["contrastive-behaviour", "configs"], work)
    assert listing.returncode == 0, listing.stderr
    folder, *names = listing.stdout.splitlines()
    assert Path(folder) == purelib / "contrastive_behaviour" / "suite" / "configs"
    assert {"base", "loss/simple", "data/imagefolder", "trainer/cpu"} <= set(names)

    recipe = run_installed(bin_dir, ["python", "-c", (
        "import contrastive_behaviour, torch; contrastive_behaviour.use_suite_imports(); "
        "import cli, lightning_modules.contrastive as c; "
        "o = c.paper_sgd([torch.nn.Parameter(torch.zeros(1))]); "
        "print(cli.__file__); print(o.defaults['lr'], o.defaults['momentum'])")], work)
    assert recipe.returncode == 0, recipe.stderr[-3000:]
    assert recipe.stdout.splitlines() == [str(purelib / "contrastive_behaviour" / "suite" / "cli.py"), "0.03 0.9"]

    fit = run_installed(bin_dir, [
        "contrastive-behaviour", "fit", "-c", "base", "-c", "model/small", "-c", "logger/csv",
        "-c", "configs/trainer/cpu.yaml", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
        "--trainer.enable_model_summary=false", f"--data.init_args.data_dir={cifar_small}",
        "--data.init_args.verify_checksums=false", "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=32", "--data.init_args.eval_batch_size=128"], work)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run = work / "runs" / "pretrain" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    assert f"run folder: {Path('runs') / 'pretrain' / 'version_0'}" in fit.stdout or str(run) in fit.stdout
    assert "lightning_modules.contrastive.ContrastiveModule" in (run / "config.yaml").read_text()


# ------------------------------------------------------------------ configs by name (no installation)
def test_a_config_name_means_the_shipped_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base, simple = str(cli.CONFIGS / "base.yaml"), str(cli.CONFIGS / "loss" / "simple.yaml")
    args = ["fit", "-c", "base", "--config", "loss/simple.yaml", "-c=configs/loss/simple.yaml", "--config=base",
            "--model.init_args.loss", "base"]
    assert cli.resolve_config_names(args) == ["fit", "-c", base, "--config", simple, f"-c={simple}",
                                              f"--config={base}", "--model.init_args.loss", "base"]
    (tmp_path / "base").write_text("seed_everything: 1\n")  # a file given by its path always wins
    assert cli.resolve_config_names(["-c", "base", "-c", "nothing/of/that/name"]) == [
        "-c", "base", "-c", "nothing/of/that/name"]
    assert cli.shipped_config("../cli.py") is None and cli.shipped_config("../README.md") is None


def test_a_missing_config_names_the_nearest_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cli.ConfigFileError, match=r"--config loss/simpel: no such file .* did you mean loss/simple"):
        cli.check_config_files(["fit", "-c", "loss/simpel"])
    with pytest.raises(cli.ConfigFileError, match=r"no shipped config of that name; cli.py configs lists them"):
        cli.check_config_files(["fit", "--config=nothing/near/this"])
    cli.check_config_files(["fit", "-c", str(cli.CONFIGS / "base.yaml")])  # a good file passes
