"""Callbacks of the suite: embedding metrics and plots, provenance, the progress bar, requeue at a batch boundary."""

from callbacks.embedding_metrics import EmbeddingMetrics
from callbacks.progress import SuiteProgressBar
from callbacks.provenance import ProvenanceSaveConfig
from callbacks.requeue import RequeueAtBatchBoundary

__all__ = ["EmbeddingMetrics", "ProvenanceSaveConfig", "RequeueAtBatchBoundary", "SuiteProgressBar"]
