"""Where the time of mlp.MLPClassifier.fit goes (scikit-learn's defaults,
hidden 256, 10 epochs), on MNIST and on the tabular set of vs_sklearn.py:
one warm-up fit, then one fit under cProfile; prints the fit's time, the
epochs' share (the core's train_epoch calls) and the top functions by their
own time.

    python benchmarks/profile_fit.py --device cuda [--mnist DIR] [--tabular-rows N]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
import warnings

import mlp
from vs_sklearn import mnist, tabular


def profile(name, data, device, epochs):
    X, y = data[0], data[1]
    kw = dict(hidden_layer_sizes=(256,), max_iter=epochs, random_state=0, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.MLPClassifier(**kw).fit(X, y)  # warm-up: plans, CUDA context
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        mlp.MLPClassifier(**kw).fit(X, y)
        prof.disable()
    total = time.perf_counter() - start
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    epochs_s = sum(v[3] for k, v in stats.stats.items() if k[2] == "train_epoch")
    print(f"== {name}: fit {total:.3f} s, of which train_epoch {epochs_s:.3f} s (under cProfile)")
    stats.sort_stats("tottime").print_stats(18)
    print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mnist", default=os.environ.get("MLP_MNIST_DIR", "../shared/data/mnist"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--tabular-rows", type=int, default=1_000_000)
    args = p.parse_args()
    profile("MNIST", mnist(args.mnist), args.device, args.epochs)
    profile(f"tabular {args.tabular_rows}", tabular(args.tabular_rows), args.device, args.epochs)


if __name__ == "__main__":
    main()
