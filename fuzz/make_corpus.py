"""Writes the seed corpora of the fuzzers (committed in fuzz/corpus/):
small valid IDX files and small saved models of every task."""

import pathlib

import numpy as np

import mlp

HERE = pathlib.Path(__file__).resolve().parent / "corpus"


def idx(array, kind=8):
    array = np.asarray(array)
    return bytes([0, 0, kind, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape) + array.tobytes()


def main():
    (HERE / "idx").mkdir(parents=True, exist_ok=True)
    (HERE / "model").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    (HERE / "idx" / "labels").write_bytes(idx(np.arange(10, dtype=np.uint8)))
    (HERE / "idx" / "images").write_bytes(idx(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)))
    (HERE / "idx" / "floats").write_bytes(idx(np.array([1.5, -2.0], ">f4"), kind=0x0D))
    X = rng.standard_normal((30, 3)).astype(np.float32)
    y = rng.integers(0, 3, 30)
    for name, loss, target in (("classifier", "cross_entropy", y),
                               ("regressor", "squared_error", X[:, 0]),
                               ("multilabel", "binary_cross_entropy", np.eye(3)[y])):
        mlp.train(X, target, hidden=2, epochs=1, loss=loss).save(HERE / "model" / f"{name}.npz")


if __name__ == "__main__":
    main()
