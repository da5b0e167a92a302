"""One process's MNIST epochs (784-256-10, SGD lr 0.1, shuffled) through the
backend's train_epoch on bound uint8 data, the thread count pinned: prints
the median and the fastest of epochs 2 to 5 in seconds. Run it under two
builds in alternation to compare them without the thread-count rounds
(csrc/model.c, pick_threads) in the way:

    for i in 1 2 3 4 5 6 7 8; do
      echo "$(PYTHONPATH=OLD python benchmarks/epoch_pinned.py) \
            $(PYTHONPATH=NEW python benchmarks/epoch_pinned.py)"
    done

--threads 0 leaves the count to the core's rounds instead. --adam trains
with scikit-learn's Adam instead (its MLPClassifier defaults: lr 1e-3, alpha
1e-4) on the pixels as float32 in [0, 1], as vs_sklearn.py does.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import mnist_root  # noqa: E402

from mlp import datasets  # noqa: E402
from mlp._backends import get_backend  # noqa: E402
from mlp.optimizers import make_optimizer  # noqa: E402
from mlp.training import initial_state  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adam", action="store_true")
    args = ap.parse_args()
    X, y = datasets.load_mnist("train", mnist_root())
    sizes = (784, 256, 10)
    params, orders = initial_state(sizes, len(X), 5, seed=0)
    if args.adam:
        X = X.reshape(len(X), -1).astype(np.float32) / np.float32(255)
        net = get_backend("cpu").network(sizes, params)
        opt = make_optimizer("adam", 1e-3, weight_decay=1e-4, convention="sklearn")
    else:
        net = get_backend("cpu").network(sizes, params, input_scale=1 / 255)
        opt = make_optimizer("sgd", 0.1)
    if args.threads > 0:
        net.set_threads(args.threads)
    data, step = net.bind(X, y.astype(np.int32)), opt.core_dict()
    times = []
    for order in orders:
        start = time.perf_counter()
        net.train_epoch(data, order, args.batch, step)
        times.append(time.perf_counter() - start)
    print(f"{statistics.median(times[1:]):.4f} {min(times[1:]):.4f}")


if __name__ == "__main__":
    main()
