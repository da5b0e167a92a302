"""Every compiled core against the float64 numpy reference: the same
weights, the same batches, the same losses at every step and the same
parameters after 50 steps; and the cores against each other."""

import subprocess

import numpy as np
import pytest

from mlp import reference
from mlp._backends import get_backend
from mlp.optimizers import make_optimizer
from mlp.training import initial_state

from conftest import (gpu_has_tensor_products, make_problem, rel_err, run_backend, run_reference,
                      scale_of, sgd, targets_of)

# (n, d, hidden widths, classes, batch size, uint8 input)
SHAPES = [
    (200, 784, (256,), 10, 64, True),    # the lecture's network, last batch partial
    (37, 3, (1,), 2, 8, False),          # d=3, hidden=1, 2 classes, partial batch
    (10, 5, (7,), 3, 64, False),         # batch larger than n
    (96, 13, (9, 6), 4, 16, False),      # two hidden layers
    (50, 33, (17,), 5, 50, True),        # odd widths, one batch per epoch
]
CORES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
STEPS = 50


def cuda_runs(monkeypatch, switch, settings, *args, **kwargs):
    """run_backend("cuda", *args, **kwargs) once with each setting of the
    environment variable `switch`, in order."""
    runs = []
    for value in settings:
        monkeypatch.setenv(switch, value)
        runs.append(run_backend("cuda", *args, **kwargs))
    return runs


def schedule(shape, seed):
    n, d, hidden, classes, batch, uint8 = shape
    rng = np.random.default_rng(seed)
    X, y = make_problem(rng, n, d, classes, uint8)
    sizes = (d, *hidden, classes)
    epochs = -(-STEPS // -(-n // batch))
    params, orders = initial_state(sizes, n, epochs, seed=seed)
    return X, y, sizes, params, orders, batch


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"n{s[0]}-d{s[1]}-h{s[2]}-c{s[3]}-b{s[4]}")
@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 1e-3)])
def test_core_matches_reference(core, shape, momentum, weight_decay):
    X, y, sizes, params, orders, batch = schedule(shape, seed=len(shape[2]) + shape[0])
    lr = 0.05
    losses, final, net = run_backend(core, sizes, params, X, y, orders, batch, lr, momentum,
                                     weight_decay)
    ref_losses, ref_final, ref = run_reference(sizes, params, X, y, orders, batch, lr, momentum,
                                               weight_decay)
    assert len(losses) >= STEPS and len(losses) == len(ref_losses)
    np.testing.assert_allclose(losses[:STEPS], ref_losses[:STEPS], rtol=1e-4)
    # all parameters, each layer's W and b by itself
    for got, want in zip(*(reference.layer_views(p, sizes)[0] + reference.layer_views(p, sizes)[1]
                           for p in (final, ref_final))):
        assert rel_err(got, want) < 1e-4
    # predict and evaluate with the trained weights, against the reference on the same weights
    same = reference.Reference(sizes, final, np.float64, input_scale=scale_of(X))
    probs = net.predict(net.bind(X))
    np.testing.assert_allclose(probs, same.predict(X), rtol=1e-5, atol=1e-7)
    logits = net.predict(net.bind(X), logits=True)
    assert rel_err(logits, same.predict(X, want_logits=True)) < 1e-5
    loss, acc = net.evaluate(net.bind(X, y))
    ref_loss, ref_acc = same.evaluate(X, y)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert acc == pytest.approx(ref_acc, abs=1.5 / len(y))


# The CUDA core also against shapes that its one-kernel epochs cut
# differently. cuda/fused.cu: batches of several staged chunks with the last
# one partial, hidden units spanning tiles with the last one partial, and more
# tiles than the GPU runs blocks at once. cuda/fused_rows.cu (steps of many
# rows for the inputs' width, fused_by_rows): several row tiles with the last
# one partial, a last group of hidden units partial, a hidden width that is
# not a multiple of 4, float32 inputs, and more items than the GPU runs
# blocks at once. And fused.cu's head with 40 classes and 5 rows a block.
CUDA_SHAPES = SHAPES + [
    (300, 784, (40,), 7, 150, True),
    (300, 100, (40,), 7, 150, True),
    (64, 200, (1100,), 10, 16, True),
    (700, 300, (64,), 10, 512, True),
    (1300, 50, (100,), 7, 600, False),
    (600, 20, (37,), 3, 512, False),
    (520, 37, (1100,), 5, 512, True),
    (300, 784, (64,), 40, 150, True),
]


@pytest.mark.cuda
@pytest.mark.parametrize("path", ["fast", "base", "gemm", "tensor", "tensor-large", "plain"])
@pytest.mark.parametrize("shape", CUDA_SHAPES,
                         ids=lambda s: f"n{s[0]}-d{s[1]}-h{s[2]}-c{s[3]}-b{s[4]}")
