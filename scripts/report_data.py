"""A report's committed data: every run's per-epoch metrics and predictions, from which the report rebuilds exactly.

    python scripts/report.py runs/cpu3 --out docs/results/cpu                 # also writes docs/results/cpu/data
    python scripts/report.py --from-data docs/results/cpu/data --out /tmp/r   # the same tables from the data alone

Layout of ``<report>/data`` (all gzip files written with a fixed header, so the same runs give the same bytes):

    runs.json.gz                          one entry per run: group key, name, dataset, loss, temperature,
                                          seed, finished, epochs, source, recipe, and its files below
    <group key>/seed<seed>.csv.gz         the run's trajectory (one row per epoch, -1 before training)
                                          and its final metrics (the row whose epoch is ``final``);
                                          columns are metric keys, accuracies in percent, floats exact
    <group key>/seed<seed>_predictions_<probe>.csv.gz
                                          the linear evaluation's per-test-image predictions
                                          (``index,label,pred``; probe ``sgd`` or ``lbfgs``)

:func:`read_runs` returns :class:`scripts.runs.Run` objects equal to the discovered ones, so every
table, verdict and figure is computed the same way from either source. :func:`verdict_table` turns
runs into the plain data of :mod:`scripts.verdicts`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.runs import FIG8_KEYS, Group, Run, column_key, families, family_differences, group_runs  # noqa: E402
from scripts.verdicts import SeedRecord, Table  # noqa: E402

INDEX = "runs.json.gz"
FINAL = "final"
#: catalogue quantity -> metric key (Run.metrics / trajectory; accuracies in percent)
QUANTITIES = {"uniformity": "val/uniformity", "tolerance": "val/tolerance",
              "pos_sim": FIG8_KEYS["view"][0], "neg_sim_1": FIG8_KEYS["view"][1].format(1),
              "pos_sim_bank": FIG8_KEYS["bank"][0], "neg_sim_bank_1": FIG8_KEYS["bank"][1].format(1),
              "top1_last": "test/top1_last", "top1_lbfgs": "test/top1_lbfgs"}
#: derived quantity -> (minuend, subtrahend)
DERIVED = {"gap": ("pos_sim", "neg_sim_1"), "gap_bank": ("pos_sim_bank", "neg_sim_bank_1")}
#: linear evaluation's probe -> the accuracy quantity it scores
PROBES = {"sgd": "top1_last", "lbfgs": "top1_lbfgs"}


# ------------------------------------------------------------------ writing
def _gzip_bytes(text: str) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as f:  # no name or time: same bytes
        f.write(text.encode())
    return buffer.getvalue()


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _safe(name: str) -> str:
    """A group key as one folder name (keys hold letters, digits, ``._-[]=,``)."""
    return re.sub(r"[^A-Za-z0-9._\-\[\]=,+]", "_", name)


def load_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """``index``, ``label``, ``pred`` (int64) of a ``predictions_<probe>.npz`` or of its committed ``.csv.gz``."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as f:
            return {k: f[k].astype(np.int64) for k in ("index", "label", "pred")}
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    if rows[0] != ["index", "label", "pred"]:
        raise ValueError(f"{path}: expected the columns index,label,pred, got {rows[0]}")
    table = np.array(rows[1:], dtype=np.int64).reshape(-1, 3)
    return {"index": table[:, 0], "label": table[:, 1], "pred": table[:, 2]}


def write_data(folder: str | Path, groups: list[Group]) -> list[Path]:
    """Write every run of ``groups`` to ``folder`` (see the module's docstring); returns the files written.

    Files of an earlier report in ``folder`` (its ``runs.json.gz`` and the files it lists) are replaced.
    """
    folder = Path(folder)
    if (folder / INDEX).is_file():  # our own earlier output: remove what it listed, nothing else
        for entry in json.loads(gzip.decompress((folder / INDEX).read_bytes())):
            for name in [entry["file"], *entry["predictions"].values()]:
                (folder / name).unlink(missing_ok=True)
    index, written = [], []
    for group in groups:
        taken: set[str] = set()
        for run in group.runs:
            stem = f"seed{run.seed}"
            n = 1
            while stem in taken:  # two runs of one group with the same seed (a rerun): both kept
                n += 1
                stem = f"seed{run.seed}-{n}"
            taken.add(stem)
            sub = folder / _safe(group.key)
            sub.mkdir(parents=True, exist_ok=True)
            keys = sorted({k for row in [run.metrics, *run.trajectory.values()] for k in row})
            rows = [[str(epoch)] + [repr(float(values[k])) if k in values else "" for k in keys]
                    for epoch, values in sorted(run.trajectory.items())]
            rows.append([FINAL] + [repr(float(run.metrics[k])) if k in run.metrics else "" for k in keys])
            path = sub / f"{stem}.csv.gz"
            path.write_bytes(_gzip_bytes(_csv_text(["epoch", *keys], rows)))
            written.append(path)
            predictions = {}
            for probe, source in sorted(run.predictions.items()):
                p = load_predictions(source)
                target = sub / f"{stem}_predictions_{probe}.csv.gz"
                table = np.stack([p["index"], p["label"], p["pred"]], axis=1)  # (M, 3)
                target.write_bytes(_gzip_bytes(_csv_text(["index", "label", "pred"], table.astype(str).tolist())))
                predictions[probe] = target.relative_to(folder).as_posix()
                written.append(target)
            index.append({"group": group.key, "file": path.relative_to(folder).as_posix(), "name": run.name,
                          "path": str(run.path), "dataset": run.dataset, "loss": run.loss,
                          "temperature": run.temperature, "seed": run.seed, "finished": run.finished,
                          "epochs": run.epochs, "source": run.source, "recipe": run.recipe,
                          "predictions": predictions})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX).write_bytes(_gzip_bytes(json.dumps(index, sort_keys=True, indent=1, default=str) + "\n"))
    return [folder / INDEX, *written]


