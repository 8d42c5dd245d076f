"""Run a grid of cells one after another: each cell is a pretraining followed by its linear evaluation.

    python scripts/sweep.py configs/experiments/grid_short.yaml --out runs/short
    python scripts/sweep.py configs/experiments/grid_table1.yaml --out runs/table1 --index 7   # cell 7 only
    python scripts/sweep.py configs/experiments/grid_table1.yaml --out runs/table1 --only 'cifar10/*' --dry-run
    python scripts/sweep.py configs/experiments/grid_table1.yaml --count                       # number of cells

A grid is a YAML file (see configs/experiments/grid_*.yaml)::

    name: short_reproduction
    pretrain: [-c, configs/base.yaml, ...]        # cli.py fit arguments of every cell's pretraining
    linear: [-c, configs/eval/linear.yaml, ...]   # ... and of every linear evaluation
    cells:
      - name: cifar10/contrastive_tau0.3          # the cell's folder under --out
        pretrain: [-c, configs/experiments/cifar10/contrastive_tau0.3.yaml]   # appended (later wins)
        linear: []                                                             # optional

Layout of a cell, ``<out>/<name>/``::

    pretrain/version_N/{config.yaml, metrics.csv, checkpoints/last.ckpt, plots/}
    pretrain/finished.json   written once last.ckpt says the planned epochs were all trained
    linear/version_0/{config.yaml, metrics.csv}       (test/top1_last, test/top1_best)
    finished.json            written once the linear evaluation's test metrics are on disk
    pretrain.out, linear.out the processes' output;  runner.log: one line per runner decision

Rerunning is always safe: a cell with ``finished.json`` is skipped; a pretraining without
``pretrain/finished.json`` but with a ``last.ckpt`` is resumed from it (``--ckpt_path``, so the
epoch, optimiser, scheduler, memory bank and sampler continue, in the same ``version_N``
folder); an unfinished linear evaluation is deleted and redone (it is short and has no state
worth keeping). The base config saves ``last.ckpt`` after every epoch, before the epoch's
metrics, so an interrupted run loses at most the epoch in progress. A pretraining counts as
finished only when its ``last.ckpt`` records all the planned epochs (and their metrics), whatever
the process's exit status; a SIGTERM or SIGINT (a preemption, ``scancel``, Ctrl-C) is passed to
the running process and stops the sweep with status 128 + the signal number, the interrupted
cell resuming on the next call.

The runner owns the loggers of its runs (a CSV logger in the cell's folder and, unless
``--wandb off``, a W&B run named after the cell, in the mode ``WANDB_MODE`` names, offline when
it is unset, as for ``cli.py``); the loggers of the grid's configs are replaced.

Each run is a separate ``python cli.py`` process by default (``--launcher subprocess``): a crash,
an out-of-memory error or a leaked W&B run or CUDA context cannot touch the next cell, the
output of each run lands in its own file, and the command logged is exactly the one a user
would type. ``--launcher inprocess`` calls ``cli.main`` in this process instead (no start-up
cost; used by the tests).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CELL_MARKER = "finished.json"
PRETRAIN_MARKER = "finished.json"  # inside <cell>/pretrain/
_CELL_NAME = re.compile(r"^[A-Za-z0-9_.=+-]+(/[A-Za-z0-9_.=+-]+)*$")


# --------------------------------------------------------------------------- the grid
@dataclass
class Cell:
    name: str
    pretrain: list[str] = field(default_factory=list)
    linear: list[str] = field(default_factory=list)


@dataclass
class Grid:
    name: str
    pretrain: list[str]
    linear: list[str]
    cells: list[Cell]


def _args(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):  # one level of nesting flattens: a YAML anchor (&args) reused in a list
        value = [v for item in value for v in (item if isinstance(item, list) else [item])]
    if not isinstance(value, list) or any(isinstance(v, (dict, list)) for v in value):
        raise ValueError(f"{where} must be a list of command-line arguments, got {value!r}")
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in value]


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; raises ValueError naming the problem."""
    path = Path(path)
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    unknown = set(raw) - {"name", "pretrain", "linear", "cells"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} (expected name, pretrain, linear, cells)")
    cells = []
    for i, entry in enumerate(raw.get("cells") or []):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{path}: cell {i} must be a mapping with a 'name', got {entry!r}")
        extra = set(entry) - {"name", "pretrain", "linear"}
        if extra:
            raise ValueError(f"{path}: cell {entry['name']!r} has unknown keys {sorted(extra)}")
        name = str(entry["name"])
        if not _CELL_NAME.match(name) or ".." in name.split("/"):
            raise ValueError(f"{path}: cell name {name!r} must be a relative folder name (letters, digits, _.=+-, /)")
        cells.append(Cell(name, _args(entry.get("pretrain"), f"{name}.pretrain"),
                          _args(entry.get("linear"), f"{name}.linear")))
    if not cells:
        raise ValueError(f"{path}: the grid has no cells")
    names = [c.name for c in cells]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: cell names must be unique, repeated: {duplicates}")
    return Grid(str(raw.get("name") or path.stem), _args(raw.get("pretrain"), "pretrain"),
                _args(raw.get("linear"), "linear"), cells)


