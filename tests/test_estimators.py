"""mlp.MLPClassifier and mlp.MLPRegressor: scikit-learn's own estimator
checks, the same parameters as scikit-learn's estimators after the same
steps, and what makes them usable in scikit-learn's tools (pickle, deep
copy, pipelines, parallel grid searches)."""

import copy
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import mlp  # noqa: E402


FLOAT32_REASON = ("the cores compute in float32: fitting with integer sample weights and "
                  "fitting with repeated rows agree to float32 rounding (about 1e-6), not to "
                  "the check's rtol of 1e-7")


def expected_failures(estimator):
    return {"check_sample_weight_equivalence_on_dense_data": FLOAT32_REASON}


@parametrize_with_checks([mlp.MLPClassifier(device="cpu", max_iter=100),
                          mlp.MLPRegressor(device="cpu", max_iter=100)],
                         expected_failed_checks=expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on the checks' tiny data
        check(estimator)


def fit_both(ours, theirs, X, y, **fit_kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(X, y, **fit_kw)
        theirs.fit(X, y, **fit_kw)
    return ours, theirs


def assert_same_parameters(ours, theirs, tol=2e-6):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        scale = max(1.0, float(np.abs(b).max()))
        assert np.abs(a - b).max() <= tol * scale
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-5)


SOLVERS = [
    dict(solver="sgd", nesterovs_momentum=True),
    dict(solver="sgd", nesterovs_momentum=False),
    dict(solver="sgd", momentum=0.0),
    dict(solver="sgd", learning_rate="invscaling", power_t=0.3),
    dict(solver="sgd", learning_rate="adaptive", tol=1e9, n_iter_no_change=1),
    dict(solver="adam"),
]


@pytest.mark.parametrize("settings", SOLVERS, ids=lambda d: "-".join(map(str, d.values())))
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_twenty_steps_match_scikit_learn_classifier(settings, activation):
    """The same initial weights and batches (drawn from random_state as
    scikit-learn draws them), 5 epochs of 4 batches: the same parameters, to
    float32 rounding (scikit-learn computing in float32 too)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    kw = dict(hidden_layer_sizes=(9, 5), activation=activation, batch_size=10, max_iter=5,
              random_state=3, alpha=0.01, learning_rate_init=0.05, **settings)
    ours, theirs = fit_both(mlp.MLPClassifier(device="cpu", **kw), SkClassifier(**kw), X, y)
    assert_same_parameters(ours, theirs)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("target", ["binary", "multilabel"])
def test_logistic_outputs_match_scikit_learn(target):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) if target == "binary" else \
        (rng.random((50, 3)) < 0.5).astype(int)
    kw = dict(hidden_layer_sizes=(8,), batch_size=10, max_iter=4, random_state=0, alpha=1e-3)
    ours, theirs = fit_both(mlp.MLPClassifier(device="cpu", **kw), SkClassifier(**kw), X, y)
    assert_same_parameters(ours, theirs)
    assert ours.out_activation_ == theirs.out_activation_ == "logistic"
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    assert ours.predict_proba(X).shape == theirs.predict_proba(X).shape


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("outputs", [1, 2])
def test_regressor_matches_scikit_learn(loss, outputs):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 5)).astype(np.float32)
    y = np.abs(X[:, :outputs] + 0.1 * rng.standard_normal((60, outputs))).astype(np.float32)
    y = y[:, 0] if outputs == 1 else y
    kw = dict(loss=loss, hidden_layer_sizes=(7,), batch_size=15, max_iter=5, random_state=4,
              alpha=1e-2, solver="sgd", learning_rate_init=0.01)
    ours, theirs = fit_both(mlp.MLPRegressor(device="cpu", **kw), SkRegressor(**kw), X, y)
    assert_same_parameters(ours, theirs)
    assert ours.out_activation_ == theirs.out_activation_
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-4, atol=1e-5)


def test_sample_weight_and_early_stopping_match_scikit_learn():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((80, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    w = rng.random(80) + 0.5
    kw = dict(hidden_layer_sizes=(6,), batch_size=16, max_iter=6, random_state=7, alpha=1e-2,
              early_stopping=True, validation_fraction=0.25, n_iter_no_change=2)
    ours, theirs = fit_both(mlp.MLPClassifier(device="cpu", **kw), SkClassifier(**kw), X, y,
                            sample_weight=w)
    assert_same_parameters(ours, theirs)
    assert ours.validation_scores_ == pytest.approx(theirs.validation_scores_)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)


def test_lbfgs_reaches_what_scikit_learn_reaches():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((100, 5)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    # 30 iterations: the loss falls from 0.7 to 0.0017 on the same path; near
    # convergence float32 gradients can end the search a few iterations early
    kw = dict(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=30, random_state=0, alpha=1e-3)
    ours, theirs = fit_both(mlp.MLPClassifier(device="cpu", **kw), SkClassifier(**kw), X, y)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=0.01)
    assert ours.score(X, y) >= theirs.score(X, y) - 0.05
    assert ours.n_iter_ == theirs.n_iter_ == 30


def test_partial_fit_needs_classes_then_continues_the_optimizer():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((60, 4)).astype(np.float32)
    y = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, 60)]
    kw = dict(hidden_layer_sizes=(8,), batch_size=20, random_state=1)
    ours, theirs = mlp.MLPClassifier(device="cpu", **kw), SkClassifier(**kw)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        ours.partial_fit(X, y)
    for _ in range(3):
        ours.partial_fit(X, y, classes=["cat", "dog", "emu"])
        theirs.partial_fit(X, y, classes=["cat", "dog", "emu"])
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, atol=2e-6)
    assert list(ours.classes_) == ["cat", "dog", "emu"]


def test_fit_interrupted_keeps_the_last_epoch_and_warns(monkeypatch):
    from mlp import _backends
    calls = {"n": 0}
    real = _backends.CoreNetwork.train_epoch

    def interrupt_on_third(self, *args):
        calls["n"] += 1
        out = real(self, *args)
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(_backends.CoreNetwork, "train_epoch", interrupt_on_third)
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        est = mlp.MLPClassifier((5,), max_iter=50, device="cpu").fit(X, y)
    assert est.n_iter_ == 2
    assert np.isfinite(est.predict_proba(X)).all()


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_estimators_and_models_pickle_and_deep_copy(kind, tmp_path):
    rng = np.random.default_rng(9)
    X = rng.standard_normal((50, 4))
    y = rng.integers(0, 3, 50) if kind == "classifier" else X[:, 0] ** 2
    est = (mlp.MLPClassifier if kind == "classifier" else mlp.MLPRegressor)(
        hidden_layer_sizes=(8,), max_iter=20, device="cpu").fit(X, y)
    model = mlp.train(X.astype(np.float32), y, hidden=8, epochs=2,
                      loss="cross_entropy" if kind == "classifier" else "squared_error")
    for obj, out in ((est, est.predict(X)), (model, model.predict(X))):
        for copied in (pickle.loads(pickle.dumps(obj)), copy.deepcopy(obj)):
            np.testing.assert_array_equal(copied.predict(X), out)
    est2 = pickle.loads(pickle.dumps(est))
    est2.partial_fit(X, y)  # the optimizer state travelled with it
    assert est2.n_iter_ == 1


def test_grid_search_over_a_pipeline_in_two_processes():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(10)
    X = rng.standard_normal((120, 5)) * 10
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    pipe = make_pipeline(StandardScaler(), mlp.MLPClassifier(max_iter=100, n_threads=1,
                                                             learning_rate_init=0.01,
                                                             random_state=0, device="cpu"))
    search = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)],
                                 "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    assert search.best_score_ > 0.8
    assert len(search.cv_results_["mean_test_score"]) == 4


def test_n_threads_does_not_change_results():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((300, 40))
    y = rng.integers(0, 4, 300)
    fits = [mlp.MLPClassifier((300,), max_iter=3, random_state=0, n_threads=t,
                              device="cpu").fit(X, y) for t in (1, 2)]
    for a, b in zip(fits[0].coefs_, fits[1].coefs_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("draws", [1, 2, 5])
def test_epoch_orders_drawn_ahead_are_scikit_learns(draws):
    """Orders drawn one epoch ahead in a thread: the same orders as drawn in
    turn, and the random state advanced only by the orders used."""
    from sklearn.utils import shuffle

    from mlp.estimators import _EpochOrders
    idx = np.arange(1000, dtype=np.int64)
    theirs, expected = np.random.RandomState(4), []
    order = idx
    for _ in range(draws):
        order = shuffle(order, random_state=theirs)
        expected.append(order)
    for ahead in (False, True):
        ours = np.random.RandomState(4)
        orders = _EpochOrders(idx, ours, ahead=ahead)
        got = [orders.next(more=True) for _ in range(draws)]  # one more drawn, never used
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ours.get_state()[1], theirs.get_state()[1])
        assert ours.get_state()[2] == theirs.get_state()[2]


def test_fit_with_orders_drawn_ahead_matches_scikit_learn(monkeypatch):
    """The estimator with the GPU's draw-ahead forced on the C core, early
    stopping ending the fit before max_iter: the same parameters as
    scikit-learn's, and the caller's RandomState left where scikit-learn
    leaves it."""
    import mlp.estimators as estimators

    class Ahead(estimators._EpochOrders):
        def __init__(self, sample_idx, random_state, ahead):
            super().__init__(sample_idx, random_state, ahead=True)

    monkeypatch.setattr(estimators, "_EpochOrders", Ahead)
    rng = np.random.default_rng(13)
    X = rng.standard_normal((60, 5)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    ours_rs, theirs_rs = np.random.RandomState(8), np.random.RandomState(8)
    kw = dict(hidden_layer_sizes=(7,), batch_size=16, max_iter=50, tol=1e9, n_iter_no_change=2,
              learning_rate_init=0.05)
    ours, theirs = fit_both(mlp.MLPClassifier(device="cpu", random_state=ours_rs, **kw),
                            SkClassifier(random_state=theirs_rs, **kw), X, y)
    assert ours.n_iter_ == theirs.n_iter_ < 50
    assert_same_parameters(ours, theirs)
    np.testing.assert_array_equal(ours_rs.get_state()[1], theirs_rs.get_state()[1])
    assert ours_rs.get_state()[2] == theirs_rs.get_state()[2]


@pytest.mark.parametrize("device", ["numpy", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_other_devices_give_the_same_fit(device):
    rng = np.random.default_rng(12)
    X = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    kw = dict(hidden_layer_sizes=(7,), batch_size=16, max_iter=4, random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = mlp.MLPClassifier(device="cpu", **kw).fit(X, y)
        b = mlp.MLPClassifier(device=device, **kw).fit(X, y)
    for p, q in zip(a.coefs_, b.coefs_):
        np.testing.assert_allclose(p, q, atol=1e-5)


def test_without_scikit_learn_the_error_names_the_extra():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "import mlp\n"
            "mlp.train([[0.0], [1.0]], [0, 1], epochs=1)\n"
            "try:\n    mlp.MLPClassifier\n"
            "except ImportError as e:\n    print('ERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd="/", check=True).stdout
    assert "ERROR mlp.MLPClassifier needs scikit-learn" in out and "'sklearn' extra" in out
