"""Table 1, the claims and Figs 3-9 of the paper from finished runs (sweep cells, cli.py runs), beside the paper's.

    python scripts/report.py runs/short --out runs/short/report                  # a scripts/sweep.py --out folder
    python scripts/report.py runs --out runs/report                              # cli.py runs: the folder holding
                                                                                 # runs/pretrain/ and runs/linear/
    python scripts/report.py runs/table1 --out report --include-unfinished       # also runs still going
    python scripts/report.py --wandb-project contrastive-behaviour --wandb-group table1 --out report   # online
    python scripts/report.py --from-data docs/results/cpu/data --out /tmp/cpu   # a committed report, rebuilt
    python scripts/report.py runs/cpu3 --out docs/results/cpu --doc docs/reproduce.md   # + the doc's verdict block

Which folder to give it:
  * a sweep: the folder given to ``scripts/sweep.py --out`` (its cells hold ``finished.json``,
    ``pretrain/version_N/`` and ``linear/version_N/``);
  * plain ``python cli.py fit`` runs: the folder that holds their run folders, i.e. the CSV logger's
    ``save_dir`` (``runs`` with ``configs/base.yaml``): ``runs/pretrain/version_0`` and its linear
    evaluation ``runs/linear/version_0``, whose ``--model.init_args.pretrained`` names the pretraining's
    checkpoint. A pretraining counts once its linear evaluation has logged ``test/top1_last``.

Runs are found and grouped by ``scripts/runs.py``: runs are averaged only when their resolved
pretraining configs are equal in everything but the seed (and where files go); runs that share a loss
and temperature but not a recipe stay apart, their columns named by what differs. Each number says
how many runs it is the mean of. The losses (keys, titles, which have a temperature) are read from
their classes (``lightning_modules.losses.loss_classes``).

Writes to ``--out``:
    table1.md, table1.csv   Table 1 (ours and the paper's per cell; one CSV row per run)
    claims.md               every claim of scripts/claim_catalogue.py: quote, outcome from the noise (holds,
                            not resolved, contradicted; scripts/verdicts.py), margin and interval, from
                            epoch; the claims not tested with the cells they lack
    data/                   every run's per-epoch data and predictions (scripts/report_data.py), from which
                            --from-data rebuilds the report exactly
    the figures of scripts/figures.py (Fig 3, the per-loss figures against tau, Figs 8, 9, trajectories),
    then its seed figures (scripts/figures.seed_figures: seed bands, both Fig 8 positives, Fig 9 with both
    probes and intervals, the uniformity-tolerance plane)

Cells that did not run are shown as missing ("—" in the table, absent from the figures); no
value is ever filled in, and a figure with nothing of ours to show is not written.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts import catalogue  # noqa: E402
from scripts.runs import (Group, Run, column_key, find_runs, find_wandb_runs, flatten, group_runs,  # noqa: E402
                          quantities)

MISSING = "—"


def fmt(value: float | None, digits: int) -> str:
    return MISSING if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def entry(group: Group | None, quantity: str, digits: int) -> str:
    """One number of the table: the mean over the group's runs that measured it, and how many those are.

    ``45.00`` (the group's one run), ``45.00 (1 of 3 runs)``, ``45.00 (mean of 2: 44.00-46.00)``,
    ``45.00 (mean of 2 of 13 runs: 44.00-46.00)``; ``—`` when no run measured it.
    """
    values = group.values(quantity) if group is not None else []
    if not values:
        return MISSING
    text = fmt(sum(values) / len(values), digits)
    of = f" of {len(group.runs)} runs" if len(values) < len(group.runs) else ""
    if len(values) > 1:
        text += f" (mean of {len(values)}{of}: {min(values):.{digits}f}-{max(values):.{digits}f})"
    elif of:
        text += f" (1{of})"
    return text


def header(group: Group | None, column: str) -> str:
    loss, tau = (group.loss, group.temperature) if group is not None else catalogue.parse_column(column)
    suffix = f" {group.suffix}" if group is not None and group.suffix else ""
    return catalogue.loss_title(loss) + (f" τ={tau:g}" if tau is not None else "") + suffix


def columns_of(groups: list[Group], paper_columns: list[str]) -> list[tuple[str, Group | None]]:
    """(column, group) in the paper's column order, a paper column without runs as (column, None); then the rest."""
    out: list[tuple[str, Group | None]] = []
    for column in paper_columns:
        matching = [g for g in groups if column_key(g.loss, g.temperature) == column]
        out += [(column, g) for g in matching] or [(column, None)]
    rest = [g for g in groups if column_key(g.loss, g.temperature) not in paper_columns]
    rest.sort(key=lambda g: (catalogue.loss_order(g.loss), g.temperature is not None, g.temperature or 0.0, g.key))
    return out + [(column_key(g.loss, g.temperature), g) for g in rest]


def kept_apart(groups: list[Group]) -> list[tuple[str, dict]]:
    """(group key, the recipe entries where it differs from the others of its column) for the columns of one
    dataset that hold several groups."""
    out = []
    for group in groups:
        same = [g for g in groups if (g.loss, g.temperature) == (group.loss, group.temperature)]
        if len(same) > 1:
            flat = [{**flatten(g.first.recipe), "epochs done": g.first.epochs} for g in same]
            mine = flat[same.index(group)]
            out.append((group.key, {k: mine.get(k) for k in group.differs
                                    if len({json.dumps(f.get(k), default=str) for f in flat}) > 1}))
    return out


def write_csv(groups: list[Group], paper: dict, path: Path) -> None:
    """One row per run: its group (``column``), seed, recipe differences and every quantity."""
    fields = ["cell", "dataset", "column", "loss", "temperature", "seed", "epochs", "finished", "runs_in_group",
              "differs", "top1_last", "top1_best", "top1_lbfgs", "top5_last", "uniformity", "centroid_norm",
              "tolerance", "alignment", "knn_top1", "pos_sim", *[f"neg_sim_{k}" for k in range(1, 11)],
              "paper_accuracy", "paper_uniformity", "paper_tolerance", "source"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for group in groups:
            ref = paper.get(group.dataset, {}).get(column_key(group.loss, group.temperature), {})
            for run in group.runs:
                row = {"cell": run.name, "dataset": run.dataset, "column": group.key, "loss": run.loss,
                       "temperature": "" if run.temperature is None else run.temperature,
                       "seed": "" if run.seed is None else run.seed, "epochs": run.epochs or "",
                       "finished": run.finished, "runs_in_group": len(group.runs),
                       "differs": "; ".join(f"{k}={v}" for k, v in group.differs.items()), "source": run.source,
                       **{f"paper_{m}": ref.get(m, "") for m in ("accuracy", "uniformity", "tolerance")}}
                row.update({k: "" if v is None else repr(v) for k, v in quantities(run).items()})
                writer.writerow(row)


def markdown_table(groups: list[Group], paper: dict, paper_columns: list[str]) -> str:
    datasets = sorted({g.dataset for g in groups}, key=catalogue.dataset_order)
    not_run = [catalogue.dataset_title(d) for d in paper if d not in datasets]
    epochs = sorted({r.epochs for g in groups for r in g.runs if r.epochs is not None})
    lines = [
        "# Table 1: linear top-1 accuracy, -L_uniformity and tolerance",
        "",
        "Each entry is **ours / paper**; " + MISSING + " = not run (never filled in). Ours: linear top-1 of the",
        "last epoch's classifier (`test/top1_last`) and of the best validation epoch (`test/top1_best`, on the",
        "test split unless a held-out split was configured, as the paper's code did); uniformity",
        "(-L_uniformity, t = 2) and tolerance on the test-split embeddings at the last pretraining epoch.",
        "A column averages only runs whose recipes are equal but for the seed; \"mean of k\" counts the runs",
        "behind that number.",
        f"Our pretraining epochs: {', '.join(map(str, epochs)) if epochs else MISSING}; the paper's: 200.",
        "",
    ]
    rows = [("top-1 last (%)", "top1_last", "accuracy", 2), ("top-1 best (%)", "top1_best", "accuracy", 2),
            ("top-1 L-BFGS probe (%)", "top1_lbfgs", None, 2),
            ("-L_uniformity", "uniformity", "uniformity", 3), ("tolerance", "tolerance", "tolerance", 3),
            ("centroid norm", "centroid_norm", None, 3)]
    present = {q for g in groups for q in ("top1_lbfgs", "centroid_norm") if g.values(q)}
    rows = [r for r in rows if r[2] is not None or r[1] in present]  # the suite's extra rows when measured
    for dataset in datasets:
        columns = columns_of([g for g in groups if g.dataset == dataset], paper_columns)
        lines += [f"## {catalogue.dataset_title(dataset)}", "",
                  "| | " + " | ".join(header(g, c) for c, g in columns) + " |", "|---|" + "---|" * len(columns)]
        for title, ours_key, paper_key, digits in rows:
            cells = []
            for column, group in columns:
                ref = paper.get(dataset, {}).get(column, {}).get(paper_key) if paper_key else None
                cells.append(f"{entry(group, ours_key, digits)} / {MISSING if ref is None else f'{ref:g}'}")
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
        lines.append("")
        apart = kept_apart([g for _, g in columns if g is not None])
        if apart:
            lines.append("Columns that share a loss and temperature but not a recipe (kept apart):")
            lines += [f"- {key}: " + ", ".join(f"{k} = {v}" for k, v in differs.items()) for key, differs in apart]
            lines.append("")
    if not_run:
        lines += [f"No runs on {', '.join(not_run)}: every cell missing (the paper's numbers are in "
                  "configs/experiments/paper_table1.yaml).", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------- the verdicts
CLAIMS_HEADER = ("# The paper's claims on these runs\n\n"
                 "Each claim of `scripts/claim_catalogue.py`, decided by the rule of `scripts/verdicts.py` "
                 "(docs/reproduce.md, \"How a verdict is decided\").\n\n")


def verdict_markdown(groups: list[Group]) -> str:
    """The verdict table of every catalogued claim on these groups (the cells are the groups' keys)."""
    from scripts import claim_catalogue, report_data  # noqa: PLC0415

    return (claim_catalogue.markdown(claim_catalogue.evaluate(report_data.verdict_table(groups)))
            + report_data.not_compared_markdown(groups))


# -------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path,
                        help="folders of runs: a scripts/sweep.py --out folder, or the folder holding cli.py's run "
                             "folders (its CSV logger's save_dir, runs/ by default: runs/pretrain, runs/linear)")
    parser.add_argument("--out", type=Path, required=True, help="folder for table1.md, table1.csv, claims.md, PNGs")
    parser.add_argument("--include-unfinished", action="store_true",
                        help="also runs still going, interrupted or without a linear evaluation (accuracy missing)")
    parser.add_argument("--wandb-project", help="also read runs from this W&B project (online)")
    parser.add_argument("--wandb-entity")
    parser.add_argument("--wandb-group", help="only W&B runs of this group (the grid's name)")
    parser.add_argument("--no-figures", action="store_true", help="the tables only")
    parser.add_argument("--from-data", type=Path, metavar="DATA",
                        help="rebuild from a report's committed data folder (<report>/data) instead of runs")
    parser.add_argument("--doc", type=Path, action="append", default=[],
                        help="a Markdown file whose '<!-- generated:verdicts -->' ... '<!-- /generated -->' block "
                             "gets the verdict table (e.g. docs/reproduce.md); repeatable")
    opts = parser.parse_args(argv)
    from scripts import report_data  # noqa: PLC0415

    runs: list[Run] = []
    if opts.from_data is not None:
        if opts.runs or opts.wandb_project:
            parser.error("--from-data rebuilds from the data alone: give no runs folder or W&B project with it")
        try:
            runs = report_data.read_runs(opts.from_data)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    elif not opts.runs and not opts.wandb_project:
        parser.error("give a runs folder, --wandb-project, or both (or --from-data alone)")
    for root in opts.runs:
        if not root.is_dir():
            parser.error(f"{root} is not a folder")
        runs += find_runs(root, opts.include_unfinished)
    if opts.wandb_project:
        runs += [r for r in find_wandb_runs(opts.wandb_project, opts.wandb_entity, opts.wandb_group)
                 if r.finished or opts.include_unfinished]
    if not any(r.finished for r in runs) and not (opts.include_unfinished and runs):
        where = ", ".join(str(r) for r in opts.runs) + (f" and W&B project {opts.wandb_project}"
                                                        if opts.wandb_project else "")
        print(f"error: no finished run found in {where or opts.from_data}. Looked for scripts/sweep.py cells (<cell>/finished.json "
              "with <cell>/pretrain/version_N/config.yaml) and for cli.py runs: a linear evaluation "
              "<name>/version_N/ whose config.yaml names a pretraining checkpoint (--model.init_args.pretrained) "
              "of a pretraining run in the same folder and whose metrics.csv holds test/top1_last; give the folder "
              "that holds both (the CSV logger's save_dir, runs/ by default). "
              "--include-unfinished also reports pretrainings without an accuracy", file=sys.stderr)
        return 1
    groups = group_runs(runs)
    paper = catalogue.paper_table()
    opts.out.mkdir(parents=True, exist_ok=True)
    write_csv(groups, paper, opts.out / "table1.csv")
    (opts.out / "table1.md").write_text(markdown_table(groups, paper, catalogue.paper_columns()) + "\n")
    verdicts = verdict_markdown(groups)
    (opts.out / "claims.md").write_text(CLAIMS_HEADER + verdicts)
    written = [opts.out / "table1.md", opts.out / "table1.csv", opts.out / "claims.md"]
    data = opts.out / "data"
    if opts.from_data is None or data.resolve() != opts.from_data.resolve():  # never overwrite the input
        report_data.write_data(data, groups)
        written.append(data)
    for doc in opts.doc:
        doc.write_text(report_data.replace_block(doc.read_text(), "verdicts", verdicts))
        written.append(doc)
    if not opts.no_figures:
        from scripts.figures import report_figures, seed_figures  # noqa: PLC0415  (matplotlib only for figures)

        written += report_figures(groups, opts.out, paper, runs)
        # the same names with the seeds' spread (bands, intervals, both Fig 8 positives), and the plane
        seed_titles = {g.dataset: catalogue.dataset_title(g.dataset) for g in groups}
        redrawn = seed_figures(groups, opts.out, paper, seed_titles)
        written += [p for p in redrawn if p not in written]
    print(f"{len(runs)} runs in {len(groups)} groups ({sum(r.finished for r in runs)} finished); wrote "
          + ", ".join(p.name for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
