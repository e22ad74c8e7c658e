"""Building blocks shared by the model zoo: norm factory, conv units with a configurable order."""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from ..errors import ConfigError

NormFactory = Callable[[int], nn.Module]

# Tokens a conv unit is made of; `order` lists them in forward order.
UNIT_TOKENS = ("conv", "act", "norm", "drop")


def norm_layer(num_channels: int, kind: str = "bn", groups: int = 4) -> nn.Module:
    """Build the norm layer for `num_channels` channels.

    `kind=bn` is BatchNorm2d; `kind=gn` is GroupNorm with `groups` groups (groups=1 is the
    write-ups' "LayerNorm"). BN, GN and LN all have 2*C affine parameters, so swapping the norm
    never changes a model's parameter count. When C is not divisible by `groups`, the largest
    divisor of C not above `groups` is used, so any width works with any norm.
    """
    if kind == "bn":
        return nn.BatchNorm2d(num_channels)
    if kind == "gn":
        if groups < 1:
            raise ValueError(f"norm.groups must be >= 1, got {groups}")
        g = max(d for d in range(1, min(groups, num_channels) + 1) if num_channels % d == 0)
        return nn.GroupNorm(g, num_channels)
    raise ValueError(f"norm.kind must be 'bn' or 'gn', got {kind!r}")


def default_norm(num_channels: int) -> nn.Module:
    return nn.BatchNorm2d(num_channels)


def check_order(order: Sequence[str]) -> tuple[str, ...]:
    order = tuple(order)
    if sorted(order) != sorted(UNIT_TOKENS):
        raise ConfigError(f"model.order must be a permutation of {list(UNIT_TOKENS)}, got {list(order)}")
    return order


class ConvUnit(nn.Sequential):
    """conv + ReLU + norm + dropout in a configurable order (e.g. conv-act-norm-drop).

    `conv` may be any module producing `out_channels` channels (a plain conv or a SeparableConv2d).
    Dropout with p=0 is left out, so it does not show in summaries.
    """

    def __init__(
        self,
        conv: nn.Module,
        out_channels: int,
        norm: NormFactory,
        dropout: float = 0.0,
        order: Sequence[str] = ("conv", "act", "norm", "drop"),
        dropout2d: bool = False,
    ):
        layers = []
        for token in check_order(order):
            if token == "conv":
                layers.append(conv)
            elif token == "act":
                layers.append(nn.ReLU(inplace=False))
            elif token == "norm":
                layers.append(norm(out_channels))
            elif token == "drop" and dropout > 0:
                layers.append(nn.Dropout2d(dropout) if dropout2d else nn.Dropout(dropout))
        super().__init__(*layers)


def conv3x3(cin: int, cout: int, stride: int = 1, padding: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=padding, dilation=dilation, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1, padding: int = 0, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, padding=padding, bias=bias)


class SeparableConv2d(nn.Sequential):
    """Depthwise conv (groups=in_channels) followed by a 1x1 pointwise conv, both without bias."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, padding: int = 1,
                 dilation: int = 1, pointwise_padding: int = 0):
        super().__init__(
            nn.Conv2d(cin, cin, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, padding=pointwise_padding, bias=False),
        )


def scaled(channels: int, width: int, base_width: int) -> int:
    """`channels` (a write-up's count at its own `base_width`) rescaled to `width`.

    Exact at width == base_width; rounding keeps counts like 62 or 84 proportional, and the result
    is non-decreasing in `width`, which the fit-to-budget solver's bisection relies on.
    """
    check_width(width)
    return max(1, round(channels * width / base_width))


def check_width(width: int) -> int:
    if not (isinstance(width, int) and width >= 1):
        raise ConfigError(f"model.width must be a positive integer, got {width!r}")
    return width


def check_dilation(dilation: int) -> int:
    if dilation < 1:
        raise ConfigError(f"model.dilation must be >= 1, got {dilation}")
    return dilation
