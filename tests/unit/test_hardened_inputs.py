"""Property tests over everything a user (or another member) hands maomao: every input
either works, and then satisfies the rule it was checked against, or is refused with one of
maomao's own errors (BadInput, ConfigError, SeriesError, RecordError). Anything else is a
traceback, and fails the test.

The number of generated inputs is counted per test and printed at the end of the module;
each test is held to its planned count (EXAMPLES), and the plan to at least MIN_TOTAL."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maomao_cli import config, validation
from maomao_cli.detect.series import SeriesError, read_control_dir, read_csv_series
from maomao_cli.errors import MaomaoError, RecordError
from maomao_cli.models import Member, Record, Run, Schedule, Spike, Tool
from maomao_cli.scheduling import CronClock, validate_cron, zone

T = TypeVar("T")
MIN_TOTAL = 10_000
# The inputs each test tries, by what it checks: together at least MIN_TOTAL
# (test_the_planned_inputs_reach_the_total), and each test is held to its own count in
# whichever process ran it, so the module's tests may spread over every xdist worker.
EXAMPLES = {
    "name": 1500,
    "image": 1500,
    "git url": 1500,
    "env": 800,
    "labels": 800,
    "cron": 800,
    "zone": 800,
    "config (toml)": 800,
    "config (text)": 600,
    "control": 500,
    "csv": 800,
    "record": 800,
}
TRIED: Counter[str] = Counter()
REFUSED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def count_inputs(pytestconfig: pytest.Config) -> Iterator[None]:
    yield
    total = sum(TRIED.values())
    # pytest's terminal writer (shown with -s, as print was): print is for cli/output.py only.
    terminal = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    lines = [f"hardened inputs: {total} tried, {sum(REFUSED.values())} refused, 0 tracebacks"]
    lines += [f"  {w:<16} {TRIED[w]:>6} tried {REFUSED[w]:>6} refused" for w in sorted(TRIED)]
    if terminal is not None:
        terminal.write_line("")
        for line in lines:
            terminal.write_line(line)
    short = {w: (TRIED[w], EXAMPLES[w]) for w in TRIED if TRIED[w] < EXAMPLES[w]}
    assert not short, f"tried fewer inputs than planned (tried, planned): {short}"


def outcome(what: str, check: Callable[[], T]) -> T | None:
    """Run one check; None when it refused with a maomao error. Other exceptions propagate."""
    TRIED[what] += 1
    try:
        return check()
    except (MaomaoError, SeriesError) as exc:
        REFUSED[what] += 1
        # One line: the CLI prints str(exc) as the one stderr line.
        assert str(exc).strip() and "\n" not in str(exc).strip()
        return None


def fast(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def near(pattern: str, extra: str = "") -> st.SearchStrategy[str]:
    """Strings that match the rule, strings built of its characters, and anything."""
    alphabet = "abcXYZ019._-/:@=+ ~\\\t\n\x00é" + extra
    return st.one_of(
        st.from_regex(pattern, fullmatch=True),
        st.text(alphabet=alphabet, max_size=80),
        st.text(max_size=80),
    )


# Names, images, URLs, env, labels -------------------------------------------------------


@fast(EXAMPLES["name"])
@given(near(validation.NAME_RULE))
def test_names(value: str) -> None:
    accepted = outcome("name", lambda: validation.name(value))
    if accepted is not None:
        assert accepted == value
        assert re.fullmatch(validation.NAME_RULE, value)
        assert "/" not in value and len(value) <= 63  # never escapes its key in etcd


def _image_like() -> st.SearchStrategy[str]:
    """Image-reference-shaped strings, built from parts: st.from_regex on the whole
    grammar costs about 17 ms an example, this well under 1 ms."""
    word = st.text("abz09", min_size=1, max_size=6)
    component = st.tuples(word, st.lists(st.tuples(st.sampled_from("._-"), word), max_size=2)).map(
        lambda parts: parts[0] + "".join(sep + more for sep, more in parts[1])
    )
    port = st.one_of(st.just(""), st.integers(0, 99999).map(lambda p: f":{p}"))
    domain = st.one_of(
        st.just(""),
        st.tuples(st.text("abc.-019", min_size=1, max_size=12), port).map(
            lambda d: f"{d[0]}{d[1]}/"
        ),
    )
    path = st.lists(component, min_size=1, max_size=3).map("/".join)
    tag = st.one_of(st.just(""), st.text("aZ09_.-", min_size=1, max_size=20).map(lambda t: ":" + t))
    digest = st.one_of(
        st.just(""),
        st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda d: "@sha256:" + d),
    )
    return st.tuples(domain, path, tag, digest).map("".join)


def _near_image() -> st.SearchStrategy[str]:
    alphabet = "abcXYZ019._-/:@=+ ~\\\t\n\x00éABC[]"
    return st.one_of(_image_like(), st.text(alphabet=alphabet, max_size=80), st.text(max_size=80))


@fast(EXAMPLES["image"])
@given(_near_image())
def test_image_references(value: str) -> None:
    accepted = outcome("image", lambda: validation.image(value))
    if accepted is not None:
        assert accepted == value and len(value) <= 255
        assert not value.startswith("-")  # never read as a docker option
        assert not any(c.isspace() or ord(c) < 32 for c in value)


URL_LIKE = r"(https?|ssh|git|file)://[a-z0-9.@:-]{0,20}/[a-zA-Z0-9._/~-]{0,30}|[a-z]+@[a-z.]+:[a-z/._-]+|[.~]?/[a-z/ ._-]*"


@fast(EXAMPLES["git url"])
@given(near(URL_LIKE, extra="%$;|`&'\"-:"))
def test_git_urls(value: str) -> None:
    accepted = outcome("git url", lambda: validation.git_url(value))
    if accepted is not None:
        assert accepted == value
        # Never a git option, a transport helper, or a control character.
        assert not value.startswith("-")
        assert not value.lower().startswith("ext::")
        assert not re.search(r"[\x00-\x1f\x7f]", value)


@fast(EXAMPLES["env"])
@given(st.lists(near(r"[A-Za-z_][A-Za-z0-9_]*=.*", extra="=$"), max_size=5))
def test_env_pairs(pairs: list[str]) -> None:
    accepted = outcome("env", lambda: validation.env_pairs(pairs))
    if accepted is not None:
        assert len(accepted) <= len(pairs)
        for key, val in accepted.items():
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key)
            assert "\x00" not in val


@fast(EXAMPLES["labels"])
@given(
    st.one_of(near(r"([a-z0-9/]{1,8}=[A-Za-z0-9._-]{0,8},?){0,3}", extra=",="), st.lists(st.text()))
)
def test_labels(text: str | list[str]) -> None:
    accepted = outcome("labels", lambda: validation.labels(text))
    if accepted is not None:
        for key, val in accepted.items():
            assert re.fullmatch(r"[a-z0-9][a-z0-9._/-]{0,62}", key)
            assert re.fullmatch(r"[A-Za-z0-9._-]{0,63}", val)


# Cron expressions and time zones --------------------------------------------------------

CRON_FIELD = st.one_of(
    st.sampled_from(["*", "*/5", "0", "59", "60", "1-5", "5-1", "1,2,3", "*/0", "L", "?", "MON"]),
    st.from_regex(r"[0-9*/,\-LW#?A-Z]{1,6}", fullmatch=True),
    st.text(max_size=4),
)
VALID_FIELD = st.sampled_from(["*", "*/5", "0", "1-5", "1,2,3", "*/15", "30", "1-10/3", "2"])
CRON = st.one_of(
    st.lists(VALID_FIELD, min_size=5, max_size=6).map(" ".join),
    st.lists(st.one_of(VALID_FIELD, CRON_FIELD), min_size=5, max_size=6).map("  ".join),
    st.lists(CRON_FIELD, min_size=4, max_size=7).map(" ".join),
    st.text(max_size=40),
)
EPOCH = st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False)  # up to 2100


@fast(EXAMPLES["cron"])
@given(CRON, EPOCH)
def test_cron_expressions(expr: str, after: float) -> None:
    def fire_times() -> tuple[str, list[float], float | None]:
        normalized = validate_cron(expr)
        clock = CronClock(expr)
        return normalized, clock.upcoming(after, 3), clock.prev_at_or_before(after)

    accepted = outcome("cron", fire_times)
    if accepted is not None:
        normalized, upcoming, previous = accepted
        assert len(normalized.split(" ")) in (5, 6)
        assert after < upcoming[0] < upcoming[1] < upcoming[2]
        assert previous is None or previous <= after


ZONES = st.one_of(
    st.sampled_from(
        ["UTC", "Europe/Zurich", "America/New_York", "Asia/Kathmandu", "Etc/GMT+5", "utc",
         "Europe/", "../etc/passwd", "/etc/localtime", "Europe/Zurich\x00", "posixrules",
         "Factory", "EST5EDT", ""]
    ),
    st.from_regex(r"[A-Z][a-z]+/[A-Z][a-z_]+", fullmatch=True),
    st.text(max_size=40),
)  # fmt: skip


@fast(EXAMPLES["zone"])
@given(ZONES, EPOCH)
def test_time_zones(name: str, after: float) -> None:
    def next_fire() -> float:
        zone(name)
        return CronClock("0 6 * * *", name).next_after(after)

    fire = outcome("zone", next_fire)
    if fire is not None:
        assert after < fire <= after + 2 * 86400  # daily: within two days, DST included


# Config files -----------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


SECTIONS = {
    name: [f.name for f in dataclasses.fields(cls)] for name, cls in config._SECTIONS.items()
}
SCALARS = st.one_of(
    st.sampled_from([0, 1, 2, 10, -1, 0.5, 3.0, -0.0, math.nan, math.inf, True, "", "x"]),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20),
    st.sampled_from(["127.0.0.1:2379", "/maomao", "robust", "seed", "256m", "none", "eu=1"]),
)
TOML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "region", "K"]), inner)
    ),
    max_leaves=5,
)


@st.composite
def config_structures(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    names = [*SECTIONS, "bogus"]
    data: dict[str, dict[str, Any]] = {}
    for section in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        keys = [*SECTIONS.get(section, ["whatever"]), "typo"]
        table = draw(st.dictionaries(st.sampled_from(keys), TOML_VALUES, max_size=4))
        data[section] = table
    return data


def render(data: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, table in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def load_text(text: str | bytes) -> config.Settings:
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / "config.toml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return config.load(str(path), env={})


def assert_sane(settings: config.Settings) -> None:
    """What the rest of maomao relies on once a config loaded."""
    for section in config._SECTIONS:
        for name, value in vars(getattr(settings, section)).items():
            if isinstance(value, float):
                assert math.isfinite(value) and value >= 0, (section, name, value)
    assert settings.etcd.timeout > 0
    assert settings.etcd.endpoints
    assert settings.worker.lease_ttl >= 2 and settings.worker.max_parallel >= 1


@fast(EXAMPLES["config (toml)"])
@given(config_structures())
def test_config_structures(data: dict[str, dict[str, Any]]) -> None:
    loaded = outcome("config (toml)", lambda: load_text(render(data)))
    if loaded is not None:
        assert_sane(loaded)


CONFIG_TEXT = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=200),
    st.lists(
        st.sampled_from(
            ["[etcd]", "[worker]", "[spikes]", "endpoints = [\"a:1\"]", "timeout = 0",
             "timeout = nan", "prefix = \"\"", "lease_ttl = 1", "labels = { a = 1 }",
             "member = \"Bad Name\"", "= 3", "[[etcd]]", "user = \"u\"", "memory = \"1k\""]
        ),
        max_size=6,
    ).map("\n".join),
    st.binary(max_size=100),
)  # fmt: skip


@fast(EXAMPLES["config (text)"])
@given(CONFIG_TEXT)
def test_config_files(text: str | bytes) -> None:
    loaded = outcome("config (text)", lambda: load_text(text))
    if loaded is not None:
        assert_sane(loaded)


# Control files and CSVs -------------------------------------------------------------------

CONTENT = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [b"42\n", b"value\n3.5\r\n", b"nan", b"1e999", b"\xef\xbb\xbf7", b"1\n2\n", b""]
    ),
    st.floats().map(lambda f: f"{f}\n".encode()),
)


@fast(EXAMPLES["control"])
@given(st.dictionaries(st.text(alphabet="0123456789TZ-abc", max_size=12), CONTENT, max_size=5))
def test_control_dirs(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as where:
        for stamp, content in files.items():
            (Path(where) / f"control-{stamp}.csv").write_bytes(content)
        read = outcome("control", lambda: read_control_dir(Path(where)))
    assert read is not None  # an existing folder always reads: bad files are skipped
    assert len(read.points) + len(read.skipped) <= len(files)
    assert all(math.isfinite(p.value) for p in read.points)
    assert [p.sortable for p in read.points] == sorted(p.sortable for p in read.points)


CSV_CELL = st.one_of(
    st.sampled_from(["2026-01-01T00:00:00", "2026-01-01 00:00:01+02:00", "3.5", "nan", "",
                     '"x"', "timestamp", "value", "2026-13-01", "1e400", "-0"]),
    st.text(max_size=12),
)  # fmt: skip
CSV_TEXT = st.one_of(
    st.lists(st.lists(CSV_CELL, max_size=4).map(",".join), max_size=6).map(
        lambda rows: "\n".join(["timestamp,value", *rows])
    ),
    st.text(max_size=200),
    st.binary(max_size=100),
)


@fast(EXAMPLES["csv"])
@given(CSV_TEXT)
def test_csv_series(text: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / "series.csv"
        raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
        path.write_bytes(raw)
        read = outcome("csv", lambda: read_csv_series(path))
    if read is not None:
        assert all(math.isfinite(p.value) for p in read.points)


# Records from other members ---------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
FIELDS = ["name", "image", "tool", "cron", "status", "member", "env", "labels", "fire_time",
          "started", "attempt", "timezone", "mode", "value", "run_id", "v", "id", "host", "pid"]  # fmt: skip
VALID_RECORDS: dict[Any, list[str]] = {
    kind: [record.to_json().decode()]
    for kind, record in (
        (Tool, Tool(name="t", image="alpine:3.19", env={"A": "1"})),
        (Schedule, Schedule(name="s", tool="t", cron="* * * * * *", on={"region": "eu"})),
        (Run, Run(id="1.0-abc", tool="t", member="m", status="running", fire_time=1.0)),
        (Member, Member(name="m", host="h", version="1", started=1.0, labels={"a": "b"})),
        (
            Spike,
            Spike(tool="t", sortable="x", value=9.0, baseline=1.0, deviation=8.0,
                  deviation_pct=800.0, score=9.0, direction="up"),
        ),
    )
}  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, kind: Any) -> bytes:
    """A record as a member writes it, with fields replaced, dropped or added."""
    data = json.loads(draw(st.sampled_from(VALID_RECORDS[kind])))
    for name in draw(st.lists(st.sampled_from([*sorted(data), "extra"]), max_size=3)):
        if draw(st.booleans()):
            data[name] = draw(JSON_VALUES)
        else:
            data.pop(name, None)
    return json.dumps(data).encode()


RECORD_BYTES = st.one_of(
    st.binary(max_size=60),
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=8).map(
        lambda d: json.dumps(d).encode()
    ),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
)


@fast(EXAMPLES["record"])
@given(st.data())
def test_records_from_other_members(data: st.DataObject) -> None:
    kind: type[Record] = data.draw(st.sampled_from([Tool, Schedule, Run, Member, Spike]))
    raw = data.draw(st.one_of(mutated(kind), RECORD_BYTES))

    def decode() -> Any:
        try:
            return kind.from_json(raw)
        except RecordError:
            raise
        except MaomaoError as exc:  # records.decode skips RecordError only
            raise AssertionError(f"{type(exc).__name__} escapes decoding: {exc}") from None

    outcome("record", decode)


TESTS = [
    test_names, test_image_references, test_git_urls, test_env_pairs, test_labels,
    test_cron_expressions, test_time_zones, test_config_structures, test_config_files,
    test_control_dirs, test_csv_series, test_records_from_other_members,
]  # fmt: skip


def test_the_planned_inputs_reach_the_total() -> None:
    assert sum(EXAMPLES.values()) >= MIN_TOTAL
    assert len(EXAMPLES) == len(TESTS), "one planned count per property test"
