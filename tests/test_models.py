"""The model zoo: exact parameter counts, norm swap, knobs, experiment presets, and a short real-data run."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compose_cfg
from torch import nn

from cifar_sweeps.augment import build_albumentations, build_tensor_pipeline
from cifar_sweeps.build import build_model, build_scheduler, count_params
from cifar_sweeps.errors import ConfigError
from cifar_sweeps.train import train

# option -> (write-up preset, parameters with the write-up's own settings, as seed_specs.md states them)
ZOO = {
    "skip_s8": ("seed000", 47_304),
    "dilated_c4": ("seed001", 98_779),
    "advanced_c4": ("seed002", 97_284),
    "resnet18": ("seed003", 11_173_962),
    "s8_net": ("seed004", 198_660),
}


def meta_model(*overrides: str) -> nn.Module:
    with torch.device("meta"):
        return build_model(compose_cfg(list(overrides)))


@pytest.mark.parametrize("name", ZOO)
def test_param_count_matches_writeup(name):
    preset, expected = ZOO[name]
    assert count_params(compose_cfg([f"model={name}"])) == expected
    # the preset carries the same model settings
    assert count_params(compose_cfg([f"+experiment={preset}"])) == expected


@pytest.mark.parametrize("name", ZOO)
def test_norm_swap_keeps_param_count_and_changes_layers(name):
    counts = {}
    for norm in ("bn", "gn", "ln"):
        model = meta_model(f"model={name}", f"norm={norm}")
        counts[norm] = sum(p.numel() for p in model.parameters())
        kinds = {type(m) for m in model.modules()}
        if norm == "bn":
            assert nn.BatchNorm2d in kinds and nn.GroupNorm not in kinds
        else:
            assert nn.GroupNorm in kinds and nn.BatchNorm2d not in kinds
    groups = {m.num_groups for m in meta_model(f"model={name}", "norm=ln").modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {1}  # "LayerNorm" = GroupNorm with one group
    assert counts["bn"] == counts["gn"] == counts["ln"] == ZOO[name][1]


@pytest.mark.parametrize("name", ZOO)
def test_params_non_decreasing_in_width(name):
    default = compose_cfg([f"model={name}"]).model.width
    widths = sorted({1, 2, 3, default // 2, default - 1, default, default + 1, default * 2} - {0})
    counts = [count_params(compose_cfg([f"model={name}", f"model.width={w}"])) for w in widths]
    assert counts == sorted(counts)
    assert counts[-1] > 2 * counts[0]  # width really scales the model


@pytest.mark.parametrize("name", ZOO)
def test_dropout_is_a_model_option(name):
    rates = {m.p for m in meta_model(f"model={name}", "model.dropout=0.3").modules()
             if isinstance(m, (nn.Dropout, nn.Dropout2d))}
    assert rates == {0.3}
    assert not [m for m in meta_model(f"model={name}", "model.dropout=0").modules()
                if isinstance(m, (nn.Dropout, nn.Dropout2d))]


@pytest.mark.parametrize("name", ["skip_s8", "advanced_c4", "s8_net"])
def test_writeup_order_is_default_and_configurable(name):
    """These write-ups put ReLU before the norm; the order is a model option."""
    first_unit = lambda model: next(m for m in model.modules() if isinstance(m, nn.Sequential)  # noqa: E731
                                    and isinstance(m[0], nn.Conv2d) and len(m) >= 3)
    default = [type(m) for m in first_unit(meta_model(f"model={name}"))][:3]
    assert default == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    swapped = [type(m) for m in first_unit(meta_model(f"model={name}", "model.order=[conv,norm,act,drop]"))][:3]
    assert swapped == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]


def test_searchable_knobs_change_the_architecture():
    base = count_params(compose_cfg(["model=advanced_c4"]))
    assert count_params(compose_cfg(["model=advanced_c4", "model.separable=false"])) > base
    assert count_params(compose_cfg(["model=skip_s8", "model.depths=[1,1,1]"])) < ZOO["skip_s8"][1]
    assert count_params(compose_cfg(["model=resnet18", "model.blocks=[1,1,1,1]"])) < ZOO["resnet18"][1]
    # s8_net: dilation 1 shrinks the map less (32 -> 30 -> 28, +2 from the padded 1x1, -> 28), same parameters
    for dilation, size in ((2, 22), (1, 28)):
        model = build_model(compose_cfg(["model=s8_net", f"model.dilation={dilation}"]))
        out = model.block3(model.shrink2(model.block2(model.shrink1(model.block1(model.inp(torch.zeros(1, 3, 32, 32)))))))
        assert out.shape[-1] == size
    # airnet: a late pool keeps the parameters and runs the stage's second conv at 2x the resolution
    nets = {pool: build_model(compose_cfg(["model=airnet", f"model.pool={pool}"])) for pool in ("early", "late")}
    assert sum(p.numel() for p in nets["early"].parameters()) == sum(p.numel() for p in nets["late"].parameters())
    x = nets["early"].act(nets["early"].whiten(torch.zeros(1, 3, 32, 32)))
    sizes = {}
    for pool, net in nets.items():
        second_conv = [m for m in net.stages[0].body if isinstance(m, nn.Conv2d)][1]
        second_conv.register_forward_hook(lambda m, i, o, pool=pool: sizes.update({pool: o.shape[-1]}))
        net.stages[0](x)
    assert sizes == {"early": 15, "late": 31}


@pytest.mark.parametrize("override", ["model.width=0", "model.depths=[1,2]", "model.blocks=[2,2]",
                                      "model.order=[conv,act]", "model.dilation=0", "model.pool=middle"])
def test_bad_knobs_raise_config_error(override):
    model_with_knob = {"depths": "skip_s8", "blocks": "resnet18", "dilation": "s8_net", "pool": "airnet"}
    name = model_with_knob.get(override.split(".")[1].split("=")[0], "advanced_c4")
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        count_params(compose_cfg([f"model={name}", override]))


def test_presets_carry_the_writeup_recipes():
    c0 = compose_cfg(["+experiment=seed000"])
    assert (c0.batch_size, c0.epochs, c0.optimizer.lr, c0.optimizer.nesterov) == (128, 20, 0.1, False)
    assert c0.scheduler.step_size == 6 and c0.data.val_size == 0 and c0.objective == "test_acc"
    assert list(c0.augment.ops) == ["cutout"] and c0.augment.ops.cutout.fill == 0

    c2 = compose_cfg(["+experiment=seed002"])
    assert c2.optimizer._target_ == "torch.optim.Adam" and c2.optimizer.weight_decay == 1e-4
    assert (c2.grad_clip_value, c2.epochs, c2.batch_size, c2.model.dropout) == (0.1, 90, 256, 0.01)
    assert list(c2.augment.ops) == ["hflip", "shift_scale_rotate", "cutout", "color_jitter", "to_gray"]
    # OneCycle per batch, PyTorch defaults: 4e-4 -> 0.01 at 30% (5,292 of 17,640 steps) -> ~4e-8
    model = build_model(c2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched, interval = build_scheduler(c2, opt, steps_per_epoch=196, epochs=90)
    assert interval == "step" and sched.total_steps == 17_640
    assert opt.param_groups[0]["lr"] == pytest.approx(4e-4) and opt.param_groups[0]["betas"][0] == pytest.approx(0.95)
    lrs = []
    for _ in range(17_640 - 1):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(0.01) and lrs.index(max(lrs)) + 1 == 5_292 - 1
    assert lrs[-1] == pytest.approx(4e-8, rel=1e-2)

    c4 = compose_cfg(["+experiment=seed004"])
    opt = torch.optim.SGD(build_model(c4).parameters(), lr=0.1)
    sched, interval = build_scheduler(c4, opt, steps_per_epoch=391, epochs=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:14] == [0.1] * 14 and lrs[14:] == pytest.approx([0.01] * 6)  # epochs 1-14, 15-20
    assert list(c4.augment.ops) == ["crop", "hflip"]

    c1 = compose_cfg(["+experiment=seed001"])
    opt = torch.optim.SGD(build_model(c1).parameters(), lr=0.07)
    sched, _ = build_scheduler(c1, opt, steps_per_epoch=782, epochs=80)
    for _ in range(79):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01686, abs=1e-5)  # epoch 80, as logged


def test_seed000_augment_is_one_black_square_only():
    cfg = compose_cfg(["+experiment=seed000"])
    pipeline = build_tensor_pipeline(cfg.augment, cfg.data.mean)
    x = torch.full((400, 32, 32, 3), 200, dtype=torch.uint8)
    out = pipeline(x, torch.Generator().manual_seed(0))
    black = (out == 0).all(-1)  # (n, h, w)
    changed = black.flatten(1).any(1)
    assert 0.4 < changed.float().mean() < 0.6  # p = 0.5
    assert ((out == 200).all(-1) | black).all()  # nothing else touched: no flip, crop or colour change
    for mask in black[changed]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert len(rows) == len(cols) == 16 and mask.sum() == 256  # one 16x16 square inside the image


def test_seed002_albumentations_transforms():
    import albumentations as A

    cfg = compose_cfg(["+experiment=seed002"])
    transforms = build_albumentations(cfg.augment, cfg.data.mean).transforms
    assert [type(t) for t in transforms] == [A.HorizontalFlip, A.ShiftScaleRotate, A.CoarseDropout, A.ColorJitter,
                                             A.ToGray]
    assert [t.p for t in transforms] == [0.2, 0.25, 0.5, 0.25, 0.15]
    assert transforms[2].hole_height_range == (16, 16) and transforms[2].num_holes_range == (1, 1)


# a few real batches per model: forward and backward on CPU through the real training function
SHORT = ["data.val_size=0", "data.train_subset=128", "data.test_subset=64", "epochs=1", "batch_size=64",
         "eval_batch_size=64", "logger=none", "save_model=false", "device=cpu", "objective=test_acc"]
EXPECTED_RF = {"skip_s8": (47, 75), "dilated_c4": (51, 71), "advanced_c4": (69, 109), "resnet18": (109, 133),
               "s8_net": (25, 44)}


@pytest.mark.parametrize("name", ZOO)
def test_every_model_trains_on_real_data(name, cifar_npz, tmp_path):
    cfg = compose_cfg(SHORT + [f"model={name}"], npz=cifar_npz, out=tmp_path)
    acc = train(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["state"] == "completed" and 0.0 <= acc <= 1.0
    assert summary["params"] == ZOO[name][1]
    assert (summary["receptive_field"], summary["receptive_field_with_pool"]) == EXPECTED_RF[name]
    speed = summary["speed"]  # what the steps ran with, so a figure can be traced (issue 24)
    assert speed["precision"] in ("fp32", "bf16 autocast") and speed["memory_format"] in ("NCHW", "channels_last")
    assert speed["threads"] >= 1 and speed["compile"] is False and "dropout" in speed["fast_modules"]
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_loss"] == pytest.approx(row["train_loss"])  # finite: NaN != NaN
    assert 0.5 < row["train_loss"] < 10
