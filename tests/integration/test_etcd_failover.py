"""One-off commands keep working while one member of a three-member etcd is down: a
member that cannot be reached at all is skipped for the next endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from maomao_cli.config import EtcdSettings
from maomao_cli.store.etcd import EtcdStore
from servers import EtcdCluster

pytestmark = pytest.mark.etcd


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    three = EtcdCluster(3).start()
    yield three
    three.stop()


def test_fresh_clients_fail_over_past_a_stopped_member(cluster: EtcdCluster) -> None:
    cluster.members[1].stop()
    endpoints = tuple(cluster.endpoints.split(","))
    failures = []
    # Each new client starts on a random endpoint: 20 of them meet the stopped one often.
    for attempt in range(20):
        store = EtcdStore(EtcdSettings(endpoints=endpoints, timeout=2))
        try:
            store.put("/failover/k", str(attempt).encode())
            entry = store.get("/failover/k")
            assert entry is not None and entry.value == str(attempt).encode()
        except Exception as exc:  # collected, so the assertion shows every failure
            failures.append(str(exc))
        finally:
            store.close()
    assert failures == []
