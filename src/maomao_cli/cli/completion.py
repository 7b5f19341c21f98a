"""Shell completion of names from etcd: tools, schedules, datasets, members, run ids.

Typer's `--install-completion` sets it up; pressing Tab runs `maomao` with the words typed
so far, and these functions answer from etcd with a short timeout. A completion must never
print an error nor hang a shell: no etcd, a bad config, anything at all, gives no names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import typer

from .state import CliState

if TYPE_CHECKING:
    from ..composition import Services

# Seconds etcd has to answer a completion before the shell gets no names.
TIMEOUT = 1.0


def _services(ctx: typer.Context) -> tuple[Services, bool]:
    """The invocation's services (injected by a test), or ones built from the global
    options with the short timeout; True when built here (to be closed)."""
    root = ctx.find_root()
    state = root.obj
    if isinstance(state, CliState) and state.injected is not None:
        return state.injected, False
    from ..composition import Services

    params = root.params
    options = Services.from_options(params.get("config"), params.get("etcd"), params.get("prefix"))
    settings = options.settings
    quick = replace(settings, etcd=replace(settings.etcd, timeout=TIMEOUT))
    return Services(quick, endpoints_from_file=False if params.get("etcd") else None), True


def _complete(names: Callable[[Services], list[str]]) -> Callable[[typer.Context, str], list[str]]:
    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        try:
            services, owned = _services(ctx)
            try:
                return sorted(n for n in names(services) if n.startswith(incomplete))
            finally:
                if owned:
                    services.close()
        except Exception:  # a completion shows nothing rather than fail
            return []

    return complete


tools = _complete(lambda s: [t.name for t in s.registry.tools()])
schedules = _complete(lambda s: [x.name for x in s.schedules.all()])
datasets = _complete(lambda s: [d.name for d in s.registry.datasets()])
members = _complete(lambda s: [m.name for m in s.members.live()])
runs = _complete(lambda s: [r.id for r in s.run_records.list(limit=50)])
