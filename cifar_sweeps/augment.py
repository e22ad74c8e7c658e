"""Training augmentations, described once in YAML and run by one of two backends.

An augment config is `backend` + `ops`, a mapping from op name to its settings, applied in the order
written, e.g. `{crop: {pad: 4, fill: 0}, hflip: {p: 0.5}, cutout: {size: 8, fill: mean, p: 0.5}}`.
Keyed by name so that a search addresses `augment.ops.cutout.p`, never a list position that a
reordered list would silently change. The op vocabulary follows albumentations' parameter names, so
the same YAML means the same thing on both backends:

| op                 | params                                                     | tensor | albumentations |
|--------------------|------------------------------------------------------------|--------|----------------|
| crop               | pad, fill: pad by `pad` pixels then random 32x32 crop      | yes    | yes            |
| hflip              | p                                                          | yes    | yes            |
| cutout             | size, fill, p: one size x size hole inside the image       | yes    | yes            |
| shift_scale_rotate | shift_limit, scale_limit, rotate_limit, border, fill, p    | no     | yes            |
| color_jitter       | brightness, contrast, saturation, hue, p                   | no     | yes            |
| to_gray            | p                                                          | no     | yes            |

`fill` is a pixel value (0-255), a per-channel list, or `mean` (the dataset mean, as write-ups 001/002 use),
rounded to integers once so both backends write the same pixel.
The tensor backend works on whole uint8 NHWC batches on the training device with per-sample random
parameters; the albumentations backend runs per image in DataLoader workers.

Why a few lines of torch rather than a library. Measured with
`python -m cifar_sweeps.bench model=skip_s8 --choices --seconds 1.5 --rounds 4` (2-core AMD EPYC, shared,
load average ~4, 1 thread, batch 256; crop pad 4 + hflip + 16x16 cutout p=0.5, then normalise; medians
of 4 alternating windows):

| implementation                                           | img/s  |
|----------------------------------------------------------|--------|
| these functions (uint8 NHWC, per-sample draws)           | 16,769 |
| kornia 0.9 AugmentationSequential (float NCHW, per-sample) | 14,891 |
| torchvision 0.29 transforms.v2 on the batch              | 66,066, but ONE crop/flip/erase draw for the whole batch |
| torchvision transforms.v2 per image (Python loop)        | 4,427  |

kornia is no faster, works on float (4x the bytes of uint8) and would be one more dependency;
transforms.v2 cannot draw per-sample parameters on a batch. At ~16k img/s the augmentations cost
about 3% of a skip_s8 training step on this CPU (565 img/s), which is what `bench` shows as
fast path / compute = 0.91-0.96.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Callable, Sequence

import torch
from torch import Tensor

from .errors import ConfigError

TENSOR_OPS = ("crop", "hflip", "cutout")
ALBUMENTATIONS_OPS = TENSOR_OPS + ("shift_scale_rotate", "color_jitter", "to_gray")
BACKENDS = ("tensor", "albumentations")
BORDERS = {"constant": 0, "replicate": 1, "reflect": 2, "wrap": 3, "reflect_101": 4}  # cv2.BORDER_*

BatchOp = Callable[[Tensor, torch.Generator], Tensor]


def resolve_fill(fill, mean: Sequence[float]) -> tuple[int, int, int]:
    """`fill` as three 0-255 integers; `mean` means the dataset mean (given as fractions).

    Rounded here, once, so both backends write the same pixel (albumentations would truncate a float
    fill on uint8 images: 125.3, 122.96, 113.86 -> 125, 122, 113; we write 125, 123, 114).
    """
    if isinstance(fill, str):
        if fill != "mean":
            raise ConfigError(f"augment fill must be a number, a list of 3 numbers or 'mean', got {fill!r}")
        values = [255.0 * m for m in mean]
    elif isinstance(fill, (int, float)):
        values = [float(fill)] * 3
    else:
        values = [float(f) for f in fill]
        if len(values) != 3:
            raise ConfigError(f"augment fill must have 3 values (R, G, B), got {values}")
    if not all(0 <= v <= 255 for v in values):
        raise ConfigError(f"augment fill must be pixel values in [0, 255], got {values}")
    return tuple(int(round(v)) for v in values)


# the settings each shared op takes, on both backends (the tensor backend passes them to batch_* as
# keywords, so an unknown one would be a TypeError once training starts; albumentations would ignore it)
OP_SETTINGS = {"crop": ("pad", "fill"), "hflip": ("p",), "cutout": ("size", "fill", "p")}
# a pad beyond the image size only makes crops of pure fill (and a huge pad exhausts memory)
MAX_PAD = 32


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int in Python


def _is_number(value) -> bool:
    # an int is always finite (and math.isfinite(10**400) would itself raise OverflowError)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (_is_int(value) or math.isfinite(value))


def _check_fill(key: str, fill) -> None:
    """What resolve_fill accepts, checked without the dataset mean so the error can name the key."""
    if isinstance(fill, str):
        ok = fill == "mean"
    elif _is_number(fill):
        ok = 0 <= fill <= 255
    else:
        ok = isinstance(fill, Sequence) and len(fill) == 3 and all(_is_number(v) and 0 <= v <= 255 for v in fill)
    if not ok:
        raise ConfigError(f"{key}={fill!r} must be a pixel value in [0, 255], a list of 3 of them (R, G, B) or "
                          f"mean (the dataset mean); e.g. {key}=0")


def check_augment(aug_cfg) -> None:
    """Validate an augment config up front; errors name the offending key."""
    if not isinstance(aug_cfg, Mapping):
        raise ConfigError(f"augment={aug_cfg!r} must be a mapping with backend and ops; e.g. augment=flip_crop")
    backend = aug_cfg.get("backend")
    if not (isinstance(backend, str) and backend in BACKENDS):
        raise ConfigError(f"augment.backend must be one of {list(BACKENDS)}, got {backend!r}")
    if not isinstance(aug_cfg.get("ops"), Mapping):
        raise ConfigError("augment.ops must be a mapping from op name to its settings, e.g. "
                          "{crop: {pad: 4}, hflip: {p: 0.5}}; a list of ops (searched as augment.ops.0.pad) "
                          "is not supported, address an op by name: augment.ops.crop.pad")
    workers = aug_cfg.get("workers")
    if workers is not None and not (_is_int(workers) and workers >= 0):
        raise ConfigError(f"augment.workers={workers!r} must be an integer >= 0 or null (one DataLoader worker per "
                          "core); e.g. augment.workers=2")
    allowed = TENSOR_OPS if backend == "tensor" else ALBUMENTATIONS_OPS
    for name, spec in aug_cfg.ops.items():
        if name not in ALBUMENTATIONS_OPS:
            raise ConfigError(f"augment.ops.{name} is unknown; choose from {list(ALBUMENTATIONS_OPS)}")
        if name not in allowed:
            raise ConfigError(f"augment.ops.{name} has no batched tensor implementation; "
                              "use augment.backend=albumentations")
        if spec is not None and not isinstance(spec, Mapping):
            raise ConfigError(f"augment.ops.{name}={spec!r} must be a mapping of its settings, e.g. {{p: 0.5}}")
        spec = spec or {}
        for setting in spec:
            if name in OP_SETTINGS and setting not in OP_SETTINGS[name]:
                raise ConfigError(f"augment.ops.{name}.{setting} is not a setting of {name}; it takes "
                                  f"{list(OP_SETTINGS[name])}")
        p = spec.get("p", 1.0)
        if not (_is_number(p) and 0.0 <= p <= 1.0):
            raise ConfigError(f"augment.ops.{name}.p={p!r} must be a number in [0, 1]; e.g. augment.ops.{name}.p=0.5")
        if "fill" in spec:
            _check_fill(f"augment.ops.{name}.fill", spec["fill"])
        if name == "crop":
            pad = spec.get("pad", 4)
            if not (_is_int(pad) and 0 <= pad <= MAX_PAD):
                raise ConfigError(f"augment.ops.crop.pad={pad!r} must be an integer in [0, {MAX_PAD}] (0 = no "
                                  "translation); e.g. augment.ops.crop.pad=4")
        if name == "cutout":
            size = spec.get("size", 16)
            # the hole lies fully inside the 32x32 image
            if not (_is_int(size) and 1 <= size <= 32):
                raise ConfigError(f"augment.ops.cutout.size={size!r} must be an integer in [1, 32] (the hole "
                                  "lies inside the 32x32 image; p=0 turns cutout off); e.g. augment.ops.cutout.size=8")


# ---------------------------------------------------------------------------------------------
# tensor backend: uint8 NHWC batches, per-sample parameters drawn from one generator
# ---------------------------------------------------------------------------------------------

def _draw(n: int, gen: torch.Generator, device) -> Tensor:
    return torch.rand(n, generator=gen, device=device)


def _fill_pixel(fill: Sequence[float], x: Tensor) -> Tensor:
    """`fill` (three 0-255 values) as one pixel of x's dtype, rounded like `resolve_fill`."""
    return _cached_pixel(tuple(float(f) for f in fill), x.device, x.dtype)


