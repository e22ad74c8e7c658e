"""The model zoo: one module per write-up architecture. Each model takes `norm` (a factory
`channels -> nn.Module`, from the `norm` config group) and returns raw logits."""

from .airnet import AirNet
from .dilated_c4 import DilatedC4
from .skip_s8 import SkipS8

__all__ = ["AirNet", "DilatedC4", "SkipS8"]
