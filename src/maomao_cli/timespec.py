"""Pure parsing of the times operators type: durations (`90s`, `10m`, `1h30m`, `7d`) and
instants (a duration from now, or an ISO 8601 time; without an offset, in a given zone).

Each parser raises BadInput with one line naming the option and the accepted forms.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from .errors import BadInput

# Instants are kept from 1970 to a year before 9999: every date function can take them,
# and a cron expression still has a next firing.
EARLIEST = 0.0
LATEST = 253_370_764_800.0  # 9998-12-31T00:00:00Z

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def _rule(text: str, field: str) -> BadInput:
    return BadInput(
        f"invalid {field} {text!r}: expected a duration such as 90s, 10m, 1h30m, 7d "
        "or an ISO 8601 time such as 2026-11-01T06:00 or 2026-11-01T06:00+01:00"
    )


def is_duration(text: str) -> bool:
    return _DURATION.fullmatch(text.strip().lower()) is not None


def duration(text: str, field: str) -> float:
    """Seconds in a duration such as `10s`, `5m`, `1h30m`, `7d` (a bare number: seconds)."""
    cleaned = text.strip().lower()
    try:
        seconds = float(cleaned)
    except ValueError:
        if not is_duration(cleaned):
            raise BadInput(
                f"invalid {field} {text!r}: expected a duration such as 10s, 5m, 1h30m or 7d"
            ) from None
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    if not math.isfinite(seconds) or seconds < 0:
        raise BadInput(f"invalid {field} {text!r}: must be 0 or more seconds")
    return seconds


def instant(text: str, field: str, *, now: float, zone_name: str, sign: int) -> float:
    """An epoch from a duration (`sign` +1: that long after `now`, -1: before) or an ISO
    time (naive ones are wall times in `zone_name`)."""
    from .scheduling import zone

    cleaned = text.strip()
    if is_duration(cleaned.lower()):
        epoch = now + sign * duration(cleaned, field)
    else:
        try:
            parsed = datetime.fromisoformat(cleaned)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=zone(zone_name))
            epoch = parsed.timestamp()
        except (ValueError, OverflowError):
            raise _rule(text, field) from None
    if not EARLIEST <= epoch <= LATEST:
        raise BadInput(f"invalid {field} {text!r}: must be between 1970 and 9998")
    return epoch
