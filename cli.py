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

import importlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

import callbacks  # noqa: F401  (the callbacks' classes, for class_path)
import datamodules
import lightning_modules  # noqa: F401
from callbacks.provenance import ProvenanceSaveConfig
from datamodules.base import ContrastiveDataModule
from lightning_modules.base import SuiteModule
from lightning_modules.checkpoints import read_checkpoint

datamodules.load_all()  # every dataset class, for class_path and --help

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

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads the hyper-parameters of --ckpt_path right after parsing: check the file first
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and "://" not in str(ckpt_path):
            read_checkpoint(ckpt_path, flag="--ckpt_path")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        name_loggers_after_the_stage(config)
        drop_progress_bars_when_disabled(config)
        check_accelerator_exists(config)

    def _check_batch_split(self) -> None:
        """A global batch that the processes cannot share evenly fails before any process starts."""
        world = self.trainer.world_size
        size = getattr(self.datamodule, "batch_size", None)
        if world > 1 and isinstance(size, int) and size % world:
            raise ValueError(f"--data.init_args.batch_size={size} is the global batch size and must be divisible "
                             f"by the number of processes ({world}); choose a multiple of {world}")

    def _before_run(self) -> None:
        self._check_batch_split()
        # --ckpt_path is read as tensors and plain data whatever torch's default (False before torch 2.6, and for
        # URLs in Lightning); `--weights_only false` reads a file you trust that holds Python objects
        method_args = self.config_init[self.subcommand]
        if "weights_only" in method_args and method_args["weights_only"] is None:
            method_args["weights_only"] = True

    def before_fit(self) -> None:
        self._before_run()
        check_optimizer(self.model)
        check_batch_fits_split(self.datamodule)

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
    try:
        main(None if from_sys else args)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except Exception as err:  # noqa: BLE001  (every failure: one line, unless debugging)
        if debug:
            raise
        sys.stderr.write(f"error: {exception_line(err)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_from_command_line())
