"""Where a network runs: the C core, the CUDA core or the numpy reference,
each behind the same small interface (bind, train_epoch, predict, evaluate,
get_params)."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Union

import numpy as np

from . import reference
from ._interrupt import raise_interrupt
from ._types import Array, FloatArray

EpochResult = tuple[FloatArray, float, float]

DEVICES = ("auto", "cpu", "cuda", "numpy")


def _import_core(name: str) -> Any:
    """The compiled core `name`, or None where it cannot be loaded (not
    built, or its libraries missing). A Ctrl-C during the import can come out
    of an extension module's initialization as an ImportError; that one is
    the interrupt again, not a missing core."""
    try:
        return importlib.import_module(f"mlp.{name}")
    except ImportError as exc:
        raise_interrupt(exc)
        return None


def cuda_unavailable_reason() -> str | None:
    """None when the CUDA core is built and a usable GPU is present, else why not."""
    module = _import_core("_cuda")
    if module is None:
        return ("the CUDA core was not built: no CUDA compiler was found when the package was "
                "installed (reinstall with nvcc on PATH, or with MLP_CUDA=ON to make that an error)")
    try:
        module.device_check()
    except module.DeviceUnavailable as exc:
        return str(exc)
    return None


def available_devices() -> list[str]:
    """The device names that can run here, in the order "auto" prefers them."""
    devices = ["cpu", "numpy"]
    if cuda_unavailable_reason() is None:
        devices.insert(0, "cuda")
    return devices


def get_backend(device: str) -> Backend:
    """The backend for a device name; "auto" is CUDA where it can run, else the C core."""
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))}, got {device!r}")
    if device == "numpy":
        return NumpyBackend()
    if device in ("cuda", "auto"):
        reason = cuda_unavailable_reason()
        if reason is None:
            return CoreBackend(_import_core("_cuda"))
        if device == "cuda":
            raise RuntimeError(f"device='cuda' is not available: {reason}")
    module = _import_core("_cpu")
    if module is None:
        raise ImportError("the C core (mlp._cpu) is missing: install the package with "
                          "'pip install .' rather than importing it from the source tree")
    return CoreBackend(module)


class CoreBackend:
    """A compiled core (mlp._cpu or mlp._cuda), both wrapped by mlp/_core.pxi."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.name: str = module.BACKEND

    def network(self, sizes: Sequence[int], params: Array, **config: Any) -> CoreNetwork:
        return CoreNetwork(self.module, sizes, params, **config)


class CoreNetwork:
    """One network in a core. The core releases the GIL and keeps a workspace
    per network, so calls on the same network from several threads take
    turns (a lock); different networks run in parallel.

    config: activation, loss, input_scale (csrc/mlp.h's mlp_config)."""

    def __init__(self, module: ModuleType, sizes: Sequence[int], params: Array,
                 activation: str = "relu", loss: str = "cross_entropy",
                 input_scale: float = 1.0) -> None:
        self.module = module
        self.device: str = module.BACKEND
        self.model = module.Model(sizes, activation, loss, input_scale)
        self.model.set_params(np.ascontiguousarray(params, dtype=np.float32))
        self.lock = threading.Lock()

    def bind(self, X: Array, labels: Array | None = None, values: Array | None = None,
             sample_weight: Array | None = None) -> Any:
        return self.module.Data(X, labels, values, sample_weight)

    def set_threads(self, n_threads: int) -> None:
        self.model.set_threads(n_threads)

    def request_stop(self) -> None:
        """Ends the running epoch after the batch in hand (any thread, no lock)."""
        self.model.request_stop()

    def train_epoch(self, data: Any, order: Array, batch_size: int,
                    opt: dict[str, Any]) -> EpochResult:
        with self.lock:
            result: EpochResult = self.model.train_epoch(data, order, batch_size, opt)
        return result

    def loss_and_grad(self, data: Any, opt: dict[str, Any]) -> tuple[float, FloatArray]:
        with self.lock:
            result: tuple[float, FloatArray] = self.model.loss_and_grad(data, opt)
        return result

    def predict(self, data: Any, logits: bool = False) -> FloatArray:
        with self.lock:
            out: FloatArray = self.model.predict(data, logits)
        return out

    def predict_classes(self, data: Any) -> Array:
        with self.lock:
            out: Array = self.model.predict_classes(data)
        return out

    def evaluate(self, data: Any) -> tuple[float, float]:
        with self.lock:
            result: tuple[float, float] = self.model.evaluate(data)
        return result

    def get_params(self) -> FloatArray:
        with self.lock:
            params: FloatArray = self.model.get_params()
        return params

    def set_params(self, params: Array) -> None:
        with self.lock:
            self.model.set_params(np.ascontiguousarray(params, dtype=np.float32))

    def get_state(self) -> tuple[FloatArray, int]:
        with self.lock:
            state: tuple[FloatArray, int] = self.model.get_state()
        return state

    def set_state(self, state: Array, steps: int) -> None:
        with self.lock:
            self.model.set_state(np.ascontiguousarray(state, dtype=np.float32), steps)


class NumpyBackend:
    """The numpy reference (mlp/reference.py) in float32."""

    name = "numpy"

    def network(self, sizes: Sequence[int], params: Array, **config: Any) -> NumpyNetwork:
        return NumpyNetwork(sizes, params, **config)


class NumpyNetwork:
    device = "numpy"

    def __init__(self, sizes: Sequence[int], params: Array, activation: str = "relu",
                 loss: str = "cross_entropy", input_scale: float = 1.0) -> None:
        self.ref = reference.Reference(sizes, params, np.float32, activation, loss, input_scale)

    def bind(self, X: Array, labels: Array | None = None, values: Array | None = None,
             sample_weight: Array | None = None) -> Any:
        return (X, labels if labels is not None else values, sample_weight)

    def set_threads(self, n_threads: int) -> None:
        pass  # numpy's BLAS keeps its own threads

    def request_stop(self) -> None:
        self.ref.stop_requested = True

    def train_epoch(self, data: Any, order: Array, batch_size: int,
                    opt: dict[str, Any]) -> EpochResult:
        X, t, w = data
        losses, mean_loss, accuracy = self.ref.train_epoch(X, t, order, batch_size, opt, w)
        return losses.astype(np.float32), mean_loss, accuracy

    def loss_and_grad(self, data: Any, opt: dict[str, Any]) -> tuple[float, FloatArray]:
        X, t, w = data
        return self.ref.loss_and_grad(X, t, opt, w)

    def predict(self, data: Any, logits: bool = False) -> FloatArray:
        return self.ref.predict(data[0], want_logits=logits)

    def predict_classes(self, data: Any) -> Array:
        logits: FloatArray = self.ref.predict(data[0], want_logits=True)
        classes: Array = np.argmax(logits, axis=1).astype(np.int32)
        return classes

    def evaluate(self, data: Any) -> tuple[float, float]:
        return self.ref.evaluate(*data)

    def get_params(self) -> FloatArray:
        return np.array(self.ref.params, dtype=np.float32)

    def set_params(self, params: Array) -> None:
        self.ref.params[...] = params
        self.ref.m[...] = 0
        self.ref.v[...] = 0
        self.ref.steps = 0

    def get_state(self) -> tuple[FloatArray, int]:
        return np.concatenate([self.ref.m, self.ref.v]), self.ref.steps

    def set_state(self, state: Array, steps: int) -> None:
        n = len(self.ref.params)
        self.ref.m[...], self.ref.v[...] = state[:n], state[n:]
        self.ref.steps = int(steps)


Backend = Union[CoreBackend, NumpyBackend]
Network = Union[CoreNetwork, NumpyNetwork]
