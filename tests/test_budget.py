"""Parameter budgets without training: width solving, rejection before data."""

from __future__ import annotations

import json

import pytest

from cifar_sweeps.budget import params_at_width, solve_width
from cifar_sweeps.build import count_params
from cifar_sweeps.errors import ConfigError
from cifar_sweeps.train import train

from conftest import compose_cfg


@pytest.mark.parametrize("model", ["skip_s8", "dilated_c4", "airnet"])
@pytest.mark.parametrize("budget", [50_000, 100_000])
def test_solve_width_is_the_largest_width_within_budget(model, budget):
    cfg = compose_cfg([f"model={model}"])
    configured = cfg.model.width
    width, params = solve_width(cfg, budget)
    assert params == params_at_width(cfg, width) <= budget
    assert params_at_width(cfg, width + 1) > budget
    assert cfg.model.width == configured  # solving does not touch the config


def test_solve_width_respects_other_knobs():
    """A deeper/wider-expansion model gets a smaller width for the same budget."""
    narrow, _ = solve_width(compose_cfg(["model=dilated_c4", "model.expansion=4"]), 50_000)
    wide, _ = solve_width(compose_cfg(["model=dilated_c4", "model.expansion=1"]), 50_000)
    assert narrow < wide


def test_solve_width_errors_when_even_min_width_is_over_budget():
    with pytest.raises(ConfigError, match="budget.max_params"):
        solve_width(compose_cfg(["model=skip_s8"]), 100)
    with pytest.raises(ConfigError, match="budget.min_width"):
        solve_width(compose_cfg(["model=skip_s8"]), 50_000, min_width=0)


def test_fit_width_without_budget_is_a_config_error(tmp_path):
    cfg = compose_cfg(["budget.fit_width=true"], out=tmp_path)
    with pytest.raises(ConfigError, match="budget.max_params"):
        train(cfg)


def test_over_budget_is_rejected_before_any_data_is_loaded(tmp_path):
    # the data file does not exist: the run can only succeed if it never touches data
    cfg = compose_cfg(["model=skip_s8", "budget.max_params=20000", f"data.npz={tmp_path}/missing.npz"], out=tmp_path)
    value = train(cfg)
    params = count_params(cfg)
    assert params > 20_000
    assert value == pytest.approx(-params / 20_000)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["state"] == "rejected"
    assert summary["params"] == params and summary["max_params"] == 20_000
    assert "budget.max_params" in summary["reason"]
    assert not (tmp_path / "metrics.jsonl").exists()


def test_multi_objective_rejection_returns_one_value_per_objective(tmp_path):
    cfg = compose_cfg(["model=skip_s8", "budget.max_params=20000", "objective=[best_val_acc,params]",
                       f"data.npz={tmp_path}/missing.npz"], out=tmp_path)
    acc, params = train(cfg)
    assert params == count_params(cfg) and acc == pytest.approx(-params / 20_000)


def test_unknown_objective_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="objective"):
        train(compose_cfg(["objective=[best_val_acc,flops]"], out=tmp_path))


def test_fit_width_run_fills_its_budget(tiny_cfg, tmp_path):
    """A real (tiny) training run with fit-to-budget: the solved width is used and recorded."""
    cfg = tiny_cfg("model=skip_s8", "budget.max_params=30000", "budget.fit_width=true", "data.train_subset=300",
                   "data.val_size=100", "data.test_subset=100")
    expected_width, expected_params = solve_width(cfg, 30_000)
    acc = train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["state"] == "completed" and summary["best_val_acc"] == acc
    assert summary["model_width"] == expected_width
    assert summary["params"] == expected_params <= 30_000

