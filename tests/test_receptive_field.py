"""Receptive field traced from the model: hand-worked toy nets, the zoo, and the write-ups' figures."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_cfg
from torch import nn

from cifar_sweeps.build import build_model
from cifar_sweeps.receptive_field import receptive_field


def conv(cin=3, cout=3, k=3, stride=1, dilation=1, groups=1, padding=None):
    pad = dilation * (k - 1) // 2 if padding is None else padding
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, groups=groups)


class Residual(nn.Module):
    """x + body(x): the receptive field is that of the longer branch."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class TwoBranch(nn.Module):
    """A 7x7 branch and a 3x3 branch concatenated: the 7x7 one wins whatever its position."""

    def __init__(self):
        super().__init__()
        self.small, self.big = conv(3, 2, 3), conv(3, 2, 7)

    def forward(self, x):
        return torch.cat([self.small(x), torch.relu(self.big(x))], 1)


# (model, hand-worked RF without the final pool, with it)
CASES = {
    "one 3x3": (nn.Sequential(conv()), 3, 3),
    "two 3x3": (nn.Sequential(conv(), nn.ReLU(), conv()), 5, 5),
    # 3 after the strided conv; the next 3x3 steps 2 px per tap: 3 + 2*2
    "strided then 3x3": (nn.Sequential(conv(stride=2), conv()), 7, 7),
    # a dilation-2 3x3 spans 5 px
    "dilated": (nn.Sequential(conv(dilation=2)), 5, 5),
    # depthwise convs grow the field like any conv; 1x1 pointwise ones do not
    "depthwise + pointwise": (nn.Sequential(conv(groups=3), conv(k=1), conv(groups=3)), 5, 5),
    # max-pool 2 (2), then 3x3 at jump 2: 2 + 2*2
    "max-pool then 3x3": (nn.Sequential(nn.MaxPool2d(2), conv()), 6, 6),
    # an unpadded 3x3 (RF 3, map 30x30) then global average pool: 3 + 29
    "global average pool": (nn.Sequential(conv(padding=0), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)),
                            3, 32),
    # 3 (jump 2, 16x16), +2*2 = 7 (jump 4, 8x8), +2*4 = 15; the 8x8 average pool at jump 4 adds 7*4
    "fixed pool window": (nn.Sequential(conv(stride=2), conv(stride=2), conv(), nn.AvgPool2d(8)), 15, 15 + 7 * 4),
    "residual": (nn.Sequential(conv(), Residual(nn.Sequential(conv(), nn.ReLU(), conv()))), 7, 7),
    "branches": (TwoBranch(), 7, 7),
}


@pytest.mark.parametrize("name", CASES)
def test_hand_worked_receptive_fields(name):
    model, rf, rf_pool = CASES[name]
    result = receptive_field(model)
    assert (result["receptive_field"], result["receptive_field_with_pool"]) == (rf, rf_pool)
    # the same answer on the meta device, where nothing is allocated
    assert receptive_field(model.to("meta"))["receptive_field"] == rf


# option -> (without the final pool, with it), worked by hand layer by layer in seed_specs.md 1b-5b
ZOO_RF = {"skip_s8": (47, 75), "dilated_c4": (51, 71), "advanced_c4": (69, 109), "resnet18": (109, 133),
          "s8_net": (25, 44)}


@pytest.mark.parametrize("name", ZOO_RF)
def test_zoo_receptive_fields(name):
    with torch.device("meta"):
        model = build_model(compose_cfg([f"model={name}"]))
    result = receptive_field(model)
    assert (result["receptive_field"], result["receptive_field_with_pool"]) == ZOO_RF[name]


def test_writeup_quoted_figures_and_their_conventions():
    with torch.device("meta"):
        c4 = receptive_field(build_model(compose_cfg(["model=dilated_c4"])))
        adv = receptive_field(build_model(compose_cfg(["model=advanced_c4"])))
    # 001 quotes 71 counting its 6x6 average pool (51 without); 002 quotes 69 without its pool
    assert c4["receptive_field_with_pool"] == 71 and c4["receptive_field"] == 51
    assert adv["receptive_field"] == 69
    # 001's per-layer table: 7 after C1 (16x16), 19 after C2 (8x8), 43 after C3 (6x6)
    stages = {s["name"]: (s["receptive_field"], s["output_size"][1:]) for s in c4["stages"]}
    assert stages["c1"] == (7, [16, 16]) and stages["c2"] == (19, [8, 8]) and stages["c3"] == (43, [6, 6])


def test_knobs_change_the_receptive_field():
    with torch.device("meta"):
        plain = receptive_field(build_model(compose_cfg(["model=s8_net", "model.dilation=1"])))
        shallow = receptive_field(build_model(compose_cfg(["model=resnet18", "model.blocks=[1,1,1,1]"])))
    # all-stride-1 path: 3,5,7 | 9 | 11,13 | 15 | 17 | 19 ; then a 20x20 window at jump 1
    assert (plain["receptive_field"], plain["receptive_field_with_pool"]) == (19, 38)
    # stem 3; layer1 block +4 -> 7; layer2 (+2, +4) -> 13; layer3 (+4, +8) -> 25; layer4 (+8, +16) -> 49
    assert shallow["receptive_field"] == 49


def test_leaves_a_real_model_untouched():
    model = build_model(compose_cfg(["model=skip_s8"]))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    receptive_field(model)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # no BatchNorm statistics updated
