"""Write datasets in the exact on-disk formats the torchvision classes read.

The images are real CIFAR-10 images, 1,000 training and 200 test images shipped in
``tests/data/cifar10_mini.npz`` (see ``tests/data/README.md`` for their origin).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

TEST_DATA = Path(__file__).resolve().parent / "data"
SUBSET = TEST_DATA / "cifar10_mini.npz"
#: images in each split of the file
NUM_TRAIN, NUM_TEST = 1000, 200


def load_subset() -> dict[str, np.ndarray]:
    """The arrays of the shipped CIFAR-10 images (x_train (1000,32,32,3) uint8, y_train, x_test (200,...), y_test, ...)."""
    if not SUBSET.is_file():
        raise FileNotFoundError(f"the test images are missing: expected {SUBSET} (part of the repository)")
    with np.load(SUBSET) as npz:
        return {k: npz[k] for k in npz.files}


def _split(data: dict[str, np.ndarray], split: str, n: int | None,
           cycle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images and labels of ``split`` (all when None).

    Asking for more than the file holds is an error unless ``cycle``, which repeats the
    images in order (for throughput benchmarks, where a repeated image costs the same).
    """
    x, y = data[f"x_{split}"], data[f"y_{split}"]
    if n is not None and n > len(x):
        if not cycle:
            raise ValueError(f"{SUBSET.name} holds {len(x)} {split} images, {n} were asked for")
        take = np.arange(n) % len(x)
        return x[take], y[take]
    return x[:n], y[:n]


def _to_rows(x: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) HWC uint8 -> (N, 3072) rows in the official CHW order."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), -1))


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, n_train: int | None = None, n_test: int | None = None,
                  num_batches: int = 5, cycle: bool = False) -> Path:
    """Write ``root/cifar-10-batches-py`` from the shipped images; returns ``root``.

    The training images are spread over ``num_batches`` data_batch files as in the
    official release; keys and dtypes are those of the original pickles. ``cycle``
    allows more images than the file holds by repeating them (benchmarks only).
    """
    data = load_subset()
    x_tr, y_tr = _split(data, "train", n_train, cycle)
    x_te, y_te = _split(data, "test", n_test, cycle)
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


# The 100 fine and 20 coarse class names of the official CIFAR-100 ``meta`` file, in its order.
CIFAR100_FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower "
    "sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale "
    "willow_tree wolf woman worm"
).split()
CIFAR100_COARSE = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things "
    "large_natural_outdoor_scenes large_omnivores_and_herbivores medium_mammals non-insect_invertebrates "
    "people reptiles small_mammals trees vehicles_1 vehicles_2"
).split()


def _fine_labels(y: np.ndarray) -> np.ndarray:
    """CIFAR-100 labels for CIFAR-10 images: 10 fine classes per CIFAR-10 class, all 100 used.

    The image of CIFAR-10 class ``c`` that is the ``k``-th of its class gets ``10 c + k % 10``,
    so a label still says something about the picture (the pictures are not CIFAR-100's).
    """
    rank = np.zeros_like(y)
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        rank[where] = np.arange(len(where))
    return (10 * y + rank % 10).astype(np.int64)


def write_cifar100(root: Path, n_train: int | None = None, n_test: int | None = None) -> Path:
    """Write ``root/cifar-100-python/{train,test,meta}`` from the shipped images; returns ``root``.

    Keys and dtypes are those of the official pickles (``fine_labels``, ``coarse_labels``,
    ``data`` (N, 3072) uint8, ``filenames``, ``batch_label``; ``meta`` with
    ``fine_label_names`` and ``coarse_label_names``). Labels: see :func:`_fine_labels`;
    coarse labels are ``fine // 5`` (not the official grouping).
    """
    data = load_subset()
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in (("train", _split(data, "train", n_train)), ("test", _split(data, "test", n_test))):
        fine = _fine_labels(y)
        _dump(folder / name, {
            "filenames": [f"{name}_{i}.png" for i in range(len(x))],
            "batch_label": f"{'training' if name == 'train' else 'testing'} batch 1 of 1",
            "fine_labels": [int(v) for v in fine],
            "coarse_labels": [int(v) // 5 for v in fine],
            "data": _to_rows(x),
        })
    _dump(folder / "meta", {"fine_label_names": list(CIFAR100_FINE), "coarse_label_names": list(CIFAR100_COARSE)})
    return Path(root)


def write_svhn(root: Path, n_train: int | None = None, n_test: int | None = None) -> Path:
    """Write ``root/train_32x32.mat`` and ``root/test_32x32.mat`` (MATLAB v5) from the shipped images.

    As in the official files, ``X`` is (32, 32, 3, N) uint8 and ``y`` (N, 1) uint8 with
    labels 1..10, 10 meaning digit 0. The CIFAR-10 class ``c`` is stored as digit ``c``
    (so class 0 is written as 10), hence the labels read back equal the subset's.
    """
    from scipy.io import savemat

    data = load_subset()
    Path(root).mkdir(parents=True, exist_ok=True)
    for name, (x, y) in (("train", _split(data, "train", n_train)), ("test", _split(data, "test", n_test))):
        X = np.ascontiguousarray(x.transpose(1, 2, 3, 0))  # (N, H, W, C) -> (H, W, C, N)
        digits = np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)  # (N, 1)
        savemat(Path(root) / f"{name}_32x32.mat", {"X": X, "y": digits})
    return Path(root)


def write_image_folder(root: Path, classes: list[str], n_per_class: int, ext: str = "JPEG",
                       size: int | tuple[int, int] | None = None,
                       splits: tuple[str, ...] = ("train", "val")) -> Path:
    """Write ``root/<split>/<class>/<class>_<j>.<ext>`` image files of real CIFAR-10 pictures.

    Class ``i`` gets pictures of CIFAR-10 class ``i % 10`` (training pictures for the
    first split, test pictures for the others), ``n_per_class`` per class and split,
    upscaled to ``size`` (side, or (width, height)) when given. ``ext`` picks the
    format: JPEG/JPG (quality 90) or PNG. Returns ``root``.
    """
    from PIL import Image

    fmt = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}[ext.lower()]
    data = load_subset()
    wh = (size, size) if isinstance(size, int) else size
    for s, split in enumerate(splits):
        x, y = (data["x_train"], data["y_train"]) if s == 0 else (data["x_test"], data["y_test"])
        used = {c: 0 for c in range(10)}  # pictures of each CIFAR-10 class handed out so far
        for i, name in enumerate(classes):
            c = i % 10
            pool = np.flatnonzero(y == c)
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(n_per_class):
                image = Image.fromarray(x[pool[used[c] % len(pool)]])
                used[c] += 1
                if wh is not None:
                    image = image.resize(wh, Image.BICUBIC)
                image.save(folder / f"{name}_{j}.{ext}", fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return Path(root)
