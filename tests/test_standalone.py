"""The repository stands alone: nothing in it reads or links files outside the repository."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.fakedata import NUM_TEST, NUM_TRAIN, SUBSET

# Where code, configs and tests live; a reference to the developers' folder beside the clone in any
# of them would break a fresh clone.
SCANNED = ("tests", "benchmarks", "scripts", "callbacks", "datamodules", "lightning_modules", "configs", "docs",
           "cli.py", "README.md", "Makefile", "pyproject.toml", "requirements.txt", "requirements-test.txt", "pytest.ini",
           ".ci", "contrastive_behaviour")
# Built from pieces, so that this file, which is scanned too, does not contain what it looks for.
FORBIDDEN = ("../" + "shared", "shared" + "/data", "shared" + "/docs")
SKIPPED_DIRS = {"__pycache__", ".pytest_cache"}


def scanned_files(root: Path = ROOT) -> list[Path]:
    files = []
    for name in SCANNED:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and not SKIPPED_DIRS & set(p.parts)]
    return files


def references_outside(root: Path = ROOT) -> list[str]:
    """``file: pattern`` for every scanned file under ``root`` that contains a forbidden pattern."""
    found = []
    for path in scanned_files(root):
        data = path.read_bytes()
        found += [f"{path.relative_to(root)}: {pattern}" for pattern in FORBIDDEN if pattern.encode() in data]
    return found


def test_no_file_names_the_folder_beside_the_repository():
    files = scanned_files()
    assert ROOT / "tests" / "test_standalone.py" in files and ROOT / "cli.py" in files
    assert ROOT / "tests" / "data" / "cifar10_mini.npz" in files and ROOT / "configs" / "base.yaml" in files
    offenders = references_outside()
    assert not offenders, "files outside the repository are named in:\n" + "\n".join(offenders)


def test_the_scan_finds_each_pattern(tmp_path):
    """The scan is not vacuous: a file holding any of the patterns, anywhere in the scanned folders, is reported."""
    for i, pattern in enumerate(FORBIDDEN):
        folder = tmp_path / SCANNED[i % 7] / "deeper"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.py").write_text(f'DATA = "{pattern}/x.npz"\n')
    (tmp_path / "cli.py").write_text("import os\n")
    found = references_outside(tmp_path)
    assert len(found) == len(FORBIDDEN), found
    assert all(pattern in "\n".join(found) for pattern in FORBIDDEN)


MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target "title")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)  # [label]: target
HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")


def link_targets(markdown: str) -> list[str]:
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)  # code blocks hold commands, not links
    return MARKDOWN_LINK.findall(text) + REFERENCE_LINK.findall(text) + HTML_LINK.findall(text)


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the Markdown headings: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    titles = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", t.lower()).replace(" ", "-") for t in titles}


def outside_links(markdown: str, base: Path) -> list[str]:
    """Link targets of ``markdown`` (a file in ``base``) that leave the repository, or do not exist in it."""
    bad = []
    for target in link_targets(markdown):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE) or target.startswith("//"):
            bad.append(f"{target} (outside the repository)")
            continue
        path, _, anchor = target.partition("#")
        if not path:
            if anchor not in heading_anchors(markdown):
                bad.append(f"{target} (no such heading)")
            continue
        resolved = (base / path).resolve()
        if not resolved.is_relative_to(ROOT):
            bad.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            bad.append(f"{target} (missing)")
    return bad


def test_readme_links_only_into_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert len(link_targets(readme)) >= 3  # the links below are actually parsed
    assert "docs/design.md" in link_targets(readme)
    assert outside_links(readme, ROOT) == []


def test_the_link_check_catches_links_that_leave_the_repository():
    bad = ("See [the notes](../" + "elsewhere/notes.md), [a site](https://example.org/x), "
           "[gone](docs/nothing-here.md), [here](#no-such-heading) and [ok](docs/design.md).\n\n"
           "[ref]: ../outside.md\n\n# A heading\n")
    found = outside_links(bad, ROOT)
    assert len(found) == 5, found
    assert outside_links("[fine](#a-heading) [fine too](README.md)\n\n# A heading\n", ROOT) == []


def test_the_shipped_images_are_the_documented_ones():
    """tests/data holds the 1000 + 200 real CIFAR-10 images its README describes, and nothing bigger."""
    assert SUBSET.is_relative_to(ROOT) and SUBSET.stat().st_size < 4 * 2**20
    with np.load(SUBSET) as npz:
        assert npz["x_train"].shape == (NUM_TRAIN, 32, 32, 3) and npz["x_train"].dtype == np.uint8
        assert npz["x_test"].shape == (NUM_TEST, 32, 32, 3) and npz["x_test"].dtype == np.uint8
        assert npz["train_index"].tolist() == list(range(NUM_TRAIN))
        assert npz["test_index"].tolist() == list(range(NUM_TEST))
        assert set(npz["y_train"].tolist()) == set(range(10)) == set(npz["y_test"].tolist())
        assert npz["class_names"].tolist()[:2] == ["airplane", "automobile"]
    assert "Krizhevsky" in (ROOT / "tests" / "data" / "README.md").read_text()


def test_the_readmes_sbatch_line_works_in_a_fresh_clone(tmp_path):
    """SLURM opens a job's --output file before the job starts: the README's command must create its folder.

    The command is run as written in a fresh folder (the script copied, nothing else), with an
    ``sbatch`` stand-in that fails, as SLURM's log would, when the --output folder is missing.
    """
    import shutil
    import subprocess

    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"`([^`]*\bsbatch (scripts/\S+\.sh)[^`]*)`", readme)
    assert commands, "the README shows no sbatch command"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text("#!/usr/bin/env bash\n"
                    'script="${@: -1}"; for a in "$@"; do [[ $a == scripts/*.sh ]] && script=$a && break; done\n'
                    "out=$(sed -n 's/^#SBATCH --output=//p' \"$script\")\n"
                    'dir=$(dirname "$out"); [ -d "$dir" ] || { echo "no folder $dir for $out" >&2; exit 1; }\n')
    fake.chmod(0o755)
    for command, script in commands:
        clone = tmp_path / f"clone_{len(list(tmp_path.iterdir()))}"
        (clone / "scripts").mkdir(parents=True)
        shutil.copy(ROOT / script, clone / script)
        assert re.search(r"^#SBATCH --output=\S+/", (clone / script).read_text(), re.MULTILINE)
        runnable = command.replace("[cli args]", "")
        proc = subprocess.run(["bash", "-c", runnable], cwd=clone, capture_output=True, text=True,
                              env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
        assert proc.returncode == 0, (command, proc.stderr)


# ------------------------------------------------------------------ set-up on a stock Python
INHERITED_MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MARK", "ARGS", "PYTHON", "VENV")


def make_dry_run(tmp_path, *targets: str, venv_exists: bool = False) -> str:
    """What ``make`` would run in a copy of the Makefile and requirements (``-n``: nothing is run)."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "requirements.txt", "requirements-test.txt"):
        if not (tmp_path / name).exists():  # a copy made earlier keeps its time stamp
            shutil.copy(ROOT / name, tmp_path / name)
    if venv_exists:
        (tmp_path / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
        (tmp_path / ".venv" / "bin" / "python").write_text("")
    # Run as a user would from a shell: when the test itself runs under `make test MARK=` (CI), make
    # hands its command-line variables to child makes through MAKEFLAGS and the environment.
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_MAKE_VARIABLES}
    proc = subprocess.run(["make", "-n", *targets], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_creates_and_uses_its_own_virtual_environment(tmp_path):
    fresh = make_dry_run(tmp_path, "test")
    assert "-m venv .venv" in fresh and "python3-venv" in fresh  # created, with the Debian/Ubuntu hint
    assert ".venv/bin/python -m pip install --quiet -r requirements.txt -r requirements-test.txt" in fresh
    assert '.venv/bin/python -m pytest -m "not slow"' in fresh
    assert "python3 -m pip" not in fresh  # never pip on the system interpreter (PEP 668)
    pretrain = make_dry_run(tmp_path, "pretrain")
    assert "mkdir -p runs" in pretrain and ".venv/bin/python cli.py fit -c configs/base.yaml" in pretrain
    assert "rm -rf .venv" in make_dry_run(tmp_path, "clean-venv")


def test_make_reuses_the_environment_until_requirements_change(tmp_path):
    import os
    import time

    make_dry_run(tmp_path, "test", venv_exists=True)  # copies the files; .venv/bin/python exists
    stamp = tmp_path / ".venv" / ".requirements-installed"
    stamp.write_text("")
    future = time.time() + 100
    os.utime(stamp, (future, future))  # installed after the last change of requirements.txt
    again = make_dry_run(tmp_path, "test", venv_exists=True)
    assert "pip install" not in again and "-m venv" not in again and ".venv/bin/python -m pytest" in again
    os.utime(tmp_path / "requirements.txt", (future + 10, future + 10))  # requirements changed
    assert "pip install --quiet -r requirements.txt" in make_dry_run(tmp_path, "test", venv_exists=True)
    os.utime(tmp_path / ".venv" / ".requirements-installed", (future + 20, future + 20))
    os.utime(tmp_path / "requirements-test.txt", (future + 30, future + 30))  # the tests' requirements changed
    assert "pip install --quiet -r requirements.txt" in make_dry_run(tmp_path, "test", venv_exists=True)


def test_ci_runs_the_readme_test_command_with_every_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test MARK=\s*$", ci, re.MULTILINE)


def test_pyproject_reads_the_requirements_and_names_the_python_versions():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["dependencies", "optional-dependencies"]
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"]["file"] == ["requirements.txt"]
    assert dynamic["optional-dependencies"]["test"]["file"] == ["requirements-test.txt"]
    assert "pytest" not in (ROOT / "requirements.txt").read_text()  # a test tool is no runtime dependency
    assert project["project"]["requires-python"] == ">=3.10"
    versions = [c.rsplit(" ", 1)[1] for c in project["project"]["classifiers"] if re.search(r":: 3\.\d+$", c)]
    assert versions == ["3.10", "3.11", "3.12"]
    # one top-level package; below it, the repository's own layout (tests/test_install.py installs it)
    setuptools = project["tool"]["setuptools"]
    assert {p.split(".")[0] for p in setuptools["packages"]} == {"contrastive_behaviour"}
    assert setuptools["package-dir"]["contrastive_behaviour.suite"] == "."
    for package in setuptools["packages"][2:]:
        assert (ROOT / package.rsplit(".", 1)[1] / "__init__.py").is_file()
    assert project["project"]["scripts"] == {"contrastive-behaviour": "contrastive_behaviour:main"}
