"""The spike detector: tables of shapes, the 2019 rule for young series and as a method,
what is routine for a series, seasons, the explanation, and causality as a property."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maomao_cli.detect import judge, seasonal
from maomao_cli.detect.detector import (
    Detection,
    DetectorParams,
    Verdict,
    detect,
    detect_latest,
    explain,
    spike_positions,
)
from maomao_cli.detect.robust import resolution, trailing_median
from maomao_cli.detect.series import Point

NAN = float("nan")
INF = float("inf")


def series(values: list[float]) -> list[Point]:
    return [Point(f"2024-01-01T{i:05d}", v) for i, v in enumerate(values)]


def timed(values: list[float], every: timedelta = timedelta(minutes=5)) -> list[Point]:
    start = datetime(2024, 1, 1)
    return [Point((start + i * every).isoformat(sep=" "), v) for i, v in enumerate(values)]


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
        # Young points are judged by the 2019 rule, recovery included, as in 2019.
        ("spike inside the minimum history", [100.0, 101.0, 99.0, 900.0, 100.0, 101.0], [3, 4, 5]),
    ],
)
def test_shapes(name: str, values: list[float], expected: list[int]) -> None:
    assert found(values) == expected, name


def test_a_spike_is_described() -> None:
    values = with_changes(noisy(80), {40: 140.0, 60: 60.0})
    spike, dip = detect(series(values))
    assert (spike.index, spike.sortable, spike.value, spike.direction, spike.rule) == (
        40,
        "2024-01-01T00040",
        140.0,
        "up",
        "robust",
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
        "rule": "robust",
    }


def test_deviation_pct_is_none_over_a_zero_baseline() -> None:
    (spike,) = detect(series([0.0] * 20 + [5.0]))
    assert spike.baseline == 0.0 and spike.deviation_pct is None and spike.direction == "up"


# The 2019 demo tool writes three control files, 630, 600 and 900, "to trigger the spike
# detection"; a drop to 300 is as far the other way.
@pytest.mark.parametrize("method", ["robust", "seed"])
@pytest.mark.parametrize(
    ("values", "direction", "gain"),
    [([630.0, 600.0, 900.0], "up", 285 / 615), ([630.0, 600.0, 300.0], "down", 315 / 615)],
)
def test_the_2019_demo_is_found_with_defaults_and_with_seed(
    method: str, values: list[float], direction: str, gain: float
) -> None:
    params = DetectorParams(method=method)  # type: ignore[arg-type]
    (spike,) = detect(series(values), params)
    assert (spike.index, spike.value, spike.direction, spike.rule) == (
        2,
        values[2],
        direction,
        "seed",
    )
    assert spike.baseline == 615.0 and spike.score == pytest.approx(gain)
    assert detect_latest(series(values), params) == spike
    verdict = explain(series(values), params)
    assert (verdict.points, verdict.rule, verdict.spike) == (3, "seed", True)
    assert verdict.score == pytest.approx(gain) and verdict.threshold == pytest.approx(0.20)


def test_min_history_hands_over_from_the_2019_rule_to_the_robust_one() -> None:
    values = [100.0, 100.5, 99.5, 100.2, 99.8, 500.0, *noisy(20)]
    # The 2019 rule also flags the recovery after the spike, as it did in 2019.
    spike, *recovery = detect(series(values), DetectorParams(min_history=8))
    assert (spike.index, spike.rule) == (5, "seed")
    assert [(d.index, d.direction) for d in recovery] == [(6, "down"), (7, "down")]
    (spike,) = detect(series(values), DetectorParams(min_history=5))
    assert (spike.index, spike.rule) == (5, "robust")


def test_quantised_history_does_not_flag_its_usual_values() -> None:
    rng = random.Random(5)
    values = [float(rng.choice([5, 5, 5, 5, 4, 6])) for _ in range(100)]
    params = DetectorParams()
    assert [i for i in found(values) if i >= params.min_history] == []
    assert found([*values, 30.0])[-1] == 100


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
        ([10, 10, 8], 0.20, 1.0, []),  # exactly -20 %: not below
        ([10, 10, 7], 0.20, 1.0, [2]),  # -30 %: both directions, as 2019's differ.py
        ([10, 10, 11], 0.06, 1.0, [2]),
        ([10, 10, 11.5], 0.20, 2.0, [2]),  # sensitivity 2 halves the gain needed
        ([10, 10, 5], 0.06, 1.0, [2]),
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
    assert all(d.score > threshold / sensitivity and d.rule == "seed" for d in detections)


def test_seed_rule_describes_its_baseline() -> None:
    (d,) = detect(series([10.0, 14.0, 15.0]), DetectorParams(method="seed"))
    assert (d.baseline, d.deviation, d.score) == (12.0, 3.0, 0.25)
    assert d.deviation_pct == pytest.approx(25.0)
    (d,) = detect(series([10.0, 14.0, 9.0]), DetectorParams(method="seed"))
    assert (d.baseline, d.deviation, d.score, d.direction) == (12.0, -3.0, 0.25, "down")


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


# What is routine for a series ------------------------------------------------------------


def test_a_recurring_spike_becomes_routine_and_a_bigger_one_is_still_news() -> None:
    values = noisy(700, seed=21)
    every = range(50, 650, 50)
    for index in every:
        values[index] = 150.0
    values[680] = 200.0
    spikes = found(values)
    # The first ROUTINE_COUNT occasions are news; after them the same height is routine.
    assert spikes[: judge.ROUTINE_COUNT] == list(every)[: judge.ROUTINE_COUNT]
    assert spikes[judge.ROUTINE_COUNT :] == [680]
    routine = explain(series(values[:601]))
    assert (routine.rule, routine.spike) == ("robust", False)
    assert routine.reason.startswith("routine")


def test_occasions_not_points_make_a_deviation_routine() -> None:
    # A stretch of consecutive points out there (a level shift the median has not caught
    # up with) counts once; separate excursions count one each.
    deviation = np.zeros(300)
    deviation[100:160] = 10.0
    member = np.ones(300, dtype=bool)
    deviation[299] = 10.0
    assert not judge._routine(deviation, member, 299)
    for k in range(judge.ROUTINE_COUNT - 1):
        deviation[200 + 10 * k] = 9.0  # 90 %: as far, near enough
    assert judge._routine(deviation, member, 299)
    member[100:160] = False  # inside an event: not history
    assert not judge._routine(deviation, member, 299)
    deviation[299] = 11.0  # 9 is beyond 80 % of 11 (8.8): still routine
    assert judge._routine(deviation, np.ones(300, dtype=bool), 299)
    deviation[299] = 12.0  # not beyond 80 % of 12 (9.6): news
    assert not judge._routine(deviation, np.ones(300, dtype=bool), 299)


def test_a_jumpy_series_soon_stops_crying_wolf() -> None:
    rng = random.Random(8)
    # Every fifth point jumps by about 20 sigmas, either way: that is what this series does.
    values = [
        100 + rng.gauss(0, 1) + (20 * rng.choice([-1, 1]) if i % 5 == 0 else 0) for i in range(400)
    ]
    early = [i for i in found(values) if i < 100]
    assert len(early) <= 2 * judge.ROUTINE_COUNT + 2  # news until it is routine
    assert [i for i in found(values) if i >= 100] == []
    assert 352 in found(with_changes(values, {352: 160.0}))  # 60 sigmas is still news


def test_an_event_is_notified_once_and_explained() -> None:
    values = shifted(noisy(90), 50, 30.0)
    assert found(values) == [50]
    verdict = explain(series(values[:53]))
    assert (verdict.spike, verdict.reason) == (False, judge.REASONS["event"])


# Explanations -----------------------------------------------------------------------------


def test_explain_says_why_nothing_was_found() -> None:
    assert explain([]) == Verdict(
        0, "none", None, None, False, "the newest value is not a finite number"
    )
    few = explain(series([5.0, 6.0]))
    assert (few.points, few.rule, few.spike) == (2, "none", False)
    assert "fewer than 3" in few.reason
    young = explain(series([630.0, 600.0, 610.0]))
    assert (young.rule, young.spike) == ("seed", False)
    assert young.threshold == pytest.approx(0.2)
    assert young.score == pytest.approx(5 / 615) and "robust rule starts after 8" in young.reason
    quiet = explain(series(noisy(100)))
    assert (quiet.points, quiet.rule, quiet.spike) == (100, "robust", False)
    assert quiet.score is not None and quiet.threshold is not None
    assert quiet.score < quiet.threshold == pytest.approx(judge.BASE_THRESHOLD)
    assert quiet.reason == judge.REASONS["below"]
    spike = explain(series([*noisy(100), 150.0]))
    assert (spike.spike, spike.reason) == (True, judge.REASONS["spike"])
    assert spike.score is not None and spike.score > spike.threshold  # type: ignore[operator]
    assert explain(series([*noisy(100), NAN])).rule == "none"
    assert spike.to_dict()["rule"] == "robust"


def test_explain_agrees_with_detect_latest() -> None:
    values = with_changes(shifted(noisy(200, seed=9), 100, 20.0), {60: 90.0, 150: 140.0})
    points = series(values)
    for end in range(1, len(points) + 1):
        assert explain(points[:end]).spike == (detect_latest(points[:end]) is not None)


def test_a_gradual_rise_is_explained_and_reported_once_far_enough() -> None:
    values = [*noisy(60), 103.0, 106.0, 109.0, 112.0, 115.0, 118.0]
    verdicts = [explain(series(values[:end])) for end in range(61, 67)]
    gradual = [v for v in verdicts if v.reason == judge.REASONS["gradual"]]
    assert gradual and not any(v.spike for v in gradual)
    # Once twice the threshold away it is a spike all the same, and the rest its event.
    (far,) = detect(series(values))
    assert far.score >= 2 * judge.BASE_THRESHOLD and far.index < len(values) - 1


# Seasons ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "period"),
    [
        (timedelta(minutes=5), 288),
        (timedelta(hours=1), 24),
        (timedelta(minutes=30), 48),
        (timedelta(days=1), 7),
        (timedelta(minutes=7), None),  # a day is not a whole number of samples
        (timedelta(days=10), None),
    ],
)
def test_the_period_comes_from_the_cadence(every: timedelta, period: int | None) -> None:
    points = timed([1.0] * 100, every)
    assert seasonal.period_from_timestamps([p.sortable for p in points]) == period


def test_no_period_without_timestamps_or_enough_of_them() -> None:
    assert seasonal.period_from_timestamps([p.sortable for p in series([1.0] * 100)]) is None
    assert seasonal.period_from_timestamps([p.sortable for p in timed([1.0] * 10)]) is None


def square_days(days: int, per_day: int, seed: int = 1) -> list[float]:
    """A daily square wave with a little noise: low at night, high by day."""
    rng = random.Random(seed)
    return [
        (80.0 if per_day // 3 <= i % per_day < 2 * per_day // 3 else 20.0) + rng.gauss(0, 0.5)
        for i in range(days * per_day)
    ]


def test_daily_edges_are_expected_and_a_missing_rise_is_not() -> None:
    per_day = 24  # hourly
    values = square_days(12, per_day)
    points = timed(values, timedelta(hours=1))
    # Before the seasonal channel starts every edge is news; after it none is.
    start = seasonal.first_seasonal(per_day)
    assert [d for d in detect(points) if d.index >= start] == []
    # Day 10 stays low: the local median sees nothing, the seasonal forecast does.
    day = 10 * per_day
    flat = [20.0 if day <= i < day + per_day else v for i, v in enumerate(values)]
    late = [d for d in detect(timed(flat, timedelta(hours=1))) if d.index >= start]
    assert late and late[0].rule == "seasonal" and late[0].direction == "down"
    assert day + per_day // 3 <= late[0].index <= day + per_day // 3 + 1
    # Without timestamps the same values have no seasons: the edges are flagged.
    assert [i for i in found(values) if i >= start]


def test_seasonal_detection_is_causal() -> None:
    per_day = 8  # every three hours
    values = square_days(14, per_day, seed=3)
    values[100] += 30.0
    points = timed(values, timedelta(hours=3))
    whole = detect(points)
    fed = [detect_latest(points[: i + 1]) for i in range(len(points))]
    assert whole == [d for d in fed if d is not None]
    assert any(d.index == 100 for d in whole)
    period = seasonal.period_from_timestamps([p.sortable for p in points])
    assert list(spike_positions(np.array(values), period=period)) == [d.index for d in whole]


# Building blocks --------------------------------------------------------------------------


@pytest.mark.parametrize("window", [2, 3, 4, 7, 30])
def test_resolution_is_the_smallest_nonzero_step_in_the_window(window: int) -> None:
    steps = np.array([0.0, 2.0, 0.0, 0.5, 3.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    expected = []
    for j in range(len(steps)):
        seen = [s for s in steps[max(0, j - window + 1) : j + 1] if s > 0]
        expected.append(min(seen) if seen else 0.0)
    assert list(resolution(steps, window)) == expected


@pytest.mark.parametrize("window", [3, 4, 7, 30])
def test_trailing_median_matches_its_definition(window: int) -> None:
    values = np.array(noisy(60, seed=window))
    expected = [
        sorted(values[max(0, j - window + 1) : j + 1])[(min(j + 1, window)) // 2]
        for j in range(len(values))
    ]
    assert list(trailing_median(values, window)) == expected


def test_seasonal_residual_skips_missing_lags() -> None:
    values = np.array([1.0, 2.0, 3.0, NAN, 5.0, 6.0, 10.0, 20.0])
    residual = seasonal.seasonal_residual(values, 2)
    assert np.isnan(residual[:6]).all()
    assert residual[6] == 10.0 - 3.0  # the median of 5, 1 and 3: lags 2, 4, 6
    assert residual[7] == 20.0 - 4.0  # the median of 6 and 2 (lag 4 is missing)


def test_spike_positions_is_the_core_of_detect() -> None:
    values = with_changes(shifted(noisy(300, seed=2), 150, -20.0), {40: 90.0, 220: 120.0})
    assert list(spike_positions(np.array(values))) == found(values) == [40, 150, 220]


def test_detect_latest_counts_min_history_from_the_start() -> None:
    values = [*noisy(500, seed=4), 130.0]
    latest = detect_latest(series(values))
    assert isinstance(latest, Detection) and latest.index == 500
    assert latest == detect(series(values))[-1]
    # With NaNs up front, the newest point has 4 finite points: the 2019 rule judges it.
    sparse = [NAN] * 100 + [100.0, 100.2, 99.9, 130.0]
    young = detect_latest(series(sparse))
    assert young is not None and young.rule == "seed"
    assert explain(series(sparse)).points == 4


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
    if points:
        assert explain(points, params).spike == (bool(whole) and whole[-1].index == len(points) - 1)


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 2.22507386e-309, 1.0],  # a mean near 0: an infinite gain (found by Hypothesis)
        [1e308, 1e308, 1.0],  # the mean overflows: no gain
        [1e308, 1e308, 1e308, -1e308, 5e-324, 1.0],
    ],
)
@pytest.mark.parametrize("method", ["robust", "seed"])
def test_extreme_values_are_judged_alike_whole_and_point_by_point(
    values: list[float], method: str
) -> None:
    params = DetectorParams(method=method)  # type: ignore[arg-type]
    points = series(values)
    whole = detect(points, params)  # warnings are errors: no overflow may escape
    fed = [detect_latest(points[: i + 1], params) for i in range(len(points))]
    assert whole == [d for d in fed if d is not None]
    assert explain(points, params).spike == (bool(whole) and whole[-1].index == len(points) - 1)


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
