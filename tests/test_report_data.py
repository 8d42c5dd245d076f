"""A report regenerates exactly from its committed data (scripts/report_data.py, report.py --from-data)."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from scripts import claim_catalogue as cat
from scripts import report_data
from scripts.runs import Run, group_runs
from tests.conftest import ROOT
from tests.test_reproduce import CELLS, last_row, report, tiny_sweep  # noqa: F401  (tiny_sweep: a fixture)

GENERATED = ("table1.md", "table1.csv", "claims.md")
DOC = ROOT / "docs/reproduce.md"


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_report_rebuilds_identically_from_its_data(tiny_sweep, tmp_path):  # noqa: F811
    _, out = tiny_sweep
    doc_runs, doc_data = tmp_path / "runs.md", tmp_path / "data.md"
    for doc in (doc_runs, doc_data):
        shutil.copy(DOC, doc)
    first, second = tmp_path / "from_runs", tmp_path / "from_data"
    assert report.main([str(out), "--out", str(first), "--no-figures", "--doc", str(doc_runs)]) == 0
    assert report.main(["--from-data", str(first / "data"), "--out", str(second), "--no-figures",
                        "--doc", str(doc_data)]) == 0
    for name in GENERATED:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert doc_runs.read_text() == doc_data.read_text()
    block = report_data.block(doc_runs.read_text(), "verdicts")
    assert block == (first / "claims.md").read_text().split("\n\n", 2)[2]  # the same table in both places
    assert files(first / "data") == files(second / "data")  # the data survive a round trip byte for byte
    # what the data hold: each run's logged epochs and final values, and both probes' predictions
    import json

    index = {e["name"]: e for e in json.loads(gzip.decompress((first / "data/runs.json.gz").read_bytes()))}
    for name in CELLS:
        entry = index[name]
        seed_file = first / "data" / entry["file"]
        assert entry["seed"] == 0 and entry["finished"] and sorted(entry["predictions"]) == ["sgd"]
        with gzip.open(seed_file, "rt", newline="") as f:
            rows = {r["epoch"]: r for r in csv.DictReader(f)}
        assert set(rows) == {"-1", "0", "1", "final"}
        logged = last_row(out / name / "pretrain/version_0/metrics.csv", "val/uniformity")
        assert float(rows["1"]["val/uniformity"]) == float(logged["val/uniformity"])
        linear = last_row(out / name / "linear/version_0/metrics.csv", "test/top1_last")
        assert float(rows["final"]["test/top1_last"]) == 100 * float(linear["test/top1_last"])
        saved = report_data.load_predictions(seed_file.parent / "seed0_predictions_sgd.csv.gz")
        original = np.load(out / name / "linear/version_0/predictions_sgd.npz")
        assert all(np.array_equal(saved[k], original[k]) for k in ("index", "label", "pred"))
        assert 100 * (saved["pred"] == saved["label"]).mean() == pytest.approx(float(rows["final"]["test/top1_last"]))


def test_data_folder_errors_are_one_line(tmp_path, capsys):
    assert report.main(["--from-data", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "runs.json.gz" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        report.main(["--from-data", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "r")])
    with pytest.raises(ValueError, match="generated:verdicts"):
        report_data.replace_block("no markers here", "verdicts", "x")


def synthetic_runs(folder: Path) -> list[Run]:
    """Three seeds of every catalogued cell, the paper's orderings, per-image predictions on 500 shared images."""
    rng = np.random.default_rng(0)
    hard = rng.random(500)  # each test image's difficulty, shared by every model
    labels = rng.integers(0, 10, 500)
    runs = []
    for cell in cat.ALL_CELLS:
        loss, _, tau_text = cell.partition("_tau")
        tau = float(tau_text) if tau_text else None
        t = tau if tau is not None else 3.0
        is_hard = loss.startswith("hard")
        for seed in range(3):
            d = 0.002 * rng.standard_normal()
            final = {"val/uniformity": (3.7 if is_hard else 3.6 - t / 2) + d,
                     "val/tolerance": (0.1 + 0.01 * t if is_hard else 0.1 + 0.1 * t) + d / 10,
                     "val/pos_sim": 0.4 + 0.3 * min(t, 1) + d, "val/neg_sim_1": 0.4 + 0.8 * min(t, 1) + d,
                     "val/pos_sim_bank": 0.5 + 0.3 * min(t, 1) + d, "val/neg_sim_bank_1": 0.5 + 0.6 * min(t, 1)}
            p = {0.2: 0.6, 0.3: 0.6}.get(t, 0.5) if loss == "contrastive" else 0.3 if loss == "simple" else \
                0.6 if loss == "hard_simple" else 0.5 + 0.1 * t
            correct = (hard < p) ^ (rng.random(500) < 0.02)
            preds = {}
            for probe in ("sgd", "lbfgs"):
                pred = np.where(correct, labels, (labels + 1) % 10)
                preds[probe] = folder / f"{cell}_{seed}_{probe}.npz"
                np.savez_compressed(preds[probe], index=np.arange(500), label=labels, pred=pred)
            metrics = {**final, "test/top1_last": float(100 * correct.mean()), "test/top1_lbfgs": float(100 * correct.mean())}
            trajectory = {e: {k: v * (e + 2) / 4 for k, v in final.items()} for e in (0, 1, 2)}
            trajectory[-1] = {k: 0.5 for k in final}  # before training: every cell alike
            runs.append(Run(f"{cell}_seed{seed}", folder / cell, "cifar10", loss, tau, seed,
                            {"model": {"init_args": {"loss": {"key": loss, "temperature": tau}}}, "epochs": 3},
                            True, 3, metrics, trajectory, preds, f"synthetic/{cell}"))
    return runs


