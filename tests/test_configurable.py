"""What the configurable network gives a user of mlp.train: regression,
multi-label, optimizers, schedules, early stopping, continued training,
sample weights, and models that keep all of it through save and load."""

import json

import numpy as np
import pytest

import mlp
from mlp import reference
from mlp.optimizers import make_optimizer

from conftest import make_problem

DEVICES = ["cpu", "numpy", pytest.param("cuda", marks=pytest.mark.cuda)]


def regression_problem(n=400, d=6, outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = np.stack([np.sin(X[:, 0]) + 0.5 * X[:, k % d] for k in range(outputs)], axis=1)
    return X, (y[:, 0] if outputs == 1 else y).astype(np.float32)


@pytest.mark.parametrize("device", DEVICES)
def test_regression_predicts_outputs_and_scores_r2(device, tmp_path):
    X, y = regression_problem()
    m = mlp.train(X, y, loss="squared_error", hidden=32, activation="tanh", optimizer="adam",
                  lr=0.01, epochs=40, batch_size=32, device=device)
    assert m.classes_ is None and m.task == "regressor"
    pred = m.predict(X)
    assert pred.shape == (400,)
    assert m.score(X, y) > 0.9
    r2 = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert m.score(X, y) == pytest.approx(r2, rel=1e-5)
    with pytest.raises(AttributeError, match="regressor"):
        m.predict_proba(X)
    m.save(tmp_path / "r.npz")
    back = mlp.load(tmp_path / "r.npz", device="cpu")
    assert back.task == "regressor" and back.activation == "tanh"
    np.testing.assert_allclose(back.predict(X), pred, rtol=1e-5, atol=1e-6)


def test_several_regression_targets():
    X, y = regression_problem(outputs=3)
    m = mlp.train(X, y, loss="squared_error", hidden=16, optimizer="adam", lr=0.01, epochs=20)
    assert m.predict(X).shape == (400, 3)
    assert m.evaluate(X, y)["r2"] == pytest.approx(m.score(X, y))


def test_a_continuous_target_needs_the_regression_loss_named():
    X, y = regression_problem()
    with pytest.raises(TypeError, match="must hold numbers"):
        mlp.train(X, y.astype(str), loss="squared_error")
    with pytest.raises(ValueError, match="0/1 indicator"):
        mlp.train(X, np.stack([y, y], axis=1), loss="binary_cross_entropy")


@pytest.mark.parametrize("device", DEVICES)
def test_multilabel_predicts_the_indicator_matrix(device):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 5)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < -0.5], axis=1).astype(int)
    m = mlp.train(X, Y, loss="binary_cross_entropy", hidden=32, optimizer="adam", lr=0.02,
                  epochs=30, batch_size=32, device=device)
    pred = m.predict(X)
    assert pred.shape == (300, 3) and set(np.unique(pred)) <= {0, 1}
    assert m.score(X, Y) > 0.85
    assert m.score(X, Y) == pytest.approx(np.mean(np.all(pred == Y, axis=1)))
    proba = m.predict_proba(X)
    assert ((proba >= 0) & (proba <= 1)).all()
    assert m.evaluate(X, Y)["accuracy"] == pytest.approx(m.score(X, Y))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("activation", list(reference.ACTIVATIONS))
def test_every_activation_and_optimizer_learns(optimizer, activation):
    rng = np.random.default_rng(3)
    X, y = make_problem(rng, 300, 8, 3)
    X[:, 0] += 3 * y  # learnable
    m = mlp.train(X, y, hidden=16, activation=activation, optimizer=optimizer, epochs=15,
                  batch_size=32, momentum=0.9 if optimizer == "sgd" else 0.0,
                  lr=0.02 if optimizer == "sgd" else 0.01)
    assert m.history["loss"][-1] < m.history["loss"][0]
    assert m.score(X, y) > 0.8


def test_schedules_set_each_epochs_rate():
    X, y = make_problem(np.random.default_rng(4), 100, 4, 2)
    lrs = {name: mlp.train(X, y, hidden=4, epochs=6, lr=0.1, lr_schedule=name).history["lr"]
           for name in ("constant", "step", "cosine", "invscaling")}
    assert lrs["constant"] == [0.1] * 6
    assert lrs["step"] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert lrs["cosine"] == pytest.approx([0.05 * (1 + np.cos(np.pi * e / 6)) for e in range(6)])
    assert lrs["invscaling"] == pytest.approx([0.1 / np.sqrt(e) for e in range(1, 7)])
    custom = mlp.train(X, y, hidden=4, epochs=3, lr=0.1,
                       lr_schedule=mlp.schedules.InvScaling(power_t=0.5, per="sample"))
    assert custom.history["lr"] == pytest.approx([0.1, 0.1 / np.sqrt(101), 0.1 / np.sqrt(201)])


