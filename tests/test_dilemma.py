"""scripts/dilemma.py (the four questions on synthetic data whose truth is known) and configs/experiments/grid_dilemma.yaml."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import yaml

import cli
from scripts import dilemma
from scripts.dilemma import Cell
from scripts.runs import describe
from scripts.verdicts import CONTRADICTED, HOLDS, NOT_RESOLVED, SeedRecord
from tests.conftest import ROOT
from tests.test_reproduce import sweep

GRID = ROOT / "configs/experiments/grid_dilemma.yaml"
T = "--model.init_args.loss.init_args.temperature"
TEMPERED = ("debiased", "hcl", "dcl", "dclw", "dual_temperature", "macl")


# ------------------------------------------------------------------ synthetic cells
def cell(key: str, curve: bool = False, seeds: int = 3, sd: float = 0.005, rng=None, **means: float) -> Cell:
    """A cell whose seeds scatter around ``means`` (deterministic: the offsets are -sd, 0, +sd...)."""
    offsets = np.linspace(-sd, sd, seeds) if seeds > 1 else np.zeros(1)
    records = [SeedRecord(i, {q: m + o for q, m in means.items()}) for i, o in enumerate(offsets)]
    return Cell(key, "contrastive" if curve else key, 0.5, records, curve, key)


def curve() -> list[Cell]:
    """Contrastive's curve: uniformity falls as tolerance rises, through (0.2, 3.8), (0.4, 3.0), (0.6, 2.0), (0.8, 1.0)."""
    points = [(0.2, 3.8), (0.4, 3.0), (0.6, 2.0), (0.8, 1.0)]
    return [cell(f"contrastive_tau{i}", True, tolerance=x, uniformity=y) for i, (x, y) in enumerate(points)]


def test_signed_distance_is_positive_beyond_a_falling_and_a_rising_curve():
    cx, cy = np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])  # falling: (0, 1) -> (1, 0)
    d = [dilemma.signed_distance(np.array([x]), np.array([y]), cx, cy)[0] for x, y in ((1, 1), (0, 0), (0.5, 0.5))]
    assert d == pytest.approx([math.sqrt(0.5), -math.sqrt(0.5), 0.0])
    rising = dilemma.signed_distance(np.array([0.0]), np.array([1.0]), np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))
    assert rising[0] == pytest.approx(math.sqrt(0.5))  # above a rising curve (points given in any order)


def test_q1_a_cell_beyond_the_curve_holds_one_on_it_is_not_resolved_one_inside_is_contradicted():
    beyond = cell("beyond", tolerance=0.6, uniformity=3.0)  # more tolerant than contrastive at uniformity 3.0
    on = cell("on", sd=0.05, tolerance=0.5, uniformity=2.5)  # the midpoint of a segment, with seed noise
    inside = cell("inside", tolerance=0.3, uniformity=2.0)
    answer = dilemma.beyond_curve([*curve(), beyond, on, inside], draws=2000)
    assert {k: e.outcome for k, e in answer.per_cell.items()} == {"beyond": HOLDS, "on": NOT_RESOLVED,
                                                                  "inside": CONTRADICTED}
    assert answer.outcome == HOLDS and answer.estimate.text == "distance(beyond)"
    assert answer.per_cell["beyond"].value > 0 > answer.per_cell["inside"].value
    assert dilemma.beyond_curve([*curve(), on, inside], draws=2000).outcome == NOT_RESOLVED
    assert dilemma.beyond_curve([*curve(), inside], draws=2000).outcome == CONTRADICTED


def test_q1_the_curves_own_noise_widens_the_interval():
    """The same cell beyond a precise curve holds; beyond a curve whose seeds scatter widely it is not resolved."""
    near = cell("near", tolerance=0.45, uniformity=2.9)
    assert dilemma.beyond_curve([*curve(), near], draws=2000).outcome == HOLDS
    noisy = [cell(c.key, True, sd=0.6, tolerance=c.mean("tolerance"), uniformity=c.mean("uniformity"))
             for c in curve()]
    assert dilemma.beyond_curve([*noisy, near], draws=2000).outcome == NOT_RESOLVED


