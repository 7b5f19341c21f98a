"""/v1/runs: run records, like `maomao runs` and `maomao logs`, and run-now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ... import validation
from ...models import Run
from ..deps import LauncherDep, QueryName, ServicesDep
from ..errors import BUSY_RESPONSE
from ..schemas import RunAccepted, RunCreate
from ..views import list_of, view, view_of

router = APIRouter(tags=["runs"])


@router.get("/runs", response_model=list_of(Run))
def runs(
    services: ServicesDep,
    tool: QueryName = None,
    limit: int | None = Query(None, ge=1, le=10_000),
) -> list[Any]:
    """Run records, newest first."""
    if tool is not None:
        validation.name(tool, "tool name")
    return [view(r) for r in services.run_records.list(tool=tool, limit=limit)]


@router.get("/runs/{run_id}", response_model=view_of(Run))
def run(run_id: str, services: ServicesDep) -> Any:
    return view(services.run_records.get(run_id))


@router.post("/runs", response_model=RunAccepted, status_code=202, responses=BUSY_RESPONSE)
def create_run(body: RunCreate, launcher: LauncherDep) -> RunAccepted:
    """Run a tool now on this server's member, like `maomao run TOOL`."""
    started = launcher.start(body.tool)
    return RunAccepted(run_id=started.id, tool=started.tool, url=f"/v1/runs/{started.id}")
