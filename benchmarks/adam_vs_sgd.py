"""Adam against SGD on the C core, in one process, rounds interleaved: one
MNIST epoch (60,000 images, 784-256-10, ReLU, softmax cross-entropy) through
mlp.train, timed by its history (the second epoch of each run), for each
batch size. Prints each optimizer's median and the ratio Adam / SGD.

    python benchmarks/adam_vs_sgd.py [--batch-sizes 64 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os

from interleave import summarize

import mlp
from mlp.datasets import read_idx


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mnist", default=os.environ.get("MLP_MNIST_DIR", "../shared/data/mnist"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 200])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json")
    args = p.parse_args()
    X = read_idx(f"{args.mnist}/train-images-idx3-ubyte.gz").reshape(-1, 784)
    y = read_idx(f"{args.mnist}/train-labels-idx1-ubyte.gz")
    recipes = {"sgd": dict(optimizer="sgd", lr=0.1), "adam": dict(optimizer="adam", lr=1e-3)}
    rows = []
    for batch in args.batch_sizes:
        times = {k: [] for k in recipes}
        for r in range(args.rounds):
            for name in (("sgd", "adam") if r % 2 == 0 else ("adam", "sgd")):
                m = mlp.train(X, y, epochs=2, batch_size=batch, device=args.device,
                              **recipes[name])
                times[name].append(m.history["seconds"][1])
        rows.append(summarize(batch, times))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=args.device, rounds=args.rounds, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
