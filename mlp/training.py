"""mlp.train: validate once, draw the random state once, train on a backend."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from . import reference
from ._backends import Network, get_backend
from ._types import Array, FloatArray
from ._validation import (check_classes, check_hidden, check_positive_int, check_real,
                          check_seed, check_X, check_y, encode_labels, feature_names)
from .model import LOSS_TASKS, Model
from .optimizers import make_optimizer
from .schedules import Schedule, make_schedule

T = TypeVar("T")

ACTIVATIONS = tuple(reference.ACTIVATIONS)
LOSSES = tuple(reference.LOSSES)
WEIGHT_INITS = ("auto", "he", "glorot")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: no model comes back. ``epoch`` is the
    epoch it happened in, ``loss`` the loss it reached."""

    def __init__(self, message: str, epoch: int, loss: float) -> None:
        super().__init__(message)
        self.epoch, self.loss = epoch, loss


def init_scheme(weight_init: str, activation: str) -> str:
    """He for ReLU and GELU, Glorot for the others, unless asked otherwise."""
    if weight_init != "auto":
        return weight_init
    return "he" if activation in ("relu", "gelu") else "glorot"


def epoch_orders(rng: np.random.Generator, n_samples: int, epochs: int,
                 shuffle: bool = True) -> Iterator[Array]:
    """One row order per epoch, drawn from rng as each epoch starts (memory
    does not grow with epochs)."""
    for _ in range(epochs):
        yield rng.permutation(n_samples).astype(np.int64) if shuffle else \
            np.arange(n_samples, dtype=np.int64)


def initial_params(sizes: Sequence[int], seed: int = 0, activation: str = "relu",
                   weight_init: str = "auto") -> tuple[FloatArray, np.random.Generator]:
    """The initial flat parameters drawn from `seed`, and the generator that
    the row orders are drawn from next."""
    rng = np.random.default_rng(seed)
    return reference.init_params(sizes, rng, init_scheme(weight_init, activation), activation), rng


def initial_state(sizes: Sequence[int], n_samples: int, epochs: int, seed: int = 0,
                  shuffle: bool = True, activation: str = "relu",
                  weight_init: str = "auto") -> tuple[FloatArray, list[Array]]:
    """Everything random in training, drawn from `seed` in this one place:
    the initial flat parameters and one row order per epoch. Every backend
    starts from these, so all of them see the same weights and batches
    (mlp.train draws the same, each epoch's order as the epoch starts)."""
    params, rng = initial_params(sizes, seed, activation, weight_init)
    return params, list(epoch_orders(rng, n_samples, epochs, shuffle))


def encode_targets(y: Any, n_samples: int, loss: str, classes: Array | None = None,
                   name: str = "y") -> tuple[Array, Array | None, bool]:
    """(what the core trains on, classes_ or None, whether y was 1-D) for a loss:
    class indices for cross_entropy; float32 values (n, k) for the others."""
    if loss == "cross_entropy":
        y = check_classes(check_y(y, n_samples, name), name)
        if classes is None:
            classes, idx = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(f"{name} must hold at least 2 classes, got {len(classes)}")
        else:
            idx = encode_labels(y, classes, name)
        return idx.reshape(-1).astype(np.int32), classes, True
    arr = np.asarray(y)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers for loss={loss!r}, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2) or arr.shape[0] != n_samples:
        raise ValueError(f"{name} must have shape (n_samples,) or (n_samples, n_outputs) with "
                         f"n_samples = {n_samples}, got {arr.shape}")
    values = np.ascontiguousarray(arr.reshape(n_samples, -1), dtype=np.float32)
    if values.shape[1] == 0:
        raise ValueError(f"{name} has no outputs: shape {arr.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinity (or values too large for float32)")
    if loss == "poisson" and (values < 0).any():
        raise ValueError(f"{name} must be counts >= 0 for loss='poisson'")
    if loss == "binary_cross_entropy" and not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"{name} must be a 0/1 indicator matrix for "
                         "loss='binary_cross_entropy'")
    out_classes = np.arange(values.shape[1]) if loss == "binary_cross_entropy" else None
    return values, out_classes, arr.ndim == 1


def _check_sample_weight(sample_weight: Any, n: int) -> FloatArray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "fiub" or w.shape != (n,):
        raise ValueError(f"sample_weight must be {n} numbers, one per row, got shape {w.shape} "
                         f"of dtype {w.dtype}")
    w = np.ascontiguousarray(w, dtype=np.float32)
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError("sample_weight must be finite and >= 0")
    if not w.sum() > 0:
        raise ValueError("sample_weight must not be all zero")
    return w


