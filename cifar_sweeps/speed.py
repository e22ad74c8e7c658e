"""Training-step speed options, chosen per model, norm and device: bf16 autocast, and cheaper modules
that compute the same thing.

    amp = resolve_amp(cfg.amp, device, "DilatedC4", "gn")   # bf16 autocast on this CPU for this net?
    swapped = use_fast_modules(model)                      # nn.Dropout -> FastDropout, ReLU in place

`amp=auto` turns bf16 autocast on for CUDA, and on a CPU only where the CPU has native bf16
(`avx512_bf16` or `amx_bf16` in /proc/cpuinfo), the zoo benchmark measured the net faster in bf16
(`BF16_ON_CPU`, from `python -m cifar_sweeps.bench --zoo`, docs/speed.md) and full-length training
matched fp32's accuracy (`BF16_ACCURATE_ON_CPU`: so far airnet with BN; other nets opt in with `amp=true`). Weights, gradients
and optimizer state stay fp32 (autocast only lowers the convolutions' and matmuls' inputs).

`use_fast_modules` swaps modules for equivalents with the same parameters and state_dict keys, so
parameter counts, receptive fields and checkpoints do not change (tests/test_speed.py compares outputs
and gradients with the plain modules).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger("cifar_sweeps")

# /proc/cpuinfo flags of CPUs with native bf16 dot products (AVX512-BF16 on Zen 4 / Cooper Lake, AMX on
# Sapphire Rapids): without them oneDNN emulates bf16 and autocast is slower than fp32
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

# (model class, norm kind) -> channels_last, for the nets measured faster in bf16 autocast than in fp32 on
# a CPU with native bf16, with the memory format that was fastest in bf16 (2-core AMD EPYC with
# AVX512-BF16, torch 2.14, batch 128: `python -m cifar_sweeps.bench --zoo --candidates`, docs/speed.md,
# results/zoo_speed_cpu/). A net not listed trains in fp32 on CPU.
BF16_ON_CPU = {
    ("AirNet", "bn"): True, ("AirNet", "gn"): True,
    ("SkipS8", "bn"): True, ("SkipS8", "gn"): False,
    ("DilatedC4", "bn"): True, ("DilatedC4", "gn"): True,
    ("AdvancedC4", "bn"): True, ("AdvancedC4", "gn"): True,
    ("S8Net", "bn"): True, ("S8Net", "gn"): True,
    ("ResNet18", "bn"): True, ("ResNet18", "gn"): True,
}


# (model class, norm kind) whose bf16 training has matched fp32 at full length (same recipe, 2 seeds, within
# seed noise). Faster alone is not enough for a default: until a net is here, amp=auto trains it in fp32
# on CPU and bf16 is opt-in with amp=true.
# - AirNet / BN: +experiment=cpu_speedrun as it was (width 18, 18 epochs), seeds 1, 2: fp32 87.51 / 87.67 %, bf16 87.65 / 87.59 %
#   (results/bf16_parity_cpu/).
# Not here: DilatedC4 / GN, 20 epochs, seeds 1, 2: fp32 75.36 / 76.43 %, bf16 74.86 / 75.32 % (lower in both).
BF16_ACCURATE_ON_CPU: frozenset[tuple[str, str]] = frozenset({("AirNet", "bn")})


def parse_cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first CPU in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags (empty where /proc/cpuinfo is not there, e.g. macOS: bf16 stays off)."""
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(parse_cpu_flags(f.read()))
    except OSError:
        return frozenset()


