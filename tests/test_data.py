"""Loading the real CIFAR-10 file: stratified validation split, subsets, seeds."""

from __future__ import annotations

import os

import numpy as np
import pytest
from omegaconf import OmegaConf

from cifar_sweeps.data import load_cifar10, load_npz, stratified_take
from cifar_sweeps.errors import ConfigError


def data_cfg(npz, **kw):
    base = dict(npz=str(npz), root="data", download=False, val_size=5000, train_subset=None, test_subset=None)
    return OmegaConf.create({**base, **kw})


def test_split_is_stratified_disjoint_and_complete(cifar_npz):
    data = load_cifar10(data_cfg(cifar_npz), seed=0)
    assert len(data.train) == 45_000 and len(data.val) == 5_000 and len(data.test) == 10_000
    assert np.bincount(data.val.y).tolist() == [500] * 10
    assert np.bincount(data.train.y).tolist() == [4500] * 10
    # disjoint: no validation image is also a training image (CIFAR-10 has no duplicates)
    train_keys = {x.tobytes() for x in data.train.x[:: 7]}
    assert not any(x.tobytes() in train_keys for x in data.val.x)


def test_split_is_fixed_by_seed(cifar_npz):
    a = load_cifar10(data_cfg(cifar_npz, train_subset=1000), seed=3)
    b = load_cifar10(data_cfg(cifar_npz, train_subset=1000), seed=3)
    c = load_cifar10(data_cfg(cifar_npz, train_subset=1000), seed=4)
    assert np.array_equal(a.val.x, b.val.x) and np.array_equal(a.train.x, b.train.x)
    assert not np.array_equal(a.val.x, c.val.x)


def test_subsets_are_stratified_and_sized(cifar_npz):
    data = load_cifar10(data_cfg(cifar_npz, val_size=0, train_subset=1234, test_subset=300), seed=0)
    assert data.val is None
    assert len(data.train) == 1234 and len(data.test) == 300
    assert np.bincount(data.train.y).max() - np.bincount(data.train.y).min() <= 1
    assert np.bincount(data.test.y).tolist() == [30] * 10


def test_stratified_take_prefix_is_balanced():
    y = np.repeat(np.arange(3), [50, 10, 40])
    idx = stratified_take(y, 25, np.random.default_rng(0))
    assert len(set(idx)) == 25
    assert np.bincount(y[idx]).tolist() == [9, 8, 8]


# -- files that are not CIFAR-10 npz archives: named, with what is wrong ----------------------------------

def bad_npz_error(path) -> str:
    with pytest.raises(ConfigError) as err:
        load_npz(path)
    return str(err.value)


def test_a_device_or_fifo_is_not_a_regular_file(tmp_path):
    assert "'/dev/zero' is not a regular file" in bad_npz_error("/dev/zero")
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    assert "is not a regular file" in bad_npz_error(fifo)  # never opened: reading a FIFO would block
    assert "does not exist" in bad_npz_error(tmp_path / "missing.npz")


def test_a_text_or_sparse_file_is_not_an_npz_archive(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("x_train,y_train\n1,2\n")
    sparse = tmp_path / "sparse.npz"
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB of holes
    for path in (text, sparse):
        assert f"'{path}' is not an npz archive" in bad_npz_error(path)


def test_string_labels_are_named(tmp_path, cifar_npz):
    with np.load(cifar_npz) as f:
        arrays = {k: f[k][:100] for k in f.files}
    names = np.array(["cat", "dog"] * 50)
    np.savez(tmp_path / "strings.npz", **{**arrays, "y_train": names})
    assert "'y_train' must hold integer class labels 0..9, got dtype <U3" in bad_npz_error(tmp_path / "strings.npz")


def test_size_errors_on_a_small_file_suggest_a_value_that_fits(tmp_path, cifar_npz):
    with np.load(cifar_npz) as f:
        np.savez(tmp_path / "small.npz", **{k: f[k][:300] for k in f.files})
    with pytest.raises(ConfigError) as err:
        load_cifar10(data_cfg(tmp_path / "small.npz", val_size=5000), seed=0)
    message = str(err.value)
    assert "must be an integer in [0, 298]" in message and "e.g. data.val_size=30" in message, message