def _split_validation(n: int, fraction: float, labels: Array | None,
                      seed: int) -> tuple[Array, Array]:
    """Row indices (train, validation): `fraction` held out, stratified by
    class when labels are given; drawn from its own generator so that the
    weights and batches stay those of `seed`."""
    rng = np.random.default_rng([seed, 1])
    if labels is None:
        perm = rng.permutation(n)
        k = max(1, int(round(fraction * n)))
        return np.sort(perm[k:]), np.sort(perm[:k])
    parts = []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        parts.append(rows[:int(round(fraction * len(rows)))])
    val = np.sort(np.concatenate(parts))
    if len(val) == 0:
        val = np.sort(rng.permutation(n)[:1])
    train = np.setdiff1d(np.arange(n), val)
    if len(train) == 0:
        raise ValueError("validation_fraction leaves no rows to train on")
    return train, val


def train(X: Any, y: Any, *, hidden: int | tuple[int, ...] | list[int] = 256,
          activation: str = "relu", loss: str = "cross_entropy", epochs: int = 10,
          batch_size: int = 64, optimizer: str = "sgd", lr: float | None = None,
          momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
          lr_schedule: str | Schedule = "constant", early_stopping: bool = False,
          validation_fraction: float = 0.1, n_iter_no_change: int = 10, tol: float = 1e-4,
          weight_init: str = "auto", init: Model | None = None, sample_weight: Any = None,
          seed: int = 0, shuffle: bool = True, device: str = "auto",
          validation_data: tuple[Any, Any] | None = None, verbose: bool = False,
          on_progress: Callable[[int, int, int], object] | None = None,
          on_epoch: Callable[[int, dict[str, Any]], object] | None = None) -> Model:
    """Train a multilayer perceptron and return a Model.

    X: (n_samples, n_features) array or numeric DataFrame (its column names
    are kept as feature_names_in_), uint8 pixels (read as x / 255 inside
    the core, never copied to floats; the model keeps that scale) or real
    numbers (float32, others converted once).
    y: for loss="cross_entropy" (classification, the default), labels of any
    kind (``classes_`` holds them sorted); for "squared_error" (regression,
    identity outputs), float targets (n,) or (n, k); for
    "binary_cross_entropy" (multi-label, logistic outputs), a 0/1 indicator
    matrix (n, k); for "poisson" (regression of counts, exp outputs), targets
    >= 0.
    hidden: the hidden layer's width, or a tuple of widths. activation: "relu",
    "tanh", "logistic", "identity" or "gelu", between the layers.
    optimizer: "sgd" (momentum, nesterov, weight_decay as PyTorch's SGD),
    "adam" or "adamw" (betas, eps, weight_decay as PyTorch's); lr defaults to
    0.1 for SGD and 1e-3 for Adam. lr_schedule, per epoch: "constant",
    "step", "cosine", "invscaling", "adaptive", or an mlp.schedules.Schedule.
    early_stopping: hold out validation_fraction of the rows (stratified for
    classification), or use validation_data when given, and stop after
    n_iter_no_change epochs whose validation loss improved by no more than
    tol; the best epoch's weights are kept. validation_data alone only
    reports. init: a Model to continue training from (its weights and
    optimizer state). weight_init: "auto" (He for relu and gelu, Glorot for
    the others), "he" or "glorot". sample_weight: (n_samples,) row weights.
    Minibatches of batch_size rows, the last one partial; one step each on
    the batch's (weighted) mean loss.
    device: "auto" (CUDA when built and a GPU is present, else the C core),
    "cpu", "cuda" or "numpy" (the reference).
    on_progress: optional callable(epoch, rows_done, n_rows), called during
    each epoch (which then runs in about 50 parts) and after it.
    on_epoch: optional callable(epoch, history), called after each epoch.
    """
    names = feature_names(X)
    X = check_X(X)
    n = X.shape[0]
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, "
                         f"got {activation!r}")
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {', '.join(map(repr, WEIGHT_INITS))}, "
                         f"got {weight_init!r}")
    if init is not None and not isinstance(init, Model):
        raise TypeError(f"init must be an mlp.Model, got {type(init).__name__}")
    targets, classes, y_1d = encode_targets(
        y, n, loss, None if init is None or loss != "cross_entropy" else init.classes_)
    weights = _check_sample_weight(sample_weight, n)
    hidden = check_hidden(hidden)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    opt = make_optimizer(optimizer, lr, momentum, nesterov, weight_decay, betas, eps)
    n_iter_no_change = check_positive_int(n_iter_no_change, "n_iter_no_change")
    tol = check_real(tol, "tol")
    schedule = make_schedule(lr_schedule, patience=n_iter_no_change)
    validation_fraction = check_real(validation_fraction, "validation_fraction")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
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
        t_val, _, _ = encode_targets(validation_data[1], X_val.shape[0], loss, classes,
                                     "validation_data[1]")
        val = (X_val, t_val)
    if early_stopping and val is None:
        tr, va = _split_validation(n, validation_fraction,
                                   targets if loss == "cross_entropy" else None, seed)
        val = (X[va], targets[va])
        X, targets = X[tr], targets[tr]
        weights = None if weights is None else weights[tr]
        n = len(tr)

    input_scale: float | None = float(np.float32(1 / 255)) if X.dtype == np.uint8 else 1.0
    n_out = len(classes) if loss == "cross_entropy" and classes is not None else targets.shape[1]
    sizes = (X.shape[1], *hidden, n_out)
    params, rng = initial_params(sizes, seed, activation, weight_init)
    if init is not None:
        _check_init(init, sizes, activation, loss)
        params = init._flat
        input_scale = init.input_scale
    net = backend.network(sizes, params, activation=activation, loss=loss,
                          input_scale=input_scale)
    if init is not None and init.optimizer_state is not None \
            and init.optimizer_state["name"] == opt.name:
        net.set_state(init.optimizer_state["state"], init.optimizer_state["steps"])
    core_targets = _core_targets(loss, targets)
    data = net.bind(X, **core_targets, sample_weight=weights)
    val_data = net.bind(val[0], **_core_targets(loss, val[1])) if val is not None else None

    history: dict[str, Any] = {"loss": [], "accuracy": [], "seconds": [], "lr": []}
    if val is not None:
        history.update(val_loss=[], val_accuracy=[])
    schedule.start(opt.lr, epochs, n)
    # (loss, params, epoch, optimizer state) of the best epoch
    best: tuple[float, FloatArray | None, int, tuple[FloatArray, int] | None] = (np.inf, None, 0,
                                                                                None)
    bad_epochs = 0
    stop_reason = None
    warned = False  # the divergence warning, once
    orders = epoch_orders(rng, n, epochs, bool(shuffle))
    batch_size = min(batch_size, n)  # one batch of every row: the same, and no overflow
    for epoch, order in enumerate(orders, start=1):
        lr_now = schedule.lr(epoch)
        start = time.perf_counter()
        loss_value, accuracy = _run_epoch(net, data, order, batch_size,
                                          opt.with_lr(lr_now).core_dict(), on_progress, epoch, weights)
        seconds = time.perf_counter() - start
        history["loss"].append(float(loss_value))
        history["accuracy"].append(float(accuracy))
        history["seconds"].append(seconds)
        history["lr"].append(lr_now)
        line = (f"epoch {epoch:3d}/{epochs}  loss {loss_value:.4f}  accuracy {accuracy:.4f}  "
                f"{seconds:.3f} s")
        watched = loss_value
        if val_data is not None:
            val_loss, val_accuracy = net.evaluate(val_data)
            history["val_loss"].append(float(val_loss))
            history["val_accuracy"].append(float(val_accuracy))
            line += f"  val_loss {val_loss:.4f}  val_accuracy {val_accuracy:.4f}"
            watched = val_loss
        if verbose:
            print(line, flush=True)
        if on_epoch is not None:
            on_epoch(epoch, history)
        if not np.isfinite(loss_value):
            raise TrainingDiverged(
                f"training diverged at epoch {epoch}: the loss is {loss_value}; try a smaller "
                f"lr (this run's was {lr_now:g}), or scale the inputs", epoch, loss_value)
        first = history["loss"][0]
        if epoch > 1 and loss_value > 100 * first and loss_value > 1 and not warned:
            warned = True
            warnings.warn(f"the loss of epoch {epoch} ({loss_value:.4g}) is over 100 times the "
                          f"first epoch's ({first:.4g}): training is diverging; try a smaller "
                          f"lr (this run's was {lr_now:g})", RuntimeWarning, stacklevel=2)
        improved = watched < best[0] - tol
        if watched < best[0]:
            best = (watched, net.get_params() if early_stopping else None, epoch,
                    net.get_state() if early_stopping else None)
        bad_epochs = 0 if improved else bad_epochs + 1
        stop_reason = schedule.after_epoch(epoch, improved)
        if stop_reason is None and early_stopping and bad_epochs >= n_iter_no_change:
            stop_reason = (f"validation loss did not improve by more than tol={tol:g} for "
                           f"{n_iter_no_change} epochs")
        if stop_reason is not None:
            break
    history["stopped_epoch"] = epoch
    history["stop_reason"] = stop_reason
    final = net.get_params()
    if early_stopping and best[1] is not None:
        history["best_epoch"] = best[2]
        final = best[1]
        net.set_params(final)
        if best[3] is not None:
            net.set_state(*best[3])
    if not np.isfinite(final).all():
        raise TrainingDiverged(f"training ended with non-finite parameters at epoch {epoch}; "
                               "try a smaller lr", epoch, history["loss"][-1])
    state, steps = net.get_state()
    model = Model(sizes, final, classes, history, _network=net, activation=activation, loss=loss,
                  input_scale=input_scale,
                  task=LOSS_TASKS[loss], single_output=y_1d and loss == "squared_error",
                  optimizer_state=dict(name=opt.name, state=state, steps=steps),
                  feature_names=names)
    return model


