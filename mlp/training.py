"""mlp.train: validate once, draw the random state once, train on a backend."""

from __future__ import annotations

import time
import warnings

import numpy as np

from . import reference
from ._backends import get_backend
from ._validation import (check_hidden, check_positive_int, check_real, check_seed, check_X,
                          check_y, encode_labels)
from .model import Model


def initial_state(sizes, n_samples, epochs, seed=0, shuffle=True):
    """Everything random in training, drawn from `seed` in this one place:
    the He-initialised flat parameters and one row order per epoch. Every
    backend starts from these, so all of them see the same weights and batches."""
    rng = np.random.default_rng(seed)
    params = reference.init_params(sizes, rng)
    if shuffle:
        orders = [rng.permutation(n_samples).astype(np.int64) for _ in range(epochs)]
    else:
        orders = [np.arange(n_samples, dtype=np.int64)] * epochs
    return params, orders


def train(X, y, *, hidden=256, epochs=10, batch_size=64, lr=0.1, momentum=0.0,
          weight_decay=0.0, seed=0, shuffle=True, device="auto", validation_data=None,
          verbose=False, on_progress=None, on_epoch=None):
    """Train a multilayer perceptron classifier and return a Model.

    X: (n_samples, n_features) array, uint8 pixels (scaled by 1/255 inside
    the core, never copied to floats) or real numbers (float32, others
    converted once). y: (n_samples,) labels of any kind; ``classes_`` holds
    them sorted. hidden: the hidden layer's width, or a tuple of widths.
    Minibatch SGD on the batch-mean softmax cross-entropy; the last partial
    batch is kept. device: "auto" (CUDA when built and a GPU is present, else
    the C core), "cpu", "cuda" or "numpy" (the reference).
    validation_data: optional (X_val, y_val), evaluated after every epoch.
    on_progress: optional callable(epoch, rows_done, n_rows), called during
    each epoch (which then runs in about 50 parts) and after it.
    on_epoch: optional callable(epoch, history), called after each epoch.
    """
    X = check_X(X)
    y = check_y(y, X.shape[0])
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y must hold at least 2 classes, got {len(classes)}")
    hidden = check_hidden(hidden)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_real(lr, "lr", positive=True)
    momentum = check_real(momentum, "momentum")
    weight_decay = check_real(weight_decay, "weight_decay")
    seed = check_seed(seed)
    for name, fn in (("on_progress", on_progress), ("on_epoch", on_epoch)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable")
    backend = get_backend(device)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        X_val = check_X(validation_data[0], "validation_data[0]", n_features=X.shape[1])
        y_val = check_y(validation_data[1], X_val.shape[0], "validation_data[1]")
        val = (X_val, encode_labels(y_val, classes, "validation_data[1]"))

    sizes = (X.shape[1], *hidden, len(classes))
    params, orders = initial_state(sizes, X.shape[0], epochs, seed, bool(shuffle))
    net = backend.network(sizes, params)
    data = net.bind(X, y_idx.reshape(-1).astype(np.int32))
    val_data = net.bind(*val) if val is not None else None

    history = {"loss": [], "accuracy": [], "seconds": []}
    if val is not None:
        history.update(val_loss=[], val_accuracy=[])
    for epoch, order in enumerate(orders, start=1):
        start = time.perf_counter()
        loss, accuracy = _run_epoch(net, data, order, batch_size, lr, momentum, weight_decay,
                                    on_progress, epoch)
        seconds = time.perf_counter() - start
        history["loss"].append(float(loss))
        history["accuracy"].append(float(accuracy))
        history["seconds"].append(seconds)
        line = (f"epoch {epoch:3d}/{epochs}  loss {loss:.4f}  accuracy {accuracy:.4f}  "
                f"{seconds:.3f} s")
        if val_data is not None:
            val_loss, val_accuracy = net.evaluate(val_data)
            history["val_loss"].append(float(val_loss))
            history["val_accuracy"].append(float(val_accuracy))
            line += f"  val_loss {val_loss:.4f}  val_accuracy {val_accuracy:.4f}"
        if verbose:
            print(line, flush=True)
        if on_epoch is not None:
            on_epoch(epoch, history)
        if not np.isfinite(loss):
            warnings.warn(f"training diverged at epoch {epoch} (loss is {loss}); "
                          "try a smaller lr", RuntimeWarning, stacklevel=2)
            break
    return Model(sizes, net.get_params(), classes, history, _network=net)


def _run_epoch(net, data, order, batch_size, lr, momentum, weight_decay, on_progress, epoch):
    """One epoch in one call to the core, or, for progress reports, in parts
    of whole batches (the same batches and the same result either way)."""
    if on_progress is None:
        _, loss, accuracy = net.train_epoch(data, order, batch_size, lr, momentum, weight_decay)
        return loss, accuracy
    n = len(order)
    batches = -(-n // batch_size)
    part = -(-batches // min(batches, 50)) * batch_size
    loss_sum = hits = 0.0
    for start in range(0, n, part):
        rows = order[start:start + part]
        _, loss, accuracy = net.train_epoch(data, rows, batch_size, lr, momentum, weight_decay)
        loss_sum += loss * len(rows)
        hits += round(accuracy * len(rows))
        on_progress(epoch, start + len(rows), n)
    return loss_sum / n, hits / n
