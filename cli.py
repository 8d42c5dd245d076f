"""Command line of the suite: ``python cli.py {fit,validate,test} -c configs/... [--overrides]``.

Installed (``pip install .``), the same command is ``contrastive-behaviour``. ``-c`` takes a
file or the name of a shipped config (``-c base``, ``-c loss/simple``); ``cli.py configs``
prints the folder of the shipped configs and their names.

Every class the configs name is importable from the packages imported here, so
``--help`` lists them and a ``class_path`` resolves.

A mistake (a bad flag or value, a missing file, an unreadable checkpoint) ends the
command with one ``error: ...`` line on stderr and a non-zero exit status (2 for the
command line and configs, 1 otherwise); ``--debug`` or ``CLI_DEBUG=1`` shows the full
traceback instead. Option names must be spelled out: ``--trainer.max_e`` is an error,
not ``--trainer.max_epochs``.
"""

from __future__ import annotations

import copy
import csv
import importlib
import os
import re
import shlex
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import Callback
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

import callbacks  # noqa: F401  (the callbacks' classes, for class_path)
import datamodules
import lightning_modules  # noqa: F401
from callbacks.provenance import ProvenanceSaveConfig
from callbacks.requeue import RequeueAtBatchBoundary
from datamodules.base import ContrastiveDataModule
from lightning_modules.base import SuiteModule
from lightning_modules.checkpoints import read_checkpoint

datamodules.load_all()  # every dataset class, for class_path and --help

# a mid-epoch checkpoint (a requeued job's hpc_ckpt) is resumed exactly: the sampler skips the batches done
warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
# pretraining keeps the datamodule's val_dataloader (linear evaluation uses it) but has no validation loop
warnings.filterwarnings("ignore", message=".*val_dataloader.* but have no `validation_step`.*")

DEBUG_FLAG = "--debug"


def debug_requested() -> bool:
    """``CLI_DEBUG`` set to anything but empty/0/false: show tracebacks instead of one-line errors."""
    return os.environ.get("CLI_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def default_wandb_mode() -> str:
    """W&B logs offline unless ``WANDB_MODE`` says otherwise (online, offline or disabled).

    The shipped W&B loggers leave the mode to W&B, which reads ``WANDB_MODE``; setting it
    here when it is unset makes offline (no account needed) the default.
    """
    return os.environ.setdefault("WANDB_MODE", "offline")


# ---------------------------------------------------------------------- known harmless messages
#: library warnings that ask nothing of the user, each matched precisely (any other warning still shows)
HARMLESS_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own use of a torch API
    r"The number of training batches \(\d+\) is smaller than the logging interval",  # short runs: the epoch logs
    r"The `srun` command is available on your system but is not used",  # a login node, a local run
    # the provenance's dump(skip_none=...): the spelling every jsonargparse >= 4.32 (requirements.txt) reads
    r"\s*skip_none parameter was deprecated",
)
#: Lightning's information lines that ask nothing of the user (its other lines, e.g. GPU use, stay)
HARMLESS_LOG_LINES = re.compile(r"^(💡 Tip: |TPU available: |HPU available: )")


class _DropHarmless:
    """A ``logging`` filter dropping :data:`HARMLESS_LOG_LINES`."""

    def filter(self, record) -> bool:
        return not HARMLESS_LOG_LINES.match(str(record.getMessage()))


def quiet_known_noise() -> None:
    """Hide the messages a default run printed that need no action (deprecations inside Lightning, a
    Lightning advert, W&B's offline chatter); nothing else is silenced.

    W&B is quiet unless it logs online (``WANDB_SILENT`` unset; set it to false to hear it):
    the end-of-fit summary says where an offline run is and the command that uploads it.
    """
    import logging

    for message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in ("pytorch_lightning", "lightning_fabric"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _DropHarmless) for f in handler.filters):
                handler.addFilter(_DropHarmless())
    if os.environ.get("WANDB_MODE", "").strip().lower() != "online":
        os.environ.setdefault("WANDB_SILENT", "true")


# --------------------------------------------------------------------------- one-line errors
def one_line(text: str) -> str:
    """``text`` with every run of whitespace, newlines included, turned into one space."""
    return " ".join(str(text).split())


def _slots() -> list[tuple[str, str, type]]:
    """(flag, what it names, base class) of the slots a config fills with a class."""
    from lightning_modules.encoders import Encoder
    from lightning_modules.losses import ContrastiveLossBase
    from lightning_modules.negatives import NegativeSource

    return [("--model.init_args.loss", "loss", ContrastiveLossBase),
            ("--model.init_args.negatives", "source of negatives", NegativeSource),
            ("--model.init_args.encoder", "encoder", Encoder),
            ("--model", "model", SuiteModule), ("--data", "datamodule", ContrastiveDataModule)]


def _slot_of_key(key: str) -> tuple[str, str, type] | None:
    return next((slot for slot in _slots() if slot[0] == "--" + key), None)


_NOISE = re.compile(r"^(Does not validate against any of the Union subtypes|Subtypes: |Errors:|"
                    r"Given value type: |- Expected a <class 'NoneType'>|- Does not validate against)")