def test_verdicts_from_committed_format_data_rebuild_and_decide(tmp_path):
    runs = synthetic_runs(tmp_path)
    data = tmp_path / "data"
    report_data.write_data(data, group_runs(runs))
    first, second = tmp_path / "r1", tmp_path / "r2"
    assert report.main(["--from-data", str(data), "--out", str(first), "--no-figures"]) == 0
    assert report.main(["--from-data", str(first / "data"), "--out", str(second), "--no-figures"]) == 0
    for name in GENERATED:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    claims = (first / "claims.md").read_text()
    rows = {r["id"]: r for r in cat.evaluate(report_data.verdict_table(report_data.read_groups(data)))}
    for claim_id in ("uniformity_falls_with_tau", "tolerance_rises_with_tau", "fig8_gap_bank", "fig8_positive_bank",
                     "hard_better_at_large_tau[top1_last]", "simple_inferior[top1_lbfgs]", "simple_least_uniform"):
        assert rows[claim_id]["outcome"] == "holds", claim_id
    assert rows["uniformity_falls_with_tau"]["from_epoch"] == 0  # all cells equal-ordered from epoch 0 (scaled)
    assert "not tested" not in claims and claims.count("**holds**") >= 7
    # the seed files carry 3 seeds of each of the 12 cells, the predictions beside them
    assert len(list(data.rglob("seed*.csv.gz"))) == 3 * len(cat.ALL_CELLS) * 3  # trajectory + 2 probes


@pytest.mark.parametrize("report_dir", sorted(p.parent.parent for p in (ROOT / "docs/results").glob("*/data/runs.json.gz")
                                               if (p.parent.parent / "table1.md").is_file()))  # report.py's reports
def test_committed_reports_regenerate_exactly(report_dir, tmp_path):
    """Each committed report with data: table1, claims.md and docs/reproduce.md's verdicts rebuild identically."""
    out = tmp_path / "report"
    assert report.main(["--from-data", str(report_dir / "data"), "--out", str(out), "--no-figures"]) == 0
    for name in GENERATED:
        assert (out / name).read_text() == (report_dir / name).read_text(), name
    if report_dir.name == "cpu":
        assert report_data.block(DOC.read_text(), "verdicts") == (out / "claims.md").read_text().split("\n\n", 2)[2]


