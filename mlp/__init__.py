"""mlp: multilayer perceptrons trained by a dependency-free C core, a CUDA
core, or the numpy reference, from one plain Python API.

    >>> import mlp
    >>> model = mlp.train(X, y)          # doctest: +SKIP
    >>> model.predict(X)                 # doctest: +SKIP

The names below are imported when first used, so that `import mlp` is
quick (the command line installs its Ctrl-C handler before numpy loads).
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_NAMES = {
    "train": "training", "TrainingDiverged": "training",
    "Model": "model", "load": "model",
    "DEVICES": "_backends", "available_devices": "_backends",
    "MLPClassifier": "estimators", "MLPRegressor": "estimators",
}
_SUBMODULES = ("datasets", "schedules", "optimizers", "reference", "training", "model")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name not in _NAMES:
        raise AttributeError(f"module 'mlp' has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{_NAMES[name]}", __name__)
    except ImportError as exc:
        if _NAMES[name] != "estimators":
            raise
        from ._interrupt import raise_interrupt
        raise_interrupt(exc)
        raise ImportError(f"mlp.{name} needs scikit-learn and scipy ({exc}): install the "
                          "package's 'sklearn' extra, or pip install scikit-learn scipy") \
            from None
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_NAMES) + list(_SUBMODULES))


__all__ = ["DEVICES", "MLPClassifier", "MLPRegressor", "Model", "TrainingDiverged",
           "available_devices", "datasets", "load", "train", "__version__"]
