"""Causal robust scores: a rolling median baseline and a noise scale robust to level shifts.

For each point i of the finite values x:

- baseline_i: the median of the `window` points before i (fewer at the start).
- scale_i: the robust noise sigma of that same window, from the MAD of its successive
  steps |x_k - x_(k-1)| (median x 1.4826 / sqrt(2)). Why steps and not the MAD around
  the baseline: a level shift adds one large step but half a window of large residuals,
  so a residual MAD stays inflated for 1 to 1.5 windows after every shift and the
  detector goes blind. It is also exact with one median filter, where a rolling MAD
  needs a sort per window. When more than half the steps are 0 (a quantised or mostly
  constant history) their mean stands in, never below the smallest nonzero step (the
  metric's resolution); and a floor of 1e-6 x |baseline| (at least 1e-12) keeps a
  constant history from dividing by zero.
- z_i = (x_i - baseline_i) / scale_i, deflated while fewer than `window` points precede
  i (a scale from a handful of points is itself noisy).

Everything about entry i reads values[:i] and values[i] only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..frozen import frozen

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]
    IndexArray = NDArray[np.intp]

# The step between two points of a normal series with sigma s has sigma s x sqrt(2):
# its MAD x 1.4826 / sqrt(2) and its mean absolute value x 1.2533 / sqrt(2) estimate s.
STEP_MAD_TO_SIGMA = 1.4826 / math.sqrt(2)
STEP_MEAN_TO_SIGMA = 1.2533 / math.sqrt(2)
SCALE_FLOOR_RELATIVE = 1e-6
SCALE_FLOOR_ABSOLUTE = 1e-12
SHORT_HISTORY_PENALTY = 8.0  # z is divided by 1 + 8 (1/n - 1/window) for n < window points


@frozen
class Scores:
    """Per-point scores of finite values; entries 0 and 1 have no scale yet (z = 0)."""

    baseline: FloatArray  # nan at 0
    deviation: FloatArray  # value - baseline, 0 at 0
    z: FloatArray


def scores(values: FloatArray, window: int) -> Scores:
    """The robust scores of finite `values`."""
    import numpy as np

    n = len(values)
    baseline = np.full(n, np.nan)
    deviation = np.zeros(n)
    z = np.zeros(n)
    if n >= 2:
        baseline[1:] = trailing_median(values[:-1], window)
        np.subtract(values[1:], baseline[1:], out=deviation[1:])
    if n >= 3:
        steps = np.abs(np.diff(values))
        scale = _scale(steps, baseline, window)
        np.divide(deviation[2:], scale, out=z[2:])
        young = min(n, window)
        if young:
            history = np.maximum(np.arange(young, dtype=np.float64), 1.0)
            z[:young] /= 1.0 + SHORT_HISTORY_PENALTY * (1.0 / history - 1.0 / window)
    return Scores(baseline, deviation, z)


def _scale(steps: FloatArray, baseline: FloatArray, window: int) -> FloatArray:
    """scale[i - 2] for i >= 2: the noise sigma of the window of points before i.

    steps[k - 1] = |x_k - x_(k-1)|; the scale for i reads the steps inside the window of
    points before i (between points max(0, i - window) .. i - 1).
    """
    import numpy as np

    spread = trailing_median(steps[:-1], window - 1)
    scale = np.multiply(spread, STEP_MAD_TO_SIGMA, out=spread)
    flat = np.flatnonzero(scale == 0)
    if len(flat):
        # Quantised history: more than half the steps are 0. Fall back on their mean, and
        # never below the smallest step seen (the resolution of the metric): a series of
        # counts that sits at 5 and sometimes reads 4 or 6 must not call 4 a spike.
        mean_based = STEP_MEAN_TO_SIGMA * _window_means(steps, flat, window - 1)
        scale[flat] = np.maximum(mean_based, resolution(steps, window - 1)[flat])
    floor = np.abs(baseline[2:])
    floor *= SCALE_FLOOR_RELATIVE
    np.maximum(floor, SCALE_FLOOR_ABSOLUTE, out=floor)
    np.maximum(scale, floor, out=scale)
    return scale


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


def resolution(steps: FloatArray, window: int) -> FloatArray:
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
