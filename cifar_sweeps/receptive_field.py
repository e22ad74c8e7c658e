"""Receptive field of any model in the zoo, computed from the model itself.

One forward pass of a 1x3xSxS input is traced with a `TorchFunctionMode`, which sees every tensor
operation, including the ones that are not modules (residual `x + y`, `torch.cat`, `flatten`). Each
traced tensor carries its receptive field `rf` and its jump (cumulative stride, in input pixels):

- conv / pooling with kernel k, dilation d, stride s:  rf += (d*(k-1)) * jump,  jump *= s
- anything else with several traced inputs (add, cat, mul): the max over the inputs, i.e. the
  longest path through a residual or multi-branch block
- anything else with one traced input (ReLU, norm, dropout, view, linear on a pooled map): unchanged

Padding moves a receptive field but does not change its size, so it is ignored (the usual
"theoretical" receptive field, which may exceed the 32-pixel image).

Two conventions are reported because the write-ups use both. A pooling op whose output is 1x1 is the
final ("global") pool; `receptive_field` stops before it, `receptive_field_with_pool` counts its window.
Write-up 001 quotes 71 = 51 + its 6x6 pool (with-pool convention); 002 quotes 69, without its pool.

Runs on the model's own device (meta costs nothing), in eval mode, without gradients; the model's
training mode is restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

CONV_OPS = {"conv2d"}
POOL_OPS = {"max_pool2d", "_max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "lp_pool2d"}
ADAPTIVE_POOL_OPS = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "_adaptive_max_pool2d",
                     "adaptive_max_pool2d_with_indices"}


@dataclass(frozen=True)
class Field:
    rf: int  # receptive field counting every window so far
    rf_no_pool: int  # the same, leaving out the final (global) pooling window
    jump: int  # distance in input pixels between neighbouring positions of this map


def _pair(v) -> int:
    """First element of an int-or-pair argument (the zoo's kernels and strides are square)."""
    if isinstance(v, (tuple, list, torch.Size)):
        return int(v[0])
    return int(v)


def _arg(args, kwargs, index: int, name: str, default=None):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


class _Tracer(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.fields: dict[int, Field] = {}
        self._alive: list[Tensor] = []  # keeps traced tensors alive so their ids are never reused

    def mark(self, t: Tensor, field: Field) -> None:
        self.fields[id(t)] = field
        self._alive.append(t)

    def field_of(self, t) -> Field | None:
        return self.fields.get(id(t)) if isinstance(t, Tensor) else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [f for f in map(self.field_of, tree_flatten((args, kwargs))[0]) if f is not None]
        if not inputs:
            return out
        name = getattr(func, "__name__", "")
        x = args[0] if args else None
        if name in CONV_OPS and self.field_of(x) is not None:
            src = self.field_of(x)
            weight = _arg(args, kwargs, 1, "weight")
            k = weight.shape[-2]
            grow = _pair(_arg(args, kwargs, 5, "dilation", 1)) * (k - 1)
            field = Field(src.rf + grow * src.jump, src.rf_no_pool + grow * src.jump,
                          src.jump * _pair(_arg(args, kwargs, 3, "stride", 1)))
        elif (name in POOL_OPS or name in ADAPTIVE_POOL_OPS) and self.field_of(x) is not None:
            src = self.field_of(x)
            if name in ADAPTIVE_POOL_OPS:
                # adaptive pooling to n x n uses windows of about H/n (exact when n divides H)
                n = _pair(_arg(args, kwargs, 1, "output_size"))
                k = -(-x.shape[-2] // n)
                s = x.shape[-2] // n
                d = 1
            else:
                k = _pair(_arg(args, kwargs, 1, "kernel_size"))
                s = _pair(_arg(args, kwargs, 2, "stride") or k)
                d = _pair(_arg(args, kwargs, 4, "dilation", 1)) if "max" in name else 1
            grow = d * (k - 1) * src.jump
            out_t = out[0] if isinstance(out, tuple) else out
            final_pool = tuple(out_t.shape[-2:]) == (1, 1) and tuple(x.shape[-2:]) != (1, 1)
            field = Field(src.rf + grow, src.rf_no_pool if final_pool else src.rf_no_pool + grow, src.jump * s)
        elif name == "__getitem__" and self.field_of(x) is not None and _height_step(args[1]) > 1:
            # a strided slice x[:, :, ::s, ::s] (speed.SubsampledConv2d): a stride without a window
            src = self.field_of(x)
            field = Field(src.rf, src.rf_no_pool, src.jump * _height_step(args[1]))
        else:
            # elementwise, concatenation, reshapes, norms, activations: the longest incoming path
            field = Field(max(f.rf for f in inputs), max(f.rf_no_pool for f in inputs), max(f.jump for f in inputs))
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor):
                self.mark(t, field)
        return out


def _height_step(index) -> int:
    """The step of a 4-D index's height slice (x[:, :, ::s, ::s] -> s), else 1."""
    if isinstance(index, tuple) and len(index) == 4 and isinstance(index[2], slice):
        return index[2].step or 1
    return 1


def receptive_field(model: nn.Module, input_size: int = 32) -> dict:
    """Receptive field at the model's output, in input pixels, traced from the model itself.

    Returns {"receptive_field": without the final global pool, "receptive_field_with_pool": counting
    its window, "jump": cumulative stride before that pool, "stages": [{"name", "output_size" (C, H, W),
    "receptive_field", "jump"}] for each top-level child module, in call order}.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    stages: list[dict] = []
    tracer = _Tracer()

    def record(name):
        def hook(module, inputs, output):
            field = tracer.field_of(output)
            if field is not None:
                stages.append({"name": name, "output_size": list(output.shape[1:]),
                               "receptive_field": field.rf, "jump": field.jump})
        return hook

    handles = [child.register_forward_hook(record(name)) for name, child in model.named_children()]
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, 3, input_size, input_size, device=device)
        with torch.no_grad(), tracer:
            tracer.mark(x, Field(1, 1, 1))
            out = model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    field = tracer.field_of(out)
    if field is None:
        raise ValueError(f"{type(model).__name__}: its output is not computed from its input; cannot trace it")
    # the jump before the final pool: the last map whose spatial size is above 1x1
    maps = [s for s in stages if len(s["output_size"]) == 3 and s["output_size"][1] > 1]
    return {"receptive_field": field.rf_no_pool, "receptive_field_with_pool": field.rf,
            "jump": maps[-1]["jump"] if maps else field.jump, "stages": stages}
