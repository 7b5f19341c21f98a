"""How long a firing claim lives: the schedule's period, grace and retries, not a day for
every schedule (policy.claim_life). Pure: a table."""

from __future__ import annotations

import pytest

from maomao_cli.config import WorkerSettings
from maomao_cli.models import Schedule
from maomao_cli.services.worker.policy import claim_life

FIRE = 1_699_920_000.0  # 2023-11-14 00:00 UTC: a firing of each cron below


@pytest.mark.parametrize(
    ("cron", "grace", "retries", "expected"),
    [
        ("* * * * * *", 0.0, 0, 64),  # every second, no grace: the floor
        ("* * * * * *", 300.0, 0, 512),  # 1 + 300 s
        ("* * * * *", 300.0, 2, 1024),  # 60 + 300 + 2 x 300 (backoff_max) = 960 s
        ("0 * * * *", 300.0, 0, 4096),  # 3,600 + 300 s
        ("0 0 * * *", 300.0, 2, 86400),  # daily: capped at [worker] firings_ttl
    ],
)
def test_claim_life_follows_the_schedule(
    cron: str, grace: float, retries: int, expected: int
) -> None:
    schedule = Schedule(name="s", tool="t", cron=cron, grace=grace, retries=retries)
    settings = WorkerSettings(backoff_max=300.0, firings_ttl=86400)
    assert claim_life(schedule, FIRE, settings) == expected


def test_claim_life_never_exceeds_firings_ttl() -> None:
    schedule = Schedule(name="s", tool="t", cron="0 0 1 1 *", grace=0.0, retries=0)
    assert claim_life(schedule, FIRE, WorkerSettings(firings_ttl=3600)) == 3600
