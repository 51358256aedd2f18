#!/usr/bin/env python3
"""Helpers for bench/run.sh: generate inputs, read orbatch output files, build BENCHMARKS.md.

  analyze.py gen N PATH                 write N prompt rows (ids r0..r{N-1}) as JSONL
  analyze.py span OUT                   JSON: records, ok, achieved req/s from the records' timestamps
  analyze.py rate OUT                   JSON: send times (finished_at - latency_ms), achieved rate
                                        and the peak number of sends in any 1 s window
"""
import json
import sys
from datetime import datetime


def ms(ts):
    # "2026-11-25T17:00:00.123Z" -> epoch milliseconds
    return int(round(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000))


def records(path):
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def gen(n, path):
    with open(path, "w") as f:
        for i in range(n):
            f.write('{"id":"r%d","prompt":"Say something short about item %d."}\n' % (i, i))


def span(path):
    n = ok = 0
    first = last = None
    latency = 0
    for r in records(path):
        n += 1
        ok += r["status"] == "ok"
        s, e = ms(r["started_at"]), ms(r["finished_at"])
        first = s if first is None else min(first, s)
        last = e if last is None else max(last, e)
        latency += r["latency_ms"] or 0
    secs = max(last - first, 1) / 1000.0
    # latency_ms is whole milliseconds, cut down: add half a millisecond to its mean.
    mean_latency_ms = latency / max(n, 1) + 0.5
    print(json.dumps({"records": n, "ok": ok, "span_s": secs, "rps": n / secs,
                      "mean_latency_ms": mean_latency_ms}))


def peak_window(times, width):
    """Most events in any half-open window [t, t + width) (times sorted)."""
    best = j = 0
    for i in range(len(times)):
        while j < len(times) and times[j] < times[i] + width:
            j += 1
        best = max(best, j - i)
    return best


def rate(path):
    # The moment each request's (only) attempt was sent: its end minus its duration. This is
    # after the rate limiter let it go, which is what --rps governs; `started_at` is not (it is
    # when the request entered the pool and began waiting for the limiter).
    times, attempts = [], 0
    for r in records(path):
        attempts += r["attempts"]
        times.append(ms(r["finished_at"]) - (r["latency_ms"] or 0))
    times.sort()
    n = len(times)
    secs = (times[-1] - times[0]) / 1000.0
    print(json.dumps({
        "records": n,
        "attempts": attempts,
        "span_s": secs,
        # n sends span n-1 intervals
        "rps": (n - 1) / secs if secs > 0 else 0.0,
        "peak_1s": peak_window(times, 1000),
    }))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(int(sys.argv[2]), sys.argv[3])
    elif cmd == "span":
        span(sys.argv[2])
    elif cmd == "rate":
        rate(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
