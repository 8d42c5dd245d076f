"""When the embedding-metrics callback runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from callbacks.embedding_metrics import EmbeddingMetrics


@pytest.mark.parametrize("epoch, max_epochs, due", [
    (0, 10, False), (4, 10, True), (9, 10, True), (8, 9, True),  # every 5th epoch and the last one
    (0, -1, False), (4, -1, True), (0, None, False),  # no last epoch when training is unbounded
])
def test_every_n_epochs_and_the_last_epoch(epoch, max_epochs, due):
    trainer = SimpleNamespace(current_epoch=epoch, max_epochs=max_epochs)
    assert EmbeddingMetrics(every_n_epochs=5)._due(trainer) is due


def test_bad_arguments():
    with pytest.raises(ValueError, match="every_n_epochs"):
        EmbeddingMetrics(every_n_epochs=0)
    with pytest.raises(ValueError, match="knn_k"):
        EmbeddingMetrics(knn_k=0)
