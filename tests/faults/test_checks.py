"""The fault suite's judge on hand-made records: it must catch what it claims to catch."""

from __future__ import annotations

from typing import Any

import pytest

from .checks import Verdict, judge, settled
from .summary import decode, encode

pytestmark = [pytest.mark.faults]

S = "every-second"
COALESCED = "coalesced 2 missed firings (00:00:01 to 00:00:02)"  # fire times 1 and 2


def rec(fire: int, status: str, attempt: int = 1, error: str | None = None) -> dict[str, Any]:
    return {
        "schedule": S,
        "fire_time": fire,
        "status": status,
        "attempt": attempt,
        "error": error,
        "member": "w1",
    }


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        # (duplicates, unexplained, missing)
        ([rec(1, "succeeded"), rec(2, "succeeded")], (0, 0, 0)),
        ([rec(1, "succeeded"), rec(1, "succeeded", 2), rec(2, "succeeded")], (1, 0, 0)),
        ([rec(1, "succeeded"), rec(1, "failed", 1, "x"), rec(2, "succeeded")], (1, 0, 0)),
        ([rec(1, "succeeded")], (0, 0, 1)),
        ([rec(1, "lost", 1, "gone"), rec(1, "succeeded", 2), rec(2, "succeeded")], (0, 0, 0)),
        # lost and never retried: a miss nobody explains
        ([rec(1, "lost", 1, "gone"), rec(2, "succeeded")], (0, 1, 0)),
        # failed until the attempts ran out: explained
        (
            [*(rec(1, "failed", a, "disk full") for a in (1, 2, 3, 4)), rec(2, "succeeded")],
            (0, 0, 0),
        ),
        ([rec(1, "skipped", 1, "overlap"), rec(2, "succeeded")], (0, 0, 0)),
        ([rec(1, "skipped"), rec(2, "succeeded")], (0, 1, 0)),  # no reason given
        # 1 coalesced into the catch-up at 2 (its note names the stretch): explained
        ([{**rec(2, "succeeded"), "trigger": "catch-up", "warning": COALESCED}], (0, 0, 0)),
        # a catch-up whose stretch does not reach 1 explains nothing
        ([{**rec(2, "succeeded"), "trigger": "catch-up", "warning": "x"}], (0, 0, 1)),
    ],
)
def test_judge(records: list[dict[str, Any]], expected: tuple[int, int, int]) -> None:
    verdict = judge("t", records, S, (1, 2), retries=3)
    assert (verdict.duplicates, verdict.unexplained, verdict.missing) == expected
    assert verdict.firings == 2


def test_settled_waits_for_running_records_and_pending_retries() -> None:
    assert not settled([rec(1, "running")], S, (1, 1), 3)
    assert not settled([rec(1, "failed", 1, "x")], S, (1, 1), 3)
    assert not settled([], S, (1, 1), 3)
    assert settled([rec(1, "failed", 1, "x"), rec(1, "succeeded", 2)], S, (1, 1), 3)
    assert settled([rec(1, "failed", 4, "x")], S, (1, 1), 3)


def test_a_verdict_travels_to_the_xdist_controller_whole() -> None:
    verdict = Verdict("etcd leader SIGKILL", firings=11, missing=1, containers_left=2)
    verdict.outcomes.update({"succeeded": 10, "succeeded on retry": 1})
    verdict.details.append("1796139000: no record")
    assert decode(encode(verdict)) == verdict
