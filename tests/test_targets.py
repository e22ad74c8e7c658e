"""A config builds only what its group is for: the attacks that reached other runs' files through
`logger._target_`, refused in one line by the real CLI; every group against foreign targets; nested
targets; and a user's own model package, trusted through the environment and still kind-checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_sweeps.build import build_model
from cifar_sweeps.errors import ConfigError
from cifar_sweeps.targets import KINDS, TRUSTED_ENV, check_target, check_targets
from conftest import ROOT, TINY, compose_cfg

TRAIN = [sys.executable, "-m", "cifar_sweeps.train"]


def cli(*overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*TRAIN, *overrides], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env or os.environ)


@pytest.fixture
def finished_run(tmp_path, cifar_npz) -> Path:
    """A real finished run (with its checkpoint kept): the victim of the attacks."""
    victim = tmp_path / "victim"
    proc = cli(*TINY, f"data.npz={cifar_npz}", f"hydra.run.dir={victim}", "keep_checkpoint=true", "threads=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return victim


def test_a_logger_config_can_neither_rewrite_nor_delete_another_runs_files(finished_run, tmp_path, cifar_npz):
    before = {name: (finished_run / name).read_bytes() for name in ("summary.json", "checkpoint.pt")}
    attacks = [
        ["logger._target_=cifar_sweeps.record.write_summary", f"+logger.run_dir={finished_run}",
         "+logger.summary={_target_:cifar_sweeps.record.RunSummary,state:completed,test_acc:0.99}"],
        ["logger._target_=cifar_sweeps.checkpoint.remove_checkpoint", f"+logger.run_dir={finished_run}"],
    ]
    for n, attack in enumerate(attacks):
        proc = cli(*TINY, f"data.npz={cifar_npz}", f"hydra.run.dir={tmp_path / f'attacker{n}'}", *attack)
        assert proc.returncode == 2, proc.stderr[-3000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: logger._target_=") and "is refused" in lines[0], lines
        assert TRUSTED_ENV in lines[0]  # and says how to allow one's own package
    assert {name: (finished_run / name).read_bytes() for name in before} == before


@pytest.mark.parametrize("group, target", [
    ("logger", "cifar_sweeps.record.write_summary"), ("logger", "torch.nn.ReLU"), ("logger", "os.system"),
    ("optimizer", "torch.nn.ReLU"), ("optimizer", "cifar_sweeps.checkpoint.remove_checkpoint"),
    ("optimizer", "torch.optim.lr_scheduler.StepLR"), ("scheduler", "torch.optim.SGD"), ("scheduler", "os.remove"),
    ("pruner", "cifar_sweeps.loggers.NullLogger"), ("pruner", "optuna.samplers.TPESampler"),
    ("pruner", "optuna.delete_study"), ("model", "cifar_sweeps.record.RunSummary"), ("model", "torch.load"),
    ("model", "torch.nn.init.zeros_"), ("norm", "cifar_sweeps.models.layers.Nope"), ("norm", "shutil.rmtree"),
    ("sampler", "optuna.pruners.MedianPruner"), ("custom_search_space", "cifar_sweeps.record.write_summary"),
    ("custom_search_space", "os.system"),
])
def test_each_group_refuses_what_it_is_not_for(group, target):
    with pytest.raises(ConfigError, match=rf"{group}\._target_='{target}'"):
        check_target(group, f"{group}._target_", target)


def test_every_shipped_config_is_within_its_group():
    for model in ("airnet", "skip_s8", "dilated_c4", "advanced_c4", "resnet18", "s8_net"):
        for logger in ("none", "csv", "wandb"):
            cfg = compose_cfg([f"model={model}", f"logger={logger}", "pruner=median", "scheduler=cosine"])
            for group in ("model", "norm", "optimizer", "scheduler", "logger", "pruner"):
                check_targets(group, cfg[group])
    assert set(KINDS) >= {"model", "norm", "optimizer", "scheduler", "logger", "pruner", "sampler"}


def test_a_nested_target_follows_its_groups_rule():
    cfg = compose_cfg(["+model.block={_target_:cifar_sweeps.checkpoint.remove_checkpoint,run_dir:/tmp}"])
    with pytest.raises(ConfigError, match=r"model\.block\._target_='cifar_sweeps\.checkpoint\.remove_checkpoint'"):
        check_targets("model", cfg.model)


def test_sweeper_sampler_and_search_space_refusals_are_one_line(tmp_path):
    base = ["--multirun", "hparams_search=budget_50k", f"hydra.sweep.dir={tmp_path / 'runs'}",
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}"]
    for override, key in [("hydra.sweeper.sampler._target_=cifar_sweeps.record.write_summary", "sampler._target_"),
                          ("hydra.sweeper.custom_search_space=os.system", "custom_search_space")]:
        proc = cli(*base, override)
        assert proc.returncode != 0
        lines = [line for line in proc.stderr.splitlines() if "Warning" not in line and "optuna_warn" not in line]
        assert len(lines) == 1 and f"hydra.sweeper.{key}=" in lines[0] and "is refused" in lines[0], proc.stderr
    assert not list((tmp_path / "runs").glob("trial_*"))  # refused before any trial


MY_MODELS = '''
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, norm, width=8):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), norm(width), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))

    def forward(self, x):
        return self.net(x)


class NotAModel:
    def __init__(self, norm, width=8):
        pass
'''


TINY_YAML = """_target_: my_models.TinyNet
width: 8
"""


def test_a_users_own_model_package_is_trusted_through_the_environment(tmp_path, cifar_npz, monkeypatch):
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    (tmp_path / "my_conf" / "model").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "tiny.yaml").write_text(TINY_YAML)
    monkeypatch.syspath_prepend(str(tmp_path))
    own = [f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", "model=tiny"]
    cfg = compose_cfg(own)
    with pytest.raises(ConfigError, match=r"model\._target_='my_models\.TinyNet' is refused"):
        build_model(cfg)
    monkeypatch.setenv(TRUSTED_ENV, "my_models")
    assert sum(p.numel() for p in build_model(cfg).parameters()) > 0
    # trusted, yet a model must still be a model
    with pytest.raises(ConfigError, match=r"is not a torch\.nn\.Module"):
        check_target("model", "model._target_", "my_models.NotAModel")
    # and the CLI trains it end to end, as docs/configuration.md shows
    env = {**os.environ, TRUSTED_ENV: "my_models", "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = cli(*TINY, f"data.npz={cifar_npz}", f"hydra.run.dir={tmp_path / 'run'}", "threads=1", *own, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").is_file()
