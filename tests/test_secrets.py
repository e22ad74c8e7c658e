"""A database password in the storage URL reaches no file and no log: a real PostgreSQL server with
password authentication, real sweeps logging to W&B (offline), then every byte under the sweep folder
and everything printed is searched for it, for a password on the command line and one in a sweep YAML."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from cifar_sweeps.sweeper import job_storage_url, masked_url
from test_recovery import TRIAL
from wandb_sweep import offline_env


def files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def secret_url(postgres, driver: str = "psycopg2") -> str:
    return f"postgresql+{driver}://{postgres.user}:{postgres.password}@127.0.0.1:{postgres.port}/{postgres.database}"


def test_job_storage_url_drops_the_password_and_logs_mask_it(monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    url = "postgresql+psycopg2://alice:s3cret-pw@db.example:5432/studies"
    assert job_storage_url(url) == "postgresql+psycopg2://alice@db.example:5432/studies"
    assert os.environ["PGPASSWORD"] == "s3cret-pw"  # libpq reads it; the launchers pass it on to the jobs
    assert masked_url(url) == "postgresql+psycopg2://alice:***@db.example:5432/studies"
    assert masked_url("sqlite:///multirun/optuna.db") == "sqlite:///multirun/optuna.db"


@pytest.mark.parametrize("given", ["command line", "sweep yaml"])
def test_a_password_in_the_storage_url_reaches_no_file_and_no_log(given, tmp_path, cifar_npz, postgres):
    study_name = f"secret_{given.replace(' ', '_')}"
    url = secret_url(postgres)
    sweep = tmp_path / "sweep"
    overrides = [*TRIAL, "epochs=1", "hydra.sweeper.n_trials=2", "logger=wandb", "logger.mode=offline",
                 f"data.npz={cifar_npz}", f"hydra.sweep.dir={sweep}", f"hydra.sweeper.study_name={study_name}"]
    if given == "command line":
        overrides += ["hparams_search=budget_50k", f"hydra.sweeper.storage={url}"]
    else:  # a team's shared sweep config holding the URL
        conf = tmp_path / "team_conf" / "hparams_search"
        conf.mkdir(parents=True)
        (conf / "team_50k.yaml").write_text(f"# @package _global_\ndefaults:\n  - budget_50k\n\n"
                                            f"hydra:\n  sweeper:\n    storage: \"{url}\"\n")
        overrides += [f"hydra.searchpath=[file://{tmp_path / 'team_conf'}]", "hparams_search=team_50k"]
    env = offline_env()
    env.pop("PGPASSWORD", None)  # the URL is the only place the password is given
    proc = subprocess.run([sys.executable, "-m", "cifar_sweeps.train", "--multirun", *overrides], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the password worked: both trials ran against the server, each job reaching its trial
    study = optuna.load_study(study_name=study_name, storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(t.intermediate_values for t in study.trials)
    # and went nowhere: not in any job's config, .hydra/ file, W&B file or log, nor in what was printed
    secret = postgres.password.encode()
    assert list(sweep.rglob("run-*.wandb")) and list(sweep.rglob(".hydra/hydra.yaml"))  # the files searched exist
    assert files_holding(tmp_path / "sweep", secret) == []
    assert postgres.password not in proc.stdout + proc.stderr
    # the log names the storage, without the password
    assert f"Study {study_name} in postgresql+psycopg2://{postgres.user}@127.0.0.1:" in proc.stdout + proc.stderr
