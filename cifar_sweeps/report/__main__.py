"""python -m cifar_sweeps.report DIR [DIR ...]: write the sweep report (and with --wandb, the W&B Report)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
