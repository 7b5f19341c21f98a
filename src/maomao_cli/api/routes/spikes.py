"""/v1/spikes: the stored spikes, like `maomao spikes --json`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ... import validation
from ...models import Spike
from ..deps import PathName, QueryName, ServicesDep
from ..views import list_of, view, view_of

router = APIRouter(tags=["spikes"])


@router.get("/spikes", response_model=list_of(Spike))
def spikes(
    services: ServicesDep,
    tool: QueryName = None,
    since: str | None = Query(None, description="Only spikes whose sortable >= this."),
    limit: int | None = Query(None, ge=1, le=10_000),
    member: QueryName = None,
) -> list[Any]:
    """Stored spikes, newest first, like `maomao spikes --json`; `member`: one member's."""
    if tool is not None:
        validation.name(tool, "tool name")
    if member is not None:
        validation.name(member, "member name")
    found = services.spikes.stored(tool, since, member)
    return [view(s) for s in (found if limit is None else found[:limit])]


@router.get("/spikes/{tool}/{sortable}", response_model=view_of(Spike))
def spike(tool: PathName, sortable: str, services: ServicesDep) -> Any:
    return view(services.spikes.get(tool, sortable))
