"""`python -m cifar_sweeps.inspect`: the real CLI in a subprocess, on the meta device, without data."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def inspect(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_sweeps.inspect", *overrides], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_inspect_prints_summary_rf_stages_and_json():
    # data.npz points nowhere: inspect must not load data (training with it would fail)
    proc = inspect("model=s8_net", "norm=gn", "data.npz=/nonexistent/cifar10.npz", "data.download=false")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    facts = json.loads(lines[-1])
    assert facts["params"] == 198_660 and facts["model"] == "S8Net" and facts["norm"] == "gn"
    assert (facts["receptive_field"], facts["receptive_field_with_pool"]) == (25, 44)
    assert "Total params: 198,660" in proc.stdout  # torchinfo's layer summary
    assert "GroupNorm" in proc.stdout
    stages = {s["name"]: s["output_size"] for s in facts["stages"]}
    assert stages["shrink1"] == [32, 28, 28] and stages["block3"] == [84, 22, 22]
    assert any("block3" in line and "84x22x22" in line for line in lines)


def test_inspect_accepts_experiment_presets_and_budget():
    proc = inspect("+experiment=seed001", "budget.max_params=50000")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["params"] == 98_779 and facts["model"] == "DilatedC4"
    assert (facts["receptive_field"], facts["receptive_field_with_pool"]) == (51, 71)
    assert facts["fits_budget"] is False and "OVER BUDGET" in proc.stdout


def test_inspect_rejects_bad_overrides_with_a_named_key():
    proc = inspect("model=resnet18", "model.blocks=[2,2]")
    assert proc.returncode == 2
    assert "model.blocks" in proc.stderr and "Traceback" not in proc.stderr
    proc = inspect("model=no_such_model")
    assert proc.returncode == 2 and "model/no_such_model" in proc.stderr
