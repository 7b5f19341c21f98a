"""How long each fault lasts: short (the default, for CI) and full (`MAOMAO_FAULTS=full`,
the durations of issue 9: a 20 s partition, etcd down for 15 s...)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Profile:
    name: str
    baseline: float  # seconds of normal running before each fault
    settle: float  # seconds of normal running after each fault, inside the window
    worker_dead: float  # a SIGKILLed worker stays dead this long (> lease_ttl)
    leader_dead: float
    partition: float
    etcd_down: float
    disk_full: float


PROFILES = {
    "short": Profile("short", 3, 4, 6, 5, 8, 8, 6),
    "full": Profile("full", 5, 8, 15, 15, 20, 15, 20),
}


def profile() -> Profile:
    chosen = os.environ.get("MAOMAO_FAULTS", "short")
    if chosen not in PROFILES:
        raise pytest.UsageError(f"MAOMAO_FAULTS must be one of {sorted(PROFILES)}, not {chosen!r}")
    return PROFILES[chosen]
