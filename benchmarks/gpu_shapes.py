"""Issue #14's table: one training epoch of each shape on the GPU, our CUDA
core (the backend's train_epoch, as mlp.train runs it) against PyTorch with
the training step captured in a CUDA graph, both with the data resident on
the GPU, the same initial weights and the same shuffled row order, SGD.
Each figure is the median of --repeats epochs after one warm-up epoch;
within a shape the two run back to back in one process.

Shapes: 784-256-10 at batch 32, 64, 1024, 8192; 784-512-256-128-10 at 64
and 1024; 784-1024-1024-10 at 1024; 784-4096-4096-10 at 64, 1024, 8192
(MNIST, uint8 scaled by 1/255 in the step, lr 0.1); a tabular set of
1,000,000 rows of 100 float32 features and 2 classes (a random linear rule
with noise) on 100-512-512-2 at 1024 and 8192 (lr 0.1); mnist-cuda's
headline, 784-1024-10 on the first 10,000 MNIST images at batch 32, lr 0.01.

    python benchmarks/gpu_shapes.py --mnist DIR [--repeats 3] [--json out.json]
        [--only-one-hidden]   (the shapes with one hidden layer only)
        [--only-deeper]       (the others: the kernel-per-op path)
        [--variants NAME=VALUE[,NAME=VALUE] ...]
                              (ours again with these environment variables
                              set, after the default and before PyTorch, in
                              the same process: one more column each)
"""

from __future__ import annotations

import argparse
import json
import os
from unittest import mock

import numpy as np
import torch

from bench_cuda import time_epochs  # the median epoch after a warm-up one
from mlp._backends import get_backend
from mlp.datasets import read_idx
from mlp.optimizers import make_optimizer
from mlp.torch_reference import build
from mlp.training import initial_state

SHAPES = [  # (name, sizes, batch, lr, data)
    ("784-256-10", (784, 256, 10), 32, 0.1, "mnist"),
    ("784-256-10", (784, 256, 10), 64, 0.1, "mnist"),
    ("784-256-10", (784, 256, 10), 1024, 0.1, "mnist"),
    ("784-256-10", (784, 256, 10), 8192, 0.1, "mnist"),
    ("784-512-256-128-10", (784, 512, 256, 128, 10), 64, 0.1, "mnist"),
    ("784-512-256-128-10", (784, 512, 256, 128, 10), 1024, 0.1, "mnist"),
    ("784-1024-1024-10", (784, 1024, 1024, 10), 1024, 0.1, "mnist"),
    ("784-4096-4096-10", (784, 4096, 4096, 10), 64, 0.1, "mnist"),
    ("784-4096-4096-10", (784, 4096, 4096, 10), 1024, 0.1, "mnist"),
    ("784-4096-4096-10", (784, 4096, 4096, 10), 8192, 0.1, "mnist"),
    ("tabular 100-512-512-2, 1M rows", (100, 512, 512, 2), 1024, 0.1, "tabular"),
    ("tabular 100-512-512-2, 1M rows", (100, 512, 512, 2), 8192, 0.1, "tabular"),
    ("784-1024-10, 10,000 images (mnist-cuda)", (784, 1024, 10), 32, 0.01, "mnist10k"),
]


def data_sets(folder):
    X = read_idx(os.path.join(folder, "train-images-idx3-ubyte.gz")).reshape(-1, 784)
    y = read_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz")).astype(np.int32)
    rng = np.random.default_rng(0)
    T = rng.standard_normal((1_000_000, 100), dtype=np.float32)
    w = rng.standard_normal(100).astype(np.float32)
    t = ((T @ w + rng.standard_normal(len(T)).astype(np.float32) * 2) > 0).astype(np.int32)
    return {"mnist": (X, y), "mnist10k": (X[:10_000], y[:10_000]), "tabular": (T, t)}


