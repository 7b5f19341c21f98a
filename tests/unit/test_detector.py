"""The spike detector: tables of shapes, the 2019 rule, and causality as a property."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maomao_cli.detect.detector import (
    Detection,
    DetectorParams,
    _resolution,
    detect,
    detect_latest,
    spike_positions,
    trailing_median,
)
from maomao_cli.detect.series import Point

NAN = float("nan")
INF = float("inf")


def series(values: list[float]) -> list[Point]:
    return [Point(f"2024-01-01T{i:05d}", v) for i, v in enumerate(values)]


def noisy(n: int, seed: int = 7, level: float = 100.0, sigma: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0, sigma) for _ in range(n)]


def found(values: list[float], params: DetectorParams = DetectorParams()) -> list[int]:
    return [d.index for d in detect(series(values), params)]


def with_changes(base: list[float], changes: dict[int, float]) -> list[float]:
    values = list(base)
    for index, value in changes.items():
        values[index] = value
    return values


def shifted(base: list[float], start: int, by: float) -> list[float]:
    return [v + by if i >= start else v for i, v in enumerate(base)]


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("single spike", with_changes(noisy(80), {40: 130.0}), [40]),
        ("single dip", with_changes(noisy(80), {40: 70.0}), [40]),
        ("spike then dip", with_changes(noisy(80), {30: 130.0, 60: 70.0}), [30, 60]),
        ("level shift up: once, at its first point", shifted(noisy(90), 50, 30.0), [50]),
        ("level shift down: once, at its first point", shifted(noisy(90), 50, -30.0), [50]),
        (
            "a spike after a level shift, once the baseline has caught up",
            with_changes(shifted(noisy(120), 40, 30.0), {100: 170.0}),
            [40, 100],
        ),
        (
            "two-point spike: flagged where it rises",
            with_changes(noisy(80), {40: 130, 41: 130}),
            [40],
        ),
        ("constant", [3.0] * 50, []),
        ("constant at zero", [0.0] * 50, []),
        ("constant, then a change", [3.0] * 30 + [4.0], [30]),
        ("noise only", noisy(300, seed=3), []),
        ("empty", [], []),
        ("single point", [5.0], []),
        ("two points", [5.0, 500.0], []),
        ("spike inside the minimum history", [100.0, 101.0, 99.0, 900.0, 100.0, 101.0], []),
    ],
)
def test_shapes(name: str, values: list[float], expected: list[int]) -> None:
    assert found(values) == expected, name


def test_a_spike_is_described() -> None:
    values = with_changes(noisy(80), {40: 140.0, 60: 60.0})
    spike, dip = detect(series(values))
    assert (spike.index, spike.sortable, spike.value, spike.direction) == (
        40,
        "2024-01-01T00040",
        140.0,
        "up",
    )
    assert spike.baseline == pytest.approx(100, abs=1.5)
    assert spike.deviation == pytest.approx(spike.value - spike.baseline)
    assert spike.deviation_pct == pytest.approx(100 * spike.deviation / spike.baseline)
    assert spike.score > 20  # 40 sigmas away, give or take the noise estimate
    assert dip.direction == "down" and dip.deviation < 0
    assert spike.to_dict() == {
        "index": 40,
        "sortable": "2024-01-01T00040",
        "value": 140.0,
        "baseline": spike.baseline,
        "deviation": spike.deviation,
        "deviation_pct": spike.deviation_pct,
        "score": spike.score,
        "direction": "up",
    }


def test_deviation_pct_is_none_over_a_zero_baseline() -> None:
    (spike,) = detect(series([0.0] * 20 + [5.0]))
    assert spike.baseline == 0.0 and spike.deviation_pct is None and spike.direction == "up"


def test_min_history_counts_points_before_the_verdict() -> None:
    values = [100.0, 100.5, 99.5, 100.2, 99.8, 500.0, *noisy(20)]
    assert found(values, DetectorParams(min_history=8)) == []
    assert found(values, DetectorParams(min_history=5)) == [5]


def test_quantised_history_does_not_flag_its_usual_values() -> None:
    rng = random.Random(5)
    values = [float(rng.choice([5, 5, 5, 5, 4, 6])) for _ in range(100)]
    assert found(values) == []
    assert found([*values, 30.0]) == [100]


def test_nan_and_inf_are_skipped_and_indices_stay_those_given() -> None:
    values = with_changes(noisy(60), {10: NAN, 20: INF, 30: -INF, 40: 150.0})
    assert found(values) == [40]
    assert detect_latest(series(values[:41])) is not None
    assert detect_latest(series([*values[:41], NAN])) is None
    assert list(spike_positions(np.array(values))) == [40]


def test_sensitivity_scales_the_threshold() -> None:
    values = noisy(200, seed=11)
    counts = [len(found(values, DetectorParams(sensitivity=s))) for s in (0.5, 1.0, 2.0, 4.0)]
    assert counts == sorted(counts)  # never fewer spikes at a higher sensitivity
    assert counts[0] == 0 and counts[-1] > 3
    bump = with_changes(values, {150: 100.0 + 3.5})  # ~3.5 sigmas: below 4.5, above 2.25
    assert 150 not in found(bump)
    assert 150 in found(bump, DetectorParams(sensitivity=2.0))


@pytest.mark.parametrize(
    ("values", "threshold", "sensitivity", "expected"),
    [
        ([10, 10, 13], 0.20, 1.0, [2]),  # +30 % over the mean of the two before
        ([10, 10, 11], 0.20, 1.0, []),
        ([10, 10, 12], 0.20, 1.0, []),  # exactly +20 %: not above
        ([10, 10, 11], 0.06, 1.0, [2]),
        ([10, 10, 11.5], 0.20, 2.0, [2]),  # sensitivity 2 halves the gain needed
        ([10, 10, 5], 0.06, 1.0, []),  # the 2019 rule only looked up
        ([0, 0, 5], 0.06, 1.0, []),  # no relative gain over a zero mean
        ([-10, -10, 5], 0.06, 1.0, []),  # nor over a negative one
        ([10, NAN, 10, 13], 0.20, 1.0, [3]),  # the two finite points before
        ([10, 10, 13, 10, 10, 13], 0.20, 1.0, [2, 5]),  # needs no more history than 2
    ],
)
def test_seed_rule(
    values: list[float], threshold: float, sensitivity: float, expected: list[int]
) -> None:
    params = DetectorParams(method="seed", seed_threshold=threshold, sensitivity=sensitivity)
    detections = detect(series([float(v) for v in values]), params)
    assert [d.index for d in detections] == expected
    assert all(d.direction == "up" and d.score > threshold / sensitivity for d in detections)


def test_seed_rule_describes_its_baseline() -> None:
    (d,) = detect(series([10.0, 14.0, 15.0]), DetectorParams(method="seed"))
    assert (d.baseline, d.deviation, d.score) == (12.0, 3.0, 0.25)
    assert d.deviation_pct == pytest.approx(25.0)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"method": "zscore"}, "method"),
        ({"sensitivity": 0}, "sensitivity"),
        ({"sensitivity": -1.0}, "sensitivity"),
        ({"sensitivity": math.inf}, "sensitivity"),
        ({"sensitivity": math.nan}, "sensitivity"),
        ({"window": 2}, "window"),
        ({"window": 30.5}, "window"),
        ({"window": 10_001}, "window"),
        ({"min_history": 2}, "min_history"),
        ({"min_history": True}, "min_history"),
        ({"seed_threshold": 0.0}, "seed_threshold"),
        ({"seed_threshold": "0.2"}, "seed_threshold"),
    ],
)
def test_params_are_validated(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=f"^{named} must") as caught:
        DetectorParams(**fields)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_params_threshold_follows_method_and_sensitivity() -> None:
    assert DetectorParams(sensitivity=2.0).threshold == pytest.approx(2.25)
    assert DetectorParams(method="seed", seed_threshold=0.06).threshold == pytest.approx(0.06)


@pytest.mark.parametrize("window", [2, 3, 4, 7, 30])
def test_resolution_is_the_smallest_nonzero_step_in_the_window(window: int) -> None:
    steps = np.array([0.0, 2.0, 0.0, 0.5, 3.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    expected = []
    for j in range(len(steps)):
        seen = [s for s in steps[max(0, j - window + 1) : j + 1] if s > 0]
        expected.append(min(seen) if seen else 0.0)
    assert list(_resolution(steps, window)) == expected


@pytest.mark.parametrize("window", [3, 4, 7, 30])
def test_trailing_median_matches_its_definition(window: int) -> None:
    values = np.array(noisy(60, seed=window))
    expected = [
        sorted(values[max(0, j - window + 1) : j + 1])[(min(j + 1, window)) // 2]
        for j in range(len(values))
    ]
    assert list(trailing_median(values, window)) == expected


def test_spike_positions_is_the_core_of_detect() -> None:
    values = with_changes(shifted(noisy(300, seed=2), 150, -20.0), {40: 90.0, 220: 120.0})
    assert list(spike_positions(np.array(values))) == found(values) == [40, 150, 220]


def test_detect_latest_reads_a_tail_but_counts_min_history_from_the_start() -> None:
    values = [*noisy(500, seed=4), 130.0]
    latest = detect_latest(series(values))
    assert isinstance(latest, Detection) and latest.index == 500
    assert latest == detect(series(values))[-1]
    # With NaNs up front, the newest point still lacks min_history finite points.
    sparse = [NAN] * 100 + [100.0, 100.2, 99.9, 130.0]
    assert detect_latest(series(sparse)) is None


values_strategy = st.lists(
    st.one_of(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        st.sampled_from([0.0, 100.0, 100.0, 101.0, 1000.0, -50.0, NAN, INF]),
    ),
    max_size=80,
)
params_strategy = st.builds(
    DetectorParams,
    method=st.sampled_from(["robust", "robust", "seed"]),
    sensitivity=st.sampled_from([0.5, 1.0, 3.0]),
    window=st.sampled_from([3, 4, 7, 30]),
    min_history=st.sampled_from([3, 8]),
)


@settings(max_examples=200, deadline=None)
@given(values_strategy, params_strategy)
def test_whole_series_equals_point_by_point(values: list[float], params: DetectorParams) -> None:
    points = series(values)
    whole = detect(points, params)
    fed = [detect_latest(points[: i + 1], params) for i in range(len(points))]
    assert whole == [d for d in fed if d is not None]


def test_young_series_rarely_raise_false_alarms() -> None:
    # A scale from a handful of points is noisy; the short-history penalty keeps young
    # pure-noise series quiet while a real fifth-run spike still stands out.
    rng = random.Random(5)
    params = DetectorParams(min_history=4)
    noisy_alarms = sum(
        bool(detect(series([100 + rng.gauss(0, 2) for _ in range(40)]), params)) for _ in range(400)
    )
    assert noisy_alarms <= 0.05 * 400
    fifth = series([100.0, 101.0, 99.0, 100.5, 1000.0])
    assert [d.index for d in detect(fifth, params)] == [4]
