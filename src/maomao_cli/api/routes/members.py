"""/v1/members: the live members (workers), like `maomao members --json`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...models import Member
from ..deps import PathName, ServicesDep
from ..views import list_of, view, view_of

router = APIRouter(tags=["members"])


@router.get("/members", response_model=list_of(Member))
def members(services: ServicesDep) -> list[Any]:
    return [view(m) for m in services.members.live()]


@router.get("/members/{name}", response_model=view_of(Member))
def member(name: PathName, services: ServicesDep) -> Any:
    return view(services.members.get(name))