def cpu_has_native_bf16(flags: set[str] | frozenset[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def resolve_amp(amp, device: torch.device, model_name: str, norm_kind: str,
                flags: set[str] | frozenset[str] | None = None) -> bool:
    """Whether training steps run under bf16 autocast.

    `amp=auto`: on for CUDA; on a CPU only with native bf16, for a net measured faster in bf16 there and
    shown as accurate as fp32 (BF16_ACCURATE_ON_CPU).
    `amp=true`: on for CUDA and CPU (on a CPU without native bf16, emulated and slow: a warning says so).
    `amp=false`: fp32.
    """
    if device.type not in ("cpu", "cuda"):
        return False
    if amp == "auto":
        if device.type == "cuda":
            return True
        return (cpu_has_native_bf16(flags) and (model_name, norm_kind) in BF16_ON_CPU
                and (model_name, norm_kind) in BF16_ACCURATE_ON_CPU)
    if amp and device.type == "cpu" and not cpu_has_native_bf16(flags):
        log.warning("amp=true on a CPU without native bf16 (no %s flag): bf16 is emulated and slower than fp32",
                    " / ".join(NATIVE_BF16_FLAGS))
    return bool(amp)


class FastDropout(nn.Dropout):
    """nn.Dropout with a cheaper mask on CPU: the same keep probability (to 2^-16), the same 1 / (1 - p)
    scaling of the kept values, the same gradient (grad * mask).

    torch's CPU random numbers come from one mt19937 stream under a lock, one draw per element for
    `bernoulli_` or `rand_like`: on dilated_c4 that was a quarter of the training step. Here one 64-bit draw
    gives four 16-bit uniforms, and the mask is one multiply forward and one backward. On a 128x128x16x16
    batch, forward + backward: 12-14 ms against 30-33 ms for F.dropout (results/zoo_speed_cpu/). CUDA keeps
    F.dropout, whose fused kernel is already fast."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.p == 1:
            return F.dropout(x, self.p, True)
        return x * self.scaled_keep_mask(x)  # autograd saves the mask: backward is grad * mask

    def scaled_keep_mask(self, x: Tensor) -> Tensor:
        """1 / (1 - p) where kept, 0 where dropped, with the size, strides and dtype of `x`."""
        n = x.numel()
        random_64 = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, None)  # all 64 bits random
        uniform_16 = random_64.view(torch.int16)[:n].as_strided(x.size(), x.stride())  # iid: any layout works
        keep = uniform_16 >= round(self.p * 65536) - 32768  # P(keep) = 1 - p, to 2^-16
        return torch.where(keep, 1 / (1 - self.p), 0.0).to(x.dtype)


def memory_format_of(x: Tensor) -> torch.memory_format:
    """channels_last for an NHWC-strided 4-d tensor, else torch's default layout."""
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


class EveryStrideThPixel(torch.autograd.Function):
    """`x[:, :, ::sh, ::sw]` whose gradient keeps x's memory format. The slice's own backward builds an NCHW
    gradient for a channels_last x; the ReLU before dilated_c4's subsampling convs then ran its backward on
    mixed layouts, ~10x slower than on matching ones (`threshold_backward` on 128x128x16x16: 10.7 ms against
    1.06 ms; results/zoo_speed_cpu/experiments/relu_backward_layouts.py), 22 % of the fp32 step."""

    @staticmethod
    def forward(ctx, x: Tensor, sh: int, sw: int) -> Tensor:
        ctx.shape, ctx.dtype, ctx.device, ctx.memory_format = x.shape, x.dtype, x.device, memory_format_of(x)
        ctx.sh, ctx.sw = sh, sw
        return x[:, :, ::sh, ::sw].contiguous(memory_format=ctx.memory_format)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad_x = torch.empty(ctx.shape, dtype=ctx.dtype, device=ctx.device, memory_format=ctx.memory_format).zero_()
        grad_x[:, :, ::ctx.sh, ::ctx.sw] = grad
        return grad_x, None, None


class SubsampledConv2d(nn.Conv2d):
    """A strided conv whose taps all fall on every stride-th pixel (the stride divides the dilation and
    the padding, e.g. dilated_c4's stride-2 dilation-2 padding-2 depthwise convs), computed as the
    stride-1 conv of those pixels with dilation / stride and padding / stride: the same products and
    sums, the same output size for any input size, the same parameters. torch's CPU kernels ran the
    dense form 2-2.5x faster (forward + backward, 128x64x32x32, fp32 and bf16; docs/speed.md)."""

    @staticmethod
    def applies_to(conv: nn.Module) -> bool:
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            return False
        return all(s > 1 and d % s == 0 and p % s == 0
                   for s, d, p in zip(conv.stride, conv.dilation, conv.padding))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "SubsampledConv2d":
        fast = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                   conv.dilation, conv.groups, conv.bias is not None, device="meta")
        fast.weight, fast.bias = conv.weight, conv.bias  # the same Parameter objects
        return fast

    def forward(self, x: Tensor) -> Tensor:
        (sh, sw), (dh, dw), (ph, pw) = self.stride, self.dilation, self.padding
        every_stride_th_pixel = EveryStrideThPixel.apply(x, sh, sw)  # the only pixels the strided taps ever read
        return F.conv2d(every_stride_th_pixel, self.weight, self.bias, 1, (ph // sh, pw // sw),
                        (dh // sh, dw // sw), self.groups)


def use_fast_modules(model: nn.Module) -> dict[str, int]:
    """Swap modules for faster equivalents in place; returns how many of each kind were swapped.

    - every `nn.Dropout` (exactly that type, not Dropout2d) -> `FastDropout` with the same p;
    - every `nn.ReLU` -> in place (`inplace=True`): saves an allocation and a pass over memory; autograd
      raises (never silently miscomputes) if a tensor it saved were overwritten;
    - every strided `nn.Conv2d` whose stride divides its dilation and padding -> `SubsampledConv2d`.
    """
    swapped = {"dropout": 0, "relu_inplace": 0, "subsampled_conv": 0}
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p))
                swapped["dropout"] += 1
            elif type(child) is nn.ReLU and not child.inplace:
                child.inplace = True
                swapped["relu_inplace"] += 1
            elif SubsampledConv2d.applies_to(child):
                setattr(parent, name, SubsampledConv2d.from_conv(child))
                swapped["subsampled_conv"] += 1
    return swapped
