"""One timing method for every runtime: warm-up, then rounds that interleave the variants.

Interleaving matters on a shared machine: a burst of load from another process hits every variant of a round
alike instead of one variant's whole sequence, so ratios within one run stay honest.
"""

from __future__ import annotations

import math
import time
from typing import Callable


def summarize(samples_s: list[float]) -> dict[str, float]:
    """mean, std, min and nearest-rank p50/p90/p99 of a list of seconds, in milliseconds."""
    if not samples_s:
        raise ValueError("no samples to summarize")
    xs = sorted(s * 1000.0 for s in samples_s)
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0

    def pct(p: float) -> float:
        return xs[min(n - 1, max(0, math.ceil(p / 100.0 * n) - 1))]

    return {"mean_ms": mean, "std_ms": std, "min_ms": xs[0], "p50_ms": pct(50), "p90_ms": pct(90),
            "p99_ms": pct(99), "runs": n}


def interleaved(runners: dict[str, Callable[[], object]], *, warmup: int = 3, rounds: int = 15,
                min_time_s: float = 0.0, clock: Callable[[], float] = time.perf_counter,
                on_round: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Time every runner once per round, in rotating order, after ``warmup`` untimed calls each.

    Runs at least ``rounds`` rounds and keeps going until ``min_time_s`` seconds of rounds have passed.
    """
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    start = clock()
    r = 0
    while r < rounds or clock() - start < min_time_s:
        order = names[r % len(names):] + names[: r % len(names)]  # rotate so no variant always runs first
        for name in order:
            t0 = clock()
            runners[name]()
            samples[name].append(clock() - t0)
        r += 1
        if on_round:
            on_round(r)
    return samples


def paired_ratio(a: list[float], b: list[float]) -> dict:
    """Round-by-round ratios a/b of two interleaved variants (the same round shares the machine's load): median,
    10th and 90th percentile, and a verdict: "a faster" / "b faster" only when the whole 10-90% range of the ratio is
    on one side of 1, else "tie" (the difference is within the run's spread)."""
    if len(a) != len(b) or not a:
        raise ValueError("paired_ratio needs the same number of rounds for both variants")
    rs = sorted(x / y for x, y in zip(a, b))
    n = len(rs)

    def pct(p: float) -> float:
        return rs[min(n - 1, max(0, math.ceil(p / 100.0 * n) - 1))]

    lo, mid, hi = pct(10), pct(50), pct(90)
    verdict = "a faster" if hi < 1.0 else "b faster" if lo > 1.0 else "tie"
    return {"median": mid, "p10": lo, "p90": hi, "verdict": verdict}
