"""The model zoo: one module per write-up architecture. Each model takes `norm` (a factory
`channels -> nn.Module`, from the `norm` config group) and returns raw logits."""

from .dilated_c4 import DilatedC4

__all__ = ["DilatedC4"]
