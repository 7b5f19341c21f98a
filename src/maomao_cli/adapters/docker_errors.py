"""What Docker's failures mean, in one line each: an engine that cannot be reached, an
image that does not exist, a --user the image does not have."""

from __future__ import annotations

import re

from ..errors import Unavailable

# What the registry says of an image that is not there (not: one it cannot reach).
MISSING_IMAGE = re.compile(
    r"manifest unknown|manifest for .* not found|pull access denied|repository does not "
    r"exist|no such image|not found: manifest",
    re.IGNORECASE,
)
# What the engine says when the image has no such --user.
BAD_USER = re.compile(r"unable to find user|no matching entries in (passwd|group) file", re.I)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return one_line(explanation or exc)


def reason(exc: Exception, api_timeout: float) -> str:
    """The heart of a transport error, not urllib3's nested reprs."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno.group(1).strip().lower()
    if "FileNotFoundError" in text:
        return "no such socket"
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return f"no answer within {api_timeout:g}s"
    return explain(exc)[:300]


def unavailable(host: str, exc: Exception, api_timeout: float) -> Unavailable:
    return Unavailable(
        f"cannot reach Docker at {host}: {reason(exc, api_timeout)}",
        hint="is dockerd running? set [docker] host or MAOMAO_DOCKER_HOST",
    )
