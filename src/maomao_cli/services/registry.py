"""Tools and datasets: what the collaboration has registered, shared through etcd.

`ToolSpec` and `DatasetSpec` are the one input type of each: the CLI and the HTTP API
translate what they parsed into them, and every rule about a field is applied here, in
`_TOOL_RULES` and `_DATASET_RULES`, before anything is written. Adding a field means
adding it to the record (models.py), to the spec with its rule, and to each front end's
options or body, which only pass it along.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from functools import cache, partial
from typing import Any

from .. import validation
from ..config_rules import SPIKE_METHODS, SPIKE_WINDOW_MAX
from ..errors import BadInput, NotFound
from ..frozen import frozen
from ..keys import Keys
from ..models import Dataset, Tool
from ..store.base import Store
from .records import load, load_all


@frozen
class ToolSpec:
    """A tool to register, as asked. On an update, a field left None keeps the value the
    registered tool has."""

    name: str
    image: str
    dataset: str | None = None
    author: str | None = None
    description: str | None = None
    env: Mapping[str, str] | Sequence[str] | None = None  # a mapping, or KEY=VALUE strings
    network: str | None = None  # None: the [docker] default
    memory: str | None = None
    pids: int | None = None
    timeout: float | None = None  # seconds
    user: str | None = None
    data_subdir: str | None = None  # inside the dataset work tree
    # Spike detection for this tool; None: the detecting member's [spikes] setting.
    spike_method: str | None = None
    sensitivity: float | None = None
    min_history: int | None = None
    max_data: str | int | None = None  # the data directory's size limit: 500m, or bytes
    member_folders: bool | None = None  # None: per member when scheduled --everywhere
    audit_tolerance: float | None = None  # `maomao audit`: control values this far agree


@frozen
class DatasetSpec:
    """A dataset to add; an update replaces every field (None: the remote's default)."""

    name: str
    url: str
    branch: str | None = None
    push: bool = False
    depth: int | None = None


def _as_given(value: Any) -> Any:
    """No rule: free text (shown as text, never interpreted) or a plain flag."""
    return value


@cache
def host_memory() -> int | None:
    """This host's memory in bytes (MemTotal of /proc/meminfo); None where unreadable."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                key, _, rest = line.partition(":")
                if key == "MemTotal":
                    amount, unit = rest.split()
                    return int(amount) * (1024 if unit == "kB" else 1)
    except (OSError, ValueError):
        pass
    return None


def _memory(value: str) -> str:
    # A tool asking for more than the host has would only fail later, at Docker.
    return validation.memory(value, "memory", at_most=host_memory())


MAX_PIDS = 32768  # the kernel's default pid_max: more is a fork bomb's budget

# Every field's rule: it returns the value to store or raises BadInput naming the field.
_TOOL_RULES: dict[str, Callable[[Any], Any]] = {
    "name": partial(validation.name, field="tool name"),
    "image": validation.image,
    "dataset": partial(validation.name, field="dataset name"),
    "author": _as_given,
    "description": _as_given,
    "env": validation.env,
    "network": validation.network,
    "memory": _memory,
    "pids": partial(validation.whole_between, low=1, high=MAX_PIDS, field="pids"),
    "timeout": validation.timeout,
    "user": validation.user,
    "data_subdir": validation.data_subdir,
    "spike_method": partial(validation.choice, choices=SPIKE_METHODS, field="spike method"),
    "sensitivity": partial(validation.finite_positive, field="sensitivity"),
    "min_history": partial(
        validation.whole_between, low=3, high=SPIKE_WINDOW_MAX, field="min history"
    ),
    "max_data": partial(validation.size, field="max data"),
    "member_folders": partial(validation.flag, field="member folders"),
    "audit_tolerance": partial(validation.finite_non_negative, field="audit tolerance"),
}

# The URL a member may register: remote only (https, ssh, git, user@host:path; users and
# hosts as ssh reads them, never an option), since every member clones it; local paths
# and file:// only when this member's own config allows them (Registry(allow_local_urls)).
_DATASET_RULES: dict[str, Callable[[Any], Any]] = {
    "name": partial(validation.name, field="dataset name"),
    "url": partial(validation.git_url, allow_local=False),
    "branch": validation.branch,
    "push": _as_given,
    "depth": partial(validation.at_least, minimum=1, field="depth"),
}


def _checked(
    spec: ToolSpec | DatasetSpec, rules: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """The fields given (not None), each through its rule, in the spec's order."""
    given = ((f.name, getattr(spec, f.name)) for f in fields(spec))
    return {name: rules[name](value) for name, value in given if value is not None}


class Registry:
    def __init__(self, store: Store, keys: Keys, *, allow_local_urls: bool = False) -> None:
        self.store = store
        self.keys = keys
        self._dataset_rules = (
            {**_DATASET_RULES, "url": validation.git_url} if allow_local_urls else _DATASET_RULES
        )

    # Tools -----------------------------------------------------------------

    def register_tool(self, spec: ToolSpec) -> tuple[Tool, bool]:
        """Create or update a tool; returns it and whether it was new. Validates everything
        before writing anything."""
        values = _checked(spec, _TOOL_RULES)
        if "dataset" in values:
            self.get_dataset(values["dataset"])
        now = time.time()
        existing = load(self.store, self.keys.tool(spec.name), Tool)
        if existing is None:
            tool = Tool(created=now, updated=now, **values)
        else:
            tool = replace(existing, updated=now, **values)
        self.store.put(self.keys.tool(spec.name), tool.to_json())
        return tool, existing is None

    def unregister_tool(self, name: str) -> Tool:
        tool = self.get_tool(name)
        self.store.delete(self.keys.tool(name))
        return tool

    def get_tool(self, name: str) -> Tool:
        validation.name(name, "tool name")
        tool = load(self.store, self.keys.tool(name), Tool)
        if tool is None:
            raise NotFound(
                f"no tool named {name!r} is registered",
                hint="see `maomao tools`, or register it with `maomao register NAME IMAGE`",
            )
        return tool

    def tools(self) -> list[Tool]:
        return load_all(self.store, self.keys.tools(), Tool)

    # Datasets --------------------------------------------------------------

    def add_dataset(self, spec: DatasetSpec) -> tuple[Dataset, bool]:
        values = _checked(spec, self._dataset_rules)
        existing = load(self.store, self.keys.dataset(spec.name), Dataset)
        dataset = Dataset(created=existing.created if existing else time.time(), **values)
        self.store.put(self.keys.dataset(spec.name), dataset.to_json())
        return dataset, existing is None

    def remove_dataset(self, name: str) -> Dataset:
        dataset = self.get_dataset(name)
        users = [t.name for t in self.tools() if t.dataset == name]
        if users:
            raise BadInput(
                f"dataset {name!r} is used by tool(s) {', '.join(users)}",
                hint="re-register or unregister those tools first",
            )
        self.store.delete(self.keys.dataset(name))
        return dataset

    def get_dataset(self, name: str) -> Dataset:
        validation.name(name, "dataset name")
        dataset = load(self.store, self.keys.dataset(name), Dataset)
        if dataset is None:
            raise NotFound(
                f"no dataset named {name!r} is registered",
                hint="see `maomao dataset list`, or add it with `maomao dataset add NAME URL`",
            )
        return dataset

    def datasets(self) -> list[Dataset]:
        return load_all(self.store, self.keys.datasets(), Dataset)
