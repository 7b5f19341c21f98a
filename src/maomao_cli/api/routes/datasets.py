"""/v1/datasets: the registered datasets, like `maomao dataset add` and `list`."""

from __future__ import annotations

from fastapi import APIRouter

from ...models import Dataset
from ..deps import PathName, ServicesDep
from ..schemas import DatasetCreate

router = APIRouter(tags=["datasets"])


@router.get("/datasets", response_model=list[Dataset])
def datasets(services: ServicesDep) -> list[Dataset]:
    return sorted(services.registry.datasets(), key=lambda d: d.name)


@router.get("/datasets/{name}", response_model=Dataset)
def dataset(name: PathName, services: ServicesDep) -> Dataset:
    return services.registry.get_dataset(name)


@router.post("/datasets", response_model=Dataset, status_code=201)
def create_dataset(body: DatasetCreate, services: ServicesDep) -> Dataset:
    created, _ = services.registry.add_dataset(body.spec())
    return created
