"""How fast does a configuration train here, and how close is that to the model's limit?

    python -m cifar_sweeps.bench model=skip_s8
    python -m cifar_sweeps.bench model=dilated_c4 batch_size=128 --seconds 8 --rounds 3
    python -m cifar_sweeps.bench model=skip_s8 --choices --seconds 1.5 --rounds 4   # evidence for the defaults
    python -m cifar_sweeps.bench model=skip_s8 --startup-breakdown                  # where (4) goes
    python -m cifar_sweeps.bench --zoo            # every model and norm against this machine's matmul peak

Any Hydra override of `conf/train.yaml` is accepted (the same ones `cifar_sweeps.train` takes);
`--options` control the measurement. One run measures, on the same model, batch size and machine:

1. compute: training steps on random tensors already on the device (the limit);
2. fast: the default path end to end: real CIFAR-10 training split held on the device as uint8,
   index slices of a per-epoch permutation, the config's tensor augmentations, fused normalisation,
   the same `train_step` as `cifar_sweeps.train` (channels_last, bf16 autocast on CUDA, compile);
3. seed loop: what the write-ups ran: torch DataLoader (`--seed-workers`, default one per core)
   over per-image albumentations (HorizontalFlip, ShiftScaleRotate, CoarseDropout, Normalize;
   write-up 001's parameters) + ToTensorV2, an NCHW float32 eager model, torch's default thread
   count (`--seed-threads` to change);
4. startup: seconds from process start to the first optimizer step of a fresh
   `python -m cifar_sweeps.train <overrides>` (imports, Hydra composition, data load, model build),
   the median of `--startup-runs` runs.

Each of `--rounds` rounds alternates (1) and (2) step by step for 2 x `--seconds`, then times (3)
for `--seconds` (its DataLoader workers would otherwise prefetch in the background), so that load
from other processes on the machine hits all three alike; the load average is printed each round.
The last line printed is one JSON object (keys `compute_img_s`, `fast_img_s`, `seed_loop_img_s`,
`fast_vs_compute`, `fast_vs_seed_loop`, `startup_s`, plus details) for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import torch
from omegaconf import DictConfig

from .build import build_model, build_optimizer, count_params
from .config import compose_train_config as compose_cfg
from .data import load_cifar10
from .engine import build_run, resolve_threads, sync, train_step
from .errors import ConfigError
from .loaders import TensorBatches, cpu_workers
from .train import size_model
from .validation import validate

TORCH_DEFAULT_THREADS = torch.get_num_threads()  # read before anything changes it

# Run in a fresh interpreter: the real CLI (`python -m cifar_sweeps.train ...`), stopped right after
# its first optimizer step by a global step hook; prints the seconds since the parent's timestamp
# and the CPU seconds the process used (user + system: what the wall time would be on an idle core).
_PROBE = """
import os, sys, time, runpy
t0 = float(os.environ["CIFAR_SWEEPS_BENCH_T0"])
from torch.optim.optimizer import register_optimizer_step_post_hook
def _first_step(optimizer, args, kwargs):
    cpu = os.times()
    print(f"BENCH_FIRST_STEP_S {time.time() - t0:.4f} {cpu.user + cpu.system:.4f}", flush=True)
    os._exit(0)
register_optimizer_step_post_hook(_first_step)
sys.argv = ["cifar_sweeps.train", *sys.argv[1:]]
runpy.run_module("cifar_sweeps.train", run_name="__main__", alter_sys=True)
"""


# The same start-up, stage by stage in a fresh interpreter, CPU seconds per stage (what to optimise),
# through the same functions train() calls.
_BREAKDOWN = """
import sys, time
marks = [("interpreter start", time.process_time())]
def mark(name):
    marks.append((name, time.process_time()))
import torch; mark("import torch")
from cifar_sweeps import engine, train, validation, data as cifar_data
from cifar_sweeps.config import compose_train_config; mark("import hydra, omegaconf, cifar_sweeps")
cfg = compose_train_config(sys.argv[1:]); mark("compose the config")
validation.validate(cfg); train.size_model(cfg); mark("validate, count parameters (meta device)")
data = cifar_data.load_cifar10(cfg.data, cfg.seed); mark("load CIFAR-10 npz, split")
run = engine.build_run(cfg, data); mark("build model, receptive field, batches, optimizer")
x, y = next(iter(run.train_batches))
engine.train_step(run.model, run.forward, run.optimizer, x, y, cfg, run.use_amp); mark("first training step")
for (_, a), (name, b) in zip(marks, marks[1:]):
    print(f"  {name:52s} {b - a:6.2f} s CPU")
