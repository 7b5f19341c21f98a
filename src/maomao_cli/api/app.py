"""The FastAPI application: thin routes over the same services and validation as the CLI.

Every route parses its body (pydantic, strict), calls a service method, and returns
records. `_status_for` is the one place where maomao's error types become HTTP statuses;
every error is `{"error": {"code", "message", "hint"}}`, never a stack trace.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, validation
from ..composition import Services as Context
from ..errors import BadInput, GitError, MaomaoError, NotFound, Unavailable
from ..keys import Keys
from ..models import Dataset, Member, Run, Schedule, Spike, Tool
from ..scheduling import resolve_cron, zone
from ..services.members import live_members
from ..services.records import load
from ..store.base import Store
from . import events
from .schemas import (
    NAME_DOC,
    DatasetCreate,
    ErrorBody,
    LegacyDataset,
    LegacyDatasetOut,
    LegacyRegister,
    LegacyRetrieve,
    LegacyRun,
    LegacyToolOut,
    RunAccepted,
    RunCreate,
    ScheduleCreate,
    ScheduleOut,
    ScheduleResult,
    ToolCreate,
)

log = logging.getLogger("maomao.serve")

PathName = Annotated[str, Path(json_schema_extra=NAME_DOC)]
QueryName = Annotated[str | None, Query(json_schema_extra=NAME_DOC)]

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Bad input: nothing was written"),
        (401, "Missing or wrong bearer token"),
        (404, "Not found"),
        (413, "Body too large"),
        (422, "Malformed JSON or a wrong type: nothing was written"),
        (500, "Internal error"),
        (409, "Conflicts with the state on the server (e.g. a dataset already cloned)"),
        (502, "A git remote failed (unreachable, timed out, refused the credentials)"),
        (503, "etcd (or another service) is unavailable"),
    )
}


# Errors ------------------------------------------------------------------------


def _status_for(exc: MaomaoError) -> int:
    """The one mapping from maomao's error types to HTTP statuses."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, BadInput):
        return 400
    if isinstance(exc, Unavailable):
        return 503
    if isinstance(exc, GitError):
        return 502
    return 500


def _error(status: int, code: str, message: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "hint": hint}}, status_code=status
    )


