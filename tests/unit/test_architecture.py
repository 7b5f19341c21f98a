"""The layering of docs/architecture.md, checked on the source: no module over 450 lines,
front ends that touch no backend, services that import no concrete adapter.

Imports are read with ast (every import in a module, at its top, in a function or under
TYPE_CHECKING), relative ones resolved to the module they name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "maomao_cli"
MAX_LINES = 450

# What the front ends never import: the backends themselves and their adapters.
FRONT_END_FORBIDDEN = ("maomao_cli.adapters", "maomao_cli.store.etcd", "docker", "dulwich")
# What the services never import: concrete adapters (they get them through ports).
SERVICE_FORBIDDEN = ("maomao_cli.adapters", "maomao_cli.store.etcd")
# The one module that wires concrete adapters into the services.
COMPOSITION_ROOT = "maomao_cli.composition"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, *, is_package: bool = False) -> Iterator[str]:
    """Every module name an import in source may bring in, absolute. For `from X import y`
    both X and X.y (y may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            yield origin
            yield from (f"{origin}.{alias.name}" for alias in node.names)


def forbidden_imports(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    module = module_name(path)
    names = imported_names(
        path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py"
    )
    return sorted(
        {
            f"{module} imports {name}"
            for name in names
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden)
        }
    )


def modules_under(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def test_the_package_is_where_the_test_looks() -> None:
    # An empty glob would pass every check below.
    assert len(modules_under("cli")) > 5
    assert len(modules_under("api")) > 5
    assert len(modules_under("services")) > 10


def test_no_module_is_over_450_lines() -> None:
    too_long = [
        f"{path.relative_to(PACKAGE.parent)}: {n} lines"
        for path in sorted(PACKAGE.rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert too_long == [], "split these along their ideas: " + "; ".join(too_long)


def test_the_front_ends_touch_no_backend() -> None:
    found = [
        line
        for path in modules_under("cli") + modules_under("api")
        for line in forbidden_imports(path, FRONT_END_FORBIDDEN)
    ]
    assert found == [], "commands and routes call services: " + "; ".join(found)


def test_the_services_import_no_concrete_adapter() -> None:
    found = [
        line
        for path in modules_under("services")
        for line in forbidden_imports(path, SERVICE_FORBIDDEN)
    ]
    assert found == [], f"services get backends through ports ({COMPOSITION_ROOT}): " + "; ".join(
        found
    )


def test_only_the_composition_root_may_import_adapters_into_services() -> None:
    # The root is outside services/, so the rule above never has to make an exception.
    root = PACKAGE / "composition.py"
    assert module_name(root) == COMPOSITION_ROOT
    assert forbidden_imports(root, SERVICE_FORBIDDEN) != []


# The checker itself: each of these must be caught, so the rules above can fail.
CAUGHT = [
    ("maomao_cli.cli.runs", "from ..adapters.docker_runner import DockerRunner"),
    ("maomao_cli.cli.runs", "from ..adapters import docker_runner"),
    ("maomao_cli.cli.runs", "from ..store.etcd import EtcdStore"),
    ("maomao_cli.cli.runs", "from ..store import etcd"),
    ("maomao_cli.api.routes.runs", "from ...adapters import git"),
    ("maomao_cli.cli.runs", "import docker.errors"),
    ("maomao_cli.cli.runs", "def f() -> None:\n    import dulwich.porcelain\n"),
    ("maomao_cli.cli.runs", "from maomao_cli.adapters.git import DulwichSync"),
    (
        "maomao_cli.services.runs",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..store.etcd import X\n",
    ),
]
PASSED = [
    ("maomao_cli.cli.runs", "from ..store.base import Store"),
    ("maomao_cli.cli.runs", "from ..store import memory"),
    ("maomao_cli.cli.runs", "import dockerfile_parse"),
    ("maomao_cli.services.runs", "from ..ports import ContainerRunner"),
    ("maomao_cli.services.runs", "from .adapters_note import x"),
]


@pytest.mark.parametrize(("module", "source"), CAUGHT)
def test_the_checker_catches(module: str, source: str) -> None:
    names = list(imported_names(source, module))
    assert any(
        name == bad or name.startswith(bad + ".") for name in names for bad in FRONT_END_FORBIDDEN
    ), names


@pytest.mark.parametrize(("module", "source"), PASSED)
def test_the_checker_lets_pass(module: str, source: str) -> None:
    names = list(imported_names(source, module))
    assert not any(
        name == bad or name.startswith(bad + ".") for name in names for bad in FRONT_END_FORBIDDEN
    ), names


def test_a_package_init_resolves_from_itself() -> None:
    names = set(imported_names("from .etcd import X", "maomao_cli.store", is_package=True))
    assert "maomao_cli.store.etcd" in names
