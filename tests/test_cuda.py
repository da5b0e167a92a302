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
# (the general code of both: Adam and GELU)
@pytest.mark.parametrize("hidden,batch_size,general", [
    (128, 64, False), (128, 512, False), ((128, 64), 64, False), (128, 64, True), (128, 512, True)])
def test_same_seed_gives_identical_bytes(mnist_subset, hidden, batch_size, general):
    X, y = mnist_subset["X_train"], mnist_subset["y_train"]
    kw = dict(optimizer="adam", activation="gelu", weight_decay=1e-3) if general else \
        dict(momentum=0.9)
    runs = [mlp.train(X, y, hidden=hidden, epochs=2, batch_size=batch_size, device="cuda", **kw)
            for _ in range(2)]
    a, b = (r.params for r in runs)
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert runs[0].history["loss"] == runs[1].history["loss"]


@pytest.mark.cuda
@pytest.mark.parametrize("hidden,batch_size", [((128, 64), 64), ((300, 200, 100), 32),
                                               ((128, 64), 1024)])
def test_chained_launches_give_identical_bytes(mnist_subset, monkeypatch, hidden, batch_size):
    """The kernel-per-op path launches its short kernels chained to the one
    before (cuda/common.cuh, launch_chained; on compute capability 9.0 and
    newer): the same parameters and losses, bit for bit, as with each kernel
    launched after the one before has finished (MLP_CUDA_CHAINED=0)."""
    X, y = mnist_subset["X_train"], mnist_subset["y_train"]
    runs = []
    for chained in ("0", "1"):
        monkeypatch.setenv("MLP_CUDA_CHAINED", chained)
        runs.append(mlp.train(X, y, hidden=hidden, epochs=2, batch_size=batch_size,
                              momentum=0.9, device="cuda"))
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


@pytest.mark.cuda
@pytest.mark.parametrize("optimizer,hidden", [("sgd", (256,)), ("adam", (256,)),
                                              ("adam", (1024, 1024))])
def test_a_stop_request_ends_a_running_epoch_soon(optimizer, hidden):
    """One-kernel epochs poll the stop flag every few steps; the kernel-per-op
    path looks at it between chunks of steps. Either way the epoch ends soon
    after the request, with the steps done so far applied."""
    import threading
    import time
    from mlp._backends import get_backend
    from mlp.optimizers import make_optimizer
    rng = np.random.default_rng(0)
    n = 1_000_000
    X = rng.standard_normal((n, 100)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    sizes = (100, *hidden, 10)
    params = mlp.training.initial_state(sizes, 1, 1)[0]
    net = get_backend("cuda").network(sizes, params)
    data = net.bind(X, labels=y)
    opt = make_optimizer(optimizer, 0.01).core_dict()
    order = np.arange(n, dtype=np.int64)
    net.train_epoch(data, order[:64 * 40], 32, opt)  # warm up: plans, graphs
    state = {}

    def stop_later():
        time.sleep(0.1)
        state["at"] = time.perf_counter()
        net.request_stop()

    threading.Thread(target=stop_later).start()
    start = time.perf_counter()
    with pytest.raises(net.module.Stopped, match="after .* rows"):
        net.train_epoch(data, order, 16, opt)
    late = time.perf_counter() - state["at"]
    assert late < 0.5, late
    assert time.perf_counter() - start < 10
    steps = net.get_state()[1]
    assert 40 < steps < 40 + n // 16
    assert np.isfinite(net.get_params()).all()
    net.train_epoch(data, order[:3200], 32, opt)  # the request was used up


def _fork_child(queue):
    X, y = make_problem(np.random.default_rng(1), 200, 8, 2)
    m = mlp.train(X, y, hidden=4, epochs=1)  # device "auto"
    try:
        mlp.train(X, y, hidden=4, epochs=1, device="cuda")
        queue.put((m.device, "no error"))
    except RuntimeError as exc:
        queue.put((m.device, str(exc)))


@pytest.mark.cuda
def test_a_child_forked_after_cuda_started_trains_on_the_cpu():
    import multiprocessing
    X, y = make_problem(np.random.default_rng(0), 200, 8, 2)
    assert mlp.train(X, y, hidden=4, epochs=1, device="cuda").device == "cuda"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()
    child = ctx.Process(target=_fork_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    device, error = queue.get()
    assert device == "cpu" and "forked from one that had started CUDA" in error


@pytest.mark.cuda
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gpu_division_and_square_root_round_as_ieee_float32(seed):
    """mlp_div and mlp_sqrt (csrc/pointwise.h) compute on the GPU without
    nvcc's subroutine calls; over 2^26 inputs a seed (random bits, moderate
    values, tiny dividends, specials) they match __fdiv_rn and __fsqrt_rn in
    every bit."""
    from mlp import _cuda
    assert _cuda.check_rounding(1 << 26, seed) == 0


def test_c_core_division_and_square_root_round_as_ieee_float32():
    from mlp import _cpu
    assert _cpu.check_rounding(1 << 16, 7) == 0
    with pytest.raises(ValueError, match="samples"):
        _cpu.check_rounding(-1)
