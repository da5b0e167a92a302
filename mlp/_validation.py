"""Input checks at the boundary of the public API: each error names the
argument and what was wrong with it. The cores check again, but a user
should never meet their messages for a mistake that Python can see."""

from __future__ import annotations

import numbers
import sys

from typing import Any

import numpy as np

from ._types import Array


def _is_sparse(X: object) -> bool:
    sparse = sys.modules.get("scipy.sparse")  # a scipy matrix means scipy is imported
    return sparse is not None and bool(sparse.issparse(X))


def check_X(X: Any, name: str = "X", n_features: int | None = None) -> Array:
    """A 2-D, non-empty, finite array as uint8 (kept) or float32 (converted
    once), C-contiguous. Any other real dtype is converted to float32."""
    if _is_sparse(X):
        raise TypeError(f"{name} is a sparse matrix, and the cores take dense arrays: pass "
                        f"{name}.toarray() ({X.shape[0]} x {X.shape[1]} float32 values, "
                        f"{X.shape[0] * X.shape[1] * 4 / 2**20:.0f} MiB)")
    if isinstance(X, np.ndarray):
        arr: Array = X
    else:
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be a 2-D array of numbers: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got {arr.ndim}-D "
                         f"with shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if arr.dtype == np.uint8:
        out = np.ascontiguousarray(arr)
    elif arr.dtype.kind in "fiub":
        with np.errstate(over="ignore"):  # reported below as a ValueError
            out = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(out).all():
            if np.isfinite(arr).all():
                raise ValueError(f"{name} holds values too large for float32")
            raise ValueError(f"{name} contains NaN or infinity")
    else:
        raise TypeError(f"{name} must hold real numbers (uint8 or float), got dtype {arr.dtype}")
    if n_features is not None and out.shape[1] != n_features:
        raise ValueError(f"{name} has {out.shape[1]} features, but the model was trained on "
                         f"{n_features}")
    return out


def check_y(y: Any, n_samples: int, name: str = "y") -> Array:
    """A 1-D array of labels of one kind (numbers, or strings: an object array
    or a pandas column of strings or categories becomes a string array), as
    long as X."""
    if isinstance(y, (list, tuple)):  # numpy would turn [1, "a"] into strings silently
        y = np.array(y, dtype=object)
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} labels but X has {n_samples} rows")
    if arr.dtype == object:
        arr = _labels_of_one_kind(arr, name)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def _labels_of_one_kind(arr: Array, name: str) -> Array:
    kinds = {"str" if isinstance(v, str) else "number"
             if isinstance(v, numbers.Number) and not isinstance(v, bool) else
             "bool" if isinstance(v, (bool, np.bool_)) else type(v).__name__ for v in arr}
    if kinds == {"str"}:
        return arr.astype(str)
    if kinds in ({"number"}, {"bool"}):
        return np.array(arr.tolist())
    raise TypeError(f"{name} must hold labels of one kind (all strings or all numbers), got "
                    f"{', '.join(sorted(kinds))}")


def check_classes(y: Array, name: str = "y") -> Array:
    """Refuses a continuous target where classes are expected."""
    if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        raise ValueError(f"{name} holds non-integer floats, a continuous target; loss="
                         "'cross_entropy' classifies: for regression pass loss='squared_error'")
    return y


def feature_names(X: object) -> Array | None:
    """The column names of a DataFrame X, when they are all strings, else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = np.asarray(list(columns), dtype=object)
    return names if all(isinstance(c, str) for c in names) else None


def encode_labels(y: Array, classes: Array, name: str = "y") -> Array:
    """Class indices (int32) of y in the sorted array classes."""
    idx = np.searchsorted(classes, y)
    idx = np.clip(idx, 0, len(classes) - 1)
    unknown = classes[idx] != y
    if np.any(unknown):
        bad = np.asarray(y)[unknown][:5]
        raise ValueError(f"{name} holds labels the model was not trained on: {list(bad)}")
    return idx.astype(np.int32)


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


MAX_WIDTH = 2 ** 40  # the cores' bound on a layer's width (csrc/common.c)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_hidden(hidden: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """An int, or a tuple/list of ints for several hidden layers."""
    widths = hidden if isinstance(hidden, (tuple, list)) else (hidden,)
    if len(widths) == 0:
        raise ValueError("hidden must name at least one layer width")
    out = tuple(check_positive_int(h, "hidden") for h in widths)
    if max(out) > MAX_WIDTH:
        raise ValueError(f"hidden widths must be at most 2^40, got {max(out)}")
    return out


def check_real(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large: {value}") from None
    assert isinstance(value, float)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name} is too large for the cores' float32: {value:g} (at most "
                         f"{FLOAT32_MAX:.3g})")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if not positive and value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return value


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)