# ---------------------------------------------------------------------- cell state
def last_checkpoint(pretrain_dir: Path) -> Path | None:
    """The newest ``version_*/checkpoints/last.ckpt`` of a cell's pretraining, or None."""
    found = [p for p in pretrain_dir.glob("version_*/checkpoints/last.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def newest_run(folder: Path) -> Path | None:
    """The highest ``version_N`` folder under ``folder`` (the CSV logger's numbering), or None."""
    versions = [p for p in folder.glob("version_*") if p.is_dir() and p.name.split("_", 1)[1].isdigit()]
    return max(versions, key=lambda p: int(p.name.split("_", 1)[1])) if versions else None


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a CSVLogger ``metrics.csv`` (empty values dropped)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def test_metrics(linear_run: Path) -> dict[str, float]:
    """The ``test/*`` values a linear evaluation logged (empty if it did not reach the test)."""
    out: dict[str, float] = {}
    for row in read_metrics(linear_run / "metrics.csv"):
        out.update({k: float(v) for k, v in row.items() if k.startswith("test/")})
    return out


def checkpoint_progress(checkpoint: Path) -> tuple[int | None, int | None, bool]:
    """(epochs trained, epochs planned, metrics pending) as the checkpoint records them (None: not recorded)."""
    import torch  # noqa: PLC0415  (heavy: only when a checkpoint is read)

    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  (a truncated or foreign file: not a finished run)
        return None, None, False
    run = ckpt.get("run") if isinstance(ckpt, dict) and isinstance(ckpt.get("run"), dict) else {}
    states = ckpt.get("callbacks") if isinstance(ckpt, dict) else None
    pending = isinstance(states, dict) and any(isinstance(v, dict) and v.get("pending") for v in states.values())
    return run.get("epochs_completed"), run.get("max_epochs"), pending


def pretraining_finished(checkpoint: Path | None) -> tuple[bool, str]:
    """Whether ``checkpoint`` ends a finished pretraining, and what it records (for the runner's log)."""
    if checkpoint is None:
        return False, "no last.ckpt"
    done, planned, pending = checkpoint_progress(checkpoint)
    if done is None or planned is None:
        return False, f"{checkpoint} records no epoch count"
    if done < planned or planned < 0:
        return False, f"{checkpoint} has {done} of {planned} epochs"
    if pending:
        return False, f"{checkpoint} has {done} of {planned} epochs, the last one's metrics not logged"
    return True, f"{done} of {planned} epochs"


class SweepInterrupted(Exception):
    """A signal stopped the sweep (and was passed to the running process)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


def cell_state(cell_dir: Path) -> str:
    """``done``, ``linear`` (pretraining finished), ``resume`` (a last.ckpt to resume) or ``new``."""
    if (cell_dir / CELL_MARKER).is_file():
        return "done"
    if (cell_dir / "pretrain" / PRETRAIN_MARKER).is_file():
        return "linear"
    if last_checkpoint(cell_dir / "pretrain") is not None:
        return "resume"
    return "new"


# ------------------------------------------------------------------------ commands
def _resolve_configs(args: list[str]) -> list[str]:
    """Runs start in the repository root: a ``-c`` file found only from the caller's folder becomes absolute."""
    out, take = [], False
    for arg in args:
        prefix, path = "", None
        if take:
            path = arg
        elif arg.startswith("--config="):
            prefix, path = "--config=", arg[len("--config="):]
        if path is not None and not os.path.isabs(path) and not (ROOT / path).exists() and Path(path).exists():
            arg = prefix + str(Path(path).resolve())
        take = arg in ("-c", "--config")
        out.append(arg)
    return out


def logger_arg(cell_dir: Path, stage: str, opts: argparse.Namespace, grid: Grid, cell: Cell) -> str:
    """``--trainer.logger=[...]``: CSV in ``<cell>/<stage>/version_N`` (first: it holds config and checkpoints)."""
    loggers: list[dict[str, Any]] = [{"class_path": "pytorch_lightning.loggers.CSVLogger",
                                      "init_args": {"save_dir": str(cell_dir), "name": stage}}]
    if opts.wandb != "off":
        wandb: dict[str, Any] = {"class_path": "pytorch_lightning.loggers.WandbLogger", "init_args": {
            "save_dir": str(cell_dir / stage), "project": opts.wandb_project, "entity": opts.wandb_entity,
            "name": cell.name, "group": grid.name, "job_type": stage, "tags": [grid.name, stage]}}
        if opts.wandb != "auto":  # an explicit mode, passed to wandb.init, wins over WANDB_MODE
            wandb["init_args"]["mode"] = opts.wandb
        loggers.append(wandb)
    return "--trainer.logger=" + json.dumps(loggers)


def pretrain_command(grid: Grid, cell: Cell, cell_dir: Path, opts: argparse.Namespace,
                     resume_from: Path | None = None) -> list[str]:
    """The ``cli.py`` arguments of a cell's pretraining."""
    args = ["fit", *grid.pretrain, *cell.pretrain, *opts.pretrain_args,
            f"--trainer.default_root_dir={cell_dir / 'pretrain'}", logger_arg(cell_dir, "pretrain", opts, grid, cell)]
    if resume_from is not None:
        args.append(f"--ckpt_path={resume_from}")
    return _resolve_configs(args)


def linear_command(grid: Grid, cell: Cell, cell_dir: Path, opts: argparse.Namespace, checkpoint: Path) -> list[str]:
    """The ``cli.py`` arguments of a cell's linear evaluation of ``checkpoint``."""
    args = ["fit", *grid.linear, *cell.linear, *opts.linear_args]
    if opts.cache_features:
        args.append("--model.init_args.cache_features=true")
    args += [f"--model.init_args.pretrained={checkpoint}", f"--trainer.default_root_dir={cell_dir / 'linear'}",
             logger_arg(cell_dir, "linear", opts, grid, cell)]
    return _resolve_configs(args)


def shell(args: list[str]) -> str:
    return shlex.join([sys.executable, "cli.py", *args])


# ------------------------------------------------------------------------ launching
def _run_subprocess(args: list[str], output: Path) -> int:
    received: list[int] = []
    with open(output, "a") as out:
        out.write(f"\n$ {shell(args)}\n")
        out.flush()
        proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)

        def forward(signum: int, frame: Any) -> None:  # the run stops cleanly (its checkpoint), then the sweep
            received.append(signum)
            proc.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # to the terminal (or the SLURM log) and to the cell's file
                sys.stdout.write(line)
                out.write(line)
            rc = proc.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if received:
        raise SweepInterrupted(received[0])
    return rc


def _run_inprocess(args: list[str], output: Path) -> int:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import cli  # noqa: PLC0415  (heavy: imported only when this launcher is used)

    cwd = os.getcwd()
    os.chdir(ROOT)  # relative data_dir values in the configs mean the same as for `python cli.py`
    try:
        run = cli.main(args)
        return 1 if run.trainer.interrupted else 0
    except SystemExit as err:  # argument errors, and Lightning's end of a run stopped by SIGTERM
        if type(err).__name__ == "SIGTERMException":
            return 128 + signal.SIGTERM
        code = err.code if isinstance(err.code, int) else 1
        with open(output, "a") as out:
            out.write(f"\n$ {shell(args)}\nexited with {err.code}\n")
        return code or 0
    except Exception:  # noqa: BLE001  (a failed cell must not stop the grid)
        with open(output, "a") as out:
            out.write(f"\n$ {shell(args)}\n{traceback.format_exc()}")
        traceback.print_exc()
        return 1
    finally:
        os.chdir(cwd)
        if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
            sys.modules["wandb"].finish()


def launch(args: list[str], output: Path, launcher: str) -> int:
    output.parent.mkdir(parents=True, exist_ok=True)
    return (_run_subprocess if launcher == "subprocess" else _run_inprocess)(args, output)


# ------------------------------------------------------------------------- one cell
def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def _log(cell_dir: Path, message: str) -> None:
    line = f"{_now()} {message}"
    print(f"[sweep] {line}", flush=True)
    cell_dir.mkdir(parents=True, exist_ok=True)
    with open(cell_dir / "runner.log", "a") as f:
        f.write(line + "\n")


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # atomic: a marker is either absent or complete


def run_cell(grid: Grid, cell: Cell, index: int, opts: argparse.Namespace) -> str:
    """Bring one cell to ``done``; returns what happened: skipped, done, failed (or planned, for --dry-run)."""
    cell_dir = opts.out / cell.name
    state = cell_state(cell_dir)
    tag = f"[{index}] {cell.name}"
    if state == "done":
        if not opts.dry_run:
            _log(cell_dir, f"skip {cell.name}: finished ({cell_dir / CELL_MARKER})")
        else:
            print(f"# {tag}: finished, skipped")
        return "skipped"

    pretrain_dir = cell_dir / "pretrain"
    if state in ("new", "resume"):
        resume = last_checkpoint(pretrain_dir) if state == "resume" else None
        args = pretrain_command(grid, cell, cell_dir, opts, resume)
        if opts.dry_run:
            print(f"# {tag}: pretraining" + (f", resumed from {resume}" if resume else ""))
            print(shell(args))
            print(f"# {tag}: then the linear evaluation of its last.ckpt")
            print(shell(linear_command(grid, cell, cell_dir, opts, pretrain_dir / "version_N/checkpoints/last.ckpt")))
            return "planned"
        _log(cell_dir, f"pretrain {cell.name}: " + (f"resume from {resume}" if resume else "start"))
        try:
            rc = launch(args, cell_dir / "pretrain.out", opts.launcher)
        except SweepInterrupted as stop:
            _log(cell_dir, f"INTERRUPTED pretrain {cell.name} (signal {stop.signum}); the next call resumes it")
            raise
        checkpoint = last_checkpoint(pretrain_dir)
        finished, progress = pretraining_finished(checkpoint)
        if rc in (128 + signal.SIGTERM, 128 + signal.SIGINT) and not finished:
            _log(cell_dir, f"INTERRUPTED pretrain {cell.name}: exit code {rc}, {progress}; the next call resumes it")
            raise SweepInterrupted(rc - 128)
        if not finished:
            _log(cell_dir, f"FAILED pretrain {cell.name}: exit code {rc}, {progress}; "
                           f"see {cell_dir / 'pretrain.out'}")
            return "failed"
        # the checkpoint decides, not the exit code: a signal after the last epoch was saved, or a run the
        # runner did not mark before it was killed (cli.py then refuses to resume a finished run, exit 1)
        if rc != 0:
            _log(cell_dir, f"pretrain {cell.name}: exit code {rc} after its last epoch was saved ({progress}); "
                           "counted finished from its checkpoint")
        _write_json(pretrain_dir / PRETRAIN_MARKER, {
            "cell": cell.name, "grid": grid.name, "finished": _now(),
            "checkpoint": str(checkpoint.relative_to(cell_dir)),
            "run": str(checkpoint.parents[1].relative_to(cell_dir)), "resumed_from": str(resume) if resume else None,
            "command": shell(args)})
        _log(cell_dir, f"pretrain {cell.name}: finished, {checkpoint}")

    pretrained = json.loads((pretrain_dir / PRETRAIN_MARKER).read_text())
    checkpoint = cell_dir / pretrained["checkpoint"]
    args = linear_command(grid, cell, cell_dir, opts, checkpoint)
    if opts.dry_run:
        print(f"# {tag}: pretraining finished; linear evaluation")
        print(shell(args))
        return "planned"
    if (cell_dir / "linear").exists():  # an interrupted evaluation: cheap to redo, nothing to resume
        _log(cell_dir, f"linear {cell.name}: removing the unfinished {cell_dir / 'linear'}")
        shutil.rmtree(cell_dir / "linear")
    _log(cell_dir, f"linear {cell.name}: start on {checkpoint}")
    try:
        rc = launch(args, cell_dir / "linear.out", opts.launcher)
    except SweepInterrupted as stop:
        _log(cell_dir, f"INTERRUPTED linear {cell.name} (signal {stop.signum}); the next call redoes it")
        raise
    run = newest_run(cell_dir / "linear")
    metrics = test_metrics(run) if run is not None else {}
    if rc != 0 or "test/top1_last" not in metrics:
        _log(cell_dir, f"FAILED linear {cell.name}: exit code {rc}, test metrics {metrics}; "
                       f"see {cell_dir / 'linear.out'}")
        return "failed"
    _write_json(cell_dir / CELL_MARKER, {
        "cell": cell.name, "grid": grid.name, "finished": _now(), "pretrain_run": pretrained["run"],
        "checkpoint": pretrained["checkpoint"], "linear_run": str(run.relative_to(cell_dir)), "test": metrics,
        "commands": {"pretrain": pretrained["command"], "linear": shell(args)}})
    _log(cell_dir, f"done {cell.name}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    return "done"


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Layout and resume rules: see the module docstring or docs/reproduce.md.")
    parser.add_argument("grid", type=Path, help="grid YAML (configs/experiments/grid_*.yaml)")
    parser.add_argument("--out", type=Path, help="folder of the cells (e.g. runs/short)")
    parser.add_argument("--index", type=int, action="append",
                        help="run only the cell at this 0-based position (repeatable; SLURM_ARRAY_TASK_ID)")
    parser.add_argument("--only", action="append", help="run only cells whose name matches this glob (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--count", action="store_true", help="print the number of cells and exit")
    parser.add_argument("--list", action="store_true", help="print index, name and state of every cell and exit")
    parser.add_argument("--pretrain-args", default="", help="extra cli.py arguments for every pretraining (one string)")
    parser.add_argument("--linear-args", default="", help="extra cli.py arguments for every linear evaluation")
    parser.add_argument("--cache-features", action="store_true",
                        help="linear evaluation on cached features of the non-augmented images (fast)")
    parser.add_argument("--launcher", choices=("subprocess", "inprocess"), default="subprocess",
                        help="one `python cli.py` process per run (default) or cli.main in this process")
    parser.add_argument("--wandb", choices=("auto", "off", "offline", "online"), default="auto",
                        help="also log each run to W&B, named after the cell: auto (default) in the mode WANDB_MODE "
                             "names, offline when unset, as cli.py does; off: no W&B logger; offline or online "
                             "whatever WANDB_MODE says (offline runs land in <cell>/<stage>/wandb, sync later)")
    parser.add_argument("--wandb-project", default="contrastive-behaviour")
    parser.add_argument("--wandb-entity", default=None)
    parser.add_argument("--stop-on-error", action="store_true", help="stop at the first failed cell")
    opts = parser.parse_args(argv)
    opts.pretrain_args = shlex.split(opts.pretrain_args)
    opts.linear_args = shlex.split(opts.linear_args)
    if not (opts.count or opts.list) and opts.out is None:
        parser.error("--out is required (the folder of the cells)")
    if opts.out is not None:
        opts.out = opts.out.expanduser().resolve()
    return opts


def select(grid: Grid, opts: argparse.Namespace) -> list[tuple[int, Cell]]:
    chosen = list(enumerate(grid.cells))
    if opts.index:
        bad = [i for i in opts.index if not 0 <= i < len(grid.cells)]
        if bad:
            raise SystemExit(f"--index {bad} out of range: the grid has {len(grid.cells)} cells "
                             f"(0-{len(grid.cells) - 1})")
        chosen = [(i, c) for i, c in chosen if i in opts.index]
    if opts.only:
        chosen = [(i, c) for i, c in chosen if any(fnmatch.fnmatch(c.name, pattern) for pattern in opts.only)]
    return chosen


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    grid = load_grid(opts.grid)
    if opts.count:
        print(len(grid.cells))
        return 0
    if opts.list:
        for i, cell in enumerate(grid.cells):
            state = cell_state(opts.out / cell.name) if opts.out else "-"
            print(f"{i:3d}  {state:7s} {cell.name}")
        return 0
    chosen = select(grid, opts)
    if not chosen:
        print("no cell selected", file=sys.stderr)
        return 1
    results: dict[str, list[str]] = {}
    for index, cell in chosen:
        try:
            outcome = run_cell(grid, cell, index, opts)
        except SweepInterrupted as stop:
            print(f"[sweep] interrupted by signal {stop.signum} in {cell.name}: run the same command again to "
                  "resume it", file=sys.stderr, flush=True)
            return 128 + stop.signum
        results.setdefault(outcome, []).append(cell.name)
        if outcome == "failed" and opts.stop_on_error:
            break
    if not opts.dry_run:
        print("[sweep] " + "; ".join(f"{k}: {len(v)}" for k, v in sorted(results.items())), flush=True)
        if results.get("failed"):
            print("[sweep] failed cells: " + ", ".join(results["failed"]), file=sys.stderr)
    return 1 if results.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
