"""Tools and datasets: what the collaboration has registered, shared through etcd."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from .. import validation
from ..errors import BadInput, NotFound
from ..keys import Keys
from ..models import Dataset, Tool
from ..store.base import Store
from .records import load, load_all

TOOL_OPTIONS = {
    "dataset", "author", "description", "env", "network", "memory", "pids", "timeout",
    "user", "data_subdir", "sensitivity",
}  # fmt: skip


class Registry:
    def __init__(self, store: Store, keys: Keys) -> None:
        self.store = store
        self.keys = keys

    # Tools -----------------------------------------------------------------

    def register_tool(self, name: str, image: str, **options: Any) -> tuple[Tool, bool]:
        """Create or update a tool; returns it and whether it was new. Validates everything
        before writing anything."""
        validation.name(name, "tool name")
        validation.image(image)
        unknown = set(options) - TOOL_OPTIONS
        if unknown:
            raise BadInput(f"unknown tool option(s): {', '.join(sorted(unknown))}")
        options = {k: v for k, v in options.items() if v is not None}
        if "dataset" in options:
            validation.name(options["dataset"], "dataset name")
            self.get_dataset(options["dataset"])
        if "memory" in options:
            options["memory"] = validation.memory(options["memory"])
        for numeric in ("pids", "timeout", "sensitivity"):
            if numeric in options:
                validation.positive(options[numeric], numeric)
        if "data_subdir" in options:
            sub = options["data_subdir"]
            if sub.startswith("/") or ".." in sub.split("/"):
                raise BadInput(
                    f"invalid data subdir {sub!r}: must be a relative path inside the dataset"
                )
        now = time.time()
        existing = load(self.store, self.keys.tool(name), Tool)
        if existing is None:
            tool = Tool(name=name, image=image, created=now, updated=now, **options)
        else:
            tool = replace(existing, image=image, updated=now, **options)
        self.store.put(self.keys.tool(name), tool.to_json())
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

    def add_dataset(
        self,
        name: str,
        url: str,
        *,
        branch: str | None = None,
        push: bool = False,
        depth: int | None = None,
    ) -> tuple[Dataset, bool]:
        validation.name(name, "dataset name")
        validation.git_url(url)
        if branch is not None:
            validation.branch(branch)
        if depth is not None and depth < 1:
            raise BadInput(f"invalid depth {depth}: must be at least 1")
        existing = load(self.store, self.keys.dataset(name), Dataset)
        dataset = Dataset(
            name=name,
            url=url,
            branch=branch,
            push=push,
            depth=depth,
            created=existing.created if existing else time.time(),
        )
        self.store.put(self.keys.dataset(name), dataset.to_json())
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
