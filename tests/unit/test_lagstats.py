"""The worker's firing-lag histogram: fixed memory, quantiles within one bucket (9 %)."""

from __future__ import annotations

import math

import pytest

from maomao_cli.services.worker.lagstats import BUCKETS, FIRST, LagStats, bucket, upper


@pytest.mark.parametrize(
    ("lag", "index"),
    [
        (-0.5, 0),  # an early claim
        (0.0, 0),
        (FIRST, 0),
        (FIRST * 1.01, 1),
        (FIRST * 2, 8),  # one doubling is eight buckets
        (FIRST * 2 * 1.001, 9),
        (1.0, math.ceil(math.log2(1.0 / FIRST) * 8)),
        (1e9, BUCKETS - 1),  # beyond the last edge: the last bucket
        (math.nan, 0),
    ],
)
def test_bucket_of_a_lag(lag: float, index: int) -> None:
    assert bucket(lag) == index


def test_each_lag_lies_in_its_bucket() -> None:
    for lag in (0.00011, 0.0007, 0.003, 0.05, 0.4, 2.5, 90.0, 3000.0):
        index = bucket(lag)
        assert upper(index - 1) < lag <= upper(index)
        assert upper(index) / upper(index - 1) == pytest.approx(2 ** (1 / 8))


def test_quantiles_are_within_one_bucket_of_the_true_ones() -> None:
    stats = LagStats()
    lags = [0.001 * (i + 1) for i in range(1000)]  # 1 ms .. 1 s
    for lag in lags:
        stats.record(lag)
    for q, true in ((0.5, 0.5), (0.99, 0.99), (1.0, 1.0)):
        assert true <= stats.quantile(q) <= true * 2 ** (1 / 8)
    assert stats.max == 1.0 and stats.quantile(1.0) == 1.0, "never above the maximum"
    assert stats.count == 1000 and stats.mean == pytest.approx(0.5005)


def test_memory_does_not_grow_with_the_runs() -> None:
    stats = LagStats()
    for i in range(100_000):
        stats.record((i % 977) * 0.003)
    assert len(stats.counts) == BUCKETS and stats.count == 100_000


def test_a_window_is_the_difference_of_two_snapshots() -> None:
    stats = LagStats()
    for _ in range(10):
        stats.record(5.0)  # before the window: slow
    before = stats.snapshot()
    for _ in range(100):
        stats.record(0.002)
    window = stats.since(before)
    assert window.count == 100 and window.mean == pytest.approx(0.002)
    assert 0.002 <= window.quantile(0.99) <= 0.002 * 2 ** (1 / 8)
    assert 0.002 <= window.max <= 0.002 * 2 ** (1 / 8), "the slow lags before are not in it"


def test_nothing_recorded_has_no_quantile() -> None:
    stats = LagStats()
    assert math.isnan(stats.quantile(0.5)) and math.isnan(stats.mean)
    assert stats.since(stats.snapshot()).count == 0