def test_cuda_core_matches_c_core(shape, path, monkeypatch):
    """fast: one kernel per epoch for one hidden layer, on tensor cores where
    the GPU has them; base: the same without tensor cores; gemm: the tuned
    kernel per op; tensor: the same with every product on tensor cores
    where the GPU has them (gemm_tensor.cuh, MLP_CUDA_TENSOR=1: products of
    at least one multiply-add), in its small or its large tiles (forced by
    MLP_CUDA_TENSOR_TILES; by its own rule gemm.cu keeps the small products
    of these shapes on the float32 tiles); plain: the readable kernel per op."""
    tensor_path = path.startswith("tensor")
    if path in ("base", "gemm") or tensor_path:
        monkeypatch.setenv("MLP_KERNELS", "gemm" if tensor_path else path)
    monkeypatch.setenv("MLP_CUDA_TENSOR", "1" if tensor_path else "0")
    if tensor_path:
        monkeypatch.setenv("MLP_CUDA_TENSOR_TILES", "large" if path == "tensor-large" else "small")
    X, y, sizes, params, orders, batch = schedule(shape, seed=7)
    c_losses, c_final, _ = run_backend("cpu", sizes, params, X, y, orders, batch, 0.05, 0.9)
    g_losses, g_final, net = run_backend("cuda", sizes, params, X, y, orders, batch, 0.05, 0.9,
                                         plain=path == "plain")
    fast = {"fused-rows", "fused-tensor", "fused"}
    tensor = "cuda-tensor" if gpu_has_tensor_products() else "cuda"
    fused = {"fast": fast, "base": {"fused"}, "gemm": {"cuda"}, "tensor": {tensor},
             "tensor-large": {tensor}, "plain": {"plain"}}[path]
    # a deeper net runs the kernel per op, on the float32 tiles unless forced
    assert net.model.kernel_set in (fused if len(sizes) == 3 or path == "plain" or tensor_path
                                    else {"cuda"})
    np.testing.assert_allclose(g_losses[:STEPS], c_losses[:STEPS], rtol=1e-4)
    assert rel_err(g_final, c_final) < 1e-4


# cuda/gemm_tensor.cuh against gemm.cu's float32 tiles: products that gemm.cu
# puts on tensor cores by default (its tiling), and every product forced
# (MLP_CUDA_TENSOR=1) onto the small or the large tiles (on an H100 or H200
# with an sm_90a build, the large tiles run on wgmma; "large-mma" keeps them
# on mma.sync there, MLP_CUDA_WGMMA=0). uint8 and float32
# rows (gathered, then multiplied; predicting reads the data set's rows on
# the float32 tiles, the layers above on tensor cores), widths that are not
# multiples of 4 (the copies of 4 bytes), K split across blocks (a few tiles
# over many rows), Adam, and a batch of 64 (a weight gradient of 153 large
# tiles over a K of 64, which tiling gives the large tiles by default).
TENSOR_SHAPES = {
    "mnist-like": ((2048, 784, (1024, 256), 10, 1024, True), False),
    "odd-widths-adam": ((3000, 300, (1030, 130), 7, 3000, False), True),
    "split-k": ((1200, 37, (1030, 70), 3, 1200, False), False),
    "batch-64": ((512, 300, (2048, 1030), 5, 64, False), False),
}


@pytest.mark.cuda
@pytest.mark.parametrize("name,tensor", [
    ("mnist-like", "default"), ("mnist-like", "small"), ("mnist-like", "large"),
    ("mnist-like", "large-mma"), ("odd-widths-adam", "default"), ("odd-widths-adam", "small"),
    ("odd-widths-adam", "large"), ("odd-widths-adam", "large-mma"), ("split-k", "small"),
    ("split-k", "large"), ("split-k", "large-mma"), ("batch-64", "default")])
def test_tensor_products_match_float32_tiles(name, tensor, monkeypatch):
    shape, adam = TENSOR_SHAPES[name]
    monkeypatch.setenv("MLP_KERNELS", "gemm")
    X, y, sizes, params, orders, batch = schedule(shape, seed=3)
    opt = make_optimizer("adam", 1e-3).core_dict() if adam else sgd(0.02, 0.9)
    runs = []
    for setting in ("0", tensor, tensor):
        monkeypatch.delenv("MLP_CUDA_TENSOR", raising=False)
        monkeypatch.delenv("MLP_CUDA_TENSOR_TILES", raising=False)
        monkeypatch.delenv("MLP_CUDA_WGMMA", raising=False)
        if setting == "0":
            monkeypatch.setenv("MLP_CUDA_TENSOR", "0")
        elif setting != "default":
            monkeypatch.setenv("MLP_CUDA_TENSOR", "1")
            monkeypatch.setenv("MLP_CUDA_TENSOR_TILES", setting.removesuffix("-mma"))
            if setting.endswith("-mma"):
                monkeypatch.setenv("MLP_CUDA_WGMMA", "0")
        runs.append(run_backend("cuda", sizes, params, X, y, orders[:2], batch, opt=opt))
    (f_losses, f_final, f_net), (t_losses, t_final, t_net), (_, again, _) = runs
    assert f_net.model.kernel_set == "cuda"
    assert t_net.model.kernel_set == ("cuda-tensor" if gpu_has_tensor_products() else "cuda")
    np.testing.assert_allclose(t_losses, f_losses, rtol=1e-4)
    assert rel_err(t_final, f_final) < 1e-4
    assert again.tobytes() == t_final.tobytes()
    monkeypatch.setenv("MLP_CUDA_TENSOR", "0")
    f32 = get_backend("cuda").network(sizes, t_final, input_scale=scale_of(X))
    np.testing.assert_allclose(t_net.predict(t_net.bind(X)), f32.predict(f32.bind(X)),
                               rtol=1e-4, atol=1e-6)


