"""What cli/_compat.py takes from Typer's internals: it fails loudly when the installed Typer
no longer has them, and plain parameters are coerced as Typer's pydantic path would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.core

from cli_harness import Cli
from maomao_cli.cli import _compat
from maomao_cli.cli._compat import out_of_bounds, plain_value
from servers import free_port


def test_typer_still_has_what_plain_coercion_replaces() -> None:
    # typer.core looks the builder up by this name on each parameter's first value.
    assert callable(getattr(typer.core, "build_runtime_param", None))
    assert hasattr(typer.core._TyperParameter, "get_runtime_param")
    import maomao_cli.cli.root  # noqa: F401  (installs it)

    assert typer.core.build_runtime_param is _compat.build_runtime_param  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (str, "x", (True, "x")),
        (str, 5, (False, None)),
        (bool, True, (True, True)),
        (bool, "yes", (False, None)),  # a string for a flag: Typer's own rules decide
        (int, "7", (True, 7)),
        (int, " 7 ", (True, 7)),
        (int, 7, (True, 7)),
        (int, True, (False, None)),
        (float, "1.5", (True, 1.5)),
        (float, 2, (True, 2.0)),
        (Path, "a/b", (True, Path("a/b"))),
        (Path, 3, (False, None)),
    ],
)
def test_plain_values(annotation: type, value: Any, expected: tuple[bool, Any]) -> None:
    assert plain_value(annotation, value) == expected


@pytest.mark.parametrize(("annotation", "value"), [(int, "1.5"), (int, "x"), (float, "1,5")])
def test_a_string_that_is_no_number_is_refused(annotation: type, value: str) -> None:
    with pytest.raises(ValueError):
        plain_value(annotation, value)


def test_bounds_in_pydantics_words() -> None:
    info = typer.models.OptionInfo(min=1, max=10)
    assert out_of_bounds(0, info) == "Input should be greater than or equal to 1"
    assert out_of_bounds(11, info) == "Input should be less than or equal to 10"
    assert out_of_bounds(5, info) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("runs", "--limit", "0"),
            "Invalid value for '--limit' / '-n': Input should be greater than or equal to 1",
        ),
        (
            ("runs", "--limit", "x"),
            "Invalid value for '--limit' / '-n': Input should be a valid integer, "
            "unable to parse string as an integer",
        ),
        (
            ("register", "ok", "img", "--timeout", "soon"),
            "Invalid value for '--timeout': Input should be a valid number, "
            "unable to parse string as a number",
        ),
    ],
)
def test_a_bad_number_is_a_usage_error(cli: Cli, args: tuple[str, ...], message: str) -> None:
    result = cli.invoke(*args, "--json") if args[0] == "runs" else cli.invoke(*args)
    assert result.code == 2
    if args[0] == "runs":
        assert result.json()["error"]["message"] == message
        assert result.err == ""
    else:
        assert result.err_lines == [f"error: {message} (hint: see `maomao register --help`)"]
    assert cli.records() == []


def test_plain_values_reach_the_command(cli: Cli) -> None:
    result = cli.invoke("register", "ok", "img", "--timeout", "90", "--pids", "64", "-e", "A=1")
    assert (result.code, result.err) == (0, ""), result
    (tool,) = cli.invoke("tools", "--json").json()
    assert (tool["timeout"], tool["pids"], tool["env"]) == (90.0, 64, {"A": "1"})


def test_a_read_command_imports_no_pydantic(tmp_path: Path) -> None:
    # Against a closed port: every parameter is coerced before the store is asked.
    probe = (
        "import sys\n"
        "sys.argv = ['maomao', 'runs', '--limit', '5', '--tool', 'x', '--json']\n"
        "from maomao_cli.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('pydantic' in sys.modules, file=sys.stderr)\n"
    )
    (tmp_path / "config.toml").write_text("")
    env = {
        **os.environ,
        "MAOMAO_CONFIG": str(tmp_path / "config.toml"),
        "MAOMAO_ETCD_ENDPOINTS": f"127.0.0.1:{free_port()}",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0 and '"unavailable"' in done.stdout, done
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr
