"""What the interleaved benchmarks share: the median of each contender's
rounds, the ratio of the second to the first, one printed line."""

from __future__ import annotations

import statistics


def summarize(batch, times, extra=""):
    """times: {name: [seconds per round]} for two contenders, the baseline
    first; returns the row (medians, ratio, every round) and prints it."""
    (a, ta), (b, tb) = times.items()
    ma, mb = statistics.median(ta), statistics.median(tb)
    rounds = ", ".join(f"{name} {[round(t * 1e3, 2) for t in ts]}" for name, ts in times.items())
    print(f"batch {batch:5d}: {a} {ma * 1e3:9.2f} ms  {b} {mb * 1e3:9.2f} ms  "
          f"{b}/{a} {mb / ma:5.3f}  ({extra}rounds: {rounds})", flush=True)
    return {"batch": batch, a: ma, b: mb, "ratio": mb / ma, "times": times}
