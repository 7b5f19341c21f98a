"""Pure validation of what users type: names, image references, git URLs, env, labels.

Each check returns the cleaned value or raises BadInput with one line naming the
field and the rule, so every entry point (CLI, HTTP, config) refuses the same way.
No check accepts a string that is not valid UTF-8 (Python hands such command-line bytes
over as lone surrogates, which no etcd key or JSON record can hold) or that holds a
control character.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from .errors import BadInput

NAME_RULE = "[a-z0-9][a-z0-9._-]{0,62}"
_NAME = re.compile(NAME_RULE)
# A run id (e.g. 20300317T174640Z-1a2b3c): it names a key and a log file, so it can
# hold no '/' and cannot start with a dot.
RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")

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
# Host names and users as ssh reads them: never an option (no leading '-'), nothing a
# shell or ssh_config token would expand.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_USER = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_HOST_PORT = re.compile(rf"(?:{_HOST}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_SCP_LIKE = re.compile(rf"{_USER}@{_HOST}:[^\s:][^\s]*")
_LOCAL_PREFIXES = ("file://", "/", "./", "../", "~/")
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


def is_run_id(value: str) -> bool:
    return RUN_ID.fullmatch(value) is not None


def run_id(value: str) -> str:
    if not is_run_id(value):
        raise BadInput(f"invalid run id {value!r}", hint="see `maomao runs`")
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


def git_url(value: str, field: str = "url", *, allow_local: bool = True) -> str:
    """Accept https, http, ssh, git URLs and scp-like user@host:path; file:// URLs and
    local paths only with `allow_local` (the registry allows them when the member's own
    config says [git] allow_local). A password in the URL is refused: it would be shared."""
    rule = (
        f"invalid {field} {value!r}: must be a git URL "
        "(https://, ssh://, git://, file://, user@host:path, or a local path)"
    )
    if not value or len(value) > 2048 or _CONTROL.search(value):
        raise BadInput(rule)
    text(value, field)
    if _remote_url(value, field, rule):
        return value
    if not allow_local:
        raise BadInput(
            f"invalid {field} {value!r}: a local path; datasets are shared, so their URLs "
            "must be remote (https://, ssh://, git://, user@host:path)",
            hint="a member that clones from its own disk sets [git] allow_local = true",
        )
    return value


def _remote_url(value: str, field: str, rule: str) -> bool:
    """True for a well-formed remote URL, False for a well-formed local one; else refused."""
    lowered = value.lower()
    scheme = next((s for s in _URL_SCHEMES if lowered.startswith(s)), None)
    if scheme == "file://":
        if not value[len(scheme) :].startswith("/"):
            raise BadInput(rule)
        return False
    if scheme is not None:
        rest = value[len(scheme) :]
        if not rest or rest.startswith("/") or "/" not in rest.strip("/"):
            raise BadInput(rule)
        _authority(rest.split("/", 1)[0], field, rule)
        return True
    if "://" in value or value.startswith("-") or value.startswith("ext::"):
        raise BadInput(rule)
    if _SCP_LIKE.fullmatch(value):
        return True
    if value.startswith(_LOCAL_PREFIXES):
        return False
    raise BadInput(rule)


def _authority(authority: str, field: str, rule: str) -> None:
    """[user@]host[:port], the user and host as ssh reads them; no password."""
    userinfo, at, host_port = authority.rpartition("@")
    if at and ":" in userinfo:
        raise BadInput(  # not echoed: the value holds a password
            f"invalid {field}: it holds a password, which every member would see",
            hint='put credentials in your own config: [git.credentials."HOST"]',
        )
    port = host_port.rpartition("]")[2].rpartition(":")[2] if ":" in host_port else ""
    if (
        (at and not re.fullmatch(_USER, userinfo))
        or not _HOST_PORT.fullmatch(host_port)
        or (port and not 0 < int(port) < 65536)
    ):
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


def finite_positive(value: float, field: str) -> float:
    """A finite number above 0 (nan and inf fail the comparison, a bool is not one)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 < value < math.inf:
        raise BadInput(f"invalid {field} {value!r}: must be a finite number greater than 0")
    return float(value)


