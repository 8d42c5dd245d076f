"""Frozen linear evaluation: the protocol behind every accuracy of Table 1 and Fig 9."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.base import SuiteModule, recipe_factory
from lightning_modules.checkpoints import read_checkpoint
from lightning_modules.encoders import Encoder

from pytorch_lightning.cli import LRSchedulerCallable as SchedulerFactory
from pytorch_lightning.cli import OptimizerCallable as OptimizerFactory


#: the recipe whose optimiser and schedule a module built without them uses
RECIPE = "configs/eval/linear.yaml"


def paper_linear_sgd(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The linear-evaluation optimiser of ``configs/eval/linear.yaml`` (the author's SGD), written only there."""
    return recipe_factory(RECIPE, "optimizer")(params)


def paper_linear_schedule(optimizer: torch.optim.Optimizer) -> Any:
    """The linear-evaluation schedule of ``configs/eval/linear.yaml`` (the author's step decay), written only there."""
    return recipe_factory(RECIPE, "scheduler")(optimizer)


class EncoderChangedError(RuntimeError):
    """The frozen encoder changed during linear evaluation."""


PRETRAINED_FLAG = "--model.init_args.pretrained"


def encoder_from_description(description: Any, source: str) -> Encoder:
    """Build the encoder that ``{"class_path", "init_args"}`` describes (plain data, e.g. from a checkpoint).

    Only subclasses of :class:`Encoder` that are already imported are built, by their
    full or short class name, with plain keyword arguments: nothing is imported or
    called because a file says so.
    """
    if not isinstance(description, dict) or not isinstance(description.get("class_path"), str):
        raise ValueError(f"{source}: the encoder description must be a dict with a class_path, got {description!r}")
    name = description["class_path"]
    init_args = description.get("init_args") or {}
    known: dict[str, type] = {}
    todo = [Encoder]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            known[f"{sub.__module__}.{sub.__qualname__}"] = sub
            known.setdefault(sub.__qualname__, sub)
    cls = known.get(name)
    if cls is None:
        names = ", ".join(sorted({c.__qualname__ for c in known.values()}))
        raise ValueError(f"{source}: unknown encoder {name!r}; known: {names} (name it with --model.init_args.encoder)")
    if not isinstance(init_args, dict) or not all(isinstance(k, str) for k in init_args):
        raise ValueError(f"{source}: the encoder's init_args must be a dict of named values, got {init_args!r}")
    try:
        return cls(**init_args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: cannot build {cls.__qualname__}({init_args}): {err}") from None


def _encoder_description(ckpt: dict[str, Any]) -> Any:
    """How the checkpoint's encoder was built: its ``encoder_config``, else the CLI's hyper-parameter."""
    if ckpt.get("encoder_config") is not None:
        return ckpt["encoder_config"]
    hparams = ckpt.get("hyper_parameters")
    encoder = hparams.get("encoder") if isinstance(hparams, dict) else None
    return encoder if isinstance(encoder, dict) else None


def refuse_linear_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    """A linear evaluation's own checkpoint is not a pretraining one: say so, and which file is expected.

    Its ``encoder.*`` weights would load, and the evaluation would silently measure an
    encoder through a second, fresh linear layer. It is recognised by its ``pretrained``
    hyper-parameter (only :class:`LinearEvalModule` has one).
    """
    hparams = ckpt.get("hyper_parameters")
    if isinstance(hparams, dict) and "pretrained" in hparams:
        source = hparams.get("pretrained")
        raise ValueError(f"{PRETRAINED_FLAG}: {path} is a linear-evaluation checkpoint (of {source}); expected a "
                         f"pretraining checkpoint, e.g. runs/pretrain/version_N/checkpoints/last.ckpt"
                         + (f": use {source}" if source else ""))


def load_pretrained_encoder(path: str | Path | None, encoder: Encoder | None = None) -> Encoder:
    """The encoder of a pretraining checkpoint written by :class:`ContrastiveModule`.

    The file is read with ``torch.load(weights_only=True)`` (tensors and plain data; a
    checkpoint whose pickle would run code is refused); the architecture is rebuilt from
    the plain description the checkpoint holds.

    Args:
        path: the ``.ckpt`` file.
        encoder: an encoder to load the weights into (they must match exactly); None
            rebuilds the one the checkpoint describes.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: no path given, the file is not a pretraining checkpoint (or not a
            safe one), it does not describe its encoder, or ``encoder`` does not match it.
    """
    if path is None or str(path).strip() in ("", "???"):
        raise ValueError(f"linear evaluation needs a pretraining checkpoint: set {PRETRAINED_FLAG} "
                         "runs/pretrain/version_N/checkpoints/last.ckpt")
    path = Path(path).expanduser()
    ckpt = read_checkpoint(path, flag=PRETRAINED_FLAG)
    refuse_linear_checkpoint(ckpt, path)
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not any(k.startswith("encoder.") for k in state):
        raise ValueError(f"{PRETRAINED_FLAG}: {path} is not a pretraining checkpoint: it has no 'state_dict' "
                         "with 'encoder.*' weights (expected one of `python cli.py fit` with ContrastiveModule)")
    weights = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if encoder is None:
        description = _encoder_description(ckpt)
        if description is None:
            raise ValueError(f"{PRETRAINED_FLAG}: {path} does not say which encoder it holds; name it, e.g. --model."
                             "init_args.encoder=ResNetEncoder --model.init_args.encoder.init_args.arch=resnet18")
        encoder = encoder_from_description(description, f"{PRETRAINED_FLAG} {path}")
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as err:  # torch lists every missing or unexpected key: the first ones say enough
        detail = " ".join(str(err).split())
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise ValueError(f"the encoder does not match the checkpoint {path}: {detail}") from None
    return encoder


class LinearEvalModule(SuiteModule):
    """One linear layer on the frozen, global-pooled features of a pretrained encoder.

    The encoder stays in eval mode throughout (BatchNorm statistics frozen) and takes no
    gradient; after training a check fails the run if any of its weights or buffers
    changed. Reports ``test/top1_last`` (the final classifier) and ``test/top1_best``
    (the classifier of the epoch with the best ``val/top1``). Without a held-out split
    (the datamodule's ``val_fraction`` = 0) validation runs on the test split, as the
    author's code did, and ``top1_best`` is then an optimistic number.

    Args:
        pretrained: path of a pretraining checkpoint (``runs/.../checkpoints/last.ckpt``); read
            with ``torch.load(weights_only=True)``, so a file whose pickle would run code is refused.
        encoder: the encoder to load the weights into; None rebuilds the one the checkpoint
            describes (its ``encoder_config``, or the encoder of its saved config).
        num_classes: classes of the downstream task, linked from the datamodule.
        num_samples: training-split size, linked from the datamodule (used by the cache).
        optimizer: builds the optimiser for the linear layer; None is the one of
            ``configs/eval/linear.yaml`` (the author's SGD).
        scheduler: builds the lr scheduler (per epoch); None is the one of
            ``configs/eval/linear.yaml``.
        cache_features: compute the frozen features of the non-augmented training split
            once and train on them (no augmentation; 100 epochs cost about one pass);
            False follows the paper's protocol with augmentation.
        init_std: standard deviation of the linear layer's normal initialisation.
        lbfgs_probe: at test time also fit the L-BFGS probe of :mod:`lightning_modules.probe`
            (standardised features, L2 chosen on a held-out 10% of the training split) on
            the non-augmented training features and log ``test/top1_lbfgs`` (and the chosen
            ``test/lbfgs_l2``): the linear optimum, beside the paper's protocol.
    """

    #: ``cli.py fit`` runs the test split right after training
    evaluates_on_test_after_fit = True
    #: file loggers without a name write under ``runs/linear/``
    log_name = "linear"

    def __init__(
        self,
        pretrained: str | None = None,
        encoder: Encoder | None = None,
        num_classes: int = 10,
        num_samples: int = 50_000,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        cache_features: bool = False,
        init_std: float = 0.01,
        lbfgs_probe: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.save_hyperparameters()
        self.encoder = load_pretrained_encoder(pretrained, encoder)
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.classifier = nn.Linear(self.encoder.feature_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=init_std)
        nn.init.zeros_(self.classifier.bias)
        # the classifier of the best validation epoch, evaluated beside the last one at test time
        self.best_classifier = copy.deepcopy(self.classifier).requires_grad_(False)
        self.register_buffer("best_val_top1", torch.tensor(-1.0))
        self.optimizer_factory = optimizer or paper_linear_sgd
        self.scheduler_factory = scheduler or paper_linear_schedule
        self.cache_features = cache_features
        self.num_classes = num_classes
        self.num_samples = num_samples
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.track_epoch_means("train/loss_epoch")
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
        self.test_last = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_last5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
        self.test_best = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self._encoder_snapshot: dict[str, torch.Tensor] | None = None
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.lbfgs_probe = lbfgs_probe
        self._test_feats: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._test_preds: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @property
    def augmentation_stage(self) -> str:  # read by the datamodule
        return "features" if self.cache_features else "linear"

    def train(self, mode: bool = True) -> "LinearEvalModule":
        super().train(mode)
        self.encoder.eval()  # BatchNorm statistics stay frozen whatever Lightning asks
        return self

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen global-pooled features, (B, feature_dim), fp32."""
        return self.encoder.features(x).float()

    # ------------------------------------------------------------------ caching
    @torch.no_grad()
    def _build_cache(self) -> None:
        dm = self.trainer.datamodule
        n = dm.num_train_samples
        feats = torch.zeros(n, self.encoder.feature_dim, device=self.device)
        labels = torch.full((n,), -1, dtype=torch.long, device=self.device)
        with torch.random.fork_rng(devices=[]):  # leave the training shuffle order untouched
            for index, images, label in dm.eval_dataloader("train", distributed=False):
                index = index.to(self.device)
                feats[index] = self.features(images.to(self.device))
                labels[index] = label.to(self.device)
        self._cache = (feats, labels)

    # ----------------------------------------------------------------- the loop
    def on_fit_start(self) -> None:
        self._encoder_snapshot = {k: v.detach().clone() for k, v in self.encoder.state_dict().items()}
        if self.cache_features:
            self._build_cache()

    def on_fit_end(self) -> None:
        self.check_encoder_unchanged()

    def check_encoder_unchanged(self) -> None:
        """Fail if any encoder weight or BatchNorm buffer differs from its value at the start."""
        if self._encoder_snapshot is None:
            return
        changed = [k for k, v in self.encoder.state_dict().items()
                   if not torch.equal(v, self._encoder_snapshot[k].to(v.device))]
        if changed:
            raise EncoderChangedError(
                f"the frozen encoder changed during linear evaluation ({len(changed)} tensors, e.g. "
                f"{changed[:3]}): the reported accuracy is not that of the pretrained encoder")

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        index, images, label = batch
        if self._cache is not None:
            feats, label = self._cache[0][index], self._cache[1][index]  # (B, F), (B,)
        else:
            feats = self.features(images)  # (B, F)
        logits = self.classifier(feats)  # (B, C)
        loss = F.cross_entropy(logits, label)
        self.train_top1.update(logits.detach(), label)  # computed and logged once, at the end of the epoch
        self.add_to_epoch_means(len(label), loss)
        if self.logs_this_step():  # a self.log call costs about this step's linear layer (SuiteModule)
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_epoch_means(prog_bar=["train/loss_epoch"])
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True)

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        _, images, label = batch
        logits = self.classifier(self.features(images))
        self.val_top1(logits, label)
        self.val_top5(logits, label)
        self.log("val/loss", F.cross_entropy(logits, label), on_epoch=True, sync_dist=True)
        self.log("val/top1", self.val_top1, on_epoch=True, prog_bar=True)
        self.log("val/top5", self.val_top5, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        top1 = self.val_top1.compute()
        if top1 > self.best_val_top1:  # once an epoch: the wait for the device is harmless
            self.best_val_top1.copy_(top1)
            self.best_classifier.load_state_dict(self.classifier.state_dict())
        self.log("val/top1_best", self.best_val_top1)

    def on_test_start(self) -> None:
        if self.best_val_top1 < 0:  # never validated: the best classifier is the last one
            self.best_classifier.load_state_dict(self.classifier.state_dict())
        self._test_feats = []
        self._test_preds = []

    def _gathered(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The test split's rows from every rank (one tensor per batch here)."""
        local = torch.cat(parts)
        if self.trainer.world_size > 1:
            local = self.all_gather(local).reshape(-1, *local.shape[1:])
        return local

    def on_test_epoch_end(self) -> None:
        if self._test_preds:  # the SGD probe's last classifier, per test image (paired comparisons of cells)
            index, label, pred = (self._gathered([p[i] for p in self._test_preds]) for i in range(3))
            self._test_preds = []
            self._write_predictions("sgd", index, label, pred)
        if not self.lbfgs_probe or not self._test_feats:
            return
        from lightning_modules.probe import lbfgs_probe

        index, feats, labels = (self._gathered([f[i] for f in self._test_feats]) for i in range(3))
        self._test_feats = []  # every rank fits the same probe on the whole test split
        if self._cache is None:
            self._build_cache()
        train_x, train_y = self._cache
        result = lbfgs_probe(train_x, train_y, feats, labels, self.num_classes, return_predictions=True)
        self.log("test/top1_lbfgs", result["top1"], rank_zero_only=False)
        self.log("test/lbfgs_l2", result["l2"], rank_zero_only=False)
        self._write_predictions("lbfgs", index, labels, result["pred"])

    def _write_predictions(self, probe: str, index: torch.Tensor, label: torch.Tensor, pred: torch.Tensor) -> None:
        """``predictions_<probe>.npz`` in the run folder (rank 0; nothing without a file logger's folder)."""
        folder = self.trainer.log_dir if self.trainer.loggers else None
        if folder is None or not self.trainer.is_global_zero:
            return
        write_predictions(Path(folder) / f"predictions_{probe}.npz", index, label, pred)

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        index, images, label = batch
        feats = self.features(images)
        last = self.classifier(feats)  # (B, C)
        best = self.best_classifier(feats)
        self.test_last(last, label)
        self.test_last5(last, label)
        self.test_best(best, label)
        self._test_preds.append((index, label, last.argmax(dim=1)))  # on the device: no host sync per batch
        if self.lbfgs_probe:
            self._test_feats.append((index, feats, label))
        self.log("test/top1_last", self.test_last, on_epoch=True)
        self.log("test/top5_last", self.test_last5, on_epoch=True)
        self.log("test/top1_best", self.test_best, on_epoch=True)

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return self.classifier.parameters()


def write_predictions(path: str | Path, index: torch.Tensor, label: torch.Tensor, pred: torch.Tensor) -> Path:
    """Per-test-image predictions of one probe: arrays ``index``, ``label``, ``pred`` (int64), sorted by ``index``.

    Each index is kept once (its first row): a distributed sampler repeats images to pad the split.

    Args:
        path: the ``.npz`` file (``predictions_sgd.npz``, ``predictions_lbfgs.npz``).
        index: (M,) test-set index of each image (the datamodule's, so two runs on the same split match).
        label: (M,) true class.
        pred: (M,) predicted class.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import numpy as np

    index, label, pred = (t.detach().to("cpu", torch.int64).reshape(-1) for t in (index, label, pred))
    if not index.numel() == label.numel() == pred.numel():
        raise ValueError(f"index, label and pred differ in length: {index.numel()}, {label.numel()}, {pred.numel()}")
    # sorted by index, each image once (a distributed sampler pads the split by repeating images)
    _, first = np.unique(index.numpy(), return_index=True)  # (M',) positions of each index's first row
    order = torch.from_numpy(first)
    path = Path(path)
    np.savez_compressed(path, index=index[order].numpy(), label=label[order].numpy(), pred=pred[order].numpy())
    return path
