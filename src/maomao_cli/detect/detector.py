"""The spike detector: causal, robust, both directions, and able to say why.

Method "robust" (the default) judges each finite point x_i of a series:

- while fewer than `min_history` finite points precede it, by the 2019 rule (below): a
  young series is still checked, and the detection says `rule="seed"`;
- then by its robust score against the history (robust.py: a rolling median baseline,
  a noise scale from the median step), and against what is routine for this series
  (judge.py), one notification per event; `rule="robust"`;
- where the timestamps show a daily (or, for daily data, weekly) cadence and the series
  follows it, by the same method on its seasonal residual (seasonal.py);
  `rule="seasonal"`.

Method "seed": the 2019 rule for every point. Flag x_i when its relative gain over the
mean m of the two finite points before it, (x_i - m) / m, is above seed_threshold /
sensitivity or below minus that (m > 0; the rule is undefined otherwise): both
directions, as 2019's differ.py (`gain > 20 or gain < -20`).

Every verdict reads the point and the points before it only, so `detect` over a series
returns exactly the points for which `detect_latest` on each prefix says "spike".
`explain` tells, for the newest point, which rule checked it with what score against
what threshold, and why it is or is not a spike.

numpy and scipy are imported when something is detected, not when this module is: the
CLI validates DetectorParams without paying for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal

from ..frozen import frozen
from .judge import BASE_THRESHOLD
from .series import Point

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from .judge import Judged
    from .robust import Scores

    FloatArray = NDArray[np.float64]
    IndexArray = NDArray[np.intp]
    BoolArray = NDArray[np.bool_]

Rule = Literal["seed", "robust", "seasonal"]
MAX_WINDOW = 10_000


@frozen
class DetectorParams:
    """How to detect. `sensitivity` divides the threshold of either rule: for "robust"
    the |z| a spike needs (BASE_THRESHOLD / sensitivity), for "seed" the relative gain
    (seed_threshold / sensitivity). Higher sensitivity, more spikes. Below `min_history`
    finite points the robust method uses the seed rule."""

    method: Literal["robust", "seed"] = "robust"
    sensitivity: float = 1.0
    window: int = 30
    min_history: int = 8
    seed_threshold: float = 0.20

    def __post_init__(self) -> None:
        if self.method not in ("robust", "seed"):
            raise ValueError(f"method must be 'robust' or 'seed', got {self.method!r}")
        if not _is_number(self.sensitivity) or not self.sensitivity > 0:
            raise ValueError(
                f"sensitivity must be a finite number above 0, got {self.sensitivity!r}"
            )
        if not _is_int(self.window) or not 3 <= self.window <= MAX_WINDOW:
            raise ValueError(
                f"window must be a whole number from 3 to {MAX_WINDOW}, got {self.window!r}"
            )
        if not _is_int(self.min_history) or not 3 <= self.min_history <= MAX_WINDOW:
            raise ValueError(
                f"min_history must be a whole number from 3 to {MAX_WINDOW}, "
                f"got {self.min_history!r}"
            )
        if not _is_number(self.seed_threshold) or not self.seed_threshold > 0:
            raise ValueError(
                f"seed_threshold must be a finite number above 0, got {self.seed_threshold!r}"
            )

    @property
    def threshold(self) -> float:
        """The score a spike needs under the method's main rule: |z| for robust (before
        the series' jumpiness raises it), the relative gain for seed."""
        return (BASE_THRESHOLD if self.method == "robust" else self.seed_threshold) / (
            self.sensitivity
        )

    @property
    def seed_gain(self) -> float:
        """The relative gain the 2019 rule needs, either way."""
        return self.seed_threshold / self.sensitivity


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@frozen
class Detection:
    index: int  # position in the points given to detect (non-finite points included)
    sortable: str
    value: float
    baseline: float  # the value expected: robust median, seasonal forecast, or 2019 mean
    deviation: float  # value - baseline
    deviation_pct: float | None  # 100 x deviation / |baseline|; None when baseline is 0
    score: float  # robust, seasonal: |z|; seed: |relative gain|
    direction: Literal["up", "down"]
    rule: Rule = "robust"  # which rule found it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@frozen
class Verdict:
    """Why the newest point is or is not a spike."""

    points: int  # finite points in the series, the newest included
    rule: Rule | Literal["none"]  # the rule that checked the newest point
    score: float | None  # its score under that rule (None when nothing could judge it)
    threshold: float | None  # what the score had to reach
    spike: bool
    reason: str  # one line

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@frozen
class _Found:
    positions: list[int]  # indices into the values given
    baselines: list[float]
    scores: list[float]
    rules: list[Rule]


