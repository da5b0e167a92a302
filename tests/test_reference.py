"""The numpy reference is the oracle of every other test: check its
gradients against finite differences in float64, for every activation and
loss, and its optimizer rules against PyTorch's and scikit-learn's own
formulas."""

import math

import numpy as np
import pytest

from mlp import reference
from mlp.optimizers import make_optimizer
from mlp.training import initial_state

ACTIVATIONS = list(reference.ACTIVATIONS)
LOSSES = list(reference.LOSSES)


def targets_for(loss, rng, B, C):
    if loss == "cross_entropy":
        return rng.integers(0, C, size=B)
    if loss == "squared_error":
        return rng.standard_normal((B, C))
    if loss == "poisson":
        return rng.poisson(1.5, (B, C)).astype(np.float64)
    return (rng.random((B, C)) < 0.5).astype(np.float64)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("sizes", [(5, 7, 3), (4, 6, 5, 2)])
def test_gradients_match_finite_differences(sizes, activation, loss):
    rng = np.random.default_rng(1)
    B = 6
    X = rng.standard_normal((B, sizes[0]))
    t = targets_for(loss, rng, B, sizes[-1])
    weights = rng.random(B) + 0.5
    params, _ = initial_state(sizes, B, 1, seed=3, activation=activation)
    params = params.astype(np.float64) + 0.1 * rng.standard_normal(params.shape)
    ref = reference.Reference(sizes, params, np.float64, activation, loss)
    wsum = weights.sum()

    def loss_at(p):
        ref.params[...] = p
        return ref.forward(X, t, weights)[1] / wsum

    ref.params[...] = params
    ref.forward(X, t, weights)
    ref.backward(t, weights)
    analytic = ref.grads.copy()
    numeric = np.empty_like(params)
    eps = 1e-6
    for i in range(len(params)):
        p = params.copy()
        p[i] += eps
        up = loss_at(p)
        p[i] -= 2 * eps
        down = loss_at(p)
        numeric[i] = (up - down) / (2 * eps)
    assert np.allclose(analytic, numeric, rtol=1e-5, atol=1e-8), \
        np.max(np.abs(analytic - numeric))


def test_softmax_rows_sum_to_one_and_loss_is_stable():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    probs, loss, correct = reference.softmax_crossentropy_forward(logits, np.array([0, 2]))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.isfinite(loss) and np.isclose(loss, np.log(3.0))
    assert correct == 1


def test_binary_cross_entropy_is_finite_for_large_logits():
    z = np.array([[800.0, -800.0, 0.0]])
    t = np.array([[0.0, 1.0, 1.0]])
    out, loss, _ = reference.binary_crossentropy_forward(z, t)
    assert np.isclose(loss, 1600 + np.log(2))
    assert np.array_equal(out[0, :2], [1.0, 0.0])


def test_gelu_is_the_exact_erf_form():
    x = np.array([-3.0, -0.5, 0.0, 0.7, 2.5])
    want = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x]
    assert np.allclose(reference.gelu_forward(x), want, rtol=1e-12)


def steps_of(name, convention="torch", **kw):
    opt = make_optimizer(name, **kw)
    return dict(opt.core_dict(), convention=convention)


