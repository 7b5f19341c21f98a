"""Loading the spike detector's libraries before the first run needs them.

scipy takes seconds of CPU to import. Loaded inside a run's after-run hook, it would hold
the tool's overlap guard that long; loaded at start, it would cost every worker, even one
that never runs a tool. So it is loaded on a thread of its own when the worker wins its
first firing, while that firing's container runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .observer import NoObserver


def load_detector() -> None:
    import numpy  # noqa: F401
    import scipy.ndimage
    import scipy.signal  # noqa: F401


class WarmDetector(NoObserver):
    def __init__(self, load: Callable[[], None] = load_detector) -> None:
        self._load = load
        self._started = threading.Event()

    def claimed(self, schedule: str, *, won: bool, lag: float) -> None:
        if won and not self._started.is_set():
            self._started.set()
            threading.Thread(target=self._load, name="warm-up", daemon=True).start()
