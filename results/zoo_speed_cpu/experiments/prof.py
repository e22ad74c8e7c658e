import os, sys, torch
from torch.profiler import profile, ProfilerActivity
from cifar_sweeps.config import compose_train_config
from cifar_sweeps.build import build_model, build_optimizer
torch.set_num_threads(2)
cfg = compose_train_config([f"model={sys.argv[1]}", f"norm={sys.argv[2]}", "batch_size=128"])
m = build_model(cfg); x = torch.randn(128, 3, 32, 32); y = torch.randint(0, 10, (128,))
cl = "cl" in sys.argv[3]; amp = "bf16" in sys.argv[3]
if cl: m = m.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
from cifar_sweeps.speed import use_fast_modules
if "fast" in sys.argv[3]: use_fast_modules(m)
opt = build_optimizer(cfg, m)
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = torch.nn.functional.cross_entropy(m(x).float(), y)
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(int(os.environ.get("WARMUP", 1))): step()
with profile(activities=[ProfilerActivity.CPU], record_shapes=len(sys.argv) > 4) as p:
    for _ in range(int(os.environ.get("STEPS", 3))): step()
print(p.key_averages(group_by_input_shape=len(sys.argv) > 4).table(sort_by="self_cpu_time_total", row_limit=int(sys.argv[5]) if len(sys.argv) > 5 else 18))
