"""configs/experiments/grid_cpu3.yaml: three seeds of every cell the claim catalogue needs, grid_cpu's recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import cli
from scripts import claim_catalogue
from tests.conftest import ROOT
from scripts.runs import describe
from tests.test_reproduce import sweep

GRID = ROOT / "configs/experiments/grid_cpu3.yaml"


def resolved(args: list[str], capsys) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


LOSS_CONFIGS = {"configs/loss/contrastive.yaml": "contrastive", "configs/loss/hard_contrastive_alpha.yaml":
                "hard_contrastive", "configs/loss/simple.yaml": "simple", "configs/loss/hard_simple_alpha.yaml": "hard_simple"}


def test_grid_cpu3_names_three_seeds_of_every_catalogued_cell():
    """Fast: what each cell's arguments say (the slow test below resolves them through the CLI)."""
    grid = sweep.load_grid(GRID)
    seen = {}
    for cell in grid.cells:
        args = list(cell.pretrain)
        assert args[0] == "-c" and args[1] in LOSS_CONFIGS, cell.name
        flags = dict(a.split("=", 1) for a in args[2:])
        assert set(flags) <= {"--model.init_args.loss.init_args.temperature", "--seed_everything"}
        tau = flags.get("--model.init_args.loss.init_args.temperature")
        column = LOSS_CONFIGS[args[1]] + (f"_tau{float(tau)}" if tau is not None else "")
        assert cell.name == f"{column}_seed{flags['--seed_everything']}"
        seen.setdefault(column, set()).add(int(flags["--seed_everything"]))
    assert seen == {column: {0, 1, 2} for column in claim_catalogue.ALL_CELLS}


@pytest.mark.slow
def test_grid_cpu3_runs_three_seeds_of_every_catalogued_cell_on_grid_cpus_recipe(capsys):
    """Every cell resolves through the CLI (36 configs: about two minutes on two cores)."""
    grid = sweep.load_grid(GRID)
    reference = sweep.load_grid(ROOT / "configs/experiments/grid_cpu.yaml")
    assert grid.pretrain == reference.pretrain and grid.linear == reference.linear  # the same recipe and probes
    seen = {}
    for cell in grid.cells:
        config = resolved(["fit", *grid.pretrain, *cell.pretrain], capsys)
        assert config["data"]["init_args"]["train_subset"] == 4000
        assert config["data"]["init_args"]["test_subset"] == 1000
        assert config["trainer"]["max_epochs"] == 60
        loss = config["model"]["init_args"]["loss"]
        if "Hard" in loss["class_path"]:
            assert loss["init_args"]["alpha"] == 0.0819 and loss["init_args"]["num_negatives"] is None
        dataset, key, tau = describe(config)
        column = f"{key}_tau{float(tau)}" if tau is not None else key
        assert dataset == "cifar10" and cell.name == f"{column}_seed{config['seed_everything']}"
        seen.setdefault(column, set()).add(config["seed_everything"])
    assert seen == {column: {0, 1, 2} for column in claim_catalogue.ALL_CELLS}
    linear = sweep.linear_command(grid, grid.cells[0], Path("/tmp/cell"),
                                  sweep.parse_args([str(GRID), "--out", "/tmp/cells"]), Path("runs/x/last.ckpt"))
    assert "--model.init_args.lbfgs_probe=true" in linear and "--data.init_args.test_subset=1000" in linear


def test_every_grid_writes_to_its_own_folder():
    """The documented commands never share an --out folder between grids (the report would mix their cells)."""
    import re

    outs: dict[str, set[str]] = {}
    for path in [*ROOT.glob("configs/experiments/grid_*.yaml"), *ROOT.glob("docs/**/*.md"), ROOT / "README.md"]:
        for grid, out in re.findall(r"scripts/sweep\.py\s+(?:\S*/)?(grid_\w+)\.yaml\s+--out\s+(\S+)", path.read_text()):
            outs.setdefault(out, set()).add(grid)
    shared = {out: grids for out, grids in outs.items() if len(grids) > 1}
    assert not shared, f"grids sharing an output folder: {shared}"
