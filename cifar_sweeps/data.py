"""CIFAR-10 as uint8 arrays in memory: loading, stratified validation split and subsets.

Source order: `data.npz` (x_train, y_train, x_test, y_test; HWC uint8) if set, else torchvision's
CIFAR10 under `data.root` (downloaded when `data.download`), cached once as `root/cifar10.npz`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_TRAIN, NUM_TEST = 50_000, 10_000


@dataclass
class Split:
    x: np.ndarray  # (N, 32, 32, 3) uint8
    y: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class CifarData:
    train: Split
    val: Split | None
    test: Split


def _check_arrays(arrays: dict, source: str) -> None:
    expected = {"x_train": (32, 32, 3), "x_test": (32, 32, 3)}
    for key in ("x_train", "y_train", "x_test", "y_test"):
        if key not in arrays:
            raise ConfigError(f"{source}: missing array '{key}'; expected x_train, y_train, x_test, y_test "
                              "(see README, 'Local CIFAR-10 copy')")
    for key, shape in expected.items():
        x = arrays[key]
        if x.ndim != 4 or tuple(x.shape[1:]) != shape or x.dtype != np.uint8:
            raise ConfigError(f"{source}: '{key}' must be uint8 of shape (N, 32, 32, 3), "
                              f"got {x.dtype} {tuple(x.shape)}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if not np.issubdtype(y.dtype, np.integer):
            raise ConfigError(f"{source}: 'y_{split}' must hold integer class labels 0..9, got dtype {y.dtype}")
        if y.ndim != 1 or len(y) != len(x):
            raise ConfigError(f"{source}: 'y_{split}' must have shape ({len(x)},), got {tuple(y.shape)}")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise ConfigError(f"{source}: 'y_{split}' labels must be in 0..9")


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"data.npz: '{path}' is a directory; point data.npz (or CIFAR10_NPZ) at the .npz file "
                          "itself, e.g. data.npz=/path/cifar10.npz")
    if not path.exists():
        raise ConfigError(f"data.npz: file '{path}' does not exist. Point data.npz (or the CIFAR10_NPZ "
                          "environment variable) at a CIFAR-10 npz, or unset it to use torchvision's download.")
    if not path.is_file():
        raise ConfigError(f"data.npz: '{path}' is not a regular file (a device, FIFO or socket); point data.npz "
                          "(or CIFAR10_NPZ) at a CIFAR-10 .npz file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ConfigError(f"data.npz: cannot read '{path}': {e.strerror}") from None
    if magic != b"PK\x03\x04":  # an .npz is a zip archive of .npy arrays (numpy.savez)
        raise ConfigError(f"data.npz: '{path}' is not an npz archive (a zip of .npy arrays, as numpy.savez writes "
                          "it); point data.npz (or CIFAR10_NPZ) at a CIFAR-10 .npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile / format errors
        raise ConfigError(f"data.npz: cannot read '{path}' as an npz file: {e}") from e
    _check_arrays(arrays, f"data.npz '{path}'")
    arrays["y_train"] = arrays["y_train"].astype(np.int64)
    arrays["y_test"] = arrays["y_test"].astype(np.int64)
    return arrays


def fetch_torchvision(root: str | Path, download: bool) -> dict[str, np.ndarray]:
    """Read (and download) torchvision's CIFAR10 under `root`, caching the arrays as root/cifar10.npz."""
    root = Path(root).expanduser()
    cache = root / "cifar10.npz"
    if cache.is_file():
        return load_npz(cache)
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    except RuntimeError as e:
        raise ConfigError(f"data.root: no CIFAR-10 under '{root}' ({e}). Set data.download=true, or point "
                          "data.npz / CIFAR10_NPZ at a local copy.") from e
    except OSError as e:  # URLError and socket errors: no network, or the download host unreachable
        raise ConfigError(f"could not download CIFAR-10 into '{root}' ({getattr(e, 'reason', e)}) and no local copy "
                          "is configured: set CIFAR10_NPZ=/path/cifar10.npz (or data.npz=/path/cifar10.npz), or "
                          "put torchvision's cifar-10-batches-py under data.root") from None
    arrays = {
        "x_train": np.asarray(train.data, dtype=np.uint8), "y_train": np.asarray(train.targets, dtype=np.int64),
        "x_test": np.asarray(test.data, dtype=np.uint8), "y_test": np.asarray(test.targets, dtype=np.int64),
    }
    root.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return arrays