# gemm.cu's kernels for a last layer of few outputs (on unless
# MLP_CUDA_NARROW=0): its weight gradient for at most 16 outputs at 1024 rows
# a step or more (narrow_weights_kernel: 1, 2 or 4 inputs a lane, read
# together where the width allows, the batch cut into slices, and where D + 1
# is 129 with one output, a last group holding the bias row alone) and
# softmax cross-entropy's head for at most 16 classes (head_few_kernel: 1, 2,
# 4 or 8 rows a block, fewer threads a row as the batch grows). Each case
# against the float32 tiles and head_kernel (MLP_CUDA_NARROW=0), repeated bit
# for bit, and against the C core. Regression targets and the other losses
# take the narrow weight gradient too; Adam, momentum, sample weights,
# partial last batches. With every product on the small tensor tiles (the
# last case, MLP_CUDA_TENSOR=1), a layer whose inputs fill whole rows of tiles
# and whose row of tiles is much work (128 inputs, 2048 outputs at 1024 rows)
# has its bias row summed apart (bias_kernel), also switched by
# MLP_CUDA_NARROW; the head's 2048 inputs fill whole rows of tiles too, but
# its row of tiles is little work.
NARROW_CASES = {
    "head-4-rows-split": ((2600, 32, (64, 40), 10, 1200, False), "momentum", "cross_entropy",
                          False),
    "head-block-2-classes": ((700, 50, (300, 512), 2, 300, False), "adam", "cross_entropy", True),
    "head-block-16-classes": ((520, 784, (48, 300), 16, 100, True), "momentum", "cross_entropy",
                              False),
    "head-warp-rows": ((5000, 20, (64, 300), 3, 2500, False), "adam", "cross_entropy", False),
    "regression-bias-alone": ((2400, 20, (33, 128), 1, 1200, False), "adam", "squared_error",
                              True),
    "poisson-odd-inputs": ((2100, 24, (41,), 5, 1050, False), "momentum", "poisson", False),
    "bias-apart-tensor": ((2500, 64, (128, 2048), 10, 1024, False), "adam", "cross_entropy",
                          True),
}


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(NARROW_CASES))
def test_last_layer_of_few_outputs_matches_float32_tiles(name, monkeypatch):
    shape, opt_name, loss, weighted = NARROW_CASES[name]
    monkeypatch.setenv("MLP_KERNELS", "gemm")
    tensor = name.endswith("-tensor")
    monkeypatch.setenv("MLP_CUDA_TENSOR", "1" if tensor else "0")
    if tensor:  # by its own rule gemm.cu keeps these products on the float32 tiles
        monkeypatch.setenv("MLP_CUDA_TENSOR_TILES", "small")
    X, y, sizes, params, orders, batch = schedule(shape, seed=11)
    rng = np.random.default_rng(12)
    t = targets(loss, y, sizes[-1], rng)
    if loss == "poisson":
        t = t / 4
    opt = (make_optimizer("adam", 1e-3).core_dict() if opt_name == "adam"
           else sgd(0.02 if loss == "cross_entropy" else 0.002, 0.9))
    w = (rng.random(len(X)) + 0.2).astype(np.float32) if weighted else None
    case = dict(sizes=sizes, params=params, X=X, y=t, orders=orders[:2], batch_size=batch,
                opt=opt, loss=loss, sample_weight=w)
    runs = cuda_runs(monkeypatch, "MLP_CUDA_NARROW", ("0", "1", "1"), **case)
    (o_losses, o_final, o_net), (n_losses, n_final, n_net), (_, again, _) = runs
    want = "cuda-tensor" if tensor and gpu_has_tensor_products() else "cuda"
    assert o_net.model.kernel_set == n_net.model.kernel_set == want
    np.testing.assert_allclose(n_losses, o_losses, rtol=1e-5)
    assert rel_err(n_final, o_final) < 1e-5
    assert again.tobytes() == n_final.tobytes()
    c_losses, c_final, _ = run_backend("cpu", **case)
    np.testing.assert_allclose(n_losses, c_losses, rtol=1e-4)
    assert rel_err(n_final, c_final) < 1e-4


