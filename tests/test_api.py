"""The public API: train, predict, score, evaluate, params, history, save, load."""

import threading
import time

import numpy as np
import pytest

import mlp
from mlp.training import initial_state

from conftest import make_problem, sgd

DEVICES = ["cpu", "numpy", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
def test_mnist_subset_accuracy(mnist_subset, device):
    """2,000 training images, 10 epochs: at least 88% on 1,000 test images
    (measured: 89.6% on every backend)."""
    m = mlp.train(mnist_subset["X_train"], mnist_subset["y_train"], epochs=10, momentum=0.9,
                  device=device)
    assert m.device == device
    assert m.score(mnist_subset["X_test"], mnist_subset["y_test"]) >= 0.88
    assert m.history["accuracy"][-1] > 0.97


@pytest.mark.parametrize("device", DEVICES)
def test_predict_is_the_first_largest_output(device):
    """predict's labels come from the core's argmax (mlp_predict_classes):
    the first of the largest logits, as numpy's argmax of the outputs."""
    X, y = make_problem(np.random.default_rng(7), 3000, 12, 5)
    labels = np.array(["e", "a", "d", "b", "c"])[y]
    m = mlp.train(X, labels, hidden=(16, 8), epochs=1, device=device)
    logits = m.predict_logits(X)
    expected = m.classes_[np.argmax(logits, axis=1)]
    assert np.array_equal(m.predict(X), expected)
    assert np.mean(m.predict(X) == m.classes_[np.argmax(m.predict_proba(X), axis=1)]) > 0.999
    zero = mlp.Model(m.sizes, np.zeros_like(m._flat), m.classes_, device=device)
    assert zero.predict(X[:5]).tolist() == [m.classes_[0]] * 5  # every logit ties: the first


def test_backends_agree_on_mnist_subset(mnist_subset):
    X, y = mnist_subset["X_train"][:500], mnist_subset["y_train"][:500]
    a = mlp.train(X, y, epochs=2, device="cpu")
    b = mlp.train(X, y, epochs=2, device="numpy")
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-5)


