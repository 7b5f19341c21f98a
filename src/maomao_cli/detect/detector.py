"""The spike detector: causal, robust, both directions, scipy.signal.find_peaks at its core.

Method "robust", for each point i of the finite values x:

- baseline_i: the median of the `window` points before i (fewer at the start).
- scale_i: the robust noise sigma of that same window, from the MAD of its successive
  steps |x_k - x_(k-1)| (median x 1.4826 / sqrt(2)). Why steps and not the MAD around
  the baseline: a level shift adds one large step but half a window of large residuals,
  so a residual MAD stays inflated for 1 to 1.5 windows after every shift and the
  detector goes blind (recall 0.72 against 0.91 in bench/spike_quality.py, both at
  threshold 4). It is also exact with one median filter, where a rolling MAD needs a
  sort per window. When more than half the steps are 0 (a quantised or mostly constant
  history) their mean stands in, never below the smallest nonzero step (the metric's
  resolution); and a floor of 1e-6 x |baseline| (at least 1e-12) keeps a constant
  history from dividing by zero: a constant series has no spikes, a change after it is.
- z_i = (x_i - baseline_i) / scale_i, the robust score. |z_i| is `Detection.score`.

find_peaks then runs on an array where every point i is an isolated block
[0, a_i, |z_i|, 0], with a_i = min(|z_{i-1}|, |z_i|) when z_{i-1} has the same sign as
z_i, else 0. Blocks never touch (zeros between them, and wlen bounds the search), so a
verdict never depends on a later point. In a block:

- prominence = |z_i|: the spike criterion is prominence >= BASE_THRESHOLD / sensitivity.
- width at half prominence <= 1.5 samples exactly when a_i <= |z_i| / 2: the point rose
  sharply from its predecessor. So a level shift is flagged at its first point; the
  following points on the new level are as far from the old baseline but no longer
  rise, and they stay quiet while the baseline catches up (about window / 2 points).

No verdict before `min_history` finite points. Non-finite values are skipped.

Method "seed": the 2019 rule, kept for comparison: flag x_i when it exceeds the mean m of
the two finite points before it by a relative gain (x_i - m) / m > seed_threshold /
sensitivity (m > 0; the rule is undefined otherwise). Up only, as in 2019.

numpy and scipy are imported when something is detected, not when this module is: the
CLI validates DetectorParams without paying for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal

from .series import Point

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]
    IndexArray = NDArray[np.intp]

# |z| a spike needs at sensitivity 1; tuned with bench/spike_quality.py over several seeds.
BASE_THRESHOLD = 4.5
# The step between two points of a normal series with sigma s has sigma s x sqrt(2):
# its MAD x 1.4826 / sqrt(2) and its mean absolute value x 1.2533 / sqrt(2) estimate s.
STEP_MAD_TO_SIGMA = 1.4826 / math.sqrt(2)
STEP_MEAN_TO_SIGMA = 1.2533 / math.sqrt(2)
SCALE_FLOOR_RELATIVE = 1e-6
SCALE_FLOOR_ABSOLUTE = 1e-12
# Width at half prominence of a block [0, a, p, 0] is 1 + a/p for a <= p/2, above 1.5 beyond.
MAX_SPIKE_WIDTH = 1.5
BLOCK = 4  # samples per point in the isolated array: 0, a_i, |z_i|, 0
PEAK_OFFSET = 2  # where |z_i| sits in its block
MAX_WINDOW = 10_000  # the first `window` points are handled one by one


@dataclass(frozen=True)
class DetectorParams:
    """How to detect. `sensitivity` divides the threshold of either method: for "robust"
    the |z| a spike needs (BASE_THRESHOLD / sensitivity), for "seed" the relative gain
    (seed_threshold / sensitivity). Higher sensitivity, more spikes."""

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
        """The score a spike needs: |z| for robust, the relative gain for seed."""
        base = BASE_THRESHOLD if self.method == "robust" else self.seed_threshold
        return base / self.sensitivity


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Detection:
    index: int  # position in the points given to detect (non-finite points included)
    sortable: str
    value: float
    baseline: float  # robust: the causal median; seed: the mean of the two points before
    deviation: float  # value - baseline
    deviation_pct: float | None  # 100 x deviation / |baseline|; None when baseline is 0
    score: float  # robust: |z|; seed: the relative gain
    direction: Literal["up", "down"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Verdicts:
    """Spikes among `values`: positions, with the baseline and score of each."""

    positions: IndexArray
    baselines: FloatArray
    scores: FloatArray


def detect(points: Sequence[Point], params: DetectorParams = DetectorParams()) -> list[Detection]:
    """Every spike of the series, in order. Causal: equals detect_latest on each prefix."""
    import numpy as np

    if len(points) < 2:
        return []
    values = np.fromiter(map(attrgetter("value"), points), dtype=np.float64, count=len(points))
    finite = np.flatnonzero(np.isfinite(values))
    verdicts = _judge(values[finite], params, first_judged=0)
    return [
        _detection(points, int(finite[p]), float(b), float(s))
        for p, b, s in zip(verdicts.positions, verdicts.baselines, verdicts.scores, strict=True)
    ]


def spike_positions(values: FloatArray, params: DetectorParams = DetectorParams()) -> IndexArray:
    """The positions of the spikes in an array of values (non-finite ones skipped).

    The vectorised core of `detect`, for callers that hold a numpy array already.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(values))
    if len(finite) == len(values):
        return _judge(values, params, first_judged=0).positions
    return finite[_judge(values[finite], params, first_judged=0).positions]


