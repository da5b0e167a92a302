import os
import pathlib

import numpy as np
import pytest

import mlp
from mlp import reference
from mlp._backends import _import_core, cuda_unavailable_reason, get_backend

DATA = pathlib.Path(__file__).parent / "data"

if _import_core("_cpu") is None:
    raise ImportError(f"mlp was imported from {mlp.__file__}, which has no compiled core: install "
                      "the package (pip install .) and run plain `pytest` from the repository "
                      "root, not `python -m pytest`, which puts the source tree first")

CUDA_REASON = cuda_unavailable_reason()
HAS_CUDA = CUDA_REASON is None


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"no usable GPU: {CUDA_REASON}")
    for item in items:
        if "cuda" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mnist_subset():
    """2,000 training and 1,000 test images of MNIST, uint8 (see tests/data)."""
    with np.load(DATA / "mnist_subset.npz") as f:
        return {k: f[k] for k in f.files}


def run_backend(device, sizes, params, X, y, orders, batch_size, lr, momentum=0.0,
                weight_decay=0.0, plain=False):
    """Trains through a backend exactly as mlp.train does (with the core's
    plain ops when plain); returns every step's loss, the final flat
    parameters and the network."""
    net = get_backend(device).network(sizes, params)
    if plain:
        net.model.use_plain_ops()
    data = net.bind(X, y.astype(np.int32))
    losses = [net.train_epoch(data, order, batch_size, lr, momentum, weight_decay)[0]
              for order in orders]
    return np.concatenate(losses), net.get_params(), net


def run_reference(sizes, params, X, y, orders, batch_size, lr, momentum=0.0, weight_decay=0.0,
                  dtype=np.float64):
    ref = reference.Reference(sizes, params, dtype=dtype)
    losses = [ref.train_epoch(X, y, order, batch_size, lr, momentum, weight_decay)[0]
              for order in orders]
    return np.concatenate(losses), ref.params, ref


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def make_problem(rng, n, d, classes, uint8=False):
    if uint8:
        X = rng.integers(0, 256, size=(n, d), dtype=np.uint8)
        X[rng.random((n, d)) < 0.5] = 0  # sparse like pixels
    else:
        X = rng.standard_normal((n, d)).astype(np.float32)
    y = rng.integers(0, classes, size=n).astype(np.int32)
    y[:classes] = np.arange(classes)  # every class present
    return X, y


def find_full_mnist():
    """The folder holding the four MNIST files, if this machine has one:
    $MLP_MNIST_DIR, the repository's ignored .data/, or ../shared/data/mnist."""
    root = pathlib.Path(__file__).resolve().parent.parent
    candidates = [os.environ.get("MLP_MNIST_DIR"), root / ".data", root.parent / "shared/data/mnist"]
    for folder in filter(None, candidates):
        folder = pathlib.Path(folder)
        if (folder / "train-images-idx3-ubyte.gz").exists():
            return folder
    return None


@pytest.fixture(scope="session")
def full_mnist():
    from mlp.datasets import read_idx
    folder = find_full_mnist()
    if folder is None:
        pytest.skip("full MNIST not on this machine (set MLP_MNIST_DIR)")
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        out[f"X_{split}"] = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz").reshape(-1, 784)
        out[f"y_{split}"] = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    return out
