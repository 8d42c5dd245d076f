"""The pretraining LightningModule: encoder + negatives' source + loss."""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from datamodules.batch import BatchProvider, as_views
from lightning_modules.base import SuiteModule, recipe_factory
from lightning_modules import distributed as D
from lightning_modules.encoders import Encoder, ResNetEncoder
from lightning_modules.losses import ContrastiveLoss, ContrastiveLossBase
from lightning_modules.negatives import InBatchNegatives, MemoryBank, NegativeSource
from lightning_modules.similarities import Similarities

from pytorch_lightning.cli import LRSchedulerCallable as SchedulerFactory
from pytorch_lightning.cli import OptimizerCallable as OptimizerFactory


def paper_sgd(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The pretraining optimiser of ``configs/base.yaml`` (the paper's SGD), the one place it is written."""
    return recipe_factory(RECIPE, "optimizer")(params)


def paper_schedule(optimizer: torch.optim.Optimizer) -> Any:
    """The pretraining schedule of ``configs/base.yaml`` (the paper's step decay), the one place it is written."""
    return recipe_factory(RECIPE, "scheduler")(optimizer)


#: the recipe whose optimiser and schedule a module built without them uses
RECIPE = "configs/base.yaml"


def as_record(out: Similarities | tuple[torch.Tensor, torch.Tensor]) -> Similarities:
    """A source's output as a record: sources written before the record return ``(pos (B,), neg (B, K))``."""
    if isinstance(out, Similarities):
        return out
    pos, neg = out
    return Similarities(pos.unsqueeze(1), neg)


def unit_embedding(encoder: nn.Module, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """L2-normalised ``encoder(x)``, (B, out_dim) in fp32; ``x`` in channels-last memory format when asked."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return F.normalize(encoder(x).float(), dim=1)


def gather_detached(x: torch.Tensor) -> torch.Tensor:
    """``x`` from every process, concatenated in rank order, without gradient: what a loss that
    normalises over the global batch (DCLW's weights, MACL's alignment) receives as its ``gather``."""
    return D.gather(x.detach())


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class ContrastiveModule(SuiteModule):
    """Contrastive pretraining: ``loss(sims)`` on the record of similarities a negatives' source produces.

    With the defaults this is the paper's setting: ResNet-18 (CIFAR stem) to a 128-d
    unit-norm embedding, the contrastive loss at tau = 0.07 against a memory bank of one
    entry per training image, and the optimiser and schedule of ``configs/base.yaml``
    (the paper's SGD and step decay, written only there).

    Args:
        encoder: backbone and head; :meth:`embed` normalises its output.
        loss: one of the losses of ``lightning_modules.losses``.
        negatives: where positives and negatives come from (memory bank, batch, queue).
        optimizer: builds the optimiser from the parameters (``class_path: torch.optim.SGD``
            in YAML); None is the one of ``configs/base.yaml``.
        scheduler: builds the learning-rate scheduler (stepped every epoch); None is the
            one of ``configs/base.yaml``.
        num_samples: training-split size, linked from the datamodule; sizes the bank.
        num_classes: number of classes, linked from the datamodule (metrics only).
        check_finite_every_n_steps: how often the training loss is checked for NaN/inf;
            the first bad step is recorded on the device at every step and reported
            exactly, but each check waits for the device, so it is not done every step
            (50 matches Lightning's logging interval, which waits anyway). The memory
            bank never takes a non-finite update in between.
        penalty_entropy_every_n_steps: how often to log the step's diagnostics:
            ``train/penalty_entropy``, the mean entropy of the loss's relative penalty (its
            gradient's share per negative: Eq 5 for the contrastive loss, Eq 8 for the hard
            one, uniform for the simple one), ``train/false_negative_rate`` (the share of
            same-class keys among each anchor's 10 nearest negatives, over the pairs whose
            classes are known) and, for hard losses, ``train/pos_in_hard_set``; 0 never.
        channels_last: run the encoder in channels-last memory format (faster convolutions
            on GPUs with tensor cores).
        compile: run the encoder through ``torch.compile`` (the checkpoint keeps the plain
            encoder's parameter names). Mixed precision is the trainer's ``precision``;
            the similarities and the loss stay in fp32 whatever it is.
    """

    augmentation_stage = "pretrain"

    def __init__(
        self,
        encoder: Encoder | None = None,
        loss: ContrastiveLossBase | None = None,
        negatives: NegativeSource | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        num_samples: int = 50_000,
        num_classes: int = 10,
        check_finite_every_n_steps: int = 50,
        penalty_entropy_every_n_steps: int = 50,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        if check_finite_every_n_steps < 1:
            raise ValueError(f"check_finite_every_n_steps must be >= 1, got {check_finite_every_n_steps}")
        self.save_hyperparameters()
        self.encoder = encoder if encoder is not None else ResNetEncoder()
        self.loss = loss if loss is not None else ContrastiveLoss(temperature=0.07)
        self.negatives = negatives if negatives is not None else MemoryBank()
        self.negatives.bind(self.encoder, num_samples)  # the source sizes itself from the encoder and the data
        self._serve_the_loss()
        self.optimizer_factory = optimizer or paper_sgd
        self.scheduler_factory = scheduler or paper_schedule
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.check_finite_every_n_steps = check_finite_every_n_steps
        self.penalty_entropy_every_n_steps = penalty_entropy_every_n_steps
        self.channels_last = channels_last
        # the class of each training image once a batch has shown it, -1 before: for the false-negative rate
        self.register_buffer("train_labels", torch.full((num_samples,), -1, dtype=torch.long))
        # step of the first non-finite loss, -1 while all are finite; read every n steps
        self.register_buffer("_first_nonfinite_step", torch.tensor(-1, dtype=torch.long), persistent=False)
        self.track_epoch_means("train/loss_epoch", "train/pos_sim")
        if channels_last:
            self.encoder.to(memory_format=torch.channels_last)
        # kept in a list so the compiled wrapper is not a registered submodule (state_dict names stay plain)
        self._run_encoder = [torch.compile(self.encoder) if compile else self.encoder]

    def _serve_the_loss(self) -> None:
        """Refuse a source the loss cannot use; the global batch (:meth:`_global_batch`) and the
        epoch (:meth:`on_train_epoch_start`) are served during training."""
        if getattr(self.loss, "needs_in_batch", False) and not isinstance(self.negatives, InBatchNegatives):
            raise ValueError(
                f"{type(self.loss).__name__} needs in-batch keys (its uniformity is measured on the batch's own "
                f"embeddings), got {type(self.negatives).__name__}; use -c configs/negatives/in_batch.yaml")

    @contextlib.contextmanager
    def _global_batch(self) -> Iterator[None]:
        """Within the training step, losses with ``uses_global_batch`` (DCLW, MACL) gather every process's
        positives (no loss holds torch.distributed); elsewhere (a plot on rank 0 alone, a test) they keep
        their local batch, so no collective runs on one process only."""
        parts = [m for m in self.loss.modules() if getattr(m, "uses_global_batch", False)]
        before = [part.gather for part in parts]
        for part in parts:
            part.gather = gather_detached
        try:
            yield
        finally:
            for part, gather in zip(parts, before):
                part.gather = gather

    def trainable_parameters(self) -> Iterable[nn.Parameter] | list[dict[str, Any]]:
        """Every trainable parameter; a loss's own (a learned temperature) in a group without weight decay,
        as CLIP trains its logit scale."""
        own = [p for p in self.loss.parameters() if p.requires_grad]
        if not own:
            return super().trainable_parameters()
        ids = {id(p) for p in own}
        rest = [p for p in super().trainable_parameters() if id(p) not in ids]
        return [{"params": rest}, {"params": own, "weight_decay": 0.0}]

    # --------------------------------------------------------------------- model
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings f(x), (B, out_dim), in fp32."""
        return unit_embedding(self._run_encoder[0], x, self.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        super().setup(stage)  # asks the datamodule for the pretraining pipeline
        dm = self.trainer.datamodule
        if not isinstance(dm, BatchProvider):
            return
        views = dm.num_views
        if views != self.negatives.num_views:
            name = type(self.negatives).__name__
            raise ValueError(
                f"{name} needs {self.negatives.num_views} view(s) per image but the datamodule gives "
                f"{views}; set --data.init_args.num_views {self.negatives.num_views} "
                "(the configs in configs/negatives/ set both)")
        data_size = dm.num_train_samples
        if data_size != self.num_samples:
            raise ValueError(
                f"the model was built for {self.num_samples} training images (num_samples) but the "
                f"datamodule has {data_size}; leave num_samples linked to the data (cli.py does) or set it "
                f"to {data_size}")

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        with self._global_batch():
            return self._training_step(batch)

    def _training_step(self, batch: tuple) -> torch.Tensor:
        index, images, labels = batch
        self._learn_labels(index, labels)
        sims = as_record(self.negatives(self.embed, index, as_views(images)))  # pos (B, P), neg (B, K)
        loss = self.loss(sims)
        self._watch_finite(loss)
        self.add_to_epoch_means(len(index), loss, sims.pos.detach().mean())
        if self.logs_this_step():  # step values only where Lightning writes them (benchmarks/bench_log.py)
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
            current = getattr(self.loss, "current_temperature", None)
            if current is not None:  # a temperature that moves: a schedule, a learned or an adaptive one
                self.log("train/temperature", current(), on_step=True, on_epoch=False)
        every = self.penalty_entropy_every_n_steps
        # (step + 1) % every: the steps at which Lightning writes step metrics when every == log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            seen = sims.detach()
            with torch.no_grad():
                entropy = self.loss.penalty_entropy(seen)  # from the loss's own gradient (autograd inside)
                in_hard_set = self.loss.positive_in_hard_set(seen)  # None unless hard
                false_negatives = self.false_negative_rate(seen)  # None without the images' indices
            self.log("train/penalty_entropy", entropy, on_step=True, on_epoch=False)
            if false_negatives is not None:
                self.log("train/false_negative_rate", false_negatives, on_step=True, on_epoch=False)
            if in_hard_set is not None:
                # hard losses: how often the positive is no closer than the chosen negatives
                self.log("train/pos_in_hard_set", in_hard_set, on_step=True, on_epoch=False)
        return loss

    @torch.no_grad()
    def _learn_labels(self, index: torch.Tensor, labels: torch.Tensor) -> None:
        """Record the classes of the global batch's images in :attr:`train_labels` (no host sync).

        Every process writes every process's batch (one gather of 2 x B integers under data
        parallelism, none on one process), so all keep the same buffer, as one process would.
        """
        pairs = D.gather(torch.stack([index.long(), labels.long()], dim=1))  # (W*B, 2)
        self.train_labels.index_copy_(0, pairs[:, 0], pairs[:, 1])

    @torch.no_grad()
    def false_negative_rate(self, sims: Similarities, nearest: int = 10) -> torch.Tensor | None:
        """The share of same-class keys among each anchor's ``nearest`` most similar negatives.

        Counted over the (anchor, key) pairs whose two classes are known (:attr:`train_labels`
        learns an image's class when a batch shows it); nan while no pair is known. Only the
        ``nearest`` columns' indices are looked up. None when the record names no images.

        Args:
            sims: the step's record, with ``index`` and ``neg_index``.
            nearest: how many of each anchor's most similar valid negatives to look at.
        """
        if sims.index is None or sims.neg_index is None:
            return None
        valid = sims.valid()  # (B, K)
        lowest = torch.finfo(sims.neg.dtype).min
        columns = torch.where(valid, sims.neg, torch.full_like(sims.neg, lowest)).topk(
            min(nearest, sims.num_negatives), dim=1).indices  # (B, n)
        keys = sims.neg_index_at(columns)  # (B, n) dataset indices, -1 unknown
        key_labels = torch.where(keys >= 0, self.train_labels[keys.clamp(min=0)], torch.full_like(keys, -1))
        anchor_labels = self.train_labels[sims.index].unsqueeze(1)  # (B, 1)
        known = valid.gather(1, columns) & (key_labels >= 0) & (anchor_labels >= 0)  # (B, n)
        same = known & (key_labels == anchor_labels)
        return same.sum().float() / known.sum().float()  # nan when nothing is known yet

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints written before the module kept the images' classes: every class unknown
        if prefix + "train_labels" not in state_dict:
            state_dict[prefix + "train_labels"] = torch.full_like(self.train_labels, -1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _watch_finite(self, loss: torch.Tensor) -> None:
        bad = ~torch.isfinite(loss.detach())
        fresh = bad & (self._first_nonfinite_step < 0)
        self._first_nonfinite_step.copy_(torch.where(fresh, torch.full_like(self._first_nonfinite_step,
                                                                            self.global_step),
                                                     self._first_nonfinite_step))
        if (self.global_step + 1) % self.check_finite_every_n_steps == 0:
            self.raise_if_nonfinite()

    def raise_if_nonfinite(self) -> None:
        """Stop the run if a loss since the last check was not finite (waits for the device)."""
        step = int(self._first_nonfinite_step)
        if step >= 0:
            temperature = self.loss.temperature
            hint = f"temperature {temperature} too small for the precision, " if temperature else ""
            raise NonFiniteLossError(
                f"the training loss became non-finite at step {step} (epoch {self.current_epoch}). Likely "
                f"causes: {hint}a learning rate too high for the batch, fp16 overflow (use bf16 or 32 "
                "precision), or NaN/inf in the input images.")

    def on_train_epoch_start(self) -> None:
        for part in self.loss.modules():  # a temperature schedule follows the epoch (resumed runs too)
            set_epoch = getattr(part, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(self.current_epoch)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.negatives.update()  # the optimiser has stepped: move the bank / queue

    def on_train_epoch_end(self) -> None:
        self.raise_if_nonfinite()
        self.log_epoch_means(prog_bar=["train/loss_epoch"])
