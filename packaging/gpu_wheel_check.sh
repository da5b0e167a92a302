#!/usr/bin/env bash
# On a GPU machine that builds nothing: install a wheel built elsewhere into
# a folder of its own, show what its CUDA module links, train MNIST on the GPU, and
# run the test suite (CUDA tests included) against the installed wheel.
#
#   packaging/gpu_wheel_check.sh WHEEL MNIST_DIR [WHEELS_DIR]
#
# WHEELS_DIR: wheels of the test dependencies missing there (installed with
# --no-index). The machine's own numpy, pytest and torch are used.
# Logs go to $OUT (default /tmp/gpu-wheel-check).
set -euo pipefail
wheel=$(realpath "$1"); data=$(realpath "$2"); extra=${3:+$(realpath "$3")}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu-wheel-check}
mkdir -p "$OUT"
# pip installs into a folder of its own, put first on the path: the
# machine's python keeps its own numpy, pytest and torch (where a venv with
# --system-site-packages may not see them)
site=$(mktemp -d)/site
if [ -n "$extra" ]; then
  # --no-deps: the machine's own numpy stands for the one they ask for
  python3 -m pip install --quiet --no-index --no-deps --target "$site" "$extra"/*.whl
fi
python3 -m pip install --quiet --no-index --no-deps --target "$site" "$wheel"
export PYTHONPATH="$site"
run=$(mktemp -d)
cp -r "$ROOT/tests" "$ROOT/pyproject.toml" "$run/"
cd "$run"
{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 - <<'PY'
import glob, os, subprocess
import mlp
here = os.path.dirname(mlp.__file__)
print("mlp", mlp.__version__, "from", here, "devices:", mlp.available_devices())
for so in sorted(glob.glob(os.path.join(here, "_*.so"))):
    print(os.path.basename(so))
    print(subprocess.run(["ldd", so], capture_output=True, text=True).stdout)
PY
  python3 - "$data" <<'PY'
import sys, time
import mlp
from mlp.datasets import load_mnist
X, y = load_mnist("train", root=sys.argv[1])
Xt, yt = load_mnist("test", root=sys.argv[1])
start = time.perf_counter()
model = mlp.train(X, y, device="cuda", validation_data=(Xt, yt), verbose=True)
print(f"mlp.train(device='cuda') on MNIST, 10 epochs: {time.perf_counter() - start:.2f} s "
      f"end to end; device {model.device}; test accuracy {model.score(Xt, yt):.4f}")
PY
} 2>&1 | tee "$OUT/gpu-wheel-train.txt"
python3 -m pytest -q -p no:cacheprovider tests 2>&1 | tail -15 | tee "$OUT/gpu-wheel-tests.txt"
