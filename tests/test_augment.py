"""Augmentations on hand-made images: both backends move and fill pixels as the YAML says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cifar_sweeps.augment import (batch_crop, batch_cutout, batch_hflip, build_albumentations, build_tensor_pipeline,
                                  check_augment, resolve_fill)
from cifar_sweeps.errors import ConfigError

MEAN = (0.4914, 0.4822, 0.4465)


def aug(backend: str, *ops: dict):
    """An augment config from op dicts written as {"op": name, **settings}, keyed by name as in conf/augment."""
    return OmegaConf.create({"backend": backend, "ops": {o["op"]: {k: v for k, v in o.items() if k != "op"}
                                                         for o in ops}})


def coordinate_images(n: int) -> torch.Tensor:
    """(n, 32, 32, 3) uint8: channel 0 = row + 1, channel 1 = column + 1, channel 2 = image index.

    No pixel is 0 in channels 0/1, so zero padding is recognisable, and every pixel says where it came from.
    """
    rows = torch.arange(1, 33, dtype=torch.uint8)[:, None].expand(32, 32)
    cols = torch.arange(1, 33, dtype=torch.uint8)[None, :].expand(32, 32)
    img = torch.stack([rows, cols, torch.zeros(32, 32, dtype=torch.uint8)], -1)
    x = img.expand(n, 32, 32, 3).clone()
    x[..., 2] = torch.arange(n, dtype=torch.uint8)[:, None, None]
    return x


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_hflip_mirrors_exactly_or_not_at_all():
    x = coordinate_images(16)
    assert torch.equal(batch_hflip(x, gen(), p=1.0), x.flip(2))
    assert torch.equal(batch_hflip(x, gen(), p=0.0), x)
    out = batch_hflip(x, gen(), p=0.5)
    flipped = torch.tensor([torch.equal(o, xi.flip(1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert torch.all(flipped ^ kept)  # each image is either mirrored or untouched
    assert 0 < flipped.sum() < 16  # per-sample decisions (P(all same) = 2**-15)


def test_crop_is_a_translation_of_the_padded_image_per_sample():
    x = coordinate_images(64)
    pad = 4
    out = batch_crop(x, gen(1), pad=pad, fill=(0, 0, 0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.zeros(64, 32 + 2 * pad, 32 + 2 * pad, 3, dtype=torch.uint8)
    padded[:, pad:pad + 32, pad:pad + 32] = x
    offsets = set()
    for i in range(64):
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(out[i], padded[i, dy:dy + 32, dx:dx + 32])]
        assert len(matches) == 1, f"image {i} is not a crop of its own padded image"
        offsets.add(matches[0])
    assert len(offsets) > 20  # 81 possible shifts, drawn per sample


def test_crop_pads_with_the_fill_value_and_pad_zero_is_identity():
    x = torch.full((8, 32, 32, 3), 50, dtype=torch.uint8)
    out = batch_crop(x, gen(), pad=4, fill=(10.4, 20.6, 30))
    border = out.reshape(-1, 3)[(out.reshape(-1, 3) != 50).any(1)]
    assert len(border) > 0 and torch.all(border == torch.tensor([10, 21, 30], dtype=torch.uint8))
    assert torch.equal(batch_crop(x, gen(), pad=0), x)


def test_cutout_fills_exactly_one_square_with_the_fill_value():
    x = torch.full((32, 32, 32, 3), 200, dtype=torch.uint8)
    out = batch_cutout(x, gen(2), size=8, fill=(7, 8, 9), p=1.0)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for img in out:
        hole = (img != 200).any(-1)
        assert hole.sum() == 64
        ys, xs = torch.nonzero(hole, as_tuple=True)
        assert ys.max() - ys.min() == 7 and xs.max() - xs.min() == 7  # one 8x8 square, inside the image
        assert torch.all(img[hole] == torch.tensor([7, 8, 9], dtype=torch.uint8))
    assert torch.equal(batch_cutout(x, gen(), size=8, p=0.0), x)


def test_tensor_pipeline_keeps_shapes_dtypes_and_image_label_pairs():
    # every image is one flat colour encoding its label: any crop/flip keeps the centre pixel's colour
    labels = torch.arange(40) % 10
    x = (labels * 20 + 10).to(torch.uint8)[:, None, None, None].expand(40, 32, 32, 3).clone()
    pipeline = build_tensor_pipeline(aug("tensor", {"op": "crop", "pad": 4, "fill": "mean"}, {"op": "hflip", "p": 0.5},
                                         {"op": "cutout", "size": 4, "fill": 0, "p": 0.5}), MEAN)
    out = pipeline(x, gen())
    assert out.shape == (40, 32, 32, 3) and out.dtype == torch.uint8
    # the 4x4 cutout may cover the centre pixel; one of the two centre-row pixels 6 apart is always untouched
    centre = torch.where((out[:, 16, 16] == 0).all(-1, keepdim=True), out[:, 16, 22], out[:, 16, 16])
    assert torch.equal(centre[:, 0].long(), labels * 20 + 10)


def test_pipeline_draws_are_reproducible_from_the_generator():
    x = coordinate_images(32)
    cfg = aug("tensor", {"op": "crop", "pad": 4, "fill": 0}, {"op": "hflip", "p": 0.5})
    pipeline = build_tensor_pipeline(cfg, MEAN)
    assert torch.equal(pipeline(x, gen(5)), pipeline(x, gen(5)))
    assert not torch.equal(pipeline(x, gen(5)), pipeline(x, gen(6)))


def test_albumentations_backend_means_the_same_thing():
    img = coordinate_images(1)[0].numpy()
    # hflip p=1: identical to the tensor backend
    t = build_albumentations(aug("albumentations", {"op": "hflip", "p": 1.0}), MEAN, seed=0)
    assert np.array_equal(t(image=img)["image"], batch_hflip(torch.from_numpy(img)[None], gen(), p=1.0)[0].numpy())
    # crop: a translation of the image padded with `fill`
    t = build_albumentations(aug("albumentations", {"op": "crop", "pad": 4, "fill": 0}), MEAN, seed=0)
    out = t(image=img)["image"]
    padded = np.zeros((40, 40, 3), np.uint8)
    padded[4:36, 4:36] = img
    assert any(np.array_equal(out, padded[dy:dy + 32, dx:dx + 32]) for dy in range(9) for dx in range(9))
    # cutout: one size x size hole with the (rounded) dataset mean
    flat = np.full((32, 32, 3), 255, np.uint8)
    t = build_albumentations(aug("albumentations", {"op": "cutout", "size": 8, "fill": "mean", "p": 1.0}), MEAN, seed=0)
    out = t(image=flat)["image"]
    hole = (out != 255).any(-1)
    assert hole.sum() == 64
    expected = np.array(resolve_fill("mean", MEAN), np.uint8)
    assert tuple(expected) == (125, 123, 114)
    assert np.array_equal(out[hole][0], expected)


def test_check_augment_rejects_bad_configs_naming_the_key():
    with pytest.raises(ConfigError, match="augment.backend"):
        check_augment(aug("gpu"))
    with pytest.raises(ConfigError, match=r"augment.ops.shift_scale_rotate has no batched.*albumentations"):
        check_augment(aug("tensor", {"op": "shift_scale_rotate"}))
    with pytest.raises(ConfigError, match=r"augment.ops.blur is unknown"):
        check_augment(aug("albumentations", {"op": "hflip"}, {"op": "blur"}))
    with pytest.raises(ConfigError, match=r"augment.ops.hflip.p=1.5"):
        check_augment(aug("tensor", {"op": "hflip", "p": 1.5}))
    with pytest.raises(ConfigError, match="fill"):
        resolve_fill("median", MEAN)
