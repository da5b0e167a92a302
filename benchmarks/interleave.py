"""What the interleaved benchmarks share: timing a call, rounds of calls
in alternating order, the median of each contender's rounds, the ratio of
the second to the first, one printed line."""

from __future__ import annotations

import statistics
import time


def timed(fn):
    """Seconds that fn() took."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rounds(fns, n, pause=0.0):
    """fns: {name: callable}. One warm-up call of each, then n rounds of one
    call each, the order reversed every other round, `pause` seconds before
    each call (a library's idle threads keep spinning for a while after its
    work); returns {name: [seconds per round]}."""
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for r in range(n):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            time.sleep(pause)
            times[name].append(timed(fns[name]))
    return times


def summarize(batch, times, extra=""):
    """times: {name: [seconds per round]} for two contenders, the baseline
    first; returns the row (medians, ratio, every round) and prints it."""
    (a, ta), (b, tb) = times.items()
    ma, mb = statistics.median(ta), statistics.median(tb)
    rounds = ", ".join(f"{name} {[round(t * 1e3, 2) for t in ts]}" for name, ts in times.items())
    print(f"batch {batch:5d}: {a} {ma * 1e3:9.2f} ms  {b} {mb * 1e3:9.2f} ms  "
          f"{b}/{a} {mb / ma:5.3f}  ({extra}rounds: {rounds})", flush=True)
    return {"batch": batch, a: ma, b: mb, "ratio": mb / ma, "times": times}
