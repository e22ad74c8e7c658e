"""Shared fixtures: the real CIFAR-10 npz and Hydra composition of the project's own conf/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from cifar_sweeps.config import compose_train_config


ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
DEFAULT_NPZ = ROOT.parent / "shared" / "cifar10" / "cifar10.npz"


def cifar_npz_path() -> Path:
    return Path(os.environ.get("CIFAR10_NPZ", DEFAULT_NPZ))


@pytest.fixture(scope="session")
def cifar_npz() -> Path:
    path = cifar_npz_path()
    if not path.is_file():
        pytest.fail(f"real CIFAR-10 npz not found at {path}; set CIFAR10_NPZ")
    return path


# a few hundred real images and one epoch: enough to see learning, fast enough for CI
TINY = ["data.val_size=500", "data.train_subset=2000", "data.test_subset=500", "epochs=1",
        "batch_size=128", "logger=none", "save_model=false"]


def compose_cfg(overrides: list[str] = (), npz: Path | None = None, out: Path | None = None) -> DictConfig:
    """Compose conf/train.yaml with overrides, as the CLI would (without running Hydra's job)."""
    extra = []
    if npz is not None:
        extra.append(f"data.npz={npz}")
    if out is not None:
        extra.append(f"output_dir={out}")
    return compose_train_config(extra + list(overrides))  # test overrides win


@pytest.fixture
def tiny_cfg(cifar_npz, tmp_path):
    def make(*overrides: str) -> DictConfig:
        return compose_cfg(TINY + list(overrides), npz=cifar_npz, out=tmp_path / "run")

    return make


# -- real servers (tests/servers.py; installed by tools/install_services.sh) --------------------------------

def serve(start, what: str):
    """Run a server for the session; one that cannot start fails the tests using it, with the reason."""
    from servers import ServerError

    try:
        with start() as server:
            yield server
    except ServerError as e:
        pytest.fail(f"{what} could not start: {e}")


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server on 127.0.0.1 with a database and role `optuna` (password in .env())."""
    from servers import postgres_server

    yield from serve(postgres_server, "PostgreSQL")


@pytest.fixture(scope="session")
def slurm():
    """A single-node SLURM cluster with accounting, partition `debug` (SLURM_CONF in .env())."""
    from servers import slurm_cluster

    yield from serve(slurm_cluster, "the SLURM cluster")
