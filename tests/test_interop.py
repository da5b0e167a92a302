"""A model that travels: PyTorch and ONNX exports that compute what the
model computes, and the inputs users bring (pandas, object labels, sparse
matrices, continuous targets)."""

import numpy as np
import pytest

import mlp

from conftest import make_problem

LOSSES = ["cross_entropy", "squared_error", "binary_cross_entropy", "poisson"]


def trained(loss, activation="relu", uint8=False):
    rng = np.random.default_rng(0)
    X, y = make_problem(rng, 120, 12, 3, uint8=uint8)
    if loss == "squared_error":
        y = rng.standard_normal((120, 2)).astype(np.float32)
    elif loss == "binary_cross_entropy":
        y = (rng.random((120, 3)) < 0.5).astype(np.float32)
    elif loss == "poisson":
        y = rng.poisson(1.0, 120).astype(np.float32)
    return X, mlp.train(X, y, hidden=(10, 6), activation=activation, loss=loss, epochs=3,
                        optimizer="adam", lr=0.01)


def expected(model, X):
    return model.predict_proba(X) if model.task != "regressor" else \
        model.predict(X).reshape(len(X), -1)


@pytest.mark.parametrize("loss", LOSSES)
def test_to_torch_computes_what_the_model_computes(loss):
    torch = pytest.importorskip("torch")
    X, model = trained(loss, activation="gelu", uint8=loss == "cross_entropy")
    net = model.to_torch()
    with torch.no_grad():
        out = net(torch.from_numpy(X.astype(np.float32))).numpy()
    np.testing.assert_allclose(out, expected(model, X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity", "gelu"])
@pytest.mark.parametrize("loss", LOSSES)
def test_to_onnx_runs_in_onnxruntime(loss, activation, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    X, model = trained(loss, activation, uint8=loss == "cross_entropy")
    path = tmp_path / "model.onnx"
    model.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(["Y"], {"X": X.astype(np.float32)})[0]
    np.testing.assert_allclose(out, expected(model, X), rtol=1e-4, atol=1e-6)
    assert not list(tmp_path.glob(".mlp-*"))  # no temporary file left


def test_labels_as_objects_and_pandas_columns(tmp_path):
    rng = np.random.default_rng(1)
    X, y = make_problem(rng, 90, 5, 3)
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    m = mlp.train(X, names, hidden=8, epochs=3)
    assert list(m.classes_) == ["setosa", "versicolor", "virginica"]
    assert m.predict(X).dtype.kind == "U"
    with pytest.raises(TypeError, match="labels of one kind"):
        mlp.train(X, np.array([1, "a"] * 45, dtype=object), epochs=1)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    m = mlp.train(frame, pd.Series(names).astype("category"), hidden=8, epochs=3)
    assert list(m.feature_names_in_) == [f"f{i}" for i in range(5)]
    assert (m.predict(frame) == m.predict(X)).all()
    with pytest.raises(ValueError, match="same columns in the same order"):
        m.predict(frame[frame.columns[::-1]])
    m.save(tmp_path / "m.npz")
    assert list(mlp.load(tmp_path / "m.npz").feature_names_in_) == list(m.feature_names_in_)


def test_a_continuous_target_is_refused_for_classification():
    X, _ = make_problem(np.random.default_rng(2), 40, 3, 2)
    with pytest.raises(ValueError, match="continuous target.*loss='squared_error'"):
        mlp.train(X, np.linspace(0, 1, 40), epochs=1)
    mlp.train(X, np.arange(40.0) % 2, epochs=1)  # whole-number floats are labels


def test_sparse_input_says_to_densify():
    sparse = pytest.importorskip("scipy.sparse")
    X, y = make_problem(np.random.default_rng(3), 40, 6, 2)
    with pytest.raises(TypeError, match=r"sparse matrix.*X\.toarray\(\)"):
        mlp.train(sparse.csr_matrix(X), y)
