"""Other recipes against the default one (SGD, ReLU), in one process,
rounds interleaved: one MNIST epoch (60,000 images, 784-256-10, softmax
cross-entropy) through mlp.train, timed by its history (the second epoch of
each run), for each batch size. Prints each recipe's median and its ratio
to the default's (the GPU speed issue's bars: Adam at most 1.2x, tanh and
gelu at most 1.1x).

    python benchmarks/adam_vs_sgd.py [--device cuda] [--batch-sizes 64 200]
        [--recipes adam tanh gelu] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os

from interleave import summarize

import mlp
from mlp.datasets import read_idx

RECIPES = {
    "sgd": dict(optimizer="sgd", lr=0.1),
    "adam": dict(optimizer="adam", lr=1e-3),
    "tanh": dict(optimizer="sgd", lr=0.1, activation="tanh"),
    "gelu": dict(optimizer="sgd", lr=0.1, activation="gelu"),
    "logistic": dict(optimizer="sgd", lr=0.1, activation="logistic"),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mnist", default=os.environ.get("MLP_MNIST_DIR", "../shared/data/mnist"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 200])
    p.add_argument("--recipes", nargs="+", default=["adam"], choices=sorted(RECIPES))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json")
    args = p.parse_args()
    X = read_idx(f"{args.mnist}/train-images-idx3-ubyte.gz").reshape(-1, 784)
    y = read_idx(f"{args.mnist}/train-labels-idx1-ubyte.gz")
    rows = []
    for batch in args.batch_sizes:
        for other in args.recipes:
            times = {"sgd": [], other: []}
            for r in range(args.rounds):
                for name in (("sgd", other) if r % 2 == 0 else (other, "sgd")):
                    m = mlp.train(X, y, epochs=2, batch_size=batch, device=args.device,
                                  **RECIPES[name])
                    times[name].append(m.history["seconds"][1])
            rows.append(summarize(batch, times))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=args.device, rounds=args.rounds, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
