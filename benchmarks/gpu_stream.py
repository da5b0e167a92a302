"""Rows from host memory on the GPU (issue #14), against PyTorch in one
process, rounds interleaved (medians over --rounds):

- predict: labels for 1,000,000 MNIST rows (the training set repeated) from
  uint8 numpy memory: Model.predict on the CUDA core (and, to see where the
  time goes, the core's calls under it: the classes alone, and the 10
  probabilities per row) against PyTorch's
  torch.from_numpy(X).to("cuda") from the same pageable memory, the 1/255
  scale, the forward pass, argmax, the labels back as numpy;
- train: one epoch over MNIST repeated 4 times (240,000 rows, 188 MB;
  784-256-10, SGD) through the backend's train_epoch with the data on the
  GPU and with it left in host memory (MLP_CUDA_DATA_LIMIT=16M: chunks of
  about 2 MiB streamed; 128M: 16 MiB), at batch 64 and 1024: what
  streaming costs.

    python benchmarks/gpu_stream.py [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import mnist_root  # noqa: E402
from interleave import rounds  # noqa: E402

import mlp  # noqa: E402
from mlp import datasets  # noqa: E402
from mlp._backends import get_backend  # noqa: E402
from mlp.optimizers import make_optimizer  # noqa: E402
from mlp.torch_reference import build  # noqa: E402

PAUSE = 0.2


def interleave(fns, n):
    times = rounds(fns, n, PAUSE)
    return {k: statistics.median(v) for k, v in times.items()}, times


def torch_labels(net, X, classes):
    with torch.no_grad():
        x = torch.from_numpy(X).to("cuda").to(torch.float32) / 255
        return classes[net(x).argmax(1).cpu().numpy()]


def predict(X, y, rounds, rows=1_000_000):
    Xbig = np.ascontiguousarray(np.resize(X, (rows, X.shape[1])))
    model = mlp.train(X, y, epochs=1, seed=0, device="cuda")
    net = build(model.sizes, model._flat).cuda().eval()
    classes = model.classes_
    agreement = float(np.mean(model.predict(Xbig) == torch_labels(net, Xbig, classes)))
    core = model._network(Xbig)
    # the crew that copies rows into pinned memory: its default (the machine's
    # threads up to 8) against 4 and 16
    crews = {}
    for threads in (4, 16):
        crews[threads] = get_backend("cuda").network(model.sizes, model._flat,
                                                     input_scale=model.input_scale)
        crews[threads].set_threads(threads)
    fns = {"mlp Model.predict": lambda: model.predict(Xbig),
           "mlp core predict_classes (bind)": lambda: core.predict_classes(core.bind(Xbig)),
           "mlp core predict (bind, probabilities)": lambda: core.predict(core.bind(Xbig)),
           "mlp core predict_classes, 4 threads": lambda: crews[4].predict_classes(
               crews[4].bind(Xbig)),
           "mlp core predict_classes, 16 threads": lambda: crews[16].predict_classes(
               crews[16].bind(Xbig)),
           "PyTorch CUDA": lambda: torch_labels(net, Xbig, classes)}
    med, times = interleave(fns, rounds)
    torch_s = med["PyTorch CUDA"]
    return dict(rows=rows, agreement=agreement, medians=med, rounds=times,
                ratios={k: torch_s / v for k, v in med.items()})


def train(X, y, rounds, repeat=4):
    from mlp.training import initial_state
    X, y = np.concatenate([X] * repeat), np.concatenate([y] * repeat)
    sizes = (784, 256, 10)
    params = initial_state(sizes, 1, 1, seed=0)[0]
    order = np.random.default_rng(0).permutation(len(X)).astype(np.int64)
    opt = make_optimizer("sgd", 0.1).core_dict()
    out = {}
    for batch in (64, 1024):
        fns = {}
        for name, value in (("on GPU", None), ("streamed, limit 16M", "16M"),
                            ("streamed, limit 128M", "128M")):
            if value is None:
                os.environ.pop("MLP_CUDA_DATA_LIMIT", None)
            else:
                os.environ["MLP_CUDA_DATA_LIMIT"] = value
            net = get_backend("cuda").network(sizes, params, input_scale=1 / 255)
            data = net.bind(X, labels=y.astype(np.int32))
            assert data.on_host == (value is not None)  # the limit is the binding's
            fns[name] = (lambda n=net, d=data: n.train_epoch(d, order, batch, opt))
        med, times = interleave(fns, rounds)
        os.environ.pop("MLP_CUDA_DATA_LIMIT", None)
        out[batch] = dict(medians=med, rounds=times,
                          ratios={k: v / med["on GPU"] for k, v in med.items()})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=["predict", "train"])
    ap.add_argument("--json")
    args = ap.parse_args()
    X, y = datasets.load_mnist("train", mnist_root())
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
          f"{os.cpu_count()} CPUs", flush=True)
    out = {}
    if args.only in (None, "predict"):
        res = predict(X, y, args.rounds)
        out["predict"] = res
        for k, v in res["medians"].items():
            print(f"predict {res['rows']:,} rows: {k:34s} {v * 1e3:8.1f} ms  "
                  f"PyTorch / this {res['ratios'][k]:.2f}", flush=True)
        print(f"  labels agreeing with PyTorch's: {res['agreement']:.5f}", flush=True)
    if args.only in (None, "train"):
        res = train(X, y, args.rounds)
        out["train"] = res
        for batch, r in res.items():
            meds = "  ".join(f"{k} {v * 1e3:.2f} ms" for k, v in r["medians"].items())
            ratios = "  ".join(f"{v:.3f}" for v in r["ratios"].values())
            print(f"train epoch, batch {batch}: {meds}  / on GPU: {ratios}", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
