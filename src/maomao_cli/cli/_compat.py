"""Click's UsageError: vendored inside Typer since 0.22, a separate dependency before."""

from __future__ import annotations

try:
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer
    from click.exceptions import UsageError  # type: ignore[no-redef,import-not-found,assignment,unused-ignore]

__all__ = ["UsageError"]
