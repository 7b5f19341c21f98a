"""Firing lag (claim start minus due time) in fixed memory: a log-spaced histogram.

A worker runs for months; a list of every lag would grow by one float per run forever.
The histogram keeps a count per bucket instead, each bucket 2**(1/8) (about 9 %) wider
than the one before, from 0.1 ms to about two hours, so a quantile is known to within
9 % whatever the number of runs. Two histograms subtract, so a bench reads the lags of
its own window (`since`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

FIRST = 1e-4  # seconds: every lag up to 0.1 ms (an early claim too) shares bucket 0
STEPS_PER_DOUBLING = 8
BUCKETS = STEPS_PER_DOUBLING * 26 + 1  # the last ends at 0.1 ms * 2**26, about 6,700 s


def bucket(lag: float) -> int:
    """The bucket holding `lag`: bucket i holds (upper(i - 1), upper(i)]."""
    if not lag > FIRST:  # also NaN
        return 0
    index = math.ceil(math.log2(lag / FIRST) * STEPS_PER_DOUBLING - 1e-9)
    return min(index, BUCKETS - 1)


def upper(index: int) -> float:
    return FIRST * 2 ** (index / STEPS_PER_DOUBLING)


@dataclass
class LagStats:
    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    count: int = 0
    total: float = 0.0
    max: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, lag: float) -> None:
        with self._lock:
            self.counts[bucket(lag)] += 1
            self.count += 1
            self.total += lag
            self.max = max(self.max, lag)

    def snapshot(self) -> LagStats:
        with self._lock:
            return LagStats(list(self.counts), self.count, self.total, self.max)

    def since(self, earlier: LagStats) -> LagStats:
        """The lags recorded after `earlier` (a snapshot of this one) was taken; its max
        is the upper edge of its highest bucket, no more than the maximum ever seen."""
        now = self.snapshot()
        counts = [a - b for a, b in zip(now.counts, earlier.counts, strict=True)]
        highest = max((i for i, n in enumerate(counts) if n), default=None)
        window_max = 0.0 if highest is None else min(upper(highest), now.max)
        return LagStats(counts, now.count - earlier.count, now.total - earlier.total, window_max)

    def quantile(self, q: float) -> float:
        """The lag that a fraction q of the lags do not exceed: the upper edge of its
        bucket (at most 9 % above the true value), no more than the maximum; NaN when
        nothing was recorded."""
        with self._lock:
            if self.count == 0:
                return math.nan
            rank = max(1, math.ceil(q * self.count))
            seen = 0
            for index, n in enumerate(self.counts):
                seen += n
                if seen >= rank:
                    return min(upper(index), self.max)
            return self.max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan
