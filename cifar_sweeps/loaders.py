"""Batch iterators yielding normalised float batches on the training device.

The fast path keeps the whole split on the device as one uint8 NHWC tensor; a batch is an index
slice of a per-epoch permutation, augmented as a batch, then normalised in one fused step. The
albumentations path feeds per-image transforms through DataLoader workers into the same final step.

NHWC because the models train faster in channels_last here (skip_s8: 565 vs 429 img/s, see
`python -m cifar_sweeps.bench --choices` and the README's speed section), and NHWC uint8 becomes a
channels_last float batch without a transpose. The whole data path (index, augment, normalise) costs
about 4% of a skip_s8 training step on this CPU (bench: fast path / compute = 0.96).
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from .augment import build_albumentations, build_tensor_pipeline
from .data import Split


def cpu_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Normalize:
    """uint8 NHWC -> float (N, C, H, W), (x/255 - mean)/std as one fused multiply-add.

    The multiply-add runs on the NHWC memory (per-channel constants broadcast along the last axis,
    `torch.addcmul`, measured ~1.5x faster on CPU than broadcasting (1, 3, 1, 1) constants over a
    permuted view); the result is returned as an NCHW-shaped view of NHWC memory, i.e. channels_last,
    or copied to contiguous NCHW when channels_last is off.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], device, channels_last: bool = True):
        std_t = torch.tensor(std, device=device) * 255.0
        self.scale = 1.0 / std_t
        self.shift = -torch.tensor(mean, device=device) * 255.0 / std_t
        self.channels_last = channels_last

    def __call__(self, x_nhwc: Tensor) -> Tensor:
        x = torch.addcmul(self.shift, x_nhwc.float(), self.scale).permute(0, 3, 1, 2)
        return x if self.channels_last else x.contiguous()


class TensorBatches:
    """Batches of one split, held on `device`; augmented with the tensor backend when `augment` is given."""

    def __init__(self, split: Split, batch_size: int, device, normalize: Normalize, augment_cfg=None,
                 mean: Sequence[float] = (0, 0, 0), shuffle: bool = False, seed: int = 0):
        self.x = torch.from_numpy(split.x).to(device)
        self.y = torch.from_numpy(split.y).to(device)
        self.batch_size, self.device, self.normalize, self.shuffle = batch_size, device, normalize, shuffle
        self.augment = build_tensor_pipeline(augment_cfg, mean) if augment_cfg is not None else None
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.y)
        order = torch.randperm(n, generator=self.gen, device=self.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size] if order is not None else slice(start, start + self.batch_size)
            x, y = self.x[idx], self.y[idx]
            if self.shuffle and len(y) == 1:
                break  # a single-image batch breaks BatchNorm in training; drop it
            if self.augment is not None:
                x = self.augment(x, self.gen)
            yield self.normalize(x), y


class _AlbumentationsDataset(torch.utils.data.Dataset):
    def __init__(self, split: Split, transform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        image = self.transform(image=self.split.x[i])["image"]
        return torch.from_numpy(np.ascontiguousarray(image)), int(self.split.y[i])


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**32)


class AlbumentationsBatches:
    """Per-image albumentations in DataLoader workers (one per core), normalised on the device."""

    def __init__(self, split: Split, batch_size: int, device, normalize: Normalize, augment_cfg,
                 mean: Sequence[float], seed: int = 0, workers: int | None = None):
        transform = build_albumentations(augment_cfg, mean, seed=seed)
        workers = cpu_workers() if workers is None else workers
        self.loader = torch.utils.data.DataLoader(
            _AlbumentationsDataset(split, transform), batch_size=batch_size, shuffle=True,
            num_workers=workers, persistent_workers=workers > 0, worker_init_fn=_seed_worker,
            generator=torch.Generator().manual_seed(seed), pin_memory=torch.device(device).type == "cuda",
            drop_last=len(split) % batch_size == 1)
        self.device, self.normalize = device, normalize

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.loader:
            yield self.normalize(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)
