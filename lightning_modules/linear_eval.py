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


def load_pretrained_encoder(path: str | Path, encoder: Encoder | None = None) -> Encoder:
    """The encoder of a pretraining checkpoint written by :class:`ContrastiveModule`.

    Args:
        path: the ``.ckpt`` file.
        encoder: an encoder to load the weights into (they must match exactly); None
            rebuilds the one the checkpoint was trained with.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a pretraining checkpoint, or ``encoder`` does not match it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
    try:
        # our own checkpoints hold the hyper-parameters as objects, so weights_only cannot be used
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{path} is not a PyTorch checkpoint: {err}") from None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not state or not any(k.startswith("encoder.") for k in state):
        raise ValueError(f"{path} is not a pretraining checkpoint: it has no 'state_dict' with 'encoder.*' "
                         "weights (expected a checkpoint written by `python cli.py fit` with ContrastiveModule)")
    weights = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if encoder is None:
        from lightning_modules.contrastive import ContrastiveModule

        encoder = ContrastiveModule.load_from_checkpoint(path, map_location="cpu", weights_only=False).encoder
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"the encoder does not match the checkpoint {path}: {err}") from None
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
        pretrained: path of a pretraining checkpoint (``runs/.../checkpoints/last.ckpt``).
        encoder: the encoder to load the weights into; None rebuilds the checkpoint's.
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

    def __init__(
        self,
        pretrained: str,
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
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
        self.test_last = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_last5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
        self.test_best = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self._encoder_snapshot: dict[str, torch.Tensor] | None = None
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.lbfgs_probe = lbfgs_probe
        self._test_feats: list[tuple[torch.Tensor, torch.Tensor]] = []

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
        self.train_top1(logits.detach(), label)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True)
        return loss

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

    def on_test_epoch_end(self) -> None:
        if not self.lbfgs_probe or not self._test_feats:
            return
        from lightning_modules.probe import lbfgs_probe

        feats = torch.cat([f for f, _ in self._test_feats])
        labels = torch.cat([y for _, y in self._test_feats])
        self._test_feats = []
        if self.trainer.world_size > 1:  # every rank fits the same probe on the whole test split
            feats = self.all_gather(feats).reshape(-1, feats.shape[-1])
            labels = self.all_gather(labels).reshape(-1)
        if self._cache is None:
            self._build_cache()
        train_x, train_y = self._cache
        result = lbfgs_probe(train_x, train_y, feats, labels, self.num_classes)
        self.log("test/top1_lbfgs", result["top1"], rank_zero_only=False)
        self.log("test/lbfgs_l2", result["l2"], rank_zero_only=False)

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        _, images, label = batch
        feats = self.features(images)
        last = self.classifier(feats)
        best = self.best_classifier(feats)
        self.test_last(last, label)
        self.test_last5(last, label)
        self.test_best(best, label)
        if self.lbfgs_probe:
            self._test_feats.append((feats, label))
        self.log("test/top1_last", self.test_last, on_epoch=True)
        self.log("test/top5_last", self.test_last5, on_epoch=True)
        self.log("test/top1_best", self.test_best, on_epoch=True)

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return self.classifier.parameters()