def test_sgd_matches_pytorch_formulas():
    p0, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    opt = steps_of("sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    p, m, v = p0.copy(), np.zeros(2), np.zeros(2)
    buf = None  # PyTorch's momentum buffer, the gradient itself at the first step
    for step in (1, 2):
        before = p.copy()
        reference.update(reference.step_constants(opt, step, 1.0), p, g, m, v, False)
        d = g + 0.01 * before
        buf = d if step == 1 else 0.9 * buf + d
        assert np.allclose(p, before - 0.1 * (d + 0.9 * buf))


def test_adam_and_adamw_match_pytorch_formulas():
    g = np.array([0.3, -0.2])
    for name in ("adam", "adamw"):
        opt = steps_of(name, lr=0.01, weight_decay=0.1)
        p, m, v = np.array([1.0, -1.0]), np.zeros(2), np.zeros(2)
        em, ev = np.zeros(2), np.zeros(2)
        for step in (1, 2, 3):
            before = p.copy()
            reference.update(reference.step_constants(opt, step, 1.0), p, g, m, v, False)
            grad = g if name == "adamw" else g + 0.1 * before
            base = before * (1 - 0.01 * 0.1) if name == "adamw" else before
            em = 0.9 * em + 0.1 * grad
            ev = 0.999 * ev + 0.001 * grad ** 2
            denom = np.sqrt(ev) / math.sqrt(1 - 0.999 ** step) + 1e-8
            assert np.allclose(p, base - 0.01 / (1 - 0.9 ** step) * em / denom)


def test_sklearn_convention_against_sklearn_optimizers():
    """scikit-learn's own SGDOptimizer and AdamOptimizer take the gradient
    with the L2 term already in (alpha * W / n); ours add it."""
    opt_mod = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    gW, gb = rng.standard_normal((3, 2)), rng.standard_normal(2)
    alpha, n = 1e-2, 20
    for name, make in (
            ("sgd", lambda ps: opt_mod.SGDOptimizer(ps, 0.1, momentum=0.9, nesterov=True)),
            ("sgd", lambda ps: opt_mod.SGDOptimizer(ps, 0.1, momentum=0.5, nesterov=False)),
            ("adam", lambda ps: opt_mod.AdamOptimizer(ps, 0.01, 0.9, 0.999, 1e-8))):
        theirs = [W.copy(), b.copy()]
        sk = make(theirs)
        kw = dict(lr=0.1 if name == "sgd" else 0.01, weight_decay=alpha)
        if name == "sgd":
            kw.update(momentum=sk.momentum, nesterov=sk.nesterov)
        opt = steps_of(name, "sklearn", **kw)
        flat = np.concatenate([W.ravel(), b])
        grads = np.concatenate([gW.ravel(), gb])
        is_bias = np.r_[np.zeros(6, bool), np.ones(2, bool)]
        m, v = np.zeros(8), np.zeros(8)
        for step in (1, 2, 3):
            sk.update_params(theirs, [gW + alpha * theirs[0] / n, gb])
            reference.update(reference.step_constants(opt, step, n), flat, grads, m, v, is_bias)
            assert np.allclose(flat, np.concatenate([theirs[0].ravel(), theirs[1]]))


def test_layer_views_share_the_flat_buffer():
    sizes = (3, 4, 2)
    flat = np.arange(reference.num_params(sizes), dtype=np.float32)
    Ws, bs = reference.layer_views(flat, sizes)
    assert [W.shape for W in Ws] == [(3, 4), (4, 2)]
    assert [b.shape for b in bs] == [(4,), (2,)]
    Ws[1][0, 0] = -1
    assert flat[3 * 4 + 4] == -1


def test_initial_weights_follow_the_activation():
    sizes = (200, 100, 10)
    he, _ = initial_state(sizes, 1, 1, activation="relu")
    glorot, _ = initial_state(sizes, 1, 1, activation="tanh")
    logistic, _ = initial_state(sizes, 1, 1, activation="logistic")
    W_he = reference.layer_views(he, sizes)[0][0]
    W_gl = reference.layer_views(glorot, sizes)[0][0]
    W_lo = reference.layer_views(logistic, sizes)[0][0]
    assert abs(W_he.std() - math.sqrt(2 / 200)) < 0.01
    bound = math.sqrt(6 / 300)
    assert np.abs(W_gl).max() <= bound and np.abs(W_gl).max() > 0.95 * bound
    assert np.abs(W_lo).max() <= math.sqrt(2 / 300)
    assert not reference.layer_views(glorot, sizes)[1][0].any()  # zero biases
