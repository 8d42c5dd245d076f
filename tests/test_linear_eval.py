"""Frozen linear evaluation: accuracy on real images, the frozen-encoder check, the feature cache, bad input."""

from __future__ import annotations

import copy

import pytest
import torch

import cli
from lightning_modules.encoders import ResNetEncoder, SmallConvEncoder
from lightning_modules.linear_eval import EncoderChangedError, LinearEvalModule, load_pretrained_encoder
from tests.conftest import ROOT, quick_args, run_dir


@pytest.fixture(scope="module")
def pretrained(cifar_subset, tmp_path_factory):
    """A checkpoint of the small encoder after a short pretraining (20 steps, one pass) on the 1000 real images."""
    log_dir = tmp_path_factory.mktemp("pretrain")
    cli.main(quick_args(cifar_subset, log_dir, "--model.init_args.loss.init_args.temperature=0.2",
                        epochs=1, batches=None, batch_size=50))
    return run_dir(log_dir) / "checkpoints" / "last.ckpt"


def linear_args(data_dir, log_dir, ckpt, *extra, epochs=3):
    return [
        "fit", "-c", str(ROOT / "configs/eval/linear.yaml"), "-c", str(ROOT / "configs/logger/csv.yaml"),
        "-c", str(ROOT / "configs/trainer/cpu.yaml"),
        f"--model.init_args.pretrained={ckpt}",
        f"--trainer.default_root_dir={log_dir}", f"--trainer.logger.init_args.save_dir={log_dir}",
        "--trainer.logger.init_args.name=linear",
        f"--trainer.max_epochs={epochs}",
        "--trainer.enable_model_summary=false",
        f"--data.init_args.data_dir={data_dir}", "--data.init_args.verify_checksums=false",
        "--data.init_args.num_workers=0", "--data.init_args.eval_batch_size=500", *extra,
    ]


def test_linear_eval_on_real_images_beats_chance(cifar_subset, pretrained, tmp_path):
    # 1000 training images: a gentler lr and more (cheap, cached) epochs than on a bigger split
    run = cli.main(linear_args(cifar_subset, tmp_path, pretrained, "--model.init_args.cache_features=true",
                               "--model.init_args.optimizer.init_args.lr=0.1", epochs=30))
    metrics = run.trainer.callback_metrics
    assert float(metrics["test/top1_last"]) > 0.2  # 10 classes: chance is 0.1
    assert float(metrics["test/top1_best"]) >= float(metrics["test/top1_last"]) - 1e-6  # best-on-test protocol
    assert not run.model.encoder.training
    assert not any(p.requires_grad for p in run.model.encoder.parameters())
    assert (run_dir(tmp_path, "linear") / "config.yaml").is_file()


def test_the_csv_logger_config_writes_linear_runs_under_linear(cifar_small, pretrained, tmp_path, capsys):
    """configs/logger/csv.yaml names no folder: with linear evaluation it is runs/linear/, not runs/pretrain/."""
    args = [a for a in linear_args(cifar_small, tmp_path, pretrained, "--model.init_args.cache_features=true",
                                   epochs=1) if a != "--trainer.logger.init_args.name=linear"]
    cli.main(args)
    assert (tmp_path / "linear" / "version_0" / "metrics.csv").is_file()
    assert not (tmp_path / "pretrain").exists()
    assert f"run folder: {tmp_path / 'linear' / 'version_0'}" in capsys.readouterr().out


def test_cached_features_train_the_same_classifier(cifar_small, pretrained, tmp_path):
    common = ("--model.init_args.optimizer.init_args.lr=0.5", "--data.init_args.batch_size=64")
    plain = cli.main(linear_args(cifar_small, tmp_path / "plain", pretrained, "--data.init_args.augmentation=none",
                                 *common, epochs=2))
    cached = cli.main(linear_args(cifar_small, tmp_path / "cached", pretrained,
                                  "--model.init_args.cache_features=true", *common, epochs=2))
    assert cached.model.augmentation_stage == "features"
    w_plain, w_cached = plain.model.classifier.weight, cached.model.classifier.weight
    assert not torch.allclose(w_plain, torch.zeros_like(w_plain))
    assert torch.allclose(w_plain, w_cached, atol=1e-4, rtol=1e-4)
    assert torch.allclose(plain.model.classifier.bias, cached.model.classifier.bias, atol=1e-4, rtol=1e-4)


