"""An airbench-style net (after Keller Jordan's airbench) scaled down to small parameter budgets.

Layout: a frozen 2x2 "whitening" conv initialised from the training data's patch statistics, then
three conv-maxpool-conv stages with a norm and GELU after each conv, a global max-pool and a linear
classifier. It trains fast on a CPU because most compute happens at 16x16 and below.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .layers import NormFactory, default_norm


POOL_POSITIONS = ("early", "late")


class AirStage(nn.Module):
    """depth x [conv3x3 -> norm -> GELU] with a 2x2 max-pool after the first conv (pool="early", airbench's
    order: the other convs run at the lower resolution) or after the last block (pool="late", VGG's order:
    the same parameters do 4x the work in the convs after the first, for more accuracy per parameter)."""

    def __init__(self, cin: int, cout: int, norm: NormFactory, depth: int = 2, dropout: float = 0.0,
                 pool: str = "early"):
        super().__init__()
        if pool not in POOL_POSITIONS:
            raise ConfigError(f"model.pool={pool!r} must be one of {list(POOL_POSITIONS)}")
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
        if pool == "early":
            layers.append(nn.MaxPool2d(2))
        layers += [norm(cout), nn.GELU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(cout, cout, 3, padding=1, bias=False), norm(cout), nn.GELU()]
        if pool == "late":
            layers.append(nn.MaxPool2d(2))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class AirNet(nn.Module):
    def __init__(
        self,
        width: int = 18,
        stage_multipliers: Sequence[int] = (1, 2, 2),
        depth: int = 2,
        whiten_width: int = 12,
        dropout: float = 0.0,
        pool: str = "early",
        norm: NormFactory = default_norm,
        num_classes: int = 10,
    ):
        super().__init__()
        # 2x2 patches -> 2*whiten_width channels (each eigenvector with both signs); frozen after init
        self.whiten = nn.Conv2d(3, 2 * whiten_width, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.whiten.bias.requires_grad_(False)
        widths = [width * m for m in stage_multipliers]
        stages, cin = [], 2 * whiten_width
        for cout in widths:
            stages.append(AirStage(cin, cout, norm, depth, dropout, pool))
            cin = cout
        self.act = nn.GELU()
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(cin, num_classes, bias=False)

    @torch.no_grad()
    def init_from_data(self, images: Tensor, eps: float = 5e-4) -> None:
        """Whitening init: eigenvectors of the 2x2 patch covariance of (normalised) training images,
        scaled by 1/sqrt(eigenvalue), so the first layer outputs decorrelated unit-variance features."""
        c = self.whiten.out_channels // 2
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # N, 3, 31, 31, 2, 2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
        patches = patches - patches.mean(0)
        eigvals, eigvecs = torch.linalg.eigh(patches.T @ patches / len(patches))
        eigvals, eigvecs = eigvals.flip(0)[:c], eigvecs.T.flip(0)[:c]  # largest first
        w = (eigvecs / torch.sqrt(eigvals + eps)[:, None]).view(c, 3, 2, 2)
        self.whiten.weight.copy_(torch.cat([w, -w]))
        self.whiten.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.whiten(x))
        x = self.stages(x)
        return self.head(self.pool(x).flatten(1))