def detect(points: Sequence[Point], params: DetectorParams = DetectorParams()) -> list[Detection]:
    """Every spike of the series, in order. Causal: equals detect_latest on each prefix."""
    found, _ = _analyse(_values(points), params, _period(points, params))
    return [
        _detection(points, i, baseline, score, rule)
        for i, baseline, score, rule in zip(
            found.positions, found.baselines, found.scores, found.rules, strict=True
        )
    ]


def detect_latest(
    points: Sequence[Point], params: DetectorParams = DetectorParams()
) -> Detection | None:
    """Is the newest point a spike? Its verdict depends on the history's own events, so
    the whole series is read (one control file per run: small)."""
    if len(points) < 3 or not math.isfinite(points[-1].value):
        return None
    found, _ = _analyse(_values(points), params, _period(points, params))
    if not found.positions or found.positions[-1] != len(points) - 1:
        return None
    return _detection(
        points, len(points) - 1, found.baselines[-1], found.scores[-1], found.rules[-1]
    )


def explain(points: Sequence[Point], params: DetectorParams = DetectorParams()) -> Verdict:
    """How many points, which rule checked the newest one, its score and threshold, and
    why it is or is not a spike."""
    return _analyse(_values(points), params, _period(points, params))[1]


def spike_positions(
    values: FloatArray, params: DetectorParams = DetectorParams(), period: int | None = None
) -> IndexArray:
    """The positions of the spikes in an array of values (non-finite ones skipped).

    The core of `detect`, for callers that hold a numpy array already; `period` (in
    points) turns the seasonal channel on, which `detect` reads from the timestamps.
    """
    import numpy as np

    found, _ = _analyse(np.asarray(values, dtype=np.float64), params, period)
    return np.asarray(found.positions, dtype=np.intp)


def _values(points: Sequence[Point]) -> FloatArray:
    import numpy as np

    return np.fromiter(map(attrgetter("value"), points), dtype=np.float64, count=len(points))


def _period(points: Sequence[Point], params: DetectorParams) -> int | None:
    from .seasonal import CADENCE_SAMPLE, period_from_timestamps

    if params.method != "robust" or len(points) <= CADENCE_SAMPLE:
        return None
    return period_from_timestamps([p.sortable for p in points[:CADENCE_SAMPLE]])


def _detection(
    points: Sequence[Point], index: int, baseline: float, score: float, rule: Rule
) -> Detection:
    point = points[index]
    deviation = point.value - baseline
    return Detection(
        index=index,
        sortable=point.sortable,
        value=point.value,
        baseline=baseline,
        deviation=deviation,
        deviation_pct=None if baseline == 0 else 100.0 * deviation / abs(baseline),
        score=score,
        direction="up" if deviation > 0 else "down",
        rule=rule,
    )


def _analyse(
    values: FloatArray, params: DetectorParams, period: int | None
) -> tuple[_Found, Verdict]:
    """The spikes of `values` (all positions) and the verdict on the newest one."""
    import numpy as np

    finite = np.flatnonzero(np.isfinite(values))
    x = values[finite]
    young = len(x) if params.method == "seed" else min(len(x), params.min_history)
    seed = _seed(x[:young], params.seed_gain)
    found = _Found(
        finite[seed[0]].tolist(), seed[1].tolist(), seed[2].tolist(), ["seed"] * len(seed[0])
    )
    if young == len(x):
        return found, _seed_verdict(x, params, finite, len(values))
    from .judge import judge
    from .robust import scores

    local = scores(x, params.window)
    judged = judge(local, params.threshold, params.min_history)
    channel = _Channel(finite, local, judged, "robust")
    chosen = [channel]
    if period is not None:
        chosen = _with_seasons(values, params, period, channel)
    for part in chosen:
        found = _merge(found, part, values)
    return found, _robust_verdict(chosen, len(x), len(values) - 1, params.threshold)


@frozen
class _Channel:
    """One way of judging: where its scores sit in the values, and its verdicts. `keep`
    says which of its spikes count (the seasonal choice), `owns_newest` whether its
    verdict is the one for the newest point."""

    where: IndexArray
    scores: Scores
    judged: Judged
    rule: Rule
    keep: BoolArray | None = None
    owns_newest: bool = True


