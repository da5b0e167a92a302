"""Every CPU peer in one process, their epochs interleaved: one MNIST epoch
(60,000 images, 784-256-10, SGD lr 0.1, shuffled) of our C core (uint8
pixels), the lean numpy loop, PyTorch CPU (when installed) and
scikit-learn's MLPClassifier (sgd, one epoch from scratch), one after the
other in each round, with a pause between them (a library's idle threads
keep spinning for a while after its work). Prints each contender's median
over the rounds and the C core's ratio to each peer: the figures of the CPU
speed issue's batch-64 bar.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/peers_cpu.py \
        [--rounds 5] [--batch 64] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import mnist_root  # noqa: E402
from lean_numpy import LeanNumpy  # noqa: E402

from mlp import datasets  # noqa: E402
from mlp._backends import get_backend  # noqa: E402
from mlp.optimizers import make_optimizer  # noqa: E402
from mlp.training import initial_state  # noqa: E402

SIZES, LR, PAUSE = (784, 256, 10), 0.1, 0.5


def contenders(X, y, batch, rounds):
    """name -> a function that trains one more epoch, each from the same
    initial weights and the same row orders (scikit-learn draws its own)."""
    params, orders = initial_state(SIZES, len(X), rounds + 1, seed=0)
    out = {}
    net = get_backend("cpu").network(SIZES, params, input_scale=1 / 255)
    data, sgd = net.bind(X, y.astype(np.int32)), make_optimizer("sgd", LR).core_dict()
    mlp_orders = iter(orders)
    out["mlp C core"] = lambda: net.train_epoch(data, next(mlp_orders), batch, sgd)
    lean, lean_orders = LeanNumpy(params, SIZES, LR), iter(orders)
    out["numpy loop"] = lambda: lean.epoch(X, y, next(lean_orders), batch)
    try:
        import torch
        from torch_peer import TorchPeer
    except ImportError:
        torch = None
    if torch is not None:
        peer, torch_orders = TorchPeer(params, SIZES, LR, X, y), iter(orders)
        out[f"PyTorch {torch.__version__}"] = lambda: peer.epoch(next(torch_orders), batch)
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    Xs = X / np.float32(255)

    def sklearn_epoch():
        clf = MLPClassifier(hidden_layer_sizes=(256,), solver="sgd", batch_size=batch,
                            learning_rate_init=LR, momentum=0.0, nesterovs_momentum=False,
                            alpha=0.0, max_iter=1, shuffle=True, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(Xs, y)
    out["scikit-learn"] = sklearn_epoch
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json")
    args = ap.parse_args()
    root = mnist_root()
    X, y = datasets.load_mnist("train", root)
    runs = contenders(X, y.astype(np.int64), args.batch, args.rounds)
    for epoch in runs.values():  # a first epoch each, untimed (warm caches and pools)
        epoch()
        time.sleep(PAUSE)
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, epoch in runs.items():
            start = time.perf_counter()
            epoch()
            times[name].append(time.perf_counter() - start)
            time.sleep(PAUSE)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ours = medians["mlp C core"]
    print(f"batch {args.batch}, median of {args.rounds} interleaved rounds:")
    for name, m in medians.items():
        ratio = "" if name == "mlp C core" else f"  C core / {name}: {ours / m:.2f}"
        rounds = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"  {name:22s} {m:7.3f} s{ratio}   (rounds {rounds})")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"batch": args.batch, "times": times, "medians": medians,
             "ratios": {n: ours / m for n, m in medians.items() if n != "mlp C core"}}, indent=1))


if __name__ == "__main__":
    main()
