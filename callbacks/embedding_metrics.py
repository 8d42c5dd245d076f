"""Every n epochs: uniformity, tolerance, alignment, positive/top-10 negative similarities, kNN, plots."""

from __future__ import annotations

import contextlib
import copy
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Iterator

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from callbacks import metrics as M
from callbacks import plots
from datamodules.batch import as_views
from lightning_modules.contrastive import ContrastiveModule, unit_embedding


#: most bytes of non-augmented images EmbeddingMetrics keeps between epochs (they do not change)
CACHE_BYTES = 1 << 30
#: images per forward pass on a CPU, whatever the loader's batch: measured fastest for the CPU recipe's
#: encoder (128 takes 0.58x the time of 512 a image: a batch's activations then stay in the caches)
CPU_FORWARD_BATCH = 128


def embed_split(trainer: pl.Trainer, module: pl.LightningModule, split: str, stage: str = "none",
                num_views: int = 1, epoch: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Embed every image of ``split`` on every rank's shard and gather the whole split on every rank.

    Returns ``num_views`` tensors (N, d) and the labels (N,), in dataset order. Indices
    repeated by the distributed sampler's padding write the same rows twice. ``epoch``
    (default: the trainer's) seeds the augmented views. The module embeds in eval mode, and
    training's random state is left as it was.
    """
    dm = trainer.datamodule
    # augmented views are seeded per image (by epoch and index): the same on any number of processes
    seed = trainer.current_epoch if epoch is None else epoch
    loader = dm.eval_dataloader(split, stage=stage, num_views=num_views, augmentation_seed=seed)
    return _embed(trainer, module, loader, len(loader.dataset))  # the whole split: a sampler only shards it


@torch.no_grad()
def _embed(trainer: pl.Trainer, module: pl.LightningModule, batches: Iterable,
           n: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """:func:`embed_split` of the loader's ``batches`` over a split of ``n`` images."""
    if n == 0:
        raise ValueError("the split is empty")
    was_training = module.training
    module.eval()
    outs: list[torch.Tensor] | None = None
    labels = torch.full((n,), -1, dtype=torch.long, device=module.device)
    # training's random state is left as it was; a pass off the training thread (a Snapshot) draws
    # nothing from it, and forking it there would race with the steps that do
    keep_rng = contextlib.nullcontext() if isinstance(module, Snapshot) else torch.random.fork_rng(devices=[])
    with keep_rng:
        for index, images, label in batches:
            index, label = index.to(module.device), label.to(module.device)
            zs = [_forward(module, v.to(module.device)) for v in as_views(images)]  # each (B, d)
            if trainer.world_size > 1:
                index = module.all_gather(index).reshape(-1)
                label = module.all_gather(label).reshape(-1)
                zs = [module.all_gather(z).reshape(-1, z.shape[-1]) for z in zs]
            if outs is None:
                outs = [torch.zeros(n, z.shape[1], device=module.device) for z in zs]
            for out, z in zip(outs, zs):
                out[index] = z.float()
            labels[index] = label
    module.train(was_training)
    return outs, labels


def _forward(module: pl.LightningModule, images: torch.Tensor) -> torch.Tensor:
    """``module.embed(images)`` (B, d), in chunks of ``CPU_FORWARD_BATCH`` on a CPU."""
    if images.device.type != "cpu" or len(images) <= CPU_FORWARD_BATCH:
        return module.embed(images)
    return torch.cat([module.embed(chunk) for chunk in images.split(CPU_FORWARD_BATCH)])


def _batches(views: list[torch.Tensor], labels: torch.Tensor, size: int) -> list[tuple]:
    """``(index, views, label)`` batches of ``size`` over views made in one piece (index 0..N-1)."""
    n = len(labels)
    return [(torch.arange(start, min(start + size, n)), [v[start:start + size] for v in views],
             labels[start:start + size]) for start in range(0, n, size)]


def _caching(batches: Iterable, store: list, budget: int) -> Iterator:
    """Yield ``batches`` and append them to ``store`` while their images fit in ``budget`` bytes (else clear it)."""
    used = 0
    for batch in batches:
        used += sum(v.numel() * v.element_size() for v in as_views(batch[1]))
        if used <= budget:
            store.append(batch)
        yield batch
    if used > budget:
        store.clear()


class Snapshot:
    """What the metrics read of a :class:`ContrastiveModule` at an epoch's end, copied for a pass on another thread.

    The encoder (in eval mode) and the keys of the negatives' source are copies, so the
    next epoch's steps cannot change them under the pass; ``embed`` is the module's
    (normalised, fp32, channels-last when the module trains so).
    """

    training = False

    def __init__(self, module: ContrastiveModule) -> None:
        self.device = module.device
        self.channels_last = module.channels_last
        self.encoder = copy.deepcopy(module.encoder).eval()
        keys = module.negatives.indexed_keys
        self.negatives = SimpleNamespace(indexed_keys=None if keys is None else keys.detach().clone())

    def eval(self) -> "Snapshot":
        return self

    def train(self, mode: bool = True) -> "Snapshot":
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, out_dim) L2-normalised, as :meth:`ContrastiveModule.embed`."""
        return unit_embedding(self.encoder, x, self.channels_last)


class EmbeddingMetrics(Callback):
    """The paper's diagnostics of the embedding, logged every ``every_n_epochs`` epochs.

    Sources: uniformity, Wang & Isola 2020 (arXiv:2005.10242) as Eq 10 of Wang & Liu 2021
    (arXiv:2012.09740); tolerance, Eq 11 there; the similarity profile, Fig 8 there; the
    weighted kNN monitor, Wu et al. 2018 (arXiv:1805.01978).

    On the test split (non-augmented): ``val/uniformity`` (-L_uniformity, Eq 10, t = 2; the
    paper's sign, at most 4), ``val/tolerance`` (mean similarity of distinct same-class
    pairs, Eq 11) and ``val/knn_top1`` (weighted kNN, Wu et al. 2018, against the keys the
    negatives' source offers as ``indexed_keys``, e.g. the memory bank, else against the
    embedded training split). On two
    augmented views of each test image: ``val/alignment`` and the Fig 8 profile
    ``val/pos_sim``, ``val/neg_sim_1`` .. ``val/neg_sim_k`` (the other view is the
    positive; the other images' second views are the negatives). With ``bank_metrics``,
    the same uniformity/tolerance/profile on those keys as ``bank/...``.
    ``val/centroid_norm`` (and ``bank/centroid_norm`` when there is a bank) is the norm of
    the mean embedding: 1 for a collapsed embedding, about 0 for a centred one.

    Fig 8 the paper's way, when the negatives' source keeps a key per training image (a
    memory bank): ``val/pos_sim_bank`` and ``val/neg_sim_bank_1`` .. ``_k`` on the first
    ``bank_profile_images`` training images, one view each made as the training loader
    makes it; the positive is the similarity with the image's own bank entry (s_ii of
    Eq 1), the negatives the k largest similarities with the other N - 1 entries.

    Cost: the non-augmented test images are read once and kept (up to ``CACHE_BYTES``);
    the augmented views are made by worker processes while the epoch trains
    (``prefetch_views``); the Fig 8 plot is drawn once, when training ends, from the
    recorded history (:meth:`draw_plots` draws it on demand).

    With ``log_initial`` the metrics are also computed once before the first training
    step, on the untrained encoder, and logged as epoch -1 at step 0 (the start of every
    trajectory; kNN then uses the embedded training split, since the bank is still its
    random initialisation). That pass reads every test image, so a corrupt one stops the
    run before any training is lost.

    With ``overlap`` (by default where the training leaves a core idle), an epoch's metrics
    are computed on another thread while the next epoch trains, from a :class:`Snapshot` of
    the encoder and the bank taken when the epoch ends: the same values, logged with their
    own epoch and step when the next epoch ends (a fixed point: the same rows in the same
    order every run); ``last.ckpt`` keeps the epoch's metrics pending until the next one
    replaces it, so a run resumed from it computes them again. A checkpoint saved in the
    middle of the next epoch (a requeue) logs them first: its weights are not the epoch's. The last epoch's
    metrics are computed in place, so ``fit`` returns with everything logged. A callback
    that monitors a ``val/`` or ``bank/`` value (early stopping, a best checkpoint) needs
    it at the epoch's end: ``overlap`` is then off (refused if asked for). Under data
    parallelism the metrics gather across processes and are computed in place.

    The epoch's checkpoints are written before its metrics are computed (they take a while,
    and an interruption then must not lose the epoch's training), with the metrics marked
    pending in this callback's state; once they are logged, ``last.ckpt`` is written again
    without the mark, so it stays the checkpoint of the final state. A run resumed from a
    checkpoint whose metrics are pending computes and logs them first, as they would have
    been (same weights, bank, augmentation seeds, epoch and step).

    Args:
        every_n_epochs: compute every this many epochs (and after the last one).
        knn_k: neighbours of the kNN monitor.
        knn_sigma: temperature of the kNN weights.
        top_k: negatives in the similarity profile.
        uniformity_t: t of Eq 10.
        bank_metrics: also measure the memory bank (the training split as the loss sees it).
        plot: save the Fig 8 profile (all recorded epochs, drawn when training ends) and the
            Fig 3 penalty curve as PNGs in ``<log_dir>/plots`` and send them to W&B when it logs.
        embedding_map: also save a 2-D t-SNE map of the test embeddings (Fig 2); slow.
        embedding_map_points: points in that map.
        log_initial: compute and log the metrics once before training starts (epoch -1).
        bank_profile_images: training images of the bank-positive Fig 8 profile
            (``val/pos_sim_bank``); 0 turns it off.
        prefetch_views: augment the test views in worker processes (the datamodule's
            ``num_workers``, at least one) while the epoch trains; False makes them in the
            training process when the metrics are due. Same values either way.
        views_on_device: make the two test views with the training's device augmentation
            (batched, from a generator seeded by the epoch) when training uses it on pixels
            held in memory, instead of the CPU pipeline: much cheaper, the same distribution,
            other random draws, so ``val/alignment``, ``val/pos_sim`` and ``val/neg_sim_*``
            differ from a run without it by their sampling noise.
        overlap: compute each epoch's metrics on another thread while the next epoch trains
            (one process; see above). None (the default): where the training leaves a core
            idle, i.e. a run on a CPU whose steps use one thread while the process has more
            cores (``OMP_NUM_THREADS=1``, as the CPU recipe's grids run), and no callback
            monitors a metric of this callback; False: always in place. With more intra-op
            threads the pass's own OpenMP threads compete with the steps' (on 2 cores at 2
            threads, ``benchmarks/bench_epoch.py``'s bare loop ran at half speed beside them),
            so the default is off there. It needs ``prefetch_views`` and no ``embedding_map``.

    Example:
        >>> from types import SimpleNamespace
        >>> metrics = EmbeddingMetrics(every_n_epochs=5, knn_k=200, bank_metrics=True, plot=False)
        >>> [metrics._due(SimpleNamespace(current_epoch=e, max_epochs=12)) for e in (3, 4, 11)]
        [False, True, True]
    """

    def __init__(self, every_n_epochs: int = 1, knn_k: int = 200, knn_sigma: float = 0.07, top_k: int = 10,
                 uniformity_t: float = 2.0, bank_metrics: bool = False, plot: bool = True,
                 embedding_map: bool = False, embedding_map_points: int = 2000, log_initial: bool = True,
                 bank_profile_images: int = 500, prefetch_views: bool = True, views_on_device: bool = False,
                 overlap: bool | None = None) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if knn_k < 1 or top_k < 1:
            raise ValueError(f"knn_k and top_k must be >= 1, got {knn_k} and {top_k}")
        self.every_n_epochs = every_n_epochs
        self.knn_k = knn_k
        self.knn_sigma = knn_sigma
        self.top_k = top_k
        self.uniformity_t = uniformity_t
        self.bank_metrics = bank_metrics
        self.plot = plot
        self.embedding_map = embedding_map
        self.embedding_map_points = embedding_map_points
        if bank_profile_images < 0:
            raise ValueError(f"bank_profile_images must be >= 0 (0 turns the bank profile off), got {bank_profile_images}")
        self.log_initial = log_initial
        self.bank_profile_images = bank_profile_images
        self.prefetch_views = prefetch_views
        self.views_on_device = views_on_device
        if overlap and not prefetch_views:
            raise ValueError("overlap needs prefetch_views: the views made in the training process would draw from its "
                             "random generator at another point of the epoch; set prefetch_views true or overlap false")
        if overlap and embedding_map:
            raise ValueError("overlap draws no embedding map (it would be drawn and sent from the other thread); "
                             "set embedding_map false or overlap false")
        self.overlap = overlap
        self._monitored = False  # whether another callback monitors one of these metrics (setup)
        self._executor: ThreadPoolExecutor | None = None
        self._job: tuple[Future, int, int] | None = None  # (the pass under way, its epoch, its step)
        self._deferred: int | None = None  # the seed of views to start once that pass is done
        self._ready: tuple[dict[str, float], int, int] | None = None  # (values, epoch, step) of a pass done, to log
        #: the values last logged (a pass on another thread logs them after the epoch's end)
        self.latest: dict[str, float] = {}
        self.profile: dict[int, tuple[float, list[float]]] = {}
        self._cache: dict[tuple, list] = {}  # (split, rank, world) -> the non-augmented batches
        self._background: dict[str, Any] = {}  # name -> loader working ahead
        self._pending: dict[str, tuple[int, Iterator]] = {}  # name -> (seed, its pass under way)
        #: {"epoch", "step"} of metrics not yet logged when the checkpoint was written, else None
        self.pending: dict[str, int] | None = None

    # ------------------------------------------------------------------ helpers
    def _due(self, trainer: pl.Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= epoch  # max_epochs -1: no last epoch
        return epoch % self.every_n_epochs == 0 or last

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # trainer.log_dir broadcasts from rank 0, so every rank must ask for it, here, together
        self.plot_dir = Path(trainer.log_dir or trainer.default_root_dir) / "plots"
        self._monitored = False
        for callback in trainer.callbacks:
            monitor = getattr(callback, "monitor", None)
            if isinstance(monitor, str) and monitor.split("/")[0] in ("val", "bank"):
                self._monitored = True
                if self.overlap:
                    raise ValueError(
                        f"{type(callback).__name__} monitors {monitor!r}, which EmbeddingMetrics(overlap=true) logs "
                        "after its epoch has ended; set the EmbeddingMetrics callback's overlap to false, or monitor "
                        "another value")

    def _overlaps(self, trainer: pl.Trainer, module: pl.LightningModule) -> bool:
        """Whether this epoch's metrics go to another thread (not the last epoch's, not across processes)."""
        last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch + 1
        if self.overlap is False or last or trainer.should_stop or trainer.world_size > 1:
            return False
        if self.overlap is None:  # where the training's steps leave a core idle (and the rules above allow it)
            # one intra-op thread: with more, the pass's own OpenMP team would compete with the steps' for the cores
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            return (module.device.type == "cpu" and torch.get_num_threads() == 1 and cores > 1 and self.prefetch_views
                    and not self.embedding_map and not self._monitored
                    and isinstance(module, ContrastiveModule))
        return isinstance(module, ContrastiveModule)

    def _send_image(self, trainer: pl.Trainer, key: str, path: Path) -> None:
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # W&B (and Neptune/MLflow-style image loggers)
                logger.log_image(key=key, images=[str(path)], step=trainer.global_step)

    def _bank(self, module: pl.LightningModule | Snapshot) -> torch.Tensor | None:
        """The keys the negatives' source offers the metrics (``NegativeSource.indexed_keys``), if any."""
        return module.negatives.indexed_keys if isinstance(module, (ContrastiveModule, Snapshot)) else None

    # -------------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.plot and isinstance(pl_module, ContrastiveModule) and trainer.is_global_zero:
            # any loss: the curve is the loss's own relative penalty (Eq 5 for the contrastive loss)
            path = plots.plot_relative_penalty([pl_module.loss], self.plot_dir / "relative_penalty.png")
            self._send_image(trainer, "plots/relative_penalty", path)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_pending(trainer, pl_module)  # a resumed run: everything is restored by now
        if not self.log_initial or trainer.global_step > 0 or trainer.current_epoch > 0:
            return  # a resumed run logged its starting point already
        self._log_row(trainer, self.compute(trainer, pl_module, initial=True), epoch=-1, step=0)

    def _log_row(self, trainer: pl.Trainer, values: dict[str, Any], epoch: int, step: int) -> None:
        """``values`` straight to the loggers at ``epoch`` and ``step`` (Lightning would stamp its own)."""
        row = {key: float(value) for key, value in values.items()}
        row["epoch"] = epoch
        for logger in trainer.loggers:
            logger.log_metrics(row, step=step)
        self._record_profile(trainer, epoch, values)
        self.latest = {k: v for k, v in row.items() if k != "epoch"}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._due(trainer):  # the workers augment this epoch's views while it trains
            if self._job is not None:  # the last epoch's pass still reads its views: start once it is done
                self._deferred = trainer.current_epoch
            else:
                self._start(trainer, pl_module, trainer.current_epoch)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._collect(trainer, block=False)

    def _collect(self, trainer: pl.Trainer, block: bool) -> None:
        """The pass under way on another thread, once done: its values kept for :meth:`wait`, the next views started.

        Raises:
            Exception: whatever the pass raised, here, on the training thread.
        """
        if self._job is None or not (block or self._job[0].done()):
            return
        future, epoch, step = self._job
        self._job = None
        self._ready = (future.result(), epoch, step)
        if self._deferred is not None:
            seed, self._deferred = self._deferred, None
            self._start(trainer, trainer.lightning_module, seed)

    def wait(self, trainer: pl.Trainer) -> None:
        """Log the metrics computed on another thread (``overlap``), waiting for the pass if it still runs.

        The epoch after theirs calls it when it ends (and training's end, an exception, or a
        benchmark's timer): a fixed point, so ``metrics.csv`` has the same rows in the same
        order whichever thread finished first.

        Raises:
            Exception: whatever the pass raised, here, on the training thread.
        """
        self._collect(trainer, block=True)
        if self._ready is not None:
            values, epoch, step = self._ready
            self._ready = None
            self._log_row(trainer, values, epoch, step)
            self.pending = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._due(trainer):
            return
        self.wait(trainer)  # the last epoch's pass, if still under way: one at a time
        # the checkpoint below comes before the module's own epoch-end hook: a non-finite loss since
        # its last check must stop the run here, or its weights would replace the last good last.ckpt
        check = getattr(pl_module, "raise_if_nonfinite", None)
        if check is not None:
            check()
        # Lightning logs epoch-end values at the last step of the epoch
        self.pending = {"epoch": trainer.current_epoch, "step": max(trainer.global_step - 1, 0)}
        self._save_checkpoints_now(trainer, pl_module)
        if self._overlaps(trainer, pl_module):
            self._submit(trainer, pl_module)
            return
        values = self.compute(trainer, pl_module)
        for key, value in values.items():
            pl_module.log(key, value, on_step=False, on_epoch=True, rank_zero_only=False)
        self._record_profile(trainer, trainer.current_epoch, values)
        self.latest = {key: float(value) for key, value in values.items()}
        self.pending = None
        self._rewrite_last_checkpoints(trainer)

    def _submit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """This epoch's metrics, on another thread, from a snapshot of the encoder and the bank.

        ``last.ckpt`` keeps its pending mark until the next epoch's checkpoint replaces it: a run
        resumed from it before then computes and logs the metrics again (``cli.py`` drops rows
        logged for a pending step), whereas a mark cleared before the values were logged could
        lose them.
        """
        epoch, step = self.pending["epoch"], self.pending["step"]
        self._written_now = []
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedding-metrics")
        self._job = (self._executor.submit(self._pass_off_thread, trainer, Snapshot(pl_module), epoch), epoch, step)
        self._job_trainer = trainer

    def _pass_off_thread(self, trainer: pl.Trainer, snapshot: Snapshot, epoch: int) -> dict[str, float]:
        """The metrics of ``epoch`` from ``snapshot`` (on the other thread)."""
        return {key: float(value) for key, value in self.compute(trainer, snapshot, epoch=epoch).items()}

    @staticmethod
    def _last_checkpoints(trainer: pl.Trainer) -> dict[str, int]:
        """``last.ckpt`` paths of the checkpoint callbacks and their modification times (0: no file)."""
        paths = [getattr(cb, "last_model_path", "") for cb in trainer.checkpoint_callbacks]
        return {p: Path(p).stat().st_mtime_ns if Path(p).is_file() else 0 for p in paths if p}

    def _save_checkpoints_now(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The epoch's checkpoints, before the metrics (Lightning's own call later finds them written)."""
        before = self._last_checkpoints(trainer)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                callback.on_train_epoch_end(trainer, pl_module)
        after = self._last_checkpoints(trainer)
        # rank 0 writes the files; every rank must then take part in the rewrite (it ends in a barrier)
        self._written_now = trainer.strategy.broadcast([p for p, t in after.items() if t and before.get(p) != t])

    def _rewrite_last_checkpoints(self, trainer: pl.Trainer) -> None:
        """The ``last.ckpt`` just written, again, now that the metrics are logged (nothing pending in it)."""
        for path in getattr(self, "_written_now", []):
            trainer.save_checkpoint(path)
        self._written_now = []

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_pending(trainer, pl_module)  # a resumed run whose epochs were all trained: no on_train_start

    def log_pending(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The metrics a resumed checkpoint left pending, logged at their own epoch and step."""
        if self.pending is None or self._job is not None or self._ready is not None:  # a pass logs them itself
            return
        epoch, step = int(self.pending["epoch"]), int(self.pending["step"])
        self._log_row(trainer, self.compute(trainer, pl_module, epoch=epoch), epoch, step)
        self.pending = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wait(trainer)  # a run stopped before its last epoch (max_steps, max_time, early stopping)
        self.draw_plots(trainer)
        self._stop()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        try:  # the metrics of an epoch already trained are not lost
            self.wait(trainer)
        except Exception:  # noqa: BLE001 - the original exception is the one to report
            self._job = None
        self._stop()
        try:  # the epochs recorded so far, drawn for the interrupted run
            self.draw_plots(trainer)
        except Exception:  # noqa: BLE001 - the original exception is the one to report
            pass

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stop()
        self._cache.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _record_profile(self, trainer: pl.Trainer, epoch: int, values: dict[str, torch.Tensor]) -> None:
        self.profile[epoch] = (float(values["val/pos_sim"]),
                               [float(values[f"val/neg_sim_{r}"]) for r in range(1, self.top_k + 1)])

    def draw_plots(self, trainer: pl.Trainer) -> None:
        """Draw the Fig 8 profile of every recorded epoch (rank 0; when ``plot``), and send it to W&B."""
        if self.plot and self.profile and trainer.is_global_zero:
            path = plots.plot_similarity_profile(self.profile, self.plot_dir / "similarity_profile.png",
                                                 run=plots.run_label(trainer.lightning_module, trainer.datamodule))
            self._send_image(trainer, "plots/similarity_profile", path)

    # ------------------------------------------------------- the passes over the data
    def _views_needed(self, trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, tuple[str, int, int | None]]:
        """name -> (split, views, limit) of the augmented passes the metrics read."""
        dm = trainer.datamodule
        on_device = self.views_on_device and dm.augments_in_memory and dm.device_views(
            "test", torch.arange(0), 0, "cpu") is not None
        needed = {} if on_device else {"test_views": ("test", 2, None)}
        bank = self._bank(module)
        if bank is not None and self.bank_profile_images and not trainer.datamodule.augments_in_memory:
            needed["bank_queries"] = ("train", 1, self.bank_profile_images)
        return needed

    def _start(self, trainer: pl.Trainer, module: pl.LightningModule, seed: int) -> None:
        """Start the augmented passes seeded by ``seed`` (in worker processes with ``prefetch_views``)."""
        for name, (split, views, limit) in self._views_needed(trainer, module).items():
            if name not in self._background:
                self._background[name] = trainer.datamodule.background_eval_loader(
                    split, views, limit=limit, background=self.prefetch_views)
            loader = self._background[name]
            loader.sampler.seed = seed
            self._pending[name] = (seed, iter(loader))

    def _stop(self) -> None:
        """Let the worker processes go (they end with their loaders), once no pass reads them."""
        if self._job is not None:
            self._job[0].exception()  # waits; what it raised is for wait() to report
        self._deferred = None
        self._pending.clear()
        self._background.clear()

    def _augmented(self, trainer: pl.Trainer, module: pl.LightningModule, name: str,
                   seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Embeddings of the augmented pass ``name`` seeded by ``seed``: the one under way, else made now."""
        pending = self._pending.pop(name, None)
        if pending is None or pending[0] != seed:
            self._start(trainer, module, seed)
            pending = self._pending.pop(name)
        split, _, limit = self._views_needed(trainer, module)[name]
        n = len(trainer.datamodule.labels(split))
        n = n if limit is None else min(limit, n)
        return _embed(trainer, module, pending[1], n)

    def _test_views(self, trainer: pl.Trainer, module: pl.LightningModule, seed: int,
                    labels: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Two augmented views of every test image, embedded: the CPU pipeline's, or the device's (``views_on_device``)."""
        if "test_views" in self._views_needed(trainer, module):
            return self._augmented(trainer, module, "test_views", seed)
        dm = trainer.datamodule
        views = dm.device_views("test", torch.arange(len(labels)), seed, module.device, num_views=2)
        return _embed(trainer, module, _batches(views, labels.cpu(), dm.per_device_eval_batch_size), len(labels))

    def _plain(self, trainer: pl.Trainer, module: pl.LightningModule, split: str) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Embeddings of the non-augmented ``split``; its images are read once and kept."""
        key = (split, trainer.global_rank, trainer.world_size)
        loader = trainer.datamodule.eval_dataloader(split)
        n = len(loader.dataset)
        if self._cache.get(key):
            return _embed(trainer, module, self._cache[key], n)
        if key in self._cache:  # None: too large to keep
            return _embed(trainer, module, loader, n)
        store: list = []
        out = _embed(trainer, module, _caching(loader, store, CACHE_BYTES), n)
        self._cache[key] = store or None
        return out

    def compute(self, trainer: pl.Trainer, module: pl.LightningModule,
                initial: bool = False, epoch: int | None = None) -> dict[str, torch.Tensor]:
        """All metrics of this epoch, identical on every rank (``initial``: before any training step).

        ``epoch``: the epoch the metrics belong to (default: the trainer's current one); it seeds
        the augmented views, the same on any number of processes.
        """
        epoch = trainer.current_epoch if epoch is None else epoch
        seed = epoch  # of the augmented views
        (z,), y = self._plain(trainer, module, "test")
        (z1, z2), _ = self._test_views(trainer, module, seed, y)
        out: dict[str, torch.Tensor] = {
            "val/uniformity": -M.uniformity(z, t=self.uniformity_t),
            "val/tolerance": M.tolerance(z, y),
            "val/alignment": M.alignment(z1, z2),
            "val/centroid_norm": M.centroid_norm(z),
        }
        pos, negs = M.positive_and_topk_similarities(z1, z2, torch.arange(len(z1), device=z1.device),
                                                     k=self.top_k)
        out["val/pos_sim"] = pos
        out.update({f"val/neg_sim_{r + 1}": negs[r] for r in range(self.top_k)})
        dm = trainer.datamodule
        bank = self._bank(module)
        if bank is not None:
            out["bank/centroid_norm"] = M.centroid_norm(bank)
            if self.bank_profile_images:
                queries = self._bank_queries(trainer, module, seed)
                pos_b, negs_b = M.positive_and_topk_similarities(
                    queries, bank, torch.arange(len(queries), device=bank.device), k=self.top_k)
                out["val/pos_sim_bank"] = pos_b
                out.update({f"val/neg_sim_bank_{r + 1}": negs_b[r] for r in range(self.top_k)})
        if bank is not None and not initial:
            train_z, train_y = bank, dm.labels("train").to(bank.device)
        else:
            (train_z,), train_y = embed_split(trainer, module, "train", epoch=epoch)
        out["val/knn_top1"] = M.knn_accuracy(train_z, train_y, z, y, k=self.knn_k, sigma=self.knn_sigma,
                                             num_classes=dm.num_classes)
        if self.bank_metrics and bank is not None:
            bank_y = dm.labels("train").to(bank.device)
            out["bank/uniformity"] = -M.uniformity(bank, t=self.uniformity_t)
            out["bank/tolerance"] = M.tolerance(bank, bank_y)
            (zt,), _ = embed_split(trainer, module, "train", stage="pretrain", epoch=epoch)
            pos_b, negs_b = M.positive_and_topk_similarities(
                zt, bank, torch.arange(len(zt), device=zt.device), k=self.top_k)
            out["bank/pos_sim"] = pos_b
            out.update({f"bank/neg_sim_{r + 1}": negs_b[r] for r in range(self.top_k)})
        if self.embedding_map and trainer.is_global_zero:
            path = plots.plot_embedding_2d(z.cpu(), y.cpu(), self.plot_dir
                                           / f"embedding_epoch{epoch:03d}.png",
                                           max_points=self.embedding_map_points)
            self._send_image(trainer, "plots/embedding_2d", path)
        return out

    def _bank_queries(self, trainer: pl.Trainer, module: pl.LightningModule, seed: int) -> torch.Tensor:
        """(m, d): one view of each of the first m training images, augmented as the training loader does."""
        dm = trainer.datamodule
        m = min(self.bank_profile_images, len(dm.labels("train")))
        views = dm.device_views("train", torch.arange(m), seed, module.device)
        if views is None:  # the CPU pipeline, seeded per image, made in the background
            (queries,), _ = self._augmented(trainer, module, "bank_queries", seed)
            return queries
        (queries,), _ = _embed(trainer, module, _batches(views, torch.zeros(m, dtype=torch.long),
                                                         dm.per_device_eval_batch_size), m)
        return queries

    def state_dict(self) -> dict[str, Any]:
        if self._job is not None or self._ready is not None:
            # a checkpoint in the middle of the next epoch (a requeue): the pass's metrics are logged first, so
            # nothing is pending in it; pending, a run resumed from it would compute them from its later weights
            self.wait(self._job_trainer)
        return {"profile": self.profile, "pending": self.pending}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.profile = dict(state_dict.get("profile", {}))
        self.pending = state_dict.get("pending")
