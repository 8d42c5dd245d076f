"""The docstrings a user copies: every public loss, source, datamodule and callback cites its source
and carries a short ``Example:`` that runs here, as a doctest, in the default ``pytest`` run."""

from __future__ import annotations

import doctest
import importlib
import inspect
import re

import pytest

#: the modules whose doctests run (every public component's, and the batch contract's)
MODULES = ["lightning_modules.losses", "lightning_modules.followup_losses", "lightning_modules.similarities", "lightning_modules.negatives", "lightning_modules.probe",
           "datamodules.batch", "datamodules.transforms", "datamodules.base", "datamodules.cifar",
           "datamodules.svhn", "datamodules.folder", "datamodules.imagenet", "callbacks.embedding_metrics",
           "callbacks.provenance"]

#: the public components a config names
PUBLIC = ["lightning_modules.losses.ContrastiveLossBase", "lightning_modules.losses.ContrastiveLoss",
          "lightning_modules.losses.SimpleContrastiveLoss", "lightning_modules.losses.HardContrastiveLoss",
          "lightning_modules.losses.HardSimpleContrastiveLoss", "lightning_modules.negatives.NegativeSource",
          *(f"lightning_modules.followup_losses.{name}" for name in (
              "DebiasedContrastiveLoss", "HardNegativeContrastiveLoss", "DecoupledContrastiveLoss",
              "WeightedDecoupledContrastiveLoss", "DualTemperatureLoss", "ModelAwareContrastiveLoss",
              "CosineTemperatureSchedule", "LearnableTemperatureLoss", "AlignUniformLoss")),
          "lightning_modules.negatives.MemoryBank", "lightning_modules.negatives.InBatchNegatives",
          "lightning_modules.negatives.MomentumQueue", "datamodules.base.ContrastiveDataModule",
          "datamodules.cifar.CIFAR10DataModule", "datamodules.cifar.CIFAR100DataModule",
          "datamodules.svhn.SVHNDataModule", "datamodules.folder.ImageFolderDataModule",
          "datamodules.imagenet.ImageNet100DataModule", "callbacks.embedding_metrics.EmbeddingMetrics",
          "callbacks.provenance.ProvenanceSaveConfig"]

#: a citation: an arXiv id, an equation of the paper, or an author and year
CITATION = re.compile(r"arXiv:\d{4}\.\d{4,5}|\bEq \d+|[A-Z][a-z]+ (et al\.|& [A-Z][a-z]+),? (\"[^\"]+\",? )?\d{4}|"
                      r"[A-Z][a-z]+, \"[^\"]+\", \d{4}|Source: no paper")


def component(path: str) -> type:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", MODULES)
def test_doctests_pass(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no doctest"
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctests of {name} failed (see the output)"


def example_lines(doc: str) -> list[str]:
    """The lines of the docstring's ``Example:`` section (until a blank line or the end)."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Example:") + 1
    block = []
    for line in lines[start:]:
        if not line.strip():
            break
        block.append(line)
    return block


@pytest.mark.parametrize("path", PUBLIC)
def test_each_public_component_cites_its_source_and_has_a_short_example(path):
    cls = component(path)
    assert cls.__module__ in MODULES, f"{path}: its module's doctests do not run"
    doc = inspect.getdoc(cls) or ""
    assert CITATION.search(doc), f"{path} cites no source"
    assert "Example:" in doc, f"{path} has no Example: section"
    block = example_lines(doc)
    assert 3 <= len(block) <= 6, f"{path}: the example has {len(block)} lines, not 3-6"
    assert doctest.DocTestParser().get_examples("\n".join(block)), f"{path}: the example runs nothing"


def test_the_checks_above_can_fail():
    assert not CITATION.search("A loss without any reference.")
    with pytest.raises(StopIteration):
        example_lines("No example here.")
