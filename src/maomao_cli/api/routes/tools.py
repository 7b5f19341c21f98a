"""/v1/tools: the registered tools, like `maomao register`, `tools` and `unregister`."""

from __future__ import annotations

from fastapi import APIRouter

from ... import validation
from ...models import Tool
from ..deps import PathName, ServicesDep
from ..schemas import ToolCreate

router = APIRouter(tags=["tools"])


@router.get("/tools", response_model=list[Tool])
def tools(services: ServicesDep) -> list[Tool]:
    return sorted(services.registry.tools(), key=lambda t: t.name)


@router.get("/tools/{name}", response_model=Tool)
def tool(name: PathName, services: ServicesDep) -> Tool:
    return services.registry.get_tool(name)


@router.post("/tools", response_model=Tool, status_code=201)
def create_tool(body: ToolCreate, services: ServicesDep) -> Tool:
    """Create or update a tool (201 either way), like `maomao register`."""
    if body.network is not None:
        validation.network(body.network)
    env = (
        validation.env_pairs(f"{k}={v}" for k, v in body.env.items())
        if body.env is not None
        else None
    )
    options = body.model_dump(exclude={"name", "image", "env"})
    created, _ = services.registry.register_tool(body.name, body.image, env=env, **options)
    return created


@router.delete("/tools/{name}", response_model=Tool)
def delete_tool(name: PathName, services: ServicesDep) -> Tool:
    return services.registry.unregister_tool(name)
