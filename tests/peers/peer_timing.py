"""Timing shared by the peer benchmark scripts: the same method as vmark's half
(host/benches/peers.rs): calibrate a batch to about 20 ms, run 11 batches, report the
median nanoseconds per call as one JSON line."""

import json
import time

BATCHES = 11
BATCH_NS = 20e6


def time_ns(f):
    t = time.perf_counter_ns()
    f()
    once = max(time.perf_counter_ns() - t, 1)
    iters = max(1, min(int(BATCH_NS / once), 5_000_000))
    batches = []
    for _ in range(BATCHES):
        t = time.perf_counter_ns()
        for _ in range(iters):
            f()
        batches.append((time.perf_counter_ns() - t) / iters)
    batches.sort()
    return batches[len(batches) // 2]


def once_ns(f, runs=5):
    """Median of `runs` single calls (for opening a dump)."""
    out = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        f()
        out.append(time.perf_counter_ns() - t)
    out.sort()
    return out[len(out) // 2]


def report(tool, op, ns, runs=BATCHES, note=None):
    row = {"tool": tool, "op": op, "ns": ns, "runs": runs}
    if note:
        row["note"] = note
    print(json.dumps(row), flush=True)
