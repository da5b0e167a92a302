"""Bad input: a clear exception that names the argument; never a crash."""

import subprocess
import sys

import numpy as np
import pytest

import mlp
from mlp._backends import get_backend

from conftest import make_problem, not_under_asan, sgd

X, Y = make_problem(np.random.default_rng(0), 30, 4, 3)


def bad(**kwargs):
    args = {"X": X, "y": Y}
    args.update(kwargs)
    return mlp.train(args.pop("X"), args.pop("y"), **{"epochs": 1, **args})


@pytest.mark.parametrize("kwargs,error,match", [
    ({"X": X[0]}, ValueError, "X must be 2-D"),
    ({"X": X[None]}, ValueError, "X must be 2-D"),
    ({"y": Y[:, None]}, ValueError, "y must be 1-D"),
    ({"y": Y[:-1]}, ValueError, "y has 29 labels but X has 30"),
    ({"X": X[:0], "y": Y[:0]}, ValueError, "X is empty"),
    ({"X": X[:, :0]}, ValueError, "X is empty"),
    ({"X": np.where(X > 1, np.nan, X)}, ValueError, "X contains NaN"),
    ({"X": np.where(X > 1, np.inf, X)}, ValueError, "X contains NaN or infinity"),
    ({"X": X.astype(np.float64) * 1e300}, ValueError, "X holds values too large"),
    ({"X": X.astype(complex)}, TypeError, "X must hold real numbers"),
    ({"X": [[1, 2], [3]]}, TypeError, "X must be a 2-D array"),
    ({"y": np.zeros(30)}, ValueError, "y must hold at least 2 classes"),
    ({"y": np.array([None] * 30)}, TypeError, "y must hold labels of one kind"),
    ({"epochs": 0}, ValueError, "epochs must be positive"),
    ({"epochs": 1.5}, TypeError, "epochs must be an integer"),
    ({"batch_size": -1}, ValueError, "batch_size must be positive"),
    ({"hidden": 0}, ValueError, "hidden must be positive"),
    ({"hidden": (4, 0)}, ValueError, "hidden must be positive"),
    ({"hidden": ()}, ValueError, "hidden must name at least one"),
    ({"lr": 0.0}, ValueError, "lr must be positive"),
    ({"lr": float("nan")}, ValueError, "lr must be finite"),
    ({"lr": "fast"}, TypeError, "lr must be a number"),
    ({"momentum": -0.1}, ValueError, "momentum must be non-negative"),
    ({"weight_decay": -1e-4}, ValueError, "weight_decay must be non-negative"),
    ({"seed": -1}, ValueError, "seed must be a non-negative integer"),
    ({"device": "tpu"}, ValueError, "device must be one of"),
    ({"device": None}, ValueError, "device must be one of"),
    ({"validation_data": X}, TypeError, "validation_data must be a pair"),
    ({"validation_data": (X[:, :3], Y)}, ValueError, r"validation_data\[0\] has 3 features"),
    ({"validation_data": (X, Y + 7)}, ValueError, r"validation_data\[1\] holds labels"),
])
def test_train_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        bad(**kwargs)


@pytest.fixture(scope="module")
def model():
    return mlp.train(X, Y, hidden=4, epochs=1, device="cpu")


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_wrong_feature_count_at_predict(model, method):
    with pytest.raises(ValueError, match="X has 5 features, but the model was trained on 4"):
        getattr(model, method)(np.zeros((3, 5), np.float32))


def test_unknown_labels_at_evaluate(model):
    with pytest.raises(ValueError, match="y holds labels the model was not trained on"):
        model.evaluate(X, Y + 10)


def test_cuda_when_unavailable_is_a_clear_error():
    from conftest import HAS_CUDA
    if HAS_CUDA:
        pytest.skip("a GPU is present: device='cuda' works here")
    with pytest.raises(RuntimeError, match="device='cuda' is not available"):
        bad(device="cuda")
    # "auto" falls back to the C core
    assert bad(device="auto").device == "cpu"


@pytest.mark.parametrize("content", [b"", b"not a model", b"PK\x03\x04garbage"])
def test_load_rejects_files_that_are_not_models(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a saved mlp model"):
        mlp.load(path)


def test_load_rejects_other_npz_and_npy(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="is not a saved mlp model"):
        mlp.load(tmp_path / "other.npz")
    np.save(tmp_path / "arr.npy", np.arange(3))
    with pytest.raises(ValueError, match="is not a saved mlp model"):
        mlp.load(tmp_path / "arr.npy")


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        mlp.load(tmp_path / "missing.npz")


def test_load_rejects_inconsistent_shapes(tmp_path, model):
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path) as f:
        fields = {k: f[k] for k in f.files}
    fields["params"] = fields["params"][:-1]
    np.savez(path, **fields)
    with pytest.raises(ValueError, match=r"params has shape \(34,\), the layer sizes need"):
        mlp.load(path)


def test_core_wrapper_checks_its_own_arguments():
    """The compiled layer refuses what Python would never send, without crashing."""
    core = get_backend("cpu")
    net = core.network((4, 3, 2), np.zeros(4 * 3 + 3 + 3 * 2 + 2, np.float32))
    data = net.bind(X, (Y % 2).astype(np.int32))
    order = np.arange(30, dtype=np.int64)
    with pytest.raises(ValueError, match="order is empty"):
        net.train_epoch(data, order[:0], 8, sgd(0.1))
    with pytest.raises(ValueError, match=r"order\[3\] = 99"):
        net.train_epoch(data, np.where(order == 3, 99, order), 8, sgd(0.1))
    with pytest.raises(ValueError, match=r"labels span \[0, 2\], outside \[0, 2\)"):
        net.train_epoch(net.bind(X, Y.astype(np.int32)), order, 8, sgd(0.1))
    with pytest.raises(ValueError, match="lr must be a positive"):
        net.train_epoch(data, order, 8, dict(sgd(0.1), lr=-1.0))
    with pytest.raises(ValueError, match="data has 3 features, the model expects 4"):
        net.predict(net.bind(X[:, :3].copy()))
    with pytest.raises(ValueError, match="non-empty"):
        net.bind(X[:0])
    with pytest.raises(ValueError, match="the data set has no labels"):
        net.evaluate(net.bind(X))
    with pytest.raises(ValueError, match="layer size 1 is 0"):
        core.network((4, 0, 2), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="at least 2 layer widths"):
        core.network((4,), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="expected 23 parameters"):
        core.network((4, 3, 2), np.zeros(5, np.float32))


@not_under_asan
def test_allocation_failure_is_a_memory_error_not_a_crash():
    """With the address space capped at 4 GiB, a 6 GiB network cannot be
    allocated: the C core reports it and the process carries on. (A cap,
    because a machine that overcommits memory grants any single calloc.)"""
    code = ("import resource, numpy as np, mlp\n"
            "from mlp import _cpu\n"
            "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
            "try:\n    _cpu.Model((1 << 15, 1 << 14, 10))\n"
            "except MemoryError as e:\n    print('MemoryError:', e)\n"
            "print(mlp.train([[0.0], [1.0]], [0, 1], device='cpu').device)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "MemoryError: out of host memory for 537051146 parameters" in out.stdout
    assert out.stdout.strip().endswith("cpu")
