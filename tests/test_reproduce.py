"""The reproduction tooling: generated presets and grids, the sweep runner's skip/resume logic, the report.

The runner tests run real (tiny) pretrainings and linear evaluations of the shipped presets on
CIFAR-format files of real images: the small encoder, 2 epochs of 2 batches.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import cli
from scripts import runs
from tests.conftest import ROOT


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sweep = _script("sweep")
report = _script("report")
make_experiments = _script("make_experiments")

EXPERIMENTS = ROOT / "configs/experiments"
TINY = ["--trainer.limit_train_batches=2",
        "--trainer.enable_model_summary=false", "--data.init_args.verify_checksums=false",
        "--data.init_args.num_workers=0", "--data.init_args.eval_batch_size=128"]


def print_config(args: list[str], capsys) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def tiny_grid(path: Path, data_dir: Path, cells: list[dict], epochs: int = 2) -> Path:
    """A grid of the shipped presets shrunk to seconds: small encoder, CPU, 2 batches per epoch."""
    grid = {
        "name": "tiny",
        "pretrain": ["-c", "configs/base.yaml", "-c", "configs/model/small.yaml", "-c", "configs/trainer/cpu.yaml",
                     f"--trainer.max_epochs={epochs}", f"--data.init_args.data_dir={data_dir}",
                     "--data.init_args.batch_size=32",
                     "--model.init_args.encoder.init_args.head_norm=true",  # the CPU reproduction's head: the
                     *TINY],  # linear runs below rebuild it from the checkpoint
        "linear": ["-c", "configs/eval/linear.yaml", "-c", "configs/trainer/cpu.yaml", "--trainer.max_epochs=3",
                   "--model.init_args.optimizer.init_args.lr=1.0", f"--data.init_args.data_dir={data_dir}",
                   "--data.init_args.batch_size=64", *TINY],
        "cells": cells,
    }
    path.write_text(yaml.safe_dump(grid))
    return path


def preset_cell(name: str) -> dict:
    return {"name": name, "pretrain": ["-c", f"configs/experiments/{name}.yaml"]}


def run_sweep(grid: Path, out: Path, *extra: str) -> int:
    return sweep.main([str(grid), "--out", str(out), "--launcher", "inprocess", "--cache-features", "--wandb", "off",
                       *extra])


def files_and_mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and p.name != "runner.log"}


def last_row(metrics_csv: Path, key: str) -> dict[str, str]:
    with open(metrics_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(key)]
    assert rows, f"no {key} in {metrics_csv}"
    return rows[-1]


# ------------------------------------------------------------------ presets and grids
def test_generated_files_are_up_to_date():
    assert make_experiments.main(["--check"]) == 0, "run python scripts/make_experiments.py and commit the files"


def test_every_table1_cell_has_a_consistent_preset():
    paper = yaml.safe_load((EXPERIMENTS / "paper_table1.yaml").read_text())
    for dataset in ("cifar10", "cifar100", "svhn", "imagenet100"):
        assert len(paper["datasets"][dataset]["accuracy"]) == len(paper["columns"]) == 10
        for column in paper["columns"]:
            path = EXPERIMENTS / dataset / f"{column}.yaml"
            text = path.read_text()
            assert (f"python cli.py fit -c configs/base.yaml -c configs/data/{dataset}.yaml "
                    f"-c configs/experiments/{dataset}/{column}.yaml") in text
            preset = yaml.safe_load(text)
            loss = preset["model"]["init_args"]["loss"]
            loss_key = runs.loss_key(loss["class_path"])  # the class's catalogue key
            tau = loss["init_args"].get("temperature")
            assert (f"{loss_key}_tau{float(tau)}" if tau is not None else loss_key) == column
            if loss_key.startswith("hard"):
                assert loss["init_args"]["num_negatives"] == 4095
            names = {lg["init_args"]["name"] for lg in preset["trainer"]["logger"]}
            assert names == {f"{dataset}/{column}"}  # distinct per cell, same for every logger


@pytest.mark.parametrize("dataset, column", [("cifar10", "contrastive_tau0.07"), ("svhn", "hard_contrastive_tau0.7"),
                                             ("imagenet100", "simple")])
def test_presets_compose_with_base_and_data(capsys, dataset, column):
    config = print_config(["fit", "-c", str(ROOT / "configs/base.yaml"),
                           "-c", str(ROOT / f"configs/data/{dataset}.yaml"),
                           "-c", str(EXPERIMENTS / dataset / f"{column}.yaml")], capsys)
    model = config["model"]["init_args"]
    assert runs.describe(config) == (dataset, column.split("_tau")[0],
                                       float(column.split("_tau")[1]) if "_tau" in column else None)
    assert config["trainer"]["logger"][0]["class_path"].endswith("CSVLogger")
    assert config["trainer"]["logger"][0]["init_args"]["name"] == f"{dataset}/{column}"
    assert config["trainer"]["max_epochs"] == 200
    arch, decay = ("resnet50", 1e-4) if dataset == "imagenet100" else ("resnet18", 5e-4)
    assert model["encoder"]["init_args"]["arch"] == arch
    assert model["optimizer"]["init_args"]["weight_decay"] == decay
    if column.startswith("hard"):
        assert model["loss"]["init_args"]["num_negatives"] == 4095


def test_grids_name_existing_files_and_the_slurm_array_covers_table1():
    table1 = sweep.load_grid(EXPERIMENTS / "grid_table1.yaml")
    short = sweep.load_grid(EXPERIMENTS / "grid_short.yaml")
    assert len(table1.cells) == 40 and len(short.cells) == 7
    for grid in (table1, short):
        for args in [grid.pretrain, grid.linear, *[c.pretrain + c.linear for c in grid.cells]]:
            for flag, value in zip(args, args[1:]):
                if flag == "-c":
                    assert (ROOT / value).is_file(), value
    assert {c.name for c in short.cells} <= {c.name for c in table1.cells}
    array = re.search(r"^#SBATCH --array=0-(\d+)$", (ROOT / "scripts/slurm_sweep.sh").read_text(), re.M)
    assert array and int(array.group(1)) == len(table1.cells) - 1


def test_short_reproduction_command_keeps_the_cell_and_shortens_the_schedule(capsys, tmp_path):
    grid = sweep.load_grid(EXPERIMENTS / "grid_short.yaml")
    cell = next(c for c in grid.cells if c.name == "cifar10/hard_contrastive_tau1.0")
    opts = sweep.parse_args([str(EXPERIMENTS / "grid_short.yaml"), "--out", str(tmp_path), "--wandb", "off"])
    config = print_config(sweep.pretrain_command(grid, cell, tmp_path / cell.name, opts), capsys)
    assert runs.describe(config) == ("cifar10", "hard_contrastive", 1.0)
    assert config["trainer"]["max_epochs"] == 20
    assert config["model"]["init_args"]["scheduler"]["init_args"]["milestones"] == [16, 19]
    assert config["trainer"]["precision"] == "bf16-mixed"
    (logger,) = config["trainer"]["logger"]  # the runner's own logger replaces the preset's two
    assert logger["init_args"]["save_dir"] == str(tmp_path / cell.name)
    assert logger["init_args"]["name"] == "pretrain"

    opts = sweep.parse_args([str(EXPERIMENTS / "grid_short.yaml"), "--out", str(tmp_path), "--wandb", "offline"])
    config = print_config(sweep.linear_command(grid, cell, tmp_path / cell.name, opts, tmp_path / "x.ckpt"), capsys)
    csv_logger, wandb_logger = config["trainer"]["logger"]
    assert csv_logger["init_args"]["name"] == "linear"
    assert wandb_logger["init_args"]["name"] == cell.name and wandb_logger["init_args"]["job_type"] == "linear"
    assert wandb_logger["init_args"]["group"] == "short_reproduction"
    assert wandb_logger["init_args"]["mode"] == "offline" and not wandb_logger["init_args"]["offline"]
    assert config["model"]["init_args"]["cache_features"] is True
    assert config["data"]["init_args"]["batch_size"] == 256  # the paper's linear-evaluation batch


@pytest.mark.parametrize("choice, mode", [(None, None), ("offline", "offline"), ("online", "online")])
def test_the_runners_wandb_logger_follows_wandb_mode_unless_told(tmp_path, choice, mode):
    """By default (auto) the runner's W&B logger leaves the mode to WANDB_MODE, as cli.py's configs do."""
    grid = sweep.load_grid(EXPERIMENTS / "grid_short.yaml")
    cell = grid.cells[0]
    opts = sweep.parse_args([str(EXPERIMENTS / "grid_short.yaml"), "--out", str(tmp_path)]
                            + (["--wandb", choice] if choice else []))
    loggers = json.loads(sweep.logger_arg(tmp_path / cell.name, "pretrain", opts, grid, cell).split("=", 1)[1])
    assert [lg["class_path"].rsplit(".", 1)[1] for lg in loggers] == ["CSVLogger", "WandbLogger"]
    assert "offline" not in loggers[1]["init_args"]
    assert loggers[1]["init_args"].get("mode") == mode
    off = sweep.parse_args([str(EXPERIMENTS / "grid_short.yaml"), "--out", str(tmp_path), "--wandb", "off"])
    assert len(json.loads(sweep.logger_arg(tmp_path, "pretrain", off, grid, cell).split("=", 1)[1])) == 1


@pytest.mark.parametrize("order", ["loss first", "temperature first"])
def test_wandb_sweep_commands_give_the_same_config_in_either_order(capsys, order):
    sweep_utils = pytest.importorskip("wandb.sdk.launch.sweeps.utils")
    spec = yaml.safe_load((EXPERIMENTS / "sweep_wandb.yaml").read_text())
    params = spec["parameters"]
    hard = next(v for v in params["model.init_args.loss"]["values"] if "Hard" in v)
    point = {"model.init_args.loss": {"value": hard}, "model.init_args.loss.init_args.temperature": {"value": 0.3}}
    if order == "temperature first":
        point = dict(reversed(list(point.items())))
    flags = sweep_utils.create_sweep_command_args({"args": point})["args"]  # what the agent puts for ${args}
    command = [c for c in spec["command"] if not c.startswith("${")]
    assert command[0] == "fit" and spec["command"][-1] == "${args}" and spec["program"] == "cli.py"
    args = [str(ROOT / a) if a.startswith("configs/") else a for a in command] + flags
    config = print_config(args, capsys)
    loss = config["model"]["init_args"]["loss"]
    assert loss["class_path"].endswith("HardContrastiveLoss")
    assert loss["init_args"]["temperature"] == 0.3 and loss["init_args"]["num_negatives"] == 4095
    wandb_logger = config["trainer"]["logger"][1]
    assert wandb_logger["class_path"].endswith("WandbLogger") and not wandb_logger["init_args"]["offline"]
    assert wandb_logger["init_args"]["mode"] == "online"  # a sweep's runs join it online, whatever WANDB_MODE


def test_dry_run_prints_the_commands_and_runs_nothing(capsys, tmp_path):
    out = tmp_path / "out"
    assert sweep.main([str(EXPERIMENTS / "grid_table1.yaml"), "--out", str(out), "--index", "4", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "cli.py fit -c configs/base.yaml -c configs/data/cifar10.yaml -c configs/experiments/cifar10/simple.yaml" \
        in printed
    assert "configs/eval/linear.yaml" in printed and "--model.init_args.pretrained=" in printed
    assert "contrastive_tau" not in printed  # only cell 4
    assert not out.exists()


def test_bad_grids_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, message in [("cells: []", "no cells"), ("cells: [{name: a}, {name: a}]", "unique"),
                          ("cells: [{name: ../a}]", "relative folder"), ("cells: [{name: a, pretrain: x}]", "list"),
                          ("cell: []", "unknown keys")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            sweep.load_grid(bad)


# --------------------------------------------------------------------------- the runner
CELLS = ["cifar10/contrastive_tau0.07", "cifar10/hard_contrastive_tau1.0"]


@pytest.fixture(scope="module")
def tiny_sweep(cifar_small, tmp_path_factory):
    """Both cells of a 2-cell grid, pretrained and evaluated once by the runner (in this process)."""
    folder = tmp_path_factory.mktemp("sweep")
    grid = tiny_grid(folder / "grid.yaml", cifar_small, [preset_cell(c) for c in CELLS])
    assert run_sweep(grid, folder / "out") == 0
    return grid, folder / "out"


def test_runner_finishes_each_cell_in_its_own_folder(tiny_sweep):
    _, out = tiny_sweep
    for name in CELLS:
        cell = out / name
        marker = json.loads((cell / "finished.json").read_text())
        assert marker["pretrain_run"] == "pretrain/version_0" and marker["linear_run"] == "linear/version_0"
        assert (cell / marker["checkpoint"]).is_file()
        saved = yaml.safe_load((cell / "pretrain/version_0/config.yaml").read_text())
        expected = ("cifar10", "contrastive", 0.07) if "tau0.07" in name else ("cifar10", "hard_contrastive", 1.0)
        assert runs.describe(saved) == expected
        assert last_row(cell / "pretrain/version_0/metrics.csv", "val/uniformity")["epoch"] == "1"
        test_row = last_row(cell / "linear/version_0/metrics.csv", "test/top1_last")
        assert marker["test"]["test/top1_last"] == float(test_row["test/top1_last"])
        linear_config = yaml.safe_load((cell / "linear/version_0/config.yaml").read_text())
        assert linear_config["model"]["init_args"]["pretrained"] == str(cell / marker["checkpoint"])
        assert linear_config["model"]["init_args"]["cache_features"] is True


def test_rerun_skips_finished_cells(tiny_sweep):
    grid, out = tiny_sweep
    before = files_and_mtimes(out)
    assert run_sweep(grid, out) == 0
    assert files_and_mtimes(out) == before  # nothing written, nothing rerun
    for name in CELLS:
        assert (out / name / "runner.log").read_text().splitlines()[-1].endswith(
            f"skip {name}: finished ({out / name / 'finished.json'})")


def test_report_reads_back_the_runs_numbers(tiny_sweep, tmp_path):
    _, out = tiny_sweep
    assert report.main([str(out), "--out", str(tmp_path)]) == 0
    with open(tmp_path / "table1.csv", newline="") as f:
        rows = {r["cell"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(CELLS)
    table = (tmp_path / "table1.md").read_text()
    for name in CELLS:
        pretrain = last_row(out / name / "pretrain/version_0/metrics.csv", "val/uniformity")
        linear = last_row(out / name / "linear/version_0/metrics.csv", "test/top1_last")
        row = rows[name]
        for ours, logged in [("uniformity", "val/uniformity"), ("tolerance", "val/tolerance"),
                             ("pos_sim", "val/pos_sim"), ("neg_sim_10", "val/neg_sim_10")]:
            assert float(row[ours]) == float(pretrain[logged]), ours
        assert float(row["top1_last"]) == pytest.approx(100 * float(linear["test/top1_last"]), abs=1e-9)
        assert float(row["top1_best"]) == pytest.approx(100 * float(linear["test/top1_best"]), abs=1e-9)
        assert row["epochs"] == "2" and row["finished"] == "True"
        assert f"{float(pretrain['val/uniformity']):.3f} / " in table
        assert f"{100 * float(linear['test/top1_last']):.2f} / " in table
    assert float(rows[CELLS[0]]["paper_accuracy"]) == 79.75  # the paper's number beside ours
    assert "| top-1 last (%) | — / 79.75" not in table  # ours is there for tau 0.07 ...
    assert "— / 74.83" in table  # ... and the simple loss did not run: missing, not invented
    assert "No runs on CIFAR-100, SVHN, ImageNet-100" in table
    from PIL import Image

    pngs = sorted(tmp_path.glob("*.png"))
    assert {p.name for p in pngs} == {
        "fig3_relative_penalty.png", "fig4_uniformity_contrastive.png", "fig5_tolerance_contrastive.png",
        "fig6_uniformity_hard_contrastive.png", "fig7_tolerance_hard_contrastive.png",
        "fig8_similarities_cifar10.png", "fig9_accuracy.png", "trajectories.png", "uniformity_tolerance_cifar10.png"}
    assert (tmp_path / "claims.md").read_text().startswith("# The paper's claims")
    for png in pngs:
        with Image.open(png) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100


def test_compare_keeps_one_row_per_cell_in_the_patterns_order(tiny_sweep, tmp_path, capsys):
    compare = _script("compare")
    _, out = tiny_sweep
    # a copy of the tau-0.07 cell under another name: report.py would average the two, compare keeps both
    shutil.copytree(out / CELLS[0], tmp_path / "runs" / f"{CELLS[0]}_copy")
    for name in CELLS:
        shutil.copytree(out / name, tmp_path / "runs" / name)
    assert compare.main([str(tmp_path / "runs"), "--cells", "*hard*", "*tau0.07*", "--out", str(tmp_path / "cmp"),
                         "--metrics", "uniformity", "knn_top1"]) == 0
    with open(tmp_path / "cmp" / "cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["cell"] for r in rows] == [CELLS[1], CELLS[0], f"{CELLS[0]}_copy"]  # hard first: the patterns' order
    for row in rows:
        source = out / row["cell"].removesuffix("_copy")
        pretrain = last_row(source / "pretrain/version_0/metrics.csv", "val/uniformity")
        linear = last_row(source / "linear/version_0/metrics.csv", "test/top1_last")
        assert row["uniformity"] == f"{float(pretrain['val/uniformity']):.3f}"
        assert row["knn_top1"] == f"{100 * float(pretrain['val/knn_top1']):.1f}"
        assert row["top1_last"] == f"{100 * float(linear['test/top1_last']):.1f}"
        assert row["top1_lbfgs"] == ""  # the tiny grid runs no L-BFGS probe: empty, never filled in
        assert row["epochs"] == "2"
    assert (tmp_path / "cmp" / "cells.md").read_text().count("\n") == 2 + len(rows)
    assert (tmp_path / "cmp" / "trajectories.png").stat().st_size > 1000
    assert compare.main([str(tmp_path / "runs"), "--cells", "*simple*", "--out", str(tmp_path / "none")]) == 1
    assert "no finished cell" in capsys.readouterr().err


def copy_cell(source: Path, dest: Path, seed: int, **changes) -> Path:
    """A copy of a finished cell under another name, its pretraining config given another seed (and ``changes``:
    dotted path -> value), as if that recipe had run."""
    shutil.copytree(source, dest)
    path = dest / "pretrain/version_0/config.yaml"
    config = yaml.safe_load(path.read_text())
    config["seed_everything"] = seed
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(config))
    return dest


def test_report_averages_only_runs_of_one_recipe_and_counts_each_number(tiny_sweep, tmp_path):
    """Issue 16 item 5: other recipes are separate columns named by what differs; a count per number."""
    _, out = tiny_sweep
    root = tmp_path / "runs"
    copy_cell(out / CELLS[0], root / "a", seed=0)
    copy_cell(out / CELLS[0], root / "b", seed=1)  # another seed of the same recipe: averaged with a
    copy_cell(out / CELLS[0], root / "c", seed=2, **{"data.init_args.batch_size": 64})  # another recipe
    (copy_cell(out / CELLS[0], root / "d", seed=3) / "finished.json").unlink()  # a third seed, no accuracy yet
    assert report.main([str(root), "--out", str(tmp_path / "r"), "--include-unfinished", "--no-figures"]) == 0
    with open(tmp_path / "r/table1.csv", newline="") as f:
        rows = {r["cell"]: r for r in csv.DictReader(f)}
    assert rows["a"]["column"] == rows["b"]["column"] == rows["d"]["column"] == "contrastive_tau0.07[batch_size=32]"
    assert rows["c"]["column"] == "contrastive_tau0.07[batch_size=64]"
    assert [rows[c]["runs_in_group"] for c in "abcd"] == ["3", "3", "1", "3"]
    assert (rows["c"]["differs"], rows["d"]["finished"], rows["d"]["top1_last"]) == ("data.batch_size=64", "False", "")
    table = (tmp_path / "r/table1.md").read_text()
    accuracy, uniformity = float(rows["a"]["top1_last"]), float(rows["a"]["uniformity"])
    assert f"| {accuracy:.2f} (mean of 2 of 3 runs: {accuracy:.2f}-{accuracy:.2f}) / 79.75 | " in table
    assert f"| {accuracy:.2f} / 79.75 |" in table  # c: its one run
    assert f"{uniformity:.3f} (mean of 3: {uniformity:.3f}-{uniformity:.3f}) / 3.86" in table
    assert "contrastive loss (Eq 1) τ=0.07 [batch_size=64]" in table
    assert "- contrastive_tau0.07[batch_size=64]: data.batch_size = 64" in table
    claims_md = (tmp_path / "r/claims.md").read_text()
    assert "contrastive_tau0.07[batch_size=32]" not in claims_md.split("Not compared")[1]  # the family compared
    assert "- contrastive_tau0.07[batch_size=64]: data.batch_size = 64" in claims_md.split("Not compared")[1]


def test_the_recipe_leaves_out_only_what_seeds_of_one_cell_may_change_and_groups_follow_it():
    config = {"seed_everything": 3, "ckpt_path": "a/last.ckpt",
              "trainer": {"max_epochs": 2, "default_root_dir": "runs/a", "logger": [{"init_args": {"name": "a"}}],
                          "callbacks": [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                                         "init_args": {"dirpath": "a/ckpt", "every_n_epochs": 1}},
                                        {"class_path": "pytorch_lightning.callbacks.TQDMProgressBar"}]},
              "model": {"init_args": {"loss": {"class_path": "lightning_modules.losses.ContrastiveLoss",
                                               "init_args": {"temperature": 0.2}}}},
              "data": {"class_path": "datamodules.cifar.CIFAR10DataModule", "init_args": {"data_dir": "data/a"}}}
    recipe = runs.recipe(config)
    assert recipe == {"trainer": {"max_epochs": 2, "callbacks": [{
        "class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"every_n_epochs": 1}}]},
        "model": config["model"], "data": config["data"]}  # the data folder is part of the recipe
    # how the metrics are computed is not the recipe (the same values): runs from before `overlap` existed group
    # with runs that have it
    metrics = {"class_path": "callbacks.EmbeddingMetrics", "init_args": {"knn_k": 200, "prefetch_views": True}}
    newer = {"class_path": "callbacks.EmbeddingMetrics",
             "init_args": {"knn_k": 200, "prefetch_views": False, "overlap": None}}
    assert runs.recipe({"trainer": {"callbacks": [metrics]}}) == runs.recipe({"trainer": {"callbacks": [newer]}})
    assert runs.recipe({"trainer": {"callbacks": [metrics]}}) != runs.recipe(
        {"trainer": {"callbacks": [{**newer, "init_args": {"knn_k": 50}}]}})  # what is measured still counts

    def run(name: str, seed: int, epochs: int = 2, **changes) -> runs.Run:
        flat = {"trainer.max_epochs": 2, "data.init_args.data_dir": "data/a", **changes}
        tree: dict = {}
        for dotted, value in flat.items():
            *parents, last = dotted.split(".")
            node = tree
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        return runs.Run(name, Path(name), "cifar10", "contrastive", 0.2, seed, tree, epochs == 2, epochs)

    groups = runs.group_runs([run("a", 0), run("b", 1), run("c", 2, **{"data.init_args.data_dir": "data/b"}),
                              run("d", 0, **{"trainer.max_epochs": 4}), run("e", 1, epochs=1)])
    by_key = {g.key: sorted(r.name for r in g.runs) for g in groups}
    assert by_key == {"contrastive_tau0.2[epochs=2,2 epochs done,data_dir=data/a]": ["a", "b"],
                      "contrastive_tau0.2[epochs=2,2 epochs done,data_dir=data/b]": ["c"],
                      "contrastive_tau0.2[epochs=4,2 epochs done,data_dir=data/a]": ["d"],
                      "contrastive_tau0.2[epochs=2,1 epochs done,data_dir=data/a]": ["e"]}
    (ab,) = [g for g in groups if len(g.runs) == 2]
    assert ab.differs == {"trainer.max_epochs": 2, "epochs done": 2, "data.data_dir": "data/a"}
    assert [g.key for g in runs.group_runs([run("a", 0), run("b", 1)])] == ["contrastive_tau0.2"]  # no suffix alone
    other = run("f", 0, **{"data.class_path": "datamodules.cifar.CIFAR100DataModule"})
    other.dataset = "cifar100"
    two = runs.group_runs([run("a", 0, **{"data.class_path": "datamodules.cifar.CIFAR10DataModule"}), other])
    assert [(g.key, g.suffix) for g in two] == [("contrastive_tau0.2[cifar10]", ""), ("contrastive_tau0.2[cifar100]", "")]


def test_report_writes_no_empty_figure_and_lists_the_claims_it_cannot_test(tiny_sweep, tmp_path):
    _, out = tiny_sweep
    shutil.copytree(out / CELLS[1], tmp_path / "runs" / CELLS[1])  # the hard loss alone
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "r")]) == 0
    assert {p.name for p in (tmp_path / "r").glob("*.png")} == {
        "fig3_relative_penalty.png", "fig6_uniformity_hard_contrastive.png", "fig7_tolerance_hard_contrastive.png",
        "fig8_similarities_cifar10.png", "fig9_accuracy.png", "trajectories.png",
        "uniformity_tolerance_cifar10.png"}  # no contrastive run: no Figs 4-5
    claims_md = (tmp_path / "r/claims.md").read_text()
    assert "**holds**" not in claims_md and "not resolved" not in claims_md  # one cell: nothing tested
    assert "| not tested: missing contrastive_tau0.07, contrastive_tau0.2, contrastive_tau0.3" in claims_md
    assert "hard_contrastive_tau0.07, hard_contrastive_tau1.0 (top1_lbfgs) |" in claims_md  # no L-BFGS probe here


def test_figures_has_a_command_line_and_report_says_which_folder(tiny_sweep, tmp_path, capsys):
    done = subprocess.run([sys.executable, str(ROOT / "scripts/figures.py"), "--help"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("usage: figures.py") and "--out" in done.stdout
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--help"])
    assert exit_info.value.code == 0
    said = capsys.readouterr().out
    assert "save_dir" in said and "runs/pretrain" in said  # where cli.py's runs are
    figures = _script("figures")
    _, out = tiny_sweep
    assert figures.main([str(out), "--out", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f/fig4_uniformity_contrastive.png").is_file() and not (tmp_path / "f/table1.md").exists()
    assert figures.main([str(tmp_path), "--out", str(tmp_path / "g")]) == 1
    assert "error: no finished run" in capsys.readouterr().err


def test_lost_linear_evaluation_is_redone_alone(tiny_sweep, tmp_path):
    grid, original = tiny_sweep
    out = tmp_path / "out"
    shutil.copytree(original, out)  # markers hold paths relative to the cell: a copy stays valid
    cell = out / CELLS[0]
    old = json.loads((cell / "finished.json").read_text())
    (cell / "finished.json").unlink()
    shutil.rmtree(cell / "linear" / "version_0" / "checkpoints")  # an evaluation killed half-way
    before = files_and_mtimes(out)

    # meanwhile the report shows that cell's accuracy as missing, and only with --include-unfinished
    assert report.main([str(out), "--out", str(tmp_path / "partial"), "--include-unfinished", "--no-figures"]) == 0
    with open(tmp_path / "partial/table1.csv", newline="") as f:
        rows = {r["cell"]: r for r in csv.DictReader(f)}
    assert rows[CELLS[0]]["finished"] == "False" and rows[CELLS[0]]["top1_last"] == ""
    assert rows[CELLS[0]]["uniformity"] != ""

    assert run_sweep(grid, out) == 0
    after = files_and_mtimes(out)
    redone = f"{CELLS[0]}/linear", f"{CELLS[0]}/finished.json"
    assert {k: v for k, v in after.items() if not k.startswith(redone)} == \
        {k: v for k, v in before.items() if not k.startswith(redone)}  # no pretraining reran
    assert {k: v for k, v in after.items() if k.startswith(CELLS[1])} == \
        {k: v for k, v in before.items() if k.startswith(CELLS[1])}  # the other cell untouched
    log = (cell / "runner.log").read_text()
    assert "removing the unfinished" in log and log.count("pretrain " + CELLS[0]) == 2  # start + finished, once
    new = json.loads((cell / "finished.json").read_text())
    assert new["linear_run"] == "linear/version_0" and new["checkpoint"] == old["checkpoint"]
    assert new["test"] == pytest.approx(old["test"])  # the same evaluation of the same checkpoint


def test_a_finished_pretraining_without_its_marker_goes_on_to_the_evaluation(tiny_sweep, tmp_path):
    """The runner killed between the pretraining's end and its marker: the checkpoint says finished."""
    grid, original = tiny_sweep
    out = tmp_path / "out"
    shutil.copytree(original, out)
    cell = out / CELLS[0]
    old = json.loads((cell / "finished.json").read_text())
    (cell / "finished.json").unlink()
    (cell / "pretrain" / "finished.json").unlink()
    shutil.rmtree(cell / "linear")
    checkpoint = cell / old["checkpoint"]
    stamp = checkpoint.stat().st_mtime_ns
    assert sweep.cell_state(cell) == "resume"

    assert run_sweep(grid, out, "--index", "0") == 0  # before: cli.py refused the finished run, FAILED each call
    assert checkpoint.stat().st_mtime_ns == stamp  # no pretraining reran
    assert "counted finished from its checkpoint" in (cell / "runner.log").read_text()
    new = json.loads((cell / "finished.json").read_text())
    assert new["checkpoint"] == old["checkpoint"] and new["test"] == pytest.approx(old["test"])


