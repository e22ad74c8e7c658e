"""Inspect a configured model without training it, allocating its weights or loading data.

    python -m cifar_sweeps.inspect model=s8_net norm=gn
    python -m cifar_sweeps.inspect +experiment=seed001
    python -m cifar_sweeps.inspect model=resnet18 model.width=32 model.blocks=[1,1,1,1]

Takes the same overrides as `python -m cifar_sweeps.train` (the config is composed from the same `conf/`
and config name `train`) and prints the parameter count, a torchinfo layer summary, the receptive field
(with and without the final pooling window) and each top-level stage's output size. Everything runs on
PyTorch's meta device. The last line is one JSON object for scripts, e.g.

    python -m cifar_sweeps.inspect model=advanced_c4 | tail -n 1 | jq .params
"""

from __future__ import annotations

import json
import sys

import torch
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from .build import build_model, count_params
from .config import compose_train_config
from .errors import ConfigError
from .receptive_field import receptive_field


def inspect_config(cfg: DictConfig, summary_depth: int = 3) -> tuple[dict, str]:
    """(facts as a JSON-able dict, torchinfo layer summary as text) of the configured model, on meta."""
    import torchinfo

    params = count_params(cfg)
    with torch.device("meta"):
        model = build_model(cfg)
    rf = receptive_field(model)
    layers = torchinfo.summary(model, input_size=(1, 3, 32, 32), device="meta", depth=summary_depth,
                               col_names=("output_size", "num_params"), verbose=0)
    max_params = cfg.budget.get("max_params")
    facts = {
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "norm": OmegaConf.to_container(cfg.norm, resolve=True).get("kind"),
        "width": cfg.model.get("width"),
        "params": params,
        "receptive_field": rf["receptive_field"],
        "receptive_field_with_pool": rf["receptive_field_with_pool"],
        "jump": rf["jump"],
        "mult_adds": int(layers.total_mult_adds),
        "max_params": max_params,
        "fits_budget": None if max_params is None else params <= max_params,
        "stages": rf["stages"],
    }
    return facts, str(layers)


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = compose_train_config(overrides)
        facts, layers = inspect_config(cfg)
    except (ConfigError, HydraException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{facts['model']} with norm={facts['norm']}: {facts['params']:,} parameters")
    print(layers)
    print(f"receptive field at the output: {facts['receptive_field']} px without the final pooling window, "
          f"{facts['receptive_field_with_pool']} px counting it (jump {facts['jump']} px before the pool)")
    print("stage outputs:")
    print(f"  {'stage':<12} {'output (C, H, W)':<18} {'RF':>5} {'jump':>5}")
    for s in facts["stages"]:
        size = "x".join(str(v) for v in s["output_size"])
        print(f"  {s['name']:<12} {size:<18} {s['receptive_field']:>5} {s['jump']:>5}")
    if facts["max_params"] is not None:
        print(f"budget.max_params={facts['max_params']:,}: {'fits' if facts['fits_budget'] else 'OVER BUDGET'}")
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