def test_the_docs_generated_tables_match_their_committed_sources(tmp_path, capsys):
    from scripts import doc_tables

    assert doc_tables.main([str(DOC), "--check"]) == 0
    text = DOC.read_text()
    assert "<!-- generated:early_collapse -->" in text and "<!-- generated:verdicts -->" in text
    stale = tmp_path / "reproduce.md"
    stale.write_text(text.replace("| hard, tau 1.0 | 0.881 |", "| hard, tau 1.0 | 0.878 |"))  # a hand edit
    assert doc_tables.main([str(stale), "--check"]) == 1
    assert capsys.readouterr().err.startswith("error: generated tables out of date")
    assert doc_tables.main([str(stale)]) == 0 and stale.read_text() == text


def test_seed_figures_draw_every_loss_with_bands_bars_and_both_positives(tmp_path):
    from PIL import Image

    from scripts import figures

    runs = synthetic_runs(tmp_path)
    for r in runs:  # the full Fig 8 profile, both ways
        for k in range(2, 11):
            r.metrics[f"val/neg_sim_{k}"] = r.metrics["val/neg_sim_1"] - 0.02 * k
            r.metrics[f"val/neg_sim_bank_{k}"] = r.metrics["val/neg_sim_bank_1"] - 0.02 * k
    groups = group_runs(runs)
    from scripts import catalogue

    written = figures.seed_figures(groups, tmp_path / "figs", catalogue.paper_table(), {"cifar10": "CIFAR-10"})
    assert {p.name for p in written} == {
        "fig4_uniformity_contrastive.png", "fig5_tolerance_contrastive.png", "fig6_uniformity_hard_contrastive.png",
        "fig7_tolerance_hard_contrastive.png", "fig8_similarities_cifar10.png", "fig9_accuracy.png",
        "trajectories.png", "uniformity_tolerance_cifar10.png"}
    for png in written:
        with Image.open(png) as image:
            image.verify()
    # the plane: one marker per cell of every loss, the tempered losses joined in tau order
    import matplotlib.figure

    drawn = {}
    original = matplotlib.figure.Figure.savefig

    def keep(fig, *args, **kwargs):
        drawn[Path(args[0]).name] = fig
        return original(fig, *args, **kwargs)

    matplotlib.figure.Figure.savefig = keep
    try:
        figures.seed_figures(groups, tmp_path / "again")
    finally:
        matplotlib.figure.Figure.savefig = original
    ax = drawn["uniformity_tolerance_cifar10.png"].axes[0]
    from matplotlib.collections import PathCollection

    markers = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets()) == 1]
    assert len(markers) == len(cat.ALL_CELLS)
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]
    assert sorted(len(line.get_xdata()) for line in curves) == [len(cat.HARD_TAUS), len(cat.CONTRASTIVE_TAUS)]
    contrastive = max(curves, key=lambda line: len(line.get_xdata()))
    means = {t: np.mean([r.metrics["val/tolerance"] for r in runs if r.loss == "contrastive" and r.temperature == t])
             for t in cat.CONTRASTIVE_TAUS}
    assert list(contrastive.get_xdata()) == pytest.approx([means[t] for t in cat.CONTRASTIVE_TAUS])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "contrastive (3 seeds)", "hard contrastive (3 seeds)", "hard simple (3 seeds)", "simple (3 seeds)"]
    # Fig 8: two panels (second view, bank), the legend outside the data
    fig8 = drawn["fig8_similarities_cifar10.png"]
    assert len(fig8.axes) == 2 and "bank" in fig8.axes[1].get_title()
    assert fig8.axes[1].get_legend().get_bbox_to_anchor().x0 > fig8.axes[1].get_window_extent().x1 - 1
