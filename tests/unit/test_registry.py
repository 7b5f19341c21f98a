"""The registry owns every rule about a tool's and a dataset's fields: a table of bad
inputs per field, each refused by the registry itself (on the memory store) with the field
named and nothing written, and the same table through the HTTP bodies' translation, which
gives the same messages. The front ends only translate; these tests hold them to it."""

from __future__ import annotations

import inspect
import math
from dataclasses import fields
from pathlib import Path
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

PIDS_RULE = "must be a whole number from 1 to 32768"
TIMEOUT_RULE = "must be a number of seconds above 0 and at most 604800 (7 days)"
USER_RULE = "expected uid[:gid] (numbers 0 to 2147483646) or name[:group] matching [a-z_]"
SIZE_RULE = "expected a size of at least 1 B, in bytes or with a unit b, k, m or g"

# (field, bad value, what the message must say: the field and the rule)
FINITE_POSITIVE = "must be a finite number greater than 0"
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
    ("memory", "5m", "invalid memory '5m': Docker needs at least 6m"),
    ("memory", "lots", "invalid memory 'lots': expected a size like 256m or 1g"),
    ("memory", "1.5g", "invalid memory '1.5g': expected a size like 256m or 1g"),
    ("memory", "99999999g", "invalid memory '99999999g': must be at most the host's memory"),
    ("memory", "9" * 30, f"invalid memory '{'9' * 30}': expected a size"),
    ("pids", 0, f"invalid pids 0: {PIDS_RULE}"),
    ("pids", -5, f"invalid pids -5: {PIDS_RULE}"),
    ("pids", 32769, f"invalid pids 32769: {PIDS_RULE}"),
    ("pids", 10**15, f"invalid pids {10**15}: {PIDS_RULE}"),
    ("timeout", 0.0, f"invalid timeout 0.0: {TIMEOUT_RULE}"),
    ("timeout", -1.5, f"invalid timeout -1.5: {TIMEOUT_RULE}"),
    ("timeout", math.nan, f"invalid timeout nan: {TIMEOUT_RULE}"),
    ("timeout", math.inf, f"invalid timeout inf: {TIMEOUT_RULE}"),
    ("timeout", 1e300, f"invalid timeout 1e+300: {TIMEOUT_RULE}"),
    ("timeout", 7 * 86400 + 1.0, f"invalid timeout 604801.0: {TIMEOUT_RULE}"),
    ("user", "$(id)", f"invalid user '$(id)': {USER_RULE}"),
    ("user", "root\n", f"invalid user 'root\\n': {USER_RULE}"),
    ("user", "", f"invalid user '': {USER_RULE}"),
    ("user", ":", f"invalid user ':': {USER_RULE}"),
    ("user", "1000:", f"invalid user '1000:': {USER_RULE}"),
    ("user", "1:2:3", f"invalid user '1:2:3': {USER_RULE}"),
    ("user", "2147483647", f"invalid user '2147483647': {USER_RULE}"),
    ("user", "0:4294967295", f"invalid user '0:4294967295': {USER_RULE}"),
    ("user", "-1", f"invalid user '-1': {USER_RULE}"),
    ("user", "Root", f"invalid user 'Root': {USER_RULE}"),
    ("user", "-oProxy", f"invalid user '-oProxy': {USER_RULE}"),
    ("user", "a" * 33, "invalid user"),
    ("user", "ana bob", "invalid user 'ana bob'"),
    ("user", "ana:$(id)", "invalid user 'ana:$(id)'"),
    ("data_subdir", "/abs", "invalid data subdir '/abs': must be a relative path"),
    ("data_subdir", "a/../../x", "invalid data subdir 'a/../../x'"),
    ("data_subdir", "..", "invalid data subdir '..'"),
    ("spike_method", "zscore", "invalid spike method 'zscore': must be one of robust, seed"),
    ("spike_method", "", "invalid spike method '': must be one of robust, seed"),
    ("sensitivity", 0.0, f"invalid sensitivity 0.0: {FINITE_POSITIVE}"),
    ("sensitivity", -2.0, f"invalid sensitivity -2.0: {FINITE_POSITIVE}"),
    ("sensitivity", float("nan"), f"invalid sensitivity nan: {FINITE_POSITIVE}"),
    ("sensitivity", float("inf"), f"invalid sensitivity inf: {FINITE_POSITIVE}"),
    ("min_history", 2, "invalid min history 2: must be a whole number from 3 to 10000"),
    ("min_history", 10_001, "invalid min history 10001: must be a whole number from 3 to 10000"),
    ("max_data", 0, f"invalid max data 0: {SIZE_RULE}"),
    ("max_data", "0", f"invalid max data '0': {SIZE_RULE}"),
    ("max_data", -1, f"invalid max data -1: {SIZE_RULE}"),
    ("max_data", "lots", f"invalid max data 'lots': {SIZE_RULE}"),
    ("max_data", "1t", f"invalid max data '1t': {SIZE_RULE}"),
    ("max_data", "", f"invalid max data '': {SIZE_RULE}"),
    ("max_data", 2**63, f"invalid max data {2**63}: {SIZE_RULE}"),
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
    ("field", "value"), [("sensitivity", True), ("min_history", 4.5), ("min_history", True)]
)
def test_registry_refuses_json_values_of_the_wrong_kind(
    registry: Registry, store: MemoryStore, field: str, value: Any
) -> None:
    error = refusal(lambda: registry.register_tool(ToolSpec(**tool_fields(field, value))))
    assert isinstance(error, BadInput)
    assert error.message.startswith(f"invalid {field.replace('_', ' ')} {value!r}")
    assert written(store) == []


