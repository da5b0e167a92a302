"""What mlp.train adds to its epoch (issue #15's last bar: at most 5% of a
one-epoch MNIST run): mlp.train(X, y, epochs=1) on the 60,000 uint8 MNIST
images (784-256-10, batch 64, SGD), timed whole, against the epoch inside it
(history["seconds"]: the core's train_epoch). The rest is the input checks,
the label encoding, the initial weights, the shuffle and the binding.
Medians over --rounds runs (after one warm-up).

    python benchmarks/train_overhead.py [--rounds 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import mnist_root  # noqa: E402

import mlp  # noqa: E402
from mlp import datasets  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    root = mnist_root()
    X = datasets.read_idx(root / "train-images-idx3-ubyte.gz").reshape(-1, 784)
    y = datasets.read_idx(root / "train-labels-idx1-ubyte.gz")
    mlp.train(X, y, epochs=1, device=args.device)  # warm-up
    whole, epoch = [], []
    for seed in range(args.rounds):
        start = time.perf_counter()
        model = mlp.train(X, y, epochs=1, device=args.device, seed=seed)
        whole.append(time.perf_counter() - start)
        epoch.append(model.history["seconds"][0])
    shares = [(w - e) / w for w, e in zip(whole, epoch)]
    print(f"mlp.train, one epoch: {statistics.median(whole) * 1e3:.1f} ms; the epoch inside: "
          f"{statistics.median(epoch) * 1e3:.1f} ms; the rest: "
          f"{statistics.median(shares) * 100:.1f}% (median of {args.rounds}; each run "
          f"{', '.join(f'{s * 100:.1f}' for s in shares)}%)")


if __name__ == "__main__":
    main()
