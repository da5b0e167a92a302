"""The CUDA core beyond op-by-op parity (tests/test_core_vs_reference.py):
accuracy on full MNIST, determinism, and its error cases."""

import os
import subprocess
import sys

import numpy as np
import pytest

import mlp
from mlp import _backends

from conftest import HAS_CUDA, make_problem


@pytest.mark.cuda
def test_full_mnist_three_epochs_matches_c_core(full_mnist):
    X, y, Xt, yt = (full_mnist[k] for k in ("X_train", "y_train", "X_test", "y_test"))
    gpu = mlp.train(X, y, epochs=3, device="cuda")
    cpu = mlp.train(X, y, epochs=3, device="cpu")
    acc_gpu, acc_cpu = gpu.score(Xt, yt), cpu.score(Xt, yt)
    assert acc_gpu > 0.95
    assert abs(acc_gpu - acc_cpu) <= 0.003, (acc_gpu, acc_cpu)


@pytest.mark.cuda
# one kernel per epoch (fused.cu, then fused_rows.cu); a kernel per op
@pytest.mark.parametrize("hidden,batch_size", [(128, 64), (128, 512), ((128, 64), 64)])
def test_same_seed_gives_identical_bytes(mnist_subset, hidden, batch_size):
    X, y = mnist_subset["X_train"], mnist_subset["y_train"]
    runs = [mlp.train(X, y, hidden=hidden, epochs=2, batch_size=batch_size, momentum=0.9,
                      device="cuda")
            for _ in range(2)]
    a, b = (r.params for r in runs)
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert runs[0].history["loss"] == runs[1].history["loss"]


@pytest.mark.cuda
@pytest.mark.parametrize("batch_size", [1, 7, 5000])
def test_unusual_batch_sizes(batch_size):
    """Batch 1 over many steps runs without a graph; 5000 is larger than n."""
    X, y = make_problem(np.random.default_rng(0), 300 if batch_size > 1 else 4200, 20, 3)
    g = mlp.train(X, y, hidden=16, epochs=1, batch_size=batch_size, lr=0.01, device="cuda")
    c = mlp.train(X, y, hidden=16, epochs=1, batch_size=batch_size, lr=0.01, device="cpu")
    np.testing.assert_allclose(g.history["loss"], c.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(g.params["W1"], c.params["W1"], rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_out_of_gpu_memory_is_a_memory_error_and_the_process_stays_usable():
    from mlp import _cuda
    with pytest.raises(MemoryError, match="out of GPU memory"):
        _cuda.Model((784, 10**8, 10))  # 314 GB of weights
    X, y = make_problem(np.random.default_rng(1), 100, 8, 2)
    assert mlp.train(X, y, hidden=4, epochs=1, device="cuda").device == "cuda"


@pytest.mark.cuda
def test_no_visible_gpu_is_a_clear_error_and_auto_falls_back():
    code = ("import mlp\n"
            "try:\n    mlp.train([[0.0], [1.0]], [0, 1], device='cuda')\n"
            "except RuntimeError as e:\n    print('ERROR', e)\n"
            "print('AUTO', mlp.train([[0.0], [1.0]], [0, 1]).device)\n")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd="/", check=True).stdout
    assert "ERROR device='cuda' is not available: no CUDA GPU is visible" in out
    assert "AUTO cpu" in out


def test_cuda_module_not_built_is_a_clear_error(monkeypatch):
    real = _backends._import_core
    monkeypatch.setattr(_backends, "_import_core",
                        lambda name: None if name == "_cuda" else real(name))
    with pytest.raises(RuntimeError, match="the CUDA core was not built"):
        mlp.train([[0.0], [1.0]], [0, 1], device="cuda")
    assert mlp.train([[0.0], [1.0]], [0, 1], device="auto").device == "cpu"


def test_no_gpu_here_is_reported_by_name():
    if HAS_CUDA:
        pytest.skip("a GPU is present")
    reason = _backends.cuda_unavailable_reason()
    assert any(s in reason for s in ("no NVIDIA driver", "no CUDA GPU", "was not built",
                                     "driver is too old"))
