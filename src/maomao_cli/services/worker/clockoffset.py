"""Clock offset: how far this member's clock is from the collaboration's, estimated from
the other members' heartbeats as they arrive.

A heartbeat carries its writer's clock reading; it reaches us through etcd a one-way
delay later. So `received - sent` is our offset from that member plus that delay, which
under load (a slow fsync, a busy process) can be far above its usual value, and is never
below it. The smallest of a member's recent readings, less the smallest delay we measured
over the same time, is the best estimate: each minimum is taken separately, so one delay
measured high at the moment of a fast heartbeat does not pull the estimate down. Our
offset from the collaboration is the median over every member's estimate and our own 0:
with three members or more, the one whose clock is wrong is the one outvoted. Pure: the
times are given, nothing is read.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from ...errors import RecordError
from ...frozen import frozen
from ...models import Member

# Samples kept per member (a heartbeat every lease_ttl / 3 s: 32 cover half a minute or
# more, so a loaded minute still holds a fast one), and how old (monotonic seconds) a
# sample may be: a clock that was stepped back into line is seen as such within it.
SAMPLES_KEPT = 32
SAMPLE_WINDOW = 60.0


@frozen
class _Sample:
    reading: float  # received - sent: the offset plus the delay the heartbeat met
    delay: float  # the one-way delay we estimated as it arrived
    at: float  # monotonic time it was taken


@dataclass
class ClockOffsets:
    samples_kept: int = SAMPLES_KEPT
    window: float = SAMPLE_WINDOW
    _samples: dict[str, deque[_Sample]] = field(default_factory=dict)

    def observe(
        self, member: str, *, sent: float, received: float, delay: float, at: float
    ) -> None:
        """A heartbeat `member` stamped `sent` (its clock) arrived at `received` (ours),
        `delay` being our estimate of the one-way delay; `at` is our monotonic time."""
        if not (math.isfinite(sent) and math.isfinite(received) and math.isfinite(delay)):
            return  # a record from etcd is untrusted: a NaN must not poison the median
        kept = self._samples.setdefault(member, deque(maxlen=self.samples_kept))
        kept.append(_Sample(received - sent, max(delay, 0.0), at))

    def forget(self, member: str) -> None:
        self._samples.pop(member, None)

    def estimate(self, at: float) -> float | None:
        """Seconds our clock is ahead (negative: behind) of the collaboration's, or None
        while no other member has been heard from within the window."""
        per_member = []
        for kept in self._samples.values():
            fresh = [s for s in kept if at - s.at <= self.window]
            if fresh:
                per_member.append(min(s.reading for s in fresh) - min(s.delay for s in fresh))
        if not per_member:
            return None
        return float(statistics.median([0.0, *per_member]))


def describe(offset: float) -> str:
    """E.g. '3.02 s ahead', '0.40 s behind'."""
    return f"{abs(offset):.2f} s {'ahead' if offset >= 0 else 'behind'}"


def observe_heartbeat(
    offsets: ClockOffsets,
    member: str,
    record: bytes | None,
    *,
    received: float,
    delay: float,
    at: float,
) -> None:
    """A member entry as it arrived from etcd: its heartbeat is a sample; its deletion
    (the member left) forgets that member; a record that does not decode is no sample."""
    if record is None:
        offsets.forget(member)
        return
    try:
        entry = Member.from_json(record)
    except RecordError:
        return
    offsets.observe(member, sent=entry.heartbeat, received=received, delay=delay, at=at)
