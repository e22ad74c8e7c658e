"""Batch iterators: normalisation, epoch permutations, both backends feeding real training steps."""

from __future__ import annotations

import json

import numpy as np
import torch
from omegaconf import OmegaConf

from cifar_sweeps.data import Split
from cifar_sweeps.loaders import AlbumentationsBatches, Normalize, TensorBatches, cpu_workers
from cifar_sweeps.train import train

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def labelled_split(n: int) -> Split:
    """Flat-colour images whose value encodes the label (label * 20 + 10), labels 0..9."""
    y = np.arange(n, dtype=np.int64) % 10
    x = np.broadcast_to((y * 20 + 10).astype(np.uint8)[:, None, None, None], (n, 32, 32, 3)).copy()
    return Split(x, y)


def test_normalize_matches_the_formula_in_both_memory_formats():
    x = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    expected = (x.permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    for channels_last in (True, False):
        out = Normalize(MEAN, STD, "cpu", channels_last)(x)
        assert out.shape == (5, 3, 32, 32) and out.dtype == torch.float32
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        if channels_last:
            assert out.is_contiguous(memory_format=torch.channels_last)
        else:
            assert out.is_contiguous()


def test_tensor_batches_visit_every_image_once_per_epoch_in_a_new_order():
    split = Split(np.zeros((103, 32, 32, 3), np.uint8), np.arange(103, dtype=np.int64))
    batches = TensorBatches(split, 25, "cpu", Normalize(MEAN, STD, "cpu"), shuffle=True, seed=3)
    assert len(batches) == 5
    epochs = [torch.cat([y for _, y in batches]) for _ in range(2)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(103))  # 25*4 + 3: nothing lost, nothing repeated
    assert not torch.equal(epochs[0], epochs[1])
    again = TensorBatches(split, 25, "cpu", Normalize(MEAN, STD, "cpu"), shuffle=True, seed=3)
    assert torch.equal(torch.cat([y for _, y in again]), epochs[0])  # same seed, same order


def test_tensor_batches_drop_a_single_image_last_batch_only_when_training():
    split = Split(np.zeros((9, 32, 32, 3), np.uint8), np.arange(9, dtype=np.int64))
    train_sizes = [len(y) for _, y in TensorBatches(split, 4, "cpu", Normalize(MEAN, STD, "cpu"), shuffle=True)]
    eval_batches = list(TensorBatches(split, 4, "cpu", Normalize(MEAN, STD, "cpu")))
    assert train_sizes == [4, 4]  # a 1-image batch breaks BatchNorm's training statistics
    assert torch.equal(torch.cat([y for _, y in eval_batches]), torch.arange(9))  # evaluation: all, in order


def test_both_backends_yield_normalised_batches_with_their_labels():
    split = labelled_split(64)
    normalize = Normalize(MEAN, STD, "cpu")
    ops = OmegaConf.create({"crop": {"pad": 4, "fill": "mean"}, "hflip": {"p": 0.5}})
    tensor = TensorBatches(split, 16, "cpu", normalize, OmegaConf.create({"backend": "tensor", "ops": ops}), MEAN,
                           shuffle=True, seed=0)
    album = AlbumentationsBatches(split, 16, "cpu", normalize, OmegaConf.create({"backend": "albumentations", "ops": ops}),
                                  MEAN, seed=0, workers=0)
    for batches in (tensor, album):
        seen = []
        for x, y in batches:
            assert x.shape == (len(y), 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
            # the centre pixel survives any 4-pixel shift or flip: de-normalise it back to the label's colour
            centre = x[:, 0, 16, 16] * STD[0] * 255 + MEAN[0] * 255
            torch.testing.assert_close(centre, (y * 20 + 10).float(), atol=1e-3, rtol=0)
            seen.append(y)
        assert len(torch.cat(seen)) == 64


def test_cpu_workers_is_the_usable_core_count():
    assert 1 <= cpu_workers() <= (torch.multiprocessing.cpu_count() or 1)


def test_both_backends_train_a_model_a_few_steps(tiny_cfg, tmp_path):
    """A real train() on real CIFAR-10 with each backend (the albumentations one in DataLoader workers)."""
    small = ["model=skip_s8", "scheduler=none", "data.train_subset=256", "data.val_size=128", "data.test_subset=128",
             "batch_size=64", "eval_batch_size=128"]
    for backend_overrides in (["augment=flip_crop"], ["augment=s6_album", "+augment.workers=1"]):
        run_dir = tmp_path / backend_overrides[0].split("=")[1]
        cfg = tiny_cfg(*small, *backend_overrides, f"output_dir={run_dir}")
        train(cfg)
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["state"] == "completed", summary
        row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
        assert np.isfinite(row["train_loss"]) and row["img_s"] > 0


def test_albumentations_workers_default_to_one_per_core():
    split = labelled_split(32)
    cfg = OmegaConf.create({"backend": "albumentations", "ops": {"hflip": {"p": 0.5}}})
    default = AlbumentationsBatches(split, 8, "cpu", Normalize(MEAN, STD, "cpu"), cfg, MEAN)
    assert default.loader.num_workers == cpu_workers()  # workers start only when iterated
    assert AlbumentationsBatches(split, 8, "cpu", Normalize(MEAN, STD, "cpu"), cfg, MEAN, workers=0).loader.num_workers == 0
