"""Write-up 000 (Session 8, "<50k params, <20 epochs"): three stages with strided-conv "pooling",
a skip branch at each downsampling, and an identity skip around the last stage.

Built from the notebooks' inline model (channels 8 -> 16 -> 32, 47,304 parameters with width=8),
not from the stale 8-channel code listing in the write-up (6,592 parameters).

    stage 1 (32x32): conv1 .. conv{depths[0]}, a bare 1x1 conv with padding 1 (32 -> 34)
    down 1:          strided 3x3 conv without padding (34 -> 16)  +  strided 3x3 conv of the network input
    stage 2 (16x16): depths[1] convs, bare 1x1 with padding 1 (16 -> 18)
    down 2:          strided 3x3 conv (18 -> 8)  +  strided 3x3 conv of the stage-2 input
    stage 3 (8x8):   depths[2] convs, plus an identity skip from the stage-3 input
    head:            8x8 average pool, 1x1 conv to the classes
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..errors import ConfigError
from .layers import ConvUnit, NormFactory, check_width, conv1x1, conv3x3, default_norm


class Downsample(nn.Module):
    """Strided 3x3 conv of the stage output plus a strided 3x3 conv of the stage input (no ReLU after the add).

    The main path is unpadded because the bare 1x1 conv before it padded the map by one pixel.
    """

    def __init__(self, main: nn.Module, skip: nn.Module):
        super().__init__()
        self.main, self.skip = main, skip

    def forward(self, x: Tensor, stage_input: Tensor) -> Tensor:
        return self.main(x) + self.skip(stage_input)


class SkipS8(nn.Module):
    def __init__(
        self,
        width: int = 8,
        depths: Sequence[int] = (2, 3, 3),
        dropout: float = 0.1,
        order: Sequence[str] = ("conv", "act", "norm", "drop"),
        norm: NormFactory = default_norm,
        num_classes: int = 10,
    ):
        super().__init__()
        if len(depths) != 3 or min(depths) < 1:
            raise ConfigError(f"model.depths must be 3 positive integers (convs per stage), got {list(depths)}")
        check_width(width)
        c1, c2, c3 = width, 2 * width, 4 * width

        def unit(cin, cout, stride=1, padding=1):
            return ConvUnit(conv3x3(cin, cout, stride, padding), cout, norm, dropout, order)

        def stage(cin, cout, depth):
            return nn.Sequential(unit(cin, cout), *[unit(cout, cout) for _ in range(depth - 1)])

        self.stage1 = stage(3, c1, depths[0])
        # bare 1x1 with padding 1: 32 -> 34, so the unpadded strided conv below lands on 16
        self.mix1 = nn.Conv2d(c1, c1, 1, padding=1, bias=False)
        self.down1 = Downsample(unit(c1, c2, stride=2, padding=0), unit(3, c2, stride=2, padding=1))
        self.stage2 = stage(c2, c2, depths[1])
        self.mix2 = nn.Conv2d(c2, c2, 1, padding=1, bias=False)
        self.down2 = Downsample(unit(c2, c3, stride=2, padding=0), unit(c2, c3, stride=2, padding=1))
        self.stage3 = stage(c3, c3, depths[2])
        self.gap = nn.AdaptiveAvgPool2d(1)  # AvgPool2d(8) on the 8x8 map in the write-up
        self.head = conv1x1(c3, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.down1(self.mix1(self.stage1(x)), x)
        x2 = self.down2(self.mix2(self.stage2(x1)), x1)
        x3 = self.stage3(x2) + x2
        return self.head(self.gap(x3)).flatten(1)
