import sys, time, torch, itertools
from cifar_sweeps.config import compose_train_config
from cifar_sweeps.build import build_model, build_optimizer
from cifar_sweeps.engine import train_step
torch.set_num_threads(2)
model_name, norm = sys.argv[1], sys.argv[2]
variants = sys.argv[3].split(",")
secs = float(sys.argv[4]) if len(sys.argv) > 4 else 3
cfg = compose_train_config([f"model={model_name}", f"norm={norm}", "batch_size=128"])
setups = {}
x0 = torch.randn(128, 3, 32, 32); y = torch.randint(0, 10, (128,))
for v in variants:
    torch.manual_seed(0)
    m = build_model(cfg)
    x = x0
    if "cl" in v:
        m = m.to(memory_format=torch.channels_last); x = x0.contiguous(memory_format=torch.channels_last)
    fwd = m
    if "comp" in v:
        t = time.time(); fwd = torch.compile(m)
    opt = build_optimizer(cfg, m)
    amp = "bf16" in v
    def step(m=m, fwd=fwd, opt=opt, x=x, amp=amp):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    t = time.time(); step(); step(); print(v, "warm", round(time.time() - t, 1), flush=True)
    setups[v] = step
rates = {v: [] for v in variants}
for r in range(2):
    for v, step in setups.items():
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < secs:
            step(); n += 1
        rates[v].append(n * 128 / (time.perf_counter() - t))
for v in variants:
    print(f"{model_name} {norm} {v:15s} " + " ".join(f"{r:7.0f}" for r in rates[v]))