def _core_targets(loss: str, targets: Array) -> dict[str, Array]:
    return {"labels": targets} if loss == "cross_entropy" else {"values": targets}


def _check_init(init: Model, sizes: Sequence[int], activation: str, loss: str) -> None:
    if tuple(init.sizes) != tuple(sizes):
        raise ValueError(f"init has layer sizes {init.sizes}, but this training needs {sizes}")
    if init.activation != activation or init.loss != loss:
        raise ValueError(f"init was trained with activation={init.activation!r}, "
                         f"loss={init.loss!r}; this training asks for {activation!r}, {loss!r}")


class _StopOnInterrupt:
    """Ctrl-C while the core runs: the core holds no GIL, but Python runs a
    signal's handler only between its own bytecodes, so KeyboardInterrupt
    would wait for the epoch. Python's own C-level handler also writes the
    signal's number to a "wakeup" file descriptor; a watcher thread, waiting
    on that pipe, asks the running core to stop after the batch in hand, and
    the KeyboardInterrupt follows as soon as the core returns. The core call
    itself stays on the calling thread: nothing is handed between threads
    per epoch."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.net: Network | None = None
        threading.Thread(target=self._watch, name="mlp-interrupt", daemon=True).start()

    def _watch(self) -> None:
        while True:
            data = os.read(self.read_fd, 64)
            net = self.net
            if net is not None and signal.SIGINT in data:
                net.request_stop()

    def run(self, net: Network, call: Callable[[], T]) -> T:
        try:
            previous = signal.set_wakeup_fd(self.write_fd)
        except ValueError:  # not the main thread: signals are not ours to watch
            return call()
        self.net = net
        try:
            return call()
        finally:
            self.net = None
            signal.set_wakeup_fd(previous)


_watcher: _StopOnInterrupt | None = None
_watcher_pid: int | None = None


def _interruptible(net: Network, call: Callable[[], T]) -> T:
    """call(), with Ctrl-C asking the core to stop after the batch in hand."""
    global _watcher, _watcher_pid
    if threading.current_thread() is not threading.main_thread():
        return call()
    if _watcher is None or _watcher_pid != os.getpid():  # a forked child has no threads
        _watcher, _watcher_pid = _StopOnInterrupt(), os.getpid()
    return _watcher.run(net, call)


def _run_epoch(net: Network, data: Any, order: Array, batch_size: int, opt: dict[str, Any],
               on_progress: Callable[[int, int, int], object] | None, epoch: int,
               weights: Array | None) -> tuple[float, float]:
    """One epoch in one call to the core, or, for progress reports, in parts
    of whole batches (the same batches and the same result either way)."""
    if on_progress is None:
        _, loss, accuracy = _interruptible(net, lambda: net.train_epoch(data, order, batch_size,
                                                                         opt))
        return loss, accuracy
    n = len(order)
    batches = -(-n // batch_size)
    part = -(-batches // min(batches, 50)) * batch_size
    loss_sum = weight_sum = hits = 0.0
    for start in range(0, n, part):
        rows = order[start:start + part]
        _, loss, accuracy = _interruptible(net, lambda: net.train_epoch(data, rows, batch_size,
                                                                        opt))
        w = len(rows) if weights is None else float(np.sum(weights[rows], dtype=np.float64))
        loss_sum += loss * w
        weight_sum += w
        hits += round(accuracy * len(rows))
        on_progress(epoch, start + len(rows), n)
    return loss_sum / weight_sum, hits / n