# gemm.cu's weight update: where a step has a launch of small tensor tiles,
# the weight gradients that the float32 tiles would take (too few tiles or
# k-steps by themselves) join it, and the launch's jobs take one count of
# slices of the batch (MLP_CUDA_JOIN_SMALL=0: their own launch, each job its
# own slices). One job joined beside one on the small tiles, and two joined
# beside one (uint8 rows, sample weights); a last batch too short for
# the small tiles, where nothing joins. Each case against the float32 tiles
# (the joined products' sums must change), repeated bit for bit, and
# against the float64 reference. (Not against the C core: on the uint8
# case its hidden layers' bias gradients, float32 sums over the batch's
# rows one after another, are 2.7e-4 from the reference after one step
# where a float32 reference's are 6e-7, and Adam's steps carry that to
# 2.7e-3 of the parameters by the sixth step.) Both cases take SGD with
# momentum: with Adam, whose steps are about lr whatever a gradient's size,
# two orders of summation that leave a row at ReLU's edge of a unit in one
# run and not in the other part by up to lr in many parameters. Stop 35's
# probe of this two-joined case with Adam: the float32 tiles' run 7.6e-4 from
# the float64 reference (203 parameters apart by over lr / 2, on a few
# units), the joined run 5.9e-7. Adam on the small tiles is
# test_tensor_products_match_float32_tiles' odd-widths-adam.
JOIN_CASES = {
    "one-joined": ((2500, 100, (512, 512), 2, 1024, False), False),
    "two-joined": ((2200, 784, (512, 256, 128), 10, 1024, True), True),
}


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(JOIN_CASES))
def test_weights_joined_to_small_tiles_match_float32_tiles(name, monkeypatch):
    shape, weighted = JOIN_CASES[name]
    monkeypatch.setenv("MLP_KERNELS", "gemm")
    X, y, sizes, params, orders, batch = schedule(shape, seed=15)
    rng = np.random.default_rng(16)
    opt = sgd(0.02, 0.9)
    w = (rng.random(len(X)) + 0.2).astype(np.float32) if weighted else None
    case = dict(sizes=sizes, params=params, X=X, y=y, orders=orders[:2], batch_size=batch,
                opt=opt, sample_weight=w)
    runs = cuda_runs(monkeypatch, "MLP_CUDA_JOIN_SMALL", ("0", "1", "1"), **case)
    (o_losses, o_final, o_net), (j_losses, j_final, j_net), (_, again, _) = runs
    tensor = gpu_has_tensor_products()
    assert o_net.model.kernel_set == j_net.model.kernel_set == ("cuda-tensor" if tensor
                                                                else "cuda")
    np.testing.assert_allclose(j_losses, o_losses, rtol=1e-4)
    assert rel_err(j_final, o_final) < 1e-4
    if tensor:
        assert j_final.tobytes() != o_final.tobytes()
    assert again.tobytes() == j_final.tobytes()
    r_losses, r_final, _ = run_reference(**case)
    np.testing.assert_allclose(j_losses, r_losses, rtol=1e-4)
    assert rel_err(j_final, r_final) < 1e-4


# gemm.cu gathers the first layer's batch for the tensor tiles 4 inputs a
# thread where the widths allow (rows of a multiple of 4 inputs, aligned
# data); MLP_CUDA_GATHER4=0 keeps ops.cu's one a thread. The same floats
# either way: uint8 and float32 rows of 784 and 300 inputs (4 a thread) and
# of 37 (one a thread), on the tiles each product takes by default or, for
# the last two, forced onto the small ones.
GATHER_CASES = {
    "uint8-784": ((2048, 784, (1024, 256), 10, 1024, True), False),
    "float32-300": ((1500, 300, (200, 40), 7, 700, False), True),
    "float32-37": ((1200, 37, (1030, 70), 3, 600, False), True),
}


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(GATHER_CASES))
def test_batch_gathered_four_inputs_a_thread_is_the_same(name, monkeypatch):
    shape, forced = GATHER_CASES[name]
    monkeypatch.setenv("MLP_KERNELS", "gemm")
    if forced:
        monkeypatch.setenv("MLP_CUDA_TENSOR", "1")
        monkeypatch.setenv("MLP_CUDA_TENSOR_TILES", "small")
    X, y, sizes, params, orders, batch = schedule(shape, seed=17)
    runs = cuda_runs(monkeypatch, "MLP_CUDA_GATHER4", ("0", "1"), sizes, params, X, y,
                     orders[:2], batch, 0.02, 0.9)
    (o_losses, o_final, o_net), (f_losses, f_final, f_net) = runs
    assert o_net.model.kernel_set == f_net.model.kernel_set == (
        "cuda-tensor" if gpu_has_tensor_products() else "cuda")
    assert f_losses.tobytes() == o_losses.tobytes()
    assert f_final.tobytes() == o_final.tobytes()


