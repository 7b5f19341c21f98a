"""`maomao worker`, `members` (being built)."""

from __future__ import annotations

from . import output


def worker() -> None:
    """Run the worker: claim and run due firings, detect spikes."""
    output.fail(1, "not available yet")


def members() -> None:
    """List live members."""
    output.fail(1, "not available yet")
