"""Speed options compute what the plain path computes, and `auto` falls back cleanly.

Tolerances: the fast modules and channels_last are the same fp32 maths in another order, so outputs and
gradients agree to 1e-4 (relative to the tensor's largest value); bf16 autocast rounds the conv inputs
to 8 mantissa bits, so its logits agree with fp32 to 5e-2 of the largest value and its gradient (all
parameters as one vector) points the same way to a cosine similarity >= 0.9 (0.93-0.99 measured on
these tiny untrained nets; per-tensor errors reach 20-70% on small norm biases, so those are not compared). Tiny widths
and batches: each test runs in about a second. No timing here (speed is `cifar_sweeps.bench --zoo`'s job).
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifar_sweeps import speed
from cifar_sweeps.build import build_model
from cifar_sweeps.config import compose_train_config
from cifar_sweeps.engine import build_run, resolve_channels_last
from cifar_sweeps.receptive_field import receptive_field
from cifar_sweeps.speed import (FastDropout, SubsampledConv2d, cpu_has_native_bf16, parse_cpu_flags, resolve_amp,
                                use_fast_modules)

# every zoo model at a tiny width (resnet18 at width 8: narrower would hang in channels_last on CPU)
TINY_MODELS = {
    "airnet": ["model.width=4"],
    "skip_s8": ["model.width=4"],
    "dilated_c4": ["model.width=8", "model.dropout=0.05"],  # its recipe has none: keep dropout under test
    "advanced_c4": ["model.width=8"],
    "s8_net": ["model.width=4"],
    "resnet18": ["model.width=8", "model.blocks=[1,1,1,1]", "model.dropout=0.1"],
}
CPU = torch.device("cpu")


def tiny_model(name: str, norm: str, *extra: str) -> tuple[nn.Module, str]:
    cfg = compose_train_config([f"model={name}", f"norm={norm}", *TINY_MODELS[name], *extra])
    torch.manual_seed(0)
    return build_model(cfg), type(build_model(cfg)).__name__


def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    return (a.float() - b.float()).abs().max().item() <= tol * max(b.float().abs().max().item(), 1e-6)


def outputs_and_grads(model: nn.Module, x: torch.Tensor, amp: bool = False, train: bool = True):
    model.train(train)
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    F.cross_entropy(logits.float(), torch.arange(len(x)) % 10).backward()
    return logits.detach().float(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


# -- bf16: on only where the CPU has it and the net measured faster ---------------------------------

CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\nbugs\t\t: none\n"


def test_cpu_flags_are_read_from_cpuinfo():
    flags = parse_cpu_flags(CPUINFO)
    assert "avx512_bf16" in flags and "none" not in flags
    assert cpu_has_native_bf16(flags) and cpu_has_native_bf16({"amx_bf16"})
    assert not cpu_has_native_bf16({"avx512f", "avx2"}) and not cpu_has_native_bf16(set())


def test_amp_auto_on_cpu_follows_the_flags_and_the_measured_nets(monkeypatch):
    bf16 = {"avx512_bf16"}
    # faster in bf16 but no full-length accuracy parity recorded: auto stays fp32 on CPU
    assert ("DilatedC4", "gn") in speed.BF16_ON_CPU and not resolve_amp("auto", CPU, "DilatedC4", "gn", flags=bf16)
    monkeypatch.setattr(speed, "BF16_ACCURATE_ON_CPU", frozenset({("DilatedC4", "gn")}))
    assert resolve_amp("auto", CPU, "DilatedC4", "gn", flags=bf16)
    assert not resolve_amp("auto", CPU, "DilatedC4", "gn", flags={"avx512f"})  # no native bf16: fp32
    assert not resolve_amp("auto", CPU, "SomeNewNet", "bn", flags=bf16)  # never measured: fp32
    assert resolve_amp("auto", torch.device("cuda"), "ResNet18", "bn", flags=set())
    assert not resolve_amp(False, CPU, "DilatedC4", "gn", flags=bf16)


def test_amp_true_on_a_cpu_without_bf16_warns_and_is_honoured(caplog):
    with caplog.at_level(logging.WARNING, logger="cifar_sweeps"):
        assert resolve_amp(True, CPU, "AirNet", "bn", flags={"avx2"})
    assert "emulated" in caplog.text


def test_build_run_falls_back_to_fp32_on_a_cpu_without_bf16(tiny_cfg, monkeypatch):
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx512f", "avx2"}))  # a CPU without bf16
    run = build_run(tiny_cfg("model=dilated_c4", "model.width=8", "model.dropout=0.05", "norm=gn", "device=cpu",
                             "threads=1"))
    assert not run.use_amp and run.speed["precision"] == "fp32"
    assert run.speed["fast_modules"]["dropout"] > 0 and run.speed["threads"] == 1
    assert run.speed["memory_format"] == "channels_last" and run.speed["compile"] is False


def test_build_run_uses_bf16_where_the_cpu_has_it(tiny_cfg, monkeypatch):
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    monkeypatch.setattr(speed, "BF16_ACCURATE_ON_CPU", frozenset({("DilatedC4", "gn")}))
    run = build_run(tiny_cfg("model=dilated_c4", "model.width=8", "norm=gn", "device=cpu", "threads=1"))
    assert run.use_amp and run.speed["precision"] == "bf16 autocast"
    assert all(p.dtype == torch.float32 for p in run.model.parameters())  # fp32 master weights
    plain = build_run(tiny_cfg("model=dilated_c4", "model.width=8", "norm=gn", "device=cpu", "threads=1",
                               "amp=false", "fast_modules=false"))
    assert not plain.use_amp and plain.speed["fast_modules"] == {}
    assert not any(isinstance(m, FastDropout) for m in plain.model.modules())


def test_bad_amp_and_fast_modules_values_name_their_key():
    from cifar_sweeps.errors import ConfigError
    from cifar_sweeps.validation import check_run_settings

    with pytest.raises(ConfigError, match="amp"):
        check_run_settings(compose_train_config(["amp=fast"]))
    with pytest.raises(ConfigError, match="fast_modules"):
        check_run_settings(compose_train_config(["fast_modules=2"]))
    check_run_settings(compose_train_config(["amp=auto", "fast_modules=false"]))


# -- FastDropout is nn.Dropout --------------------------------------------------------------------

def test_fast_dropout_keeps_scales_and_drops_like_nn_dropout():
    torch.manual_seed(0)
    p = 0.05
    x = torch.randn(64, 16, 16, 16, requires_grad=True)  # 262k elements
    drop = FastDropout(p)
    out = drop(x)
    kept = out != 0
    dropped_share = 1 - kept.float().mean().item()
    assert abs(dropped_share - p) < 4 * (p * (1 - p) / x.numel()) ** 0.5  # Bernoulli(p): within 4 sigma
    reference = F.dropout(x.detach(), p, training=True)  # torch's own: noise.div_(1 - p), input * noise
    both = kept & (reference != 0)
    assert torch.equal(out.detach()[both], reference[both])  # the kept values are scaled bit for bit alike
    out.sum().backward()
    assert torch.equal(x.grad, kept.float() / (1 - p))  # gradient: the same mask, the same scale
    drop.eval()
    assert drop(x) is x
    assert FastDropout(0.0)(x) is x and torch.equal(FastDropout(1.0)(x), torch.zeros_like(x))


def test_fast_dropout_mask_follows_the_layout_and_every_16_bit_lane_is_uniform():
    torch.manual_seed(0)
    p = 0.1
    x = torch.randn(32, 16, 16, 16).to(memory_format=torch.channels_last)
    mask = FastDropout(p).scaled_keep_mask(x)
    assert mask.stride() == x.stride() and mask.dtype == x.dtype
    assert mask.unique().tolist() == [0.0, pytest.approx(1 / (1 - p))]
    # each int64 draw is cut into four 16-bit uniforms: every quarter of the memory order drops p of its values
    in_memory_order = mask.permute(0, 2, 3, 1).reshape(-1, 4)
    sigma = (p * (1 - p) / in_memory_order.shape[0]) ** 0.5
    for lane in range(4):
        assert abs((in_memory_order[:, lane] == 0).float().mean().item() - p) < 4 * sigma
    assert not torch.equal(mask, FastDropout(p).scaled_keep_mask(x))  # a fresh mask every call


def test_fast_dropout_in_bf16_keeps_the_dtype():
    x = torch.randn(4, 8, 8, 8, dtype=torch.bfloat16)
    assert FastDropout(0.1)(x).dtype == torch.bfloat16


# -- SubsampledConv2d is the strided dilated conv ---------------------------------------------------

@pytest.mark.parametrize("size", [7, 16, 31, 32, 33])
@pytest.mark.parametrize("stride, dilation, padding, groups", [(2, 2, 2, 6), (2, 4, 2, 1), (3, 3, 3, 6), (2, 2, 0, 2)])
def test_subsampled_conv_gives_the_strided_convs_outputs_and_gradients(size, stride, dilation, padding, groups):
    """Tolerance 1e-5 of the largest value (the same products, summed in another order)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, 3, stride, padding, dilation, groups, bias=True)
    fast = SubsampledConv2d.from_conv(copy.deepcopy(conv))
    x = torch.randn(2, 6, size, size, requires_grad=True)
    x_fast = x.detach().clone().requires_grad_()
    out, out_fast = conv(x), fast(x_fast)
    assert out.shape == out_fast.shape and close(out_fast, out, 1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_fast.backward(grad)
    assert close(x_fast.grad, x.grad, 1e-5) and close(fast.weight.grad, conv.weight.grad, 1e-5)
    assert close(fast.bias.grad, conv.bias.grad, 1e-5)


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_subsampled_conv_gives_the_input_gradient_in_the_inputs_layout(memory_format):
    """A plain slice's backward gives an NCHW gradient for a channels_last input; the ReLU before it then ran
    its backward ~10x slower on the mixed layouts. The values must match the strided conv's too."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=8)
    fast = SubsampledConv2d.from_conv(copy.deepcopy(conv))
    x = torch.randn(2, 8, 16, 16).contiguous(memory_format=memory_format).requires_grad_()
    x_plain = x.detach().clone().requires_grad_()
    fast(x).square().sum().backward()
    conv(x_plain).square().sum().backward()
    assert x.grad.is_contiguous(memory_format=memory_format)
    assert close(x.grad, x_plain.grad, 1e-5)


def test_subsampled_conv_applies_only_where_every_tap_is_on_the_stride_grid():
    assert SubsampledConv2d.applies_to(nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2, groups=4))
    assert not SubsampledConv2d.applies_to(nn.Conv2d(4, 4, 3, stride=2, padding=1))  # plain strided 3x3
    assert not SubsampledConv2d.applies_to(nn.Conv2d(4, 4, 3, stride=1, padding=2, dilation=2))  # no stride
    assert not SubsampledConv2d.applies_to(nn.Conv2d(4, 4, 3, stride=2, padding=1, dilation=2))  # odd padding
    assert not SubsampledConv2d.applies_to(nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2, padding_mode="reflect"))
    conv = nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2)
    fast = SubsampledConv2d.from_conv(conv)
    assert fast.weight is conv.weight and fast.bias is conv.bias  # the same parameters, not copies


# -- every zoo model: fast modules, channels_last, bf16 against the plain module ----------------------

@pytest.mark.parametrize("name", list(TINY_MODELS))
@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_fast_modules_give_the_plain_outputs_and_gradients(name, norm):
    """Dropout off (its masks are random either way): what is left is the in-place ReLUs, which must not
    change a value; then in eval mode with dropout on. Same parameters, state_dict keys and receptive field."""
    plain, _ = tiny_model(name, norm, "model.dropout=0.0")
    fast = copy.deepcopy(plain)
    swapped = use_fast_modules(fast)
    x = torch.randn(4, 3, 32, 32)
    if hasattr(plain, "init_from_data"):
        plain.init_from_data(x)
        fast.init_from_data(x)
    logits, grads = outputs_and_grads(plain, x)
    fast_logits, fast_grads = outputs_and_grads(fast, x)
    assert close(fast_logits, logits, 1e-5) and grads.keys() == fast_grads.keys()
    assert all(close(fast_grads[k], grads[k], 1e-5) for k in grads)
    assert list(plain.state_dict()) == list(fast.state_dict())
    assert sum(swapped.values()) > 0 or name == "airnet"  # airnet: GELU, no dropout at p=0

    with_dropout, _ = tiny_model(name, norm)
    fast_dropout = copy.deepcopy(with_dropout)
    use_fast_modules(fast_dropout)
    assert receptive_field(fast_dropout) == receptive_field(with_dropout)
    assert sum(p.numel() for p in fast_dropout.parameters()) == sum(p.numel() for p in with_dropout.parameters())
    with torch.no_grad():
        assert close(fast_dropout.eval()(x), with_dropout.eval()(x), 1e-5)


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_channels_last_and_bf16_match_the_plain_fp32_step(name):
    """The same weights and batch: channels_last within 1e-4; bf16 autocast logits within 5e-2, gradient
    cosine similarity >= 0.9."""
    plain, _ = tiny_model(name, "gn", "model.dropout=0.0")
    x = torch.randn(8, 3, 32, 32)
    if hasattr(plain, "init_from_data"):
        plain.init_from_data(x)
    logits, grads = outputs_and_grads(plain, x)
    if resolve_channels_last(True, CPU, "gn", plain):
        cl = copy.deepcopy(plain).to(memory_format=torch.channels_last)
        cl_logits, cl_grads = outputs_and_grads(cl, x.contiguous(memory_format=torch.channels_last))
        assert close(cl_logits, logits, 1e-4) and all(close(cl_grads[k], grads[k], 1e-4) for k in grads)
    bf16 = copy.deepcopy(plain)
    use_fast_modules(bf16)
    bf16_logits, bf16_grads = outputs_and_grads(bf16, x, amp=True)
    assert close(bf16_logits, logits, 5e-2)
    flat, bf16_flat = (torch.cat([g[k].flatten() for k in grads]) for g in (grads, bf16_grads))
    assert F.cosine_similarity(bf16_flat, flat, 0).item() >= 0.9
    assert all(g.dtype == torch.float32 for g in bf16_grads.values())  # fp32 master weights and gradients


def test_native_bf16_flag_is_what_this_machine_reports():
    """Informational: the flag read here decides amp=auto on this CPU."""
    assert isinstance(cpu_has_native_bf16(), bool)
