"""A few training steps of the CUDA core, for a profiler to look at:

    ncu --launch-skip 40 --launch-count 6 python3 benchmarks/profile_cuda.py --mnist DIR --batch 64
    ncu --metrics gpu__time_duration.sum --launch-skip 100 --launch-count 40 \\
        python3 benchmarks/profile_cuda.py --mnist DIR --sizes 784 1024 1024 10 --batch 1024
    (--tabular: random rows of 100 float32 features and 2 classes instead of MNIST)
"""

import argparse

import numpy as np

from mlp._backends import get_backend
from mlp.datasets import read_idx
from mlp.optimizers import make_optimizer
from mlp.training import initial_state

ap = argparse.ArgumentParser()
ap.add_argument("--mnist")
ap.add_argument("--tabular", action="store_true")
ap.add_argument("--sizes", type=int, nargs="+", default=[784, 256, 10])
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--rows", type=int, default=8192)
args = ap.parse_args()
if args.tabular:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, args.sizes[0]), dtype=np.float32)
    y = (X[:, 0] > 0).astype(np.int32)
    scale = 1.0
else:
    X = read_idx(f"{args.mnist}/train-images-idx3-ubyte.gz").reshape(-1, 784)[:args.rows]
    y = read_idx(f"{args.mnist}/train-labels-idx1-ubyte.gz")[:args.rows].astype(np.int32)
    scale = 1 / 255
sizes = tuple(args.sizes)
params, orders = initial_state(sizes, len(X), 2)
net = get_backend("cuda").network(sizes, params, input_scale=scale)
data = net.bind(X, y)
for order in orders:
    print(net.train_epoch(data, order, args.batch, make_optimizer("sgd", 0.1).core_dict())[1])
