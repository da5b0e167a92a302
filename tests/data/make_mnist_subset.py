"""Writes tests/data/mnist_subset.npz: the first 2,000 training and the first
1,000 test images of MNIST (LeCun, Cortes and Burges), uint8, with labels.

    python tests/data/make_mnist_subset.py ../shared/data/mnist
"""

import gzip
import hashlib
import pathlib
import sys

import numpy as np

N_TRAIN, N_TEST = 2000, 1000


def read_idx(path, offset):
    raw = gzip.open(path).read()
    return np.frombuffer(raw, np.uint8, offset=offset), hashlib.sha256(raw).hexdigest()


def main(src):
    src = pathlib.Path(src)
    arrays, digests = {}, {}
    for split, prefix, n in (("train", "train", N_TRAIN), ("test", "t10k", N_TEST)):
        X, dx = read_idx(src / f"{prefix}-images-idx3-ubyte.gz", 16)
        y, dy = read_idx(src / f"{prefix}-labels-idx1-ubyte.gz", 8)
        arrays[f"X_{split}"] = X.reshape(-1, 784)[:n].copy()
        arrays[f"y_{split}"] = y[:n].copy()
        digests[prefix] = (dx, dy)
    out = pathlib.Path(__file__).with_name("mnist_subset.npz")
    np.savez_compressed(out, **arrays)
    for prefix, (dx, dy) in digests.items():
        print(f"{prefix}: images sha256 {dx}, labels sha256 {dy}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist")
