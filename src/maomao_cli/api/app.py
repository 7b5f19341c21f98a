"""The FastAPI application: the 2019 routes and the v1 API over the composition root.

`create_app(services)` is the whole wiring: the routes (one module per resource group,
in `api/routes/` and `api/events.py`) reach the services through `api/deps.py`, and
`api/errors.py` turns every failure into one JSON error body. Every JSON body is written
by `api/responses.py`, which escapes the control characters a terminal would act on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..composition import Services
from . import events
from .errors import ERROR_RESPONSES, install_error_handlers
from .guard import PathCheck
from .launcher import RunLauncher
from .responses import SafeJSONResponse
from .routes import (
    datasets,
    legacy,
    members,
    metrics,
    runs,
    schedule_controls,
    schedules,
    spikes,
    tools,
)


def create_app(services: Services) -> FastAPI:
    launcher = RunLauncher(services)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(launcher.shutdown, services.settings.worker.shutdown_grace)

    app = FastAPI(
        title="maomao",
        version=__version__,
        summary="Collaborative periodic data collection: the 2019 routes and the v1 API.",
        docs_url=None,  # the Swagger page loads scripts from a CDN; /openapi.json is enough
        redoc_url=None,
        responses=ERROR_RESPONSES,
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.services = services
    app.state.launcher = launcher
    app.state.stream_slots = events.StreamSlots(services.settings.serve.max_streams)
    app.add_middleware(PathCheck)
    install_error_handlers(app)
    app.include_router(legacy.router)
    app.include_router(metrics.router)
    for group in (tools, datasets, schedules, schedule_controls, runs, spikes, members, events):
        app.include_router(group.router, prefix="/v1")
    return app
