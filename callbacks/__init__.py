"""Callbacks of the suite: embedding metrics and plots, provenance."""

from callbacks.embedding_metrics import EmbeddingMetrics
from callbacks.provenance import ProvenanceSaveConfig

__all__ = ["EmbeddingMetrics", "ProvenanceSaveConfig"]