def test_adaptive_schedule_divides_by_five_then_stops():
    X, y = make_problem(np.random.default_rng(5), 60, 4, 2)
    # tol so large that no epoch counts as an improvement
    m = mlp.train(X, y, hidden=4, epochs=100, lr=1e-4, lr_schedule="adaptive",
                  n_iter_no_change=2, tol=1e9)
    lrs = m.history["lr"]
    assert lrs[:3] == [1e-4] * 3 and lrs[3] == pytest.approx(2e-5)  # epoch 1 improves on inf
    assert m.history["stop_reason"].startswith("the learning rate reached")
    assert min(lrs) < 1e-6 * 5 and len(lrs) < 100


def test_early_stopping_holds_out_stratified_rows_and_keeps_the_best_epoch():
    rng = np.random.default_rng(6)
    X, y = make_problem(rng, 400, 10, 3)
    m = mlp.train(X, y, hidden=64, epochs=200, lr=0.5, early_stopping=True,
                  validation_fraction=0.2, n_iter_no_change=3, tol=0.0, seed=1)
    h = m.history
    assert h["stopped_epoch"] < 200 and "validation loss did not improve" in h["stop_reason"]
    assert len(h["val_loss"]) == h["stopped_epoch"]
    best = int(np.argmin(h["val_loss"])) + 1
    assert h["best_epoch"] == best and h["stopped_epoch"] == best + 3
    # the returned weights are the best epoch's: re-train to it without early stopping
    again = mlp.train(X, y, hidden=64, epochs=best, lr=0.5, seed=1, early_stopping=True,
                      validation_fraction=0.2, n_iter_no_change=1000)
    np.testing.assert_array_equal(m.params["W1"], again.params["W1"])


def test_validation_data_alone_never_stops_training():
    X, y = make_problem(np.random.default_rng(7), 100, 4, 2)
    m = mlp.train(X, y, hidden=4, epochs=8, validation_data=(X, y), n_iter_no_change=1, tol=10)
    assert m.history["stopped_epoch"] == 8 and m.history["stop_reason"] is None


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_init_continues_training_with_the_optimizer_state(optimizer, tmp_path):
    X, y = make_problem(np.random.default_rng(8), 120, 5, 3)
    kw = dict(hidden=8, optimizer=optimizer, shuffle=False, batch_size=16,
              momentum=0.9 if optimizer == "sgd" else 0.0)
    whole = mlp.train(X, y, epochs=4, **kw)
    half = mlp.train(X, y, epochs=2, **kw)
    half.save(tmp_path / "half.npz")
    rest = mlp.train(X, y, epochs=2, init=mlp.load(tmp_path / "half.npz"), **kw)
    for k in whole.params:
        np.testing.assert_allclose(rest.params[k], whole.params[k], rtol=1e-6, atol=1e-7)
    assert rest.optimizer_state["steps"] == whole.optimizer_state["steps"] == 4 * 8


def test_init_must_match_the_network():
    X, y = make_problem(np.random.default_rng(9), 50, 5, 3)
    m = mlp.train(X, y, hidden=8, epochs=1)
    with pytest.raises(ValueError, match="layer sizes"):
        mlp.train(X, y, hidden=9, epochs=1, init=m)
    with pytest.raises(ValueError, match="activation"):
        mlp.train(X, y, hidden=8, activation="tanh", epochs=1, init=m)
    with pytest.raises(TypeError, match="init must be an mlp.Model"):
        mlp.train(X, y, init="model.npz")


