"""The detector: tables of shapes, the 2019 rule, and causality as a property."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maomao_cli.detect.detector import DetectorParams, detect, detect_latest
from maomao_cli.detect.series import Point


def series(values: list[float]) -> list[Point]:
    return [Point(f"{i:06d}", v) for i, v in enumerate(values)]


def noisy(n: int, seed: int = 7, level: float = 100.0, sigma: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0, sigma) for _ in range(n)]


def test_single_spike_and_dip_found_with_direction() -> None:
    values = noisy(80)
    values[40], values[60] = 140.0, 60.0
    found = detect(series(values))
    assert [(d.index, d.direction) for d in found] == [(40, "up"), (60, "down")]
    spike = found[0]
    assert spike.baseline == pytest.approx(100, abs=2)
    assert spike.deviation_pct == pytest.approx(40, abs=3)
    assert spike.score > 5


def test_level_shift_is_flagged_once_at_its_start() -> None:
    values = noisy(80)
    for i in range(50, 80):
        values[i] += 30
    assert [d.index for d in detect(series(values))] == [50]


@pytest.mark.parametrize(
    "values",
    [
        [],
        [5.0],
        [5.0, 6.0],
        [3.0] * 50,  # constant: nothing deviates
        noisy(200, seed=3),  # noise only
    ],
)
def test_nothing_to_flag(values: list[float]) -> None:
    assert detect(series(values)) == []


def test_no_verdict_before_minimum_history() -> None:
    values = [100.0, 100.5, 99.5, 500.0, *noisy(20)]
    assert detect(series(values), DetectorParams(min_history=8)) == []


def test_nan_and_inf_are_skipped() -> None:
    values = noisy(60)
    values[10] = float("nan")
    values[20] = float("inf")
    values[40] = 150.0
    assert [d.index for d in detect(series(values))] == [40]


def test_sensitivity_moves_the_threshold() -> None:
    values = noisy(120, seed=11)
    values[80] = 106.0  # a ~6 sigma bump
    assert [d.index for d in detect(series(values), DetectorParams(sensitivity=1.0))] == [80]
    assert detect(series(values), DetectorParams(sensitivity=0.5)) == []
    assert len(detect(series(values), DetectorParams(sensitivity=3.0))) >= 1


@pytest.mark.parametrize(
    ("values", "threshold", "expected"),
    [
        ([10, 10, 13], 0.20, [2]),  # +30 % over the mean of the two before
        ([10, 10, 11], 0.20, []),
        ([10, 10, 11], 0.06, [2]),
        ([10, 10, 5], 0.06, []),  # the 2019 rule only looked up
    ],
)
def test_seed_rule(values: list[float], threshold: float, expected: list[int]) -> None:
    found = detect(
        series([float(v) for v in values]), DetectorParams(method="seed", seed_threshold=threshold)
    )
    assert [d.index for d in found] == expected


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="sensitivity"):
        DetectorParams(sensitivity=0)
    with pytest.raises(ValueError, match="window"):
        DetectorParams(window=1)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
            st.sampled_from([100.0, 100.0, 101.0, 1000.0, -50.0, float("nan")]),
        ),
        max_size=90,
    )
)
def test_causal_whole_series_equals_point_by_point(values: list[float]) -> None:
    points = series(values)
    whole = [d.index for d in detect(points)]
    fed = [i for i in range(len(points)) if detect_latest(points[: i + 1]) is not None]
    assert whole == fed
