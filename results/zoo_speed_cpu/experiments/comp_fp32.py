"""torch.compile against eager for a zoo net in fp32 channels_last with its recipe (dilated_c4: no dropout),
same process, steps alternating, batch 128, 2 threads.
    PYTHONPATH=. python results/zoo_speed_cpu/experiments/comp_fp32.py dilated_c4 gn"""
import sys, time, torch
from cifar_sweeps.config import compose_train_config
from cifar_sweeps.build import build_model, build_optimizer
from cifar_sweeps.speed import use_fast_modules
torch.set_num_threads(2)
name, norm = sys.argv[1], sys.argv[2]
cfg = compose_train_config([f"model={name}", f"norm={norm}", "batch_size=128", *sys.argv[3:]])
x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last); y = torch.randint(0, 10, (128,))
def mk(compile_):
    torch.manual_seed(0); m = build_model(cfg).to(memory_format=torch.channels_last)
    use_fast_modules(m)
    f = torch.compile(m) if compile_ else m
    opt = build_optimizer(cfg, m)
    def step():
        loss = torch.nn.functional.cross_entropy(f(x), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step
setups = {"eager fast": mk(False), "compiled fast": mk(True)}
for k, s in setups.items():
    t = time.time(); s(); s(); print(k, "first 2 steps", round(time.time() - t, 1), "s", flush=True)
rates = {k: [] for k in setups}
for _ in range(10):
    for k, s in setups.items():
        t = time.perf_counter(); s(); rates[k].append(128 / (time.perf_counter() - t))
for k, v in rates.items(): v.sort(); print(k, "median img/s", round(v[len(v)//2]))
