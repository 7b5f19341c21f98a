"""What route functions receive: the composition root's services, the run launcher, and
the typed path and query parameters they share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from ..composition import Services
from .launcher import RunLauncher
from .schemas import NAME_DOC


async def _services(request: Request) -> Services:
    services: Services = request.app.state.services  # set by create_app
    return services


async def _launcher(request: Request) -> RunLauncher:
    launcher: RunLauncher = request.app.state.launcher  # set by create_app
    return launcher


ServicesDep = Annotated[Services, Depends(_services)]
LauncherDep = Annotated[RunLauncher, Depends(_launcher)]

PathName = Annotated[str, Path(json_schema_extra=NAME_DOC)]
QueryName = Annotated[str | None, Query(json_schema_extra=NAME_DOC)]
