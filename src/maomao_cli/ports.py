"""The ports: the interfaces services depend on; adapters implement them."""

from __future__ import annotations

import threading
from typing import Protocol

# --- worker: the clock ----------------------------------------------------------------
# The worker reads the time and waits only through this port, so its tests run on a fake
# clock that moves instantly (tests/fakes/clock.py) instead of sleeping.


class Clock(Protocol):
    def now(self) -> float:
        """Wall time, epoch seconds (what fire times and records use)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for deadlines)."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Block until `event` is set or `timeout` seconds pass; True if it is set."""
        ...


# --- end worker: the clock ---------------------------------------------------------------
