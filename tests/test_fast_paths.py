"""The C core's fast paths (csrc/fast.c, csrc/kernels.c) against the float64
reference on shapes that are not multiples of any block, for every
instruction set this machine runs, against the plain ops, and across
thread counts."""

import os
import subprocess
import sys

import numpy as np
import pytest

from mlp import reference
from mlp._backends import get_backend
from mlp.optimizers import make_optimizer
from mlp.training import initial_state

from conftest import make_problem, rel_err, run_reference, run_backend, scale_of

# (n, d, hidden, classes, batch, uint8): outputs of 64+36, 130, 40 (a wide
# last layer), 31 and 32 (either side of the narrow/wide switch), odd d
SHAPES = [
    (150, 61, (100,), 3, 32, True),
    (90, 130, (130, 31), 40, 17, False),
    (70, 33, (32,), 5, 70, True),
    (40, 7, (65,), 2, 9, False),
]


def cpu_has(*features):
    try:
        flags = open("/proc/cpuinfo").read().split("\n\n")[0]
    except OSError:
        return False
    return all(f" {f}" in flags for f in features)


AVX2 = ("avx2", "fma")
AVX512 = AVX2 + ("avx512f", "avx512vl", "avx512bw", "avx512dq")
KERNEL_SETS = (["base"] + (["avx2"] if cpu_has(*AVX2) else [])
               + (["avx512"] if cpu_has(*AVX512) else []))


def optimizer(momentum, weight_decay):
    """SGD, or Adam when momentum is "adam" (the update kernel of each set)."""
    if momentum == "adam":
        return make_optimizer("adam", 0.01, weight_decay=weight_decay).core_dict()
    return make_optimizer("sgd", 0.05, momentum, weight_decay=weight_decay).core_dict()


def train_cpu(sizes, params, X, y, orders, batch, momentum, weight_decay, plain=False):
    return run_backend("cpu", sizes, params, X, y, orders, batch, plain=plain,
                       opt=optimizer(momentum, weight_decay))