@functools.lru_cache(maxsize=64)
def _cached_pixel(fill: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    # made once per fill and device: building it per batch would be a blocking host-to-GPU copy on CUDA
    return torch.tensor(fill, device=device).round().to(dtype)


def batch_hflip(x: Tensor, gen: torch.Generator, p: float = 0.5) -> Tensor:
    """Flip each image left-right with probability p."""
    flip = _draw(len(x), gen, x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(2), x)


def batch_crop(x: Tensor, gen: torch.Generator, pad: int = 4, fill: Sequence[float] = (0, 0, 0)) -> Tensor:
    """Pad by `pad` with `fill`, then take a random HxW crop per image (= a random translation).

    The crops are one gather of whole pixels from the padded batch viewed as (pixels, channels):
    about 2x faster on CPU than indexing with three broadcast index tensors.
    """
    n, h, w, c = x.shape
    big_h, big_w = h + 2 * pad, w + 2 * pad
    padded = x.new_empty(n, big_h, big_w, c)
    padded[:] = _fill_pixel(fill, x)
    padded[:, pad:pad + h, pad:pad + w] = x
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    # flat index of each crop's top-left pixel, plus the (h, w) offsets of a crop inside the padded image
    corner = torch.arange(n, device=x.device) * (big_h * big_w) + dy * big_w + dx
    offsets = torch.arange(h, device=x.device)[:, None] * big_w + torch.arange(w, device=x.device)
    return padded.view(n * big_h * big_w, c)[corner[:, None, None] + offsets]


def batch_cutout(x: Tensor, gen: torch.Generator, size: int = 16, fill: Sequence[float] = (0, 0, 0),
                 p: float = 0.5) -> Tensor:
    """With probability p, fill one size x size square lying fully inside the image with `fill`."""
    n, h, w, _ = x.shape
    top = torch.randint(0, h - size + 1, (n,), generator=gen, device=x.device)
    left = torch.randint(0, w - size + 1, (n,), generator=gen, device=x.device)
    apply = _draw(n, gen, x.device) < p
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (ys[None] >= top[:, None]) & (ys[None] < top[:, None] + size)  # (n, h)
    in_cols = (xs[None] >= left[:, None]) & (xs[None] < left[:, None] + size)  # (n, w)
    hole = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return torch.where(hole[..., None], _fill_pixel(fill, x), x)


def build_tensor_pipeline(aug_cfg, mean: Sequence[float]) -> Callable[[Tensor, torch.Generator], Tensor]:
    """Compose the config's ops into one function on uint8 NHWC batches."""
    check_augment(aug_cfg)
    steps: list[BatchOp] = []
    for op, spec in aug_cfg.ops.items():
        kw = dict(spec or {})
        if "fill" in kw:
            kw["fill"] = resolve_fill(kw["fill"], mean)
        fn = {"crop": batch_crop, "hflip": batch_hflip, "cutout": batch_cutout}[op]
        steps.append(lambda x, gen, fn=fn, kw=kw: fn(x, gen, **kw))

    def pipeline(x: Tensor, gen: torch.Generator) -> Tensor:
        for step in steps:
            x = step(x, gen)
        return x

    return pipeline


# ---------------------------------------------------------------------------------------------
# albumentations backend: per image, uint8 HWC in and out (normalisation happens on the batch)
# ---------------------------------------------------------------------------------------------

def build_albumentations(aug_cfg, mean: Sequence[float], seed: int | None = None):
    import albumentations as A

    check_augment(aug_cfg)
    transforms = []
    for op, spec in aug_cfg.ops.items():
        kw = dict(spec or {})
        if "fill" in kw:
            kw["fill"] = resolve_fill(kw["fill"], mean)
        if op == "crop":
            pad = kw.get("pad", 4)
            transforms += [A.PadIfNeeded(32 + 2 * pad, 32 + 2 * pad, border_mode=0, fill=kw.get("fill", 0)),
                           A.RandomCrop(32, 32)]
        elif op == "hflip":
            transforms.append(A.HorizontalFlip(p=kw.get("p", 0.5)))
        elif op == "cutout":
            s = kw.get("size", 16)
            transforms.append(A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(s, s),
                                              hole_width_range=(s, s), fill=kw.get("fill", 0), p=kw.get("p", 0.5)))
        elif op == "shift_scale_rotate":
            border = kw.pop("border", "reflect_101")
            if border not in BORDERS:
                raise ConfigError(f"augment shift_scale_rotate border={border!r}; choose from {list(BORDERS)}")
            transforms.append(A.ShiftScaleRotate(border_mode=BORDERS[border], **kw))
        elif op == "color_jitter":
            transforms.append(A.ColorJitter(**kw))
        elif op == "to_gray":
            transforms.append(A.ToGray(p=kw.get("p", 0.5)))
    return A.Compose(transforms, seed=seed)
