"""Write the Table 1 presets and the runner's grids under ``configs/experiments/``.

    python scripts/make_experiments.py           # (re)write the generated files
    python scripts/make_experiments.py --check   # exit 1 if a committed file differs from what this writes

One preset per Table 1 cell, ``configs/experiments/<dataset>/<cell>.yaml``, composed on top of
``configs/base.yaml`` and ``configs/data/<dataset>.yaml``. A preset holds only what the cell
changes: the loss (copied from ``configs/loss/``, with the cell's tau), the backbone and weight
decay of ImageNet-100 (copied from ``configs/model/resnet50.yaml``) and base.yaml's loggers
renamed after the cell. Copying from the shipped files, not restating values, keeps the presets
in step with them: rerun this script after changing one of them.

The grids (``grid_*.yaml``) list cells for ``scripts/sweep.py``. The cells are the columns of
``configs/experiments/paper_table1.yaml`` (the paper's numbers); what each column's loss is (its title,
whether it selects hard negatives, its preset ``configs/loss/<key>.yaml``) is read from the loss class
whose catalogue ``key`` the column names (``lightning_modules.losses.loss_classes``).
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lightning_modules.losses import ContrastiveLossBase  # noqa: E402
from scripts.catalogue import loss_class, paper_columns, paper_table, parse_column  # noqa: E402

EXPERIMENTS = Path("configs/experiments")
HARD_NEGATIVES = 4095  # "the nearest 4095 negatives" (section 5.1), the same count on every dataset


@dataclass(frozen=True)
class Dataset:
    title: str
    train_size: int  # official training-split size: the memory bank's N
    paper_alpha: float  # alpha as printed in section 5.1
    model_config: str | None = None  # a configs/model/ file merged into the preset
    exact_size: bool = True  # train_size is the official count (else an approximation, for the header only)


DATASETS = {
    "cifar10": Dataset("CIFAR-10", 50_000, 0.0819),
    "cifar100": Dataset("CIFAR-100", 50_000, 0.0819),
    "svhn": Dataset("SVHN", 73_257, 0.0315),
    # CMC's ImageNet-100 split: about 126.7k training images (the datamodule counts them)
    "imagenet100": Dataset("ImageNet-100", 126_689, 0.034, "configs/model/resnet50.yaml", exact_size=False),
}


#: a loss class of the catalogue (``key``, ``title``, ``tempered``, ``hard``)
Loss = type[ContrastiveLossBase]

# the short reproduction: enough cells for the qualitative claims (see short_reproduction.yaml)
SHORT_CELLS = ("contrastive_tau0.07", "contrastive_tau0.3", "contrastive_tau0.7", "contrastive_tau1.0",
               "hard_contrastive_tau0.07", "hard_contrastive_tau1.0", "simple")


def cell_name(loss: Loss, tau: float | None) -> str:
    """``contrastive_tau0.3``, ``simple``: the Table 1 column key (and preset file stem)."""
    return f"{loss.key}_tau{float(tau)}" if tau is not None else loss.key


def cells() -> list[tuple[Loss, float | None]]:
    """The ten columns of Table 1, in the paper's order: (the loss class the column's key names, tau)."""
    out: list[tuple[Loss, float | None]] = []
    for column in paper_columns():
        key, tau = parse_column(column)
        loss = loss_class(key)
        if loss is None:
            raise ValueError(f"paper_table1.yaml's column {column!r}: no loss class declares key {key!r} "
                             "(lightning_modules.losses.loss_classes)")
        if loss.tempered != (tau is not None):
            raise ValueError(f"paper_table1.yaml's column {column!r}: {loss.__name__}.tempered is {loss.tempered}")
        out.append((loss, tau))
    return out


def load(path: str | Path) -> dict:
    with open(ROOT / path) as f:
        return yaml.safe_load(f)


def renamed_loggers(run_name: str, dataset: str, loss: Loss) -> list[dict]:
    """base.yaml's logger list with the cell's run name (a list in a later -c file replaces the whole list)."""
    loggers = copy.deepcopy(load("configs/base.yaml")["trainer"]["logger"])
    for logger in loggers:
        args = logger.setdefault("init_args", {})
        args["name"] = run_name
        if logger["class_path"].endswith("WandbLogger"):
            args.update(group=f"table1-{dataset}", job_type="pretrain", tags=["table1", dataset, loss.key])
    return loggers


def preset(dataset: str, loss: Loss, tau: float | None) -> dict:
    loss_block = copy.deepcopy(load(f"configs/loss/{loss.key}.yaml")["model"]["init_args"]["loss"])
    init_args = loss_block.setdefault("init_args", {})
    if tau is not None:
        init_args["temperature"] = tau
    if loss.hard:
        init_args.update(num_negatives=HARD_NEGATIVES)
        init_args.pop("alpha", None)
    model_args: dict = {}
    if DATASETS[dataset].model_config:
        model_args.update(copy.deepcopy(load(DATASETS[dataset].model_config)["model"]["init_args"]))
    model_args["loss"] = loss_block
    name = f"{dataset}/{cell_name(loss, tau)}"
    return {"model": {"init_args": model_args}, "trainer": {"logger": renamed_loggers(name, dataset, loss)}}


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def preset_header(dataset: str, loss: Loss, tau: float | None, path: Path) -> str:
    ds = DATASETS[dataset]
    name = cell_name(loss, tau)
    paper = paper_table().get(dataset, {}).get(name, {})
    what = f"{ds.title}, {loss.title}" + (f", tau = {tau:g}" if tau is not None else "")
    lines = [f"# Table 1 cell: {what}."]
    if loss.hard:
        alpha = HARD_NEGATIVES / ds.train_size
        size = f"{ds.train_size:,}" if ds.exact_size else f"~{ds.train_size:,}"
        same = abs(alpha - ds.paper_alpha) < 0.005
        lines.append(f"# Negatives: the nearest {HARD_NEGATIVES} of the memory bank, alpha = {HARD_NEGATIVES}/{size} = "
                     f"{alpha:.4f}" + ("." if same else
                                       f"; the paper prints alpha = {ds.paper_alpha} "
                                       f"({round(ds.paper_alpha * ds.train_size):,} negatives) beside \"4095\"."))
    if ds.model_config:
        lines.append(f"# Backbone and weight decay of {ds.model_config} (ResNet-50, 1e-4), "
                     "as the paper's ImageNet-100 runs.")
    lines.append(f"# Paper: linear top-1 {fmt(paper.get('accuracy'))}, -L_uniformity {fmt(paper.get('uniformity'))}, "
                 f"tolerance {fmt(paper.get('tolerance'))}.")
    lines += [
        "# Generated by scripts/make_experiments.py from configs/loss/, configs/model/ and base.yaml's loggers:",
        "# edit the script (or those files) and rerun it, not this file.",
        f"#   python cli.py fit -c configs/base.yaml -c configs/data/{dataset}.yaml -c {path.as_posix()}",
        f"# The run lands in runs/{dataset}/{name}/version_N/; linear evaluation as in configs/eval/linear.yaml,",
        "# or both steps with scripts/sweep.py configs/experiments/grid_table1.yaml (docs/reproduce.md).",
    ]
    return "\n".join(lines) + "\n"


def dump(data: dict) -> str:
    # flow style for the innermost mappings and lists ({temperature: 0.3}), block style above them
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)


def linear_args(dataset: str) -> list[str]:
    # the data config after linear.yaml: the dataset changes, the batch (256, linear.yaml's) does not
    return ["-c", f"configs/data/{dataset}.yaml"]


def grid_table1() -> tuple[str, dict]:
    cell_list = []
    for dataset in DATASETS:
        for loss, tau in cells():
            name = cell_name(loss, tau)
            cell_list.append({
                "name": f"{dataset}/{name}",
                "pretrain": ["-c", f"configs/data/{dataset}.yaml",
                             "-c", f"{EXPERIMENTS.as_posix()}/{dataset}/{name}.yaml"],
                "linear": linear_args(dataset),
            })
    header = (
        f"# The {len(cell_list)} cells of Table 1 ({len(DATASETS)} datasets x {len(cells())} losses), "
        "the paper's full recipe:\n"
        "# 200 pretraining epochs, then the paper's linear evaluation (100 epochs, augmented, lr 30).\n"
        "#   python scripts/sweep.py configs/experiments/grid_table1.yaml --out runs/table1            # all, in turn\n"
        "#   python scripts/sweep.py configs/experiments/grid_table1.yaml --out runs/table1 --index 7  # one cell\n"
        "#   sbatch scripts/slurm_sweep.sh                                 "
        f"# one cell per array task (0-{len(cell_list) - 1})\n"
        "#   python scripts/report.py runs/table1 --out runs/table1/report\n"
        "# Each cell: `cli.py fit <pretrain> <cell.pretrain>`, then `cli.py fit <linear> <cell.linear>` on its\n"
        "# last.ckpt (scripts/sweep.py adds the loggers, folders and checkpoint). Generated by\n"
        "# scripts/make_experiments.py. Not a config for cli.py.\n"
    )
    return header, {"name": "table1", "pretrain": ["-c", "configs/base.yaml"],
                    "linear": ["-c", "configs/eval/linear.yaml"], "cells": cell_list}


def grid_short() -> tuple[str, dict]:
    cell_list = [{"name": f"cifar10/{name}",
                  "pretrain": ["-c", f"{EXPERIMENTS.as_posix()}/cifar10/{name}.yaml",
                               "-c", f"{EXPERIMENTS.as_posix()}/short_reproduction.yaml"]}
                 for name in SHORT_CELLS]
    epochs = load(EXPERIMENTS / "short_reproduction.yaml")["trainer"]["max_epochs"]
    header = (
        f"# The short reproduction on CIFAR-10: {len(cell_list)} cells of {epochs} "
        "pretraining epochs (configs/experiments/short_reproduction.yaml),\n"
        "# each followed by a linear evaluation on cached features (validated every 10 epochs), on one GPU\n"
        "# (pretraining in bf16, configs/trainer/gpu.yaml). Budget and expected output: docs/reproduce.md.\n"
        "#   python scripts/sweep.py configs/experiments/grid_short.yaml --out runs/short\n"
        "#   python scripts/report.py runs/short --out runs/short/report\n"
        "# Generated by scripts/make_experiments.py. Not a config for cli.py.\n"
    )
    return header, {
        "name": "short_reproduction",
        "pretrain": ["-c", "configs/base.yaml", "-c", "configs/data/cifar10.yaml", "-c", "configs/trainer/gpu.yaml"],
        # linear evaluation stays in fp32 (lr 30 on bf16 logits invites trouble); `accelerator: auto` finds the GPU
        "linear": ["-c", "configs/eval/linear.yaml", *linear_args("cifar10"),
                   "--model.init_args.cache_features=true", "--trainer.check_val_every_n_epoch=10"],
        "cells": cell_list,
    }


def generated() -> dict[Path, str]:
    """Every generated file (relative to the repository root) and its text."""
    files: dict[Path, str] = {}
    for dataset in DATASETS:
        for loss, tau in cells():
            path = EXPERIMENTS / dataset / f"{cell_name(loss, tau)}.yaml"
            files[path] = preset_header(dataset, loss, tau, path) + dump(preset(dataset, loss, tau))
    for stem, (header, grid) in (("grid_table1", grid_table1()), ("grid_short", grid_short())):
        files[EXPERIMENTS / f"{stem}.yaml"] = header + dump(grid)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report files that differ instead of writing them")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated().items():
        target = ROOT / path
        if args.check:
            if not target.is_file() or target.read_text() != text:
                stale.append(path.as_posix())
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
            print(f"wrote {path.as_posix()}")
    if stale:
        print("out of date (run python scripts/make_experiments.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
