"""/v1/runs: run records, like `maomao runs` and `maomao logs`, and run-now."""

from __future__ import annotations

from fastapi import APIRouter, Query

from ... import validation
from ...models import Run
from ..deps import LauncherDep, QueryName, ServicesDep
from ..errors import BUSY_RESPONSE
from ..schemas import RunAccepted, RunCreate

router = APIRouter(tags=["runs"])


@router.get("/runs", response_model=list[Run])
def runs(
    services: ServicesDep,
    tool: QueryName = None,
    limit: int | None = Query(None, ge=1, le=10_000),
) -> list[Run]:
    """Run records, newest first."""
    if tool is not None:
        validation.name(tool, "tool name")
    return services.runs.list(tool=tool, limit=limit)


@router.get("/runs/{run_id}", response_model=Run)
def run(run_id: str, services: ServicesDep) -> Run:
    return services.runs.get(run_id)


@router.post("/runs", response_model=RunAccepted, status_code=202, responses=BUSY_RESPONSE)
def create_run(body: RunCreate, launcher: LauncherDep) -> RunAccepted:
    """Run a tool now on this server's member, like `maomao run TOOL`."""
    started = launcher.start(body.tool)
    return RunAccepted(run_id=started.id, tool=started.tool, url=f"/v1/runs/{started.id}")
