"""ReLU's backward (`threshold_backward`) on matching and mixed memory layouts, 128x128x16x16 fp32, 2 threads:
why EveryStrideThPixel gives its gradient in the input's layout.
    python results/zoo_speed_cpu/experiments/relu_backward_layouts.py"""
import time
import torch
torch.set_num_threads(2)


def ms(f, n=20):
    f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e3


out = torch.randn(128, 128, 16, 16).relu_()
grad = torch.randn_like(out)
out_cl, grad_cl = (t.contiguous(memory_format=torch.channels_last) for t in (out, grad))
tb = torch.ops.aten.threshold_backward
print(f"grad NCHW, output NCHW                {ms(lambda: tb(grad, out, 0)):6.2f} ms")
print(f"grad channels_last, output channels_last {ms(lambda: tb(grad_cl, out_cl, 0)):6.2f} ms")
print(f"grad NCHW, output channels_last      {ms(lambda: tb(grad, out_cl, 0)):6.2f} ms  (a plain slice's gradient)")
print(f"grad channels_last, output NCHW      {ms(lambda: tb(grad_cl, out, 0)):6.2f} ms")
