"""The per-invocation context, set by the global callback, read by commands."""

from __future__ import annotations

from ..context import Context

_current: Context | None = None


def set_context(ctx: Context) -> None:
    global _current
    _current = ctx


def ctx() -> Context:
    global _current
    if _current is None:  # commands invoked without the callback (tests calling functions)
        _current = Context()
    return _current
