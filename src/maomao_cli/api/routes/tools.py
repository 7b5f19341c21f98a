"""/v1/tools: the registered tools, like `maomao register`, `tools` and `unregister`."""

from __future__ import annotations

from fastapi import APIRouter

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
    created, _ = services.registry.register_tool(body.spec())
    return created


@router.delete("/tools/{name}", response_model=Tool)
def delete_tool(name: PathName, services: ServicesDep) -> Tool:
    return services.registry.unregister_tool(name)
