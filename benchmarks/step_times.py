"""Microseconds per training step of the compiled core, by data set, batch
size and recipe, through the backend's train_epoch (what mlp.train and the
estimators call each epoch): one warm-up epoch, then the median of
--repeats epochs. Prints the kernels each epoch ran (kernel_set). With
--kernels, each MLP_KERNELS setting named ("default" for none, "gemm",
"base", "fused") trains a network of its own, their epochs interleaved.

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
    "sklearn-adam": lambda: make_optimizer("adam", 1e-3, weight_decay=1e-4,
                                           convention="sklearn").core_dict(),
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


def time_kernels(args, name, X, y, sizes, scale, order, recipe, batch):
    """One network per MLP_KERNELS setting, their epochs interleaved."""
    nets = {}
    for k in args.kernels:
        net = get_backend(args.device).network(sizes, initial_state(sizes, 1, 1)[0],
                                               input_scale=scale)
        nets[k] = (net, net.bind(X, labels=y))
    opt = RECIPES[recipe]()
    times = {k: [] for k in args.kernels}
    for i in range(args.repeats + 1):
        for k in args.kernels:
            os.environ["MLP_KERNELS"] = "" if k == "default" else k
            net, data = nets[k]
            start = time.perf_counter()
            net.train_epoch(data, order, batch, opt)
            times[k].append(time.perf_counter() - start)
    os.environ.pop("MLP_KERNELS", None)
    rows = []
    steps = -(-len(X) // batch)
    for k in args.kernels:
        t = statistics.median(times[k][1:])
        row = dict(data=name, hidden=sizes[1], recipe=recipe, batch=batch, setting=k,
                   epoch_ms=t * 1e3, step_us=t / steps * 1e6, kernels=nets[k][0].model.kernel_set)
        rows.append(row)
        print(f"{name:16s} h{sizes[1]:<5d} {recipe:13s} batch {batch:5d} {k:8s}: "
              f"{t * 1e3:8.2f} ms/epoch {row['step_us']:7.2f} us/step  ({row['kernels']})",
              flush=True)
    return rows


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
    p.add_argument("--hidden-sizes", type=int, nargs="+", help="instead of --hidden: several")
    p.add_argument("--kernels", nargs="+", default=["default"],
                   choices=["default", "gemm", "base", "fused"])
    p.add_argument("--rows", type=int, help="only the first ROWS rows of each data set")
    p.add_argument("--lr", type=float, help="SGD's learning rate (default 0.1)")
    p.add_argument("--json")
    args = p.parse_args()
    if args.lr is not None:
        RECIPES["sgd"] = lambda: make_optimizer("sgd", args.lr).core_dict()
    rows = []
    for name, X, y, classes in data_sets(args.data, args.mnist, args.tabular_rows):
        if args.rows:
            X, y = X[:args.rows], y[:args.rows]
        scale = 1 / 255 if X.dtype == np.uint8 else 1.0
        order = np.random.default_rng(1).permutation(len(X)).astype(np.int64)
        for hidden in args.hidden_sizes or [args.hidden]:
            sizes = (X.shape[1], hidden, classes)
            for recipe in args.recipes:
                for batch in args.batch_sizes:
                    rows += time_kernels(args, name, X, y, sizes, scale, order, recipe, batch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
