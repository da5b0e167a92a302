"""The trained model: prediction, scoring, parameters, save and load."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from . import reference
from ._backends import get_backend
from ._validation import check_X, check_y, encode_labels

FORMAT_VERSION = 1


class Model:
    """A trained multilayer perceptron classifier.

    Attributes: ``classes_`` (the labels, sorted), ``sizes`` (layer widths,
    input to output), ``history`` (per-epoch ``loss``, ``accuracy``,
    ``seconds`` and, with validation data, ``val_loss``, ``val_accuracy``),
    ``device`` (the backend it predicts on: "cpu", "cuda" or "numpy").
    """

    def __init__(self, sizes, params, classes, history=None, *, device="auto", _network=None):
        self.sizes = tuple(int(s) for s in sizes)
        self._flat = np.array(params, dtype=np.float32)
        if self._flat.shape != (reference.num_params(self.sizes),):
            raise ValueError("params do not match the layer sizes")
        self.classes_ = np.asarray(classes)
        if len(self.classes_) != self.sizes[-1]:
            raise ValueError("classes do not match the output layer")
        self.history = history if history is not None else {}
        self._backend = get_backend(device) if _network is None else None
        self._net = _network
        self.device = self._backend.name if _network is None else _network.device

    def __repr__(self):
        widths = "-".join(map(str, self.sizes))
        return f"Model({widths}, classes={len(self.classes_)}, device={self.device!r})"

    @property
    def n_features_in_(self):
        return self.sizes[0]

    @property
    def params(self):
        """Copies of the parameters by name: W1, b1, W2, b2, ..."""
        Ws, bs = reference.layer_views(self._flat.copy(), self.sizes)
        out = {}
        for i, (W, b) in enumerate(zip(Ws, bs), start=1):
            out[f"W{i}"], out[f"b{i}"] = W, b
        return out

    def _network(self):
        if self._net is None:
            self._net = self._backend.network(self.sizes, self._flat)
        return self._net

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes), columns in classes_ order."""
        X = check_X(X, n_features=self.sizes[0])
        net = self._network()
        return net.predict(net.bind(X))

    def predict_logits(self, X):
        X = check_X(X, n_features=self.sizes[0])
        net = self._network()
        return net.predict(net.bind(X), logits=True)

    def predict(self, X):
        """The most probable label of each row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X, y):
        """Accuracy: the fraction of rows whose predicted label is y."""
        X = check_X(X, n_features=self.sizes[0])
        y = check_y(y, X.shape[0])
        return float(np.mean(self.predict(X) == y))

    def evaluate(self, X, y):
        """{"loss": mean cross-entropy, "accuracy": fraction correct}."""
        X = check_X(X, n_features=self.sizes[0])
        y = encode_labels(check_y(y, X.shape[0]), self.classes_)
        net = self._network()
        loss, accuracy = net.evaluate(net.bind(X, y))
        return {"loss": float(loss), "accuracy": float(accuracy)}

    def save(self, path):
        """Writes an .npz file at exactly `path`, atomically: a temporary file
        in the same folder, renamed over the target once complete."""
        classes = np.asarray(self.classes_)
        if classes.dtype == object:
            raise TypeError("classes_ of mixed types cannot be saved without pickle")
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".mlp-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, format=np.array("mlp.Model"), format_version=np.array(FORMAT_VERSION),
                         sizes=np.array(self.sizes, dtype=np.int64), params=self._flat,
                         classes=classes, history=np.array(json.dumps(self.history)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def load(path, device="auto"):
    """A model written by Model.save, ready to predict on `device`."""
    path = os.fspath(path)
    not_a_model = f"path: {path!r} is not a saved mlp model"
    try:
        f = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # not a numpy file at all: zip, pickle, text...
        raise ValueError(f"{not_a_model} ({exc})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{not_a_model} (a single array, not an .npz archive)")
    try:
        with f:
            if "format" not in f.files or str(f["format"]) != "mlp.Model":
                raise ValueError("no mlp.Model marker")
            version = int(f["format_version"])
            if version > FORMAT_VERSION:
                raise ValueError(f"format version {version} is newer than this package's "
                                 f"({FORMAT_VERSION}); upgrade mlp")
            sizes = tuple(int(s) for s in f["sizes"])
            params, classes = f["params"], f["classes"]
            history = json.loads(str(f["history"]))
    except Exception as exc:
        raise ValueError(f"{not_a_model} ({exc})") from None
    if params.dtype != np.float32 or len(sizes) < 2 or min(sizes) < 1 \
            or params.shape != (reference.num_params(sizes),):
        raise ValueError(f"{not_a_model} (inconsistent shapes)")
    return Model(sizes, params, classes, history, device=device)
