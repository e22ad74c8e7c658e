import torch, time
torch.set_num_threads(2)
def t(name, f, n=20):
    f(); s = time.perf_counter()
    for _ in range(n): f()
    print(f"{name:50s} {(time.perf_counter()-s)/n*1e3:7.2f} ms", flush=True)
def mask(x, p: float):
    return torch.where(torch.rand_like(x, dtype=torch.float32) >= p, 1 / (1 - p), 0.0).to(x.dtype)
cm = torch.compile(mask, dynamic=True)
for dt in (torch.float32, torch.bfloat16):
    x = torch.randn(128, 128, 16, 16, dtype=dt).to(memory_format=torch.channels_last)
    s = time.perf_counter(); cm(x, 0.05); print("compile", time.perf_counter() - s)
    t(f"{dt} compiled mask", lambda: cm(x, 0.05))
    y = torch.randn(128, 64, 32, 32, dtype=dt).to(memory_format=torch.channels_last)
    s = time.perf_counter(); cm(y, 0.05); print("second shape", time.perf_counter() - s)
    m = cm(x, 0.05); print((m == 0).float().mean().item(), m.stride() == x.stride())