def test_q1_draws_a_cells_two_coordinates_together_as_its_seeds_move_them():
    rng = np.random.default_rng(0)
    along = Cell("a", "a", 0.5, [SeedRecord(i, {"tolerance": 0.4 + o, "uniformity": 3.0 - 2 * o})
                                 for i, o in enumerate((-0.01, 0.0, 0.012))], False, "a")
    x, y = dilemma._draw(along, {}, rng, 4000)
    assert np.corrcoef(x, y)[0, 1] < -0.99  # the seeds trade tolerance for uniformity: so do the draws
    assert x.mean() == pytest.approx(0.4007, abs=0.002) and np.std(y) == pytest.approx(2 * np.std(x), rel=1e-6)
    one = Cell("b", "b", 0.5, [SeedRecord(0, {"tolerance": 0.4, "uniformity": 3.0})], False, "b")
    x, y = dilemma._draw(one, {"tolerance": (1e-4, 4), "uniformity": (4e-4, 4)}, rng, 4000)
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.1 and np.std(y) == pytest.approx(2 * np.std(x), rel=0.15)


def test_q1_without_a_curve_is_not_tested():
    assert dilemma.beyond_curve([curve()[0], cell("x", tolerance=0.5, uniformity=2.0)]).outcome == "not tested"


def accuracy_cell(key: str, accuracy: float, curve_: bool = False, m: int = 2000, shift: int = 0) -> Cell:
    """Three seeds, each right on the first ``accuracy`` share of the test images (rolled by ``shift + seed``)."""
    records = []
    for s in range(3):
        correct = (np.arange(m) < accuracy * m).astype(np.int64)
        correct = np.roll(correct, shift + 7 * s)  # (M,)
        index = np.arange(m)
        value = 100.0 * correct.mean()
        records.append(SeedRecord(s, {"top1_last": value, "top1_lbfgs": value},
                                  predictions={"top1_last": (index, correct), "top1_lbfgs": (index, correct)}))
    return Cell(key, "contrastive" if curve_ else key, 0.5, records, curve_, key)


def test_q2_beats_the_best_tau_on_both_probes():
    contrastive = [accuracy_cell("c0.07", 0.6, True), accuracy_cell("c0.2", 0.7, True)]
    better, worse, same = accuracy_cell("better", 0.8), accuracy_cell("worse", 0.5), accuracy_cell("same", 0.7, shift=3)
    answer = dilemma.beats_best_tau([*contrastive, better, worse, same])
    assert answer.outcome == HOLDS and "c0.2" in answer.detail
    assert {k: e.outcome for k, e in answer.per_cell.items()} == {"better": HOLDS, "worse": CONTRADICTED,
                                                                  "same": NOT_RESOLVED}
    assert answer.per_cell["better"].value == pytest.approx(10.0)  # against the best tau (70%), not the worst
    assert dilemma.beats_best_tau([*contrastive, worse]).outcome == CONTRADICTED
    assert dilemma.beats_best_tau([*contrastive, worse, same]).outcome == NOT_RESOLVED


def fnr_cells(rho: float, n: int = 40, seed: int = 0) -> list[Cell]:
    """n cells of three seeds whose (fnr, tolerance) are bivariate normal with correlation ``rho``."""
    rng = np.random.default_rng(seed)
    xy = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=(n, 3))  # (n, 3, 2)
    return [Cell(f"c{i}", f"c{i}", None, [SeedRecord(s, {"fnr": float(xy[i, s, 0]), "tolerance": float(xy[i, s, 1])})
                                          for s in range(3)]) for i in range(n)]


def test_q3_the_correlation_and_its_interval_find_the_known_correlation():
    strong, none = fnr_cells(0.9), fnr_cells(0.0)
    a = dilemma.false_negatives_explain(strong, draws=1000)
    flat = np.array([(s.final["fnr"], s.final["tolerance"]) for c in strong for s in c.seeds])  # (120, 2)
    r = np.corrcoef(flat[:, 0], flat[:, 1])[0, 1]
    assert a.outcome == HOLDS and a.estimate.value == pytest.approx(r - dilemma.EXPLAINS)
    assert a.estimate.low < a.estimate.value < a.estimate.high and 0.8 < r < 0.95
    result = dilemma.correlations([[(s.final["fnr"], s.final["tolerance"]) for s in c.seeds] for c in none], draws=1000)
    low, high = result["pearson"][1:]
    assert low < 0.0 < high  # the interval covers the true correlation 0
    assert dilemma.false_negatives_explain(none, draws=1000).outcome == CONTRADICTED  # surely below 0.5
    assert dilemma.false_negatives_explain(fnr_cells(0.5, n=6), draws=1000).outcome == NOT_RESOLVED