def test_string_labels_and_classes():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4)).astype(np.float32)
    names = np.array(["setosa", "versicolor", "virginica"])
    y = names[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)]
    m = mlp.train(X, y, hidden=16, epochs=50, batch_size=16, lr=0.1)
    assert list(m.classes_) == sorted(set(y))
    pred = m.predict(X)
    assert pred.dtype == m.classes_.dtype and set(pred) <= set(names)
    assert m.score(X, y) > 0.85
    proba = m.predict_proba(X)
    assert proba.shape == (120, len(m.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(m.classes_[proba.argmax(axis=1)], pred)


def test_history_and_validation():
    rng = np.random.default_rng(1)
    X, y = make_problem(rng, 300, 10, 3)
    m = mlp.train(X, y, hidden=8, epochs=4, validation_data=(X[:50], y[:50]))
    assert set(m.history) == {"loss", "accuracy", "seconds", "lr", "val_loss", "val_accuracy",
                              "stopped_epoch", "stop_reason"}
    assert all(len(v) == 4 for v in m.history.values() if isinstance(v, list))
    assert m.history["stopped_epoch"] == 4 and m.history["stop_reason"] is None
    assert m.history["val_accuracy"][-1] == pytest.approx(m.score(X[:50], y[:50]))
    assert m.history["val_loss"][-1] == pytest.approx(m.evaluate(X[:50], y[:50])["loss"], rel=1e-5)


def test_params_layout_and_shapes():
    X, y = make_problem(np.random.default_rng(2), 40, 6, 3)
    m = mlp.train(X, y, hidden=(5, 4), epochs=1)
    p = m.params
    assert list(p) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert [p[k].shape for k in p] == [(6, 5), (5,), (5, 4), (4,), (4, 3), (3,)]
    p["W1"][...] = 0  # a copy: the model is untouched
    assert np.any(m.params["W1"] != 0)
    # the logits are the network applied to the parameters
    h = np.maximum(X @ m.params["W1"] + m.params["b1"], 0)
    h = np.maximum(h @ m.params["W2"] + m.params["b2"], 0)
    np.testing.assert_allclose(m.predict_logits(X), h @ m.params["W3"] + m.params["b3"],
                               rtol=1e-4, atol=1e-5)


def test_seed_determines_training():
    X, y = make_problem(np.random.default_rng(3), 100, 8, 2)
    a = mlp.train(X, y, hidden=8, epochs=2, seed=4)
    b = mlp.train(X, y, hidden=8, epochs=2, seed=4)
    c = mlp.train(X, y, hidden=8, epochs=2, seed=5)
    assert np.array_equal(a.params["W1"], b.params["W1"])
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_initial_state_is_he_normal_and_shuffles():
    params, orders = initial_state((400, 300, 10), 50, 2, seed=0)
    W1 = params[:400 * 300]
    assert W1.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert np.all(params[400 * 300:400 * 300 + 300] == 0)
    assert sorted(orders[0]) == list(range(50)) and not np.array_equal(orders[0], orders[1])
    _, fixed = initial_state((4, 3, 2), 5, 2, shuffle=False)
    assert [list(o) for o in fixed] == [[0, 1, 2, 3, 4]] * 2


def test_shuffle_false_and_partial_batch_train():
    X, y = make_problem(np.random.default_rng(4), 70, 5, 2)
    m = mlp.train(X, y, hidden=3, epochs=2, batch_size=32, shuffle=False)
    assert len(m.history["loss"]) == 2 and np.isfinite(m.history["loss"]).all()


@pytest.mark.parametrize("layout", ["fortran", "strided", "readonly", "float64", "int", "list"])
def test_array_layouts_just_work(layout):
    rng = np.random.default_rng(6)
    X, y = make_problem(rng, 60, 7, 3)
    base = mlp.train(X, y, hidden=5, epochs=2)
    if layout == "fortran":
        Xv = np.asfortranarray(X)
    elif layout == "strided":
        wide = np.zeros((60, 14), dtype=np.float32)
        wide[:, ::2] = X
        Xv = wide[:, ::2]
    elif layout == "readonly":
        Xv = X.copy()
        Xv.flags.writeable = False
    elif layout == "float64":
        Xv = X.astype(np.float64)
    elif layout == "int":
        Xv = np.round(X * 4).astype(np.int64)
        X = Xv.astype(np.float32)
        base = mlp.train(X, y, hidden=5, epochs=2)
    else:
        Xv = X.tolist()
    m = mlp.train(Xv, list(y), hidden=5, epochs=2)
    assert np.array_equal(m.params["W1"], base.params["W1"])
    np.testing.assert_array_equal(m.predict(Xv), base.predict(X))


def test_uint8_input_is_scaled_not_copied_to_float():
    rng = np.random.default_rng(7)
    Xu = rng.integers(0, 256, size=(80, 12), dtype=np.uint8)
    y = rng.integers(0, 3, 80)
    a = mlp.train(Xu, y, hidden=6, epochs=2)
    b = mlp.train(Xu.astype(np.float32) / np.float32(255), y, hidden=6, epochs=2)
    np.testing.assert_allclose(a.params["W1"], b.params["W1"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_save_load_round_trip(tmp_path, device):
    X, y = make_problem(np.random.default_rng(8), 90, 9, 4)
    y = np.array(["a", "b", "c", "d"])[y]
    m = mlp.train(X, y, hidden=(6, 5), epochs=3, device=device)
    path = tmp_path / "model.npz"
    m.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left behind
    for target in ["cpu", "numpy"] + (["cuda"] if device == "cuda" else []):
        loaded = mlp.load(path, device=target)
        assert loaded.device == target
        assert loaded.sizes == m.sizes and list(loaded.classes_) == list(m.classes_)
        assert loaded.history == m.history
        for k, v in m.params.items():
            assert np.array_equal(loaded.params[k], v)
        np.testing.assert_array_equal(loaded.predict(X), m.predict(X))
        if target == device:
            assert np.array_equal(loaded.predict_proba(X), m.predict_proba(X))
        else:
            np.testing.assert_allclose(loaded.predict_proba(X), m.predict_proba(X), atol=1e-6)


def test_save_failure_leaves_no_file(tmp_path, monkeypatch):
    X, y = make_problem(np.random.default_rng(9), 30, 3, 2)
    m = mlp.train(X, y, hidden=2, epochs=1)
    target = tmp_path / "m.npz"
    m.save(target)
    before = target.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        m.save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_training_releases_the_gil():
    """Another Python thread keeps running while the C core trains."""
    rng = np.random.default_rng(10)
    X = rng.integers(0, 256, size=(3000, 784), dtype=np.uint8)
    y = rng.integers(0, 10, 3000)
    from mlp._backends import get_backend
    sizes = (784, 512, 10)
    params, orders = initial_state(sizes, len(X), 50)
    net = get_backend("cpu").network(sizes, params, input_scale=1 / 255)
    data = net.bind(X, y.astype(np.int32))
    span = {}

    def work():  # epochs until long enough to tell, however fast the machine
        span["start"] = time.perf_counter()
        for order in orders:
            net.train_epoch(data, order, 32, sgd(0.01))
            if time.perf_counter() - span["start"] > 0.3:
                break
        span["end"] = time.perf_counter()

    ticks = []
    t = threading.Thread(target=work)
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    t.join()
    duration = span["end"] - span["start"]
    inside = [x for x in ticks if span["start"] < x < span["end"]]
    assert duration > 0.05, "the epoch was too short to tell"
    # with the GIL held this thread would be frozen for the whole epoch
    assert len(inside) >= 10
    assert max(np.diff([span["start"], *inside, span["end"]])) < duration / 2


def test_available_devices_and_repr():
    devices = mlp.available_devices()
    assert "cpu" in devices and "numpy" in devices
    X, y = make_problem(np.random.default_rng(11), 20, 3, 2)
    m = mlp.train(X, y, hidden=4, epochs=1, device="cpu")
    assert repr(m) == "Model(3-4-2, classes=2, device='cpu')"


@pytest.mark.parametrize("device", DEVICES)
def test_progress_reports_do_not_change_training(device):
    X, y = make_problem(np.random.default_rng(12), 500, 10, 3)
    calls = []
    a = mlp.train(X, y, hidden=8, epochs=2, batch_size=7, device=device)
    b = mlp.train(X, y, hidden=8, epochs=2, batch_size=7, device=device,
                  on_progress=lambda *args: calls.append(args))
    assert np.array_equal(a.params["W1"], b.params["W1"])
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-6)
    assert a.history["accuracy"] == b.history["accuracy"]
    assert calls[-1] == (2, 500, 500) and len(calls) > 10
    assert all(0 < done <= total for _, done, total in calls)


def test_one_model_used_from_several_threads():
    """Calls into the core on one model take turns: each thread gets the
    same answer as a lone call."""
    X, y = make_problem(np.random.default_rng(13), 3000, 50, 4)
    m = mlp.train(X, y, hidden=64, epochs=1, device="cpu")
    want = m.predict_proba(X)
    results = [None] * 8

    def work(i):
        results[i] = m.predict_proba(X)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, want) for r in results)
