"""cifar_sweeps: find the most accurate CIFAR-10 network that fits a parameter budget."""

__version__ = "0.1.0"
