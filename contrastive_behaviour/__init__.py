"""The suite as an installed package: ``contrastive-behaviour`` is ``python cli.py`` from any folder.

The wheel keeps the repository's layout under one name: ``contrastive_behaviour/suite/``
holds ``cli.py``, ``callbacks/``, ``datamodules/``, ``lightning_modules/`` and ``configs/``,
exactly as they sit in a clone. The command puts that folder first on ``sys.path`` and
runs ``cli.py``, so the code's own imports (``from datamodules.batch import ...``) and the
configs' ``class_path`` values (``lightning_modules.losses.ContrastiveLoss``) mean the same
modules in a clone and in an installation, and a checkpoint or ``config.yaml`` written by
one is read by the other. Nothing is installed at the top level of ``site-packages`` but
this package; the suite's names become importable only in a process that asks for them
(:func:`use_suite_imports`). See docs/architecture.md, "Installed package".
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["home", "configs_dir", "use_suite_imports", "main"]


def home() -> Path:
    """The folder holding ``cli.py``, the three packages and ``configs/``.

    ``<this package>/suite`` when installed from a wheel; the repository's root in a clone
    (where this package is the folder ``contrastive_behaviour/`` beside ``cli.py``).
    """
    here = Path(__file__).resolve().parent
    installed = here / "suite"
    return installed if (installed / "cli.py").is_file() else here.parent


def configs_dir() -> Path:
    """The shipped YAML configs (``contrastive-behaviour configs`` prints this folder)."""
    return home() / "configs"


def use_suite_imports() -> None:
    """Make ``cli``, ``callbacks``, ``datamodules`` and ``lightning_modules`` importable in this process.

    They go first on ``sys.path``, so that another distribution's module of the same name
    (there is a ``callbacks`` on PyPI) cannot shadow them.
    """
    path = str(home())
    if path not in sys.path:
        sys.path.insert(0, path)


def main() -> int:
    """The console command ``contrastive-behaviour``: the options, configs and exit statuses of ``cli.py``."""
    use_suite_imports()
    import cli

    return cli.run_from_command_line()
