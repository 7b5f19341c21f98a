"""Listings fit an 80-column terminal: at COLUMNS=80 `runs`, `tools`, `schedule list`,
`members` and `spikes` print every id of their JSON listing whole on one line (so it can
be copied into `maomao logs`), say "N more, use -n" when a listing is cut, show times in
one format, and `schedule show` prints neither None nor a raw epoch."""

from __future__ import annotations

import re

import pytest

from cli_harness import Cli, MakeCli
from maomao_cli.keys import Keys
from maomao_cli.models import Member, Run, Schedule, Spike, Tool

NOW = 1_900_000_000.0
KEYS = Keys("/maomao-cli-test")


def filled(make_cli: MakeCli, columns: str = "80") -> Cli:
    cli = make_cli(env={"COLUMNS": columns})
    store = cli.store
    for name in ("dummy-demo", "weather-station-north", "ocean-buoy-temperatures"):
        tool = Tool(
            name=name,
            image=f"registry.example.org/collaboration/{name}:2026.11",
            dataset="obs-long-dataset-name",
            author="Ana María Rodríguez-Fernández <ana@example.org>",
            description="collects the readings of a long-named instrument every hour",
            created=NOW,
            updated=NOW,
        )
        store.put(KEYS.tool(name), tool.to_json())
        schedule = Schedule(
            name=f"{name}-hourly",
            tool=name,
            cron="0 * * * *",
            timezone="Europe/Paris",
            created=NOW,
            on={"region": "eu-west", "gpu": "yes"},
            mode="everywhere",
        )
        store.put(KEYS.schedule(schedule.name), schedule.to_json())
    for i in range(30):
        stamp = f"20300317T17{i:02d}40Z"
        run = Run(
            id=f"{stamp}-{i:06x}",
            tool="weather-station-north",
            member="laboratory-member-long-name",
            status="failed" if i % 3 else "succeeded",
            trigger="retry" if i % 5 == 0 else "schedule",
            schedule="weather-station-north-hourly",
            fire_time=NOW + 60 * i,
            exit_code=1 if i % 3 else 0,
            started=NOW + 60 * i,
            finished=NOW + 60 * i + 75,
            error="the container exited with status 1 after writing nothing" if i % 3 else None,
        )
        store.put(KEYS.run(run.id), run.to_json())
        spike = Spike(
            tool="ocean-buoy-temperatures",
            sortable=f"{stamp}-{i:06d}",
            value=1034.5,
            baseline=100.25,
            deviation=934.25,
            deviation_pct=931.9,
            score=42.5,
            direction="up",
            run_id=run.id,
            member="laboratory-member-long-name",
            found=NOW,
        )
        store.put(KEYS.spike(spike.tool, spike.sortable), spike.to_json())
    for name in ("laboratory-member-long-name", "field-station-b"):
        member = Member(
            name=name,
            host=f"{name}.lab.example.org",
            version="0.1.0",
            started=NOW,
            labels={"region": "eu-west", "gpu": "yes"},
            running=1,
            pid=4242,
            heartbeat=NOW,
        )
        store.put(KEYS.member(name), member.to_json())
    return cli


LISTINGS = {
    "runs": (("runs",), "id"),
    "tools": (("tools",), "name"),
    "schedule list": (("schedule", "list"), "name"),
    "members": (("members",), "name"),
    "spikes": (("spikes", "--all"), "sortable"),
}


@pytest.mark.parametrize("listing", sorted(LISTINGS))
def test_every_id_whole_at_80_columns(make_cli: MakeCli, listing: str) -> None:
    cli = filled(make_cli)
    args, key = LISTINGS[listing]
    n = ("-n", "1000") if listing == "runs" else ()
    table = cli.invoke(*args, *n)
    listed = cli.invoke(*args, *n, "--json")
    assert table.code == 0 and listed.code == 0, table.err + listed.err
    ids = [str(item[key]) for item in listed.json()]
    assert ids
    lines = table.out.splitlines()
    assert all(len(line) <= 80 for line in lines), table.out
    for ident in ids:
        assert any(re.search(rf"(^|\s){re.escape(ident)}(\s|$)", line) for line in lines), (
            ident,
            table.out,
        )
    if listing == "runs":  # the run ids of the spikes too
        spikes = cli.invoke("spikes", "--all", "--json").json()
        shown = cli.invoke("spikes", "--all").out
        assert all(s["run_id"] in shown for s in spikes)


