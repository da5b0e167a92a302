"""The time of the first training step on freshly bound MNIST, which builds
the data set's kept nonzero lists (csrc/fast.c, nz_cache_build), against a
later step: three bindings each for the uint8 pixels and for float32
pixels scaled to [0, 1].

    python benchmarks/list_build.py
"""

from __future__ import annotations

import pathlib
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
    X, y = datasets.load_mnist("train", mnist_root())
    y = y.astype(np.int32)
    sizes = (784, 256, 10)
    params, orders = initial_state(sizes, len(X), 1, seed=0)
    net = get_backend("cpu").network(sizes, params, input_scale=1 / 255)
    sgd = make_optimizer("sgd", 0.1).core_dict()
    step = orders[0][:64]
    for name, inputs in (("uint8", X), ("float32", X / np.float32(255))):
        firsts = []
        for _ in range(3):
            data = net.bind(inputs, y)
            start = time.perf_counter()
            net.train_epoch(data, step, 64, sgd)
            firsts.append(time.perf_counter() - start)
            start = time.perf_counter()
            net.train_epoch(data, step, 64, sgd)
            later = time.perf_counter() - start
        print(f"{name}: first step (with the lists' build) "
              f"{', '.join(f'{t * 1e3:.1f}' for t in firsts)} ms; a later step "
              f"{later * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
