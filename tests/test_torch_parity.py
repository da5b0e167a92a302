"""PyTorch, the lecture's first level (mlp/torch_reference.py), against our
cores: the same init, the same batches, the same optimizer, the same losses
and weights, for every activation, loss and optimizer."""

import numpy as np
import pytest

from mlp.optimizers import make_optimizer
from mlp.training import initial_state

from conftest import make_problem, rel_err, run_backend, scale_of

torch = pytest.importorskip("torch")
torch_reference = pytest.importorskip("mlp.torch_reference")

CORES = ["cpu", "numpy", pytest.param("cuda", marks=pytest.mark.cuda)]

# (activation, loss, optimizer name, optimizer keywords, uint8 X, hidden)
CASES = [
    ("relu", "cross_entropy", "sgd", {}, True, (64,)),
    ("relu", "cross_entropy", "sgd", dict(momentum=0.9, weight_decay=1e-3), False, (16, 8)),
    ("relu", "cross_entropy", "sgd", dict(momentum=0.9, nesterov=True, weight_decay=1e-3),
     False, (16,)),
    ("tanh", "cross_entropy", "adam", dict(weight_decay=1e-3), False, (16, 8)),
    ("gelu", "cross_entropy", "adamw", dict(weight_decay=1e-2), True, (32,)),
    ("logistic", "squared_error", "adam", {}, False, (12,)),
    ("identity", "squared_error", "sgd", dict(momentum=0.5), False, (12,)),
    ("relu", "binary_cross_entropy", "adam", {}, False, (20,)),
    ("tanh", "poisson", "adam", {}, False, (12,)),
]


def problem(loss, uint8):
    rng = np.random.default_rng(5)
    X, y = make_problem(rng, 150, 40, 4, uint8)
    if loss == "squared_error":
        y = np.stack([np.sin(np.arange(150) / 7.0), y / 3.0], axis=1).astype(np.float32)
    elif loss == "poisson":
        y = rng.poisson(2.0, (150, 2)).astype(np.float32)
    elif loss == "binary_cross_entropy":
        y = (rng.random((150, 3)) < 0.4).astype(np.float32)
    return X, y


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_same_losses_and_weights_as_pytorch(core, case):
    activation, loss, name, kw, uint8, hidden = case
    X, y = problem(loss, uint8)
    n_out = 4 if loss == "cross_entropy" else y.shape[1]
    sizes = (40, *hidden, n_out)
    params, orders = initial_state(sizes, len(X), 3, seed=5, activation=activation)
    opt = make_optimizer(name, 0.05 if name == "sgd" else 0.01, **kw).core_dict()
    ours, final, _ = run_backend(core, sizes, params, X, y, orders, 32, opt=opt,
                                 activation=activation, loss=loss)
    theirs, torch_final = torch_reference.train(sizes, params, X, y, orders, 32, opt,
                                                activation, loss, scale_of(X))
    np.testing.assert_allclose(ours, theirs, rtol=2e-4)
    assert rel_err(final, torch_final) < 2e-4
