"""Where the configs live and how to compose them without running a Hydra job.

The configs are the repository's `conf/` folder, installed as the package `cifar_sweeps.conf`
(setup.cfg), so `python -m cifar_sweeps.*` finds them from any working directory, editable install
or wheel alike.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from . import sweeper  # noqa: F401  registers hydra/sweeper=cifar_optuna for composition

CONFIG_MODULE = "cifar_sweeps.conf"
CONFIG_NAME = "train"


def compose_train_config(overrides: list[str] = ()) -> DictConfig:
    """conf/train.yaml with command-line overrides, composed as `python -m cifar_sweeps.train` does."""
    with initialize_config_module(config_module=CONFIG_MODULE):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides))


def conf_dir() -> Path:
    """The installed configs as a folder on disk."""
    with as_file(files(CONFIG_MODULE)) as path:
        return Path(path)
