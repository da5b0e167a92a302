"""Two builds of mlp on the same work, in alternating processes: one MNIST
epoch of the default recipe (784-256-10, ReLU, softmax cross-entropy, SGD
lr 0.1) through mlp.train, timed by its own history, for each batch size.

    python benchmarks/compare_builds.py --device cpu --old-python OLD/bin/python \
        --new-python NEW/bin/python --rounds 7 --batch-sizes 64 200

Each round runs the old build's process, then the new one's (or the other
way round on odd rounds); a process trains `--epochs` epochs and reports the
median of all but the first. The table gives each build's median over the
rounds and the ratio new / old, and whether the two builds' final
parameters are the same bit for bit (every process trains from the same
seed). Optional: --recipe adam runs Adam instead, --recipe deep the deeper
net 784-512-256-128-10 (SGD).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from interleave import summarize

CHILD = r"""
import hashlib, json, sys, numpy as np, mlp
from mlp.datasets import read_idx
folder, device, batch, epochs, recipe = sys.argv[1:6]
X = read_idx(f"{folder}/train-images-idx3-ubyte.gz").reshape(-1, 784)
y = read_idx(f"{folder}/train-labels-idx1-ubyte.gz")
kw = {"adam": dict(optimizer="adam", lr=1e-3), "deep": dict(hidden=(512, 256, 128))}.get(recipe, {})
m = mlp.train(X, y, epochs=int(epochs), batch_size=int(batch), device=device, **kw)
digest = hashlib.sha256(b"".join(v.tobytes() for v in m.params.values())).hexdigest()
print(json.dumps({"seconds": m.history["seconds"][1:], "loss": m.history["loss"][-1],
                  "digest": digest}))
"""


def run(python, path, folder, device, batch, epochs, recipe):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if path:
        env["PYTHONPATH"] = path
    out = subprocess.run([python, "-c", CHILD, folder, device, str(batch), str(epochs), recipe],
                         env=env, capture_output=True, text=True, cwd="/")
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return statistics.median(result["seconds"]), result["loss"], result["digest"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mnist", default=os.environ.get("MLP_MNIST_DIR", "../shared/data/mnist"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--old-python", default=sys.executable)
    p.add_argument("--old-path", default="")
    p.add_argument("--new-python", default=sys.executable)
    p.add_argument("--new-path", default="")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--recipe", choices=["sgd", "adam", "deep"], default="sgd")
    p.add_argument("--json")
    args = p.parse_args()
    folder = os.path.abspath(args.mnist)
    rows = []
    for batch in args.batch_sizes:
        times = {"old": [], "new": []}
        losses, digests = {}, {"old": set(), "new": set()}
        for r in range(args.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for which in order:
                python = getattr(args, f"{which}_python")
                path = getattr(args, f"{which}_path")
                sec, loss, digest = run(python, path, folder, args.device, batch, args.epochs,
                                        args.recipe)
                times[which].append(sec)
                losses[which] = loss
                digests[which].add(digest)
        same = len(digests["old"] | digests["new"]) == 1
        row = summarize(batch, times, f"losses {losses['old']:.4f} / {losses['new']:.4f}; "
                                      f"parameters {'identical' if same else 'DIFFER'}; ")
        rows.append(dict(row, losses=losses, identical=same))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=args.device, recipe=args.recipe, rounds=args.rounds,
                           rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
