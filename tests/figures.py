"""Figures a test measured (counts, outcomes), for the closing notes and for failures.

They go to a logger, not to print: pytest shows them in a failed test's report, and live
with `-o log_cli=true -o log_cli_level=INFO`.
"""

from __future__ import annotations

import logging

_log = logging.getLogger("maomao.tests.figures")
_log.setLevel(logging.INFO)


def figure(text: str) -> None:
    _log.info("%s", text)
