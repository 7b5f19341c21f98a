"""The spike detector: causal, robust, both directions, find_peaks at its core.

For each point i (after `min_history` points) the baseline is the median of the
`window` points before it and the scale their MAD (x1.4826, with a floor so a constant
history never divides by zero). z_i = (x_i - baseline) / scale. A point is a spike when
|z_i| >= threshold AND it also jumps from the point just before it (|x_i - x_{i-1}|
>= threshold/2 scales, same direction): so a level shift is flagged once, at its first
point, and its plateau is not.

Causality: everything about point i comes from points 0..i, so detecting over the
whole series equals asking `detect_latest` on every prefix. scipy.signal.find_peaks
runs on the scores interleaved with zeros, which isolates every point: its prominence
and width depend on that point alone, never on a later one.

Speed: the rolling median is scipy.ndimage.median_filter; the rolling MAD is
approximated by the median of |x_j - baseline_j| over the same window (each point's
deviation from its own causal baseline), which needs one more filter instead of a
per-window sort.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import median_filter
from scipy.signal import find_peaks

from .series import Point

MAD_SCALE = 1.4826
BASE_THRESHOLD = 5.0  # robust z at sensitivity 1


@dataclass(frozen=True)
class DetectorParams:
    method: Literal["robust", "seed"] = "robust"
    sensitivity: float = 1.0  # higher finds more: the z threshold is 5 / sensitivity
    window: int = 31
    min_history: int = 4
    seed_threshold: float = 0.20

    def __post_init__(self) -> None:
        if self.method not in ("robust", "seed"):
            raise ValueError(f"method {self.method!r}: expected robust or seed")
        if not (self.sensitivity > 0 and math.isfinite(self.sensitivity)):
            raise ValueError(f"sensitivity {self.sensitivity!r}: must be a number above 0")
        if self.window < 3:
            raise ValueError(f"window {self.window}: must be at least 3")
        if self.min_history < 2:
            raise ValueError(f"min_history {self.min_history}: must be at least 2")
        if not self.seed_threshold > 0:
            raise ValueError(f"seed_threshold {self.seed_threshold!r}: must be above 0")

    @property
    def threshold(self) -> float:
        return BASE_THRESHOLD / self.sensitivity


@dataclass(frozen=True)
class Detection:
    index: int
    sortable: str
    value: float
    baseline: float
    deviation: float
    deviation_pct: float | None
    score: float
    direction: Literal["up", "down"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _causal_median(x: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """m[i] = median(x[max(0, i - window) : i]) for i >= 1; m[0] = nan."""
    n = len(x)
    m = np.full(n, np.nan)
    half = window // 2
    odd = 2 * half + 1
    if n > odd:
        centered = median_filter(x, size=odd, mode="nearest")
        # The centred median at c covers x[c-half : c+half+1]; the window before i is
        # centred at c = i - 1 - half.
        m[odd:] = centered[half : n - half - 1]
    for i in range(1, min(n, odd + 1)):
        m[i] = np.median(x[max(0, i - odd) : i])
    return m


def _robust(values: NDArray[np.float64], params: DetectorParams) -> list[tuple[int, float, float, float]]:
    """(index, baseline, scale, z) of spikes in a series of finite values."""
    n = len(values)
    if n <= params.min_history:
        return []
    baseline = _causal_median(values, params.window)
    deviation = np.abs(values - baseline)
    deviation[0] = 0.0
    mad = _causal_median(deviation, params.window) * MAD_SCALE
    floor = np.maximum(np.abs(baseline) * 1e-3, 1e-9)
    scale = np.fmax(mad, floor)
    z = (values - baseline) / scale
    jump = np.zeros(n)
    jump[1:] = (values[1:] - values[:-1]) / scale[1:]
    threshold = params.threshold
    candidate = (np.abs(z) >= threshold) & (np.abs(jump) >= threshold / 2) & (np.sign(jump) == np.sign(z))
    candidate[: params.min_history] = False
    score = np.where(candidate, np.abs(z), 0.0)
    isolated = np.zeros(2 * n + 1)
    isolated[1::2] = score
    peaks, _ = find_peaks(isolated, height=threshold, prominence=threshold, width=(None, 2))
    indices = (peaks - 1) // 2
    return [(int(i), float(baseline[i]), float(scale[i]), float(z[i])) for i in indices]


def _seed(values: NDArray[np.float64], params: DetectorParams) -> list[tuple[int, float, float, float]]:
    """The 2019 rule: the newest value above the mean of the two before by a relative gain."""
    found = []
    for i in range(2, len(values)):
        mean = (values[i - 1] + values[i - 2]) / 2
        if mean != 0 and (values[i] - mean) / abs(mean) > params.seed_threshold:
            found.append((i, float(mean), abs(float(mean)), float((values[i] - mean) / abs(mean))))
    return found


def detect(points: Sequence[Point], params: DetectorParams = DetectorParams()) -> list[Detection]:
    finite = [(i, p) for i, p in enumerate(points) if math.isfinite(p.value)]
    if len(finite) < 3:
        return []
    values = np.fromiter((p.value for _, p in finite), dtype=np.float64, count=len(finite))
    raw = _seed(values, params) if params.method == "seed" else _robust(values, params)
    detections = []
    for j, baseline, _scale, z in raw:
        index, point = finite[j]
        deviation = point.value - baseline
        detections.append(
            Detection(
                index=index,
                sortable=point.sortable,
                value=point.value,
                baseline=baseline,
                deviation=deviation,
                deviation_pct=None if baseline == 0 else 100.0 * deviation / abs(baseline),
                score=abs(z),
                direction="up" if deviation > 0 else "down",
            )
        )
    return detections


def detect_latest(points: Sequence[Point], params: DetectorParams = DetectorParams()) -> Detection | None:
    """Is the newest point a spike? Looks only at the tail the verdict depends on."""
    if not points:
        return None
    tail_start = max(0, len(points) - 4 * params.window - 1) if params.method == "robust" else max(0, len(points) - 3)
    # The causal median needs `window` previous points; min_history counts from the start.
    if tail_start < params.min_history + 2 * params.window:
        tail_start = 0
    found = detect(points[tail_start:], params) if tail_start else detect(points, params)
    if found and found[-1].index + tail_start == len(points) - 1:
        last = found[-1]
        return Detection(**{**last.to_dict(), "index": len(points) - 1})
    return None
