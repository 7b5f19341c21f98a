"""The etcd key layout, in one place (see docs/architecture.md)."""

from __future__ import annotations

from .frozen import frozen


@frozen
class Keys:
    prefix: str = "/maomao"

    def _p(self, *parts: str) -> str:
        return "/".join((self.prefix.rstrip("/"), *parts))

    def tools(self) -> str:
        return self._p("tools", "")

    def tool(self, name: str) -> str:
        return self._p("tools", name)

    def datasets(self) -> str:
        return self._p("datasets", "")

    def dataset(self, name: str) -> str:
        return self._p("datasets", name)

    def schedules(self) -> str:
        return self._p("schedules", "")

    def schedule(self, name: str) -> str:
        return self._p("schedules", name)

    def firings(self, schedule: str | None = None) -> str:
        return self._p("firings", schedule, "") if schedule else self._p("firings", "")

    def firing(self, schedule: str, epoch: int, member: str | None = None) -> str:
        # Mode "everywhere" claims per member: each live member runs each firing once.
        tail = f"{epoch}" if member is None else f"{epoch}@{member}"
        return self._p("firings", schedule, tail)

    def active(self, schedule: str, member: str | None = None) -> str:
        # Lives on the running member's lease: it marks a run in progress for overlap checks.
        return self._p("active", schedule if member is None else f"{schedule}@{member}")

    def retry_claim(
        self, schedule: str, epoch: int, attempt: int, member: str | None = None
    ) -> str:
        return self.firing(schedule, epoch, member) + f".r{attempt}"

    def retries(self) -> str:
        return self._p("retries", "")

    def pending_retry(
        self, schedule: str, epoch: int, attempt: int, member: str | None = None
    ) -> str:
        # A retry waiting for its backoff: any live member claims it if its queuer dies.
        tail = f"{epoch}" if member is None else f"{epoch}@{member}"
        return self._p("retries", schedule, f"{tail}.r{attempt}")

    def requests(self, schedule: str | None = None) -> str:
        # Firings an operator asked for (trigger, backfill); the workers claim them.
        return self._p("requests", schedule, "") if schedule else self._p("requests", "")

    def request(self, schedule: str, tail: str) -> str:
        return self._p("requests", schedule, tail)

    def backfill_slot(self, schedule: str, slot: int) -> str:
        # On the running member's lease: at most --max-parallel backfill runs at once.
        return self._p("slots", schedule, str(slot))

    def slots(self, schedule: str) -> str:
        return self._p("slots", schedule, "")

    def runs(self) -> str:
        return self._p("runs", "")

    def run(self, run_id: str) -> str:
        return self._p("runs", run_id)

    def run_index(self, tool: str, started: float | None = None, run_id: str = "") -> str:
        """One empty key per run of a tool, `<start in microseconds>.<run id>`: sorted by
        start time, so pruning and `runs --tool` read only that tool's keys, newest first."""
        if started is None:
            return self._p("runindex", tool, "")
        return self._p("runindex", tool, f"{max(int(started * 1e6), 0):017d}.{run_id}")

    @staticmethod
    def run_index_entry(key: str) -> tuple[float, str]:
        """(start time, run id) of a run index key."""
        micros, _, run_id = key.rsplit("/", 1)[-1].partition(".")
        return (int(micros) / 1e6 if micros.isdigit() else 0.0), run_id

    def held_runs(self) -> str:
        return self._p("held", "")

    def held_run(self, run_id: str) -> str:
        # Lives on a manual run's own lease while it runs: no lost-run sweep takes it.
        return self._p("held", run_id)

    def members(self) -> str:
        return self._p("members", "")

    def member(self, name: str) -> str:
        return self._p("members", name)

    def spikes(self, tool: str | None = None) -> str:
        return self._p("spikes", tool, "") if tool else self._p("spikes", "")

    def spike(self, tool: str, sortable: str, member: str | None = None) -> str:
        # Per member since two members' runs of one firing may both be spikes; keys
        # without a member (written before) are read as they are.
        return self._p("spikes", tool, sortable if member is None else f"{sortable}@{member}")

    def divergences(self, tool: str | None = None) -> str:
        return self._p("divergences", tool, "") if tool else self._p("divergences", "")

    def divergence(self, tool: str, epoch: int, member: str) -> str:
        return self._p("divergences", tool, f"{epoch}@{member}")

    def log_requests(self, member: str) -> str:
        return self._p("logreq", member, "")

    def log_request(self, member: str, nonce: str) -> str:
        # `maomao logs RUN --full` asks the member that ran RUN, on a short lease.
        return self._p("logreq", member, nonce)

    def log_answer(self, run_id: str, nonce: str) -> str:
        """The prefix of one answer: chunks `<n>` (6 digits) and the marker `end`."""
        return self._p("logs", run_id, nonce, "")

    def log_chunk(self, run_id: str, nonce: str, n: int) -> str:
        return self._p("logs", run_id, nonce, f"{n:06d}")

    def log_answer_end(self, run_id: str, nonce: str) -> str:
        return self._p("logs", run_id, nonce, "end")

    def claim_batch(self) -> str:
        # Put by every transaction of batched claims: etcd's space quota counts only a
        # transaction's own puts, not those of its nested transactions, so without it a
        # full etcd (NOSPACE) would still take claims (store/etcd_claims.py).
        return self._p("claimbatch")

    def leaf(self, key: str) -> str:
        return key.rsplit("/", 1)[-1]
