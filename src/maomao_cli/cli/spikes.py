"""`maomao spikes` (being built)."""

from __future__ import annotations

from . import output


def spikes() -> None:
    """List spikes in the control metric of a tool."""
    output.fail(1, "not available yet")