def test_interrupted_pretraining_resumes_from_last_ckpt(tiny_sweep, tmp_path):
    grid_path, original = tiny_sweep
    grid = sweep.load_grid(grid_path)
    out = tmp_path / "out"
    opts = sweep.parse_args([str(grid_path), "--out", str(out)])
    cell = out / CELLS[0]
    # the runner's own pretraining command, stopped after epoch 1 of 2: last.ckpt and no marker
    cli.main(sweep.pretrain_command(grid, grid.cells[0], cell, opts) + ["--trainer.max_epochs=1"])
    assert sweep.cell_state(cell) == "resume"

    assert run_sweep(grid_path, out, "--index", "0") == 0
    first = cell / "pretrain/version_0/checkpoints/last.ckpt"
    assert f"resume from {first}" in (cell / "runner.log").read_text()
    assert not (cell / "pretrain/version_1").exists()  # the resumed part continues the run's own folder
    with open(cell / "pretrain/version_0/metrics.csv", newline="") as f:
        epochs = [r["epoch"] for r in csv.DictReader(f) if r.get("val/uniformity")]
    assert epochs == ["-1", "0", "1"]  # one row an epoch: one run
    resumed = torch.load(first, map_location="cpu", weights_only=False)
    assert resumed["global_step"] == 4  # 2 epochs x 2 batches in all, not 2 + 4
    assert json.loads((cell / "finished.json").read_text())["pretrain_run"] == "pretrain/version_0"
    # bank, optimiser, sampler and augmentation seeds restored: the same numbers as the uninterrupted run
    uninterrupted = last_row(original / CELLS[0] / "pretrain/version_0/metrics.csv", "val/uniformity")
    again = last_row(cell / "pretrain/version_0/metrics.csv", "val/uniformity")
    for key in ("train/loss_epoch", "val/uniformity", "val/tolerance"):
        assert again[key] == uninterrupted[key], key
    assert not (out / CELLS[1]).exists()  # --index 0 ran cell 0 only