def test_encoder_change_is_caught(cifar_small, pretrained, tmp_path, monkeypatch):
    def unfreeze(self):  # a bug that puts the encoder's BatchNorm in training mode
        self.encoder.train()

    monkeypatch.setattr(LinearEvalModule, "on_train_epoch_start", unfreeze, raising=False)
    with pytest.raises(EncoderChangedError, match="changed during linear evaluation"):
        cli.main(linear_args(cifar_small, tmp_path, pretrained, "--data.init_args.augmentation=none", epochs=1))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--model.init_args.pretrained: checkpoint not found"):
        LinearEvalModule(pretrained=str(tmp_path / "missing.ckpt"))
    for unset in (None, "", "???"):  # linear.yaml's placeholder
        with pytest.raises(ValueError, match="needs a pretraining checkpoint: set --model.init_args.pretrained"):
            LinearEvalModule(pretrained=unset)


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        LinearEvalModule(pretrained=str(text))
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"classifier.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(ValueError, match="not a pretraining checkpoint"):
        LinearEvalModule(pretrained=str(other))


def test_an_encoder_that_does_not_match_is_a_clear_error(pretrained):
    with pytest.raises(ValueError, match="does not match the checkpoint"):
        LinearEvalModule(pretrained=str(pretrained), encoder=ResNetEncoder("resnet18"))


def test_loaded_encoder_equals_the_pretrained_one(pretrained):
    saved = torch.load(pretrained, map_location="cpu", weights_only=False)["state_dict"]
    encoder = load_pretrained_encoder(pretrained)
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, saved[f"encoder.{name}"]), name
    module = LinearEvalModule(pretrained=str(pretrained), num_classes=10)
    assert module.classifier.in_features == encoder.feature_dim
    assert module.classifier.weight.std().item() == pytest.approx(0.01, rel=0.2)
    before = copy.deepcopy(module.encoder.state_dict())
    module.train()
    assert not module.encoder.training and module.classifier.training
    module.check_encoder_unchanged()  # no snapshot yet: nothing to compare
    module._encoder_snapshot = before
    module.check_encoder_unchanged()


def test_checkpoint_of_a_module_built_in_python_loads(tmp_path):
    """Checkpoints whose hyper-parameters are objects (not CLI configs) load too."""
    import pytorch_lightning as pl

    from lightning_modules.contrastive import ContrastiveModule
    from lightning_modules.negatives import MemoryBank

    module = ContrastiveModule(encoder=SmallConvEncoder(width=4, out_dim=8), num_samples=10, negatives=MemoryBank(dim=8))
    trainer = pl.Trainer(max_epochs=0, logger=False, enable_checkpointing=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "python.ckpt")
    saved = torch.load(tmp_path / "python.ckpt", map_location="cpu", weights_only=True)  # plain: no objects
    assert saved["encoder_config"] == {"class_path": "lightning_modules.encoders.SmallConvEncoder",
                                       "init_args": {"width": 4, "out_dim": 8, "batchnorm": True,
                                                     "head_norm": False}}
    assert "encoder" not in saved["hyper_parameters"] and saved["hyper_parameters"]["num_samples"] == 10
    encoder = load_pretrained_encoder(tmp_path / "python.ckpt")
    assert isinstance(encoder, SmallConvEncoder)
    assert torch.equal(encoder.head.weight, module.encoder.head.weight)


