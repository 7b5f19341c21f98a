"""The API's JSON: every string escaped so that no control character reaches a client's
terminal, even one that prints the body as it comes (`curl`).

json.dumps escapes C0 controls itself; the other characters a terminal acts on (DEL, C1,
bidi overrides, line separators; see validation.CONTROL_CHARACTERS) and lone surrogates
(which UTF-8 cannot even encode) are written as \\u escapes here. Outside strings a JSON
document is ASCII, so escaping them in the whole text only ever touches strings.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.responses import JSONResponse

from ..validation import CONTROL_CHARACTERS, SURROGATES

_UNSAFE = re.compile(f"[{CONTROL_CHARACTERS}{SURROGATES}]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def safe_json(content: Any) -> bytes:
    text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return _UNSAFE.sub(_escaped, text).encode("utf-8")


class SafeJSONResponse(JSONResponse):
    """The app's response class: JSONResponse with the escapes above."""

    def render(self, content: Any) -> bytes:
        return safe_json(content)