def test_q3_cells_without_a_false_negative_rate_are_listed():
    cells = fnr_cells(0.9, n=4)
    cells.append(Cell("no_fnr", "x", None, [SeedRecord(0, {"tolerance": 0.3})]))
    assert dilemma.false_negatives_explain(cells, draws=200).missing == ["no_fnr (no false-negative rate)"]
    assert dilemma.false_negatives_explain(cells[:2] + cells[-1:]).outcome == "not tested"


def test_q4_the_best_of_the_uniform_enough_cells_is_the_most_tolerant():
    uniform = cell("uniform", uniformity=3.80, tolerance=0.30, top1_last=70.0)
    tolerant_enough = cell("both", uniformity=3.79, tolerance=0.40, top1_last=75.0)  # within noise of the max
    too_tolerant = cell("loose", uniformity=2.0, tolerance=0.90, top1_last=60.0)  # not uniform enough
    answer = dilemma.best_where_predicted([uniform, tolerant_enough, too_tolerant])
    assert answer.outcome == HOLDS and "uniform enough: uniform, both" in answer.detail
    assert answer.estimate.value == pytest.approx(0.10)
    swapped = cell("both", uniformity=3.79, tolerance=0.40, top1_last=65.0)  # the less tolerant cell is best
    assert dilemma.best_where_predicted([uniform, swapped, too_tolerant]).outcome == CONTRADICTED
    close = cell("both", sd=0.2, uniformity=3.79, tolerance=0.31, top1_last=75.0)
    assert dilemma.best_where_predicted([uniform, close, too_tolerant]).outcome == NOT_RESOLVED


# ------------------------------------------------------------------ the command
def write_cell(root, name: str, loss: dict, seed: int, tolerance: float, uniformity: float, fnr: list[float],
               accuracy: float, m: int = 200) -> None:
    """A finished scripts/sweep.py cell as runs.py reads it (2 planned epochs)."""
    pre, lin = root / name / "pretrain/version_0", root / name / "linear/version_0"
    pre.mkdir(parents=True)
    lin.mkdir(parents=True)
    config = {"seed_everything": seed, "trainer": {"max_epochs": 2},
              "model": {"class_path": "lightning_modules.contrastive.ContrastiveModule", "init_args": {"loss": loss}},
              "data": {"class_path": "datamodules.cifar.CIFAR10DataModule", "init_args": {}}}
    (pre / "config.yaml").write_text(yaml.safe_dump(config))
    rows = ["epoch,step,train/false_negative_rate,val/uniformity,val/tolerance"]
    rows += [f"0,{i},{0.9},," for i in range(2)] + ["0,3,,3.0,0.1"]
    rows += [f"1,{10 + i},{v},," for i, v in enumerate(fnr)] + [f"1,20,,{uniformity},{tolerance}"]
    (pre / "metrics.csv").write_text("\n".join(rows) + "\n")
    correct = np.arange(m) < accuracy * m  # (M,)
    labels = np.zeros(m, dtype=np.int64)
    np.savez(lin / "predictions_sgd.npz", index=np.arange(m), label=labels, pred=np.where(correct, 0, 1))
    np.savez(lin / "predictions_lbfgs.npz", index=np.arange(m), label=labels, pred=np.where(correct, 0, 1))
    (lin / "metrics.csv").write_text(f"epoch,step,test/top1_last,test/top1_lbfgs\n0,0,{correct.mean()},{correct.mean()}\n")
    (root / name / "finished.json").write_text(json.dumps({"linear_run": "linear/version_0"}))
    start = 10 * seed
    (root / name / "runner.log").write_text(f"2026-12-01T10:{start:02d}:00 pretrain {name}: start\n"
                                            f"2026-12-01T10:{start + 5:02d}:00 done {name}: test/top1_last 0.5\n")


