"""The numpy reference is the oracle of every other test: check its
gradients against finite differences in float64."""

import numpy as np
import pytest

from mlp import reference
from mlp.training import initial_state


@pytest.mark.parametrize("sizes", [(5, 7, 3), (4, 6, 5, 2), (3, 1, 2)])
def test_gradients_match_finite_differences(sizes):
    rng = np.random.default_rng(1)
    B = 6
    X = rng.standard_normal((B, sizes[0]))
    y = rng.integers(0, sizes[-1], size=B)
    params, _ = initial_state(sizes, B, 1, seed=3)
    params = params.astype(np.float64) + 0.1 * rng.standard_normal(params.shape)
    ref = reference.Reference(sizes, params, dtype=np.float64)

    def loss_at(p):
        ref.params[...] = p
        return ref.forward(X, y)[1] / B

    probs, _, _ = ref.forward(X, y)
    ref.backward(probs, y)
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


def test_sgd_update_matches_pytorch_convention():
    p = np.array([1.0, -2.0])
    g = np.array([0.5, 0.25])
    v = np.zeros(2)
    reference.sgd_update(p, g, v, lr=0.1, momentum=0.9, weight_decay=0.01)
    g1 = g + 0.01 * np.array([1.0, -2.0])
    assert np.allclose(v, g1)  # the first step's buffer is the gradient itself
    assert np.allclose(p, np.array([1.0, -2.0]) - 0.1 * g1)
    p_before = p.copy()
    reference.sgd_update(p, g, v, lr=0.1, momentum=0.9, weight_decay=0.01)
    v2 = 0.9 * g1 + g + 0.01 * p_before
    assert np.allclose(p, p_before - 0.1 * v2)


def test_layer_views_share_the_flat_buffer():
    sizes = (3, 4, 2)
    flat = np.arange(reference.num_params(sizes), dtype=np.float32)
    Ws, bs = reference.layer_views(flat, sizes)
    assert [W.shape for W in Ws] == [(3, 4), (4, 2)]
    assert [b.shape for b in bs] == [(4,), (2,)]
    Ws[1][0, 0] = -1
    assert flat[3 * 4 + 4] == -1