def test_lbfgs_probe_reaches_at_least_the_sgd_probe_and_is_logged(cifar_subset, pretrained, tmp_path):
    run = cli.main(linear_args(cifar_subset, tmp_path, pretrained, "--model.init_args.cache_features=true",
                               "--model.init_args.lbfgs_probe=true", "--data.init_args.train_subset=800",
                               "--data.init_args.test_subset=150", "--model.init_args.optimizer.init_args.lr=1.0",
                               epochs=5))
    metrics = run.trainer.callback_metrics
    assert float(metrics["test/top1_lbfgs"]) > 0.2
    assert float(metrics["test/lbfgs_l2"]) > 0
    # it is the probe of lightning_modules.probe on the same frozen features
    from lightning_modules.probe import lbfgs_probe

    model, dm = run.model, run.datamodule
    train_x, train_y = model._cache
    feats, labels = [], []
    for _, images, label in dm.test_dataloader():
        feats.append(model.features(images))
        labels.append(label)
    expected = lbfgs_probe(train_x, train_y, torch.cat(feats), torch.cat(labels), 10, return_predictions=True)
    assert float(metrics["test/top1_lbfgs"]) == pytest.approx(expected["top1"])
    # both probes' per-test-image predictions are in the run folder, sorted by the test-set index
    import numpy as np

    indices = torch.cat([index for index, _, _ in dm.test_dataloader()])
    order = torch.argsort(indices)
    for probe, key, pred in (("sgd", "test/top1_last", torch.cat([model.classifier(f) for f in feats]).argmax(1)),
                             ("lbfgs", "test/top1_lbfgs", expected["pred"])):
        saved = np.load(run_dir(tmp_path, "linear") / f"predictions_{probe}.npz")
        assert sorted(saved.files) == ["index", "label", "pred"] and saved["index"].dtype == np.int64
        assert np.array_equal(saved["index"], indices[order].numpy()) and len(saved["index"]) == 150
        assert np.array_equal(saved["label"], torch.cat(labels)[order].numpy())
        assert np.array_equal(saved["pred"], pred[order].numpy())
        assert (saved["pred"] == saved["label"]).mean() == pytest.approx(float(metrics[key]), abs=1e-6)