def _describe_validation(exc: RequestValidationError) -> tuple[int, str, str]:
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return 400, "bad-json", "request body is not valid JSON"
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return 422, "invalid-request", "; ".join(problems) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MaomaoError)
    async def maomao_error(request: Request, exc: MaomaoError) -> JSONResponse:
        status = _status_for(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        return _error(status, exc.code, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = _describe_validation(exc)
        return _error(status, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not-found", 405: "method-not-allowed"}
        return _error(exc.status_code, codes.get(exc.status_code, "http"), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return _error(500, "internal", "internal error; see the server log")


# Helpers shared by the 2019 and v1 routes ---------------------------------------------


def _iso(epoch: float, zone_name: str) -> str:
    return datetime.fromtimestamp(epoch, zone(zone_name)).isoformat()


def _schedule_out(ctx: Context, schedule: Schedule, count: int) -> ScheduleOut:
    fires = [] if schedule.paused else ctx.schedules.upcoming(schedule, time.time(), count)
    return ScheduleOut(
        **schedule.to_dict(), next_fires=tuple(_iso(t, schedule.timezone) for t in fires)
    )


def get_spike(store: Store, keys: Keys, tool: str, sortable: str) -> Spike:
    validation.name(tool, "tool name")
    if not sortable or "/" in sortable or sortable in (".", ".."):
        raise BadInput(f"invalid spike key {sortable!r}")
    spike = load(store, keys.spike(tool, sortable), Spike)
    if spike is None:
        raise NotFound(f"no spike {sortable!r} for tool {tool!r}", hint="see GET /v1/spikes")
    return spike


class RunLauncher:
    """Runs tools now, each in a background thread through the run service, and
    answers as soon as the `running` record is in etcd."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cancel = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self, tool_name: str) -> Run:
        tool = self.ctx.registry.get_tool(tool_name)
        base = self.ctx.runs
        run_id = base.new_run_id()
        recorded = threading.Event()
        first: list[Run] = []
        failure: list[BaseException] = []
        # A per-request view of the shared service that uses our id and tells us when the
        # `running` record is written (execute() has no run_id/on_start parameter yet).
        service = copy.copy(base)
        save: Callable[[Run], None] = base.save

        def save_and_signal(run: Run) -> None:
            save(run)
            if not first:
                first.append(run)
                recorded.set()

        service.save = save_and_signal  # type: ignore[method-assign]
        service.new_run_id = lambda: run_id  # type: ignore[method-assign]

        def work() -> None:
            try:
                final = service.execute(tool, trigger="manual", cancel=self.cancel)
                log.info("run %s of %s: %s", final.id, final.tool, final.status)
            except BaseException as exc:
                failure.append(exc)
                log.warning("run %s of %s failed: %s", run_id, tool.name, exc)
            finally:
                recorded.set()
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=work, name=f"maomao-run-{run_id}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        recorded.wait(self.ctx.settings.etcd.timeout * 3)
        if first:
            return first[0]
        if failure and isinstance(failure[0], MaomaoError):
            raise failure[0]
        raise Unavailable(f"run {run_id} could not be recorded in etcd")

    def shutdown(self, grace: float) -> None:
        """Stop the runs in progress (their records say failed: interrupted)."""
        self.cancel.set()
        deadline = time.monotonic() + grace
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.1))


# The application --------------------------------------------------------------------


def create_app(ctx: Context) -> FastAPI:
    launcher = RunLauncher(ctx)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(launcher.shutdown, ctx.settings.worker.shutdown_grace)

    app = FastAPI(
        title="maomao",
        version=__version__,
        summary="Collaborative periodic data collection: the 2019 routes and the v1 API.",
        docs_url=None,  # the Swagger page loads scripts from a CDN; /openapi.json is enough
        redoc_url=None,
        responses=_ERROR_RESPONSES,
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    app.include_router(_legacy_routes(ctx, launcher))
    app.include_router(_v1_routes(ctx, launcher), prefix="/v1")
    return app


def _legacy_routes(ctx: Context, launcher: RunLauncher) -> APIRouter:
    router = APIRouter(tags=["2019"])

    @router.post("/register", response_model=LegacyToolOut)
    def register(body: LegacyRegister) -> LegacyToolOut:
        """Register a tool (`url` is its image), like `maomao register NAME IMAGE`."""
        tool, created = ctx.registry.register_tool(body.spec())
        return LegacyToolOut(status="registered" if created else "updated", tool=tool)

    @router.post(
        "/run",
        status_code=202,
        response_model=RunAccepted | ScheduleResult,
        responses={200: {"model": ScheduleResult, "description": "Scheduled"}},
    )
    def run(body: LegacyRun) -> Any:
        """`cron: false` runs now (202, the run id at once), like `maomao run NAME`;
        `cron: true` with `frequency` schedules, like `maomao run NAME --daily`."""
        tool = ctx.registry.get_tool(body.name)
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
            schedule, created = ctx.schedules.create(tool.name, expression)
            result = ScheduleResult(
                status="scheduled" if created else "rescheduled",
                schedule=_schedule_out(ctx, schedule, 3),
            )
            return JSONResponse(result.model_dump(mode="json"), status_code=200)
        if body.frequency is not None:
            raise BadInput('"frequency" needs "cron": true (or leave it out to run now)')
        started = launcher.start(tool.name)
        return RunAccepted(run_id=started.id, tool=started.tool, url=f"/v1/runs/{started.id}")

    @router.get("/regtools", response_model=list[Tool])
    def regtools() -> list[Tool]:
        """The registered tools, like `maomao tools --json`."""
        return sorted(ctx.registry.tools(), key=lambda t: t.name)

    @router.get("/datasets", response_model=list[Dataset])
    def datasets() -> list[Dataset]:
        """The registered datasets, like `maomao dataset list --json`."""
        return sorted(ctx.registry.datasets(), key=lambda d: d.name)

    @router.post("/regdata", response_model=LegacyDatasetOut)
    def regdata(body: LegacyDataset) -> LegacyDatasetOut:
        """Register a dataset (a git URL), like `maomao dataset add NAME URL`."""
        dataset, created = ctx.registry.add_dataset(body.spec())
        return LegacyDatasetOut(status="registered" if created else "updated", dataset=dataset)

    @router.post("/retrieve", responses={200: {"description": "Cloned"}})
    def retrieve(body: LegacyRetrieve) -> JSONResponse:
        """Clone a dataset on the server, into <importdir>/datasets/NAME, like
        `maomao dataset clone NAME`: 200 with the path, 409 when it is there already."""
        dataset = ctx.registry.get_dataset(body.name)
        service = ctx.datasets
        target = service.work_dir(dataset)

        def already() -> JSONResponse:
            return _error(
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
        return JSONResponse({"status": "cloned", "name": dataset.name, "path": str(path)})

    return router


def _v1_routes(ctx: Context, launcher: RunLauncher) -> APIRouter:
    router = APIRouter()

    # Tools
    @router.get("/tools", response_model=list[Tool], tags=["tools"])
    def tools() -> list[Tool]:
        return sorted(ctx.registry.tools(), key=lambda t: t.name)

    @router.get("/tools/{name}", response_model=Tool, tags=["tools"])
    def tool(name: PathName) -> Tool:
        return ctx.registry.get_tool(name)

    @router.post("/tools", response_model=Tool, status_code=201, tags=["tools"])
    def create_tool(body: ToolCreate) -> Tool:
        """Create or update a tool (201 either way), like `maomao register`."""
        created, _ = ctx.registry.register_tool(body.spec())
        return created

    @router.delete("/tools/{name}", response_model=Tool, tags=["tools"])
    def delete_tool(name: PathName) -> Tool:
        return ctx.registry.unregister_tool(name)

    # Datasets
    @router.get("/datasets", response_model=list[Dataset], tags=["datasets"])
    def datasets() -> list[Dataset]:
        return sorted(ctx.registry.datasets(), key=lambda d: d.name)

    @router.get("/datasets/{name}", response_model=Dataset, tags=["datasets"])
    def dataset(name: PathName) -> Dataset:
        return ctx.registry.get_dataset(name)

    @router.post("/datasets", response_model=Dataset, status_code=201, tags=["datasets"])
    def create_dataset(body: DatasetCreate) -> Dataset:
        created, _ = ctx.registry.add_dataset(body.spec())
        return created

    # Schedules
    @router.get("/schedules", response_model=list[ScheduleOut], tags=["schedules"])
    def schedules() -> list[ScheduleOut]:
        found = sorted(ctx.schedules.all(), key=lambda s: s.name)
        return [_schedule_out(ctx, s, 1) for s in found]

    @router.get("/schedules/{name}", response_model=ScheduleOut, tags=["schedules"])
    def schedule(name: PathName) -> ScheduleOut:
        return _schedule_out(ctx, ctx.schedules.get(name), 5)

    @router.post("/schedules", response_model=ScheduleResult, status_code=201, tags=["schedules"])
    def create_schedule(body: ScheduleCreate) -> ScheduleResult:
        """Create or replace a schedule, like `maomao run TOOL --daily` or `--cron`."""
        expression = resolve_cron(
            cron=body.cron,
            hourly=body.every == "hourly",
            daily=body.every == "daily",
            weekly=body.every == "weekly",
        )
        selector = (
            validation.labels([f"{k}={v}" for k, v in body.on.items()], "on") if body.on else None
        )
        created, new = ctx.schedules.create(
            body.tool,
            expression,
            timezone=body.timezone,
            mode=body.mode,
            on=selector,
            name=body.name,
            overlap=body.overlap,
            retries=body.retries,
            grace=body.grace,
        )
        return ScheduleResult(
            status="scheduled" if new else "rescheduled", schedule=_schedule_out(ctx, created, 3)
        )

    @router.delete("/schedules/{name}", response_model=Schedule, tags=["schedules"])
    def delete_schedule(name: PathName) -> Schedule:
        return ctx.schedules.remove(name)

    # Runs
    @router.get("/runs", response_model=list[Run], tags=["runs"])
    def runs(tool: QueryName = None, limit: int | None = Query(None, ge=1, le=10_000)) -> list[Run]:
        """Run records, newest first."""
        if tool is not None:
            validation.name(tool, "tool name")
        return ctx.runs.list(tool=tool, limit=limit)

    @router.get("/runs/{run_id}", response_model=Run, tags=["runs"])
    def run(run_id: str) -> Run:
        return ctx.runs.get(run_id)

    @router.post("/runs", response_model=RunAccepted, status_code=202, tags=["runs"])
    def create_run(body: RunCreate) -> RunAccepted:
        """Run a tool now on this server's member, like `maomao run TOOL`."""
        started = launcher.start(body.tool)
        return RunAccepted(run_id=started.id, tool=started.tool, url=f"/v1/runs/{started.id}")

    # Spikes
    @router.get("/spikes", response_model=list[Spike], tags=["spikes"])
    def spikes(
        tool: QueryName = None,
        since: str | None = Query(None, description="Only spikes whose sortable >= this."),
        limit: int | None = Query(None, ge=1, le=10_000),
    ) -> list[Spike]:
        """Stored spikes, newest first, like `maomao spikes --json`."""
        if tool is not None:
            validation.name(tool, "tool name")
        found = ctx.spikes.stored(tool, since)
        return found if limit is None else found[:limit]

    @router.get("/spikes/{tool}/{sortable}", response_model=Spike, tags=["spikes"])
    def spike(tool: PathName, sortable: str) -> Spike:
        return get_spike(ctx.store, ctx.keys, tool, sortable)

    # Members
    @router.get("/members", response_model=list[Member], tags=["members"])
    def members() -> list[Member]:
        return live_members(ctx.store, ctx.keys)

    @router.get("/members/{name}", response_model=Member, tags=["members"])
    def member(name: PathName) -> Member:
        validation.name(name, "member name")
        for found in live_members(ctx.store, ctx.keys):
            if found.name == name:
                return found
        raise NotFound(f"no live member named {name!r}", hint="see GET /v1/members")

    # Events
    @router.get(
        "/events",
        tags=["events"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "Event stream"}},
    )
    async def stream_events(request: Request) -> StreamingResponse:
        """Server-sent events: `run` (a run's status changed) and `spike` (a new spike)."""
        watches = await run_in_threadpool(
            events.open_watches, ctx.store, ctx.keys, request.headers.get("last-event-id")
        )
        return StreamingResponse(
            events.stream(watches, ctx.keys),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