# (field, good value, what is stored)
GOOD_TOOL_FIELDS: list[tuple[str, Any, Any]] = [
    ("user", "0", "0"),
    ("user", "1000:1000", "1000:1000"),
    ("user", "2147483646:0", "2147483646:0"),
    ("user", "nobody", "nobody"),
    ("user", "_apt", "_apt"),
    ("user", "www-data:www-data", "www-data:www-data"),
    ("user", "ana:1000", "ana:1000"),
    ("user", "a" + "b" * 31, "a" + "b" * 31),
    ("memory", "6m", "6m"),
    ("memory", "64MB", "64mb"),
    ("memory", str(64 * 1024**2), str(64 * 1024**2)),
    ("pids", 1, 1),
    ("pids", 32768, 32768),
    ("timeout", 0.5, 0.5),
    ("timeout", 604800.0, 604800.0),
    ("timeout", 60, 60.0),
    ("max_data", 1, 1),
    ("max_data", "64k", 64 * 1024),
    ("max_data", "2g", 2 * 1024**3),
    ("max_data", "100b", 100),
    ("max_data", "4096", 4096),
]


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    GOOD_TOOL_FIELDS,
    ids=[f"{field}={value!r}" for field, value, _ in GOOD_TOOL_FIELDS],
)
def test_registry_accepts_a_good_tool_field(
    registry: Registry, field: str, value: Any, stored: Any
) -> None:
    tool, _ = registry.register_tool(ToolSpec(**tool_fields(field, value)))
    assert getattr(tool, field) == stored
    assert getattr(registry.get_tool("ok"), field) == stored
    through_http, _ = registry.register_tool(ToolCreate(**tool_fields(field, value)).spec())
    assert getattr(through_http, field) == stored


def test_memory_is_bounded_by_this_hosts_memory(
    registry: Registry, store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = registry_module.host_memory()
    assert host is not None and host > 6 * 1024**2  # read from /proc/meminfo
    registry.register_tool(ToolSpec(name="ok", image="img", memory=str(host)))
    error = refusal(
        lambda: registry.register_tool(ToolSpec(name="no", image="img", memory=str(host + 1)))
    )
    assert error.message.startswith(f"invalid memory '{host + 1}': must be at most the host's")
    assert written(store) == [KEYS.tool("ok")]

    monkeypatch.setattr(registry_module, "host_memory", lambda: None)  # not Linux
    registry.register_tool(ToolSpec(name="big", image="img", memory="99999999g"))
    error = refusal(
        lambda: registry.register_tool(ToolSpec(name="no", image="img", memory="8589934592g"))
    )
    assert error.message == "invalid memory '8589934592g': must be at most 8.0 EiB"


def test_host_memory_reads_memtotal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384 kB\nMemFree:         1024 kB\n")
    real_open = builtins.open

    def fake_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        return real_open(meminfo if path == "/proc/meminfo" else path, *args, **kwargs)

    registry_module.host_memory.cache_clear()
    monkeypatch.setattr(builtins, "open", fake_open)
    try:
        assert registry_module.host_memory() == 16384 * 1024
        meminfo.write_text("garbage\n")
        registry_module.host_memory.cache_clear()
        assert registry_module.host_memory() is None
    finally:
        registry_module.host_memory.cache_clear()


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
            spike_method="seed",
            sensitivity=1.5,
            min_history=12,
            max_data="500M",
        )
    )
    assert created
    assert tool == registry.get_tool("weather")
    assert tool.env == {"CITY": "Lyon", "EMPTY": "", "X": "a=b"}
    assert tool.memory == "256m"
    assert tool.max_data == 500 * 1024**2
    assert (tool.spike_method, tool.sensitivity, tool.min_history) == ("seed", 1.5, 12)
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
