import functools
import os
import pathlib

import numpy as np
import pytest

import mlp
from mlp import reference
from mlp._backends import _import_core, cuda_unavailable_reason, get_backend
from mlp.model import PIXEL_SCALE
from mlp.optimizers import make_optimizer

DATA = pathlib.Path(__file__).parent / "data"

if _import_core("_cpu") is None:
    raise ImportError(f"mlp was imported from {mlp.__file__}, which has no compiled core: install "
                      "the package (pip install .) and run plain `pytest` from the repository "
                      "root, not `python -m pytest`, which puts the source tree first")

# Set by .ci/run's sanitizer step: the package built with ASan+UBSan
SANITIZED = bool(os.environ.get("MLP_SANITIZED"))
not_under_asan = pytest.mark.skipif(
    SANITIZED, reason="AddressSanitizer reserves terabytes of address space and shadow memory: "
                      "an address-space cap or a memory measurement cannot hold under it")

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


def sgd(lr, momentum=0.0, weight_decay=0.0):
    """The core's optimizer dict for PyTorch's SGD."""
    return make_optimizer("sgd", lr, momentum, weight_decay=weight_decay).core_dict()


def scale_of(X):
    return PIXEL_SCALE if X.dtype == np.uint8 else 1.0


def targets_of(loss, y):
    if loss == "cross_entropy":
        return {"labels": np.ascontiguousarray(y, dtype=np.int32)}
    return {"values": np.ascontiguousarray(np.asarray(y, np.float32).reshape(len(y), -1))}


def run_backend(device, sizes, params, X, y, orders, batch_size, lr=0.05, momentum=0.0,
                weight_decay=0.0, plain=False, opt=None, activation="relu",
                loss="cross_entropy", sample_weight=None):
    """Trains through a backend exactly as mlp.train does (with the core's
    plain ops when plain); returns every step's loss, the final flat
    parameters and the network. opt: a core optimizer dict (default: SGD
    with lr, momentum, weight_decay)."""
    opt = opt or sgd(lr, momentum, weight_decay)
    net = get_backend(device).network(sizes, params, activation=activation, loss=loss,
                                      input_scale=scale_of(X))
    if plain:
        net.model.use_plain_ops()
    data = net.bind(X, **targets_of(loss, y), sample_weight=sample_weight)
    losses = [net.train_epoch(data, order, batch_size, opt)[0] for order in orders]
    return np.concatenate(losses), net.get_params(), net


@functools.lru_cache(maxsize=None)
def gpu_has_tensor_products():
    """Whether this GPU multiplies on TF32 tensor cores (compute capability
    8.0 and newer): the one-kernel epoch of a small net says so by name
    ("fused-tensor"), whatever MLP_KERNELS the calling test has set."""
    saved = os.environ.pop("MLP_KERNELS", None)
    try:
        X, y = make_problem(np.random.default_rng(0), 64, 16, 2)
        sizes = (16, 8, 2)
        net = get_backend("cuda").network(sizes, reference.init_params(sizes, np.random.default_rng(0)))
        net.train_epoch(net.bind(X, **targets_of("cross_entropy", y)), np.arange(64), 32, sgd(0.1))
        return net.model.kernel_set in {"fused-tensor", "fused-rows"}
    finally:
        if saved is not None:
            os.environ["MLP_KERNELS"] = saved


def run_reference(sizes, params, X, y, orders, batch_size, lr=0.05, momentum=0.0,
                  weight_decay=0.0, dtype=np.float64, opt=None, activation="relu",
                  loss="cross_entropy", sample_weight=None):
    opt = opt or sgd(lr, momentum, weight_decay)
    ref = reference.Reference(sizes, params, dtype, activation, loss, scale_of(X))
    t = targets_of(loss, y)
    t = t.get("labels", t.get("values"))
    losses = [ref.train_epoch(X, t, order, batch_size, opt, sample_weight)[0] for order in orders]
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