print(f"  {'total':52s} {marks[-1][1]:6.2f} s CPU")
"""


class Phase:
    """One of the three timed loops: a model, its optimizer and an endless source of batches."""

    def __init__(self, name: str, model, forward, optimizer, batches, cfg, use_amp: bool, threads: int,
                 fresh_each_round: bool = False):
        self.name, self.model, self.forward, self.optimizer = name, model, forward, optimizer
        self.batches, self.cfg, self.use_amp, self.threads = batches, cfg, use_amp, threads
        self.fresh_each_round = fresh_each_round
        self.images, self.seconds, self.per_round = 0, 0.0, []
        self._it = None

    def _next(self):
        if self._it is None:
            self._it = iter(self.batches)
        try:
            return next(self._it)
        except StopIteration:  # epoch end: a new permutation (or new DataLoader workers), as in training
            self._it = iter(self.batches)
            return next(self._it)

    def _step(self, x, y, acc):
        loss, logits = train_step(self.model, self.forward, self.optimizer, x, y, self.cfg, self.use_amp)
        # the same per-batch bookkeeping as cifar_sweeps.train (on the device, no host sync)
        acc[0] += loss * len(y)
        acc[1] += (logits.argmax(1) == y).sum()

    def start(self, warmup: int, device: torch.device) -> None:
        """Begin a round: this phase's threads, fresh DataLoader workers if any, untimed warm-up steps
        (worker start-up, first batches, compilation, cudnn autotuning)."""
        torch.set_num_threads(self.threads)
        if self.fresh_each_round:
            # DataLoader workers start here, so none are left prefetching while another phase is timed
            self._it = None
        self.model.train()
        self._acc = [torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)]
        for _ in range(warmup):
            self._step(*self._next(), self._acc)
        sync(device)
        self._round = [0, 0.0]

    def steps(self, n: int, device: torch.device) -> None:
        """Time `n` steps: fetching (and augmenting) a batch plus the training step, synced at the end."""
        torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        for _ in range(n):
            x, y = self._next()
            self._step(x, y, self._acc)
            self._round[0] += len(y)
        sync(device)
        self._round[1] += time.perf_counter() - t0

    def finish(self) -> float:
        """End a round; returns its images/s."""
        if self.fresh_each_round:
            self._it = None  # shut the workers down before the next phase
        images, seconds = self._round
        self.images += images
        self.seconds += seconds
        self.per_round.append(images / seconds)
        return images / seconds

    @property
    def img_s(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")


class _SeedDataset(torch.utils.data.Dataset):
    """Write-up 001's per-image albumentations pipeline, uint8 HWC in, normalised float CHW out."""

    def __init__(self, split, mean, std):
        import albumentations as A
        from albumentations.pytorch import ToTensorV2

        self.split = split
        with warnings.catch_warnings():  # "use Affine instead": the write-up used ShiftScaleRotate
            warnings.simplefilter("ignore", UserWarning)
            shift_scale_rotate = A.ShiftScaleRotate(shift_limit=0.05, scale_limit=0.1, rotate_limit=10,
                                                    border_mode=0, fill=0, p=0.5)
        self.transform = A.Compose([
            A.HorizontalFlip(p=0.5),
            shift_scale_rotate,
            A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(16, 16), hole_width_range=(16, 16),
                            fill=tuple(255.0 * m for m in mean), p=0.5),
            A.Normalize(mean=mean, std=std),
            ToTensorV2(),
        ])

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return self.transform(image=self.split.x[i])["image"], int(self.split.y[i])


class _ToDevice:
    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class _RandomBatches:
    """The same normalised random batch forever: no data cost at all."""

    def __init__(self, cfg, device, channels_last: bool):
        self.x = torch.randn(cfg.batch_size, 3, 32, 32, device=device)
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (cfg.batch_size,), device=device)

    def __iter__(self):
        while True:
            yield self.x, self.y


