"""Write-up 004 (ERA_V3 Session 8, `CIFAR10_NoMPNetwork`): no stride and no max-pool anywhere; the map
shrinks only through three unpadded dilated convs (32 -> 28 -> 24 -> 22), with a residual add and a
ReLU at the end of the first two blocks. 198,660 parameters with width=32.

    block 1 (32): inp 3x3 -> w, 3x3 w, 3x3 2w, bare 1x1 -> w, add the `inp` output, ReLU
    block 2 (28): dilated 3x3 w (no pad), 3x3 62/32 w, 3x3 72/32 w, bare 1x1 -> w, add the dilated conv's output, ReLU
    block 3 (22): dilated 3x3 w, 3x3 2w, depthwise 1x1 with padding 1 + pointwise -> 84/32 w, dilated 3x3 84/32 w
    head:         AvgPool2d(20) on the 22x22 map (only its top-left 20x20 window), 1x1 conv to the classes
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .layers import ConvUnit, NormFactory, check_dilation, conv1x1, conv3x3, default_norm, scaled

BASE_WIDTH = 32


class ResidualBlock(nn.Module):
    """ReLU(transition(body(x)) + x): the skip is taken after the block's first unit."""

    def __init__(self, body: nn.Module, transition: nn.Module):
        super().__init__()
        self.body, self.transition = body, transition
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.transition(self.body(x)) + x)


class S8Net(nn.Module):
    def __init__(
        self,
        width: int = 32,
        dilation: int = 2,
        pool_window: int | None = 20,
        dropout: float = 0.05,
        order: Sequence[str] = ("conv", "act", "norm", "drop"),
        norm: NormFactory = default_norm,
        num_classes: int = 10,
    ):
        super().__init__()
        check_dilation(dilation)
        w, w2 = width, 2 * width
        c4, c5, c7 = (scaled(c, width, BASE_WIDTH) for c in (62, 72, 84))

        def unit(conv, cout):
            return ConvUnit(conv, cout, norm, dropout, order)

        def shrink(cin, cout):
            # unpadded dilated 3x3: the only thing that shrinks the map (by 2 * dilation)
            return unit(conv3x3(cin, cout, padding=0, dilation=dilation), cout)

        self.inp = unit(conv3x3(3, w), w)
        self.block1 = ResidualBlock(nn.Sequential(unit(conv3x3(w, w), w), unit(conv3x3(w, w2), w2)),
                                    conv1x1(w2, w))
        self.shrink1 = shrink(w, w)
        self.block2 = ResidualBlock(nn.Sequential(unit(conv3x3(w, c4), c4), unit(conv3x3(c4, c5), c5)),
                                    conv1x1(c5, w))
        self.shrink2 = shrink(w, w)
        sep = nn.Sequential(nn.Conv2d(w2, w2, 1, padding=1, groups=w2, bias=False), conv1x1(w2, c7))
        self.block3 = nn.Sequential(unit(conv3x3(w, w2), w2), unit(sep, c7), shrink(c7, c7))
        # the write-up's AvgPool2d(20) sees only the top-left 20x20 of the 22x22 map; null = global average
        self.pool = nn.AvgPool2d(pool_window) if pool_window else nn.AdaptiveAvgPool2d(1)
        self.head = conv1x1(c7, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block1(self.inp(x))
        x = self.block2(self.shrink1(x))
        x = self.block3(self.shrink2(x))
        return self.head(self.pool(x)).flatten(1)
