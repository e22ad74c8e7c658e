"""Every zoo model and norm against this machine's own peak: `python -m cifar_sweeps.bench --zoo`.

For each model and norm it times training steps on random tensors (batch `--batch-size`, SGD as in
conf/optimizer/sgd.yaml) in two set-ups, one step of each in turn (for `--rounds` x `--seconds` per
set-up), so that load from other processes hits both alike; img/s is the median over the steps:

- before: the path as it was before issue 24: fp32 on CPU (bf16 autocast on CUDA), channels_last for
  BatchNorm nets only on CPU, the modules as written, no compile; `--before-override KEY=VALUE` changes
  its config only (e.g. `model.dropout=0.05`, what dilated_c4 trained with before its recipe);
- auto: what `cifar_sweeps.train` now chooses by default (`amp=auto`, `channels_last=auto`,
  `fast_modules=true`, `compile` as configured), the settings printed on its row.

Achieved GFLOP/s = 3 x forward FLOPs (torch's FlopCounterMode, multiply-add = 2 FLOPs) x img/s, the
usual estimate of a training step (forward + two backward products), set against an n x n matmul in
fp32 and in bf16 measured in the same process (before and after the models, the larger of the two).
`--candidates` also times fp32 / bf16 x NCHW / channels_last with the fast modules: the evidence for
the `auto` choices (cifar_sweeps/speed.py). The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .build import build_model, build_optimizer
from .config import compose_train_config
from .engine import resolve_channels_last, resolve_device, resolve_threads, sync
from .speed import cpu_has_native_bf16, resolve_amp, use_fast_modules

ZOO_MODELS = ("airnet", "skip_s8", "dilated_c4", "advanced_c4", "s8_net", "resnet18")
ZOO_NORMS = ("bn", "gn")


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of an n x n matmul (2 n^3 FLOPs) in `dtype`, best of the calls in `seconds`."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    sync(device)
    best, started = float("inf"), time.perf_counter()
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def forward_flops_per_image(model: torch.nn.Module, device: torch.device) -> float:
    """Forward FLOPs of one image (torch's FlopCounterMode on a 2-image batch, in eval mode)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 3, 32, 32, device=device))
    model.train()
    return counter.get_total_flops() / 2


@dataclass
class Setup:
    """One way to train one model: its own weights, optimizer and input batch."""

    label: str
    model: torch.nn.Module
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor
    amp: bool
    settings: dict
    rates: list = field(default_factory=list)
    compile_s: float | None = None

    def step(self) -> None:
        with torch.autocast(self.x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss = F.cross_entropy(self.forward(self.x).float(), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    @property
    def img_s(self) -> float:
        return statistics.median(self.rates)


def make_setup(label: str, cfg, device: torch.device, x: torch.Tensor, y: torch.Tensor, amp: bool,
               channels_last: bool, fast_modules: bool, compile_model: bool, threads: int) -> Setup:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    swapped = use_fast_modules(model) if fast_modules else {}
    forward = torch.compile(model) if compile_model else model
    settings = {"threads": threads if device.type == "cpu" else None, "precision": "bf16" if amp else "fp32",
                "memory_format": "channels_last" if channels_last else "NCHW", "compile": compile_model,
                "fast_modules": bool(swapped)}
    return Setup(label, model, forward, build_optimizer(cfg, model), x, y, amp, settings)


def zoo_setups(cfg, device: torch.device, threads: int, candidates: bool, before_cfg=None) -> list[Setup]:
    """before (with `before_cfg` if given, else `cfg`), auto and (with `candidates`) the four precision x
    layout choices with the fast modules."""
    x = torch.randn(cfg.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (cfg.batch_size,), device=device)
    norm_kind = str(cfg.norm.get("kind"))
    with torch.device("meta"):
        probe = build_model(cfg)  # for the layout rules, which look at the modules
    name = type(probe).__name__
    before_amp = device.type == "cuda"  # amp: true was ignored on CPU
    # channels_last was on for CUDA and for BatchNorm nets on CPU
    before_channels_last = resolve_channels_last(device.type == "cuda" or norm_kind == "bn", device, norm_kind,
                                                 probe, amp=False)
    setups = [make_setup("before", before_cfg or cfg, device, x, y, before_amp, before_channels_last,
                         fast_modules=False, compile_model=False, threads=threads)]
    amp = resolve_amp(cfg.amp, device, name, norm_kind)
    setups.append(make_setup("auto", cfg, device, x, y, amp,
                             resolve_channels_last(cfg.channels_last, device, norm_kind, probe, amp),
                             fast_modules=bool(cfg.get("fast_modules", True)), compile_model=bool(cfg.compile),
                             threads=threads))
    if candidates:
        for amp in (False, True):
            for channels_last in (False, True):
                if channels_last and not resolve_channels_last(True, device, norm_kind, probe, amp):
                    continue  # a net that hangs in torch's CPU channels_last backward
                label = f"{'bf16' if amp else 'fp32'} {'channels_last' if channels_last else 'NCHW'}"
                setups.append(make_setup(label, cfg, device, x, y, amp, channels_last, fast_modules=True,
                                         compile_model=False, threads=threads))
    return setups


def time_setups(setups: list[Setup], device: torch.device, rounds: int, seconds: float, min_steps: int) -> None:
    """Time the set-ups step by step in turn (one step of each, then again), so that load from other
    processes hits them alike, for `rounds` rounds of at least `min_steps` steps and `seconds` seconds
    each; appends every step's images/s to the set-up's `rates` (the table shows their median)."""
    for setup in setups:  # the first steps (oneDNN kernel set-up, compilation) outside any window
        t0 = time.perf_counter()
        setup.step()
        setup.step()
        sync(device)
        if setup.settings["compile"]:
            setup.compile_s = time.perf_counter() - t0
    for _ in range(rounds):
        steps, started = 0, time.perf_counter()
        while steps < min_steps or time.perf_counter() - started < seconds * len(setups):
            for setup in setups:
                t0 = time.perf_counter()
                setup.step()
                sync(device)
                setup.rates.append(len(setup.y) / (time.perf_counter() - t0))
            steps += 1


def settings_text(settings: dict) -> str:
    threads = f"threads={settings['threads']} " if settings["threads"] else ""
    return (f"{threads}{settings['precision']} {settings['memory_format']} compile={str(settings['compile']).lower()}"
            f" fast_modules={str(settings['fast_modules']).lower()}")


def zoo(args, overrides: list[str]) -> dict:
    """Run the zoo benchmark (options from bench's parser); returns the JSON object it prints last."""
    started = time.perf_counter()
    models = args.models.split(",") if args.models else list(ZOO_MODELS)
    norms = args.norms.split(",") if args.norms else list(ZOO_NORMS)
    base = compose_train_config([*overrides, f"batch_size={args.batch_size}"])
    device = resolve_device(base.device)
    threads = resolve_threads(base.threads)
    torch.set_num_threads(threads)
    peaks = {"fp32": matmul_gflops(device, torch.float32, seconds=args.peak_seconds),
             "bf16": matmul_gflops(device, torch.bfloat16, seconds=args.peak_seconds)}
    cpu = platform.processor() or platform.machine()
    print(f"zoo: batch {args.batch_size}, device={device} ({cpu}, {os.cpu_count()} cpus, native bf16: "
          f"{cpu_has_native_bf16() if device.type == 'cpu' else 'n/a'}), torch {torch.__version__}, threads={threads}; "
          f"median of steps taken in turn, {args.rounds} rounds of >= {args.seconds:g} s per set-up; "
          f"before with {' '.join(args.before_override) or 'the same config'}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    rows = []
    for model_name in models:
        for norm in norms:
            row_overrides = [*overrides, f"model={model_name}", f"norm={norm}", f"batch_size={args.batch_size}"]
            cfg = compose_train_config(row_overrides)
            before_cfg = compose_train_config([*row_overrides, *args.before_override]) if args.before_override else None
            setups = zoo_setups(cfg, device, threads, args.candidates, before_cfg)
            params = sum(p.numel() for p in setups[0].model.parameters())
            flops = forward_flops_per_image(setups[0].model, device)
            time_setups(setups, device, args.rounds, args.seconds, args.min_steps)
            before, auto = setups[0], setups[1]
            row = {"model": model_name, "norm": norm, "params": params, "forward_mflop": round(flops / 1e6, 2),
                   "before_img_s": round(before.img_s, 1), "auto_img_s": round(auto.img_s, 1),
                   "speedup": round(auto.img_s / before.img_s, 2),
                   "before_gflop_s": round(3 * flops * before.img_s / 1e9, 1),
                   "auto_gflop_s": round(3 * flops * auto.img_s / 1e9, 1),
                   "before_settings": before.settings, "before_overrides": list(args.before_override),
                   "auto_settings": auto.settings,
                   "compile_s": round(auto.compile_s, 1) if auto.compile_s is not None else None,
                   "candidates": {s.label: round(s.img_s, 1) for s in setups[2:]}}
            rows.append(row)
            print(f"{model_name:12s} {norm}  {params:>10,} params {row['forward_mflop']:8.1f} MFLOP/img | before "
                  f"{row['before_img_s']:6.0f} img/s | auto {row['auto_img_s']:6.0f} img/s {row['auto_gflop_s']:6.1f} "
                  f"GFLOP/s | x{row['speedup']:.2f} | {settings_text(auto.settings)}", flush=True)
            for label, rate in row["candidates"].items():
                print(f"{'':16s}candidate {label:20s} {rate:6.0f} img/s ({rate / auto.img_s:.2f} x auto)", flush=True)
            del setups
    peaks_end = {"fp32": matmul_gflops(device, torch.float32, seconds=args.peak_seconds),
                 "bf16": matmul_gflops(device, torch.bfloat16, seconds=args.peak_seconds)}
    # the larger of the two measurements: a matmul slowed by other load would flatter every share
    peak = {k: max(peaks[k], peaks_end[k]) for k in peaks}
    for row in rows:
        for name in ("before", "auto"):
            row[f"{name}_fp32_peak_share"] = round(row[f"{name}_gflop_s"] / peak["fp32"], 3)
        row["auto_bf16_peak_share"] = round(row["auto_gflop_s"] / peak["bf16"], 3)
    print_table(rows, peaks, peaks_end)
    result = {"device": str(device), "cpu": cpu, "torch": torch.__version__, "threads": threads,
              "batch_size": args.batch_size, "peak_gflop_s": {k: round(v, 1) for k, v in peaks.items()},
              "peak_gflop_s_end": {k: round(v, 1) for k, v in peaks_end.items()}, "rows": rows,
              "load_average": [round(v, 2) for v in os.getloadavg()], "bench_s": round(time.perf_counter() - started, 1)}
    print(json.dumps(result))
    return result


def print_table(rows: list[dict], peaks: dict, peaks_end: dict) -> None:
    """The rows as a markdown table (what docs/speed.md shows)."""
    print()
    print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
          f"at the start, {peaks_end['fp32']:.0f} / {peaks_end['bf16']:.0f} at the end; shares below use the larger")
    print("| model | norm | params | fwd MFLOP/img | before img/s | auto img/s | auto / before | before % fp32 peak "
          "| auto GFLOP/s | auto % fp32 peak | auto % bf16 peak | auto settings |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['norm']} | {r['params']:,} | {r['forward_mflop']:.1f} | {r['before_img_s']:,.0f} "
              f"| {r['auto_img_s']:,.0f} | {r['speedup']:.2f}x | {r['before_fp32_peak_share']:.0%} | {r['auto_gflop_s']:.1f} "
              f"| {r['auto_fp32_peak_share']:.0%} | {r['auto_bf16_peak_share']:.0%} | {settings_text(r['auto_settings'])} |")
