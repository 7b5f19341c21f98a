"""The 2019 routes, as the 2019 README's curl commands call them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ... import validation
from ...errors import BadInput
from ...models import Dataset, Tool
from ...scheduling import resolve_cron
from ..deps import LauncherDep, ServicesDep
from ..errors import BUSY_RESPONSE, error
from ..responses import SafeJSONResponse
from ..schemas import (
    LegacyDataset,
    LegacyDatasetOut,
    LegacyRegister,
    LegacyRetrieve,
    LegacyRun,
    LegacyToolOut,
    RunAccepted,
    ScheduleResult,
)
from .schedules import schedule_out

router = APIRouter(tags=["2019"])


@router.post("/register", response_model=LegacyToolOut)
def register(body: LegacyRegister, services: ServicesDep) -> LegacyToolOut:
    """Register a tool (`url` is its image), like `maomao register NAME IMAGE`."""
    tool, created = services.registry.register_tool(body.spec())
    return LegacyToolOut(status="registered" if created else "updated", tool=tool)


@router.post(
    "/run",
    status_code=202,
    response_model=RunAccepted | ScheduleResult,
    responses={200: {"model": ScheduleResult, "description": "Scheduled"}, **BUSY_RESPONSE},
)
def run(body: LegacyRun, services: ServicesDep, launcher: LauncherDep) -> Any:
    """`cron: false` runs now (202, the run id at once), like `maomao run NAME`;
    `cron: true` with `frequency` schedules, like `maomao run NAME --daily`."""
    tool = services.registry.get_tool(body.name)
    if body.dataset is not None:
        validation.name(body.dataset, "dataset name")
        if tool.dataset is not None and tool.dataset != body.dataset:
            raise BadInput(
                f"tool {tool.name!r} writes into dataset {tool.dataset!r}, not {body.dataset!r}"
            )
    if body.cron:
        if body.frequency is None:
            raise BadInput('"cron": true needs "frequency": "daily", "weekly" or "hourly"')
        expression = resolve_cron(cron=None, **{body.frequency: True})
        schedule, created = services.schedules.create(tool.name, expression)
        result = ScheduleResult(
            status="scheduled" if created else "rescheduled",
            schedule=schedule_out(services, schedule, 3),
        )
        return SafeJSONResponse(result.model_dump(mode="json"), status_code=200)
    if body.frequency is not None:
        raise BadInput('"frequency" needs "cron": true (or leave it out to run now)')
    started = launcher.start(tool.name)
    return RunAccepted(run_id=started.id, tool=started.tool, url=f"/v1/runs/{started.id}")


@router.get("/regtools", response_model=list[Tool])
def regtools(services: ServicesDep) -> list[Tool]:
    """The registered tools, like `maomao tools --json`."""
    return sorted(services.registry.tools(), key=lambda t: t.name)


@router.get("/datasets", response_model=list[Dataset])
def datasets(services: ServicesDep) -> list[Dataset]:
    """The registered datasets, like `maomao dataset list --json`."""
    return sorted(services.registry.datasets(), key=lambda d: d.name)


@router.post("/regdata", response_model=LegacyDatasetOut)
def regdata(body: LegacyDataset, services: ServicesDep) -> LegacyDatasetOut:
    """Register a dataset (a git URL), like `maomao dataset add NAME URL`."""
    dataset, created = services.registry.add_dataset(body.spec())
    return LegacyDatasetOut(status="registered" if created else "updated", dataset=dataset)


@router.post("/retrieve", responses={200: {"description": "Cloned"}})
def retrieve(body: LegacyRetrieve, services: ServicesDep) -> JSONResponse:
    """Clone a dataset on the server, into <importdir>/datasets/NAME, like
    `maomao dataset clone NAME`: 200 with the path, 409 when it is there already."""
    dataset = services.registry.get_dataset(body.name)
    service = services.datasets
    target = service.work_dir(dataset)

    def already() -> JSONResponse:
        return error(
            409,
            "already-cloned",
            f"dataset {dataset.name!r} is already cloned on this server at {target}",
            "update it with `maomao dataset pull` on the server",
        )

    if service.is_cloned(dataset):
        return already()
    try:
        path = service.clone(dataset.name)
    except BadInput:
        if service.is_cloned(dataset) or target.exists():
            return already()  # a concurrent request cloned it, or something is in the way
        raise
    return SafeJSONResponse({"status": "cloned", "name": dataset.name, "path": str(path)})
