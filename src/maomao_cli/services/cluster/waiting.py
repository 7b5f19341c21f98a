"""Waiting on etcd during a membership change: a clock that tests replace, and retrying a
change while etcd refuses it for a reason that passes by itself (named by error type)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ...errors import MaomaoError, UnhealthyCluster
from ...frozen import frozen

T = TypeVar("T")


@frozen
class Clock:
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def retrying(
    change: Callable[[], T],
    *,
    retry_on: tuple[type[MaomaoError], ...],
    deadline: float,
    interval: float,
    clock: Clock,
) -> T:
    """`change()`, again every `interval` s while it raises one of `retry_on`; the last
    such error once `deadline` (on `clock.monotonic`) has passed."""
    while True:
        try:
            return change()
        except retry_on:
            if clock.monotonic() >= deadline:
                raise
        clock.sleep(interval)


def when_healthy(change: Callable[[], T], clock: Clock, wait: float = 20.0) -> T:
    """etcd refuses a membership change ("unhealthy cluster") until the members have been
    connected for a few seconds, e.g. right after one joined or restarted."""
    return retrying(
        change,
        retry_on=(UnhealthyCluster,),
        deadline=clock.monotonic() + wait,
        interval=0.5,
        clock=clock,
    )
