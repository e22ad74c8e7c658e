"""Loading the real CIFAR-10 file: stratified validation split, subsets, seeds."""

from __future__ import annotations

import numpy as np
from omegaconf import OmegaConf

from cifar_sweeps.data import load_cifar10, stratified_take


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