def test_the_command_writes_its_report_data_and_plane_and_lists_missing_cells(tmp_path):
    curve_root, study = tmp_path / "cpu3", tmp_path / "dilemma"
    contrastive = "lightning_modules.losses.ContrastiveLoss"
    for s in range(2):
        for tau, tol, unif in ((0.07, 0.2, 3.8), (0.5, 0.5, 2.5), (1.0, 0.8, 1.0)):
            write_cell(curve_root, f"contrastive_tau{tau}_seed{s}", {"class_path": contrastive, "init_args":
                       {"temperature": tau}}, s, tol + 0.01 * s, unif + 0.01 * s, [0.1 + tol, 0.2 + tol], 0.6 + tol / 4)
        write_cell(study, f"dcl_tau0.1_seed{s}", {"class_path": "lightning_modules.followup_losses.DecoupledContrastiveLoss",
                   "init_args": {"temperature": 0.1}}, s, 0.6 + 0.01 * s, 3.0, [0.7 + 0.1 * s, 0.8 + 0.1 * s], 0.9)
    out = tmp_path / "report"
    doc = tmp_path / "doc.md"
    doc.write_text("# Beyond\n\n<!-- generated:dilemma -->\nnot run yet\n<!-- /generated -->\n\nprose\n")
    assert dilemma.main([str(curve_root), str(study), "--out", str(out), "--draws", "300", "--doc", str(doc)]) == 0
    text = (out / "dilemma.md").read_text()
    written = doc.read_text()
    assert "not run yet" not in written and written.endswith("<!-- /generated -->\n\nprose\n")
    assert "| 1. Does any loss lie beyond contrastive's tau curve" in written and "## Per cell" not in written
    assert "| dcl_tau0.1 | 2 |" in text and "contrastive_tau0.5 (curve)" in text
    # dcl's false-negative rate: each seed's mean of its last epoch's steps (0.75, 0.85; epoch 0's 0.9 left out)
    assert "| 0.800 ± 0.071 |" in text
    assert re.search(r"beyond contrastive's tau curve .*\| \*\*holds\*\*", text)
    assert "dilemma/debiased_tau0.5_seed0" in text and "cpu3/contrastive_tau0.2_seed0" in text  # missing cells
    assert "dilemma/dcl_tau0.1_seed0," not in text
    assert (out / "uniformity_tolerance_plane.png").stat().st_size > 0 and (out / "data/runs.json.gz").is_file()
    again = tmp_path / "again"
    assert dilemma.main(["--from-data", str(out / "data"), "--out", str(again), "--draws", "300", "--no-figures"]) == 0
    rebuilt = (again / "dilemma.md").read_text()
    assert ("Cells timed whole: 2; median 300 s, range 300-300 s, sum 600 s (0.17 h of one stream). First start "
            "2026-12-01T10:00:00, last end 2026-12-01T10:15:00: 900 s") in text
    assert rebuilt == text  # the same verdicts, rows, wall time and missing cells from the data alone


