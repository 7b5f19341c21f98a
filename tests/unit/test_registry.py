"""The registry owns every rule about a tool's and a dataset's fields: a table of bad
inputs per field, each refused by the registry itself (on the memory store) with the field
named and nothing written, and the same table through the HTTP bodies' translation, which
gives the same messages. The front ends only translate; these tests hold them to it."""

from __future__ import annotations

import inspect
import math
from dataclasses import fields
from typing import Any

import pytest

from maomao_cli.api.schemas import (
    DatasetCreate,
    LegacyDataset,
    LegacyRegister,
    ToolCreate,
)
from maomao_cli.cli import datasets as cli_datasets
from maomao_cli.cli import registry as cli_registry
from maomao_cli.errors import BadInput, ExitStatus, MaomaoError, NotFound
from maomao_cli.keys import Keys
from maomao_cli.models import Dataset, Tool
from maomao_cli.services import registry as registry_module
from maomao_cli.services.registry import DatasetSpec, Registry, ToolSpec
from maomao_cli.services.schedules import ScheduleService
from maomao_cli.store.memory import MemoryStore

KEYS = Keys()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def registry(store: MemoryStore) -> Registry:
    return Registry(store, KEYS, allow_local_urls=True)  # the datasets below are local paths


def written(store: MemoryStore) -> list[str]:
    return [entry.key for entry in store.scan("/")]


def refusal(call: Any) -> MaomaoError:
    with pytest.raises(MaomaoError) as caught:
        call()
    error = caught.value
    assert error.exit_status == ExitStatus.BAD_INPUT
    assert "\n" not in error.message
    return error


# Tools ------------------------------------------------------------------------------

# (field, bad value, what the message must say: the field and the rule)
BAD_TOOL_FIELDS: list[tuple[str, Any, str]] = [
    ("name", "Bad/Name", "invalid tool name 'Bad/Name': must match [a-z0-9]"),
    ("name", "", "invalid tool name '': must match"),
    ("name", "a" * 64, "invalid tool name"),
    ("image", "NOT A REF!!", "invalid image 'NOT A REF!!': not a Docker image reference"),
    ("image", "ghcr.io/Group/tool", "invalid image"),
    ("dataset", "Bad Name", "invalid dataset name 'Bad Name': must match"),
    ("env", {"1A": "x"}, "invalid environment variable '1A=x': expected KEY=VALUE"),
    ("env", {"A-B": "x"}, "invalid environment variable 'A-B=x'"),
    ("env", {"A=B": "c"}, "invalid environment variable 'A=B=c'"),
    ("env", {"A": "nul\x00"}, "invalid environment variable A: value holds a NUL byte"),
    ("network", "host", "invalid network 'host': use bridge, none or the name"),
    ("network", "a b", "invalid network 'a b'"),
    ("network", "", "invalid network ''"),
    ("memory", "1k", "invalid memory '1k': Docker needs at least 6m"),
    ("memory", "lots", "invalid memory 'lots': expected a size like 256m or 1g"),
    ("pids", 0, "invalid pids 0: must be greater than 0"),
    ("pids", -5, "invalid pids -5: must be greater than 0"),
    ("timeout", 0.0, "invalid timeout 0.0: must be greater than 0"),
    ("timeout", -1.5, "invalid timeout -1.5: must be greater than 0"),
    ("timeout", math.nan, "invalid timeout nan: must be greater than 0"),
    ("data_subdir", "/abs", "invalid data subdir '/abs': must be a relative path"),
    ("data_subdir", "a/../../x", "invalid data subdir 'a/../../x'"),
    ("data_subdir", "..", "invalid data subdir '..'"),
    ("sensitivity", 0.0, "invalid sensitivity 0.0: must be greater than 0"),
    ("sensitivity", -2.0, "invalid sensitivity -2.0: must be greater than 0"),
]
TOOL_IDS = [f"{field}={value!r}" for field, value, _ in BAD_TOOL_FIELDS]


def tool_fields(field: str, value: Any) -> dict[str, Any]:
    return {"name": "ok", "image": "img", field: value}


