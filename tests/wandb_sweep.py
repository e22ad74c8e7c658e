"""One tiny real sweep through the Hydra CLI with logger=wandb (offline), shared by test_wandb.py and
test_report.py: the first test that asks for it runs it, the others reuse its directory."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

_SWEEPS: dict[str, Path] = {}

# skip_s8 at width 4 (12,196 parameters) trains in seconds on a CPU; width 8 (47,304) is over the
# 30,000 budget, so half the trials are rejected before training and the report shows both states
SWEEP_OVERRIDES = ["norm=bn,gn,ln", "model=skip_s8", "model.width=4,8", "budget.max_params=30000", "logger=wandb",
                   "data.val_size=200", "data.train_subset=400", "data.test_subset=200", "epochs=2", "batch_size=100",
                   "save_model=false", "threads=1"]


def offline_env() -> dict[str, str]:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    env.pop("WANDB_API_KEY", None)
    return env


def tiny_wandb_sweep(tmp_path_factory, npz: Path) -> Path:
    if "sweep" not in _SWEEPS:
        work = tmp_path_factory.mktemp("wandb_sweep")
        sweep = work / "sweep"
        cmd = [sys.executable, "-m", "cifar_sweeps.train", "--multirun", *SWEEP_OVERRIDES, f"data.npz={npz}",
               f"hydra.sweep.dir={sweep}"]
        proc = subprocess.run(cmd, cwd=work, env=offline_env(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        _SWEEPS["sweep"] = sweep
    return _SWEEPS["sweep"]


def read_wandb_records(path: Path) -> list:
    """Records of a .wandb transaction log: a 7-byte ':W&B' header, then LevelDB-style log blocks of 32 KiB
    whose records (7-byte header: crc32, length, type full/first/middle/last) carry protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_run_contents(run_dir: Path, wait_s: float = 60, newest: bool = False) -> dict:
    """The one offline W&B run of a job directory (or, newest=True, the last of several: a resumed job's),
    decoded: run info, config keys, history rows, summary keys.

    wandb-core writes the log from its own process: right after run.finish() on a busy machine the file
    can still be short, so wait (up to wait_s) for the exit record."""
    import json
    import time

    logs = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    assert logs and (newest or len(logs) == 1), f"expected one offline W&B run in {run_dir}/wandb, found {logs}"
    logs = logs[-1:]
    deadline = time.monotonic() + wait_s
    while not any(r.WhichOneof("record_type") == "exit" for r in read_wandb_records(logs[0])):
        assert time.monotonic() < deadline, f"{logs[0]} has no exit record after {wait_s}s"
        time.sleep(0.5)
    out = {"path": logs[0], "history": [], "summary": set(), "summary_values": {}, "config": set(), "exit_code": None,
           "run": None}
    for rec in read_wandb_records(logs[0]):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
            out["config"] |= {i.key or "/".join(i.nested_key) for i in rec.run.config.update}
        elif kind == "config":
            out["config"] |= {i.key or "/".join(i.nested_key) for i in rec.config.update}
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in rec.history.item})
        elif kind == "summary":
            out["summary"] |= {i.key or "/".join(i.nested_key) for i in rec.summary.update}
            out["summary_values"] |= {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                      for i in rec.summary.update}
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out
