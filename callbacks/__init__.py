"""Callbacks of the suite: embedding metrics and plots, provenance, the progress bar."""

from callbacks.embedding_metrics import EmbeddingMetrics
from callbacks.progress import SuiteProgressBar
from callbacks.provenance import ProvenanceSaveConfig

__all__ = ["EmbeddingMetrics", "ProvenanceSaveConfig", "SuiteProgressBar"]
