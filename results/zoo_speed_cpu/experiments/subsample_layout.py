"""dilated_c4's fp32 channels_last training step with SubsampledConv2d slicing plainly (`x[:, :, ::2, ::2]`,
whose backward gives an NCHW gradient) against EveryStrideThPixel (gradient in x's layout); same process,
steps alternating, batch 128, 2 threads, the recipe's config.
    PYTHONPATH=. python results/zoo_speed_cpu/experiments/subsample_layout.py dilated_c4 gn"""
import sys, time, torch
import torch.nn.functional as F
from cifar_sweeps.config import compose_train_config
from cifar_sweeps.build import build_model, build_optimizer
from cifar_sweeps.speed import SubsampledConv2d, use_fast_modules
torch.set_num_threads(2)
name, norm = sys.argv[1], sys.argv[2]
cfg = compose_train_config([f"model={name}", f"norm={norm}", "batch_size=128", *sys.argv[3:]])
x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last); y = torch.randint(0, 10, (128,))

class PlainSlice(SubsampledConv2d):
    def forward(self, x):
        (sh, sw), (dh, dw), (ph, pw) = self.stride, self.dilation, self.padding
        return F.conv2d(x[:, :, ::sh, ::sw], self.weight, self.bias, 1, (ph // sh, pw // sw), (dh // sh, dw // sw), self.groups)

def mk(plain):
    torch.manual_seed(0); m = build_model(cfg).to(memory_format=torch.channels_last)
    use_fast_modules(m)
    if plain:
        for mod in m.modules():
            if type(mod) is SubsampledConv2d: mod.__class__ = PlainSlice
    opt = build_optimizer(cfg, m)
    def step():
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step
setups = {"plain slice": mk(True), "layout-keeping slice": mk(False)}
for s in setups.values(): s(); s()
rates = {k: [] for k in setups}
for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 20):
    for k, s in setups.items():
        t = time.perf_counter(); s(); rates[k].append(128 / (time.perf_counter() - t))
med = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
for k, v in med.items(): print(f"{k:22s} median {v:6.0f} img/s")
print(f"ratio {med['layout-keeping slice'] / med['plain slice']:.2f}x")
