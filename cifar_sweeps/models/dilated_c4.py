"""Write-up 001 (EVA8 session 6): C1-T1-C2-T2-C3-T3-C4-O without max-pool.

Every layer is a depthwise-separable conv; strided *dilated* depthwise convs do the downsampling
(32 -> 16 -> 8), a stride-1 dilated conv shrinks 8 -> 6, 1x1 "transitions" squeeze channels back,
then global average pooling and a separable 1x1 output layer. 98,779 parameters with width=64.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .layers import ConvUnit, NormFactory, SeparableConv2d, default_norm


class DilatedC4(nn.Module):
    def __init__(
        self,
        width: int = 64,
        expansion: int = 2,
        dropout: float = 0.05,
        order: Sequence[str] = ("conv", "norm", "drop", "act"),
        norm: NormFactory = default_norm,
        num_classes: int = 10,
    ):
        super().__init__()
        narrow, wide = width, width * expansion

        def unit(cin, cout, k=3, stride=1, padding=1, dilation=1):
            return ConvUnit(SeparableConv2d(cin, cout, k, stride, padding, dilation), cout, norm, dropout, order)

        # C1: 32x32, then a strided dilated depthwise conv halves the map instead of max-pool
        self.c1 = nn.Sequential(unit(3, narrow), unit(narrow, wide, stride=2, padding=2, dilation=2))
        self.t1 = unit(wide, narrow, k=1, padding=0)
        # C2: 16x16 -> 8x8
        self.c2 = nn.Sequential(unit(narrow, wide), unit(wide, wide, stride=2, padding=2, dilation=2))
        self.t2 = unit(wide, narrow, k=1, padding=0)
        # C3: dilation 2 with padding 1 shrinks 8x8 -> 6x6 while widening the receptive field
        self.c3 = nn.Sequential(unit(narrow, wide), unit(wide, wide, padding=1, dilation=2))
        self.t3 = unit(wide, narrow, k=1, padding=0)
        # C4: the "capacity booster"
        self.c4 = unit(narrow, wide)
        self.gap = nn.AdaptiveAvgPool2d(1)
        # O: a bare separable 1x1 conv acting as the classifier
        self.head = SeparableConv2d(wide, num_classes, kernel_size=1, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.t1(self.c1(x))
        x = self.t2(self.c2(x))
        x = self.t3(self.c3(x))
        x = self.gap(self.c4(x))
        return self.head(x).flatten(1)
