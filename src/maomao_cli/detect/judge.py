"""Which robust scores are spikes: sharp, new for the series, and one notification per event.

Given the scores of robust.py, point i is a spike when, in this order:

1. **Sharp**: |z_i| reaches the threshold and the point rose sharply from its predecessor
   (scipy.signal.find_peaks on isolated blocks, below). A level shift is flagged at its
   first point; the points after it are as far from the old baseline but no longer rise.
   A point FAR times beyond the threshold needs no sharp rise: a metric that slid there
   over a few points is as far out as one that jumped.
2. **Not part of the last event**: after a spike, the points that stay on the same side
   with |z| above half the threshold belong to that event (a level shift keeps them there
   until the median catches up). They are never spikes and never count as history below.
   One notification per event, not one per point.
3. **New**: on fewer than ROUTINE_COUNT separate occasions of the memory (the last
   MEMORY points) did the series deviate from its baseline in the same direction by at
   least 1 / ROUTINE_RATIO (80 %) of this point's deviation. A threshold on the empirical
   tail probability of the deviation itself, in the series' own history and its own
   units: a daily backup that spikes the metric, the same burst every few hours, a
   quantised metric that flips between two values, are what this series does, and nobody
   wants to hear about them every time.

Every verdict reads the point and the points before it only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..frozen import frozen
from .robust import Scores

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]
    IndexArray = NDArray[np.intp]
    BoolArray = NDArray[np.bool_]

# |z| a spike needs at sensitivity 1; tuned with bench/spike_quality.py over several seeds.
BASE_THRESHOLD = 4.5
# How far back the series' own history counts for what is routine: two weeks of
# 5-minute samples, eleven years of daily runs.
MEMORY = 4000
# Routine: on 7 separate occasions of the memory the series went 80 % as far that way.
ROUTINE_COUNT = 7
ROUTINE_RATIO = 1.25
# Twice the threshold away is a spike however the point got there.
FAR = 2.0
# An event goes on while the points stay on its side above half the threshold.
EVENT_END = 0.5
# Width at half prominence of a block [0, a, p, 0] is 1 + a/p for a <= p/2, above 1.5 beyond.
MAX_SPIKE_WIDTH = 1.5
BLOCK = 4  # samples per point in the isolated array: 0, a_i, |z_i|, 0
PEAK_OFFSET = 2  # where |z_i| sits in its block


@frozen
class Judged:
    """The spikes among the scores, and why the last point is or is not one."""

    positions: IndexArray
    last_reason: str  # "spike", or why not (see REASONS)


REASONS = {
    "spike": "a spike",
    "below": "its score is below the threshold",
    "gradual": "not a sharp change (the point before was already about as far out), "
    "and not twice the threshold away",
    "event": "it continues the event of an earlier spike",
    "routine": "routine for this series: it went about as far as often in its recent history",
    "young": "too few points before it",
}


def judge(sc: Scores, threshold: float, first: int) -> Judged:
    """The spikes among positions >= first (first >= 2) of the scored values."""
    import numpy as np

    n = len(sc.z)
    member = np.ones(n, dtype=bool)  # points that count as history: not inside an event
    spikes: list[int] = []
    event_end = -1
    last_reason = "young" if n - 1 < first else "below"
    for i in sharp_candidates(sc.z, threshold, first).tolist():
        if i <= event_end:
            reason = "event"
        elif _routine(sc.deviation, member, i):
            reason = "routine"
        else:
            reason = "spike"
            spikes.append(i)
            event_end = _event_end(sc.z, i, EVENT_END * threshold)
            member[i + 1 : event_end + 1] = False
        if i == n - 1:
            last_reason = reason
    if last_reason == "below" and n - 1 >= first:
        last_reason = _why_not_a_candidate(sc.z, n - 1, event_end, threshold)
    return Judged(np.asarray(spikes, dtype=np.intp), last_reason)


def _why_not_a_candidate(z: FloatArray, i: int, event_end: int, threshold: float) -> str:
    if i <= event_end:
        return "event"
    if abs(z[i]) >= threshold and not _rose_sharply(z, i):
        return "gradual"
    return "below"


def _rose_sharply(z: FloatArray, i: int) -> bool:
    before, now = float(z[i - 1]), float(z[i])
    shoulder = min(abs(before), abs(now)) if (before > 0) == (now > 0) and before != 0 else 0.0
    return shoulder <= abs(now) / 2


def _routine(deviation: FloatArray, member: BoolArray, i: int) -> bool:
    """On at least ROUTINE_COUNT separate occasions of the memory the series went 80 %
    as far the same way. Occasions, not points: a stretch of consecutive points out there
    (a level shift the median has not caught up with yet) counts once."""
    import numpy as np

    lo = max(1, i - MEMORY)
    reach = abs(float(deviation[i])) / ROUTINE_RATIO
    history = deviation[lo:i]
    out_there = history >= reach if deviation[i] > 0 else history <= -reach
    if np.count_nonzero(out_there) < ROUTINE_COUNT:  # the usual case, and cheap
        return False
    out_there &= member[lo:i]
    occasions = int(np.count_nonzero(out_there[1:] & ~out_there[:-1])) + int(out_there[0])
    return occasions >= ROUTINE_COUNT


def _event_end(z: FloatArray, start: int, level: float) -> int:
    """The last point of the event that starts at `start`: the run after it that stays
    on its side with |z| above `level`."""
    import numpy as np

    positive = z[start] > 0
    end = start
    chunk = 64
    while end + 1 < len(z):
        ahead = z[end + 1 : end + 1 + chunk]
        inside = (ahead > level) if positive else (ahead < -level)
        outside = np.flatnonzero(~inside)
        if len(outside):
            return end + int(outside[0])
        end += len(ahead)
        chunk *= 2
    return end


def sharp_candidates(z: FloatArray, threshold: float, first: int) -> IndexArray:
    """Positions >= first whose |z| reaches the threshold and rose sharply, or reaches
    FAR times the threshold.

    find_peaks runs on an array where every candidate i is an isolated block
    [0, a_i, |z_i|, 0], with a_i = min(|z_(i-1)|, |z_i|) when z_(i-1) has the same sign
    as z_i, else 0. Blocks never touch (zeros between them, and wlen bounds the search),
    so a verdict never depends on a later point. In a block the prominence is |z_i| (the
    threshold test), and the width at half prominence is at most 1.5 samples exactly when
    a_i <= |z_i| / 2: the point rose sharply from its predecessor.
    """
    import numpy as np
    from scipy.signal import find_peaks

    first = max(first, 2)
    # Only points whose |z| reaches the threshold can pass find_peaks' height test; the
    # others never get a block, which keeps the 4-samples-per-point array off the hot path.
    candidates = np.flatnonzero(np.abs(z[first:]) >= threshold) + first
    if len(candidates) == 0:
        return candidates.astype(np.intp)
    magnitude = np.abs(z[candidates])
    before = z[candidates - 1]
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
    sharp = np.zeros(len(candidates), dtype=bool)
    sharp[peaks[peaks % BLOCK == PEAK_OFFSET] // BLOCK] = True
    chosen: IndexArray = candidates[sharp | (magnitude >= FAR * threshold)].astype(np.intp)
    return chosen
