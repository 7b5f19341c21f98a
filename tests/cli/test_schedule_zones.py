"""A schedule's time zone through `maomao run --tz`: one rule (scheduling.location_zone)
refuses the names that are no location, so every member computes the same fire times."""

from __future__ import annotations

import pytest

from cli_harness import Cli
from maomao_cli.models import Schedule

ZONES = [
    ("UTC", True),
    ("Europe/Zurich", True),
    ("Asia/Kathmandu", True),
    ("Etc/GMT-5", True),
    ("localtime", False),
    ("posixrules", False),
    ("Factory", False),
    ("posix/Europe/Zurich", False),
    ("right/UTC", False),
    ("Mars/Olympus", False),
]


@pytest.mark.parametrize(("zone", "accepted"), ZONES)
def test_only_location_zones_make_a_schedule(cli: Cli, zone: str, accepted: bool) -> None:
    assert cli.invoke("register", "tool", "alpine:3.19").code == 0
    before = cli.store.scan(cli.keys.schedules())
    result = cli.invoke("run", "tool", "--cron", "0 * * * *", "--tz", zone)
    if accepted:
        assert result.code == 0, result.err
        stored = cli.store.get(cli.keys.schedule("tool"))
        assert stored is not None and Schedule.from_json(stored.value).timezone == zone
        return
    assert result.code == 2, result.out
    [line] = result.err_lines
    assert f"--tz / timezone {zone!r}" in line
    assert cli.store.scan(cli.keys.schedules()) == before, "nothing written"
