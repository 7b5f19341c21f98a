"""How `maomao worker` and `maomao serve` write their log: Rich on a terminal, one plain
line per event elsewhere (journald, files, pipes: no escape codes), or with
`--log-format json` one JSON object per line: `time` (ISO 8601 with zone), `level`,
`event`, `message`, `member`, and the event's own fields (`schedule`, `tool`, `run_id`,
`nominal`, `status`, `duration_s`, `reason`, `attempt`) where it has them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..errors import BadInput
from . import output

if TYPE_CHECKING:
    from .output import Output

FORMATS = ("text", "json")
# The fields a log call may carry (logging's `extra=`), in the order they are shown.
EVENT_FIELDS = (
    "schedule",
    "tool",
    "run_id",
    "nominal",
    "attempt",
    "status",
    "duration_s",
    "reason",
)
_EPOCH_FIELDS = {"nominal"}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


class JsonLines(logging.Formatter):
    """One JSON object per record. json.dumps escapes every control character, so a
    string from etcd cannot forge a second line."""

    def __init__(self, member: str | None) -> None:
        super().__init__()
        self.member = member

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
            "logger": record.name,
        }
        if self.member is not None:
            line["member"] = self.member
        for key in EVENT_FIELDS:
            value = getattr(record, key, None)
            if value is None:
                continue
            line[key] = _iso(value) if key in _EPOCH_FIELDS and isinstance(value, float) else value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_format(flag: str | None, configured: str) -> str:
    chosen = flag if flag is not None else configured
    if chosen not in FORMATS:
        raise BadInput(f"--log-format {chosen!r} is not text or json", hint="use text or json")
    return chosen


def setup(
    out: Output, fmt: str, *, member: str | None = None, names: tuple[str, ...] = ("maomao",)
) -> None:
    """Send the named loggers to stderr in the chosen format (replacing the one-line
    handler every command gets)."""
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines(member))
    elif sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(
            console=out.err_console, show_path=False, markup=False, log_time_format="%H:%M:%S"
        )
        handler.setFormatter(output.safe_formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            output.safe_formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
        )
    for name in names:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