# head_few_kernel reads two classes of W_aug a load where the classes are
# even in number and W_aug's start allows 8-byte loads (MLP_CUDA_HEAD_PAIRS=0:
# one a load). Each sum takes its terms in the same order either way: the
# same bits. 10, 2 and 16 classes (one to eight rows a block, ReLU and
# tanh), and a head whose W_aug starts at an odd float (the layer below has
# 4 x 5 + 5 parameters), which reads one class a load.
HEAD_PAIR_CASES = {
    "ten-classes": ((2100, 64, (256, 1024), 10, 1024, False), "relu"),
    "two-classes": ((300, 50, (300, 512), 2, 100, False), "relu"),
    "sixteen-classes-tanh": ((5000, 40, (48, 300), 16, 2500, False), "tanh"),
    "odd-start": ((400, 4, (5, 8), 2, 100, False), "relu"),
}


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(HEAD_PAIR_CASES))
def test_head_reading_class_pairs_is_the_same(name, monkeypatch):
    shape, activation = HEAD_PAIR_CASES[name]
    monkeypatch.setenv("MLP_KERNELS", "gemm")
    X, y, sizes, params, orders, batch = schedule(shape, seed=19)
    runs = cuda_runs(monkeypatch, "MLP_CUDA_HEAD_PAIRS", ("0", "1"), sizes, params, X, y,
                     orders[:2], batch, 0.02, 0.9, activation=activation)
    (o_losses, o_final, _), (p_losses, p_final, _) = runs
    assert p_losses.tobytes() == o_losses.tobytes()
    assert p_final.tobytes() == o_final.tobytes()
    c_losses, c_final, _ = run_backend("cpu", sizes, params, X, y, orders[:2], batch, 0.02, 0.9,
                                       activation=activation)
    np.testing.assert_allclose(p_losses, c_losses, rtol=1e-4)
    assert rel_err(p_final, c_final) < 1e-4


# cuda/fused.cu keeps each block's W1 tiles, their optimizer state and (for
# steps of at most 64 rows) their inputs in shared memory for the epoch where
# they fit (fused_plan's stationary), and reads the tiles from device memory
# every step where they do not. On an H100 or H200 (132 SMs): 784-1400 with
# momentum at batch 16 keeps 5 tiles a block with their inputs; 784-1024 at
# batch 100 keeps 4 without (more than one chunk of rows); Adam keeps both
# moments; 784-2000 has too many tiles a block to keep. A small learning rate
# keeps these wide layers out of the chaotic regime where float32 rounding
# alone parts any two orders of summation.
@pytest.mark.cuda
@pytest.mark.parametrize("hidden,batch,moments", [
    (1400, 16, "momentum"), (1024, 100, "momentum"), (256, 100, "adam"), (256, 64, "none"),
    (2000, 16, "momentum")])
def test_fused_tiles_kept_or_not_match_c_core(hidden, batch, moments):
    X, y, sizes, params, orders, _ = schedule((300, 784, (hidden,), 10, batch, True), seed=5)
    opt = {"momentum": sgd(0.01, 0.9), "none": sgd(0.05),
           "adam": make_optimizer("adam", 1e-3).core_dict()}[moments]
    c_losses, c_final, _ = run_backend("cpu", sizes, params, X, y, orders[:2], batch, opt=opt)
    g_losses, g_final, net = run_backend("cuda", sizes, params, X, y, orders[:2], batch, opt=opt)
    assert net.model.kernel_set in {"fused-tensor", "fused"}
    np.testing.assert_allclose(g_losses, c_losses, rtol=1e-4)
    assert rel_err(g_final, c_final) < 1e-4
    again = run_backend("cuda", sizes, params, X, y, orders[:2], batch, opt=opt)[1]
    assert again.tobytes() == g_final.tobytes()


@pytest.mark.parametrize("core", CORES + ["numpy"])
def test_float32_reference_agrees_closely(core):
    """In float32, the same ops in the same order give nearly the same bits."""
    X, y, sizes, params, orders, batch = schedule(SHAPES[0], seed=11)
    losses, final, _ = run_backend(core, sizes, params, X, y, orders[:1], batch, 0.1)
    ref_losses, ref_final, _ = run_reference(sizes, params, X, y, orders[:1], batch, 0.1,
                                             dtype=np.float32)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert rel_err(final, ref_final) < 1e-5


# ---- every activation x loss x optimizer ----------------------------------

