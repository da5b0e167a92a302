#!/usr/bin/env bash
# A busy-loop on one CPU for 0.15 s of every second, for SECONDS seconds
# (default 12): the bursts of someone else's work that the C core's
# thread-count rounds (csrc/model.c, pick_threads) must not be fooled by.
#   benchmarks/cpu_hog.sh 12 & python benchmarks/epoch_pinned.py --threads 0; wait
set -u
end=$((SECONDS + ${1:-12}))
while [ "$SECONDS" -lt "$end" ]; do
  timeout 0.15 sh -c 'while :; do :; done'
  sleep 0.85
done
