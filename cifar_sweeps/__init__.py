"""cifar_sweeps: find the most accurate CIFAR-10 network that fits a parameter budget."""

__version__ = "0.1.0"

from pathlib import Path as _Path

# An installed package holds its configs as the subpackage cifar_sweeps.conf (setup.cfg maps the
# repository's conf/ there). Run from a source checkout, they are at the repository's top: let
# cifar_sweeps.conf resolve to that folder, so both layouts compose the same files.
_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "conf").is_dir() and (_checkout / "conf" / "__init__.py").is_file():
    __path__.append(str(_checkout))