def parser_error_line(message: str) -> str:
    """One line for a jsonargparse error report (which nests one block per config level).

    Keeps the flag (the outermost ``Parser key`` and the nested argument given), the
    innermost specific complaint and the value given; an unknown class name becomes a
    list of the valid ones.
    """
    keys: list[str] = []
    specific: list[str] = []
    given: list[str] = []
    for raw in message.splitlines():
        line = raw.strip()
        key = re.match(r'^(?:- )?Parser key "([^"]+)":\s*(.*)$', line)
        if key:
            keys.append(key.group(1))
            if key.group(2):
                specific.append(key.group(2))
        elif line.startswith("Given value: "):
            given.append(line[len("Given value: "):])
        elif line and not _NOISE.match(line) and not re.match(r"^- Problem with given class_path '[^']*':$", line):
            specific.append(line[2:] if line.startswith("- ") else line)
    if not keys:
        return one_line(message)
    flag = "--" + ".init_args.".join(keys)
    value = given[0] if given else None  # the innermost: the value as typed
    nested = re.match(r"NestedArg\(key='([^']*)', val=(.*)\)$", given[-1]) if given else None
    if nested:  # the outermost report names the flag below its key
        flag = f"--{keys[0]}.init_args.{nested.group(1)}" if nested.group(1) else flag
        inner = re.match(r"NestedArg\(key='[^']*', val=(.*)\)$", value or "")
        value = (inner.group(1) if inner else value or "").strip("'\"")
    unknown_class = any(re.search(r"not accessible or invalid|Expected a dot import path|has no attribute|"
                                  r"No module named", s) for s in specific)
    slot = _slot_of_key(".init_args.".join(keys))
    if unknown_class and slot is not None:
        name = value if value and "(" not in value else next(
            (m.group(1) for s in specific for m in [re.search(r"'([\w.]+)'", s)] if m), "?")
        valid = ", ".join(sorted({c.rsplit(".", 1)[1] for c in _subclasses(slot[2])}))
        return f"{slot[0]}: unknown {slot[1]} '{name.rsplit('.', 1)[-1]}'; valid: {valid}"
    detail = "; ".join(dict.fromkeys(specific)) or "invalid value"
    if value and value not in detail and "Namespace(" not in value:
        detail += f" (given: {value})"
    return one_line(f"{flag}: {detail}")


def exception_line(err: BaseException) -> str:
    """One line for an exception that ends a run.

    jsonargparse wraps an error raised while it builds a class (e.g. ``temperature must
    be > 0``) in reports of every enclosing slot: the innermost cause is what the user
    needs, prefixed with the flag of the slot that raised it.
    """
    flag = None
    while re.match(r"^(Does not validate against|Problem with given class_path)", str(err)):
        subtypes = re.search(r"Subtypes: \[<class '([\w.]+)'", str(err))
        for slot_flag, _, base in _slots():
            if subtypes and subtypes.group(1) == f"{base.__module__}.{base.__qualname__}":
                flag = slot_flag
        inner = err.__cause__ or err.__context__
        if inner is None:
            break
        err = inner
    if re.match(r"^(Does not validate against|Problem with given class_path)", str(err)):
        return parser_error_line(str(err))
    message = one_line(str(err)) or type(err).__name__
    if not isinstance(err, (ValueError, OSError, LookupError, TypeError)) and type(err).__name__ not in (
            "MisconfigurationException", "NonFiniteLossError", "EncoderChangedError"):
        message = f"{type(err).__name__}: {message} (run with --debug or CLI_DEBUG=1 for the traceback)"
    return f"{flag}: {message}" if flag and "--" not in message else message


