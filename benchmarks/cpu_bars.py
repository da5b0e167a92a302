"""The CPU speed issue's other bars, each against PyTorch CPU in one
process, rounds interleaved (medians over --rounds):

- deeper: one MNIST epoch of 784-512-256-128-10 at batch 1024 (SGD lr 0.1,
  the same initial weights and row order): our C core (uint8 pixels, the
  backend's train_epoch, as mlp.train runs it) against torch.nn +
  torch.optim.SGD on the pixels scaled to floats once;
- predict: labels for 1,000,000 MNIST rows (the training set repeated) from
  uint8 numpy memory: Model.predict against PyTorch's from_numpy, the 1/255
  scale, the forward pass and argmax, the labels back as numpy.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/cpu_bars.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import mnist_root  # noqa: E402
from interleave import rounds  # noqa: E402
from torch_peer import TorchPeer  # noqa: E402

import mlp  # noqa: E402
from mlp import datasets  # noqa: E402
from mlp._backends import get_backend  # noqa: E402
from mlp.optimizers import make_optimizer  # noqa: E402
from mlp.torch_reference import build  # noqa: E402
from mlp.training import initial_state  # noqa: E402

DEEP = (784, 512, 256, 128, 10)
PAUSE = 0.5  # a library's idle threads keep spinning for a while after its work


def deeper(X, y, rounds, batch=1024):
    params = initial_state(DEEP, 1, 1, seed=0)[0]
    order = np.random.default_rng(0).permutation(len(X)).astype(np.int64)
    net = get_backend("cpu").network(DEEP, params, input_scale=1 / 255)
    data = net.bind(X, labels=y.astype(np.int32))
    opt = make_optimizer("sgd", 0.1).core_dict()
    peer = TorchPeer(params, DEEP, 0.1, X, y)
    fns = {"mlp C core": lambda: net.train_epoch(data, order, batch, opt),
           "PyTorch CPU": lambda: peer.epoch(order, batch)}
    return interleave(fns, rounds)


def torch_labels(net, X, classes):
    """PyTorch's prediction: from_numpy, the 1/255 scale, forward, argmax,
    the labels back as numpy."""
    with torch.no_grad():
        return classes[net(torch.from_numpy(X).to(torch.float32) / 255).argmax(1).numpy()]


def predict(X, y, rounds, rows=1_000_000):
    Xbig = np.ascontiguousarray(np.resize(X, (rows, X.shape[1])))
    model = mlp.train(X[:2000], y[:2000], epochs=1, seed=0, device="cpu")
    net, classes = build(model.sizes, model._flat), model.classes_
    same = np.mean(model.predict(Xbig[:100_000]) == torch_labels(net, Xbig[:100_000], classes))
    fns = {"mlp Model.predict": lambda: model.predict(Xbig),
           "PyTorch CPU": lambda: torch_labels(net, Xbig, classes)}
    return interleave(fns, rounds, extra=dict(rows=rows, agreement=float(same)))


def interleave(fns, n, extra=None):
    times = rounds(fns, n, PAUSE)
    med = {k: statistics.median(v) for k, v in times.items()}
    (a, ta), (b, tb) = med.items()
    return dict(medians=med, ratio=ta / tb, rounds=times, **(extra or {}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=["deeper", "predict"])
    ap.add_argument("--json")
    args = ap.parse_args()
    X, y = datasets.load_mnist("train", mnist_root())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    out = {}
    for name, fn in (("deeper", deeper), ("predict", predict)):
        if args.only and args.only != name:
            continue
        res = fn(X, y, args.rounds)
        out[name] = res
        meds = "  ".join(f"{k} {v:.3f} s" for k, v in res["medians"].items())
        print(f"{name}: {meds}  ours / PyTorch {res['ratio']:.3f}"
              + (f"  (agreement {res['agreement']:.4f})" if "agreement" in res else ""),
              flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