def stratified_take(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n` samples with classes as balanced as `y` allows (random within each class)."""
    perm = rng.permutation(len(y))
    labels = y[perm]
    rank = np.empty(len(y), dtype=np.int64)  # position of each sample among its class in `perm`
    for c in np.unique(labels):
        members = labels == c
        rank[members] = np.arange(members.sum())
    # round-robin: every class's 1st sample, then every class's 2nd, ... so any prefix is balanced
    return perm[np.lexsort((labels, rank))][:n]


def example(usual: int, largest: int) -> int:
    """A value to suggest in an error: the usual one, or the largest allowed when the data is smaller."""
    return max(0, min(usual, largest))


def check_sizes(data_cfg, n_train: int = NUM_TRAIN, n_test: int = NUM_TEST) -> None:
    """Reject impossible split/subset requests before anything expensive happens.

    Called by validation (with CIFAR-10's sizes, before any data is loaded) and again by load_cifar10
    with the sizes of the file actually read. Every value is type-checked before it is compared: a string
    or a list from an override would otherwise be a TypeError naming no key.
    """
    def is_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)  # True is an int in Python

    val = data_cfg.get("val_size")
    # at least 2 training images must remain: the training loader drops a 1-image batch (BatchNorm
    # cannot train on one image), so a 1-image training set would train on nothing
    if not (is_int(val) and 0 <= val <= n_train - 2):
        raise ConfigError(f"data.val_size={val!r} must be an integer in [0, {n_train - 2}] (the training set has "
                          f"{n_train} images; 0 = no validation split); e.g. data.val_size={example(n_train // 10, n_train - 2)}")
    sub = data_cfg.get("train_subset")
    if sub is not None and not (is_int(sub) and 2 <= sub <= n_train - val):
        raise ConfigError(f"data.train_subset={sub!r} must be an integer in [2, {n_train - val}] ({n_train} training "
                          f"images minus data.val_size={val}) or null (all of them); "
                          f"e.g. data.train_subset={example(10_000, n_train - val)}")
    tsub = data_cfg.get("test_subset")
    if tsub is not None and not (is_int(tsub) and 1 <= tsub <= n_test):
        raise ConfigError(f"data.test_subset={tsub!r} must be an integer in [1, {n_test}] or null (all {n_test} "
                          f"test images); e.g. data.test_subset={example(1000, n_test)}")


def check_batch_size(batch_size: int, data_cfg, n_train: int = NUM_TRAIN) -> None:
    """A training batch larger than the training split would make every epoch one partial step."""
    train_images = data_cfg.get("train_subset") or n_train - data_cfg.get("val_size")
    if batch_size > train_images:
        raise ConfigError(f"batch_size={batch_size} is larger than the training split ({train_images} images: "
                          f"data.train_subset={data_cfg.get('train_subset')}, data.val_size={data_cfg.get('val_size')}), "
                          f"so every epoch would be a single step; e.g. batch_size={max(2, min(256, train_images // 4))}")


def load_cifar10(data_cfg, seed: int) -> CifarData:
    """Load CIFAR-10 and apply the validation split and subsets described by `data_cfg`."""
    if data_cfg.npz:
        arrays = load_npz(data_cfg.npz)
    else:
        arrays = fetch_torchvision(data_cfg.root, data_cfg.download)
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    check_sizes(data_cfg, len(y_train), len(arrays["y_test"]))

    rng = np.random.default_rng(seed)
    order = stratified_take(y_train, len(y_train), rng)
    val_idx, train_idx = order[: data_cfg.val_size], order[data_cfg.val_size:]
    if data_cfg.train_subset is not None:
        # the subset stays stratified: take it class-balanced from what is left after validation
        train_idx = train_idx[stratified_take(y_train[train_idx], data_cfg.train_subset, rng)]
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    test_idx = np.arange(len(arrays["y_test"]))
    if data_cfg.test_subset is not None:
        test_idx = np.sort(stratified_take(arrays["y_test"], data_cfg.test_subset, rng))

    val = Split(x_train[val_idx], y_train[val_idx]) if len(val_idx) else None
    return CifarData(
        train=Split(x_train[train_idx], y_train[train_idx]),
        val=val,
        test=Split(arrays["x_test"][test_idx], arrays["y_test"][test_idx]),
    )