def test_sample_weights_count_like_repeated_rows():
    """A row of weight 2 is, in a full batch, the same row given twice."""
    rng = np.random.default_rng(10)
    X, y = make_problem(rng, 30, 4, 2)
    w = np.ones(30)
    w[:10] = 2
    Xd, yd = np.concatenate([X, X[:10]]), np.concatenate([y, y[:10]])
    a = mlp.train(X, y, hidden=6, epochs=5, batch_size=30, shuffle=False, sample_weight=w)
    b = mlp.train(Xd, yd, hidden=6, epochs=5, batch_size=40, shuffle=False)
    np.testing.assert_allclose(a.params["W1"], b.params["W1"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-5)
    with pytest.raises(ValueError, match="sample_weight must be finite and >= 0"):
        mlp.train(X, y, sample_weight=-w)


@pytest.mark.parametrize("device", DEVICES)
def test_loss_and_grad_is_the_gradient_of_the_loss(device):
    """The full-batch entry point (for L-BFGS) against finite differences of
    itself and against the float64 reference, scikit-learn's L2 included."""
    from mlp._backends import get_backend
    rng = np.random.default_rng(11)
    X, y = make_problem(rng, 40, 5, 3)
    sizes = (5, 6, 3)
    params = mlp.training.initial_state(sizes, 40, 1, seed=2, activation="tanh")[0]
    w = (rng.random(40) + 0.5).astype(np.float32)
    opt = dict(make_optimizer("sgd", 0.1, weight_decay=0.3).core_dict(), convention="sklearn")
    net = get_backend(device).network(sizes, params, activation="tanh")
    data = net.bind(X, labels=y, sample_weight=w)
    loss, grad = net.loss_and_grad(data, opt)
    ref = reference.Reference(sizes, params, np.float64, "tanh")
    ref_loss, ref_grad = ref.loss_and_grad(X, y, opt, w)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-6)
    assert np.array_equal(net.get_params(), params)  # unchanged


def test_a_stop_request_ends_the_epoch():
    from mlp._backends import get_backend
    X, y = make_problem(np.random.default_rng(12), 64, 4, 2)
    net = get_backend("cpu").network((4, 3, 2), np.zeros(4 * 3 + 3 + 3 * 2 + 2, np.float32))
    data = net.bind(X, labels=y)
    net.model.request_stop()
    with pytest.raises(net.module.Stopped, match="after 0 rows"):
        net.train_epoch(data, np.arange(64), 8, make_optimizer("sgd").core_dict())
    net.train_epoch(data, np.arange(64), 8, make_optimizer("sgd").core_dict())  # used up


def test_pixel_scale_is_part_of_the_model(tmp_path):
    rng = np.random.default_rng(13)
    X, y = make_problem(rng, 200, 20, 3, uint8=True)
    m = mlp.train(X, y, hidden=8, epochs=2)
    assert m.input_scale == pytest.approx(1 / 255)
    np.testing.assert_allclose(m.predict_proba(X.astype(np.float32)), m.predict_proba(X),
                               rtol=1e-6)
    m.save(tmp_path / "m.npz")
    assert mlp.load(tmp_path / "m.npz").input_scale == m.input_scale


def test_files_of_format_version_1_still_load(tmp_path):
    """Written as version 1 wrote them: no config, inputs scaled by dtype."""
    X, y = make_problem(np.random.default_rng(14), 100, 12, 3, uint8=True)
    m = mlp.train(X, y, hidden=8, epochs=2)
    path = tmp_path / "v1.npz"
    np.savez(path, format=np.array("mlp.Model"), format_version=np.array(1),
             sizes=np.array(m.sizes, dtype=np.int64), params=m._flat, classes=m.classes_,
             history=np.array(json.dumps({"loss": m.history["loss"]})))
    old = mlp.load(path)
    assert old.activation == "relu" and old.loss == "cross_entropy"
    np.testing.assert_array_equal(old.predict(X), m.predict(X))
    np.testing.assert_allclose(old.predict_proba(X.astype(np.float32) / 255),
                               m.predict_proba(X), rtol=1e-5)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(activation="softplus"), ValueError, "activation must be one of"),
    (dict(loss="hinge"), ValueError, "loss must be one of"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer must be one of"),
    (dict(optimizer="adam", momentum=0.9), ValueError, "belong to optimizer='sgd'"),
    (dict(nesterov=True), ValueError, "nesterov=True needs momentum"),
    (dict(optimizer="adam", betas=(0.9, 1.0)), ValueError, r"betas must each be in \[0, 1\)"),
    (dict(optimizer="adam", eps=0), ValueError, "eps must be positive"),
    (dict(lr_schedule="linear"), ValueError, "lr_schedule must be one of"),
    (dict(validation_fraction=1.0), ValueError, "validation_fraction must be in"),
    (dict(weight_init="zeros"), ValueError, "weight_init must be one of"),
    (dict(lr=1e-50), ValueError, "lr must be at least 1e-30"),
])
def test_bad_configuration_names_the_argument(kwargs, error, match):
    X, y = make_problem(np.random.default_rng(15), 20, 3, 2)
    with pytest.raises(error, match=match):
        mlp.train(X, y, epochs=1, **kwargs)
