"""The clock-discipline gate: a member whose clock is off the collaboration's by more
than `[worker] max_clock_offset` claims nothing until it is back within bounds (its
firings would be claimed early or late, and so decide who runs); it says so once each
way."""

from __future__ import annotations

import logging

from ...ports import Clock
from .clockoffset import ClockOffsets, describe

log = logging.getLogger("maomao.worker")


class SkewGate:
    def __init__(
        self, offsets: ClockOffsets, max_offset: float, *, clock: Clock, member: str
    ) -> None:
        self._offsets = offsets
        self._max = max_offset
        self._clock = clock
        self._member = member
        self._holding = False

    def offset(self) -> float | None:
        return self._offsets.estimate(self._clock.monotonic())

    def holds_back(self) -> bool:
        """True while our clock is beyond the bound (unknown counts as within)."""
        offset = self.offset()
        beyond = offset is not None and abs(offset) > self._max
        if beyond and not self._holding:
            assert offset is not None
            log.error(
                "clock of %s is %s of the collaboration's (max_clock_offset %g s): "
                "claiming no firings until it is back within bounds; fix its time sync",
                self._member,
                describe(offset),
                self._max,
            )
        elif self._holding and not beyond:
            log.warning(
                "clock of %s is back within %g s: claiming firings again", self._member, self._max
            )
        self._holding = beyond
        return beyond
