"""/v1/datasets: the registered datasets, like `maomao dataset add` and `list`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...models import Dataset
from ..deps import PathName, ServicesDep
from ..schemas import DatasetCreate
from ..views import list_of, view, view_of

router = APIRouter(tags=["datasets"])


@router.get("/datasets", response_model=list_of(Dataset))
def datasets(services: ServicesDep) -> list[Any]:
    return [view(d) for d in sorted(services.registry.datasets(), key=lambda d: d.name)]


@router.get("/datasets/{name}", response_model=view_of(Dataset))
def dataset(name: PathName, services: ServicesDep) -> Any:
    return view(services.registry.get_dataset(name))


@router.post("/datasets", response_model=view_of(Dataset), status_code=201)
def create_dataset(body: DatasetCreate, services: ServicesDep) -> Any:
    created, _ = services.registry.add_dataset(body.spec())
    return view(created)
