"""What drawing the next epoch's sample order during an epoch saves
(mlp/estimators.py's _EpochOrders, on for the GPU): mlp.MLPClassifier fits at
scikit-learn's defaults (hidden 256, 10 epochs) on vs_sklearn.py's tabular set
(--rows training rows, 100 features), the draw-ahead on and off in
alternating rounds; prints each fit and the medians. Both give the same
parameters (checked here, and in tests/test_estimators.py).

    python benchmarks/orders_ahead.py --device cuda [--rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from vs_sklearn import tabular  # noqa: E402

import mlp  # noqa: E402
import mlp.estimators as estimators  # noqa: E402

PAUSE = 0.5


def orders_class(ahead):
    """_EpochOrders with its draw-ahead forced on or off"""
    class Orders(estimators._EpochOrders):
        def __init__(self, sample_idx, random_state, **_):
            super().__init__(sample_idx, random_state, ahead)
    return Orders


def fit(X, y, device, ahead):
    saved = estimators._EpochOrders
    estimators._EpochOrders = orders_class(ahead)
    try:
        est = mlp.MLPClassifier(hidden_layer_sizes=(256,), max_iter=10, random_state=0,
                                device=device)
        time.sleep(PAUSE)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning after max_iter epochs
            est.fit(X, y)
        return time.perf_counter() - start, est
    finally:
        estimators._EpochOrders = saved


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    X, y, _, _ = tabular(args.rows)
    fit(X[:1000], y[:1000], args.device, False)  # the device's start, outside the rounds
    times = {False: [], True: []}
    fitted = {}
    for r in range(args.rounds):
        for ahead in (False, True):
            seconds, fitted[ahead] = fit(X, y, args.device, ahead)
            times[ahead].append(seconds)
            print(f"round {r}: draw-ahead {'on ' if ahead else 'off'} {seconds:.3f} s", flush=True)
    same = all(np.array_equal(a, b) for a, b in zip(fitted[False].coefs_, fitted[True].coefs_))
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"median fit: off {off:.3f} s, on {on:.3f} s, on / off {on / off:.3f}; "
          f"the same parameters: {same}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "rows": args.rows, "off": times[False],
                       "on": times[True], "same_parameters": same}, f, indent=1)


if __name__ == "__main__":
    main()
