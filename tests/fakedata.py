"""Write datasets in the exact on-disk formats the torchvision classes read.

The images are real CIFAR-10 images from ``../shared/data/cifar10_subset.npz``
(see its README); nothing here is committed data.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SUBSET = SHARED_DATA / "cifar10_subset.npz"


def load_subset() -> dict[str, np.ndarray]:
    """The arrays of the shared CIFAR-10 subset (x_train (4000,32,32,3) uint8, y_train, x_test, y_test, ...)."""
    if not SUBSET.is_file():
        raise FileNotFoundError(f"the shared test data is missing: expected {SUBSET}")
    with np.load(SUBSET) as npz:
        return {k: npz[k] for k in npz.files}


def _to_rows(x: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) HWC uint8 -> (N, 3072) rows in the official CHW order."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), -1))


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, n_train: int | None = None, n_test: int | None = None,
                  num_batches: int = 5) -> Path:
    """Write ``root/cifar-10-batches-py`` from the shared subset; returns ``root``.

    The training images are spread over ``num_batches`` data_batch files as in the
    official release; keys and dtypes are those of the original pickles.
    """
    data = load_subset()
    x_tr, y_tr = data["x_train"][:n_train], data["y_train"][:n_train]
    x_te, y_te = data["x_test"][:n_test], data["y_test"][:n_test]
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for b, idx in enumerate(np.array_split(np.arange(len(x_tr)), num_batches), start=1):
        _dump(folder / f"data_batch_{b}", {
            "batch_label": f"training batch {b} of {num_batches}",
            "labels": [int(v) for v in y_tr[idx]],
            "data": _to_rows(x_tr[idx]),
            "filenames": [f"img_{i}.png" for i in idx],
        })
    _dump(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1",
        "labels": [int(v) for v in y_te],
        "data": _to_rows(x_te),
        "filenames": [f"test_{i}.png" for i in range(len(x_te))],
    })
    _dump(folder / "batches.meta", {
        "num_cases_per_batch": int(np.ceil(len(x_tr) / num_batches)),
        "label_names": [str(c) for c in data["class_names"]],
        "num_vis": 3072,
    })
    return Path(root)
