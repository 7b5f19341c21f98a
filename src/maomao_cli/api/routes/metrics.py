"""/metrics: Prometheus metrics of `maomao serve` (its version, whether etcd answers),
behind the same bearer token as every route (Prometheus: `authorization:` in the scrape
config)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..deps import ServicesDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    body, content_type = await run_in_threadpool(services.serve_metrics.render)
    return Response(body, media_type=content_type)
