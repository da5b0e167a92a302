#!/usr/bin/env bash
# Runs the three fuzzers for SECONDS each (default 30): the C IDX reader
# under libFuzzer with ASan+UBSan (needs clang with its fuzzer runtime:
# Debian's clang-14 and libclang-rt-14-dev), and the Python IDX reader and
# model loader under atheris (pip install atheris), the package installed.
# The committed seed corpora are copied, not grown; any finding fails the
# run and leaves its input in the work folder printed at the start.
set -euo pipefail
SECONDS_EACH=${1:-30}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/mlp-fuzz.XXXXXX)
echo "fuzz: work folder $WORK, $SECONDS_EACH s per fuzzer"
CLANG=${CLANG:-$(command -v clang-14 || command -v clang)}
cp -r "$HERE/corpus" "$WORK/corpus"

"$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$HERE/../csrc" "$HERE/idx_fuzz.c" "$HERE/../csrc/idx.c" -o "$WORK/idx_fuzz"
run() { # name, command...: prints how many inputs ran
  local name=$1; shift
  (cd "$WORK" && "$@" > "$WORK/$name.log" 2>&1) || { tail -40 "$WORK/$name.log"; exit 1; }
  echo "fuzz: $name: $(grep -Eo '#[0-9]+' "$WORK/$name.log" | tail -1 | tr -d '#') inputs, no finding"
}
run idx-c "$WORK/idx_fuzz" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 "$WORK/corpus/idx"
run idx-python python3 "$HERE/fuzz_idx.py" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
  "$WORK/corpus/idx"
run load-python python3 "$HERE/fuzz_load.py" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
  "$WORK/corpus/model"
