"""Named cells side by side, one row each: for ablations that ``report.py``'s Table 1 would average.

    python scripts/compare.py runs/cpu --cells 'contrastive_tau0.07*' 'contrastive_tau0.2*' --out report/tau

``report.py`` averages the seeds of one recipe (``scripts/runs.py``'s groups); here every run keeps its
own row, named by its folder, e.g. to set the seeds of a cell side by side. Reads the same runs as
``report.py`` (sweep cells and plain ``cli.py`` runs, through ``scripts/runs.py``).

Writes to ``--out``:
    cells.md, cells.csv     one row per run: seed, epochs, the last epoch's metrics, both probes' accuracy
    trajectories.png        the chosen metrics against the epoch, one line per cell
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.runs import Run, find_runs  # noqa: E402

#: (column, metric key, digits): the last epoch's val/* metrics and the probes' test/* accuracy (runs.py: percent)
COLUMNS = (("uniformity", "val/uniformity", 3), ("tolerance", "val/tolerance", 3), ("knn_top1", "val/knn_top1", 1),
           ("pos_sim", "val/pos_sim", 3), ("top1_last", "test/top1_last", 1), ("top1_lbfgs", "test/top1_lbfgs", 1))
PANEL_TITLES = {"knn_top1": "kNN top-1", "uniformity": "-L_uniformity", "tolerance": "tolerance",
                "centroid_norm": "centroid norm", "pos_sim": "positive similarity"}


def select(cells: list[Run], patterns: list[str]) -> list[Run]:
    """The cells whose name matches a pattern (shell globs), in the patterns' order, then by name."""
    chosen: list[Run] = []
    for pattern in patterns:
        chosen += sorted((c for c in cells if fnmatch.fnmatchcase(c.name, pattern) and c not in chosen),
                         key=lambda c: c.name)
    return chosen


def rows(cells: list[Run]) -> list[dict[str, str]]:
    """One row per cell; a metric the cell did not log is empty, never filled in."""
    out = []
    for cell in cells:
        row = {"cell": cell.name, "loss": cell.loss, "temperature": "" if cell.temperature is None else
               f"{cell.temperature:g}", "seed": "" if cell.seed is None else str(cell.seed),
               "epochs": "" if cell.epochs is None else str(cell.epochs)}
        for name, key, digits in COLUMNS:
            value = cell.metrics.get(key)
            row[name] = "" if value is None else f"{value:.{digits}f}"
        out.append(row)
    return out


def markdown(table: list[dict[str, str]]) -> str:
    header = list(table[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[h] or "—" for h in header) + " |" for row in table]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+",
                        help="folders of runs: scripts/sweep.py --out folders (each grid has its own), or the folder "
                             "holding cli.py's run folders")
    parser.add_argument("--cells", nargs="+", default=["*"], help="cell names or globs, in the table's order")
    parser.add_argument("--metrics", nargs="+", default=["knn_top1", "uniformity", "tolerance"],
                        help="val/ metrics of the trajectory figure (names without val/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for cells.md, cells.csv, trajectories.png")
    parser.add_argument("--title", default="Trajectories", help="the figure's title")
    opts = parser.parse_args(argv)
    for root in opts.runs:
        if not root.is_dir():
            parser.error(f"{root} is not a folder")
    cells = select([run for root in opts.runs for run in find_runs(root)], opts.cells)
    if not cells:
        print(f"error: no finished cell in {' '.join(map(str, opts.runs))} matches {' '.join(opts.cells)} "
              "(names as scripts/report.py gives them: the cell folders)", file=sys.stderr)
        return 1
    table = rows(cells)
    opts.out.mkdir(parents=True, exist_ok=True)
    with (opts.out / "cells.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    (opts.out / "cells.md").write_text(markdown(table) + "\n")
    written = ["cells.md", "cells.csv"]
    runs = {c.name: c.trajectory for c in cells if c.trajectory}
    if runs:
        from scripts.figures import plot_trajectories  # noqa: PLC0415  (matplotlib only when drawing)

        panels = tuple((f"val/{m}", PANEL_TITLES.get(m, m)) for m in opts.metrics)
        plot_trajectories(runs, opts.out / "trajectories.png", panels=panels, title=opts.title)
        written.append("trajectories.png")
    print(f"{len(cells)} cells; wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