def test_a_cut_listing_says_how_many_more(make_cli: MakeCli) -> None:
    cli = filled(make_cli)
    assert cli.invoke("runs").err == ""  # 30 records: under the default 50
    assert cli.invoke("runs", "-n", "30").err == ""
    five = cli.invoke("runs", "-n", "5")
    assert five.err.strip() == "25 more, use -n 30 to see them all"
    # These records were written without the run index: their number is not known.
    unindexed = cli.invoke("runs", "--tool", "weather-station-north", "-n", "5")
    assert unindexed.err.strip() == "the newest 5; -n N for more"
    assert len(cli.invoke("runs", "--json").json()) == 30
    assert len(cli.invoke("runs", "--json", "-n", "5").json()) == 5


def test_wide_keeps_every_column(make_cli: MakeCli) -> None:
    cli = filled(make_cli)
    narrow = cli.invoke("runs").out
    wide = cli.invoke("runs", "--wide").out
    assert "--wide adds: member" in narrow and "laboratory" not in narrow
    assert "--wide adds" not in wide and "laboratory-member-long-name" in wide


def test_times_in_one_format(make_cli: MakeCli) -> None:
    cli = filled(make_cli, columns="200")
    table_time = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")
    for args in (("runs", "--wide"), ("tools",), ("members",), ("schedule", "list")):
        out = cli.invoke(*args).out
        assert table_time.search(out), (args, out)
        assert not re.search(r"\d\d:\d\d:\d\d(?!Z)", out), (args, out)  # no other format
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
    for args, fields in (
        (("runs",), ("started", "finished", "fire_time")),
        (("tools",), ("created", "updated")),
        (("members",), ("started", "heartbeat")),
        (("schedule", "list"), ("created", "next_fire")),
    ):
        for item in cli.invoke(*args, "--json").json():
            for field in fields:
                assert iso.match(str(item[field])), (args, field, item[field])
    shown = cli.invoke("schedule", "show", "weather-station-north-hourly", "--json").json()
    assert iso.match(shown["created"]) and all(iso.match(t) for t in shown["next_fires"])


def test_schedule_show_has_no_none_nor_epoch(make_cli: MakeCli) -> None:
    cli = filled(make_cli)
    shown = cli.invoke("schedule", "show", "weather-station-north-hourly")
    assert shown.code == 0, shown.err
    assert "None" not in shown.out
    assert not re.search(r"\b1\d{9}(\.\d+)?\b", shown.out), shown.out
    assert "retries: default (2)" in shown.out
    assert "created: 2030-03-17 17:46:40Z" in shown.out
    assert "on: gpu=yes,region=eu-west" in shown.out or "on: region=eu-west,gpu=yes" in shown.out


def test_no_color_is_honoured(make_cli: MakeCli) -> None:
    color = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|9[0-7]|38;5;\d+|38;2;[\d;]+)m")
    forced = filled(make_cli).invoke("runs")
    forced_cli = make_cli(env={"COLUMNS": "80", "FORCE_COLOR": "1"})
    forced_cli.store = filled(make_cli).store
    coloured = forced_cli.invoke("runs")
    plain_cli = make_cli(env={"COLUMNS": "80", "FORCE_COLOR": "1", "NO_COLOR": "1"})
    plain_cli.store = forced_cli.store
    plain = plain_cli.invoke("runs")
    assert "\x1b" not in forced.out  # not a terminal: no escape code at all
    assert color.search(coloured.out), coloured.out  # the status colours, when forced
    assert not color.search(plain.out), plain.out
    assert "20300317T172940Z-00001d" in plain.out
