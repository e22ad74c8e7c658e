import torch, time, torch.nn.functional as F
torch.set_num_threads(2)
def bench(name, fn, x, w, n=10):
    for dt in (torch.float32, torch.bfloat16):
        xx = x.to(dt).requires_grad_(); ww = w.to(dt).requires_grad_()
        def go():
            y = fn(xx, ww); y.backward(torch.ones_like(y))
        go(); go()
        ts = []
        for _ in range(n):
            t = time.perf_counter(); go(); ts.append(time.perf_counter() - t)
        ts.sort(); print(f"{name:40s} {str(dt)[6:]:9s} {ts[len(ts)//2]*1e3:7.2f} ms", flush=True)
C = 64
x = torch.randn(128, C, 32, 32); w = torch.randn(C, 1, 3, 3)
native = lambda x, w: F.conv2d(x, w, None, 2, 2, 2, C)
sub = lambda x, w: F.conv2d(x[:, :, ::2, ::2], w, None, 1, 1, 1, C)
def inflate(w):
    w5 = w.new_zeros(w.shape[0], 1, 5, 5); w5[:, :, ::2, ::2] = w; return w5
inf5 = lambda x, w: F.conv2d(x, inflate(w), None, 2, 2, 1, C)
bench("s2d2 native 32->16", native, x, w)
bench("s2d2 subsample+3x3", sub, x, w)
bench("s2d2 5x5 inflated", inf5, x, w)
print((native(x, w) - sub(x, w)).abs().max().item(), (native(x,w)-inf5(x,w)).abs().max().item())
C = 128
x = torch.randn(128, C, 8, 8); w = torch.randn(C, 1, 3, 3)
native = lambda x, w: F.conv2d(x, w, None, 1, 1, 2, C)
inf5 = lambda x, w: F.conv2d(x, inflate(w), None, 1, 1, 1, C)
bench("s1d2 native 8->6", native, x, w)
bench("s1d2 5x5 inflated", inf5, x, w)
x = torch.randn(128, C, 16, 16)
bench("plain dw 3x3 16x16", lambda x, w: F.conv2d(x, w, None, 1, 1, 1, C), x, w)
bench("plain dw 3x3 16x16 CL", lambda x, w: F.conv2d(x, w, None, 1, 1, 1, C), x.contiguous(memory_format=torch.channels_last), w)