# ------------------------------------------------------------------ reading
def read_runs(folder: str | Path) -> list[Run]:
    """The runs a report's ``data`` folder holds, as :func:`scripts.runs.find_runs` found them.

    Raises:
        FileNotFoundError: ``folder`` has no ``runs.json.gz`` (not a report's data folder).
    """
    folder = Path(folder)
    if not (folder / INDEX).is_file():
        raise FileNotFoundError(f"{folder} has no {INDEX}: give the data folder a report wrote "
                                "(<report>/data, e.g. docs/results/cpu/data)")
    runs = []
    for entry in json.loads(gzip.decompress((folder / INDEX).read_bytes())):
        with gzip.open(folder / entry["file"], "rt", newline="") as f:
            rows = list(csv.reader(f))
        keys = rows[0][1:]
        trajectory: dict[int, dict[str, float]] = {}
        metrics: dict[str, float] = {}
        for row in rows[1:]:
            values = {k: float(v) for k, v in zip(keys, row[1:]) if v != ""}
            if row[0] == FINAL:
                metrics = values
            else:
                trajectory[int(row[0])] = values
        runs.append(Run(entry["name"], Path(entry["path"]), entry["dataset"], entry["loss"], entry["temperature"],
                        entry["seed"], entry["recipe"], entry["finished"], entry["epochs"], metrics, trajectory,
                        {p: folder / f for p, f in entry["predictions"].items()}, entry["source"]))
    return runs


def read_groups(folder: str | Path) -> list[Group]:
    return group_runs(read_runs(folder))


# --------------------------------------------------------- verdicts' plain data
def _quantities(values: dict[str, float]) -> dict[str, float]:
    out = {q: values[k] for q, k in QUANTITIES.items() if k in values}
    for q, (a, b) in DERIVED.items():
        if a in out and b in out:
            out[q] = out[a] - out[b]
    return out


def seed_record(run: Run) -> SeedRecord:
    """One run as :class:`scripts.verdicts.SeedRecord`: catalogue quantities, trajectory, per-image correctness."""
    predictions = {}
    for probe, path in run.predictions.items():
        if probe in PROBES:
            p = load_predictions(path)
            predictions[PROBES[probe]] = (p["index"], (p["pred"] == p["label"]).astype(np.int64))
    return SeedRecord(run.seed, _quantities(run.metrics),
                      {e: _quantities(v) for e, v in run.trajectory.items()}, predictions)


#: loss class name -> catalogue key, for loss classes that do not declare their ``key`` (scripts/runs.py then
#: names the group after the class)
CLASS_KEYS = {"ContrastiveLoss": "contrastive", "SimpleContrastiveLoss": "simple",
              "HardContrastiveLoss": "hard_contrastive", "HardSimpleContrastiveLoss": "hard_simple"}


def cell_key(group: Group) -> str:
    """The catalogue's cell key of a group: its loss key and temperature, ``contrastive_tau0.2`` (no recipe suffix)."""
    return column_key(CLASS_KEYS.get(group.loss, group.loss), group.temperature)


def compared(groups: list[Group]) -> tuple[list[Group], list[tuple[Group, dict]]]:
    """The groups the claims compare, the largest family (:func:`scripts.runs.families`: recipes equal but for
    the loss), and every other group with the recipe entries that set it apart from that family."""
    found = families(groups)
    family = found[0] if found else []
    return family, [(g, family_differences([g], family)) for f in found[1:] for g in f]


def verdict_table(groups: list[Group]) -> Table:
    """cell key -> the finished runs of the compared family's group of that cell, as seed records."""
    table = {}
    for group in compared(groups)[0]:
        seeds = [seed_record(r) for r in group.runs if r.finished]
        if seeds:
            table[cell_key(group)] = seeds
    return table


def not_compared_markdown(groups: list[Group]) -> str:
    """The groups left out of the verdicts, each with what sets it apart ("" when every group is compared)."""
    others = compared(groups)[1]
    if not others:
        return ""
    lines = ["", "Not compared (a recipe that differs from the compared cells' in more than the loss):", ""]
    lines += [f"- {g.key}: {', '.join(f'{k} = {v}' for k, v in differs.items()) or 'its recipe'}"
              for g, differs in others]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------- generated Markdown blocks
def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with the block between ``<!-- generated:<name> -->`` and ``<!-- /generated -->`` replaced.

    Raises:
        ValueError: the markers are missing.
    """
    start, end = f"<!-- generated:{name} -->", "<!-- /generated -->"
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"no '{start}' ... '{end}' block: add the two marker lines where the table goes")
    return pattern.sub(lambda _: f"{start}\n{content.rstrip()}\n{end}", text, count=1)


def block(text: str, name: str) -> str:
    """The content of a generated block (what :func:`replace_block` wrote)."""
    match = re.search(re.escape(f"<!-- generated:{name} -->") + r"\n(.*?)<!-- /generated -->", text, re.S)
    if match is None:
        raise ValueError(f"no generated:{name} block")
    return match.group(1)