@pytest.mark.parametrize(("field", "value", "message"), BAD_TOOL_FIELDS, ids=TOOL_IDS)
def test_registry_refuses_a_bad_tool_field(
    registry: Registry, store: MemoryStore, field: str, value: Any, message: str
) -> None:
    error = refusal(lambda: registry.register_tool(ToolSpec(**tool_fields(field, value))))
    assert isinstance(error, BadInput)
    assert error.message.startswith(message)
    assert written(store) == []


@pytest.mark.parametrize(("field", "value", "message"), BAD_TOOL_FIELDS, ids=TOOL_IDS)
def test_http_body_translation_refuses_alike(
    registry: Registry, store: MemoryStore, field: str, value: Any, message: str
) -> None:
    direct = refusal(lambda: registry.register_tool(ToolSpec(**tool_fields(field, value))))
    body = ToolCreate(**tool_fields(field, value))
    through_http = refusal(lambda: registry.register_tool(body.spec()))
    assert through_http.message == direct.message
    if field in ("name", "image"):
        legacy = LegacyRegister(name=body.name, url=body.image)
        assert refusal(lambda: registry.register_tool(legacy.spec())).message == direct.message
    assert written(store) == []


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["NOEQ"], "invalid environment variable 'NOEQ': expected KEY=VALUE"),
        (["A=1", "=x"], "invalid environment variable '=x'"),
        (["1A=x"], "invalid environment variable '1A=x'"),
        (["A=\x00"], "invalid environment variable A: value holds a NUL byte"),
        ("A B=x", "invalid environment variable 'A B=x'"),
    ],
)
def test_env_as_the_cli_gives_it(
    registry: Registry, store: MemoryStore, pairs: list[str] | str, message: str
) -> None:
    error = refusal(lambda: registry.register_tool(ToolSpec(name="ok", image="img", env=pairs)))
    assert error.message.startswith(message)
    assert written(store) == []


def test_a_dataset_that_is_not_registered_is_refused(
    registry: Registry, store: MemoryStore
) -> None:
    error = refusal(lambda: registry.register_tool(ToolSpec(name="ok", image="i", dataset="obs")))
    assert isinstance(error, NotFound)
    assert "'obs'" in error.message
    assert written(store) == []


def test_every_field_is_stored_cleaned(registry: Registry) -> None:
    registry.add_dataset(DatasetSpec(name="obs", url="/srv/obs"))
    tool, created = registry.register_tool(
        ToolSpec(
            name="weather",
            image="ghcr.io/lab/weather:1.2",
            dataset="obs",
            author="ana",
            description="hourly readings; free text: 'quotes' [markup]",
            env=["CITY=Lyon", "EMPTY=", "X=a=b"],
            network="none",
            memory=" 256M ",
            pids=64,
            timeout=120.5,
            user="1000:1000",
            data_subdir="weather/raw",
            sensitivity=1.5,
        )
    )
    assert created
    assert tool == registry.get_tool("weather")
    assert tool.env == {"CITY": "Lyon", "EMPTY": "", "X": "a=b"}
    assert tool.memory == "256m"
    assert (tool.author, tool.user, tool.description) == (
        "ana",
        "1000:1000",
        "hourly readings; free text: 'quotes' [markup]",
    )


def test_an_update_keeps_the_fields_it_leaves_out(registry: Registry) -> None:
    first, _ = registry.register_tool(
        ToolSpec(name="t", image="img", author="ana", env={"A": "1"}, pids=8)
    )
    second, created = registry.register_tool(ToolSpec(name="t", image="alpine:3.19", pids=16))
    assert not created
    assert (second.image, second.author, second.env, second.pids) == (
        "alpine:3.19",
        "ana",
        {"A": "1"},
        16,
    )
    assert second.created == first.created and second.updated >= first.updated
    cleared, _ = registry.register_tool(ToolCreate(name="t", image="img", env={}).spec())
    assert cleared.env == {}


# Datasets ---------------------------------------------------------------------------

BAD_DATASET_FIELDS: list[tuple[str, Any, str]] = [
    ("name", "Bad/Name", "invalid dataset name 'Bad/Name': must match"),
    ("url", "ext::sh -c id", "invalid url 'ext::sh -c id': must be a git URL"),
    ("url", "file://relative", "invalid url 'file://relative'"),
    ("url", "-upload-pack=x", "invalid url '-upload-pack=x'"),
    ("branch", "a..b", "invalid branch 'a..b': not a valid git branch name"),
    ("branch", "-x", "invalid branch '-x'"),
    ("depth", 0, "invalid depth 0: must be at least 1"),
    ("depth", -3, "invalid depth -3: must be at least 1"),
]
DATASET_IDS = [f"{field}={value!r}" for field, value, _ in BAD_DATASET_FIELDS]