ACTIVATIONS = list(reference.ACTIVATIONS)
LOSSES = list(reference.LOSSES)
OPTIMIZERS = {
    "sgd-nesterov": ("sgd", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "adam": ("adam", dict(lr=0.01, weight_decay=1e-3)),
    "adamw": ("adamw", dict(lr=0.01, weight_decay=1e-2)),
}
COMBOS = [(a, l, o) for a in ACTIVATIONS for l in LOSSES for o in OPTIMIZERS]
# A pairwise subset (every pair of activation, loss and optimizer appears):
# what the compute-sanitizer runs take (benchmarks/device_run.sh).
PAIRWISE = {(a, l, list(OPTIMIZERS)[(i + j) % 3]) for i, a in enumerate(ACTIVATIONS)
            for j, l in enumerate(LOSSES)}


def combo_param(i, combo):
    marks = [pytest.mark.pairwise] if combo in PAIRWISE else []
    return pytest.param(i, combo, marks=marks, id=f"{i}-{'-'.join(combo)}")


def targets(loss, y, classes, rng):
    """y as the targets of a loss: labels, float values, or a 0/1 matrix."""
    if loss == "cross_entropy":
        return y
    if loss == "squared_error":
        return (np.eye(classes)[y] + 0.3 * rng.standard_normal((len(y), classes))).astype(
            np.float32)
    if loss == "poisson":
        return (rng.poisson(1.0, (len(y), classes)) + 2 * np.eye(classes)[y]).astype(np.float32)
    return (rng.random((len(y), classes)) < 0.4).astype(np.float32)


def combo_case(i, combo, convention="torch", weighted=False):
    activation, loss, opt_name = combo
    shape = SHAPES[i % len(SHAPES)]
    n, d, hidden, classes, batch, uint8 = shape
    rng = np.random.default_rng(100 + i)
    X, y = make_problem(rng, n, d, classes, uint8)
    t = targets(loss, y, classes, rng)
    sizes = (d, *hidden, classes)
    epochs = -(-STEPS // -(-n // batch))
    params, orders = initial_state(sizes, n, epochs, seed=i, activation=activation)
    name, kw = OPTIMIZERS[opt_name]
    if loss == "poisson":  # exp outputs: a smaller step keeps every shape finite
        kw = dict(kw, lr=kw["lr"] / 5)
    opt = dict(make_optimizer(name, **kw).core_dict(), convention=convention)
    if convention == "sklearn":
        opt["decoupled"] = 0
    w = (rng.random(n) + 0.2).astype(np.float32) if weighted else None
    return dict(sizes=sizes, params=params, X=X, y=t, orders=orders, batch_size=batch, opt=opt,
                activation=activation, loss=loss, sample_weight=w)


def check_against_reference(core, plain, case):
    losses, final, net = run_backend(core, **case, plain=plain)
    ref_losses, ref_final, ref = run_reference(**case)
    assert len(losses) >= STEPS and len(losses) == len(ref_losses)
    np.testing.assert_allclose(losses[:STEPS], ref_losses[:STEPS], rtol=2e-4, atol=1e-6)
    assert rel_err(final, ref_final) < 2e-4
    same = reference.Reference(case["sizes"], final, np.float64, case["activation"],
                               case["loss"], scale_of(case["X"]))
    X = case["X"]
    np.testing.assert_allclose(net.predict(net.bind(X)), same.predict(X), rtol=1e-4, atol=1e-5)
    key = "labels" if case["loss"] == "cross_entropy" else "values"
    t = case["y"] if case["loss"] == "cross_entropy" else case["y"].reshape(len(X), -1)
    loss, _ = net.evaluate(net.bind(X, **{key: t}))
    assert loss == pytest.approx(same.evaluate(X, t)[0], rel=1e-4)
    return net


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("path", ["fast", "plain"])
@pytest.mark.parametrize("i,combo", [combo_param(i, c) for i, c in enumerate(COMBOS)])
def test_every_combination_matches_reference(core, path, i, combo):
    """50 steps of every activation x loss x optimizer against the float64
    reference, on the suite's odd shapes in turn, through the fast and the
    plain paths."""
    net = check_against_reference(core, path == "plain", combo_case(i, combo))
    if path == "plain":
        assert net.model.kernel_set == "plain"


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("i,combo", [(0, ("relu", "cross_entropy", "sgd-nesterov")),
                                     (4, ("tanh", "squared_error", "adam")),
                                     (7, ("logistic", "binary_cross_entropy", "sgd-nesterov"))])
def test_sklearn_convention_and_sample_weights_match_reference(core, i, combo):
    check_against_reference(core, False, combo_case(i, combo, "sklearn", weighted=True))


FUSED_GENERAL = {"fused-tensor", "fused"}


@pytest.mark.cuda
@pytest.mark.parametrize("change,kernel_set", [
    ({}, {"fused-tensor", "fused"}),
    (dict(activation="tanh"), FUSED_GENERAL),
    (dict(opt="adam"), FUSED_GENERAL),
    (dict(opt="nesterov"), FUSED_GENERAL),
    (dict(opt="sklearn"), FUSED_GENERAL),
    (dict(loss="squared_error"), FUSED_GENERAL),
    (dict(sample_weight=True), {"cuda"}),
    (dict(float_scale=0.5), {"cuda"}),
])
def test_what_the_fused_cuda_kernels_do_not_take_falls_back(change, kernel_set):
    """fused_supports: any activation, loss and optimizer, no sample weights,
    the usual input scale; anything else trains on gemm.cu, with the same
    results as the C core."""
    from mlp._backends import get_backend
    rng = np.random.default_rng(3)
    X, y = make_problem(rng, 128, 20, 4)
    loss = change.get("loss", "cross_entropy")
    t = targets(loss, y, 4, rng)
    activation = change.get("activation", "relu")
    sizes = (20, 16, 4)
    params, orders = initial_state(sizes, 128, 2, seed=3, activation=activation)
    name = {"adam": "adam"}.get(change.get("opt"), "sgd")
    kw = dict(lr=0.05, momentum=0.9, nesterov=change.get("opt") == "nesterov") \
        if name == "sgd" else dict(lr=0.01)
    opt = make_optimizer(name, **kw).core_dict()
    if change.get("opt") == "sklearn":
        opt["convention"] = "sklearn"
    w = (rng.random(128) + 0.5).astype(np.float32) if change.get("sample_weight") else None
    results = {}
    for core in ("cpu", "cuda"):
        net = get_backend(core).network(sizes, params, activation=activation, loss=loss,
                                        input_scale=change.get("float_scale", 1.0))
        data = net.bind(X, **targets_of(loss, t), sample_weight=w)
        losses = np.concatenate([net.train_epoch(data, o, 32, opt)[0] for o in orders])
        results[core] = (losses, net.get_params(), net.model.kernel_set)
    assert results["cuda"][2] in kernel_set
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-4)
    assert rel_err(results["cuda"][1], results["cpu"][1]) < 1e-4


# The one-kernel epochs' general code (cuda/fused.cuh, fused_general): every
# activation, loss and optimizer rule, with each step's own constants (Adam's
# bias correction, scikit-learn's L2 over the batch's rows and its penalty in
# the reported loss), through fused.cu (784 inputs, batch 64) and
# fused_rows.cu (70 inputs, batch 300: several row tiles, the last step
# partial).
GENERAL_OPTIMIZERS = {
    "torch-nesterov": ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3), "torch"),
    "torch-adam": ("adam", dict(lr=0.005, weight_decay=1e-3), "torch"),
    "adamw": ("adamw", dict(lr=0.005, weight_decay=1e-2), "torch"),
    "sklearn-sgd": ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2), "sklearn"),
    "sklearn-adam": ("adam", dict(lr=0.005, weight_decay=1e-2), "sklearn"),
}
GENERAL_CASES = ([(a, "cross_entropy", "sklearn-adam") for a in ACTIVATIONS]
                 + [("gelu", "cross_entropy", o) for o in GENERAL_OPTIMIZERS
                    if o != "sklearn-adam"]
                 + [("tanh", loss, "sklearn-adam") for loss in LOSSES if loss != "cross_entropy"])


