"""When the embedding-metrics callback runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from callbacks.embedding_metrics import EmbeddingMetrics


@pytest.mark.parametrize("epoch, max_epochs, due", [
    (0, 10, False), (4, 10, True), (9, 10, True), (8, 9, True),  # every 5th epoch and the last one
    (0, -1, False), (4, -1, True), (0, None, False),  # no last epoch when training is unbounded
])
def test_every_n_epochs_and_the_last_epoch(epoch, max_epochs, due):
    trainer = SimpleNamespace(current_epoch=epoch, max_epochs=max_epochs)
    assert EmbeddingMetrics(every_n_epochs=5)._due(trainer) is due


def test_bad_arguments():
    with pytest.raises(ValueError, match="every_n_epochs"):
        EmbeddingMetrics(every_n_epochs=0)
    with pytest.raises(ValueError, match="knn_k"):
        EmbeddingMetrics(knn_k=0)


def test_metrics_are_logged_before_the_first_step_as_epoch_minus_one(cifar_small, tmp_path):
    import csv

    import cli
    from tests.conftest import quick_args, run_dir

    run = cli.main(quick_args(cifar_small, tmp_path, "--trainer.callbacks.init_args.plot=false", epochs=2, batches=2))
    rows = list(csv.DictReader(open(run_dir(tmp_path) / "metrics.csv")))
    initial = [r for r in rows if r["epoch"] == "-1"]
    assert len(initial) == 1 and initial[0]["step"] == "0"
    for key in ("val/uniformity", "val/tolerance", "val/centroid_norm", "bank/centroid_norm", "val/knn_top1",
                "val/pos_sim", "val/neg_sim_10"):
        assert initial[0][key] != "", key
    # the untrained network maps images close together; the random bank is centred
    assert float(initial[0]["val/centroid_norm"]) > 0.5 > float(initial[0]["bank/centroid_norm"])
    epochs = [r["epoch"] for r in rows if r.get("val/centroid_norm")]
    assert epochs == ["-1", "0", "1"]
    # centroid_norm is the norm of the test embeddings' mean, as the module embeds them now
    from callbacks.embedding_metrics import embed_split

    (z,), _ = embed_split(run.trainer, run.model, "test")
    last = [r for r in rows if r["epoch"] == "1" and r.get("val/centroid_norm")][0]
    assert float(last["val/centroid_norm"]) == pytest.approx(float(z.mean(0).norm()), abs=1e-5)


def test_a_corrupt_test_image_stops_the_run_before_any_training(tmp_path):
    import cli
    from datamodules.folder import ImageLoadError
    from tests.conftest import ROOT
    from tests.fakedata import write_image_folder

    root = write_image_folder(tmp_path / "data", ["a", "b"], 8, size=32, ext="png")
    (root / "val" / "b" / "b_3.png").write_bytes(b"")  # zero bytes
    args = ["fit", "-c", str(ROOT / "configs/base.yaml"), "-c", str(ROOT / "configs/model/small.yaml"),
            "-c", str(ROOT / "configs/logger/csv.yaml"), "-c", str(ROOT / "configs/trainer/cpu.yaml"),
            "-c", str(ROOT / "configs/data/imagefolder.yaml"), f"--data.init_args.data_dir={root}",
            "--data.init_args.preset=cifar", "--data.init_args.image_size=32", "--data.init_args.num_workers=0",
            "--data.init_args.batch_size=8", f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.max_epochs=1"]
    run = cli.main(args[1:], run=False)  # no subcommand without run
    with pytest.raises(ImageLoadError, match="b_3.png"):
        run.trainer.fit(run.model, datamodule=run.datamodule)
    assert run.trainer.global_step == 0  # not one training step was spent
