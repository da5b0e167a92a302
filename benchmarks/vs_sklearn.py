"""mlp.MLPClassifier against scikit-learn's MLPClassifier with the same
parameters (scikit-learn's defaults: adam, learning_rate_init 1e-3, batch
200, alpha 1e-4; hidden 256, 10 epochs), in one process: MNIST (60,000
training rows scaled to [0, 1], 10,000 test rows) and a tabular set from
make_classification (--tabular-rows training rows, 100 features, and a
tenth as many test rows). For each seed: the time of fit and the test
accuracy of both. Each timed fit starts after a pause of PAUSE seconds (a
library's idle threads keep spinning for a while after its work: OpenBLAS's
after scikit-learn's fit or score). With --grid, also GridSearchCV over 8 settings on MNIST
(3-fold, 3 epochs each) with both estimators.

    python benchmarks/vs_sklearn.py --mnist DIR --device cpu [--seeds 3] [--grid]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings

import numpy as np
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier as SkClassifier

import mlp
from mlp.datasets import read_idx


def mnist(folder):
    X = read_idx(f"{folder}/train-images-idx3-ubyte.gz").reshape(-1, 784) / np.float32(255)
    y = read_idx(f"{folder}/train-labels-idx1-ubyte.gz")
    Xt = read_idx(f"{folder}/t10k-images-idx3-ubyte.gz").reshape(-1, 784) / np.float32(255)
    yt = read_idx(f"{folder}/t10k-labels-idx1-ubyte.gz")
    return X.astype(np.float32), y, Xt.astype(np.float32), yt


def tabular(rows):
    X, y = make_classification(n_samples=rows + rows // 10, n_features=100, n_informative=20,
                               n_classes=2, random_state=0)
    X = X.astype(np.float32)
    return X[:rows], y[:rows], X[rows:], y[rows:]


PAUSE = 0.5


def timed_fit(est, X, y):
    time.sleep(PAUSE)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after max_iter epochs
        est.fit(X, y)
    return time.perf_counter() - start


def compare(name, data, seeds, epochs, device, log):
    X, y, Xt, yt = data
    rows = []
    for seed in range(seeds):
        kw = dict(hidden_layer_sizes=(256,), max_iter=epochs, random_state=seed)
        ours, theirs = mlp.MLPClassifier(device=device, **kw), SkClassifier(**kw)
        t_ours = timed_fit(ours, X, y)
        t_theirs = timed_fit(theirs, X, y)
        row = dict(dataset=name, seed=seed, ours_s=t_ours, sklearn_s=t_theirs,
                   ours_acc=float(ours.score(Xt, yt)), sklearn_acc=float(theirs.score(Xt, yt)),
                   ours_epochs=ours.n_iter_, sklearn_epochs=theirs.n_iter_)
        rows.append(row)
        log(f"{name} seed {seed}: mlp {t_ours:8.2f} s acc {row['ours_acc']:.4f} | "
            f"scikit-learn {t_theirs:8.2f} s acc {row['sklearn_acc']:.4f} | "
            f"{t_theirs / t_ours:6.1f}x")
    acc_o = statistics.mean(r["ours_acc"] for r in rows)
    acc_s = statistics.mean(r["sklearn_acc"] for r in rows)
    t_o = statistics.mean(r["ours_s"] for r in rows)
    t_s = statistics.mean(r["sklearn_s"] for r in rows)
    log(f"{name}: mean accuracy mlp {100 * acc_o:.2f}% scikit-learn {100 * acc_s:.2f}% "
        f"(difference {100 * (acc_o - acc_s):+.2f} points); mean fit mlp {t_o:.2f} s "
        f"scikit-learn {t_s:.2f} s: {t_s / t_o:.1f}x")
    return rows


def grid(data, device, log):
    X, y, Xt, yt = data
    params = {"hidden_layer_sizes": [(128,), (256,)], "alpha": [1e-4, 1e-2],
              "learning_rate_init": [1e-3, 3e-3]}
    out = {}
    for name, est in (("mlp", mlp.MLPClassifier(max_iter=3, random_state=0, device=device)),
                      ("scikit-learn", SkClassifier(max_iter=3, random_state=0))):
        search = GridSearchCV(est, params, cv=3, n_jobs=1)
        seconds = timed_fit(search, X, y)
        out[name] = dict(seconds=seconds, best_score=float(search.best_score_),
                         best_params={k: str(v) for k, v in search.best_params_.items()},
                         test_acc=float(search.score(Xt, yt)))
        log(f"grid {name}: {seconds:.1f} s, best CV score {search.best_score_:.4f} "
            f"{search.best_params_}, test {out[name]['test_acc']:.4f}")
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mnist", default=os.environ.get("MLP_MNIST_DIR", "../shared/data/mnist"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--tabular-rows", type=int, default=1_000_000)
    p.add_argument("--skip-tabular", action="store_true")
    p.add_argument("--grid", action="store_true")
    p.add_argument("--json")
    args = p.parse_args()

    def log(line):
        print(line, flush=True)

    result = dict(device=args.device, epochs=args.epochs, seeds=args.seeds)
    result["mnist"] = compare("mnist", mnist(args.mnist), args.seeds, args.epochs, args.device,
                              log)
    if not args.skip_tabular:
        result["tabular"] = compare(f"tabular-{args.tabular_rows}", tabular(args.tabular_rows),
                                    args.seeds, args.epochs, args.device, log)
    if args.grid:
        result["grid"] = grid(mnist(args.mnist), args.device, log)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