class SuiteArgumentParser(LightningArgumentParser):
    """LightningCLI's parser with exact option names and one-line errors.

    ``allow_abbrev=False``: argparse would otherwise expand an unambiguous prefix
    (``--trainer.max_e=3`` silently became ``max_epochs: 3``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def dump(self, cfg, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        """``--print_config``, ``config.yaml`` and the provenance show the augmentation in effect."""
        return super().dump(show_effective_augmentation(cfg), *args, **kwargs)

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        # parsers used inside jsonargparse (exit_on_error False) raise, as they must; --debug shows all
        if not self.exit_on_error or debug_requested():
            return super().error(message, ex)
        sys.stderr.write(f"error: {parser_error_line(message)}\n")
        self.exit(2)


def show_effective_augmentation(cfg):
    """``cfg`` with an image folder's augmentation replaced by the values the datamodule will use.

    ``preset``, ``image_size``, ``mean``, ``std`` and the image-size detection of
    :class:`~datamodules.folder.ImageFolderDataModule` change the augmentation when the
    datamodule is built; written out as values (the shortcuts then null), the config shows
    what runs and, read again, runs the same. Any other config is returned as it is.
    """
    from dataclasses import asdict

    from jsonargparse import Namespace

    from datamodules.folder import ImageFolderDataModule
    from datamodules.transforms import Augmentation

    data = cfg.get("data") if isinstance(cfg, Namespace) else None
    init = data.get("init_args") if isinstance(data, Namespace) else None
    if not isinstance(init, Namespace):
        return cfg
    module_name, _, class_name = str(data.get("class_path", "")).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        return cfg
    if not (isinstance(cls, type) and issubclass(cls, ImageFolderDataModule)):
        return cfg
    given = init.get("augmentation")
    wrapped = isinstance(given, Namespace) and "init_args" in given  # before instantiation: {class_path, init_args}
    if wrapped:
        given = given.init_args
    try:
        values = (Augmentation(**given.as_dict()) if isinstance(given, Namespace)
                  else Augmentation(**given) if isinstance(given, dict) else given)
        if not isinstance(values, Augmentation):
            return cfg  # a training-pipeline name (the deprecated meaning): nothing to show
        effective, _ = cls.resolve_augmentation(init.get("data_dir", "data"), init.get("preset"),
                                                init.get("image_size"), init.get("mean"), init.get("std"), values,
                                                init.get("train_folder", "train"))
    except (TypeError, ValueError):
        return cfg  # a bad value: building the datamodule reports it
    cfg = cfg.clone()
    shown = cfg.data.init_args
    values = Namespace(**{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(effective).items()})
    if wrapped:
        shown.augmentation.init_args = values
    else:
        shown.augmentation = values
    for shortcut in ("preset", "image_size", "mean", "std"):
        if shortcut in shown:
            shown[shortcut] = None
    return cfg


# ------------------------------------------------------------------------- shipped configs by name
#: the shipped YAML configs: beside cli.py in a clone and in the installed package (contrastive_behaviour/suite)
CONFIGS = Path(__file__).resolve().parent / "configs"
CONFIG_FLAGS = ("-c", "--config")


def shipped_config(name: str) -> Path | None:
    """The shipped config ``name`` means when no such file exists here, else None.

    ``base``, ``loss/simple``, ``loss/simple.yaml`` and ``configs/loss/simple.yaml`` all name
    ``configs/loss/simple.yaml``, so that the README's commands work from any folder and
    with the installed command (``contrastive-behaviour fit -c base``). A file that exists
    where it is given always wins.
    """
    if not name or Path(name).expanduser().exists():
        return None
    stem = name[len("configs/"):] if name.startswith("configs/") else name
    for candidate in (CONFIGS / stem, CONFIGS / f"{stem}.yaml"):
        if candidate.is_file() and CONFIGS in candidate.resolve().parents:
            return candidate
    return None


def resolve_config_names(args: list[str]) -> list[str]:
    """``args`` with each ``-c NAME`` / ``--config NAME`` / ``--config=NAME`` that names a shipped config made a path."""
    out: list[str] = []
    after_flag = False
    for arg in args:
        if after_flag:
            out.append(str(shipped_config(arg) or arg))
            after_flag = False
            continue
        flag, eq, value = arg.partition("=")
        if flag in CONFIG_FLAGS and eq:
            out.append(f"{flag}={shipped_config(value) or value}")
            continue
        after_flag = arg in CONFIG_FLAGS
        out.append(arg)
    return out


def list_configs() -> str:
    """``cli.py configs``: the folder of the shipped configs, then the names ``-c`` accepts."""
    names = sorted(str(p.relative_to(CONFIGS).with_suffix("")) for p in CONFIGS.rglob("*.yaml"))
    return "\n".join([str(CONFIGS)] + names)


class ConfigFileError(ValueError):
    """A ``-c`` file that is no YAML config for ``cli.py`` (a syntax error, a grid of runs, a W&B sweep)."""


def config_files(args: list[str]) -> list[str]:
    """The files given with ``-c`` / ``--config`` in ``args``."""
    files, after_flag = [], False
    for arg in args:
        flag, eq, value = arg.partition("=")
        if after_flag:
            files.append(arg)
        elif flag in CONFIG_FLAGS and eq:
            files.append(value)
        after_flag = arg in CONFIG_FLAGS
    return files


def missing_config_line(name: str) -> str:
    """The error for a ``-c`` value that is neither a file nor a shipped config: the nearest names, where to list them."""
    import difflib

    names = list_configs().splitlines()[1:]
    stem = name[len("configs/"):] if name.startswith("configs/") else name
    near = difflib.get_close_matches(stem.removesuffix(".yaml"), names, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    return (f"--config {name}: no such file ({Path(name).expanduser().absolute()}) and no shipped config of that name; "
            f"{hint}cli.py configs lists them")


def check_config_files(args: list[str]) -> None:
    """Each ``-c`` file that exists must be YAML and a config for ``cli.py``; else :class:`ConfigFileError`.

    jsonargparse reports a YAML syntax error without the file's name, and a grid of runs
    (``scripts/sweep.py``) or a W&B sweep as an unknown option; these say what the file is.
    """
    import yaml

    for name in config_files(args):
        path = Path(name).expanduser()
        if not path.exists():
            raise ConfigFileError(missing_config_line(name))
        if not path.is_file():
            continue  # jsonargparse names what is wrong with it
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or one_line(str(err))
            raise ConfigFileError(f"--config {name}: YAML syntax error at{where or ' ?'}: {problem}; fix the file") from err
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigFileError(f"--config {name}: cannot read the file ({err})") from err
        if isinstance(content, dict) and "cells" in content and ("pretrain" in content or "linear" in content):
            raise ConfigFileError(f"--config {name} is a grid of runs, not a config for cli.py: run it with "
                                  f"python scripts/sweep.py {name} --out runs/<name>")
        if isinstance(content, dict) and "method" in content and "parameters" in content:
            raise ConfigFileError(f"--config {name} is a W&B sweep, not a config for cli.py: "
                                  f"wandb sweep {name}, then wandb agent <sweep id>")


# ------------------------------------------------------------------------------------- the CLI
class SuiteCLI(LightningCLI):
    """LightningCLI with the links between data and model that every run needs."""

    def add_arguments_to_parser(self, parser) -> None:
        # data-derived sizes go to top-level module arguments only (docs/architecture.md, the batch contract)
        parser.link_arguments("data.num_train_samples", "model.init_args.num_samples", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        add_run_safety_arguments(parser)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads the hyper-parameters of --ckpt_path right after parsing: check the file first
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and "://" not in str(ckpt_path):
            ckpt = read_checkpoint(ckpt_path, flag="--ckpt_path")
            # before LightningCLI replaces the model's arguments with the checkpoint's: compare them first
            if subcommand == "fit":
                check_resumed_hyperparameters(ckpt, ckpt_path, self.config[subcommand])
                self._resume_checkpoint = (Path(ckpt_path), ckpt)
                if self.config[subcommand].get(ALLOW_CHANGES_FLAG):  # the values given win over the checkpoint's
                    self._model_as_given = copy.deepcopy(self.config[subcommand].get("model"))

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        name_loggers_after_the_stage(config)
        drop_progress_bars_when_disabled(config)
        check_accelerator_exists(config)
        if self.subcommand == "fit":
            resume = getattr(self, "_resume_checkpoint", None)
            if getattr(self, "_model_as_given", None) is not None:
                config.model = self._model_as_given
            requeued = requeued_checkpoint(config) if resume is None else None
            if requeued is not None:  # Lightning restores it by itself: the run continues in its folder too
                resume = self._resume_checkpoint = (requeued, read_checkpoint(requeued, flag="hpc checkpoint"))
            self._resume_folder = prepare_run_folder(config, *(resume or (None, None)), requeued=requeued is not None)
            if self._resume_folder is not None:  # its own checkpoints are there, as they should be
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            if self._resume_folder is not None or config.get(OVERWRITE_FLAG):
                self.save_config_kwargs = {**self.save_config_kwargs, "overwrite": True}  # the same run's config

    def _check_batch_split(self) -> None:
        """A global batch that the processes cannot share evenly fails before any process starts."""
        world = self.trainer.world_size
        size = getattr(self.datamodule, "batch_size", None)
        if world > 1 and isinstance(size, int) and size % world:
            raise ValueError(f"--data.init_args.batch_size={size} is the global batch size and must be divisible "
                             f"by the number of processes ({world}); choose a multiple of {world}")

    def _before_run(self) -> None:
        self._check_batch_split()
        watch_run(self.trainer, self.subcommand)
        # --ckpt_path is read as tensors and plain data whatever torch's default (False before torch 2.6, and for
        # URLs in Lightning); `--weights_only false` reads a file you trust that holds Python objects
        method_args = self.config_init[self.subcommand]
        if "weights_only" in method_args and method_args["weights_only"] is None:
            method_args["weights_only"] = True

    def before_fit(self) -> None:
        self._before_run()
        check_optimizer(self.model)
        check_batch_fits_split(self.datamodule)
        self.trainer.callbacks.append(RequeueAtBatchBoundary())
        if getattr(self, "_resume_folder", None) is not None:
            keep_metrics_up_to_the_checkpoint(self.trainer, self._resume_folder, self._resume_checkpoint[1])
            self.trainer.callbacks.append(ResumeIntoLastCheckpoint(self._resume_checkpoint[0]))

    def before_validate(self) -> None:
        self._before_run()

    def before_test(self) -> None:
        self._before_run()

    def after_fit(self) -> None:
        """Linear evaluation ends with the test split (the numbers of Table 1); every fit names its folder."""
        model = self.model
        if isinstance(model, SuiteModule) and model.evaluates_on_test_after_fit and not self.trainer.interrupted:
            self.trainer.test(model, datamodule=self.datamodule)
        folder = run_folder(self.trainer)  # trainer.log_dir broadcasts: every rank asks, together
        if self.trainer.is_global_zero:
            print_fit_summary(self.trainer, folder)
            print(f"run folder: {folder}", flush=True)


def check_optimizer(model) -> None:
    """Build the optimiser and schedule once on a stand-in parameter: a bad value (``lr < 0``) fails before the run.

    PyTorch checks the values only when Lightning builds the optimiser, after the run folder
    exists, and its message names no flag.
    """
    import torch

    factory = getattr(model, "optimizer_factory", None)
    if not isinstance(model, SuiteModule) or not callable(factory):
        return
    try:
        optimizer = factory([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        raise ValueError(f"--model.init_args.optimizer: {one_line(str(err))} (e.g. "
                         "--model.init_args.optimizer.init_args.lr=0.03)") from err
    scheduler = getattr(model, "scheduler_factory", None)
    try:
        if callable(scheduler):
            scheduler(optimizer)
    except (ValueError, TypeError) as err:
        raise ValueError(f"--model.init_args.scheduler: {one_line(str(err))}") from err


def check_batch_fits_split(datamodule) -> None:
    """A global batch larger than the training split would train on one short batch per epoch: an error."""
    size = getattr(datamodule, "batch_size", None)
    if not isinstance(datamodule, ContrastiveDataModule) or not isinstance(size, int):
        return
    images = datamodule.num_train_samples
    if size > images:
        raise ValueError(f"--data.init_args.batch_size={size} is larger than the training split ({images} images): "
                         f"choose at most {images}")


#: (logged key, label, format) of the end-of-pretraining summary
SUMMARY = (("val/knn_top1", "kNN top-1", "{:.4f}"), ("val/uniformity", "uniformity", "{:.4f}"),
           ("val/tolerance", "tolerance", "{:.4f}"))


def print_fit_summary(trainer, folder: Path) -> None:
    """What a finished pretraining gives: its last metrics, where the plots are, the W&B run (nothing if interrupted).

    Reads the values the metrics callback logged (``trainer.callback_metrics``); linear
    evaluation prints its own table (the test split).
    """
    model = trainer.lightning_module
    if trainer.interrupted or not isinstance(model, SuiteModule) or model.evaluates_on_test_after_fit:
        return
    logged = trainer.callback_metrics
    values = [f"{label} {fmt.format(float(logged[key]))}" for key, label, fmt in SUMMARY if key in logged]
    epochs = f"{trainer.current_epoch} epoch{'s' if trainer.current_epoch != 1 else ''}"
    print(f"pretraining finished after {epochs}: " + (", ".join(values) if values else "no metrics logged"), flush=True)
    plots = Path(folder) / "plots"
    if plots.is_dir() and any(plots.iterdir()):
        print(f"plots: {plots}", flush=True)
    for logger in trainer.loggers:
        experiment = getattr(logger, "experiment", None) if type(logger).__name__ == "WandbLogger" else None
        run_dir = getattr(experiment, "dir", None)
        if getattr(getattr(experiment, "settings", None), "mode", None) == "offline" and run_dir:
            offline = Path(run_dir).parent
            print(f"W&B (offline): {offline}; upload it with: wandb sync {offline}", flush=True)
        elif getattr(experiment, "url", None):
            print(f"W&B: {experiment.url}", flush=True)


def run_folder(trainer) -> Path:
    """Where the run's config.yaml, metrics and checkpoints went (the first logger's version folder)."""
    return Path(trainer.log_dir or trainer.default_root_dir)


def check_accelerator_exists(config) -> None:
    """A GPU config on a machine without a usable GPU fails before anything is built, in one line."""
    import torch

    trainer = config.get("trainer")
    accelerator = str(trainer.get("accelerator", "") if trainer is not None else "").lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"--trainer.accelerator={accelerator}, but PyTorch finds no GPU on this machine "
                         "(torch.cuda.is_available() is False): use -c configs/trainer/cpu.yaml or "
                         "--trainer.accelerator=auto")


def name_loggers_after_the_stage(config) -> None:
    """A file or TensorBoard logger without a ``name`` writes under the model's stage folder.

    ``configs/logger/*.yaml`` leave ``name`` null, so the same file serves pretraining
    (``runs/pretrain/``) and linear evaluation (``runs/linear/``): the folder is the
    model class's ``log_name``.
    """
    from jsonargparse import Namespace

    model = config.get("model")
    class_path = model.get("class_path") if isinstance(model, Namespace) else None
    if not class_path:
        return
    module_name, _, class_name = str(class_path).rpartition(".")
    try:
        stage = getattr(getattr(importlib.import_module(module_name), class_name), "log_name", None)
    except (ImportError, AttributeError, ValueError):
        return
    loggers = config.get("trainer", Namespace()).get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if not isinstance(logger, Namespace) or not str(logger.get("class_path", "")).endswith(
                ("CSVLogger", "TensorBoardLogger")):
            continue
        init_args = logger.get("init_args")
        if isinstance(init_args, Namespace) and "name" in init_args and init_args.name is None and stage:
            init_args.name = stage


def drop_progress_bars_when_disabled(config) -> None:
    """``--trainer.enable_progress_bar=false`` removes the bar that base.yaml lists among the callbacks.

    (Lightning refuses a progress-bar callback together with ``enable_progress_bar=False``.)
    """
    trainer = config.get("trainer")
    if trainer is None or trainer.get("enable_progress_bar") is not False:
        return
    callbacks = trainer.get("callbacks")
    if isinstance(callbacks, list):
        trainer.callbacks = [c for c in callbacks
                             if not str(getattr(c, "class_path", "") or "").endswith("ProgressBar")]


# ------------------------------------------------------------ runs: interruptions, folders, resumes
# Nothing lost, nothing silent: an interrupted run exits non-zero and says how to resume; a run never
# writes into another run's folder; a resumed run continues its own folder and W&B run, with the
# hyper-parameters it was trained with.
OVERWRITE_FLAG = "overwrite_run"
ALLOW_CHANGES_FLAG = "allow_changed_hparams"
#: arguments that may differ on resume: where the data lives and how it is loaded, and sizes cli.py links
RESUME_FREE_KEYS = {"data_dir", "train_folder", "test_folder", "num_workers", "eval_batch_size", "download",
                    "pin_memory", "verify_checksums", "num_samples", "num_classes", "check_finite_every_n_steps",
                    "penalty_entropy_every_n_steps", "compile", "channels_last", "pretrained", "cache_features"}


def add_run_safety_arguments(parser) -> None:
    """``--overwrite_run`` and ``--allow_changed_hparams`` (the explicit choices behind two refusals)."""
    parser.add_argument(f"--{OVERWRITE_FLAG}", type=bool, default=False,
                        help="replace the run already in the logger's folder (an explicit version: that run's "
                             "metrics.csv and config.yaml are rewritten); without it such a run is refused")
    parser.add_argument(f"--{ALLOW_CHANGES_FLAG}", type=bool, default=False,
                        help="with --ckpt_path: resume although model or data arguments differ from the "
                             "checkpoint's (the values given now are used); without it the run is refused")


def _plain(value: Any) -> Any:
    """A config value as YAML reads it back (lists for tuples, strings for paths and other objects)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def resume_differences(saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """``key: saved -> given`` for every model/data argument or seed that differs (see RESUME_FREE_KEYS)."""
    old, new = _flatten(_plain(saved)), _flatten(_plain(given))
    out = []
    for key in sorted(set(old) | set(new)):
        if key.split(".")[0] not in ("model", "data", "seed_everything") or key.split(".")[-1] in RESUME_FREE_KEYS:
            continue
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if a != b and not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)):
            out.append(f"{key}: {a} -> {b}")
    return out


def check_resumed_hyperparameters(ckpt: dict[str, Any], ckpt_path: str | Path, config) -> None:
    """A resume whose model or data arguments differ from the checkpoint's is refused, listing them.

    Without this check LightningCLI silently replaces the model's arguments with the
    checkpoint's, and data arguments change under a half-trained model.
    """
    import yaml

    saved_text = (ckpt.get("provenance") or {}).get("config") if isinstance(ckpt.get("provenance"), dict) else None
    if not isinstance(saved_text, str) or config.get(ALLOW_CHANGES_FLAG):
        return
    try:
        saved = yaml.safe_load(saved_text)
    except yaml.YAMLError:
        return
    given = config.as_dict() if hasattr(config, "as_dict") else dict(config)
    differences = resume_differences(saved if isinstance(saved, dict) else {}, given)
    if differences:
        shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
        raise ValueError(f"--ckpt_path: {ckpt_path} was trained with other values (checkpoint -> now): {shown}. "
                         f"Resume with the checkpoint's values, or pass --{ALLOW_CHANGES_FLAG}=true if the change "
                         "is intended (a new --trainer.max_epochs needs neither)")


def epochs_completed(ckpt: dict[str, Any]) -> int | None:
    """Epochs whose training ended, as the checkpoint records it (the suite's ``run`` entry, else Lightning's)."""
    run = ckpt.get("run")
    if isinstance(run, dict) and isinstance(run.get("epochs_completed"), int):
        return run["epochs_completed"]
    try:
        return int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return None


def metrics_pending(ckpt: dict[str, Any]) -> dict[str, int] | None:
    """``{"epoch", "step"}`` when the checkpoint was written before its epoch's metrics were logged, else None."""
    states = ckpt.get("callbacks")
    found = [v["pending"] for v in states.values() if isinstance(v, dict) and isinstance(v.get("pending"), dict)] \
        if isinstance(states, dict) else []
    return found[0] if found else None


def checkpoint_run_folder(ckpt_path: Path, ckpt: dict[str, Any]) -> Path | None:
    """The run folder a checkpoint belongs to: ``<run>/checkpoints/x.ckpt``, else the folder it records."""
    path = Path(ckpt_path).expanduser().resolve()
    if path.parent.name == "checkpoints" and any((path.parents[1] / f).is_file() for f in
                                                 ("config.yaml", "metrics.csv", "hparams.yaml")):
        return path.parents[1]
    recorded = (ckpt.get("run") or {}).get("log_dir") if isinstance(ckpt.get("run"), dict) else None
    return Path(recorded) if recorded and Path(recorded).is_dir() else None


def _loggers(config, *names: str) -> list:
    """The ``init_args`` of the configured loggers whose class name ends with one of ``names``."""
    from jsonargparse import Namespace

    loggers = config.get("trainer", Namespace()).get("logger")
    out = []
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(logger, Namespace) and str(logger.get("class_path", "")).endswith(names):
            if not isinstance(logger.get("init_args"), Namespace):
                logger.init_args = Namespace()
            out.append(logger.init_args)
    return out


def _file_logger_folder(init_args) -> Path | None:
    """``save_dir/name/version`` of a CSV or TensorBoard logger with an explicit version (None without)."""
    version = init_args.get("version")
    if version is None:
        return None
    root = Path(str(init_args.get("save_dir") or "."))
    root = root / str(init_args.name) if init_args.get("name") else root
    return root / (version if isinstance(version, str) else f"version_{version}")


def refuse_finished_run(ckpt: dict[str, Any], ckpt_path: str | Path, config) -> None:
    """Resuming a run that completed its epochs (and logged their metrics) is refused in one line."""
    done, planned = epochs_completed(ckpt), config.get("trainer").get("max_epochs")
    if done is None or planned in (None, -1) or done < planned or metrics_pending(ckpt):
        return
    trained = f"{done} of {planned} epochs done" if done == planned else f"{done} epochs done, max_epochs {planned}"
    raise ValueError(f"--ckpt_path: {ckpt_path} is a finished run ({trained}): nothing to resume. To train it "
                     f"longer, add --trainer.max_epochs=N with N > {done}; to start a new run, drop --ckpt_path")


def refuse_reused_folders(config, resume_folder: Path | None) -> None:
    """A logger pointed at a folder (or W&B run id) that already holds a run is refused before anything is written."""
    resumed = resume_folder.resolve() if resume_folder is not None else None
    if config.get(OVERWRITE_FLAG):
        return
    for init_args in _loggers(config, "CSVLogger", "TensorBoardLogger"):
        folder = _file_logger_folder(init_args)
        if folder is None or not folder.is_dir() or folder.resolve() == resumed:
            continue
        held = sorted(p.name for p in folder.iterdir())
        if held:
            raise ValueError(
                f"--trainer.logger: {folder} already holds a run ({', '.join(held[:4])}); choose a new version "
                f"(leave version unset for the next free one), resume it with --ckpt_path "
                f"{folder / 'checkpoints' / 'last.ckpt'}, or replace it with --{OVERWRITE_FLAG}=true")
    for init_args in _loggers(config, "WandbLogger"):
        run_id = init_args.get("id") or init_args.get("version")
        if run_id and resumed is None:
            found = sorted((Path(str(init_args.get("save_dir") or ".")) / "wandb").glob(f"*run-*-{run_id}"))
            if found:
                raise ValueError(
                    f"--trainer.logger: the W&B run id {run_id} is already used by {found[0]}; leave id unset for a "
                    f"new run, resume that run with --ckpt_path, or replace it with --{OVERWRITE_FLAG}=true")


def continue_run(config, folder: Path | None, ckpt: dict[str, Any]) -> None:
    """Point the first file logger at the resumed run's folder, and the W&B logger at its run id."""
    file_loggers = _loggers(config, "CSVLogger", "TensorBoardLogger")
    if folder is not None and file_loggers:
        first = file_loggers[0]
        number = re.fullmatch(r"version_(\d+)", folder.name)  # a number when it is one (the progress bar shows it)
        first.save_dir, first.name = str(folder.parents[1]), folder.parent.name
        first.version = int(number.group(1)) if number else folder.name
    run = ckpt.get("run") if isinstance(ckpt.get("run"), dict) else {}
    if run.get("wandb_id"):
        for init_args in _loggers(config, "WandbLogger"):
            if not init_args.get("id"):
                init_args.id = run["wandb_id"]
                os.environ.setdefault("WANDB_RESUME", "allow")  # continue it where it exists, else start it


class ResumeIntoLastCheckpoint(Callback):
    """A resumed run writes its ``last.ckpt`` over the one it resumed from, wherever the run folder now lies.

    ``ModelCheckpoint`` restores the name of its last checkpoint only when its folder is the one the
    checkpoint recorded; for a run folder moved or copied since (scratch to home, another machine), it
    would save ``last-v1.ckpt`` beside the stale ``last.ckpt``, which the sweep and a later resume read.

    Args:
        resumed: the checkpoint the run resumed from.
    """

    def __init__(self, resumed: Path) -> None:
        self.resumed = Path(resumed).expanduser().resolve()

    def on_train_start(self, trainer, pl_module) -> None:
        for callback in trainer.checkpoint_callbacks:
            folder = getattr(callback, "dirpath", None)
            if folder and not callback.last_model_path and Path(folder).resolve() / self.resumed.name == self.resumed:
                callback.last_model_path = str(self.resumed)  # overwritten in place, as an unmoved run's is


def requeued_checkpoint(config) -> Path | None:
    """The ``hpc_ckpt_N.ckpt`` (highest N) that Lightning restores by itself in a requeued SLURM job, if any."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect():
        return None
    root = Path(str(config.get("trainer").get("default_root_dir") or "."))
    found = [(int(m.group(1)), p) for p in root.glob("hpc_ckpt_*.ckpt")
             for m in [re.match(r"hpc_ckpt_(\d+)\.ckpt$", p.name)] if m]
    return max(found)[1] if found else None


def prepare_run_folder(config, ckpt_path: Path | None, ckpt: dict[str, Any] | None,
                       requeued: bool = False) -> Path | None:
    """Checks and settings of a fit's output folders; returns the resumed run's folder (None: a new run)."""
    folder = None
    if ckpt is not None:
        if not requeued:
            refuse_finished_run(ckpt, ckpt_path, config)
        folder = checkpoint_run_folder(ckpt_path, ckpt)
        continue_run(config, folder, ckpt)
    refuse_reused_folders(config, folder)
    return folder


def keep_metrics_up_to_the_checkpoint(trainer, folder: Path, ckpt: dict[str, Any]) -> None:
    """The resumed run's ``metrics.csv`` keeps the rows logged before the checkpoint, then continues.

    Lightning's CSV logger deletes an existing ``metrics.csv`` when it opens its folder; the
    rows of steps the checkpoint had done are written back through the logger, those of
    the lost part (after the checkpoint) are dropped, and so are metrics the checkpoint
    left pending (the resumed run logs them again): the file reads as one run.
    """
    metrics = folder / "metrics.csv"
    logger = next((lg for lg in trainer.loggers if type(lg).__name__ == "CSVLogger"
                   and Path(str(lg.log_dir)).resolve() == folder.resolve()), None)
    if logger is None or trainer.global_rank != 0 or not metrics.is_file():
        return
    with open(metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    step = int(ckpt.get("global_step", 0))
    pending = metrics_pending(ckpt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "exists and is not empty ... will be deleted": it is the same run
        logger.experiment  # noqa: B018  (opens the folder now, so the rows written back stay)
    for row in rows:
        if row.get("step") in (None, "") or int(float(row["step"])) >= step:
            continue
        at = int(float(row["step"]))
        values = {k: v for k, v in row.items() if k != "step" and v not in ("", None)
                  and not (pending and at == int(pending["step"]) and k.startswith(("val/", "bank/")))}
        if set(values) - {"epoch"}:
            logger.log_metrics(values, step=at)
    logger.save()


# the signal that interrupted the command, and the running trainer, for the closing lines
_RUN: dict[str, Any] = {}


def watch_run(trainer, subcommand: str | None) -> None:
    """Remember the trainer and its folder: an interruption names them (every rank asks, together)."""
    _RUN.update(trainer=trainer, subcommand=subcommand, folder=run_folder(trainer))


def _record_signal(signum: int, frame: Any) -> None:
    _RUN["signal"] = signum
    # SIGINT, or a SIGTERM before Lightning's own handler is in place (which stops at the end of the batch)
    if signum == signal.SIGINT or signal.getsignal(signum) is _record_signal:
        raise KeyboardInterrupt


def record_signals() -> dict[int, Any]:
    """Record SIGTERM and SIGINT (Lightning keeps a SIGTERM handler it finds); returns the previous handlers."""
    _RUN.clear()
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(signum) == signal.SIG_IGN:  # ignored on purpose (nohup, a background job): kept so
            continue
        try:
            previous[signum] = signal.signal(signum, _record_signal)
        except ValueError:  # not the main thread: leave the handlers alone
            break
    return previous


def _last_checkpoint(trainer) -> Path | None:
    for callback in getattr(trainer, "checkpoint_callbacks", []) if trainer is not None else []:
        dirpath = getattr(callback, "dirpath", None)
        if dirpath and (Path(dirpath) / "last.ckpt").is_file():
            return Path(dirpath) / "last.ckpt"
    return None


def command_line(args: list[str]) -> str:
    """The command as a user types it again: ``python cli.py ...`` (or the console command that ran)."""
    program = sys.argv[0] if sys.argv and sys.argv[0] and not sys.argv[0].endswith(("pytest", "-c")) else "cli.py"
    head = ["python", program] if program.endswith(".py") else [program]
    return shlex.join([*head, *args])


def resume_arguments(args: list[str], checkpoint: Path) -> list[str]:
    """``args`` with ``--ckpt_path`` set to ``checkpoint`` (an earlier one removed)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            out.append(arg)
    return [*out, f"--ckpt_path={checkpoint}"]


def report_interruption(args: list[str]) -> int:
    """The closing lines of an interrupted command; returns its exit status, 128 + the signal number."""
    signum = int(_RUN["signal"])
    trainer, folder = _RUN.get("trainer"), _RUN.get("folder")
    where = ""
    if trainer is not None and _RUN.get("subcommand") == "fit":
        where = f" during epoch {trainer.current_epoch} of {trainer.max_epochs}"
    if trainer is None or trainer.is_global_zero:
        lines = [f"error: interrupted by {signal.Signals(signum).name}{where}: the run did not finish"]
        if folder is not None:
            lines.append(f"run folder: {folder}")
        last = _last_checkpoint(trainer)
        if _RUN.get("subcommand") == "fit" and last is not None:
            lines.append(f"resume: {command_line(resume_arguments(args, last))}")
        elif _RUN.get("subcommand") == "fit":
            lines.append(f"no checkpoint was written; start again: {command_line(args)}")
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    return 128 + signum


def _subclasses(base: type) -> list[str]:
    found, todo = [], [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if not sub.__name__.startswith("_") and not sub.__name__.startswith("Unverified"):
                found.append(f"{sub.__module__}.{sub.__name__}")
    return sorted(set(found))


def catalogue() -> str:
    """The components a config can name, for ``--help``."""
    lines = [f"{what} ({flag}): {', '.join(name.rsplit('.', 1)[1] for name in _subclasses(base))}"
             for flag, what, base in [_slots()[i] for i in (3, 0, 1, 2, 4)]]
    lines.append("Arguments of one: --model.help ContrastiveModule, --model.init_args.loss.help HardContrastiveLoss")
    lines.append(f"Errors are one line; {DEBUG_FLAG} (or CLI_DEBUG=1) shows the traceback")
    return "Components. " + ". ".join(lines)


def main(args: list[str] | None = None, run: bool = True) -> SuiteCLI:
    """Run the CLI on ``args`` (``sys.argv[1:]`` when None); tests call this directly.

    Errors propagate as exceptions (a bad command line exits with status 2 after one
    ``error:`` line); :func:`run_from_command_line` turns the rest into one line too.
    """
    default_wandb_mode()
    quiet_known_noise()
    return SuiteCLI(
        SuiteModule,
        ContrastiveDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_callback=ProvenanceSaveConfig,
        parser_class=SuiteArgumentParser,
        args=args,
        run=run,
        parser_kwargs={sub: {"epilog": catalogue()} for sub in ("fit", "validate", "test", "predict")},
    )


def run_from_command_line(argv: list[str] | None = None) -> int:
    """``python cli.py ...``: the exit status; one ``error:`` line on stderr for any failure.

    ``argv`` None reads ``sys.argv`` (as LightningCLI does); ``--debug`` is taken out of it.
    """
    from_sys = argv is None
    args = sys.argv[1:] if from_sys else list(argv)
    debug = DEBUG_FLAG in args or debug_requested()
    args = resolve_config_names([a for a in args if a != DEBUG_FLAG])
    if args[:1] == ["configs"]:
        print(list_configs())
        return 0
    try:
        check_config_files(args)
    except ConfigFileError as err:
        if debug:
            raise
        sys.stderr.write(f"error: {err}\n")
        return 2
    if debug:
        os.environ["CLI_DEBUG"] = "1"
        os.environ.setdefault("JSONARGPARSE_DEBUG", "true")  # jsonargparse raises (with a traceback) instead of exiting
    if from_sys:
        sys.argv[1:] = args  # LightningCLI reads sys.argv itself when args is None
    previous = record_signals()
    try:
        main(None if from_sys else args)
    except (KeyboardInterrupt, SystemExit) as err:  # Lightning ends an interrupted fit with SystemExit
        if _RUN.get("signal") is not None:
            return report_interruption(args)
        if isinstance(err, KeyboardInterrupt):
            sys.stderr.write("error: interrupted\n")
            return 130
        raise
    except Exception as err:  # noqa: BLE001  (every failure: one line, unless debugging)
        if debug:
            raise
        sys.stderr.write(f"error: {exception_line(err)}\n")
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if _RUN.get("signal") is not None:  # a signal during the last moments: not a finished run either
        return report_interruption(args)
    return 0


if __name__ == "__main__":
    sys.exit(run_from_command_line())