def test_the_command_stops_with_one_line_when_the_grids_have_not_run(tmp_path, capsys):
    assert dilemma.main([str(tmp_path / "cpu3"), str(tmp_path / "dilemma"), "--out", str(tmp_path / "r")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


# ------------------------------------------------------------------ the grid
def columns_of_grid() -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    for c in sweep.load_grid(GRID).cells:
        column, seed = re.fullmatch(r"(.+)_seed(\d)", c.name).groups()
        seen.setdefault(column, set()).add(int(seed))
    return seen


def test_grid_dilemma_has_three_seeds_of_every_loss_after_the_paper_and_grid_cpu3s_recipe():
    grid = sweep.load_grid(GRID)
    reference = sweep.load_grid(ROOT / "configs/experiments/grid_cpu3.yaml")
    assert grid.pretrain == reference.pretrain and grid.linear == reference.linear
    expected = {"debiased_tau0.5", "hcl_tau0.5", "dcl_tau0.1", "dclw_tau0.1", "dual_temperature_tau0.1", "macl_tau0.1",
                "align_uniform", "cosine_temperature_tau1.0", "learnable_temperature_tau0.07",
                *(f"{loss}_tau{t}" for loss in TEMPERED for t in ("0.07", "1.0")),
                "contrastive_in_batch_tau0.07", "contrastive_in_batch_tau1.0"}
    assert columns_of_grid() == {c: {0, 1, 2} for c in expected}
    assert not any(c.startswith("contrastive_tau") for c in columns_of_grid())  # the curve comes from runs/cpu3
    names = [c.name for c in grid.cells]
    assert [n.endswith("_seed0") for n in names[:9]] == [True] * 9 and names[9].endswith("_seed1")  # seed-major
    assert all("in_batch" in n for n in names[-6:]) and not any("in_batch" in n for n in names[:-6])  # optional last
    text = GRID.read_text()
    assert "OPTIONAL" in text and "--out runs/dilemma" in text


@pytest.mark.slow
def test_every_grid_dilemma_cell_resolves_through_the_cli_to_its_name(capsys):
    """69 configs through the CLI (about two minutes on two cores)."""
    grid = sweep.load_grid(GRID)
    for c in grid.cells:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["fit", *grid.pretrain, *c.pretrain, "--print_config"])
        assert exit_info.value.code in (0, None)
        config = yaml.safe_load(capsys.readouterr().out)
        dataset, key, tau = describe(config)
        negatives = config["model"]["init_args"]["negatives"]["class_path"]
        in_batch = negatives.endswith("InBatchNegatives")
        assert in_batch == (key == "align_uniform" or "in_batch" in c.name), c.name
        assert config["data"]["init_args"]["num_views"] == (2 if in_batch else 1), c.name
        column = f"{key}{'_in_batch' if key == 'contrastive' else ''}" + (f"_tau{float(tau)}" if tau is not None else "")
        assert dataset == "cifar10" and c.name == f"{column}_seed{config['seed_everything']}"
        assert config["trainer"]["max_epochs"] == 60 and config["data"]["init_args"]["train_subset"] == 4000
        if key == "cosine_temperature":
            assert config["model"]["init_args"]["loss"]["init_args"]["half_period"] == 30


def test_grid_dilemma_writes_to_its_own_folder():
    """No other grid's documented command writes to runs/dilemma (the report would mix their cells)."""
    outs: dict[str, set[str]] = {}
    for path in [*ROOT.glob("configs/experiments/grid_*.yaml"), *ROOT.glob("docs/**/*.md"), ROOT / "README.md"]:
        for grid, out in re.findall(r"scripts/sweep\.py\s+(?:\S*/)?(grid_\w+)\.yaml\s+--out\s+(\S+)", path.read_text()):
            outs.setdefault(out, set()).add(grid)
    assert outs.get("runs/dilemma") == {"grid_dilemma"}
    assert all(len(grids) == 1 for grids in outs.values()), outs


def test_the_false_negative_rate_is_the_mean_of_the_last_epochs_steps_across_a_resume(tmp_path):
    """A resumed run's later version wins the epochs it logs again; the last epoch's steps are averaged."""
    first, second = tmp_path / "version_0", tmp_path / "version_1"
    first.mkdir()
    second.mkdir()
    key = dilemma.FNR
    (first / "metrics.csv").write_text(f"epoch,step,{key},val/tolerance\n0,1,0.9,\n1,2,0.8,\n1,3,0.7,\n1,4,,0.3\n")
    (second / "metrics.csv").write_text(f"epoch,step,{key}\n1,3,0.2\n1,4,0.4\n")
    assert dilemma.last_epoch_mean([first, second]) == pytest.approx(0.3)
    assert dilemma.last_epoch_mean([first]) == pytest.approx(0.75)
    assert dilemma.last_epoch_mean([tmp_path / "absent"]) is None


@pytest.mark.parametrize("report_dir", sorted(p.parent for p in (ROOT / "docs/results").glob("*/dilemma.md")))
def test_the_committed_study_regenerates_exactly(report_dir, tmp_path):
    """docs/results/dilemma: dilemma.md rebuilds identically from its committed data (verdicts, rows, wall time)."""
    out = tmp_path / "again"
    assert dilemma.main(["--from-data", str(report_dir / "data"), "--out", str(out), "--no-figures"]) == 0
    text = (out / "dilemma.md").read_text()
    assert text == (report_dir / "dilemma.md").read_text()
    from scripts.report_data import block

    assert block((ROOT / "docs/reproduce.md").read_text(), "dilemma") == dilemma.answers_table(text)
