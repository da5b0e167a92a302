"""Microseconds per training step of the compiled core, by data set, batch
size and recipe, through the backend's train_epoch (what mlp.train and the
estimators call each epoch): one warm-up epoch, then the median of
--repeats epochs. Prints the kernels each epoch ran (kernel_set).

    python benchmarks/step_times.py --device cuda --mnist DIR [--batch-sizes 64 200 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from mlp._backends import get_backend
from mlp.datasets import read_idx
from mlp.optimizers import make_optimizer
from mlp.training import initial_state

RECIPES = {
    "sgd": lambda: make_optimizer("sgd", 0.1).core_dict(),
    # scikit-learn's defaults, as mlp.MLPClassifier passes them
    "sklearn-adam": lambda: dict(make_optimizer("adam", 1e-3, weight_decay=1e-4).core_dict(),
                                 convention="sklearn", decoupled=0),
}


def data_sets(wanted, mnist_dir, tabular_rows):
    """(name, X, y, classes) of each wanted set: "mnist-uint8",
    "mnist-float32", "tabular" (tabular_rows random rows of 100 features)."""
    if {"mnist-uint8", "mnist-float32"} & set(wanted):
        X = read_idx(f"{mnist_dir}/train-images-idx3-ubyte.gz").reshape(-1, 784)
        y = read_idx(f"{mnist_dir}/train-labels-idx1-ubyte.gz").astype(np.int32)
        if "mnist-uint8" in wanted:
            yield "mnist-uint8", X, y, 10
        if "mnist-float32" in wanted:
            yield "mnist-float32", (X / np.float32(255)).astype(np.float32), y, 10
    if "tabular" in wanted:
        Xt = np.random.default_rng(0).standard_normal((tabular_rows, 100), dtype=np.float32)
        yield f"tabular-{tabular_rows}", Xt, (Xt[:, 0] > 0).astype(np.int32), 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mnist", default=os.environ.get("MLP_MNIST_DIR", "../shared/data/mnist"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 200, 1024])
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--tabular-rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", nargs="+", default=["mnist-uint8", "mnist-float32", "tabular"],
                   choices=["mnist-uint8", "mnist-float32", "tabular"])
    p.add_argument("--json")
    args = p.parse_args()
    rows = []
    for name, X, y, classes in data_sets(args.data, args.mnist, args.tabular_rows):
        sizes = (X.shape[1], args.hidden, classes)
        scale = 1 / 255 if X.dtype == np.uint8 else 1.0
        order = np.random.default_rng(1).permutation(len(X)).astype(np.int64)
        for recipe in args.recipes:
            for batch in args.batch_sizes:
                net = get_backend(args.device).network(sizes, initial_state(sizes, 1, 1)[0],
                                                       input_scale=scale)
                data = net.bind(X, labels=y)
                opt = RECIPES[recipe]()
                times = []
                for i in range(args.repeats + 1):
                    start = time.perf_counter()
                    net.train_epoch(data, order, batch, opt)
                    times.append(time.perf_counter() - start)
                t = statistics.median(times[1:])
                steps = -(-len(X) // batch)
                row = dict(data=name, recipe=recipe, batch=batch, epoch_ms=t * 1e3,
                           step_us=t / steps * 1e6, kernels=net.model.kernel_set)
                rows.append(row)
                print(f"{name:16s} {recipe:13s} batch {batch:5d}: {t * 1e3:8.2f} ms/epoch "
                      f"{row['step_us']:7.2f} us/step  ({row['kernels']})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
