"""Tables of the docs written from committed report files, so that their numbers cannot drift from the data.

    python scripts/doc_tables.py docs/reproduce.md            # rewrite every block listed in TABLES
    python scripts/doc_tables.py docs/reproduce.md --check    # exit 1, naming the block, if one is out of date

A block sits between ``<!-- generated:<name> -->`` and ``<!-- /generated -->``. The verdict table
(``generated:verdicts``) is written by ``scripts/report.py --doc``; the blocks here are rows of a
committed ``table1.csv`` (one row per run), chosen and labelled by :data:`TABLES`.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.report_data import replace_block  # noqa: E402


@dataclass(frozen=True)
class RunsTable:
    """Some runs of a committed ``table1.csv``, one Markdown row each.

    Attributes:
        source: the CSV, relative to the repository root.
        columns: (header, CSV field, digits).
        rows: (label, the run's ``cell`` in the CSV).
    """

    source: str
    columns: tuple[tuple[str, str, int], ...]
    rows: tuple[tuple[str, str], ...]

    def markdown(self, root: Path = ROOT) -> str:
        with open(root / self.source, newline="") as f:
            runs = {r["cell"]: r for r in csv.DictReader(f)}
        lines = ["| cell | " + " | ".join(h for h, _, _ in self.columns) + " |",
                 "|---|" + "---|" * len(self.columns)]
        for label, cell in self.rows:
            if cell not in runs:
                raise KeyError(f"{self.source} has no run {cell!r}")
            values = [runs[cell][field] for _, field, _ in self.columns]
            lines.append(f"| {label} | " + " | ".join("—" if v == "" else f"{float(v):.{d}f}"
                                                       for v, (_, _, d) in zip(values, self.columns)) + " |")
        return "\n".join(lines) + "\n"


TABLES = {
    "early_collapse": RunsTable(
        "docs/results/early/table1.csv",
        (("test centroid", "centroid_norm", 3), ("-L_uniformity", "uniformity", 3), ("tolerance", "tolerance", 3),
         ("L-BFGS top-1 (%)", "top1_lbfgs", 1)),
        (("hard, tau 0.07 (Eq 9, the suite's selection)", "hard_tau0.07"),
         ("... the author's selection (top k+1 of all keys)", "hard_tau0.07_author_selection"),
         ("... the author's unnormalised bank initialisation", "hard_tau0.07_raw_bank_init"),
         ("... encoder width 64", "hard_tau0.07_width64"),
         ("... BatchNorm after the head", "hard_tau0.07_head_norm"),
         ("hard, tau 1.0", "hard_tau1.0"),
         ("contrastive, tau 0.07 (for comparison)", "bank_tau0.07"))),
}


def render(text: str, root: Path = ROOT) -> str:
    """``text`` with every block of :data:`TABLES` it holds rewritten."""
    for name, table in TABLES.items():
        if f"<!-- generated:{name} -->" in text:
            text = replace_block(text, name, table.markdown(root))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("docs", type=Path, nargs="+", help="Markdown files holding generated blocks")
    parser.add_argument("--check", action="store_true", help="only say whether the blocks are current")
    opts = parser.parse_args(argv)
    stale = []
    for doc in opts.docs:
        text = doc.read_text()
        new = render(text)
        if new != text:
            stale.append(str(doc))
            if not opts.check:
                doc.write_text(new)
    if opts.check and stale:
        print(f"error: generated tables out of date in {', '.join(stale)}: run python scripts/doc_tables.py "
              f"{' '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
