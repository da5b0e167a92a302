#!/usr/bin/env bash
# The whole GPU check in one call of the device tool, from the repository root:
# build with the CUDA core, every test, compute-sanitizer, the epoch benchmark.
# Logs go to $OUT. Full MNIST must be in .data/ (an ignored folder; carry it).
# TESTS=0 skips the test suite, SANITIZE=0 compute-sanitizer, BENCH=0 the benchmark (each run fits
# the device tool's 10 minutes a call); BENCH_ARGS go to bench_cuda.py.
set -uo pipefail
OUT=${OUT:-/tmp/mlp-out}
REPO=$(pwd)
export PYTHONUNBUFFERED=1 MLP_MNIST_DIR=$REPO/.data MLP_CUDA=ON
[ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH
mkdir -p "$OUT"
# Python packages the device lacks (scikit-learn and scipy for the
# estimators), carried as wheels in .whl/ (an ignored folder)
if ls "$REPO"/.whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$REPO"/.whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
# CUDA_ARCHS: the architectures to build (default: only sm_90a, the lent GPUs')
CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-90a-real}" \
  python3 -m pip install --no-build-isolation --no-deps -v . > "$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 1; }
grep "mlp:" "$OUT/build.log"
cd /tmp
if [ "${TESTS:-1}" = 1 ]; then
  echo "== tests"
  timeout 240 pytest "$REPO/tests" -q -p no:cacheprovider -rs 2>&1 | tee "$OUT/tests.log" | tail -15
fi
if [ "${SANITIZE:-1}" = 1 ]; then
  echo "== compute-sanitizer memcheck (every CUDA test but the slow and the process-level ones)"
  timeout 420 compute-sanitizer --tool memcheck --error-exitcode 9 \
    python3 -m pytest "$REPO/tests/test_core_vs_reference.py" "$REPO/tests/test_cuda.py" \
    "$REPO/tests/test_api.py" "$REPO/tests/test_configurable.py" -q -p no:cacheprovider \
    -m cuda -k "(pairwise or not every_combination) and not full_mnist and not out_of_gpu \
    and not stop_request and not ctrl_c \
    and not no_visible_gpu" > "$OUT/memcheck.log" 2>&1
  echo "exit $?"; grep -E "ERROR SUMMARY|passed|failed" "$OUT/memcheck.log" | tail -3
  echo "== compute-sanitizer racecheck (slow: the small parity cases, one of them on fused_rows.cu)"
  timeout 240 compute-sanitizer --tool racecheck --error-exitcode 9 \
    python3 -m pytest "$REPO/tests/test_core_vs_reference.py" -q -p no:cacheprovider -m cuda \
    -k "matches_c_core and (n37 or n10 or n96 or (n600 and fast))" > "$OUT/racecheck.log" 2>&1
  echo "exit $?"; grep -E "ERROR SUMMARY|passed|failed" "$OUT/racecheck.log" | tail -3
fi
if [ "${VS_SKLEARN:-0}" = 1 ]; then
  echo "== mlp.MLPClassifier on the GPU against scikit-learn on this machine's CPUs"
  python3 "$REPO/benchmarks/vs_sklearn.py" --device cuda --mnist "$REPO/.data" --seeds 3 --grid \
    --json "$OUT/vs-sklearn.json" 2>&1 | tee "$OUT/vs-sklearn.log"
fi
[ "${BENCH:-1}" = 1 ] || exit 0
echo "== the default recipe against the build of the commit before (.baseline/, carried)"
if [ -d "$REPO/.baseline" ]; then
  (cd "$REPO/.baseline" && CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-90a-real}" \
    python3 -m pip install --no-build-isolation --no-deps --target /tmp/oldsite . \
    > "$OUT/build-old.log" 2>&1) || tail -20 "$OUT/build-old.log"
  python3 "$REPO/benchmarks/compare_builds.py" --device cuda --mnist "$REPO/.data" \
    --old-path /tmp/oldsite --rounds 7 --epochs 4 --batch-sizes 64 1024 \
    --json "$OUT/compare.json" 2>&1 | tee "$OUT/compare.log"
fi
echo "== benchmark"
python3 "$REPO/benchmarks/bench_cuda.py" --mnist "$REPO/.data" --json "$OUT/bench.json" ${BENCH_ARGS:-} \
  2>&1 | tee "$OUT/bench.log"