def detect_latest(
    points: Sequence[Point], params: DetectorParams = DetectorParams()
) -> Detection | None:
    """Is the newest point a spike? Reads only the tail its verdict depends on."""
    import numpy as np

    if len(points) < 2 or not math.isfinite(points[-1].value):
        return None
    needed = _history_needed(params)
    # Walk back over just enough finite points (non-finite ones do not count).
    tail: list[float] = []
    finite_seen = 0
    start = len(points)
    while start > 0 and finite_seen < needed:
        start -= 1
        value = points[start].value
        if math.isfinite(value):
            tail.append(value)
            finite_seen += 1
    tail.reverse()
    newest = len(tail) - 1
    before = 0
    if newest < params.min_history:
        # min_history counts from the true start: count the finite points before the tail.
        before = sum(1 for p in points[:start] if math.isfinite(p.value))
    verdicts = _judge(
        np.asarray(tail, dtype=np.float64), params, first_judged=max(newest, 0), offset=before
    )
    if len(verdicts.positions) == 0 or verdicts.positions[-1] != newest:
        return None
    return _detection(
        points, len(points) - 1, float(verdicts.baselines[-1]), float(verdicts.scores[-1])
    )


def _history_needed(params: DetectorParams) -> int:
    """Finite points a verdict on the newest reads, itself included."""
    if params.method == "seed":
        return 3
    # z_(i-1) reads the window of points before i - 1: window + 1 points, and the newest.
    return params.window + 2


def _detection(points: Sequence[Point], index: int, baseline: float, score: float) -> Detection:
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
    )


SHORT_HISTORY_PENALTY = 8.0  # z is divided by 1 + 8 (1/n - 1/window) for n < window points


def _judge(
    values: FloatArray, params: DetectorParams, *, first_judged: int, offset: int = 0
) -> _Verdicts:
    """Spikes among finite `values` at positions >= first_judged.

    `offset` is how many finite points came before `values` (when judging a tail), so
    that min_history counts from the true start of the series.
    """
    first = max(first_judged, params.min_history - offset if params.method == "robust" else 2)
    if params.method == "seed":
        return _seed(values, params.threshold, first)
    return _robust(values, params, first, offset)


def _seed(values: FloatArray, threshold: float, first: int) -> _Verdicts:
    import numpy as np

    first = max(first, 2)
    if len(values) <= first:
        return _no_verdicts()
    mean = (values[first - 1 : -1] + values[first - 2 : -2]) / 2
    current = values[first:]
    positive = mean > 0
    gain = np.divide(current - mean, mean, out=np.zeros_like(mean), where=positive)
    hits = np.flatnonzero(positive & (gain > threshold))
    return _Verdicts(hits + first, mean[hits], gain[hits])


def _robust(values: FloatArray, params: DetectorParams, first: int, offset: int = 0) -> _Verdicts:
    import numpy as np
    from scipy.signal import find_peaks

    if len(values) <= first or len(values) < 3:
        return _no_verdicts()
    baseline, z = robust_scores(values, params.window)
    # A scale estimated from few points is itself noisy: while the history is shorter
    # than the window, deflate z so that young series do not raise false alarms.
    young = max(0, min(len(values), params.window - offset))
    if young:
        history = np.maximum(np.arange(young, dtype=np.float64) + offset, 1.0)
        z = z.copy()
        z[:young] /= 1.0 + SHORT_HISTORY_PENALTY * (1.0 / history - 1.0 / params.window)
    threshold = params.threshold
    # Only points whose |z| reaches the threshold can pass find_peaks' height test; the
    # others never get a block, which keeps the 4-samples-per-point array off the hot path.
    candidates = np.flatnonzero(np.abs(z[first:]) >= threshold) + first
    if len(candidates) == 0:
        return _no_verdicts()
    magnitude = np.abs(z[candidates])
    before = z[candidates - 1]  # first >= 2: a verdict always has history
    same_direction = np.sign(before) == np.sign(z[candidates])
    shoulder = np.where(same_direction, np.minimum(np.abs(before), magnitude), 0.0)
    isolated = np.zeros(BLOCK * len(candidates))
    isolated[1::BLOCK] = shoulder
    isolated[PEAK_OFFSET::BLOCK] = magnitude
    peaks, _ = find_peaks(
        isolated,
        height=threshold,  # equal to the prominence here; filters cheaply first
        prominence=threshold,
        width=(None, MAX_SPIKE_WIDTH),
        rel_height=0.5,
        wlen=BLOCK + 1,  # the block and its zeros: prominence never looks further
    )
    # A plateau (a_i == |z_i|) is reported at its first sample, but its width is 2.
    chosen = peaks[peaks % BLOCK == PEAK_OFFSET] // BLOCK
    positions = candidates[chosen].astype(np.intp)
    return _Verdicts(positions, baseline[positions], magnitude[chosen])


