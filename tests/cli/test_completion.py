"""Shell completion: Typer's --install-completion is offered, and Tab completes tool,
schedule, dataset and run names from the store; with no etcd it offers nothing, at once
and without an error."""

from __future__ import annotations

import pytest

from cli_harness import MakeCli
from maomao_cli.keys import Keys
from maomao_cli.models import Dataset, Run, Schedule, Tool
from maomao_cli.store.memory import MemoryStore

KEYS = Keys("/maomao-cli-test")


def store() -> MemoryStore:
    backend = MemoryStore()
    for name in ("weather", "wind", "ocean"):
        backend.put(KEYS.tool(name), Tool(name=name, image="img").to_json())
        backend.put(
            KEYS.schedule(f"{name}-daily"),
            Schedule(name=f"{name}-daily", tool=name, cron="0 0 * * *").to_json(),
        )
    backend.put(KEYS.dataset("obs"), Dataset(name="obs", url="https://g.example/o.git").to_json())
    backend.put(
        KEYS.run("20300317T174640Z-abcdef"),
        Run(id="20300317T174640Z-abcdef", tool="wind", member="a", status="succeeded").to_json(),
    )
    return backend


def complete(make_cli: MakeCli, words: str, backend: MemoryStore | None) -> list[str]:
    """What bash gets for `words` (the last one being completed)."""
    parts = words.split(" ")
    cli = make_cli(
        store=backend,
        env={
            "_MAOMAO_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
        },
    )
    result = cli.invoke(*parts[1:]) if backend is not None else cli.invoke_unwired(*parts[1:])
    assert result.code == 0 and result.err == "", result
    return [line.split(",", 1)[-1] for line in result.out.splitlines() if line]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("maomao schedule show w", ["weather-daily", "wind-daily"]),
        ("maomao schedule pause ", ["ocean-daily", "weather-daily", "wind-daily"]),
        ("maomao run w", ["weather", "wind"]),
        ("maomao runs --tool o", ["ocean"]),
        ("maomao unregister wi", ["wind"]),
        ("maomao spikes --tool wea", ["weather"]),
        ("maomao dataset show o", ["obs"]),
        ("maomao register x img --dataset ", ["obs"]),
        ("maomao logs 2030", ["20300317T174640Z-abcdef"]),
    ],
)
def test_names_from_the_store(make_cli: MakeCli, words: str, expected: list[str]) -> None:
    assert complete(make_cli, words, store()) == expected


def test_no_etcd_no_names_no_error(make_cli: MakeCli) -> None:
    # The harness's endpoint is a closed port: the store cannot answer.
    assert complete(make_cli, "maomao schedule show w", None) == []


def test_completion_is_offered(make_cli: MakeCli) -> None:
    shown = make_cli().invoke_unwired("--help")
    assert "--install-completion" in shown.out