def test_a_pretraining_is_finished_only_when_its_checkpoint_says_so(tmp_path):
    def checkpoint(done: int, planned: int, pending: dict | None = None) -> Path:
        path = tmp_path / f"{done}-{planned}-{bool(pending)}.ckpt"
        torch.save({"run": {"epochs_completed": done, "max_epochs": planned},
                    "callbacks": {"EmbeddingMetrics": {"pending": pending}}}, path)
        return path

    assert sweep.pretraining_finished(checkpoint(5, 5)) == (True, "5 of 5 epochs")
    assert sweep.pretraining_finished(checkpoint(1, 5))[0] is False  # stopped early: exit status 0 or not
    assert sweep.pretraining_finished(checkpoint(5, 5, {"epoch": 4, "step": 9}))[0] is False  # last metrics lost
    torch.save({"epoch": 4}, tmp_path / "old.ckpt")
    assert sweep.pretraining_finished(tmp_path / "old.ckpt") == (False, f"{tmp_path / 'old.ckpt'} records no epoch count")
    assert sweep.pretraining_finished(None) == (False, "no last.ckpt")


@pytest.mark.slow  # three cli.py processes
def test_sigterm_mid_epoch_stops_the_sweep_and_the_next_call_ends_as_uninterrupted(tiny_sweep, tmp_path):
    grid, original = tiny_sweep
    out = tmp_path / "out"
    signal_at = json.dumps({"class_path": "tests.interrupt.SignalAt", "init_args": {"signum": 15, "epoch": 1,
                                                                                     "batch": 0}})
    command = [sys.executable, str(ROOT / "scripts/sweep.py"), str(grid), "--out", str(out), "--cache-features",
               "--wandb", "off", "--index", "0"]
    stopped = subprocess.run([*command, "--pretrain-args", f"--trainer.callbacks+='{signal_at}'"],
                             capture_output=True, text=True, timeout=900)
    cell = out / CELLS[0]
    assert stopped.returncode == 143, stopped.stdout[-2000:] + stopped.stderr[-2000:]  # today: 0, the cell "done"
    assert not (cell / "pretrain/finished.json").exists() and not (cell / "finished.json").exists()
    assert "INTERRUPTED pretrain" in (cell / "runner.log").read_text()
    assert "error: interrupted by SIGTERM during epoch 1 of 2" in (cell / "pretrain.out").read_text()
    assert sweep.cell_state(cell) == "resume"
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    marker, reference = (json.loads((c / "finished.json").read_text()) for c in (cell, original / CELLS[0]))
    assert marker["test"] == reference["test"]  # exactly: resume is bit-exact
    ours = last_row(cell / "pretrain/version_0/metrics.csv", "val/uniformity")
    theirs = last_row(original / CELLS[0] / "pretrain/version_0/metrics.csv", "val/uniformity")
    assert {k: v for k, v in ours.items() if k.startswith("val/")} == \
        {k: v for k, v in theirs.items() if k.startswith("val/")}


