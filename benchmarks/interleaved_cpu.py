"""The C core and the lean numpy peer, one epoch each in turn, so that both
see the same machine: on a shared 2-core VM whose speed drifts within
minutes, this gives steadier ratios than timing one backend after the other.
A pause separates the two, since each library's idle threads keep spinning
for a while after its work (OpenBLAS for up to about 0.1 s) and would slow
whichever ran next.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/interleaved_cpu.py [--rounds 5]
"""

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import mnist_root  # noqa: E402
from lean_numpy import LeanNumpy  # noqa: E402

from mlp import datasets  # noqa: E402
from mlp._backends import get_backend
from mlp.optimizers import make_optimizer  # noqa: E402
from mlp.training import initial_state  # noqa: E402

SIZES, LR = (784, 256, 10), 0.1
SGD = make_optimizer("sgd", LR).core_dict()
PAUSE = 0.5  # seconds between the two libraries' epochs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    args = ap.parse_args()
    X, y = datasets.load_mnist("train", mnist_root())
    y = y.astype(np.int64)
    for batch in args.batch_sizes:
        params, orders = initial_state(SIZES, len(X), args.rounds + 1, seed=0)
        net = get_backend("cpu").network(SIZES, params, input_scale=1 / 255)
        data = net.bind(X, y.astype(np.int32))
        peer = LeanNumpy(params, SIZES, LR)

        ours, theirs = [], []
        for i, order in enumerate(orders):
            t0 = time.perf_counter()
            net.train_epoch(data, order, batch, SGD)
            ours.append(time.perf_counter() - t0)
            time.sleep(PAUSE)
            t0 = time.perf_counter()
            peer.epoch(X, y, order, batch)
            theirs.append(time.perf_counter() - t0)
            time.sleep(PAUSE)
        ours, theirs = ours[1:], theirs[1:]  # the first pair warms up
        ratios = [a / b for a, b in zip(ours, theirs)]
        print(f"batch {batch:5d}: C core {statistics.median(ours):.3f} s, lean numpy "
              f"{statistics.median(theirs):.3f} s, per-pair ratio median "
              f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})",
              flush=True)


if __name__ == "__main__":
    main()
