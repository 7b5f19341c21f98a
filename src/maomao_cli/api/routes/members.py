"""/v1/members: the live members (workers), like `maomao members --json`."""

from __future__ import annotations

from fastapi import APIRouter

from ...models import Member
from ..deps import PathName, ServicesDep

router = APIRouter(tags=["members"])


@router.get("/members", response_model=list[Member])
def members(services: ServicesDep) -> list[Member]:
    return services.members.live()


@router.get("/members/{name}", response_model=Member)
def member(name: PathName, services: ServicesDep) -> Member:
    return services.members.get(name)
