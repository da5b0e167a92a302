"""The trained model: prediction, scoring, parameters, save and load."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import reference
from ._backends import Backend, Network, get_backend
from ._files import write_atomic
from ._interrupt import raise_interrupt
from ._types import Array, FloatArray, PathLike
from ._validation import check_X, check_y, feature_names

FORMAT_VERSION = 2
LOSS_TASKS = {"cross_entropy": "classifier", "squared_error": "regressor",
              "binary_cross_entropy": "multilabel", "poisson": "regressor"}
PIXEL_SCALE = float(np.float32(1 / 255))


class Model:
    """A trained multilayer perceptron.

    Attributes: ``classes_`` (the labels, sorted; the output indices for
    multi-label; None for regression), ``sizes`` (layer widths, input to
    output), ``activation``, ``loss``, ``task`` ("classifier", "regressor"
    or "multilabel"), ``input_scale`` (every input is read as x *
    input_scale: 1/255 for a model trained on uint8 pixels), ``history``
    (per-epoch ``loss``, ``accuracy``, ``seconds``, ``lr`` and, with
    validation data, ``val_loss``, ``val_accuracy``; ``stopped_epoch``,
    ``stop_reason``, and ``best_epoch`` under early stopping), ``device``
    (the backend it predicts on: "cpu", "cuda" or "numpy").
    """

    def __init__(self, sizes: Sequence[int], params: ArrayLike, classes: ArrayLike | None,
                 history: dict[str, Any] | None = None, *, device: str = "auto",
                 _network: Network | None = None, activation: str = "relu",
                 loss: str = "cross_entropy", input_scale: float | None = 1.0,
                 task: str | None = None, single_output: bool = False,
                 optimizer_state: dict[str, Any] | None = None,
                 feature_names: ArrayLike | None = None) -> None:
        self.sizes = tuple(int(s) for s in sizes)
        self._flat = np.array(params, dtype=np.float32)
        if self._flat.shape != (reference.num_params(self.sizes),):
            raise ValueError("params do not match the layer sizes")
        self.activation, self.loss = activation, loss
        self.task = task or LOSS_TASKS[loss]
        self.classes_: Array | None = None if classes is None else np.asarray(classes)
        if self.classes_ is not None and len(self.classes_) != self.sizes[-1]:
            raise ValueError("classes do not match the output layer")
        # None: a model saved by format version 1, whose inputs were scaled
        # by their dtype at each call (uint8 by 1/255, floats not at all)
        self.input_scale = input_scale
        self.single_output = bool(single_output)
        self.optimizer_state = optimizer_state
        self.feature_names_in_: Array | None = None if feature_names is None else np.asarray(feature_names,
                                                                               dtype=object)
        self.history: dict[str, Any] = history if history is not None else {}
        self._backend: Backend | None = None
        self._nets: dict[float | None, Network] = {}
        if _network is None:
            self._backend = get_backend(device)
            self.device = self._backend.name
        else:
            self._nets[input_scale] = _network
            self.device = _network.device

    def __getstate__(self) -> dict[str, Any]:
        """Pickles and deep copies carry the parameters, not the core objects:
        the network is rebuilt where the copy is used."""
        state = dict(self.__dict__)
        state["_nets"], state["_backend"] = {}, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        try:
            self._backend = get_backend(self.device)
        except RuntimeError:  # that device is not here: whatever "auto" finds
            self._backend = get_backend("auto")
        self.device = self._backend.name

    def __repr__(self) -> str:
        parts = ["-".join(map(str, self.sizes))]
        if self.activation != "relu":
            parts.append(f"activation={self.activation!r}")
        if self.task == "classifier" and self.classes_ is not None:
            parts.append(f"classes={len(self.classes_)}")
        else:
            parts.append(f"loss={self.loss!r}")
        parts.append(f"device={self.device!r}")
        return f"Model({', '.join(parts)})"

    @property
    def n_features_in_(self) -> int:
        return self.sizes[0]

    @property
    def params(self) -> dict[str, FloatArray]:
        """Copies of the parameters by name: W1, b1, W2, b2, ..."""
        Ws, bs = reference.layer_views(self._flat.copy(), self.sizes)
        out: dict[str, FloatArray] = {}
        for i, (W, b) in enumerate(zip(Ws, bs), start=1):
            out[f"W{i}"], out[f"b{i}"] = W, b
        return out

    def _network(self, X: Array) -> Network:
        scale = self.input_scale
        if scale is None:
            scale = PIXEL_SCALE if X.dtype == np.uint8 else 1.0
        if scale not in self._nets:
            backend = self._backend or get_backend(self.device)
            self._backend = backend
            self._nets[scale] = backend.network(self.sizes, self._flat,
                                                activation=self.activation, loss=self.loss,
                                                input_scale=scale)
        return self._nets[scale]

    def _check_X(self, X: Any) -> Array:
        names = feature_names(X)
        if names is not None and self.feature_names_in_ is not None \
                and list(names) != list(self.feature_names_in_):
            raise ValueError(f"X has columns {list(names)[:5]}..., but the model was trained on "
                             f"{list(self.feature_names_in_)[:5]}...: the same columns in the "
                             "same order are needed")
        return check_X(X, n_features=self.sizes[0])

    def _bound(self, X: Any) -> tuple[Network, Any]:
        """X checked and bound to the network for its dtype."""
        X = self._check_X(X)
        net = self._network(X)
        return net, net.bind(X)

    def _outputs(self, X: Any, logits: bool = False) -> FloatArray:
        net, data = self._bound(X)
        return net.predict(data, logits=logits)

    def predict_proba(self, X: Any) -> FloatArray:
        """Class probabilities (n_samples, n_classes), columns in classes_ order;
        for multi-label, each label's probability."""
        if self.task == "regressor":
            raise AttributeError("predict_proba is for classifiers; this model is a regressor")
        return self._outputs(X)

    def predict_logits(self, X: Any) -> FloatArray:
        """The last layer's raw values (n_samples, n_outputs)."""
        return self._outputs(X, logits=True)

    def predict(self, X: Any) -> Array:
        """The most probable label of each row; for multi-label, the 0/1
        indicator matrix; for regression, the outputs ((n,) for a 1-D target)."""
        if self.task == "classifier":  # the core's argmax: no outputs to copy back and scan
            net, data = self._bound(X)
            labels: Array = self._labels()[net.predict_classes(data)]
            return labels
        out = self._outputs(X)
        if self.task == "multilabel":
            return (out > 0.5).astype(np.int64)
        return out[:, 0] if self.single_output else out

    def _labels(self) -> Array:
        if self.classes_ is None:
            raise ValueError("this model has no classes (it is a regressor)")
        return self.classes_

    def score(self, X: Any, y: Any) -> float:
        """Accuracy (classification; for multi-label, rows whose every label is
        right) or R^2 (regression, averaged over the outputs)."""
        X = self._check_X(X)
        if self.task == "classifier":
            y = check_y(y, X.shape[0])
            classes = self._labels()
            if (y.dtype.kind in "US") != (classes.dtype.kind in "US"):
                raise ValueError(f"y holds {'strings' if y.dtype.kind in 'US' else 'numbers'}, "
                                 f"but the model's classes are "
                                 f"{'strings' if classes.dtype.kind in 'US' else 'numbers'}"
                                 f": {list(classes[:5])}")
            return float(np.mean(self.predict(X) == y))
        t = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
        pred = np.asarray(self.predict(X), dtype=np.float64).reshape(X.shape[0], -1)
        if self.task == "multilabel":
            return float(np.mean(np.all(pred == t, axis=1)))
        ss_res = ((t - pred) ** 2).sum(axis=0)
        ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res > 0, 0.0, 1.0))
        return float(np.mean(r2))

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """{"loss": mean loss, "accuracy": fraction correct} (classification,
        multi-label) or {"loss", "r2"} (regression)."""
        from .training import encode_targets
        X = self._check_X(X)
        t, _, _ = encode_targets(y, X.shape[0], self.loss,
                                 self.classes_ if self.task == "classifier" else None)
        net = self._network(X)
        key = "labels" if self.loss == "cross_entropy" else "values"
        loss, accuracy = net.evaluate(net.bind(X, **{key: t}))
        if self.task == "regressor":
            return {"loss": float(loss), "r2": self.score(X, y)}
        return {"loss": float(loss), "accuracy": float(accuracy)}

    def to_torch(self) -> Any:
        """A torch.nn.Sequential (in eval mode) computing predict_proba's outputs
        (for regression, predict's), from float32 inputs; needs PyTorch."""
        from .torch_reference import export
        return export(self)

    def to_onnx(self, path: PathLike) -> None:
        """Writes the network as an ONNX graph (input "X" float32 (N, D), output
        "Y": predict_proba's outputs, or the regression outputs); needs the
        onnx package."""
        try:
            from . import onnx_export
            onnx_export.save(self, path)
        except ImportError as exc:
            raise_interrupt(exc)
            raise ImportError(f"Model.to_onnx needs the onnx package ({exc}): pip install "
                              "onnx") from None

    def save(self, path: PathLike) -> None:
        """Writes an .npz file at exactly `path`, atomically: a temporary file
        in the same folder, renamed over the target once complete."""
        classes = np.asarray(self.classes_) if self.classes_ is not None else np.zeros(0)
        if classes.dtype == object:
            raise TypeError("classes_ of mixed types cannot be saved without pickle")
        config = dict(activation=self.activation, loss=self.loss, task=self.task,
                      input_scale=self.input_scale, single_output=self.single_output,
                      feature_names=None if self.feature_names_in_ is None
                      else [str(n) for n in self.feature_names_in_])
        arrays: dict[str, Array] = dict(format=np.array("mlp.Model"), format_version=np.array(FORMAT_VERSION),
                      sizes=np.array(self.sizes, dtype=np.int64), params=self._flat,
                      classes=classes, history=np.array(json.dumps(self.history)),
                      config=np.array(json.dumps(config)))
        if self.optimizer_state is not None:
            arrays["optimizer_state"] = np.asarray(self.optimizer_state["state"], np.float32)
            arrays["optimizer"] = np.array(json.dumps(
                {"name": self.optimizer_state["name"], "steps": self.optimizer_state["steps"]}))
        write_atomic(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


# what a model file may hold besides the parameters: small members, read whole
SMALL_MEMBER_BYTES = 1 << 26


class _ModelFile:
    """The members of a model's .npz, each checked from its .npy header (shape,
    dtype, byte order, and the size the archive says it decompresses to)
    before any of its data is read, so that a file declaring more than it
    should is refused without decompressing it."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.members = {name[:-4]: name for name in zf.namelist() if name.endswith(".npy")}

    def header(self, key: str) -> tuple[zipfile.ZipInfo, tuple[int, ...], np.dtype[Any], int]:
        if key not in self.members:
            raise ValueError(f"no {key!r} member")
        info = self.zf.getinfo(self.members[key])
        with self.zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
        if fortran and len(shape) > 1:
            raise ValueError(f"{key} is stored in Fortran order")
        return info, shape, dtype, offset

    def read(self, key: str, shape: tuple[int, ...] | None = None, dtype: DTypeLike | None = None,
             max_bytes: int = SMALL_MEMBER_BYTES) -> Array:
        info, got_shape, got_dtype, offset = self.header(key)
        if dtype is not None and got_dtype != np.dtype(dtype):
            raise ValueError(f"{key} is {got_dtype.str} ({got_dtype}), expected "
                             f"{np.dtype(dtype).str}: little-endian {np.dtype(dtype)}")
        if shape is not None and tuple(got_shape) != tuple(shape):
            raise ValueError(f"{key} has shape {tuple(got_shape)}, the layer sizes need "
                             f"{tuple(shape)}")
        if got_dtype.hasobject:
            raise ValueError(f"{key} holds Python objects, which a model file never does")
        nbytes = int(np.prod(got_shape, dtype=object)) * got_dtype.itemsize
        if nbytes > max_bytes or info.file_size != offset + nbytes:
            raise ValueError(f"{key} declares {nbytes} bytes of data, but the archive "
                             f"holds {info.file_size - offset}")
        with self.zf.open(info) as f:
            f.seek(offset)
            data = f.read(nbytes)
        return np.frombuffer(data, dtype=got_dtype).reshape(got_shape)

    def text(self, key: str) -> str:
        value = self.read(key)
        if value.dtype.kind != "U" or value.shape != ():
            raise ValueError(f"{key} is not a string")
        return str(value)


def load(path: PathLike, device: str = "auto") -> Model:
    """A model written by Model.save (any format version up to this one),
    ready to predict on `device`. Everything in the file is checked before
    it is used, and nothing large is read before its declared shape and type
    are checked against the layer sizes."""
    path = os.fsdecode(os.fspath(path))
    not_a_model = f"path: {path!r} is not a saved mlp model"
    try:
        zf = zipfile.ZipFile(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # not a zip, or one zipfile cannot read (NotImplementedError...)
        raise ValueError(f"{not_a_model} ({type(exc).__name__}: {exc})") from None
    try:
        with zf:
            fields = _read_fields(_ModelFile(zf))
    except Exception as exc:  # every way a file can be wrong: one message
        raise ValueError(f"{not_a_model} ({exc})") from None
    return Model(**fields, device=device)


def _read_fields(f: _ModelFile) -> dict[str, Any]:
    if f.text("format") != "mlp.Model":
        raise ValueError("no mlp.Model marker")
    version = int(f.read("format_version"))
    if version > FORMAT_VERSION:
        raise ValueError(f"format version {version} is newer than this package's "
                         f"({FORMAT_VERSION}); upgrade mlp")
    sizes_array = f.read("sizes", max_bytes=8 * 64)
    if sizes_array.dtype.kind not in "iu" or sizes_array.ndim != 1 or len(sizes_array) < 2:
        raise ValueError(f"sizes must be at least 2 integers, got {sizes_array!r}")
    sizes = tuple(int(s) for s in sizes_array)
    if min(sizes) < 1 or max(sizes) > 2 ** 40:
        raise ValueError(f"layer sizes {sizes} are outside [1, 2^40]")
    n = reference.num_params(sizes)
    params = f.read("params", (n,), "<f4", max_bytes=4 * n)
    if not np.isfinite(params).all():
        raise ValueError("the parameters are not all finite")
    if version >= 2:
        config = json.loads(f.text("config"))
    else:
        config = dict(activation="relu", loss="cross_entropy", task="classifier",
                      input_scale=None, single_output=False)
    if config.get("activation") not in reference.ACTIVATIONS \
            or config.get("loss") not in reference.LOSSES \
            or config.get("task") != LOSS_TASKS[config["loss"]]:
        raise ValueError(f"unknown configuration {config}")
    scale = config.get("input_scale")
    if scale is not None and not (isinstance(scale, (int, float)) and 0 < scale < float("inf")):
        raise ValueError(f"input_scale must be a positive number, got {scale!r}")
    stored = f.read("classes")
    classes: Array | None = None
    if config["task"] == "regressor":
        pass
    elif len(stored) != sizes[-1] or stored.ndim != 1:
        raise ValueError(f"{len(stored)} classes for {sizes[-1]} outputs")
    elif len(np.unique(stored)) != len(stored) or not np.all(stored[:-1] < stored[1:]):
        raise ValueError("the classes are not sorted and unique")
    else:
        classes = stored
    optimizer_state = None
    if "optimizer_state" in f.members:
        meta = json.loads(f.text("optimizer"))
        state = f.read("optimizer_state", (2 * n,), "<f4", max_bytes=8 * n)
        optimizer_state = dict(name=str(meta["name"]), steps=int(meta["steps"]), state=state)
    return dict(sizes=sizes, params=params, classes=classes,
                history=json.loads(f.text("history")), activation=config["activation"],
                loss=config["loss"], input_scale=scale, task=config["task"],
                single_output=bool(config.get("single_output", False)),
                optimizer_state=optimizer_state, feature_names=config.get("feature_names"))