def test_a_failing_cell_is_logged_and_the_grid_goes_on(cifar_small, tmp_path):
    cells = [{"name": "bad_tau", "pretrain": ["--model.init_args.loss.init_args.temperature=-1"]},
             {"name": "bad_arg", "pretrain": ["--model.init_args.no_such_argument=1"]}]
    grid = tiny_grid(tmp_path / "grid.yaml", cifar_small, cells)
    assert run_sweep(grid, tmp_path / "out") == 1
    for name in ("bad_tau", "bad_arg"):
        assert "FAILED pretrain" in (tmp_path / "out" / name / "runner.log").read_text()
        assert sweep.cell_state(tmp_path / "out" / name) == "new"


def test_subprocess_launcher_runs_a_cell_end_to_end(cifar_small, tmp_path):
    grid = tiny_grid(tmp_path / "grid.yaml", cifar_small, [preset_cell("cifar10/simple")], epochs=1)
    done = subprocess.run([sys.executable, str(ROOT / "scripts/sweep.py"), str(grid), "--out", str(tmp_path / "out"),
                           "--cache-features", "--wandb", "off"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cell = tmp_path / "out/cifar10/simple"
    marker = json.loads((cell / "finished.json").read_text())
    assert marker["commands"]["pretrain"].split()[1:3] == ["cli.py", "fit"]
    assert "Seed set to 0" in (cell / "pretrain.out").read_text()  # each run's output in the cell's folder
    assert "test/top1_last" in (cell / "linear.out").read_text()


def test_wandb_reader_pairs_pretraining_and_linear_runs(tiny_sweep, monkeypatch):
    """The W&B branch of the report against a stand-in for the API (the real one needs the network)."""
    wandb = pytest.importorskip("wandb")
    _, out = tiny_sweep
    saved = yaml.safe_load((out / CELLS[0] / "pretrain/version_0/config.yaml").read_text())

    class Run:
        def __init__(self, name, job_type, summary, config=None, state="finished"):
            self.name, self.job_type, self.summary, self.state = name, job_type, summary, state
            self.config, self.path = {"config": config} if config else {}, ["me", "project", name]

    fake = [Run(CELLS[0], "linear", {"test/top1_last": 0.5, "test/top1_best": 0.625}),
            Run(CELLS[0], "pretrain", {"val/uniformity": 3.5, "val/tolerance": 0.2, "epoch": 199}, saved),
            Run("crashed", "pretrain", {"val/uniformity": 1.0}, saved, state="crashed")]
    monkeypatch.setattr(wandb, "Api", lambda: type("Api", (), {"runs": lambda self, path, filters: fake})())
    (cell,) = runs.find_wandb_runs("project", None, "tiny")
    assert (cell.name, cell.dataset, cell.loss, cell.temperature, cell.epochs, cell.seed, cell.finished) == \
        (CELLS[0], "cifar10", "contrastive", 0.07, 200, 0, True)
    assert runs.quantities(cell)["top1_best"] == 62.5 and runs.quantities(cell)["uniformity"] == 3.5


def test_report_joins_resumed_versions_and_drops_abandoned_ones(tmp_path):
    def write(version: int, rows: list[tuple[int, float]]) -> Path:
        run = tmp_path / f"version_{version}"
        run.mkdir()
        lines = ["epoch,step,val/uniformity"] + [f"{epoch},{epoch},{value}" for epoch, value in rows]
        (run / "metrics.csv").write_text("\n".join(lines) + "\n")
        return run

    abandoned = write(0, [(0, 1.0), (1, 1.5), (2, 1.75)])  # died before its first checkpoint
    fresh = write(1, [(0, 2.0), (1, 2.5)])  # the runner started again: it ran to a checkpoint at epoch 1
    resumed = write(2, [(2, 3.0)])  # and resumed from it
    assert runs.last_epoch_values([abandoned, fresh, resumed]) == (3, {"val/uniformity": 3.0})
    assert runs.last_epoch_values([abandoned, fresh]) == (2, {"val/uniformity": 2.5})
    # the trajectory figure follows the same versions: the abandoned run's epoch 2 is gone
    assert runs.trajectory([abandoned, fresh, resumed]) == \
        {0: {"val/uniformity": 2.0}, 1: {"val/uniformity": 2.5}, 2: {"val/uniformity": 3.0}}
    assert runs.trajectory([abandoned, fresh]) == {0: {"val/uniformity": 2.0}, 1: {"val/uniformity": 2.5}}


@pytest.mark.parametrize("grid_name", ["grid_cpu.yaml", "grid_early_phase.yaml", "grid_cpu_accuracy.yaml"])
def test_cpu_grids_resolve_every_cell(grid_name, capsys):
    """Each cell's pretraining and linear arguments parse (a null on the command line, say, would not)."""
    grid = sweep.load_grid(EXPERIMENTS / grid_name)
    for cell in grid.cells:
        pretrain = print_config(["fit", *grid.pretrain, *cell.pretrain], capsys)
        assert pretrain["data"]["init_args"]["train_subset"] == 4000
        assert pretrain["data"]["init_args"]["test_subset"] == 1000
        loss = pretrain["model"]["init_args"]["loss"]
        if "Hard" in loss["class_path"]:
            assert loss["init_args"]["alpha"] == 0.0819 and loss["init_args"]["num_negatives"] is None
        if cell.name.endswith("_lrscaled"):  # the step size lr/tau of grid_cpu's tau-0.07 cell
            lr = pretrain["model"]["init_args"]["optimizer"]["init_args"]["lr"]
            assert lr / loss["init_args"]["temperature"] == pytest.approx(0.03 / 0.07, rel=2e-3)  # lr to 3 digits
        longer = re.search(r"_ep(\d+)(_|$)", cell.name)
        if longer:  # grid_cpu's recipe run longer: the lr drops at the same fractions, 80% and 95%
            epochs = int(longer.group(1))
            assert pretrain["trainer"]["max_epochs"] == epochs
            assert pretrain["model"]["init_args"]["scheduler"]["init_args"]["milestones"] == \
                [round(0.8 * epochs), round(0.95 * epochs)]
    fake_ckpt = "runs/x/last.ckpt"
    linear = sweep.linear_command(grid, grid.cells[0], Path("/tmp/cell"), sweep.parse_args([str(EXPERIMENTS / grid_name), "--out", "/tmp/cells"]),
                                  Path(fake_ckpt))
    assert "--model.init_args.lbfgs_probe=true" in linear and "--data.init_args.train_subset=4000" in linear


def test_report_reads_plain_cli_runs_and_says_what_it_looked_for(cifar_small, tmp_path, capsys):
    """Runs of `python cli.py fit` (no sweep) are reported: the linear run is matched to its pretraining."""
    from tests.conftest import quick_args

    runs = tmp_path / "runs"
    assert report.main([str(tmp_path), "--out", str(tmp_path / "empty")]) == 1  # nothing there yet
    said = capsys.readouterr().err
    assert "no finished run found" in said and "finished.json" in said and "--model.init_args.pretrained" in said
    assert not (tmp_path / "empty" / "table1.md").exists()

    cli.main(quick_args(cifar_small, runs, "--model.init_args.loss.init_args.temperature=0.3", epochs=1))
    ckpt = runs / "pretrain/version_0/checkpoints/last.ckpt"
    assert report.main([str(runs), "--out", str(tmp_path / "pretrain_only")]) == 1  # no accuracy yet
    assert report.main([str(runs), "--out", str(tmp_path / "partial"), "--include-unfinished", "--no-figures"]) == 0
    cli.main(["fit", "-c", str(ROOT / "configs/eval/linear.yaml"), "-c", str(ROOT / "configs/logger/csv.yaml"),
              "-c", str(ROOT / "configs/trainer/cpu.yaml"), f"--model.init_args.pretrained={ckpt}",
              f"--trainer.default_root_dir={runs}", f"--trainer.logger.init_args.save_dir={runs}",
              "--trainer.max_epochs=1", "--model.init_args.cache_features=true", *TINY[1:],
              f"--data.init_args.data_dir={cifar_small}"])
    moved = tmp_path / "moved"
    shutil.copytree(runs, moved)  # the configs still name the old place: matched by <name>/version_N
    for root in (runs, moved):
        out = tmp_path / f"report_{root.name}"
        assert report.main([str(root), "--out", str(out), "--no-figures"]) == 0
        with open(out / "table1.csv", newline="") as f:
            (row,) = list(csv.DictReader(f))
        assert row["cell"] == "pretrain/version_0 + linear/version_0" and row["finished"] == "True"
        linear = last_row(root / "linear/version_0/metrics.csv", "test/top1_last")
        pretrain = last_row(root / "pretrain/version_0/metrics.csv", "val/uniformity")
        assert float(row["top1_last"]) == pytest.approx(100 * float(linear["test/top1_last"]), abs=1e-9)
        assert float(row["uniformity"]) == float(pretrain["val/uniformity"])
        assert "contrastive" in (out / "table1.md").read_text()