def dataset_fields(field: str, value: Any) -> dict[str, Any]:
    return {"name": "obs", "url": "/srv/obs", field: value}


@pytest.mark.parametrize(("field", "value", "message"), BAD_DATASET_FIELDS, ids=DATASET_IDS)
def test_registry_refuses_a_bad_dataset_field(
    registry: Registry, store: MemoryStore, field: str, value: Any, message: str
) -> None:
    error = refusal(lambda: registry.add_dataset(DatasetSpec(**dataset_fields(field, value))))
    assert error.message.startswith(message)
    assert written(store) == []


@pytest.mark.parametrize(("field", "value", "message"), BAD_DATASET_FIELDS, ids=DATASET_IDS)
def test_http_dataset_bodies_refuse_alike(
    registry: Registry, store: MemoryStore, field: str, value: Any, message: str
) -> None:
    direct = refusal(lambda: registry.add_dataset(DatasetSpec(**dataset_fields(field, value))))
    body = DatasetCreate(**dataset_fields(field, value))
    assert refusal(lambda: registry.add_dataset(body.spec())).message == direct.message
    if field in ("name", "url"):
        legacy = LegacyDataset(name=body.name, url=body.url)
        assert refusal(lambda: registry.add_dataset(legacy.spec())).message == direct.message
    assert written(store) == []


def test_a_dataset_update_replaces_every_field(registry: Registry) -> None:
    first, created = registry.add_dataset(
        DatasetSpec(name="obs", url="/srv/obs", branch="main", push=True, depth=5)
    )
    assert created and (first.branch, first.push, first.depth) == ("main", True, 5)
    second, created = registry.add_dataset(DatasetSpec(name="obs", url="/srv/obs2"))
    assert not created
    assert second == Dataset(name="obs", url="/srv/obs2", created=first.created)


# Schedules' selector ----------------------------------------------------------------


@pytest.mark.parametrize("on", ["Region=eu", {"Region": "eu"}, "region", {"a": "b c"}])
def test_the_schedule_service_checks_its_selector(
    registry: Registry, store: MemoryStore, on: str | dict[str, str]
) -> None:
    registry.register_tool(ToolSpec(name="t", image="img"))
    before = written(store)
    schedules = ScheduleService(store, KEYS, registry)
    error = refusal(lambda: schedules.create("t", "0 0 * * *", on=on))
    assert error.message.startswith("invalid on entry")
    assert written(store) == before


def test_a_selector_as_text_or_as_a_mapping(registry: Registry) -> None:
    registry.register_tool(ToolSpec(name="t", image="img"))
    schedules = ScheduleService(registry.store, KEYS, registry)
    from_text, _ = schedules.create("t", "0 0 * * *", on="region=eu, gpu=yes")
    from_mapping, _ = schedules.create("t", "0 0 * * *", on={"region": "eu", "gpu": "yes"})
    assert from_text.on == from_mapping.on == {"region": "eu", "gpu": "yes"}


# One schema: a field added in one place and not the others fails here ---------------


def names(cls: Any) -> list[str]:
    return [f.name for f in fields(cls)]


def test_the_spec_matches_the_record_the_rules_and_every_front_end() -> None:
    spec = names(ToolSpec)
    assert spec == [f for f in names(Tool) if f not in ("created", "updated")]
    assert list(registry_module._TOOL_RULES) == spec
    assert list(ToolCreate.model_fields) == spec
    cli = [p for p in inspect.signature(cli_registry.register).parameters if p != "ctx"]
    assert cli == spec


def test_the_dataset_spec_matches_the_record_the_rules_and_every_front_end() -> None:
    spec = names(DatasetSpec)
    assert spec == [f for f in names(Dataset) if f != "created"]
    assert list(registry_module._DATASET_RULES) == spec
    assert list(DatasetCreate.model_fields) == spec
    cli = [p for p in inspect.signature(cli_datasets.add).parameters if p != "ctx"]
    assert cli == spec
