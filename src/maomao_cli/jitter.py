"""Deterministic jitter: a stable start offset for a firing, so members do not all hit one
external service at the same second.

Pure: the offset is a hash of the schedule and the member (mode `everywhere`: each member
keeps its own offset across firings) or of the schedule and the nominal time (mode
`once`: every member computes the same due time for the shared claim). It is always
below the gap to the next firing, so a jittered start never passes it. The nominal time
stays the firing's identity: claims, records and MAOMAO_FIRE_TIME carry it, not the start.
"""

from __future__ import annotations

import hashlib
import math

from .models import Schedule

_SCALE = float(2**64)


def fraction(*parts: str) -> float:
    """A stable number in [0, 1) from the parts."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def offset(schedule: Schedule, member: str, nominal: float, next_nominal: float) -> float:
    """Seconds after `nominal` at which `member` starts that firing (0 without jitter);
    to the millisecond, rounded down, so it stays below the gap to the next firing."""
    cap = min(schedule.jitter, next_nominal - nominal)
    if cap <= 0:
        return 0.0
    seed = member if schedule.mode == "everywhere" else str(int(nominal))
    return math.floor(fraction(schedule.name, seed) * cap * 1000) / 1000
