"""The worker: follows schedules through an etcd watch, claims due firings with one
create-only transaction, runs them, retries failures, and recovers the runs of dead
members.

One idea per module: `timetable` (which firing is due when, driven by a given time),
`claims` (what a member claims for a due firing, and the values of claims and overlap
guards), `firing` (claim what a free slot can start, settle claims after an outage),
`execution` (a won firing run to its one final record, retries planned), `retries` (retries
waiting for their backoff, recorded in etcd), `membership` (the member entry on its lease,
registered in one create-only transaction), `keepalive` (the lease kept alive on its own
thread and etcd client), `clockoffset` and `skew` (this member's clock against the
collaboration's, and the gate that stops claiming beyond `[worker] max_clock_offset`),
`recovery` (runs of dead members marked lost and retried), and `loop` (the `Worker` that
wires them).

Threads: the scheduler loop (`Worker.run`), one thread per watch (schedules, members, held
manual runs), the keep-alive thread with its own etcd client (from registration to the
very end of shutdown), one that flushes the outbox, one that refreshes the etcd endpoint
list, and a pool of `max_parallel` run threads. Only the scheduler loop decides what fires; the watch
threads only update state and wake it up. Every wait goes through the injected clock.
"""

from .firing import RunExecutor, WorkerStats
from .loop import ENDPOINTS_REFRESH, Worker
from .membership import check_health

__all__ = [
    "ENDPOINTS_REFRESH",
    "RunExecutor",
    "Worker",
    "WorkerStats",
    "check_health",
]
