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


_ESTIMATORS = ("MLPClassifier", "MLPRegressor")


def __getattr__(name):
    """mlp.MLPClassifier and mlp.MLPRegressor, imported when first used: they
    need scikit-learn, which mlp.train does not."""
    if name in _ESTIMATORS:
        try:
            from . import estimators
        except ImportError as exc:
            raise ImportError(f"mlp.{name} needs scikit-learn and scipy ({exc}): install the "
                              "package's 'sklearn' extra, or pip install scikit-learn scipy") \
                from None
        return getattr(estimators, name)
    raise AttributeError(f"module 'mlp' has no attribute {name!r}")


__all__ = ["DEVICES", "MLPClassifier", "MLPRegressor", "Model", "available_devices", "datasets",
           "load", "train", "__version__"]
