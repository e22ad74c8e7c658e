"""The configs, importable as `cifar_sweeps.conf` once installed (setup.cfg maps this folder there),
so an installed package finds them through Hydra's `pkg://cifar_sweeps.conf` search path."""