@pytest.mark.cuda
@pytest.mark.parametrize("batch,d,uint8,kernels", [(64, 784, True, {"fused-tensor", "fused"}),
                                                   (300, 70, False, {"fused-rows", "fused"})])
@pytest.mark.parametrize("activation,loss,opt_name", GENERAL_CASES)
def test_fused_general_code_matches_c_core(activation, loss, opt_name, batch, d, uint8, kernels):
    rng = np.random.default_rng(21)
    n, h, c = 1000, 40, 7
    X, y = make_problem(rng, n, d, c, uint8)
    t = targets(loss, y, c, rng)
    sizes = (d, h, c)
    params, orders = initial_state(sizes, n, 3, seed=5, activation=activation)
    name, kw, convention = GENERAL_OPTIMIZERS[opt_name]
    opt = dict(make_optimizer(name, **kw).core_dict(), convention=convention)
    if convention == "sklearn":
        opt["decoupled"] = 0
    runs = {core: run_backend(core, sizes, params, X, t, orders, batch, opt=opt,
                              activation=activation, loss=loss) for core in ("cpu", "cuda")}
    (c_losses, c_final, _), (g_losses, g_final, net) = runs["cpu"], runs["cuda"]
    assert net.model.kernel_set in kernels
    np.testing.assert_allclose(g_losses, c_losses, rtol=1e-4)
    assert rel_err(g_final, c_final) < 1e-4