def ours(sizes, X, y, params, orders, batch, lr, env=None):
    """Our epoch, with the variables of env set throughout (the core reads
    some when the network is built, MLP_KERNELS when an epoch is planned)."""
    scale = 1 / 255 if X.dtype == np.uint8 else 1.0
    with mock.patch.dict(os.environ, env or {}):
        net = get_backend("cuda").network(sizes, params, input_scale=scale)
        data = net.bind(X, y)
        opt = make_optimizer("sgd", lr).core_dict()
        t = time_epochs(lambda o: net.train_epoch(data, o, batch, opt)[1], orders,
                        lambda: None)[0]
        return t, net.model.kernel_set


def torch_graph(sizes, X, y, params, orders, batch, lr):
    Xg, yg = torch.from_numpy(X).cuda(), torch.from_numpy(y.astype(np.int64)).cuda()
    scale = 1 / 255 if X.dtype == np.uint8 else 1.0
    model = build(sizes, params).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    n = len(X)
    graphs = {}
    for B in [batch] + ([n % batch] if n % batch else []):
        idx = torch.zeros(B, dtype=torch.long, device="cuda")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(
                    model(Xg[idx].float().mul_(scale)), yg[idx]).backward()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(g):
            loss = torch.nn.functional.cross_entropy(model(Xg[idx].float().mul_(scale)), yg[idx])
            loss.backward()
            opt.step()
        graphs[B] = (g, idx)

    def epoch(order):
        perm = torch.from_numpy(order).cuda()
        for s in range(0, n, batch):
            chunk = perm[s:s + batch]
            g, idx = graphs[len(chunk)]
            idx.copy_(chunk)
            g.replay()
        return 0.0

    return time_epochs(epoch, orders, torch.cuda.synchronize)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--only-one-hidden", action="store_true",
                    help="only the shapes with one hidden layer (the one-kernel epochs)")
    ap.add_argument("--only-deeper", action="store_true",
                    help="only the shapes with more hidden layers (the kernel-per-op path)")
    ap.add_argument("--variants", nargs="*", default=[],
                    help="NAME=VALUE[,NAME=VALUE]: ours again with these variables set")
    args = ap.parse_args()
    variants = [dict(kv.split("=", 1) for kv in v.split(",")) for v in args.variants]
    sets = data_sets(args.mnist)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    extra = "".join(f" {v} | graph / it |" for v in args.variants)
    print(f"| shape | batch | mlp epoch | PyTorch CUDA graph | graph / ours | kernels |{extra}")
    print("| --- | ---: | ---: | ---: | ---: | --- |" + " ---: | ---: |" * len(variants),
          flush=True)
    rows = []
    for name, sizes, batch, lr, which in SHAPES:
        if (args.only_one_hidden and len(sizes) != 3) or (args.only_deeper and len(sizes) == 3):
            continue
        X, y = sets[which]
        params = initial_state(sizes, 1, 1, seed=0)[0]
        rng = np.random.default_rng(1)
        orders = [rng.permutation(len(X)).astype(np.int64) for _ in range(args.repeats + 1)]
        t_ours, kernels = ours(sizes, X, y, params, orders, batch, lr)
        t_vars = [ours(sizes, X, y, params, orders, batch, lr, env)[0] for env in variants]
        t_torch = torch_graph(sizes, X, y, params, orders, batch, lr)
        rows.append(dict(shape=name, sizes=sizes, batch=batch, ours_s=t_ours,
                         torch_graph_s=t_torch, kernels=kernels,
                         variants={v: t for v, t in zip(args.variants, t_vars)}))
        cols = "".join(f" {t * 1e3:.2f} ms | {t_torch / t:.2f}x |" for t in t_vars)
        print(f"| {name} | {batch} | {t_ours * 1e3:.2f} ms | {t_torch * 1e3:.2f} ms | "
              f"{t_torch / t_ours:.2f}x | {kernels} |{cols}", flush=True)
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
