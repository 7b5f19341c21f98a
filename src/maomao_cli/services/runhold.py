"""A manual run's own lease (`maomao run`, `POST /v1/runs`): a key under
<prefix>/held/<run-id> that lives exactly as long as the run does.

A worker's lost-run sweep marks `lost` the `running` records of members that are gone;
a manual run belongs to no live worker, so without this every sweep (a worker starting, a
member leaving) would take it for lost while it runs. The key is written before the
first `running` record and revoked after the final one, so a sweep that reads the runs
and then the held keys never sees the record without its key. If the process dies, the
lease expires, the key goes, and the next sweep marks the run lost, as it should.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from types import TracebackType

from ..errors import MaomaoError
from ..store.base import Lease, Store

log = logging.getLogger("maomao.runs")


class RunHold:
    def __init__(self, store: Store, key: str, *, ttl: int, run_id: str, member: str) -> None:
        self._store = store
        self._key = key
        self._ttl = ttl
        self._value = json.dumps({"v": 1, "run": run_id, "member": member}).encode()
        self._lease: Lease | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return max(self._ttl / 3, 0.5)

    def __enter__(self) -> RunHold:
        self._take()  # raises Unavailable: then the run does not start
        self._thread = threading.Thread(target=self._keep, name="run-hold", daemon=True)
        self._thread.start()
        return self

    def _take(self) -> None:
        lease = self._store.grant_lease(self._ttl)
        self._store.put(self._key, self._value, lease=lease.id)
        self._lease = lease

    def _keep(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                lease = self._lease
                if lease is None or not lease.refresh():
                    self._take()  # it expired (etcd was away): hold the run again
            except MaomaoError as exc:
                log.warning("could not refresh the lease of a running run: %s", exc)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        lease, self._lease = self._lease, None
        if lease is not None:
            with contextlib.suppress(MaomaoError):  # it expires by itself
                lease.revoke()
