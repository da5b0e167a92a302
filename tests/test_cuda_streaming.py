"""Rows that stay in host memory (cuda/host_rows.cuh): prediction data, and
data sets over MLP_CUDA_DATA_LIMIT, reach the GPU in chunks. Training on a
set over the limit takes the same steps as on the set copied to the GPU;
prediction and evaluation give the same values."""

import numpy as np
import pytest

import mlp
from mlp import _backends

from conftest import make_problem, rel_err, sgd

pytestmark = pytest.mark.cuda

# 64 KiB: training chunks of one batch (an eighth of the limit, at least a
# batch), prediction chunks of 256 rows: many chunks over a test's rows
SMALL = "64K"


def limit(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("MLP_CUDA_DATA_LIMIT", raising=False)
    else:
        monkeypatch.setenv("MLP_CUDA_DATA_LIMIT", value)


def cuda_module():
    return _backends.get_backend("cuda").module


def test_data_over_the_limit_and_prediction_data_stay_in_host_memory(monkeypatch):
    _cuda = cuda_module()
    X, y = make_problem(np.random.default_rng(0), 500, 20, 3)
    labels = y.astype(np.int32)
    limit(monkeypatch, None)
    assert not _cuda.Data(X, labels).on_host
    assert _cuda.Data(X).on_host  # prediction reads each row once
    limit(monkeypatch, str(X.nbytes - 1))
    assert _cuda.Data(X, labels).on_host
    limit(monkeypatch, f"{X.nbytes / 1024}K")
    assert not _cuda.Data(X, labels).on_host


@pytest.mark.parametrize("value", ["lots", "12Q", "-5", "1e30", "5MBx"])
def test_a_bad_limit_names_the_variable(monkeypatch, value):
    _cuda = cuda_module()
    limit(monkeypatch, value)
    X, y = make_problem(np.random.default_rng(0), 10, 4, 2)
    with pytest.raises(ValueError, match="MLP_CUDA_DATA_LIMIT must be a number of bytes"):
        _cuda.Data(X, y.astype(np.int32))


def _recipes(mnist):
    X, y = mnist["X_train"], mnist["y_train"]
    rng = np.random.default_rng(5)
    Xf = (X[:, ::8] / 255.0).astype(np.float32)
    values = np.stack([Xf[:, :4].sum(1), Xf[:, 4:9].mean(1)], axis=1)
    indicator = np.stack([y % 2 == 0, y < 5, y == 7], axis=1).astype(np.float32)
    weights = rng.uniform(0.2, 2.0, len(y))
    return {
        # fused.cu, the default recipe
        "default": (X, y, dict(hidden=64, batch_size=64, momentum=0.9)),
        # fused_rows.cu, the general code: Adam, tanh, scikit-learn's penalty
        "fused-rows-adam": (X, y, dict(hidden=64, batch_size=512, optimizer="adam",
                                       activation="tanh", weight_decay=1e-3)),
        # gemm.cu: two hidden layers, a last chunk of a partial batch
        "deeper": (X[:1990], y[:1990], dict(hidden=(64, 32), batch_size=100, nesterov=True,
                                             momentum=0.9)),
        # sample weights (gemm.cu), each chunk's weights gathered with its rows
        "weighted": (X, y, dict(hidden=32, batch_size=50, sample_weight=weights)),
        # value targets: regression and multi-label, float32 rows
        "regression": (Xf, values, dict(hidden=32, batch_size=40, loss="squared_error",
                                         lr=0.01)),
        "multilabel": (Xf, indicator, dict(hidden=32, batch_size=64,
                                            loss="binary_cross_entropy", optimizer="adam")),
    }


@pytest.mark.parametrize("recipe", ["default", "fused-rows-adam", "deeper", "weighted",
                                    "regression", "multilabel"])
def test_training_over_the_limit_takes_the_same_steps(monkeypatch, mnist_subset, recipe):
    X, y, kw = _recipes(mnist_subset)[recipe]
    runs = {}
    for value in (None, SMALL):
        limit(monkeypatch, value)
        runs[value] = mlp.train(X, y, epochs=2, device="cuda", seed=3, **kw)
    whole, streamed = runs[None], runs[SMALL]
    for k, a in whole.params.items():
        b = streamed.params[k]
        assert a.tobytes() == b.tobytes(), (k, float(np.max(np.abs(a - b))))
    np.testing.assert_allclose(streamed.history["loss"], whole.history["loss"], rtol=1e-6)
    if "accuracy" in whole.history:
        np.testing.assert_allclose(streamed.history["accuracy"], whole.history["accuracy"],
                                   rtol=1e-9)


def test_core_epoch_over_the_limit_reports_every_batch(monkeypatch, mnist_subset):
    _cuda = cuda_module()
    X, y = mnist_subset["X_train"][:1000], mnist_subset["y_train"][:1000].astype(np.int32)
    order = np.random.default_rng(1).permutation(1000).astype(np.int64)
    results = {}
    for value in (None, SMALL):
        limit(monkeypatch, value)
        net = _cuda.Model((784, 32, 10), input_scale=1 / 255)
        net.set_params(np.random.default_rng(2).normal(0, 0.05, net.n_params).astype(np.float32))
        data = _cuda.Data(X, y)
        assert data.on_host == (value is not None)
        results[value] = net.train_epoch(data, order, 96, sgd(0.1))
    (la, ma, aa), (lb, mb, ab) = results[None], results[SMALL]
    assert len(lb) == len(la) == 11
    np.testing.assert_array_equal(lb, la)
    assert mb == pytest.approx(ma, rel=1e-9) and ab == aa


def test_a_stop_request_ends_an_epoch_over_the_limit(monkeypatch, mnist_subset):
    _cuda = cuda_module()
    limit(monkeypatch, SMALL)
    X, y = mnist_subset["X_train"], mnist_subset["y_train"].astype(np.int32)
    net = _cuda.Model((784, 32, 10), input_scale=1 / 255)
    net.set_params(np.random.default_rng(2).normal(0, 0.05, net.n_params).astype(np.float32))
    data = _cuda.Data(X, y)
    net.request_stop()
    with pytest.raises(_cuda.Stopped, match="after 0 rows"):
        net.train_epoch(data, np.arange(2000, dtype=np.int64), 64, sgd(0.1))
    losses, _, _ = net.train_epoch(data, np.arange(2000, dtype=np.int64), 64, sgd(0.1))
    assert len(losses) == 32 and np.all(np.isfinite(losses))


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_prediction_in_chunks_matches_the_c_core(monkeypatch, mnist_subset, tmp_path, dtype):
    X, y = mnist_subset["X_train"], mnist_subset["y_train"]
    Xt, yt = mnist_subset["X_test"], mnist_subset["y_test"]  # 1,000 rows: 4 chunks under SMALL
    if dtype == "float32":
        X, Xt = (X / 255.0).astype(np.float32), (Xt / 255.0).astype(np.float32)
    model = mlp.train(X, y, hidden=(48, 24), epochs=1, device="cuda", seed=1)
    path = tmp_path / "m.mlp"
    model.save(path)
    cpu = mlp.load(path, device="cpu")
    limit(monkeypatch, None)
    whole = model.predict_proba(Xt)
    whole_eval = model.evaluate(Xt, yt)
    limit(monkeypatch, SMALL)
    chunks = model.predict_proba(Xt)
    assert rel_err(chunks, whole) < 1e-6
    assert rel_err(chunks, cpu.predict_proba(Xt)) < 1e-5
    assert rel_err(model.predict_logits(Xt), cpu.predict_logits(Xt)) < 1e-5
    assert np.mean(model.predict(Xt) == cpu.predict(Xt)) > 0.998
    streamed_eval = model.evaluate(Xt, yt)  # with targets: over the limit, so streamed too
    assert streamed_eval["loss"] == pytest.approx(whole_eval["loss"], rel=1e-5)
    assert streamed_eval["accuracy"] == pytest.approx(whole_eval["accuracy"], abs=1e-3)


def test_prediction_of_every_length_around_a_chunk(monkeypatch):
    X, y = make_problem(np.random.default_rng(4), 600, 30, 4)
    model = mlp.train(X, y, hidden=16, epochs=1, device="cuda")
    limit(monkeypatch, SMALL)
    ref = model.predict_proba(X)
    for n in (1, 255, 256, 257, 511, 512, 513, 600):
        np.testing.assert_allclose(model.predict_proba(X[:n]), ref[:n], rtol=1e-5, atol=1e-7)


def test_full_batch_gradient_over_the_limit(monkeypatch, mnist_subset):
    _cuda = cuda_module()
    X, y = mnist_subset["X_train"][:700], mnist_subset["y_train"][:700].astype(np.int32)
    net = _cuda.Model((784, 24, 10), activation="tanh", input_scale=1 / 255)
    net.set_params(np.random.default_rng(3).normal(0, 0.05, net.n_params).astype(np.float32))
    out = {}
    for value in (None, SMALL):
        limit(monkeypatch, value)
        out[value] = net.loss_and_grad(_cuda.Data(X, y), sgd(0.1, weight_decay=1e-4))
    assert out[SMALL][0] == pytest.approx(out[None][0], rel=1e-5)
    assert rel_err(out[SMALL][1], out[None][1]) < 1e-5
