"""Pure validation of what users type: names, image references, git URLs, env, labels.

Each check returns the cleaned value or raises BadInput with one line naming the
field and the rule, so every entry point (CLI, HTTP, config) refuses the same way.
No check accepts a string that is not valid UTF-8 (Python hands such command-line bytes
over as lone surrogates, which no etcd key or JSON record can hold) or that holds a
control character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import BadInput

NAME_RULE = "[a-z0-9][a-z0-9._-]{0,62}"
_NAME = re.compile(NAME_RULE)

# The grammar of github.com/distribution/reference, the one `docker pull` applies.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # ASCII, as in Go's \w
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
_IMAGE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?"
)

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9._/-]{0,62}")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9._-]{0,63}")

_URL_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s:][^\s]*")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")

# What a terminal may act on instead of showing, as a regex character class: C0 controls
# but tab and newline (ESC starts CSI and OSC sequences, BEL ends OSC, CR rewrites the
# line), DEL, C1 controls (U+009B is CSI on its own), the bidi marks, embeddings,
# overrides and isolates (they reorder what is shown) and the Unicode line separators.
# The renderers (cli/output.py, api/responses.py) escape these; the checks refuse them.
CONTROL_CHARACTERS = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069"
)
# Lone surrogates: how Python hands over bytes that were not UTF-8 (from argv, a file
# name), which no etcd key, UTF-8 stream or JSON record can hold.
SURROGATES = "\ud800-\udfff"
_SURROGATE = re.compile(f"[{SURROGATES}]")
_CONTROL_CHARACTER = re.compile(f"[{CONTROL_CHARACTERS}]")


def text(value: str, field: str, *, multiline: bool = False) -> str:
    """Any string a user gives: valid UTF-8 and free of control characters (tab and
    newline too, unless `multiline`)."""
    if _SURROGATE.search(value):
        raise BadInput(f"invalid {field} {value!r}: not valid UTF-8")
    found = _CONTROL_CHARACTER.search(value) or (None if multiline else re.search("[\t\n]", value))
    if found:
        raise BadInput(
            f"invalid {field} {value!r}: holds the control character U+{ord(found.group()):04X}"
        )
    return value


def name(value: str, field: str = "name") -> str:
    # The pattern is ASCII: it refuses surrogates and control characters as well.
    if not _NAME.fullmatch(value):
        raise BadInput(
            f"invalid {field} {value!r}: must match {NAME_RULE} "
            "(lowercase letters, digits, '.', '_', '-'; at most 63 characters)"
        )
    return value


def image(value: str, field: str = "image") -> str:
    if len(value) > 255 or not _IMAGE.fullmatch(value):
        raise BadInput(
            f"invalid {field} {value!r}: not a Docker image reference "
            "(expected [registry/]path[:tag][@digest], lowercase path, e.g. alpine:3.19)"
        )
    return value


def git_url(value: str, field: str = "url") -> str:
    """Accept https, http, ssh, git, file URLs, scp-like user@host:path, and local paths."""
    rule = (
        f"invalid {field} {value!r}: must be a git URL "
        "(https://, ssh://, git://, file://, user@host:path, or a local path)"
    )
    if not value or len(value) > 2048 or _CONTROL.search(value):
        raise BadInput(rule)
    text(value, field)
    lowered = value.lower()
    for scheme in _URL_SCHEMES:
        if lowered.startswith(scheme):
            rest = value[len(scheme) :]
            if scheme == "file://":
                if not rest.startswith("/"):
                    raise BadInput(rule)
            elif not rest or rest.startswith("/") or "/" not in rest.strip("/"):
                raise BadInput(rule)
            return value
    if "://" in value or value.startswith("-") or value.startswith("ext::"):
        raise BadInput(rule)
    if _SCP_LIKE.fullmatch(value):
        return value
    if value.startswith(("/", "./", "../", "~/")):
        return value
    raise BadInput(rule)


def branch(value: str) -> str:
    if (
        not value
        or _CONTROL.search(value)
        or value.startswith(("-", "/"))
        or value.endswith(("/", ".lock"))
        or ".." in value
        or any(c in value for c in "~^:?*[\\")
    ):
        raise BadInput(f"invalid branch {value!r}: not a valid git branch name")
    return text(value, "branch")


def _env_entry(key: str, val: str, given: str) -> None:
    if not _ENV_KEY.fullmatch(key):
        raise _not_env(given)
    if "\x00" in val:
        raise BadInput(f"invalid environment variable {key}: value holds a NUL byte")
    if _SURROGATE.search(val):
        raise BadInput(f"invalid environment variable {key}: value is not valid UTF-8")


def _not_env(given: str) -> BadInput:
    return BadInput(
        f"invalid environment variable {given!r}: expected KEY=VALUE "
        "with KEY made of letters, digits and '_'"
    )


def env_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """Parse KEY=VALUE strings (as given with --env)."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, val = pair.partition("=")
        if not sep:
            raise _not_env(pair)
        _env_entry(key, val, pair)
        result[key] = val
    return result


def env(value: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """Environment variables as a mapping, or as KEY=VALUE strings (as `docker run -e`)."""
    if isinstance(value, str):
        return env_pairs([value])
    if not isinstance(value, Mapping):
        return env_pairs(value)
    for key, val in value.items():
        _env_entry(key, val, f"{key}={val}")
    return dict(value)


def labels(text: str | Iterable[str] | Mapping[str, str], field: str = "labels") -> dict[str, str]:
    """Parse k=v,k2=v2 (or a list of k=v, or a mapping) into labels."""
    if isinstance(text, Mapping):
        items = [f"{k}={v}" for k, v in text.items()]
    else:
        items = text.split(",") if isinstance(text, str) else list(text)
    result: dict[str, str] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(val):
            raise BadInput(
                f"invalid {field} entry {item!r}: expected key=value "
                "(key lowercase [a-z0-9._/-], value [A-Za-z0-9._-])"
            )
        result[key] = val
    return result


def labels_match(selector: Mapping[str, str], member_labels: Mapping[str, str]) -> bool:
    return all(member_labels.get(k) == v for k, v in selector.items())


def positive(value: float, field: str) -> float:
    if not value > 0:
        raise BadInput(f"invalid {field} {value!r}: must be greater than 0")
    return value


def at_least(value: int, minimum: int, field: str) -> int:
    if value < minimum:
        raise BadInput(f"invalid {field} {value}: must be at least {minimum}")
    return value


def data_subdir(value: str) -> str:
    """A folder inside a dataset's work tree: never absolute, never climbing out of it."""
    text(value, "data subdir")
    if value.startswith("/") or ".." in value.split("/"):
        raise BadInput(f"invalid data subdir {value!r}: must be a relative path inside the dataset")
    return value


_SIZE = re.compile(r"([0-9]+)([kmg]?)b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def memory(value: str, field: str = "memory") -> str:
    """Docker-style memory sizes like 256m or 1g; at least 6 MiB, which Docker requires."""
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise BadInput(f"invalid {field} {value!r}: expected a size like 256m or 1g")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if size < 6 * 1024**2:
        raise BadInput(f"invalid {field} {value!r}: Docker needs at least 6m")
    return value.strip().lower()


def memory_bytes(value: str) -> int:
    match = _SIZE.fullmatch(memory(value))
    assert match is not None  # memory() validated it
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


_NETWORK = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


def network(value: str) -> str:
    """A Docker network name; `host` is refused because it would bypass isolation."""
    if not _NETWORK.fullmatch(value) or value == "host":
        raise BadInput(
            f"invalid network {value!r}: "
            "use bridge, none or the name of a Docker network (not host)"
        )
    return value