def _no_verdicts() -> _Verdicts:
    import numpy as np

    return _Verdicts(np.zeros(0, dtype=np.intp), np.zeros(0), np.zeros(0))


def robust_scores(values: FloatArray, window: int) -> tuple[FloatArray, FloatArray]:
    """(baseline, z) of finite `values`, causal: entry i reads values[:i] and values[i].

    baseline[0] is nan; z[0] and z[1] are 0 (no history, no scale yet).
    """
    import numpy as np

    n = len(values)
    baseline = np.full(n, np.nan)
    z = np.zeros(n)
    if n < 2:
        return baseline, z
    baseline[1:] = trailing_median(values[:-1], window)
    if n < 3:
        return baseline, z
    # step[k - 1] = |x_k - x_(k-1)|; scale[i] for i >= 2 reads the steps inside the window
    # of points before i (between points max(0, i - window) .. i - 1).
    step = np.abs(np.diff(values))
    spread = trailing_median(step[:-1], window - 1)
    scale = np.multiply(spread, STEP_MAD_TO_SIGMA, out=spread)
    flat = np.flatnonzero(scale == 0)
    if len(flat):
        # Quantised history: more than half the steps are 0. Fall back on their mean, and
        # never below the smallest step seen (the resolution of the metric): a series of
        # counts that sits at 5 and sometimes reads 4 or 6 must not call 4 a spike.
        mean_based = STEP_MEAN_TO_SIGMA * _window_means(step, flat, window - 1)
        scale[flat] = np.maximum(mean_based, _resolution(step, window - 1)[flat])
    floor = np.abs(baseline[2:])
    floor *= SCALE_FLOOR_RELATIVE
    np.maximum(floor, SCALE_FLOOR_ABSOLUTE, out=floor)
    np.maximum(scale, floor, out=scale)
    np.subtract(values[2:], baseline[2:], out=z[2:])
    z[2:] /= scale
    return baseline, z


def _window_means(values: FloatArray, ends: IndexArray, window: int) -> FloatArray:
    """The mean of values[max(0, j - window + 1) : j + 1] for each j in `ends`."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    means = np.empty(len(ends))
    partial = ends < window - 1
    for k in np.flatnonzero(partial).tolist():
        means[k] = values[: ends[k] + 1].mean()
    full = ~partial
    if full.any():
        # Each row is summed on its own, in the same order wherever it sits in the series.
        rows = sliding_window_view(values, window)[ends[full] - window + 1]
        means[full] = rows.mean(axis=1)
    return means


def _resolution(steps: FloatArray, window: int) -> FloatArray:
    """r[j] = the smallest nonzero step in steps[max(0, j - window + 1) : j + 1], else 0."""
    import numpy as np
    from scipy.ndimage import minimum_filter1d

    nonzero = np.where(steps > 0, steps, np.inf)
    # mode="nearest" repeats steps[0], which is inside every short window at the start.
    smallest = minimum_filter1d(nonzero, size=window, origin=(window - 1) // 2, mode="nearest")
    return np.where(np.isfinite(smallest), smallest, 0.0)


def trailing_median(values: FloatArray, window: int) -> FloatArray:
    """m[j] = the median of values[max(0, j - window + 1) : j + 1].

    For an even count the upper of the two middle values (what median_filter returns),
    so the first, shorter windows agree with the full ones.
    """
    import numpy as np
    from scipy.ndimage import median_filter

    n = len(values)
    out = np.empty(n)
    head = min(n, window - 1)
    for j in range(head):
        out[j] = np.partition(values[: j + 1], (j + 1) // 2)[(j + 1) // 2]
    if n >= window:
        # origin shifts the window to end at j instead of being centred on it.
        full = median_filter(values, size=window, origin=(window - 1) // 2, mode="nearest")
        out[head:] = full[head:]
    return out
