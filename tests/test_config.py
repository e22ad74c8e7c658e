"""Every option of every config group composes, and what it describes builds."""

from __future__ import annotations

import pytest
import torch

from cifar_sweeps.augment import build_albumentations, build_tensor_pipeline
from cifar_sweeps.build import build_model, build_optimizer, build_scheduler, count_params, instantiate_group

from cifar_sweeps.best import as_overrides, ranked_trials
from conftest import CONF_DIR, ROOT, compose_cfg
from omegaconf import OmegaConf


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


MODELS, NORMS = options("model"), options("norm")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("norm", NORMS)
def test_every_model_builds_with_every_norm(model, norm):
    cfg = compose_cfg([f"model={model}", f"norm={norm}"])
    with torch.device("meta"):
        net = build_model(cfg)
        out = net(torch.empty(2, 3, 32, 32))
    assert tuple(out.shape) == (2, 10)
    # the norm never changes the count: BN, GN and LN all have 2*C affine parameters
    assert count_params(cfg) == count_params(compose_cfg([f"model={model}", "norm=bn"]))


@pytest.mark.parametrize("name", options("optimizer"))
def test_optimizers_build(name):
    cfg = compose_cfg([f"optimizer={name}", "model=airnet"])
    opt = build_optimizer(cfg, build_model(cfg))
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("name", options("scheduler"))
def test_schedulers_get_their_length_from_the_data(name):
    cfg = compose_cfg([f"scheduler={name}", "model=airnet", "epochs=3"])
    opt = build_optimizer(cfg, build_model(cfg))
    sched, interval = build_scheduler(cfg, opt, steps_per_epoch=7, epochs=3)
    if name == "none":
        assert sched is None
    elif name == "onecycle":
        assert interval == "step" and sched.total_steps == 21
    elif name == "cosine":
        assert interval == "step" and sched.T_max == 21


@pytest.mark.parametrize("name", options("augment"))
def test_augment_options_build_on_their_backend(name):
    cfg = compose_cfg([f"augment={name}"])
    batch = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    if cfg.augment.backend == "tensor":
        out = build_tensor_pipeline(cfg.augment, cfg.data.mean)(batch, torch.Generator().manual_seed(0))
        assert out.shape == batch.shape and out.dtype == torch.uint8
    else:
        out = build_albumentations(cfg.augment, cfg.data.mean, seed=0)(image=batch[0].numpy())["image"]
        assert out.shape == (32, 32, 3)


@pytest.mark.parametrize("name", options("logger"))
def test_loggers_build(name):
    cfg = compose_cfg([f"logger={name}"])
    logger = instantiate_group("logger", cfg.logger)
    assert hasattr(logger, "log_epoch") and hasattr(logger, "finish")


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_presets_compose_and_count(name):
    cfg = compose_cfg([f"+experiment={name}"])
    assert count_params(cfg) > 0


# names starting with "_" are building blocks, composed by the searches that include them
@pytest.mark.parametrize("name", [n for n in options("hparams_search") if not n.startswith("_")])
def test_searches_compose(name):
    cfg = compose_cfg([f"hparams_search={name}"])
    assert cfg.model is not None


@pytest.mark.parametrize("budget", ["50k", "100k", "200k"])
def test_best_presets_are_the_stored_search_winners(budget):
    # results/airnet_full_h100 holds the studies that chose the presets: each preset must be exactly the
    # winning trial (what `python -m cifar_sweeps.best` prints) trained on all images, with the TTA chosen
    # on validation afterwards (tta_choice/) and, at 50k, the late max-pool chosen on validation after
    # that (README "Results"), so its figure is reproducible
    storage = f"sqlite:///{ROOT / 'results' / 'airnet_full_h100' / f'search_{budget}' / 'optuna.db'}"
    winner = ranked_trials(storage, f"airnet_full_{budget}")[0]
    chosen_after_search = ["tta_translate=true"] + (["model.pool=late"] if budget == "50k" else [])
    final = compose_cfg([f"hparams_search=airnet_full_{budget}", *as_overrides(winner.params).split(),
                         "data.val_size=0", "objective=test_acc", *chosen_after_search])
    preset = compose_cfg([f"+experiment=best_{budget}"])

    def job(cfg):  # what trains: the search space and the pruner act only inside a sweep
        return {k: v for k, v in OmegaConf.to_container(cfg).items() if k not in ("search", "pruner", "save_model")}

    assert job(preset) == job(final)


def test_cpu_speedrun_is_best_50k_recipe_on_a_wider_net_with_the_faster_early_pool():
    # the speedrun inherits best_50k's recipe but not its late pool (~1.9x the time per epoch here) nor its
    # parameter budget: its width was chosen on validation for 10 minutes of a 2-core CPU. A change to
    # best_50k must not silently slow down the 10-minute run
    speedrun, best = compose_cfg(["+experiment=cpu_speedrun"]), compose_cfg(["+experiment=best_50k"])
    assert (speedrun.model.pool, best.model.pool) == ("early", "late")
    assert speedrun.optimizer == best.optimizer and speedrun.augment == best.augment
    assert (speedrun.model.width, best.model.width) == (48, 18)
    assert (count_params(speedrun), count_params(best)) == (323_640, 48_660)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_onecycle_with_a_one_step_warmup_just_trains(steps):
    # pct_start x steps = 1 makes torch's OneCycleLR divide by zero; a smoke run must simply train
    cfg = compose_cfg(["scheduler=onecycle", f"scheduler.pct_start={1 / steps}", "model=airnet"])
    opt = build_optimizer(cfg, build_model(cfg))
    sched, _ = build_scheduler(cfg, opt, steps_per_epoch=steps, epochs=1)
    lrs = []
    for _ in range(steps):
        opt.step()
        sched.step() if len(lrs) < steps - 1 else None
        lrs.append(opt.param_groups[0]["lr"])
    assert all(lr > 0 for lr in lrs)


def test_budget_searches_prune_by_default_and_the_rest_do_not():
    # chosen from docs/pruning.md's measurement; pareto has two objectives, which pruning cannot serve
    def pruner(*overrides):
        return compose_cfg(list(overrides)).pruner._target_.rsplit(".", 1)[-1]

    assert pruner("hparams_search=budget_50k") == pruner("hparams_search=airnet_full_200k") == "MedianPruner"
    assert pruner("hparams_search=budget_50k", "pruner=none") == "NopPruner"
    assert pruner("hparams_search=pareto") == pruner() == "NopPruner"
