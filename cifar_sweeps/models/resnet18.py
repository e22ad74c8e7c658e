"""Write-up 003 (TSAI-S11): the CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool, 4x4 average pool
before the classifier). 11,173,962 parameters with width=64 and blocks [2, 2, 2, 2].

Standard order inside a block: conv -> norm -> ReLU -> conv -> norm, add the shortcut, then ReLU.
The shortcut is the identity, or a strided 1x1 conv + norm when the shape changes.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..errors import ConfigError
from .layers import NormFactory, check_width, conv1x1, conv3x3, default_norm


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: NormFactory):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = norm(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = norm(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(conv1x1(cin, cout, stride), norm(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(
        self,
        width: int = 64,
        blocks: Sequence[int] = (2, 2, 2, 2),
        dropout: float = 0.0,
        norm: NormFactory = default_norm,
        num_classes: int = 10,
    ):
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise ConfigError(f"model.blocks must be 4 positive integers (blocks per stage), got {list(blocks)}")
        check_width(width)
        channels = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(conv3x3(3, width), norm(width), nn.ReLU())
        stages, cin = [], width
        for i, (cout, n) in enumerate(zip(channels, blocks)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1, norm)
                                          for j in range(n)]))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)  # the 4x4 average pool on the 4x4 map
        # dropout before the classifier (not in the write-up, whose recipe is only partly known)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(self.pool(x).flatten(1)))
