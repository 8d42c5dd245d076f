"""scripts/grid_times.py times each attempt of a cell from its runner log and leaves unlogged ends out."""

from __future__ import annotations

from scripts import grid_times


def _cell(root, name, lines, finished=True):
    cell = root / name
    cell.mkdir(parents=True)
    (cell / "runner.log").write_text("\n".join(lines) + "\n")
    if finished:
        (cell / "finished.json").write_text("{}")


def test_cells_are_timed_per_attempt_and_a_silent_end_is_not_timed(tmp_path):
    _cell(tmp_path, "a_seed0", ["2026-12-02T00:00:00 pretrain a_seed0: start",
                                "2026-12-02T00:05:00 pretrain a_seed0: finished, x/last.ckpt",
                                "2026-12-02T00:05:00 linear a_seed0: start on x/last.ckpt",
                                "2026-12-02T00:05:30 done a_seed0: test/top1_last 0.4"])
    _cell(tmp_path, "b_seed0", ["2026-12-02T00:00:00 pretrain b_seed0: start",
                                "2026-12-02T00:01:00 INTERRUPTED pretrain b_seed0 (signal 15); the next call resumes it",
                                "2026-12-02T01:00:00 pretrain b_seed0: resume from x/last.ckpt",
                                "2026-12-02T01:04:00 pretrain b_seed0: finished, x/last.ckpt",
                                "2026-12-02T01:04:00 linear b_seed0: start on x/last.ckpt",
                                "2026-12-02T01:04:20 done b_seed0: test/top1_last 0.4"])
    _cell(tmp_path, "c_seed0", ["2026-12-02T00:00:00 pretrain c_seed0: start",
                                "2026-12-02T00:30:00 pretrain c_seed0: start",  # the first attempt was killed unlogged
                                "2026-12-02T00:34:00 pretrain c_seed0: finished, x/last.ckpt"])
    timed, broken = grid_times.attempts(tmp_path / "b_seed0" / "runner.log")
    assert not broken and [(s, (e - b).total_seconds()) for s, b, e in timed] == [
        ("pretrain", 60.0), ("pretrain", 240.0), ("linear", 20.0)]
    assert grid_times.attempts(tmp_path / "c_seed0" / "runner.log")[1]
    text = grid_times.table(tmp_path, gap_minutes=10)
    assert "| a_seed0 | 300 | 30 | 330 |  |" in text and "| b_seed0 | 300 | 20 | 320 |  |" in text
    assert "| c_seed0 |" in text and "not timed" in text
    # a and b are whole; c is not: median of 330 and 320
    assert "Cells timed whole: 2; median 325 s, range 320-330 s, sum 650 s" in text
    # cells running 00:00-00:05:30, 00:30-00:34 (c's killed attempt is not timed) and 01:00-01:04:20
    assert "3860 s, of which 3030 s in 2 gap(s)" in text
