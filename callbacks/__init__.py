"""Callbacks of the suite: embedding metrics and plots, provenance, requeue at a batch boundary."""

from callbacks.embedding_metrics import EmbeddingMetrics
from callbacks.provenance import ProvenanceSaveConfig
from callbacks.requeue import RequeueAtBatchBoundary

__all__ = ["EmbeddingMetrics", "ProvenanceSaveConfig", "RequeueAtBatchBoundary"]
