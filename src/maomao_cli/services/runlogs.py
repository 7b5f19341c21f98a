"""`maomao logs RUN --full`: a run's every line, from this host when it keeps them, else
from the member that ran it, asked through etcd (services/logrequests.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..errors import NotFound, Unavailable
from ..frozen import frozen
from ..keys import Keys
from ..models import Member, Run
from ..store.base import Store
from . import logrequests
from .fulllogs import FullLogRefused
from .records import load
from .runs import RunService

if TYPE_CHECKING:
    from ..ports import Clock  # a protocol: annotations only (ports imports the store's types)


@frozen
class FullLog:
    run: Run
    data: bytes
    source: Literal["here", "member"]


class RunLogService:
    def __init__(
        self, runs: RunService, store: Store, keys: Keys, *, clock: Clock, wait: float
    ) -> None:
        self.runs = runs
        self.store = store
        self.keys = keys
        self.clock = clock
        self.wait = wait  # [worker] full_log_wait

    def full(self, run_id: str, *, wait: float | None = None) -> FullLog:
        """The full log of a run. NotFound: no such run, or its member keeps no full log
        of it; Unavailable: its member is not in the member list or does not answer."""
        record = self.runs.get(run_id)  # validates the id
        logs = self.runs.full_logs
        try:
            data = logs.read(record.id)
        except FullLogRefused as exc:
            raise Unavailable(f"the full log of run {record.id} here is refused: {exc}") from None
        if data is not None:
            return FullLog(record, data, "here")
        member = load(self.store, self.keys.member(record.member), Member)
        asked = logrequests.Asked(record.id, record.member, member.host if member else None)
        if member is None and record.member == self.runs.member:
            raise NotFound(
                f"this member ({record.member}) keeps no full log of run {record.id} in "
                f"{logs.directory}, and its worker is not running to ask",
                hint=f"start `maomao worker` (it may keep them in its own statedir), or "
                f"`maomao logs {record.id}` for the last 16 KiB",
            )
        if member is None:
            raise logrequests.absent(asked)
        data = logrequests.fetch(
            self.store,
            self.keys,
            asked,
            wait=self.wait if wait is None else wait,
            limit=logs.read_limit,
            clock=self.clock,
        )
        return FullLog(record, data, "member")
