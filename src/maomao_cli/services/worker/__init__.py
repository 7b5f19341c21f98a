"""The worker: follows schedules through an etcd watch, claims due firings with one
create-only transaction, runs them, retries failures, and recovers the runs of dead
members.

One idea per module: `timetable` (which firing is due when, driven by a given time),
`claims` (what a member claims for a due firing, and the values of claims and overlap
guards), `firing` (claim what a free slot can start, settle claims after an outage),
`execution` (a won firing run to its one final record, retries planned), `retries` (retries
waiting for their backoff, recorded in etcd), `membership` (the member entry on its lease,
kept alive), `recovery` (runs of dead members marked lost and retried), and `loop` (the `Worker` that wires them).

Threads: the scheduler loop (`Worker.run`), one thread per watch (schedules, members), one
keep-alive thread for the member lease, one that refreshes the etcd endpoint list, and a
pool of `max_parallel` run threads. Only the scheduler loop decides what fires; the watch
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
