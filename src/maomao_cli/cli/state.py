"""What every command gets through `typer.Context.obj`: its output and its services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from .output import Output

if TYPE_CHECKING:
    from ..composition import Services


@dataclass
class CliState:
    out: Output
    # Built by the root callback from the global options, unless a test injected one.
    built: Services | None = None
    injected: Services | None = None

    @property
    def services(self) -> Services:
        services = self.injected or self.built
        if services is None:  # only a command invoked without the root callback
            raise RuntimeError("no services: the root callback did not run")
        return services

    def close(self) -> None:
        if self.built is not None:
            self.built.close()
            self.built = None


def use(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    if not isinstance(state, CliState):
        raise RuntimeError("maomao commands run through the maomao CLI group")
    return state