def measure_startup(overrides: list[str], runs: int, timeout: float = 300.0) -> list[tuple[float, float]]:
    """(wall, CPU) seconds from a fresh process's start to its first training step, `runs` times."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
            args = [*overrides, f"hydra.run.dir={tmp}", "save_model=false"]
            env = {**os.environ, "CIFAR_SWEEPS_BENCH_T0": repr(time.time())}
            proc = subprocess.run([sys.executable, "-c", _PROBE, *args], env=env, capture_output=True,
                                  text=True, timeout=timeout, cwd=tmp)
            found = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_FIRST_STEP_S ")]
            if not found:
                raise RuntimeError(f"startup probe never reached a training step (exit {proc.returncode}):\n"
                                   f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
            wall, cpu = found[0].split()[1:]
            times.append((float(wall), float(cpu)))
    return times


def _median_rates(fns: dict, seconds: float, rounds: int, images_per_call: int) -> dict:
    """Median images/s of each zero-argument callable, timed in `rounds` alternating windows."""
    rates = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()  # warm
            calls, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                fn()
                calls += 1
            rates[name].append(calls * images_per_call / (time.perf_counter() - t0))
    return {name: statistics.median(v) for name, v in rates.items()}


def compare_choices(cfg: DictConfig, data, device: torch.device, seconds: float, rounds: int) -> dict:
    """The measurements behind the defaults: threads x channels_last on random tensors, and three ways
    to augment a batch (crop pad 4 + hflip + 16x16 cutout, then normalise), alternating in rounds."""
    results = {}
    x_rand = torch.randn(cfg.batch_size, 3, 32, 32, device=device)
    y_rand = torch.randint(0, 10, (cfg.batch_size,), device=device)
    setups = {}
    for channels_last in (True, False):
        model = build_model(cfg).to(device)
        x = x_rand
        if channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        setups[channels_last] = (model, build_optimizer(cfg, model), x)

    def step_fn(threads: int, channels_last: bool):
        model, optimizer, x = setups[channels_last]

        def step():
            torch.set_num_threads(threads)
            train_step(model, model, optimizer, x, y_rand, cfg, use_amp=False)
            sync(device)
        return step

    fns = {f"compute threads={t} channels_last={cl}": step_fn(t, cl)
           for t in sorted({1, TORCH_DEFAULT_THREADS}) for cl in (True, False)}
    results.update(_median_rates(fns, seconds, rounds, cfg.batch_size))

    from .augment import batch_crop, batch_cutout, batch_hflip, resolve_fill
    from .loaders import Normalize

    torch.set_num_threads(resolve_threads(cfg.threads))
    mean, std = list(cfg.data.mean), list(cfg.data.std)
    images = torch.from_numpy(data.train.x).to(device)
    normalize = Normalize(mean, std, device, channels_last=True)
    gen = torch.Generator(device=device).manual_seed(0)
    fill = resolve_fill("mean", mean)
    n = cfg.batch_size

    def batch():
        return images[torch.randint(0, len(images), (n,), device=device)]

    def hand():
        x = batch_hflip(batch_crop(batch(), gen, 4, (0, 0, 0)), gen, 0.5)
        normalize(batch_cutout(x, gen, 16, fill, 0.5))

    augs = {"augment: hand-written torch (this repo)": hand}
    mean_t, std_t = torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1)
    try:
        import kornia.augmentation as K

        kornia_aug = K.AugmentationSequential(
            K.RandomCrop((32, 32), padding=4, fill=0.0), K.RandomHorizontalFlip(p=0.5),
            K.RandomErasing(scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.5, p=0.5))  # 16x16 of 32x32
        augs["augment: kornia (per-sample, float)"] = lambda: (kornia_aug(
            batch().permute(0, 3, 1, 2).float().div(255)) - mean_t) / std_t
    except ImportError:
        pass
    try:
        from torchvision.transforms import v2

        tv = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                         v2.RandomErasing(p=0.5, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0)])
        augs["augment: torchvision v2 on the batch (ONE draw per batch)"] = lambda: normalize(
            tv(batch().permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        augs["augment: torchvision v2 per image (python loop)"] = lambda: normalize(
            torch.stack([tv(img) for img in batch().permute(0, 3, 1, 2)]).permute(0, 2, 3, 1))
    except ImportError:
        pass
    results.update(_median_rates(augs, seconds, rounds, n))
    return results


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m cifar_sweeps.bench", description=__doc__.split("\n\n")[0],
                                     epilog="Anything else is a Hydra override of conf/train.yaml, e.g. model=skip_s8.")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per phase per round (default 5)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the three phases (default 4)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each phase and round")
    parser.add_argument("--startup-runs", type=int, default=3, help="fresh processes timed for (4); 0 skips it")
    parser.add_argument("--seed-workers", type=int, default=None,
                        help="DataLoader workers of the seed loop (default: one per core)")
    parser.add_argument("--seed-threads", type=int, default=None,
                        help=f"torch threads of the seed loop (default: torch's default here, {TORCH_DEFAULT_THREADS})")
    parser.add_argument("--startup-breakdown", action="store_true",
                        help="instead: CPU seconds of each start-up stage in a fresh process")
    parser.add_argument("--choices", action="store_true",
                        help="instead: time threads x channels_last and the augmentation libraries (the defaults' evidence)")
    zoo = parser.add_argument_group("--zoo: every zoo model and norm, before vs auto (cifar_sweeps/zoo_bench.py)")
    zoo.add_argument("--zoo", action="store_true", help="instead: the zoo benchmark (docs/speed.md)")
    zoo.add_argument("--models", default=None, help="comma-separated zoo models (default: all six)")
    zoo.add_argument("--norms", default=None, help="comma-separated norms (default: bn,gn)")
    zoo.add_argument("--batch-size", type=int, default=128, help="zoo batch size (default 128)")
    zoo.add_argument("--min-steps", type=int, default=2, help="zoo: at least this many steps per window (default 2)")
    zoo.add_argument("--peak-seconds", type=float, default=1.0, help="zoo: seconds per matmul peak measurement (default 1)")
    zoo.add_argument("--before-override", action="append", default=[], metavar="KEY=VALUE",
                     help="zoo: a config override for the before set-up only, e.g. model.dropout=0.05 (the dropout "
                          "dilated_c4 trained with before its recipe); repeatable")
    zoo.add_argument("--candidates", action="store_true",
                     help="zoo: also time fp32/bf16 x NCHW/channels_last (the evidence for the auto choices)")
    args, overrides = parser.parse_known_args(argv)
    unknown = [o for o in overrides if o.startswith("--")]
    if unknown:
        parser.error(f"unknown option(s) {unknown}; Hydra overrides look like key=value")
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be >= 1 and --seconds > 0")
    return args, overrides


def bench(argv: list[str]) -> dict:
    t_start = time.perf_counter()
    args, overrides = parse_args(argv)
    if args.zoo:
        from .zoo_bench import zoo

        return zoo(args, overrides)
    if args.startup_breakdown:
        print(f"start-up stages of a fresh process, overrides {overrides}:", flush=True)
        subprocess.run([sys.executable, "-c", _BREAKDOWN, *overrides], check=True, timeout=300)
        return {}
    cfg = compose_cfg(overrides)
    validate(cfg)
    size_model(cfg)  # as train() does: the model timed is the one a trial would train (fit_width)
    if cfg.augment.backend != "tensor":
        raise ConfigError(f"augment.backend={cfg.augment.backend}: the bench times the fast path, which is the "
                          "tensor backend; pick an augment config with backend: tensor (e.g. augment=flip_crop)")
    threads = resolve_threads(cfg.threads)
    seed_threads = args.seed_threads or TORCH_DEFAULT_THREADS
    data = load_cifar10(cfg.data, cfg.seed)
    run = build_run(cfg, data)  # the fast path exactly as train() builds it
    device, model, forward, use_amp = run.device, run.model, run.forward, run.use_amp
    if args.choices:
        print(f"choices: model={cfg.model._target_.rsplit('.', 1)[-1]} batch_size={cfg.batch_size} device={device}, "
              f"medians of {args.rounds} alternating windows of {args.seconds:g} s")
        results = compare_choices(cfg, data, device, args.seconds, args.rounds)
        for name, rate in results.items():
            print(f"{name:60s} {rate:9.0f} img/s")
        results = {name: round(rate, 1) for name, rate in results.items()}
        results["load_average"] = [round(v, 2) for v in os.getloadavg()]
        print(json.dumps(results))
        return results
    fast_batches = run.train_batches
    assert isinstance(fast_batches, TensorBatches)
    # (1) and (2) train the same model object, as they would in one run
    compute = Phase("compute", model, forward, build_optimizer(cfg, model), _RandomBatches(cfg, device, run.channels_last), cfg,
                    use_amp, threads)
    fast = Phase("fast", model, forward, run.optimizer, fast_batches, cfg, use_amp, threads)

    seed_model = build_model(cfg).to(device)  # NCHW float32, eager
    if hasattr(seed_model, "init_from_data"):
        seed_model.init_from_data(fast_batches.normalize(torch.from_numpy(data.train.x[:5000]).to(device)))
    workers = cpu_workers() if args.seed_workers is None else args.seed_workers
    loader = torch.utils.data.DataLoader(
        _SeedDataset(data.train, list(cfg.data.mean), list(cfg.data.std)), batch_size=cfg.batch_size,
        shuffle=True, num_workers=workers, pin_memory=device.type == "cuda", drop_last=True)
    seed = Phase("seed loop", seed_model, seed_model, build_optimizer(cfg, seed_model), _ToDevice(loader, device),
                 cfg, use_amp=False, threads=seed_threads, fresh_each_round=True)

    ops = ", ".join(cfg.augment.ops) or "none"
    params = count_params(cfg)
    print(f"bench: model={cfg.model._target_.rsplit('.', 1)[-1]} ({params:,} parameters) batch_size={cfg.batch_size} device={device} "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cpus) torch {torch.__version__}")
    print(f"fast path: threads={threads} channels_last={run.channels_last} compile={cfg.compile} amp={use_amp} "
          f"augment=[{ops}] | seed loop: threads={seed_threads} workers={workers} NCHW fp32 eager | "
          f"{len(data.train)} training images")
    # (1) and (2) alternate chunk by chunk (one step per chunk on CPU; on CUDA a few, to keep the queue
    # full between syncs), so any load from other processes hits both alike; the seed loop, whose
    # DataLoader workers run in the background, gets its own window of the same length in each round.
    chunk = 1 if device.type == "cpu" else 10
    for r in range(1, args.rounds + 1):
        compute.start(args.warmup, device)
        fast.start(args.warmup, device)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2 * args.seconds:
            compute.steps(chunk, device)
            fast.steps(chunk, device)
        rates = [compute.finish(), fast.finish()]
        cudnn_bench = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False  # the write-ups left it off
        seed.start(args.warmup, device)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            seed.steps(chunk, device)
        rates.append(seed.finish())
        torch.backends.cudnn.benchmark = cudnn_bench
        load = os.getloadavg()
        print(f"round {r}: compute {rates[0]:7.0f}  fast {rates[1]:7.0f}  seed loop {rates[2]:7.0f} img/s  "
              f"| load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)

    startup = measure_startup(overrides, args.startup_runs) if args.startup_runs > 0 else []
    startup_s = statistics.median(t[0] for t in startup) if startup else None
    startup_cpu_s = statistics.median(t[1] for t in startup) if startup else None

    result = {
        "compute_img_s": round(compute.img_s, 1),
        "fast_img_s": round(fast.img_s, 1),
        "seed_loop_img_s": round(seed.img_s, 1),
        "fast_vs_compute": round(fast.img_s / compute.img_s, 3),
        "fast_vs_seed_loop": round(fast.img_s / seed.img_s, 3),
        "startup_s": round(startup_s, 2) if startup_s is not None else None,
        "startup_cpu_s": round(startup_cpu_s, 2) if startup_cpu_s is not None else None,
        "startup_runs_s": [round(t[0], 2) for t in startup],
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "params": params,
        "batch_size": cfg.batch_size,
        "device": str(device),
        "threads": threads,
        "seed_threads": seed_threads,
        "seed_workers": workers,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "overrides": overrides,
        "bench_s": round(time.perf_counter() - t_start, 1),
    }
    print()
    print(f"(1) compute (random tensors in memory)  {result['compute_img_s']:9.0f} img/s")
    print(f"(2) fast path, end to end               {result['fast_img_s']:9.0f} img/s   "
          f"(2)/(1) = {result['fast_vs_compute']:.3f}")
    print(f"(3) seed-style DataLoader loop          {result['seed_loop_img_s']:9.0f} img/s   "
          f"(2)/(3) = {result['fast_vs_seed_loop']:.3f}")
    if startup:
        print(f"(4) startup to first training step      {startup_s:9.2f} s       "
              f"(runs: {', '.join(f'{t[0]:.2f}' for t in startup)}; CPU {startup_cpu_s:.2f} s)")
    print(json.dumps(result))
    return result


def main() -> None:
    try:
        bench(sys.argv[1:])
    except ConfigError as e:
        sys.exit(f"config error: {e}")


if __name__ == "__main__":
    main()
