"""Write-up 002 (gkdivya EVA 7 "advanced concepts", <100k params): four conv blocks joined by strided
1x1 "transition" convs, a dilated conv in block 3, depthwise-separable convs in blocks 2 and 4, and no
fully connected layer: the last pointwise conv emits the 10 class maps, which pass ReLU -> BN -> Dropout2d
and are averaged. 97,284 parameters with width=32.

    block 1 (32x32): 3x3 w, 3x3 2w                    trans 1: 1x1 stride 2 (bias) -> ReLU, 2w -> w
    block 2 (16x16): 3x3 w, separable 3x3 -> 2w       trans 2: 1x1 stride 2, 2w -> w
    block 3 (9x9):   dilated 3x3 -> 2w, 3x3 2w        trans 3: 1x1 stride 2, 2w -> w/2
    block 4 (4x4):   3x3 w, separable 3x3 -> classes, global average pool

The write-up's pointwise convs have padding 1 (a constant border: 16 -> 18 and 4 -> 6); kept, as the
spatial sizes and the final average depend on it.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .layers import ConvUnit, NormFactory, check_dilation, check_width, conv3x3, default_norm


def separable_pair(cin: int, cout: int, pointwise_padding: int = 1) -> nn.Sequential:
    """Depthwise 3x3 straight into a pointwise 1x1 (no norm or ReLU between, as in the write-up)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, padding=pointwise_padding, bias=False),
    )


class Transition(nn.Sequential):
    """Strided 1x1 conv with bias -> ReLU: halves the map and squeezes channels (no norm, no dropout)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 1, stride=2, bias=True), nn.ReLU())


class AdvancedC4(nn.Module):
    def __init__(
        self,
        width: int = 32,
        dilation: int = 2,
        separable: bool = True,
        dropout: float = 0.01,
        order: Sequence[str] = ("conv", "act", "norm", "drop"),
        norm: NormFactory = default_norm,
        num_classes: int = 10,
    ):
        super().__init__()
        check_dilation(dilation)
        check_width(width)
        w, w2, wh = width, 2 * width, max(1, width // 2)

        def unit(conv, cout):
            # Dropout2d: the write-up drops whole channels
            return ConvUnit(conv, cout, norm, dropout, order, dropout2d=True)

        def sep_or_full(cin, cout):
            # separable=False swaps the depthwise+pointwise pair for a full 3x3 conv (same output size)
            return separable_pair(cin, cout) if separable else conv3x3(cin, cout, padding=2)

        self.block1 = nn.Sequential(unit(conv3x3(3, w), w), unit(conv3x3(w, w2), w2))
        self.trans1 = Transition(w2, w)
        self.block2 = nn.Sequential(unit(conv3x3(w, w), w), unit(sep_or_full(w, w2), w2))
        self.trans2 = Transition(w2, w)
        # padding 1 with dilation 2 shrinks 9 -> 7 while widening the receptive field
        self.block3 = nn.Sequential(unit(conv3x3(w, w2, padding=1, dilation=dilation), w2),
                                    unit(conv3x3(w2, w2), w2))
        self.trans3 = Transition(w2, wh)
        # the last unit outputs the class maps themselves: ReLU -> BN(classes) -> Dropout2d, then GAP
        self.block4 = nn.Sequential(unit(conv3x3(wh, w), w), unit(sep_or_full(w, num_classes), num_classes))
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.trans1(self.block1(x))
        x = self.trans2(self.block2(x))
        x = self.trans3(self.block3(x))
        return self.gap(self.block4(x)).flatten(1)

