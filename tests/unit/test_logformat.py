"""`--log-format json`: one JSON object per record with time (ISO 8601, zone), level,
event, message, member and the event's fields; control characters cannot forge a line."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import pytest

from maomao_cli.cli.logformat import JsonLines, log_format
from maomao_cli.errors import BadInput


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("maomao.worker", logging.INFO, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_event_fields() -> None:
    line = JsonLines("lab-a").format(
        record(
            "finished s",
            event="finished",
            schedule="s",
            tool="t",
            run_id="r1",
            nominal=1_900_000_000.0,
            status="succeeded",
            duration_s=1.5,
            attempt=1,
        )
    )
    parsed = json.loads(line)
    assert parsed["event"] == "finished" and parsed["level"] == "info"
    assert parsed["member"] == "lab-a" and parsed["run_id"] == "r1"
    assert parsed["nominal"] == "2030-03-17T17:46:40.000+00:00"
    assert parsed["duration_s"] == 1.5 and parsed["status"] == "succeeded"
    assert datetime.fromisoformat(parsed["time"]).utcoffset() is not None
    assert "reason" not in parsed  # absent fields are left out, not null


def test_plain_line_and_hostile_text() -> None:
    line = JsonLines(None).format(record('evil\n{"level": "error"}\x1b[31m'))
    assert "\n" not in line and "\x1b" not in line
    parsed = json.loads(line)
    assert parsed["event"] == "log" and "member" not in parsed
    assert parsed["message"] == 'evil\n{"level": "error"}\x1b[31m'


def test_traceback_is_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        made = record("crashed")
        made.exc_info = sys.exc_info()
    parsed = json.loads(JsonLines(None).format(made))
    assert "ValueError: boom" in parsed["traceback"]


def test_log_format_choice() -> None:
    assert log_format(None, "json") == "json"
    assert log_format("text", "json") == "text"
    with pytest.raises(BadInput, match="--log-format 'xml' is not text or json"):
        log_format("xml", "text")
