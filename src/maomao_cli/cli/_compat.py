"""What maomao takes from Typer's internals, all in this one module.

- Click's exceptions: vendored inside Typer since 0.22, a separate dependency before.
- Plain coercion: since 0.25 Typer coerces every parameter through a pydantic TypeAdapter,
  so each command imported pydantic (about 65 ms, a fifth of `maomao tools`) to turn
  "5" into 5. Parameters of plain types (str, bool, int, float, Path, lists of them; numbers
  with a min or max) are coerced here
  instead, the way pydantic would; every other parameter, and every value that is not
  plain, still goes through Typer's own. tests/unit/test_typer_internals.py fails when
  the installed Typer no longer has what this relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_origin

from typer import Abort, Exit

try:
    from typer._click.exceptions import BadParameter, ClickException, UsageError
except ImportError:  # pragma: no cover - older Typer
    from click.exceptions import (  # type: ignore[no-redef,import-not-found,assignment,unused-ignore]
        BadParameter,
        ClickException,
        UsageError,
    )

import typer.core as typer_core
from typer._coercion import RuntimeParam, TypeDescriptor
from typer._coercion import build_runtime_param as typers_build_runtime_param
from typer._param_types import coerce_cli_path

if TYPE_CHECKING:
    from typer.models import ParameterInfo

__all__ = ["Abort", "ClickException", "Exit", "UsageError", "install_plain_coercion"]

# pydantic's own wording, so an error reads the same whichever path coerced it.
_NOT_A = {
    int: "Input should be a valid integer, unable to parse string as an integer",
    float: "Input should be a valid number, unable to parse string as a number",
}
_PLAIN = (str, bool, int, float, Path)


def plain_value(annotation: type, value: Any) -> tuple[bool, Any]:
    """(True, the value as `annotation`) when it is plain to coerce, (False, None) when
    Typer's own coercion must decide. Raises ValueError for a string that is no number."""
    if annotation in (str, bool):  # bool: a flag's value, or None (unset)
        return (True, value) if isinstance(value, annotation) else (False, None)
    if annotation is Path:
        return (True, Path(value)) if isinstance(value, str | Path) else (False, None)
    if isinstance(value, bool):
        return False, None
    if isinstance(value, annotation) or (annotation is float and isinstance(value, int)):
        return True, annotation(value)
    if isinstance(value, str):
        return True, annotation(value.strip())
    return False, None


def out_of_bounds(number: float, info: ParameterInfo) -> str | None:
    """pydantic's words for a number outside the parameter's min and max, else None."""
    if info.min is not None and number < info.min:
        return f"Input should be greater than or equal to {info.min}"
    if info.max is not None and number > info.max:
        return f"Input should be less than or equal to {info.max}"
    return None


def plain_annotation(descriptor: TypeDescriptor) -> tuple[type, bool] | None:
    """(the leaf type, whether it is a list) of a parameter coerced here, else None."""
    info = descriptor.parameter_info
    if info.parser is not None or info.clamp or descriptor.file_annotation is not None:
        return None
    annotation: Any = descriptor.annotation
    is_list = get_origin(annotation) is list
    if is_list:
        [annotation] = get_args(annotation) or [None]
    if annotation not in _PLAIN or (annotation is Path and info.path_type is not None):
        return None
    return annotation, is_list


@dataclass(frozen=True)  # Typer's own frozen dataclass as its base: not @frozen
class PlainRuntimeParam(RuntimeParam):
    leaf: type
    is_list: bool
    typers_own: Callable[[], RuntimeParam]

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        if self.is_list and isinstance(value, list | tuple):
            coerced = [self._one(item, param, ctx) for item in value]
            if all(ok for ok, _ in coerced):
                return [item for _, item in coerced]
        elif not self.is_list:
            ok, item = self._one(value, param, ctx)
            if ok:
                return item
        return self.typers_own()._coerce_value(value, param, ctx)

    def _one(self, value: Any, param: Any, ctx: Any) -> tuple[bool, Any]:
        try:
            ok, coerced = plain_value(self.leaf, value)
        except ValueError:
            raise BadParameter(_NOT_A[self.leaf], ctx=ctx, param=param) from None
        if not ok:
            return False, None
        if self.leaf is Path:  # Typer's own checks: exists, file_okay, readable, ...
            info = self.parameter_info
            return True, coerce_cli_path(coerced, info, path_type=Path, param=param, ctx=ctx)
        if self.leaf in (int, float) and (wrong := out_of_bounds(coerced, self.parameter_info)):
            raise BadParameter(wrong, ctx=ctx, param=param)
        return True, coerced


def build_runtime_param(descriptor: TypeDescriptor) -> RuntimeParam:
    """Typer's coercion of one parameter, past pydantic where the parameter is plain."""
    plain = plain_annotation(descriptor)
    if plain is None:
        return typers_build_runtime_param(descriptor)
    return PlainRuntimeParam(
        parameter_info=descriptor.parameter_info,
        annotation=descriptor.annotation,
        leaf=plain[0],
        is_list=plain[1],
        typers_own=lambda: typers_build_runtime_param(descriptor),
    )


def install_plain_coercion() -> None:
    """Route plain parameters past pydantic: typer.core looks the builder up by name."""
    typer_core.build_runtime_param = build_runtime_param  # type: ignore[attr-defined]
