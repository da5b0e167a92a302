"""One MNIST epoch on the CPU (60,000 images, 784-256-10, SGD lr 0.1): our C
core against the numpy peer (the reference backend: plain numpy matrix
products over OpenBLAS), PyTorch and scikit-learn when installed; then the
core's products in GFLOP/s.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest benchmarks/ --benchmark-only

Each round of an epoch benchmark trains one more epoch of the same model
(same initial weights and orders for every backend); the accuracy on the
test set after the first epoch is recorded next to the time.
"""

import os
import warnings

import numpy as np
import pytest

from lean_numpy import LeanNumpy
from mlp._backends import get_backend
from mlp.optimizers import make_optimizer
from mlp.training import initial_state

SIZES = (784, 256, 10)
LR = 0.1
SGD = make_optimizer("sgd", LR).core_dict()
ROUNDS = 5
BATCHES = [64, 256, 1024]


# One epoch counted as dense: forward through both layers, both weight
# gradients, and the hidden layer's input gradient (not the first layer's).
EPOCH_FLOPS = 60000 * 2 * (2 * 784 * 256 + 3 * 256 * 10)


def accuracy(predict, Xt, yt):
    return round(float(np.mean(np.argmax(predict(Xt), axis=1) == yt)), 4)


def run_rounds(benchmark, epoch, rounds=ROUNDS):
    benchmark.pedantic(epoch, rounds=rounds, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_epoch_mlp(benchmark, mnist, device, batch):
    X, y, Xt, yt = mnist
    params, orders = initial_state(SIZES, len(X), ROUNDS + 1, seed=0)
    net = get_backend(device).network(SIZES, params, input_scale=1 / 255)
    data = net.bind(X, y.astype(np.int32))
    net.train_epoch(data, orders[0], batch, SGD)
    benchmark.group = f"epoch, batch {batch}"
    benchmark.name = "mlp C core (device='cpu')" if device == "cpu" else "numpy peer, mlp reference"
    benchmark.extra_info["acc_1_epoch"] = accuracy(lambda A: net.predict(net.bind(A)), Xt, yt)
    rest = iter(orders[1:])
    run_rounds(benchmark, lambda: net.train_epoch(data, next(rest), batch, SGD))
    benchmark.extra_info["dense_GFLOP/s"] = round(EPOCH_FLOPS / benchmark.stats.stats.median / 1e9, 1)


@pytest.mark.parametrize("batch", BATCHES)
def test_epoch_numpy_lean(benchmark, mnist, batch):
    """The numpy peer without the reference's bookkeeping: the lecture's
    forward and backward in a few lines of float32 numpy."""
    X, y, Xt, yt = mnist
    params, orders = initial_state(SIZES, len(X), ROUNDS + 1, seed=0)
    peer = LeanNumpy(params, SIZES, LR)
    peer.epoch(X, y, orders[0], batch)
    benchmark.group = f"epoch, batch {batch}"
    benchmark.name = "numpy peer, lean"
    benchmark.extra_info["acc_1_epoch"] = accuracy(peer.logits, Xt, yt)
    rest = iter(orders[1:])
    run_rounds(benchmark, lambda: peer.epoch(X, y, next(rest), batch))


@pytest.mark.parametrize("batch", BATCHES)
def test_epoch_pytorch(benchmark, mnist, batch):
    torch = pytest.importorskip("torch")
    from torch_peer import TorchPeer
    X, y, Xt, yt = mnist
    params, orders = initial_state(SIZES, len(X), ROUNDS + 1, seed=0)
    peer = TorchPeer(params, SIZES, LR, X, y)
    peer.epoch(orders[0], batch)
    benchmark.group = f"epoch, batch {batch}"
    benchmark.name = f"PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads"
    benchmark.extra_info["acc_1_epoch"] = accuracy(peer.logits, Xt, yt)
    rest = iter(orders[1:])
    run_rounds(benchmark, lambda: peer.epoch(next(rest), batch))


@pytest.mark.parametrize("batch", BATCHES)
def test_epoch_sklearn(benchmark, mnist, batch):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    X, y, Xt, yt = mnist
    Xf = X.astype(np.float32) / np.float32(255)

    def fit():  # one epoch from scratch (scikit-learn draws its own init)
        clf = MLPClassifier(hidden_layer_sizes=(256,), solver="sgd", batch_size=batch,
                            learning_rate_init=LR, momentum=0.0, nesterovs_momentum=False,
                            alpha=0.0, max_iter=1, shuffle=True, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return clf.fit(Xf, y)

    clf = fit()
    benchmark.group = f"epoch, batch {batch}"
    benchmark.name = f"scikit-learn {sklearn.__version__} MLPClassifier (sgd)"
    benchmark.extra_info["acc_1_epoch"] = round(float(clf.score(Xt.astype(np.float32) / 255, yt)), 4)
    run_rounds(benchmark, fit, rounds=3)


# ---- the core's products --------------------------------------------------

PEAK = float(os.environ.get("MLP_PEAK_GFLOPS", 2 * 2.45 * 32))  # 2 cores, AVX2 FMA x2, 2.45 GHz


@pytest.mark.parametrize("inputs", ["mnist pixels (19% nonzero)", "dense random floats"])
def test_forward_gflops(benchmark, mnist, inputs):
    """Forward pass (784 -> 256 -> ReLU -> 10) of 10,000 rows: GFLOP/s as if
    every input were nonzero, against the machine's peak (MLP_PEAK_GFLOPS)."""
    X = mnist[2] if inputs.startswith("mnist") else \
        np.random.default_rng(0).standard_normal((10000, 784)).astype(np.float32)
    params, _ = initial_state(SIZES, 1, 1)
    net = get_backend("cpu").network(SIZES, params, input_scale=1 / 255)
    data = net.bind(X)
    flops = 2 * len(X) * (784 * 256 + 256 * 10)
    benchmark.group = "forward of 10,000 rows"
    benchmark.name = f"C core forward, {inputs}"
    benchmark.pedantic(lambda: net.predict(data, logits=True), rounds=10, iterations=1,
                       warmup_rounds=1)
    gflops = flops / benchmark.stats.stats.median / 1e9
    benchmark.extra_info["GFLOP/s"] = round(gflops, 1)
    benchmark.extra_info["of_peak"] = f"{100 * gflops / PEAK:.0f}%"