@pytest.mark.parametrize("kernels", KERNEL_SETS + ["plain"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"d{s[1]}-h{s[2]}-c{s[3]}-b{s[4]}")
@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 1e-3), ("adam", 1e-3)])
def test_fast_paths_match_reference(monkeypatch, kernels, shape, momentum, weight_decay):
    n, d, hidden, classes, batch, uint8 = shape
    rng = np.random.default_rng(n + d)
    X, y = make_problem(rng, n, d, classes, uint8)
    sizes = (d, *hidden, classes)
    steps = 50
    epochs = -(-steps // -(-n // batch))
    params, orders = initial_state(sizes, n, epochs, seed=d)
    if kernels != "plain":
        monkeypatch.setenv("MLP_KERNELS", kernels)
    losses, final, net = train_cpu(sizes, params, X, y, orders, batch, momentum, weight_decay,
                                   plain=kernels == "plain")
    assert net.model.kernel_set == kernels
    ref_losses, ref_final, ref = run_reference(sizes, params, X, y, orders, batch,
                                               opt=optimizer(momentum, weight_decay))
    np.testing.assert_allclose(losses[:steps], ref_losses[:steps], rtol=1e-4)
    assert rel_err(final, ref_final) < 1e-4
    # prediction with the trained weights, against the reference on the same weights
    same = reference.Reference(sizes, final, np.float64, input_scale=scale_of(X))
    np.testing.assert_allclose(net.predict(net.bind(X)), same.predict(X), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kernels", KERNEL_SETS)
def test_rows_with_empty_input_blocks_match_reference(monkeypatch, kernels):
    """Pixel-like rows: whole blocks of 32 inputs without an entry (which the
    forward pass skips, fast.c's forward_rows), in the middle, at the start
    (the bias is still added) and at the end (ReLU still applied), and rows
    with no entry at all."""
    rng = np.random.default_rng(12)
    n, d, classes = 120, 200, 4
    X, y = make_problem(rng, n, d, classes, uint8=True)
    X[::2, 32:128] = 0   # middle blocks
    X[1::3, :64] = 0     # the first blocks
    X[2::5, 160:] = 0    # the last blocks
    X[7::11] = 0         # whole rows
    sizes = (d, 70, classes)
    params, orders = initial_state(sizes, n, 3, seed=12)
    monkeypatch.setenv("MLP_KERNELS", kernels)
    losses, final, net = train_cpu(sizes, params, X, y, orders, 16, 0.9, 0.0)
    ref_losses, ref_final, _ = run_reference(sizes, params, X, y, orders, 16,
                                             opt=optimizer(0.9, 0.0))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    assert rel_err(final, ref_final) < 1e-4
    same = reference.Reference(sizes, final, np.float64, input_scale=scale_of(X))
    np.testing.assert_allclose(net.predict(net.bind(X)), same.predict(X), rtol=1e-5, atol=1e-7)


def strokes(rng, n, d):
    """Pixel-like uint8 rows whose nonzero inputs come in runs of neighbours
    (2 to 7 long, starting at odd and even columns; some at the last
    column), as a drawn stroke's pixels do, and rows with no entry."""
    X = np.zeros((n, d), np.uint8)
    for r in range(n):
        for _ in range(int(rng.integers(4, 20))):
            a, length = int(rng.integers(0, d)), int(rng.integers(2, 8))
            X[r, a:a + length] = rng.integers(1, 256, size=len(X[r, a:a + length]))
    X[::9] = 0
    X[5::13, -1] = 200
    return X


@pytest.mark.parametrize("hidden", [(70,), (70, 40)])
@pytest.mark.parametrize("recipe", ["momentum", "adam", "sklearn-adam"])
def test_weight_pass_by_pairs_of_columns_matches_reference(monkeypatch, recipe, hidden):
    """A fused step's weight pass over a batch whose rows of dout do not fit
    the L1 cache reads the entries by pairs of neighbouring input columns
    (fast.h, nz_cols; AVX-512 only): a row with both columns of a pair
    takes one slot, a row with one of them a slot with a zero for the
    other. Against the float64 reference, and bit for bit against the AVX2
    set, which never pairs them. Runs of nonzero neighbours, an odd width
    (the last pair has one column), batches of more entries than the sort
    shares between threads (which the first layer's step does itself when a
    wide layer above keeps it from sorting beside the layers above, model.c's
    step_above_first)."""
    rng = np.random.default_rng(21)
    n, d, classes, batch = 300, 101, 4, 150
    X = strokes(rng, n, d)
    y = rng.integers(0, classes, n).astype(np.int32)
    sizes = (d, *hidden, classes)
    params, orders = initial_state(sizes, n, 3, seed=4)
    if recipe == "sklearn-adam":
        opt = make_optimizer("adam", 0.01, weight_decay=1e-3, convention="sklearn").core_dict()
    else:
        opt = optimizer(0.9 if recipe == "momentum" else "adam", 1e-3)
    results = {}
    for kernels in [k for k in KERNEL_SETS if k != "base"]:
        monkeypatch.setenv("MLP_KERNELS", kernels)
        losses, final, net = run_backend("cpu", sizes, params, X, y, orders, batch, opt=opt)
        assert net.model.kernel_set == kernels
        results[kernels] = (losses, final)
    ref_losses, ref_final, _ = run_reference(sizes, params, X, y, orders, batch, opt=opt)
    for losses, final in results.values():
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
        assert rel_err(final, ref_final) < 1e-4
    if "avx512" in results:
        for a, b in zip(results["avx2"], results["avx512"]):
            np.testing.assert_array_equal(a, b)


def test_unknown_kernel_request_falls_back_to_the_best_set(monkeypatch):
    monkeypatch.setenv("MLP_KERNELS", "avx9000")
    net = get_backend("cpu").network((3, 2, 2), np.zeros(3 * 2 + 2 + 2 * 2 + 2, np.float32))
    assert net.model.kernel_set == KERNEL_SETS[-1]


@pytest.mark.skipif(not cpu_has(*AVX512), reason="this CPU has no AVX-512")
@pytest.mark.parametrize("inputs,recipe", [("pixels", "sgd"), ("pixels", "momentum"),
                                           ("dense", "sgd"), ("pixels", "adam"),
                                           ("dense", "tanh"), ("dense", "adam"),
                                           ("sparse floats", "sgd"), ("wide pixels", "sgd")])
def test_avx512_gives_the_avx2_results_bit_for_bit(monkeypatch, inputs, recipe):
    """The AVX-512 set's wider register blocks change which thread and
    which block computes an output, never its sum's order or rounding
    (kernels.c): widths and batches that are not multiples of any block,
    sparse pixels, dense inputs (the dense register blocks), mostly-zero
    floats with -0.0 among them (the nonzero lists by compress), and rows
    wider than a block of inputs (fast.h's FAST_KBLOCK)."""
    rng = np.random.default_rng(5)
    n, sizes = 300, (1100 if inputs == "wide pixels" else 150, 300, 70, 40, 3)
    if "pixels" in inputs:
        X = rng.integers(0, 256, size=(n, sizes[0]), dtype=np.uint8)
        X[X < 160] = 0
        X[::3, 1000:1050] = 0  # the second block without entries
    else:
        X = rng.standard_normal((n, sizes[0])).astype(np.float32)
        if inputs == "sparse floats":
            X[X < 0.4] = 0.0
            X[rng.random(X.shape) < 0.1] = -0.0
    y = rng.integers(0, sizes[-1], n).astype(np.int32)
    params, orders = initial_state(sizes, n, 2, seed=3)
    opt = make_optimizer("adam" if recipe == "adam" else "sgd", 0.01,
                         momentum=0.9 if recipe == "momentum" else 0.0).core_dict()
    results = {}
    for kernels in ("avx2", "avx512"):
        monkeypatch.setenv("MLP_KERNELS", kernels)
        net = get_backend("cpu").network(sizes, params, input_scale=scale_of(X),
                                         activation="tanh" if recipe == "tanh" else "relu")
        assert net.model.kernel_set == kernels
        data = net.bind(X, y)
        losses = [net.train_epoch(data, o, 37, opt)[0] for o in orders]
        results[kernels] = (np.concatenate(losses), net.get_params(), net.predict(data))
    for a, b in zip(results["avx2"], results["avx512"]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("inputs,recipe", [("pixels", "sgd"), ("dense", "sgd"),
                                           ("pixels", "adam"), ("dense", "adam"),
                                           ("pixels", "sklearn-sgd"), ("pixels", "sklearn-adam"),
                                           ("dense", "tanh")])
def test_first_layer_by_panels_gives_the_same_results_bit_for_bit(monkeypatch, kernels, inputs,
                                                                   recipe):
    """An epoch may keep the first layer's weights and their optimizer
    state by panels of columns (csrc/fast.h, wlayout); MLP_PANELS=1 makes
    every epoch do so, 0 none. The losses (scikit-learn's penalty among
    them), parameters, optimizer state and predictions are the same bit for
    bit: 300 columns make two whole panels and a narrower last one, on the
    sparse and the dense paths, with the step fused by each rule."""
    rng = np.random.default_rng(8)
    n, sizes = 400, (120, 300, 50, 7)
    if inputs == "pixels":
        X = rng.integers(0, 256, size=(n, sizes[0]), dtype=np.uint8)
        X[X < 170] = 0
    else:
        X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], n).astype(np.int32)
    params, orders = initial_state(sizes, n, 2, seed=4)
    rule, _, kind = recipe.rpartition("-")
    opt = make_optimizer("adam" if kind == "adam" else "sgd", 0.01 if kind == "adam" else 0.05,
                         momentum=0.9 if rule and kind == "sgd" else 0.0,
                         weight_decay=1e-3 if rule else 0.0,
                         convention=rule or "torch").core_dict()
    monkeypatch.setenv("MLP_KERNELS", kernels)
    results = {}
    for panels in ("0", "1"):
        monkeypatch.setenv("MLP_PANELS", panels)
        net = get_backend("cpu").network(sizes, params, input_scale=scale_of(X),
                                         activation="tanh" if recipe == "tanh" else "relu")
        data = net.bind(X, y)
        losses = [net.train_epoch(data, o, 48, opt)[0] for o in orders]
        state, steps = net.get_state()
        results[panels] = (np.asarray(losses), net.get_params(), state, steps, net.predict(data))
    for a, b in zip(results["0"], results["1"]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("inputs", ["pixels", "dense"])
def test_reported_penalty_matches_reference(inputs):
    """scikit-learn's loss adds alpha / 2 / rows times the sum of the squared
    weights before each step. The fused steps sum the squares of the weights
    they change (csrc/fast.h, fused_step), the other layers beforehand: a
    first layer of 150 inputs (two blocks of rows and part of a third), a
    fused second layer, a narrow head; alpha large enough that the penalty
    is about half of each step's loss."""
    rng = np.random.default_rng(9)
    n, sizes = 256, (150, 300, 40, 5)
    X, y = make_problem(rng, n, sizes[0], sizes[-1], uint8=inputs == "pixels")
    params, orders = initial_state(sizes, n, 2, seed=6)
    opt = make_optimizer("adam", 1e-3, weight_decay=1.0, convention="sklearn").core_dict()
    losses, final, _ = run_backend("cpu", sizes, params, X, y, orders, 64, opt=opt)
    ref_losses, ref_final, _ = run_reference(sizes, params, X, y, orders, 64, opt=opt)
    without, _, _ = run_reference(sizes, params, X, y, orders, 64,
                                  opt=dict(opt, weight_decay=0.0))
    assert np.all(ref_losses - without > 0.3 * ref_losses)  # the penalty weighs
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert rel_err(final, ref_final) < 1e-4


SCRIPT = """
import hashlib, os, numpy as np
from mlp import reference
from mlp._backends import get_backend
from mlp.training import initial_state
rng = np.random.default_rng(0)
X = rng.integers(0, 256, size=(600, 200), dtype=np.uint8); X[X < 150] = 0
y = rng.integers(0, 10, 600).astype(np.int32)
dense = rng.standard_normal((600, 200)).astype(np.float32)  # the dense paths
from mlp.optimizers import make_optimizer
# (200, 64, 10): the column sort beside the layers above (model.c, step_above_first)
for sizes, inputs, opt in [((200, 300, 70, 10), X, "sgd"), ((200, 300, 70, 10), X, "momentum"),
                           ((200, 300, 70, 10), dense, "sgd"), ((200, 300, 70, 10), X, "adam"),
                           ((200, 300, 70, 10), dense, "tanh"), ((200, 64, 10), X, "sgd"),
                           ((200, 64, 10), X, "adam")]:
    params, orders = initial_state(sizes, 600, 2)
    net = get_backend("cpu").network(sizes, params, input_scale=1 / 255,
                                     activation="tanh" if opt == "tanh" else "relu")
    if os.environ.get("PIN") == "1":  # else the core picks its count as it goes
        net.set_threads(int(os.environ["OMP_NUM_THREADS"]))
    data = net.bind(inputs, y)
    core_opt = make_optimizer("adam" if opt == "adam" else "sgd",
                              momentum=0.9 if opt == "momentum" else 0.0).core_dict()
    for o in orders:
        net.train_epoch(data, o, 64, core_opt)
    print(hashlib.sha256(net.get_params().tobytes()).hexdigest())
"""


def test_results_do_not_depend_on_the_thread_count():
    """Pinned counts (the core then uses exactly these), and the count the
    core picks as it goes, which may change from one round of steps to the
    next (csrc/model.c, pick_threads)."""
    digests = set()
    for threads, pin in (("1", "1"), ("2", "1"), ("3", "1"), ("2", "0"), ("3", "0")):
        env = dict(os.environ, OMP_NUM_THREADS=threads, PIN=pin)
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                             text=True, cwd="/", check=True).stdout
        digests.add(out)
    assert len(digests) == 1, digests
