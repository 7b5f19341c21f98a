"""Click's exceptions: vendored inside Typer since 0.22, a separate dependency before."""

from __future__ import annotations

from typer import Abort, Exit

try:
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older Typer
    from click.exceptions import (  # type: ignore[no-redef,import-not-found,assignment,unused-ignore]
        ClickException,
        UsageError,
    )

__all__ = ["Abort", "ClickException", "Exit", "UsageError"]
