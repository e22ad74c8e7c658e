"""What each config group may build.

Hydra's `instantiate` calls whatever a `_target_` names, and a config is input: a YAML file, a
command-line override, a sweep config shared by a team. So each group may name only the kind of
object it is for, checked before anything is called (and before any data is loaded):

| group | may build |
|---|---|
| model | a `torch.nn.Module` from `cifar_sweeps.models` or `torch.nn` |
| norm | `cifar_sweeps.models.layers.norm_layer`, or a `torch.nn.Module` from `cifar_sweeps.models` / `torch.nn` |
| optimizer | a `torch.optim.Optimizer` from `torch.optim` |
| scheduler | a `torch.optim.lr_scheduler.LRScheduler` from `torch.optim.lr_scheduler` |
| logger | a `cifar_sweeps.loggers.NullLogger` subclass from `cifar_sweeps.loggers` |
| pruner | an `optuna.pruners.BasePruner` from `optuna.pruners` |
| sampler (hydra.sweeper.sampler) | an `optuna.samplers.BaseSampler` from `optuna.samplers`, or hydra-optuna-sweeper's NSGA-II/III factories |
| custom_search_space (hydra.sweeper) | `cifar_sweeps.sweeper.conditional_space` |

Nested `_target_`s inside a group (a model's block class, say) follow the same rule. Your own
package becomes usable in every group by naming it in the environment, which no config can set:

    export CIFAR_SWEEPS_TRUSTED_PACKAGES=my_models,my_lab.loggers

A class from a trusted package must still be of the group's kind (a model a `torch.nn.Module`, a
logger a `NullLogger`); a function from it is taken as a factory of that kind.

This module imports neither torch nor optuna at import time (the sweeper loads it during Hydra's
plugin scan); the base classes are imported when a target is checked.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

TRUSTED_ENV = "CIFAR_SWEEPS_TRUSTED_PACKAGES"


@dataclass(frozen=True)
class Kind:
    """What one group may build: classes deriving from `base` found in `packages`, and the named `functions`."""

    what: str
    packages: tuple[str, ...]
    base: str | None
    functions: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    "model": Kind("a model (a torch.nn.Module)", ("cifar_sweeps.models", "torch.nn"), "torch.nn.Module"),
    "norm": Kind("a norm layer (cifar_sweeps.models.layers.norm_layer or a torch.nn.Module)",
                 ("cifar_sweeps.models", "torch.nn"), "torch.nn.Module", ("cifar_sweeps.models.layers.norm_layer",)),
    "optimizer": Kind("a torch optimizer", ("torch.optim",), "torch.optim.Optimizer"),
    "scheduler": Kind("a torch learning-rate scheduler", ("torch.optim.lr_scheduler",),
                      "torch.optim.lr_scheduler.LRScheduler"),
    "logger": Kind("a run logger (a cifar_sweeps.loggers.NullLogger)", ("cifar_sweeps.loggers",),
                   "cifar_sweeps.loggers.NullLogger"),
    "pruner": Kind("an Optuna pruner", ("optuna.pruners",), "optuna.pruners.BasePruner"),
    # hydra-optuna-sweeper's sampler presets build NSGA-II/III through its own two factories
    "sampler": Kind("an Optuna sampler", ("optuna.samplers",), "optuna.samplers.BaseSampler",
                    ("hydra_plugins.hydra_optuna_sweeper._impl.create_nsgaii_sampler",
                     "hydra_plugins.hydra_optuna_sweeper._impl.create_nsgaiii_sampler")),
    "custom_search_space": Kind("a search-space function", (), None, ("cifar_sweeps.sweeper.conditional_space",)),
}


def trusted_packages() -> tuple[str, ...]:
    """The user's own packages, from $CIFAR_SWEEPS_TRUSTED_PACKAGES (comma-separated)."""
    return tuple(p.strip() for p in os.environ.get(TRUSTED_ENV, "").split(",") if p.strip())


def _within(target: str, packages: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in packages)


def whitelist(group: str) -> list[str]:
    """Hydra 1.4's `_execution_whitelist_` for the group: a second lock behind `check_targets`."""
    kind = KINDS[group]
    return [f"{p}.*" for p in (*kind.packages, *trusted_packages())] + list(kind.functions)


def _refuse(key: str, target: Any, kind: Kind, why: str) -> ConfigError:
    return ConfigError(f"{key}={target!r} is refused: {why}; this group builds only {kind.what}. Your own package "
                       f"can be allowed with the environment variable {TRUSTED_ENV}=your_package "
                       "(docs/configuration.md, 'Your own models')")


def check_target(group: str, key: str, target: Any) -> None:
    """Raise ConfigError unless `target` names something group `group` may build."""
    kind = KINDS[group]
    if target is None and group == "scheduler":  # scheduler=none
        return
    if not isinstance(target, str) or not target:
        raise _refuse(key, target, kind, "a _target_ is the dotted name of a class or function")
    trusted = trusted_packages()
    if target not in kind.functions and not _within(target, kind.packages) and not _within(target, trusted):
        raise _refuse(key, target, kind, "it is outside the packages this group may use")
    from hydra.utils import get_object

    try:
        obj = get_object(target)
    except Exception as e:  # ImportError, AttributeError
        raise ConfigError(f"{key}={target!r} cannot be imported ({type(e).__name__}: {e}); check its spelling") from None
    if inspect.isclass(obj):
        if kind.base is not None:
            base = get_object(kind.base)
            if not issubclass(obj, base):
                raise _refuse(key, target, kind, f"it is not a {kind.base}")
        elif target not in kind.functions:
            raise _refuse(key, target, kind, "it is a class, and this group takes a function")
        return
    if target in kind.functions or _within(target, trusted):
        return
    raise _refuse(key, target, kind, "it is not a class of this kind")


def check_targets(group: str, node: Any, key: str | None = None) -> None:
    """Check every `_target_` in a group's config node, nested ones included."""
    key = key or group
    if isinstance(node, Mapping) or hasattr(node, "items") and not isinstance(node, (str, bytes)):
        for name, value in node.items():
            if name == "_target_":
                check_target(group, f"{key}._target_", value)
            else:
                check_targets(group, value, f"{key}.{name}")
    elif isinstance(node, (list, tuple)) or type(node).__name__ == "ListConfig":
        for i, value in enumerate(node):
            check_targets(group, value, f"{key}.{i}")
