"""How long a grid's cells took, read from the runner logs that ``scripts/sweep.py`` writes.

    python scripts/grid_times.py runs/cpu3                       # a table on stdout
    python scripts/grid_times.py runs/cpu3 --out docs/results/cpu/wall_time.md

Each cell's ``runner.log`` records when its pretraining and its linear evaluation started,
resumed, finished, failed or were interrupted. An attempt is timed from its start (or
resume) to the line that ends it. An attempt followed by another start with no end line
between them was killed without a word (e.g. the machine's session ended): its length is
unknown, so the cell is marked and left out of the summary. The summary gives the median
and range of the cells timed whole, their sum, and the wall time from the first start to
the last end (which includes any time the grid was not running, also given as the gaps
longer than ``--gap`` minutes during which no cell was running).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from datetime import datetime
from pathlib import Path

LINE = re.compile(r"^(\S+) (pretrain|linear|done|FAILED|INTERRUPTED|skip)\b(.*)$")
STARTS = ("start", "resume")


def attempts(log: Path) -> tuple[list[tuple[str, datetime, datetime]], bool]:
    """(stage, start, end) of each timed attempt in a runner log, and whether one ended without a line."""
    timed, open_stage, broken = [], None, False
    for raw in log.read_text().splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        when, word, rest = datetime.fromisoformat(m.group(1)), m.group(2), m.group(3)
        if word in ("pretrain", "linear"):
            event = rest.split(":", 1)[1].strip() if ":" in rest else ""
            if event.startswith(STARTS):
                if open_stage is not None:
                    broken = True  # the previous attempt never logged its end
                open_stage = (word, when)
            elif event.startswith("finished") and open_stage is not None:
                timed.append((open_stage[0], open_stage[1], when))
                open_stage = None
        elif word in ("done", "FAILED", "INTERRUPTED") and open_stage is not None:
            timed.append((open_stage[0], open_stage[1], when))
            open_stage = None
    return timed, broken or open_stage is not None  # an attempt still open: running, or killed unlogged


def summary(folder: Path, gap_minutes: float = 10.0) -> dict | None:
    """Per-cell seconds and the grid's figures (module docstring); None when no cell has a timed attempt.

    Keys: ``cells`` (name -> {pretrain, linear, note}), ``whole`` (seconds of the finished cells timed
    whole), ``first`` and ``last`` (ISO times), ``span_s`` (last - first), ``idle_s`` and ``gaps`` (the
    stretches of more than ``gap_minutes`` with no cell running), ``running_s`` (span minus idle).
    """
    cells, whole, spans = {}, [], []
    for log in sorted(folder.glob("*/runner.log")):
        timed, broken = attempts(log)
        if not timed:
            continue
        seconds = {stage: sum((e - s).total_seconds() for st, s, e in timed if st == stage)
                   for stage in ("pretrain", "linear")}
        finished = (log.parent / "finished.json").is_file()
        note = "an attempt ended unlogged (or is running): not timed" if broken else ("" if finished else "not finished")
        cells[log.parent.name] = {**seconds, "note": note}
        if finished and not broken:
            whole.append(seconds["pretrain"] + seconds["linear"])
        spans += [(s, e) for _, s, e in timed]
    if not spans:
        return None
    spans.sort()
    gaps, reach = [], spans[0][1]
    for s, e in spans[1:]:
        if (s - reach).total_seconds() > gap_minutes * 60:
            gaps.append((reach, s))
        reach = max(reach, e)
    span = (reach - spans[0][0]).total_seconds()
    idle = sum((b - a).total_seconds() for a, b in gaps)
    return {"cells": cells, "whole": whole, "first": spans[0][0].isoformat(), "last": reach.isoformat(),
            "span_s": span, "idle_s": idle, "gaps": len(gaps), "running_s": span - idle, "gap_minutes": gap_minutes}


def summary_lines(info: dict) -> list[str]:
    """The summary's sentences (also in ``scripts/dilemma.py``'s report)."""
    lines = []
    whole = info["whole"]
    if whole:
        lines.append(f"Cells timed whole: {len(whole)}; median {statistics.median(whole):.0f} s, range "
                     f"{min(whole):.0f}-{max(whole):.0f} s, sum {sum(whole):.0f} s "
                     f"({sum(whole) / 3600:.2f} h of one stream).")
    lines.append(f"First start {info['first']}, last end {info['last']}: {info['span_s']:.0f} s, of which "
                 f"{info['idle_s']:.0f} s in {info['gaps']} gap(s) of more than {info['gap_minutes']:g} minutes "
                 f"with no cell running; {info['running_s']:.0f} s with cells running.")
    return lines


def table(folder: Path, gap_minutes: float = 10.0) -> str:
    info = summary(folder, gap_minutes)
    if info is None:
        return f"no timed cell under {folder}\n"
    rows = [f"| {name} | {c['pretrain']:.0f} | {c['linear']:.0f} | {c['pretrain'] + c['linear']:.0f} | {c['note']} |"
            for name, c in info["cells"].items()]
    lines = [f"# Wall time of the cells under `{folder.name}/` (from `scripts/grid_times.py`)", "",
             "Seconds per cell from the runner logs: pretraining and linear evaluation (both probes), each attempt",
             "from its start or resume to its end; two cells ran at a time, one thread each.", "",
             "| cell | pretraining s | linear s | cell s | note |", "|---|---:|---:|---:|---|", *rows, "",
             *summary_lines(info)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a scripts/sweep.py --out folder")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (Markdown)")
    parser.add_argument("--gap", type=float, default=10.0, help="minutes without a running cell that count as a gap")
    opts = parser.parse_args(argv)
    if not opts.folder.is_dir():
        print(f"error: no folder {opts.folder}; give a scripts/sweep.py --out folder", file=sys.stderr)
        return 2
    text = table(opts.folder, opts.gap)
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
