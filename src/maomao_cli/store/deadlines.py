"""How a command's [etcd] timeout is shared between a request and the quorum probe after
it (no gRPC here: the gateway store reads with these without importing it)."""

from __future__ import annotations

# Seconds the quorum probe may take at most, after a request found no answer.
PROBE_BUDGET = 1.5


def probe_budget(timeout: float) -> float:
    """The part of a command's [etcd] timeout kept for telling a lost quorum from a slow
    cluster, so that the cause is named within the timeout, not after it."""
    return min(PROBE_BUDGET, timeout * 0.2)


def call_deadline(timeout: float) -> float:
    """How long one request may wait for its answer (the rest is the probe's)."""
    return timeout - probe_budget(timeout)
