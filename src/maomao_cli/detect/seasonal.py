"""Seasonality where the cadence shows it: the same time on the previous days (or weeks).

A metric sampled every few minutes follows the day: traffic, load, backups at 3 am. Its
local median is a poor forecast at every daily edge, and each edge looks like a spike.
Where the timestamps show a regular sub-daily cadence, the period is one day (in points);
for a daily cadence, one week. Then a second, seasonal channel judges the residual

    y_i = x_i - median(x_(i-P), x_(i-2P), x_(i-3P))

with the same robust method, and each point takes the verdict of whichever channel
forecast the series better over the period before it (the mean absolute deviation from
its baseline). A series without a daily pattern keeps its local channel: the seasonal
residual is noisier there. Nothing here reads a point after the one judged: the period
comes from the spacing of the first CADENCE_SAMPLE timestamps and is used only after them.

numpy is imported inside the functions, like everywhere in detect/.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]
    BoolArray = NDArray[np.bool_]

DAY = 86_400.0
WEEK = 7 * DAY
CYCLES = 3  # previous periods the seasonal forecast takes the median of
CADENCE_SAMPLE = 64  # timestamps the cadence is read from; the seasonal channel starts after
MIN_PERIOD = 4
MAX_PERIOD = 10_000
# A day must hold a whole number of samples, near enough that the furthest lag of the
# forecast (CYCLES periods back) lands within half a sample of the same time of day.
MAX_DRIFT = 0.5


def period_from_timestamps(sortables: Sequence[str]) -> int | None:
    """The seasonal period in points that the cadence of the first timestamps shows, or
    None: one day for a regular sub-daily cadence, one week for a daily one."""
    sample = sortables[:CADENCE_SAMPLE]
    if len(sample) < CADENCE_SAMPLE:
        return None
    try:
        times = [datetime.fromisoformat(text.strip()) for text in sample]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    except (ValueError, TypeError):  # not timestamps, or naive mixed with aware ones
        return None
    cadence = statistics.median(gaps)
    if cadence <= 0:
        return None
    # Samples within a day follow the day; daily samples (or sparser) follow the week.
    cycle = DAY if cadence < DAY * 0.99 else WEEK
    period = cycle / cadence
    whole = round(period)
    if abs(period - whole) * CYCLES > MAX_DRIFT or not MIN_PERIOD <= whole <= MAX_PERIOD:
        return None
    return whole


def first_seasonal(period: int) -> int:
    """The first position the seasonal channel may judge: after the cadence sample, and
    after CYCLES periods of forecast plus one period of forecast errors to compare."""
    return max(CADENCE_SAMPLE, (CYCLES + 1) * period)


def seasonal_residual(values: FloatArray, period: int) -> FloatArray:
    """y_i = x_i - the median of the finite x_(i-kP), k = 1..CYCLES; nan where undefined."""
    import numpy as np

    n = len(values)
    residual = np.full(n, np.nan)
    start = CYCLES * period
    if n <= start:
        return residual
    lagged = np.stack([values[start - k * period : n - k * period] for k in range(1, CYCLES + 1)])
    finite = np.isfinite(lagged)
    # nanmedian without its all-nan warning: rows with no finite lag stay nan.
    lagged = np.where(finite, lagged, np.inf)
    lagged.sort(axis=0)
    count = finite.sum(axis=0)
    middle = np.take_along_axis(lagged, (np.maximum(count, 1)[None, :] - 1) // 2, axis=0)[0]
    upper = np.take_along_axis(lagged, np.maximum(count, 1)[None, :] // 2, axis=0)[0]
    forecast = np.where(count > 0, (middle + upper) / 2, np.nan)
    residual[start:] = values[start:] - forecast
    return residual


def seasonal_wins(
    local_error: FloatArray, seasonal_error: FloatArray, positions: Sequence[int], period: int
) -> BoolArray:
    """For each position p: did the seasonal channel forecast better than the local one
    over the period before p? Errors are |deviation from baseline| per point (nan where a
    channel had no verdict); both need half the period of finite errors."""
    import numpy as np

    where = np.asarray(positions, dtype=np.intp)
    if len(where) == 0:
        return np.zeros(0, dtype=bool)
    sums, counts = [], []
    for error in (local_error, seasonal_error):
        finite = np.isfinite(error)
        total = np.concatenate([[0.0], np.cumsum(np.where(finite, error, 0.0))])
        seen = np.concatenate([[0], np.cumsum(finite)])
        lo = np.maximum(where - period, 0)
        sums.append(total[where] - total[lo])
        counts.append(seen[where] - seen[lo])
    enough = (counts[0] >= period / 2) & (counts[1] >= period / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        better = sums[1] / np.maximum(counts[1], 1) < sums[0] / np.maximum(counts[0], 1)
    wins: BoolArray = enough & better & (where >= first_seasonal(period))
    return wins