@pytest.mark.parametrize("every", [3, 1])
def test_last_ckpt_holds_the_final_epoch_whatever_the_validation_schedule(cifar_small, pretrained, tmp_path, every):
    run = cli.main(linear_args(cifar_small, tmp_path, pretrained, "--model.init_args.cache_features=true",
                               f"--trainer.check_val_every_n_epoch={every}", epochs=4))
    ckpt = torch.load(run_dir(tmp_path, "linear") / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert ckpt["epoch"] == 3  # the 4th and last epoch, although epoch 3 was not validated when every=3
    torch.testing.assert_close(ckpt["state_dict"]["classifier.weight"], run.model.classifier.weight.detach())


def test_pretraining_last_ckpt_holds_the_final_epoch(cifar_small, tmp_path):
    run = cli.main(quick_args(cifar_small, tmp_path, "--trainer.callbacks.init_args.every_n_epochs=2",
                              epochs=3, batches=2))
    ckpt = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == run.trainer.global_step
    torch.testing.assert_close(ckpt["state_dict"]["negatives.bank"], run.model.negatives.bank)


# every constructor argument set away from its default, so a forgotten one changes the rebuilt encoder
NON_DEFAULT_ARGS = {"SmallConvEncoder": {"width": 4, "out_dim": 8, "batchnorm": False, "head_norm": True},
                    "ResNetEncoder": {"arch": "resnet34", "cifar_stem": False, "out_dim": 8, "bn_group_size": 2,
                                      "head_norm": True}}


@pytest.mark.parametrize("name", sorted(NON_DEFAULT_ARGS))
def test_an_encoder_description_names_every_argument_and_rebuilds_the_same_network(name):
    """Linear evaluation rebuilds the encoder from ``describe()``: a missing argument (head_norm was one) breaks it."""
    import inspect

    from lightning_modules import encoders
    from lightning_modules.linear_eval import encoder_from_description

    cls = getattr(encoders, name)
    parameters = set(inspect.signature(cls).parameters)
    assert parameters == set(NON_DEFAULT_ARGS[name]), "give every argument a non-default value here"
    assert all(inspect.signature(cls).parameters[k].default != v for k, v in NON_DEFAULT_ARGS[name].items())
    original = cls(**NON_DEFAULT_ARGS[name])
    description = original.describe()
    assert set(description["init_args"]) == parameters
    rebuilt = encoder_from_description(description, "test")
    rebuilt.load_state_dict(original.state_dict(), strict=True)  # the same modules, parameters and buffers
    assert str(rebuilt) == str(original)


def test_cli_checkpoints_are_plain_and_describe_their_encoder(pretrained):
    saved = torch.load(pretrained, map_location="cpu", weights_only=True)
    assert saved["encoder_config"]["class_path"] == "lightning_modules.encoders.SmallConvEncoder"
    assert saved["hyper_parameters"]["encoder"]["class_path"] == saved["encoder_config"]["class_path"]


def test_the_encoder_is_rebuilt_only_from_known_encoder_classes(pretrained, tmp_path):
    from lightning_modules.linear_eval import encoder_from_description

    built = encoder_from_description({"class_path": "SmallConvEncoder", "init_args": {"width": 4}}, "test")
    assert isinstance(built, SmallConvEncoder) and built.feature_dim == 16
    for bad, message in [({"class_path": "os.system", "init_args": {}}, "unknown encoder 'os.system'"),
                         ({"class_path": "torch.nn.Linear", "init_args": {}}, "unknown encoder"),
                         ({"class_path": "ResNetEncoder", "init_args": {"depth": 3}}, "cannot build ResNetEncoder"),
                         ("resnet18", "must be a dict")]:
        with pytest.raises(ValueError, match=message):
            encoder_from_description(bad, "test")
    # a checkpoint that does not say which encoder it holds: the user names it
    state = torch.load(pretrained, map_location="cpu", weights_only=True)["state_dict"]
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": state}, bare)
    with pytest.raises(ValueError, match="does not say which encoder"):
        load_pretrained_encoder(bare)
    named = load_pretrained_encoder(bare, SmallConvEncoder())
    assert torch.equal(named.head.weight, state["encoder.head.weight"])


def test_a_checkpoint_whose_pickle_would_run_code_is_refused(tmp_path):
    """Read with weights_only=True, a hostile pickle is refused before it can call anything."""
    import os

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    encoder = SmallConvEncoder()
    path = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in encoder.state_dict().items()},
                "encoder_config": encoder.describe(), "extra": Evil()}, path)
    with pytest.raises(ValueError, match=r"--model.init_args.pretrained: refusing to read .*posix.system.*run code"):
        LinearEvalModule(pretrained=str(path))
    assert not (tmp_path / "ran").exists()
    torch.load(path, weights_only=False)  # what the old loader did: the pickle runs its command
    assert (tmp_path / "ran").exists()


def test_predictions_are_written_once_per_image_in_index_order(tmp_path):
    import numpy as np

    from lightning_modules.linear_eval import write_predictions

    index = torch.tensor([5, 2, 9, 2, 5])  # two images repeated, as a padded distributed split
    label = torch.tensor([1, 0, 3, 0, 1])
    pred = torch.tensor([1, 2, 3, 2, 1])
    saved = np.load(write_predictions(tmp_path / "predictions_sgd.npz", index, label, pred))
    assert saved["index"].tolist() == [2, 5, 9] and saved["label"].tolist() == [0, 1, 3]
    assert saved["pred"].tolist() == [2, 1, 3] and saved["pred"].dtype == np.int64
    with pytest.raises(ValueError, match="differ in length"):
        write_predictions(tmp_path / "x.npz", index, label[:3], pred)
