"""mlp: multilayer perceptrons trained by a dependency-free C core, a CUDA
core, or the numpy reference, from one plain Python API.

    >>> import mlp
    >>> model = mlp.train(X, y)          # doctest: +SKIP
    >>> model.predict(X)                 # doctest: +SKIP
"""

from . import datasets
from ._backends import DEVICES, cuda_unavailable_reason
from .model import Model, load
from .training import train

__version__ = "0.1.0"


def available_devices():
    """The device names that can run here, in the order "auto" prefers them."""
    devices = ["cpu", "numpy"]
    if cuda_unavailable_reason() is None:
        devices.insert(0, "cuda")
    return devices


__all__ = ["DEVICES", "Model", "available_devices", "datasets", "load", "train", "__version__"]
