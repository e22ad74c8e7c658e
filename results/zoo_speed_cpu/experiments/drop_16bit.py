import torch, time
torch.set_num_threads(2)
def mask_of(x, p):
    n = x.numel()
    thr = round(p * 65536) - 32768
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, None).view(torch.int16)[:n]
    keep = bits.as_strided(x.size(), x.stride()) >= thr
    return torch.where(keep, 1 / (1 - p), 0.0).to(x.dtype)
def t(name, f, n=20):
    f(); s = time.perf_counter()
    for _ in range(n): f()
    print(f"{name:40s} {(time.perf_counter()-s)/n*1e3:7.2f} ms", flush=True)
for cl in (False, True):
  for dt in (torch.float32, torch.bfloat16):
    x = torch.randn(128, 128, 16, 16, dtype=dt)
    if cl: x = x.to(memory_format=torch.channels_last)
    xr = x.clone().requires_grad_()
    t(f"new fwd+bwd cl={cl} {dt}", lambda: (xr * mask_of(xr, 0.05)).sum().backward())
    t(f"old fwd+bwd cl={cl} {dt}", lambda: torch.where(torch.rand_like(xr, dtype=torch.float32) >= 0.05, xr * (1/0.95), 0.0).sum().backward())
    t(f"F.dropout fwd+bwd cl={cl} {dt}", lambda: torch.nn.functional.dropout(xr, 0.05, True).sum().backward())
m = mask_of(torch.empty(1000000), 0.05); print("kept frac", (m > 0).float().mean().item(), m.unique())
