"""One MNIST epoch on the GPU, in one run: our CUDA core, PyTorch eager, and
PyTorch with the training step captured in a CUDA graph.

60,000 images, 784-256-10, SGD (lr 0.1), the same initial weights and the
same shuffled order for all three; the data set resident on the GPU for all
three (uint8, scaled by 1/255 in the step). Prints a table of the median
epoch time over --repeats epochs (after one warm-up epoch) and the ratios.

    python benchmarks/bench_cuda.py --mnist DIR [--batch-sizes 64 1024 8192]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import numpy as np

from mlp._backends import get_backend
from mlp.datasets import read_idx
from mlp.optimizers import make_optimizer
from mlp.training import initial_state

SIZES = (784, 256, 10)
LR = 0.1


def load(folder):
    folder = pathlib.Path(folder)
    X = read_idx(folder / "train-images-idx3-ubyte.gz").reshape(-1, 784)
    y = read_idx(folder / "train-labels-idx1-ubyte.gz").astype(np.int32)
    return X, y


def time_epochs(run_epoch, orders, sync):
    """Median wall time of run_epoch(order) over orders[1:], after orders[0]."""
    run_epoch(orders[0])
    sync()
    times = []
    for order in orders[1:]:
        start = time.perf_counter()
        loss = run_epoch(order)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), float(loss)


def ours(X, y, params, orders, batch_size, plain=False):
    """Our CUDA core: one kernel per epoch, or with plain the tuned kernel per
    op (gemm.cu, MLP_KERNELS=gemm)."""
    import os
    os.environ["MLP_KERNELS"] = "gemm" if plain else ""
    net = get_backend("cuda").network(SIZES, params, input_scale=1 / 255)
    data = net.bind(X, y)
    opt = make_optimizer("sgd", LR).core_dict()
    try:
        return time_epochs(lambda o: net.train_epoch(data, o, batch_size, opt)[1], orders,
                           lambda: None)
    finally:
        os.environ.pop("MLP_KERNELS")


def torch_model(torch, params):
    from mlp.reference import layer_views
    Ws, bs = layer_views(params, SIZES)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10)).cuda()
    with torch.no_grad():
        for lin, W, b in zip((model[0], model[2]), Ws, bs):
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
    return model, torch.optim.SGD(model.parameters(), lr=LR)


def torch_eager(torch, X, y, params, orders, batch_size):
    Xg, yg = torch.from_numpy(X).cuda(), torch.from_numpy(y.astype(np.int64)).cuda()
    model, opt = torch_model(torch, params)

    def step(idx):
        x = Xg[idx].float().mul_(1.0 / 255.0)
        loss = torch.nn.functional.cross_entropy(model(x), yg[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def epoch(order):
        perm = torch.from_numpy(order).cuda()
        losses = [step(perm[s:s + batch_size]).detach() for s in range(0, len(order), batch_size)]
        return torch.stack(losses).mean().item()

    return time_epochs(epoch, orders, torch.cuda.synchronize)


def torch_graph(torch, X, y, params, orders, batch_size):
    Xg, yg = torch.from_numpy(X).cuda(), torch.from_numpy(y.astype(np.int64)).cuda()
    model, opt = torch_model(torch, params)
    n = len(X)
    sizes = [batch_size] + ([n % batch_size] if n % batch_size else [])
    graphs = {}
    for B in sizes:  # one graph for full batches, one for the last partial one
        idx = torch.zeros(B, dtype=torch.long, device="cuda")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up outside the graph (gradients only, no step)
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(
                    model(Xg[idx].float().mul_(1.0 / 255.0)), yg[idx]).backward()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(g):
            loss = torch.nn.functional.cross_entropy(
                model(Xg[idx].float().mul_(1.0 / 255.0)), yg[idx])
            loss.backward()
            opt.step()
        graphs[B] = (g, idx, loss)
    def epoch(order):
        perm = torch.from_numpy(order).cuda()
        total = torch.zeros((), device="cuda")
        for s in range(0, n, batch_size):
            chunk = perm[s:s + batch_size]
            g, idx, loss = graphs[len(chunk)]
            idx.copy_(chunk)
            g.replay()
            total += loss * len(chunk)
        return (total / n).item()

    return time_epochs(epoch, orders, torch.cuda.synchronize)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", required=True, help="folder with the MNIST IDX files")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 1024, 8192])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()

    import torch
    X, y = load(args.mnist)
    params, orders = initial_state(SIZES, len(X), args.repeats + 1, seed=0)
    rows = []
    for bs in args.batch_sizes:
        t_ours, l_ours = ours(X, y, params, orders, bs)
        t_plain, l_plain = ours(X, y, params, orders, bs, plain=True)
        t_eager, l_eager = torch_eager(torch, X, y, params, orders, bs)
        t_graph, l_graph = torch_graph(torch, X, y, params, orders, bs)
        rows.append(dict(batch_size=bs, ours_ms=1e3 * t_ours, ours_plain_ms=1e3 * t_plain,
                         torch_eager_ms=1e3 * t_eager, torch_graph_ms=1e3 * t_graph,
                         loss_ours=l_ours, loss_plain=l_plain, loss_eager=l_eager,
                         loss_graph=l_graph))
        print(f"batch {bs}: ours {1e3 * t_ours:.2f} ms (kernel per op {1e3 * t_plain:.2f} ms), "
              f"eager {1e3 * t_eager:.2f} ms, "
              f"graph {1e3 * t_graph:.2f} ms; epoch losses {l_ours:.4f} {l_plain:.4f} "
              f"{l_eager:.4f} {l_graph:.4f}", flush=True)

    device = torch.cuda.get_device_name()
    print(f"\nOne MNIST epoch (60,000 images, 784-256-10, SGD), median of {args.repeats} "
          f"epochs, {device}, torch {torch.__version__}")
    print("| batch | mlp CUDA core (ms) | mlp, kernel per op (ms) | PyTorch eager (ms) "
          "| PyTorch CUDA graph (ms) | graph / ours | eager / ours |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['batch_size']} | {r['ours_ms']:.2f} | {r['ours_plain_ms']:.2f} | "
              f"{r['torch_eager_ms']:.2f} | "
              f"{r['torch_graph_ms']:.2f} | {r['torch_graph_ms'] / r['ours_ms']:.1f}x | "
              f"{r['torch_eager_ms'] / r['ours_ms']:.1f}x |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"device": device, "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
