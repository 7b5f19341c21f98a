"""/v1/tools: the registered tools, like `maomao register`, `tools` and `unregister`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...models import Tool
from ..deps import PathName, ServicesDep
from ..schemas import ToolCreate
from ..views import list_of, view, view_of

router = APIRouter(tags=["tools"])


@router.get("/tools", response_model=list_of(Tool))
def tools(services: ServicesDep) -> list[Any]:
    return [view(t) for t in sorted(services.registry.tools(), key=lambda t: t.name)]


@router.get("/tools/{name}", response_model=view_of(Tool))
def tool(name: PathName, services: ServicesDep) -> Any:
    return view(services.registry.get_tool(name))


@router.post("/tools", response_model=view_of(Tool), status_code=201)
def create_tool(body: ToolCreate, services: ServicesDep) -> Any:
    """Create or update a tool (201 either way), like `maomao register`."""
    created, _ = services.registry.register_tool(body.spec())
    return view(created)


@router.delete("/tools/{name}", response_model=view_of(Tool))
def delete_tool(name: PathName, services: ServicesDep) -> Any:
    return view(services.registry.unregister_tool(name))
