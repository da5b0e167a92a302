"""scikit-learn estimators on the mlp cores: ``MLPClassifier`` and
``MLPRegressor``, with scikit-learn's parameters, defaults, fitted attributes
and rules (its L2 penalty, SGD and Adam, learning-rate schedules, stopping
and early stopping, initial weights and shuffling drawn from random_state as
scikit-learn draws them), trained by the C core, the CUDA core or the numpy
reference (``device``).

Needs scikit-learn and scipy (the package's "sklearn" extra).
"""

from __future__ import annotations

import numbers
import threading
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkClassifier
from sklearn.neural_network import MLPRegressor as _SkRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils import shuffle as _shuffle
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import (_check_partial_fit_first_call, type_of_target,
                                      unique_labels)
from sklearn.utils.validation import (_check_sample_weight, check_is_fitted, column_or_1d,
                                      validate_data)

from . import reference
from ._backends import DEVICES, Network, get_backend
from ._types import Array, FloatArray
from .optimizers import Optimizer

_EXTRA = {"device": [StrOptions(set(DEVICES))],
          "n_threads": [None, Interval(numbers.Integral, 1, None, closed="left")]}

# what each output activation means in the cores (csrc/mlp.h's mlp_loss)
_OUTPUT_LOSS = {"softmax": "cross_entropy", "logistic": "binary_cross_entropy",
                "identity": "squared_error", "exp": "poisson"}


class _Core:
    """An estimator's network in a core and its optimizer state, kept in one
    holder: predict fills it without changing the estimator's attributes,
    and a pickle or deep copy carries the state, not the core object (the
    network is rebuilt where it is loaded, on the device there)."""

    def __init__(self, state: tuple[FloatArray, int] | None = None) -> None:
        self.net: Network | None = None
        self.params: FloatArray | None = None
        self.state = state

    def __getstate__(self) -> dict[str, Any]:
        return {"state": self.state}

    def __setstate__(self, d: dict[str, Any]) -> None:
        _Core.__init__(self, d["state"])


def _store_params(estimator: object, params: dict[str, Any]) -> None:
    """What scikit-learn asks of __init__: each parameter stored as given."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def _pack(coefs: list[Array], intercepts: list[Array]) -> FloatArray:
    """The flat parameter buffer of csrc/mlp.h: W1, b1, W2, b2, ..."""
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in zip(coefs, intercepts)]
                          ).astype(np.float32)


class _EpochOrders:
    """Each epoch's sample order, drawn from random_state as scikit-learn's
    MLP draws it: a shuffle of the previous epoch's order.

    With ahead, the order of the epoch after next is drawn in a background
    thread while the core trains (a GPU epoch leaves the host idle, and a
    million rows take tens of milliseconds to shuffle). The thread draws from
    a copy of random_state, which takes the copy's state only when that
    order is used: random_state ends where scikit-learn leaves it, however
    many epochs run."""

    def __init__(self, sample_idx: Array, random_state: np.random.RandomState,
                 ahead: bool) -> None:
        self._last = sample_idx
        self._random_state = random_state
        self._ahead = ahead
        self._pending: tuple[threading.Thread, dict[str, Any]] | None = None

    def next(self, more: bool) -> Array:
        """The next epoch's order; more: whether another epoch may follow it."""
        order: Array
        if self._pending is None:
            order = _shuffle(self._last, random_state=self._random_state)
        else:
            thread, box = self._pending
            self._pending = None
            thread.join()
            if "error" in box:
                raise box["error"]
            order = box["order"]
            self._random_state.set_state(box["state"])
        self._last = order
        if self._ahead and more:
            self._pending = self._draw_in_background(order)
        return order

    def _draw_in_background(self, order: Array) -> tuple[threading.Thread, dict[str, Any]]:
        copy = np.random.RandomState()
        copy.set_state(self._random_state.get_state())
        box: dict[str, Any] = {}

        def draw() -> None:
            try:
                box["order"] = _shuffle(order, random_state=copy)
                box["state"] = copy.get_state()
            except BaseException as exc:  # re-raised in next(), on the fitting thread
                box["error"] = exc

        thread = threading.Thread(target=draw, daemon=True)
        thread.start()
        return thread, box


