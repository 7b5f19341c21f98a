"""The detector's libraries load at the worker's first won firing, once, and never for a
worker that only lost claims."""

from __future__ import annotations

import threading

from maomao_cli.services.worker.warmup import WarmDetector


def test_loaded_once_at_the_first_won_claim() -> None:
    loads: list[str] = []
    loaded = threading.Event()

    def load() -> None:
        loads.append(threading.current_thread().name)
        loaded.set()

    warm = WarmDetector(load)
    warm.claimed("a", won=False, lag=0.0)
    warm.claimed("b", won=False, lag=0.0)
    assert loads == [] and not loaded.is_set()
    warm.claimed("a", won=True, lag=0.0)
    assert loaded.wait(10)
    warm.claimed("b", won=True, lag=0.0)
    warm.claimed("c", won=True, lag=0.0)
    assert loads == ["warm-up"]