# fused_rows.cu runs tanh and GELU with the default recipe's loss and
# optimizer (softmax cross-entropy, PyTorch's SGD) on the default recipe's
# kernel compiled for the activation (fused_rows_by_activation;
# MLP_CUDA_ROWS_ACT=0: on the general kernel, whose code misses the
# instruction cache more). The same arithmetic either way: the same bits, and
# the C core's results. MNIST-like uint8 rows at batch 1024, and float32 rows
# at batch 300; plain SGD, and momentum with weight decay.
@pytest.mark.cuda
@pytest.mark.parametrize("activation", ["tanh", "gelu"])
@pytest.mark.parametrize("shape,opt", [
    ((2100, 784, (64,), 10, 1024, True), (0.1, 0.0, 0.0)),
    ((1000, 70, (40,), 7, 300, False), (0.05, 0.9, 1e-3))])
def test_fused_rows_by_activation_is_the_general_code(activation, shape, opt, monkeypatch):
    X, y, sizes, params, orders, batch = schedule(shape, seed=27)
    case = dict(sizes=sizes, params=params, X=X, y=y, orders=orders[:2], batch_size=batch,
                opt=sgd(*opt), activation=activation)
    runs = cuda_runs(monkeypatch, "MLP_CUDA_ROWS_ACT", ("0", "1"), **case)
    (g_losses, g_final, g_net), (a_losses, a_final, a_net) = runs
    assert g_net.model.kernel_set == a_net.model.kernel_set == (
        "fused-rows" if gpu_has_tensor_products() else "fused")
    assert a_losses.tobytes() == g_losses.tobytes()
    assert a_final.tobytes() == g_final.tobytes()
    c_losses, c_final, _ = run_backend("cpu", **case)
    np.testing.assert_allclose(a_losses, c_losses, rtol=1e-4)
    assert rel_err(a_final, c_final) < 1e-4


def gpu_is_hopper():
    """Whether the GPU is of compute capability 9.0, where a default build
    (CMakeLists.txt: auto or release) carries sm_90a's warpgroup products."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return out.split("\n")[0].strip() == "9.0"


@pytest.mark.cuda
def test_wide_hidden_layers_at_large_batches_train_one_kernel_per_op(monkeypatch):
    """wide_products_win (cuda/model.cu): a one-hidden-layer net of at least
    256 hidden units takes the kernel-per-op path from 2^21 hidden values a
    step where its large products run on Hopper's warpgroup tiles, and the
    one-kernel epoch below that, with fewer units, or with those tiles kept
    on mma.sync (MLP_CUDA_WGMMA=0); each against the C core."""
    rng = np.random.default_rng(8)
    X, y = make_problem(rng, 16384, 100, 3)
    fused = {"fused-rows", "fused-tensor", "fused"}
    # one kernel per op; 101 x 256 weights are too few tiles for tensor cores
    per_op = {"cuda", "cuda-tensor"} if gpu_is_hopper() else fused
    for hidden, batch, wgmma, kernels in [(256, 4096, None, fused), (256, 8192, "0", fused),
                                          (256, 8192, None, per_op), (128, 16384, None, fused)]:
        sizes = (100, hidden, 3)
        params, orders = initial_state(sizes, len(X), 1, seed=8)
        if wgmma is None:
            monkeypatch.delenv("MLP_CUDA_WGMMA", raising=False)
        else:
            monkeypatch.setenv("MLP_CUDA_WGMMA", wgmma)
        c_losses, c_final, _ = run_backend("cpu", sizes, params, X, y, orders, batch, 0.05, 0.9)
        g_losses, g_final, net = run_backend("cuda", sizes, params, X, y, orders, batch, 0.05,
                                             0.9)
        assert net.model.kernel_set in kernels, (hidden, batch, wgmma)
        np.testing.assert_allclose(g_losses, c_losses, rtol=1e-4)
        assert rel_err(g_final, c_final) < 1e-4


@pytest.mark.cuda
@pytest.mark.parametrize("d,uint8,batch,kernel", [
    (784, True, 128, "fused-tensor"), (784, True, 256, "fused-rows"),
    (784, False, 256, "fused-tensor"), (784, False, 512, "fused-rows"),
    (100, False, 32, "fused-tensor"), (100, False, 64, "fused-rows")])
def test_the_one_kernel_epoch_is_cut_by_rows_where_that_is_faster(d, uint8, batch, kernel):
    """fused_by_rows: fused_rows.cu from 64 rows a step, once a step has at
    least half as many 64-row chunks as fused_rows.cu's items have chunks of
    inputs (128 uint8 or 64 float32 inputs each)."""
    rng = np.random.default_rng(4)
    X, y = make_problem(rng, 2 * batch, d, 10, uint8)
    sizes = (d, 32, 10)
    params, orders = initial_state(sizes, len(X), 1, seed=4)
    _, _, net = run_backend("cuda", sizes, params, X, y, orders, batch)
    if net.model.kernel_set == "fused":
        pytest.skip("this GPU has no TF32 tensor cores: fused.cu takes every batch")
    assert net.model.kernel_set == kernel
