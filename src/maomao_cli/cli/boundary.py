"""The one error boundary: every outcome of a command becomes one exit status.

The root Typer group uses `Boundary` as its class, so `maomao` from a shell and Typer's
`CliRunner` in the tests take the same path: bad input and usage errors exit 2, an
unreachable service or a failed operation 1, Ctrl-C 130, and an unexpected exception 1
with "internal error: ..." (its stack only with `--traceback` or MAOMAO_TRACEBACK=1).
Under `--json` every failure is one JSON object on stdout whose `code` says what it is.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from typer.core import TyperGroup

from ..errors import ExitStatus, MaomaoError
from ._compat import Abort, ClickException, Exit, UsageError
from .output import Output
from .state import CliState

TRACEBACK_FLAG = "--traceback"


def wants_traceback(argv: Sequence[str]) -> bool:
    return TRACEBACK_FLAG in argv or os.environ.get("MAOMAO_TRACEBACK", "") not in ("", "0")


class Boundary(TyperGroup):
    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        state = CliState(out=Output(json_mode="--json" in argv), injected=extra.pop("obj", None))
        try:
            returned = super().main(
                argv, prog_name, complete_var, standalone_mode=False, obj=state, **extra
            )
            code = returned if isinstance(returned, int) else int(ExitStatus.OK)
            if code == ExitStatus.INTERRUPTED:  # Typer turned a Ctrl-C into Exit(130)
                state.out.error("interrupted", "interrupted")
        except BaseException as exc:
            code = report(exc, state.out, traceback_wanted=wants_traceback(argv))
        finally:
            state.close()
        if standalone_mode:
            raise SystemExit(code)
        return code


def report(exc: BaseException, out: Output, *, traceback_wanted: bool) -> int:
    """Print one line (or one JSON object) for `exc`; return the exit status."""
    if isinstance(exc, MaomaoError):
        if not getattr(exc, "reported", False):
            out.error(exc.code, exc.message, exc.hint)
        return int(exc.exit_status)
    if isinstance(exc, UsageError):
        return _usage(exc, out)
    if isinstance(exc, Exit):
        return int(exc.exit_code)
    if isinstance(exc, ClickException):
        out.error("usage", exc.format_message())
        return int(ExitStatus.BAD_INPUT)
    if isinstance(exc, KeyboardInterrupt | Abort):
        out.error("interrupted", "interrupted")
        return int(ExitStatus.INTERRUPTED)
    if isinstance(exc, SystemExit):  # a library's exit: keep its status, say nothing
        return exc.code if isinstance(exc.code, int) else int(ExitStatus.ERROR)
    if traceback_wanted:
        traceback.print_exception(exc, file=sys.stderr)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    out.error("internal", f"internal error: {detail}", f"run with {TRACEBACK_FLAG} for details")
    return int(ExitStatus.ERROR)


def _usage(exc: UsageError, out: Output) -> int:
    if type(exc).__name__ == "NoArgsIsHelpError":  # `maomao` or a group with no command
        out.text(exc.ctx.get_help() if exc.ctx else "")
        return int(ExitStatus.BAD_INPUT)
    command = exc.ctx.command_path if exc.ctx else "maomao"
    out.error("usage", exc.format_message(), f"see `{command} --help`")
    return int(ExitStatus.BAD_INPUT)
