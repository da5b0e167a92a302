"""Shared pieces of the CPU benchmarks: full MNIST, and a closing table of
each benchmark group's times as ratios to the fastest numpy peer.

    pytest benchmarks/ --benchmark-only
"""

import os
import pathlib

import numpy as np
import pytest

from mlp import datasets

ROOT = pathlib.Path(__file__).resolve().parent.parent


def mnist_root():
    for folder in (os.environ.get("MLP_MNIST_DIR"), ROOT / ".data", ROOT.parent / "shared/data/mnist"):
        if folder and (pathlib.Path(folder) / "train-images-idx3-ubyte.gz").exists():
            return pathlib.Path(folder)
    return None  # then mlp.datasets finds or fetches it


@pytest.fixture(scope="session")
def mnist():
    root = mnist_root()
    X, y = datasets.load_mnist("train", root)
    Xt, yt = datasets.load_mnist("test", root)
    return X, y.astype(np.int64), Xt, yt.astype(np.int64)


def pytest_terminal_summary(terminalreporter):
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    benches = getattr(session, "benchmarks", None) if session else None
    if not benches:
        return
    groups = {}
    for b in benches:
        groups.setdefault(b.group, []).append(b)
    lines = ["", "median seconds and ratio to the fastest numpy peer (lower is faster):"]
    for group, items in sorted(groups.items(), key=lambda g: str(g[0])):
        peers = [b for b in items if "numpy" in b.name]
        base = min(peers, key=lambda b: b.stats.median) if peers else None
        lines.append(f"  {group}")
        for b in sorted(items, key=lambda b: b.stats.median):
            ratio = f"{b.stats.median / base.stats.median:5.2f}x" if base else "     "
            extra = "  ".join(f"{k} {v}" for k, v in sorted(b.extra_info.items()))
            lines.append(f"    {b.name:<44} {b.stats.median:9.4f} s  {ratio}  {extra}")
    terminalreporter.write_line("\n".join(lines))