def flag(value: bool, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadInput(f"invalid {field} {value!r}: must be true or false")
    return value


def finite_non_negative(value: float, field: str) -> float:
    """A finite number, 0 or more (nan and inf fail the comparison, a bool is not one)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 <= value < math.inf:
        raise BadInput(f"invalid {field} {value!r}: must be a finite number, 0 or more")
    return float(value)


def choice(value: str, choices: Sequence[str], field: str) -> str:
    if value not in choices:
        raise BadInput(f"invalid {field} {value!r}: must be one of {', '.join(choices)}")
    return value


def whole_between(value: int, low: int, high: int, field: str) -> int:
    """A whole number within [low, high] (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadInput(f"invalid {field} {value!r}: must be a whole number from {low} to {high}")
    return value


MAX_TIMEOUT = 7 * 24 * 3600.0  # a week: a longer run is a tool that hangs


def timeout(value: float, field: str = "timeout") -> float:
    """Seconds, finite, above 0 and at most a week (nan and inf fail both comparisons)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 < value <= MAX_TIMEOUT:
        raise BadInput(
            f"invalid {field} {value!r}: must be a number of seconds above 0 "
            f"and at most {MAX_TIMEOUT:g} (7 days)"
        )
    return float(value)


# The passwd grammar (useradd's default NAME_REGEX) and uids Linux can hold: 2^32-1 is
# "no uid" and Docker parses ids as signed 32-bit, so 2^31-2 is the largest usable one.
USER_NAME_RULE = "[a-z_][a-z0-9_-]{0,31}"
MAX_UID = 2**31 - 2
_USER_PART = re.compile(rf"[0-9]{{1,10}}|{USER_NAME_RULE}")


def user(value: str, field: str = "user") -> str:
    """A container user as Docker takes it: uid or name, optionally :gid or :group."""
    parts = value.split(":") if isinstance(value, str) else []
    fine = 1 <= len(parts) <= 2 and all(
        _USER_PART.fullmatch(part) and (not part.isdigit() or int(part) <= MAX_UID)
        for part in parts
    )
    if not fine:
        raise BadInput(
            f"invalid {field} {value!r}: expected uid[:gid] (numbers 0 to {MAX_UID}) "
            f"or name[:group] matching {USER_NAME_RULE}"
        )
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


_SIZE = re.compile(r"([0-9]{1,19})([kmg]?)b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
MIN_MEMORY = 6 * 1024**2  # Docker refuses less
MAX_BYTES = 2**63 - 1  # Docker's sizes are signed 64-bit


def _size_bytes(value: str) -> int | None:
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        return None
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def memory(value: str, field: str = "memory", at_most: int | None = None) -> str:
    """Docker-style memory sizes like 256m or 1g; at least 6 MiB, which Docker requires,
    and at most `at_most` bytes (the host's memory, for a tool's own limit)."""
    amount = _size_bytes(value) if isinstance(value, str) else None
    if amount is None:
        raise BadInput(f"invalid {field} {value!r}: expected a size like 256m or 1g")
    if amount < MIN_MEMORY:
        raise BadInput(f"invalid {field} {value!r}: Docker needs at least 6m")
    if at_most is not None and amount > at_most:
        raise BadInput(
            f"invalid {field} {value!r}: must be at most the host's memory ({size_text(at_most)})"
        )
    if amount > MAX_BYTES:
        raise BadInput(f"invalid {field} {value!r}: must be at most {size_text(MAX_BYTES)}")
    return value.strip().lower()


def memory_bytes(value: str) -> int:
    amount = _size_bytes(memory(value))
    assert amount is not None  # memory() validated it
    return amount


def size(value: str | int, field: str, minimum: int = 1) -> int:
    """A size in bytes: a whole number, or text with a unit b, k, m or g as Docker takes
    it (1024-based); returns the bytes."""
    if isinstance(value, bool):
        amount = None
    elif isinstance(value, int):
        amount = value
    else:
        amount = _size_bytes(value) if isinstance(value, str) else None
    if amount is None or not minimum <= amount <= MAX_BYTES:
        raise BadInput(
            f"invalid {field} {value!r}: expected a size of at least {size_text(minimum)}, "
            "in bytes or with a unit b, k, m or g (e.g. 500m, 2g)"
        )
    return amount


def size_text(value: int) -> str:
    """Bytes for people: 12 B, 64.0 KiB, 1.5 GiB."""
    if value < 1024:
        return f"{value} B"
    amount = float(value)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        amount /= 1024
        if amount < 1024:
            return f"{amount:.1f} {unit}"
    return f"{amount / 1024:.1f} EiB"


_NETWORK = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


def network(value: str) -> str:
    """A Docker network name; `host` is refused because it would bypass isolation."""
    if not _NETWORK.fullmatch(value) or value == "host":
        raise BadInput(
            f"invalid network {value!r}: "
            "use bridge, none or the name of a Docker network (not host)"
        )
    return value
