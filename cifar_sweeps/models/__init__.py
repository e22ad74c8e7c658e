"""The model zoo: one module per write-up architecture. Each model takes `norm` (a factory
`channels -> nn.Module`, from the `norm` config group) and returns raw logits."""

from .advanced_c4 import AdvancedC4
from .airnet import AirNet
from .dilated_c4 import DilatedC4
from .resnet18 import ResNet18
from .s8_net import S8Net
from .skip_s8 import SkipS8

__all__ = ["AdvancedC4", "AirNet", "DilatedC4", "ResNet18", "S8Net", "SkipS8"]