class _BaseMLP(BaseEstimator):  # type: ignore[misc]
    """What the two estimators share; see MLPClassifier for the parameters."""

    coefs_: list[Array]
    intercepts_: list[Array]
    loss_curve_: list[float]
    # None, a number or a list by solver and early_stopping, as in scikit-learn
    validation_scores_: Any
    best_validation_score_: Any
    best_loss_: Any
    _core: _Core

    def _out_activation(self, Y: Array) -> str:
        raise NotImplementedError

    # ---- the network in a core ---------------------------------------------

    def _sizes(self) -> list[int]:
        return [self.coefs_[0].shape[0]] + [b.shape[0] for b in self.intercepts_]

    def _make_network(self) -> Network:
        loss = _OUTPUT_LOSS[self.out_activation_]
        net = get_backend(self.device).network(self._sizes(), _pack(self.coefs_, self.intercepts_),
                                               activation=self.activation, loss=loss)
        if self.n_threads is not None:
            net.set_threads(self.n_threads)
        return net

    def _network(self, keep_state: bool) -> Network:
        """The core network holding coefs_ and intercepts_; with keep_state, the
        optimizer state of the last fit or partial_fit too."""
        core = self._core
        flat = _pack(self.coefs_, self.intercepts_)
        net = core.net
        if net is None:
            net = core.net = self._make_network()
            if keep_state and core.state is not None:
                net.set_state(*core.state)
        elif not keep_state:
            net.set_params(flat)
        elif core.params is None or not np.array_equal(flat, core.params):  # changed by hand
            state = net.get_state()
            net.set_params(flat)
            net.set_state(*state)
        core.params = flat
        return net

    def _from_network(self, net: Network) -> None:
        """coefs_ and intercepts_ from the core (views into one flat array)."""
        flat = net.get_params()
        dtype = getattr(self, "_param_dtype", np.float64)
        Ws, bs = reference.layer_views(flat.astype(dtype), self._sizes())
        self.coefs_, self.intercepts_ = list(Ws), list(bs)
        self._core.params = flat
        self._core.state = net.get_state()

    # ---- fit -----------------------------------------------------------------

    def _targets(self, Y: Array) -> dict[str, Array]:
        """What the core trains on: class indices for softmax, else float values."""
        if self.out_activation_ == "softmax":
            return {"labels": np.ascontiguousarray(np.argmax(Y, axis=1), dtype=np.int32)}
        return {"values": np.ascontiguousarray(Y, dtype=np.float32)}

    def _initialize(self, Y: Array, sizes: list[int], dtype: np.dtype[Any]) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(sizes)
        self.out_activation_ = self._out_activation(Y)
        self._param_dtype = dtype
        # Glorot uniform, drawn layer by layer from random_state as scikit-learn does
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out))
                               .astype(dtype, copy=False))
            self.intercepts_.append(self._random_state.uniform(-bound, bound, fan_out)
                                    .astype(dtype, copy=False))
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        self._core = _Core()
        if self.solver in ("sgd", "adam"):
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _optimizer(self) -> Optimizer:
        """Our optimizer struct in scikit-learn's convention (alpha as its L2)."""
        kind = "sgd" if self.solver in ("sgd", "lbfgs") else "adam"
        return Optimizer(kind=kind, convention="sklearn", lr=float(self.learning_rate_init),
                         momentum=float(self.momentum) if kind == "sgd" else 0.0,
                         nesterov=bool(self.nesterovs_momentum) and kind == "sgd",
                         weight_decay=float(self.alpha), beta1=float(self.beta_1),
                         beta2=float(self.beta_2), eps=float(self.epsilon))

    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False) -> Any:
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float32)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        n_samples, n_features = X.shape
        sizes = [n_features] + hidden + [Y.shape[1]]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, sizes, X.dtype)
        elif self._sizes() != sizes:
            raise ValueError(f"the network has layer sizes {self._sizes()}; this data and "
                             f"hidden_layer_sizes need {sizes}")
        self.n_outputs_ = Y.shape[1]
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X32, Y, sample_weight)
        else:
            self._fit_stochastic(X32, Y, sample_weight, incremental)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _fit_lbfgs(self, X: FloatArray, Y: Array, sample_weight: Array | None) -> None:
        import scipy.optimize
        from sklearn.utils.optimize import _check_optimize_result
        net = self._network(keep_state=False)
        data = net.bind(X, **self._targets(Y), sample_weight=sample_weight)
        opt = self._optimizer().core_dict()

        def loss_and_grad(x: Array) -> tuple[float, Array]:
            net.set_params(x.astype(np.float32))
            loss, grad = net.loss_and_grad(data, opt)
            return loss, grad.astype(np.float64)

        result = scipy.optimize.minimize(
            loss_and_grad, _pack(self.coefs_, self.intercepts_).astype(np.float64),
            method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun)
        net.set_params(result.x.astype(np.float32))
        self._from_network(net)

    def _fit_stochastic(self, X: FloatArray, Y: Array, sample_weight: Array | None,
                        incremental: bool) -> None:
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        net = self._network(keep_state=incremental)
        if not incremental or not hasattr(self, "_learning_rate"):
            self._learning_rate = float(self.learning_rate_init)
        if self.early_stopping:
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
            parts = (X, Y) if sample_weight is None else (X, Y, sample_weight)
            split = train_test_split(*parts, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            X_train, X_val, Y_train, Y_val = split[:4]
            w_train, w_val = (split[4], split[5]) if sample_weight is not None else (None, None)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            y_val = self._decode(Y_val)
        else:
            X_train, Y_train, w_train = X, Y, sample_weight
            X_val = y_val = w_val = None
        n = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))
        data = net.bind(X_train, **self._targets(Y_train), sample_weight=w_train)
        rows = np.full(-(-n // batch_size), batch_size, dtype=np.float64)
        rows[-1] = n - batch_size * (len(rows) - 1)
        opt = self._optimizer()
        sample_idx = np.arange(n, dtype=np.int64)
        orders = _EpochOrders(sample_idx, self._random_state, ahead=net.device == "cuda")
        try:
            self.n_iter_ = 0
            for epoch in range(self.max_iter):
                if self.shuffle:
                    sample_idx = orders.next(more=not incremental and epoch + 1 < self.max_iter)
                batch_losses, _, _ = net.train_epoch(
                    data, np.ascontiguousarray(sample_idx, dtype=np.int64), batch_size,
                    opt.with_lr(self._learning_rate).core_dict())
                self.n_iter_ += 1
                self.loss_ = float(np.dot(batch_losses.astype(np.float64), rows) / n)
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._from_network(net)
                self._update_no_improvement_count(X_val, y_val, w_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._learning_rate = (float(self.learning_rate_init)
                                           / (self.t_ + 1) ** self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    what = ("Validation score" if self.early_stopping else "Training loss")
                    msg = (f"{what} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                    if self._stop_or_slow_down(msg):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
            self._from_network(net)
        if self.early_stopping:
            self.coefs_, self.intercepts_ = self._best_coefs, self._best_intercepts

    def _stop_or_slow_down(self, msg: str) -> bool:
        """scikit-learn's rule: stop, unless SGD's "adaptive" rate can still be
        divided by 5."""
        if self.solver != "sgd" or self.learning_rate != "adaptive" \
                or self._learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Stopping.")
            return True
        self._learning_rate /= 5.0
        if self.verbose:
            print(msg + f" Setting learning rate to {self._learning_rate:f}")
        return False

    def _update_no_improvement_count(self, X_val: Array | None, y_val: Array | None,
                                     w_val: Array | None) -> None:
        if self.early_stopping:
            score = self._score(X_val, y_val, w_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """Fit the model to X and y (sample_weight: optional row weights)."""
        self._validate_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    # ---- predict -------------------------------------------------------------

    def _bound(self, X: Any) -> tuple[Network, Any]:
        """X validated and bound to the fitted network."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        net = self._network(keep_state=True)
        return net, net.bind(np.ascontiguousarray(X, dtype=np.float32))

    def _outputs(self, X: Any) -> FloatArray:
        """The network's outputs (probabilities, or the regression outputs)."""
        net, data = self._bound(X)
        return net.predict(data)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):  # type: ignore[misc]
    """A multilayer perceptron classifier with scikit-learn's parameters
    (sklearn.neural_network.MLPClassifier), trained by the mlp cores.

    Two parameters are added: ``device`` ("auto", "cpu", "cuda", "numpy")
    and ``n_threads`` (the C core's threads; None: all cores). The math is
    float32 in every core. Multi-class targets train a softmax output,
    binary and multi-label (an indicator matrix) targets logistic outputs.
    """

    _parameter_constraints = {**_SkClassifier._parameter_constraints, **_EXTRA}

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool = False,
                 warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10, max_fun: int = 15000,
                 device: str = "auto", n_threads: int | None = None) -> None:
        _store_params(self, locals())

    def _out_activation(self, Y: Array) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X: Any, y: Any, incremental: bool,
                        reset: bool) -> tuple[Array, Array]:
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     f"classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _decode(self, Y: Array) -> Array:
        decoded: Array = self._label_binarizer.inverse_transform(Y)
        return decoded

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> Any:
        """One epoch over X, y; classes (every label) is needed on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizer. "
                                 f"{self.solver} is not stochastic.")
        self._validate_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X: Any) -> Array:
        """The predicted class of each row (the indicator matrix for multi-label)."""
        check_is_fitted(self)
        if self._label_binarizer.y_type_ == "multiclass":  # the core's argmax of the outputs
            net, data = self._bound(X)
            return np.asarray(self.classes_[net.predict_classes(data)])
        return self._decode_outputs(self._outputs(X))

    def _decode_outputs(self, P: Array) -> Array:
        if self.n_outputs_ == 1:
            P = P.ravel()
        decoded: Array = self._label_binarizer.inverse_transform(P)
        return decoded

    def _score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        return float(accuracy_score(y, self._decode_outputs(self._outputs(X)),
                              sample_weight=sample_weight))

    def predict_proba(self, X: Any) -> Array:
        """Class probabilities (n_samples, n_classes) in classes_ order."""
        P = self._outputs(X).astype(np.float64)
        if self.n_outputs_ == 1 and self._label_binarizer.y_type_ != "multilabel-indicator":
            P = P.ravel()
            return np.asarray(np.vstack([1 - P, P]).T)
        return P

    def predict_log_proba(self, X: Any) -> Array:
        """The logarithm of predict_proba."""
        return np.asarray(np.log(self.predict_proba(X)))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):  # type: ignore[misc]
    """A multilayer perceptron regressor with scikit-learn's parameters
    (sklearn.neural_network.MLPRegressor: loss "squared_error" or "poisson"),
    trained by the mlp cores; ``device`` and ``n_threads`` as MLPClassifier."""

    _parameter_constraints = {**_SkRegressor._parameter_constraints, **_EXTRA}

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: Any = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: int | str = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10, max_fun: int = 15000,
                 device: str = "auto", n_threads: int | None = None) -> None:
        _store_params(self, locals())

    def _out_activation(self, Y: Array) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _validate_input(self, X: Any, y: Any, incremental: bool,
                        reset: bool) -> tuple[Array, Array]:
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "loss='poisson'.")
        return X, y

    def _decode(self, Y: Array) -> Array:
        return Y[:, 0] if Y.shape[1] == 1 else Y

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """One epoch over X, y."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizer. "
                                 f"{self.solver} is not stochastic.")
        self._validate_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X: Any) -> Array:
        """The predicted values ((n,) for one target, else (n, n_outputs))."""
        P = self._outputs(X).astype(np.float64)
        return P.ravel() if P.shape[1] == 1 else P

    def _score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        return float(r2_score(y, self.predict(X), sample_weight=sample_weight))