def _with_seasons(
    values: FloatArray, params: DetectorParams, period: int, local: _Channel
) -> list[_Channel]:
    import numpy as np

    from .judge import judge
    from .robust import scores
    from .seasonal import first_seasonal, seasonal_residual, seasonal_wins

    n = len(values)
    if n <= first_seasonal(period):
        return [local]
    residual = seasonal_residual(values, period)
    where = np.flatnonzero(np.isfinite(residual))
    season = scores(residual[where], params.window)
    judged = judge(season, params.threshold, params.min_history)
    errors = []
    for channel_where, channel_scores in ((local.where, local.scores), (where, season)):
        error = np.full(n, np.nan)
        error[channel_where[1:]] = np.abs(channel_scores.deviation[1:])
        errors.append(error)
    local_spikes = local.where[local.judged.positions]
    season_spikes = where[judged.positions]
    newest_seasonal = bool(
        len(where)
        and where[-1] == n - 1
        and seasonal_wins(errors[0], errors[1], [n - 1], period)[0]
    )
    return [
        _Channel(
            local.where, local.scores, local.judged, "robust",
            keep=~seasonal_wins(errors[0], errors[1], local_spikes.tolist(), period),
            owns_newest=not newest_seasonal,
        ),
        _Channel(
            where, season, judged, "seasonal",
            keep=seasonal_wins(errors[0], errors[1], season_spikes.tolist(), period),
            owns_newest=newest_seasonal,
        ),
    ]  # fmt: skip


def _merge(found: _Found, channel: _Channel, values: FloatArray) -> _Found:
    """found plus the channel's kept spikes, in order of position."""
    import numpy as np

    spikes = channel.judged.positions
    if channel.keep is not None:
        spikes = spikes[channel.keep]
    at = channel.where[spikes]
    # The baseline reported is the value expected: value - deviation (for the seasonal
    # channel the forecast plus the residual's own baseline).
    baselines = values[at] - channel.scores.deviation[spikes]
    rows = sorted(
        zip(
            [*found.positions, *at.tolist()],
            [*found.baselines, *baselines.tolist()],
            [*found.scores, *np.abs(channel.scores.z[spikes]).tolist()],
            [*found.rules, *[channel.rule] * len(at)],
            strict=True,
        )
    )
    return _Found(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
    )


def _seed(x: FloatArray, gain_needed: float) -> tuple[IndexArray, FloatArray, FloatArray]:
    """The 2019 rule over finite values: (positions, the means before, |gains|)."""
    import numpy as np

    if len(x) < 3:
        return np.zeros(0, dtype=np.intp), np.zeros(0), np.zeros(0)
    # Extreme values overflow to inf (a mean near 0: an infinite gain, a spike) or to nan
    # (an infinite mean: no gain), as the scalar verdict's Python floats do, silently.
    with np.errstate(over="ignore", invalid="ignore"):
        mean = (x[1:-1] + x[:-2]) / 2
        positive = mean > 0
        gain = np.divide(x[2:] - mean, mean, out=np.zeros_like(mean), where=positive)
    hits = np.flatnonzero(positive & (np.abs(gain) > gain_needed))
    return (hits + 2).astype(np.intp), mean[hits], np.abs(gain[hits])


def _seed_verdict(x: FloatArray, params: DetectorParams, finite: IndexArray, n: int) -> Verdict:
    """The verdict on the newest point when the seed rule (or nothing) judges it."""
    count = len(x)
    if n == 0 or count == 0 or finite[-1] != n - 1:
        return Verdict(count, "none", None, None, False, "the newest value is not a finite number")
    if count < 3:
        return Verdict(count, "none", None, None, False, "fewer than 3 points: nothing to compare")
    mean = (float(x[-2]) + float(x[-3])) / 2
    if mean <= 0:
        return Verdict(
            count, "seed", None, params.seed_gain, False,
            "the 2019 rule needs a positive mean of the two points before",
        )  # fmt: skip
    gain = abs(float(x[-1]) - mean) / mean
    spike = gain > params.seed_gain
    why = "a spike" if spike else "its gain over the two points before is below the threshold"
    if params.method == "robust" and not spike:
        why += f" (the robust rule starts after {params.min_history} points)"
    return Verdict(count, "seed", gain, params.seed_gain, spike, why)


def _robust_verdict(channels: list[_Channel], count: int, newest: int, threshold: float) -> Verdict:
    from .judge import REASONS

    channel = next(c for c in channels if c.owns_newest)
    if len(channel.where) == 0 or channel.where[-1] != newest:
        return Verdict(count, "none", None, None, False, "the newest value is not a finite number")
    judged = channel.judged
    spike = judged.last_reason == "spike"
    score = abs(float(channel.scores.z[-1]))
    return Verdict(count, channel.rule, score, threshold, spike, REASONS[judged.last_reason])
