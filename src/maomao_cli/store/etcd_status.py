"""What `maomao status` shows of the etcd member the store uses: its Status answer, its
alarms, and the few gauges of its /metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from ..config import EtcdSettings
from .base import StoreStatus

# etcd's AlarmType values (etcdserverpb.AlarmType).
ALARMS = {1: "NOSPACE", 2: "CORRUPT"}
QUOTA = "etcd_server_quota_backend_bytes"
COMPACTED = "etcd_debugging_mvcc_compact_revision"


def store_status(
    endpoint: str, status: Any, alarms: list[Any], metrics: dict[str, float]
) -> StoreStatus:
    quota = metrics.get(QUOTA)
    compacted = metrics.get(COMPACTED)
    return StoreStatus(
        endpoint=endpoint,
        version=str(status.version),
        leader=int(status.leader),
        member_id=int(status.header.member_id),
        raft_index=int(status.raftIndex),
        db_size=int(status.dbSize),
        revision=int(status.header.revision),
        alarms=tuple(ALARMS.get(int(a.alarm_type), str(a.alarm_type)) for a in alarms),
        quota=int(quota) if quota is not None else None,
        compact_revision=int(compacted) if compacted is not None else None,
    )


def read_metrics(settings: EtcdSettings, endpoint: str) -> dict[str, float]:
    """The few gauges of etcd's /metrics (on its client port) that the status shows;
    empty when they cannot be read (a proxy in front, a refused certificate)."""
    import ssl
    import urllib.request

    context = None
    if settings.ca_file:
        context = ssl.create_default_context(cafile=settings.ca_file)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file)
    url = f"{'https' if context else 'http'}://{endpoint}/metrics"
    try:
        timeout = min(settings.timeout, 2.0)
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return gauges(raw.decode("ascii", "replace") for raw in response)
    except (OSError, ValueError):
        return {}


def gauges(lines: Iterable[str]) -> dict[str, float]:
    """The gauges the status shows, from the lines of a /metrics page."""
    found: dict[str, float] = {}
    for line in lines:
        name, _, value = line.partition(" ")
        if name in (QUOTA, COMPACTED):
            with contextlib.suppress(ValueError):
                found[name] = float(value)
    return found


def wanted_lines(page: bytes) -> list[str]:
    """The lines of a whole /metrics page (150 KB, 2,000 lines) that gauges() reads,
    found without splitting the rest."""
    found = []
    page = b"\n" + page  # the first line too follows a newline
    for name in (QUOTA, COMPACTED):
        start = page.find(f"\n{name} ".encode()) + 1
        if start:
            end = page.find(b"\n", start)
            found.append(page[start : None if end < 0 else end].decode("ascii", "replace"))
    return found
