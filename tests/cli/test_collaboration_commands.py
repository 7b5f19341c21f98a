"""The collaboration commands in-process: `runs` marks runs whose dataset commit is not on
the remote, `runs show` shows provenance and insights, `dataset status` lists the unpushed
runs, `spikes --member`, `audit`; bad input is one line and exit 2."""

from __future__ import annotations

from typing import Any

from cli_harness import Cli
from fakes.git import FakeGit
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.composition import Services
from maomao_cli.models import Run, Schedule, Spike, Tool

URL = "git://git.example.org/shared.git"
FIRE = 1_800_000_003.0


def with_git(cli: Cli, git: FakeGit, runner: ScriptedRunner) -> Services:
    return Services(cli.settings, store=cli.store, runner=runner, git=git)


def test_an_unpushed_run_is_marked_in_runs_and_status_until_a_push(cli: Cli) -> None:
    git = FakeGit()
    git.add_remote(URL)
    runner = ScriptedRunner(files={"c-{n}.csv": "1\n", "insights.json": '{"records": 7}'})
    assert cli.invoke("dataset", "add", "shared", URL, "--push").code == 0
    assert cli.invoke("register", "t", "img", "--dataset", "shared").code == 0
    assert cli.invoke("dataset", "clone", "shared", services=with_git(cli, git, runner)).code == 0
    git.remotes[URL].reachable = False
    ran = cli.invoke("run", "t", services=with_git(cli, git, runner))
    assert ran.code == 0 and "not pushed" in ran.err

    table = cli.invoke("runs", services=with_git(cli, git, runner))
    assert "pushed" in table.out and "NOT PUSHED" in table.out
    [listed] = cli.invoke("runs", "--json").json()
    assert listed["pushed"] is False and listed["dataset_commit"]
    status = cli.invoke("dataset", "status", "shared", services=with_git(cli, git, runner))
    assert "1 run(s) not on the remote" in status.out and listed["id"] in status.out
    shown: dict[str, Any] = cli.invoke("dataset", "status", "shared", "--json",
                                       services=with_git(cli, git, runner)).json()  # fmt: skip
    assert shown["unpushed_runs"] == [listed["id"]]

    show = cli.invoke("runs", "show", listed["id"])
    assert show.code == 0 and '"records": 7' in show.out and "dataset_commit" in show.out
    one = cli.invoke("runs", "show", listed["id"], "--json").json()
    assert one["insights"] == {"records": 7} and one["member"] == "member-a"

    git.remotes[URL].reachable = True
    assert cli.invoke("dataset", "push", "shared", services=with_git(cli, git, runner)).code == 0
    assert cli.invoke("runs", "--json").json()[0]["pushed"] is True
    assert "NOT PUSHED" not in cli.invoke("runs").out
    cleared = cli.invoke(
        "dataset", "status", "shared", "--json", services=with_git(cli, git, runner)
    )
    assert cleared.json()["unpushed_runs"] == []


def test_runs_show_of_a_bad_or_missing_id(cli: Cli) -> None:
    bad = cli.invoke("runs", "show", "../x")
    assert bad.code == 2 and len(bad.err_lines) == 1 and "invalid run id" in bad.err
    missing = cli.invoke("runs", "show", "nosuch", "--json")
    assert missing.code == 2 and missing.json()["error"]["code"] == "not-found"


def spike(member: str) -> Spike:
    return Spike(
        tool="t",
        sortable="20270115T080003Z",
        value=1000.0,
        baseline=100.0,
        deviation=900.0,
        deviation_pct=900.0,
        score=9.0,
        direction="up",
        member=member,
    )


def test_spikes_of_one_member(cli: Cli) -> None:
    for member in ("a", "b"):
        key = cli.keys.spike("t", "20270115T080003Z", member)
        cli.store.put(key, spike(member).to_json())
    both = cli.invoke("spikes", "--tool", "t", "--json").json()
    assert sorted(s["member"] for s in both) == ["a", "b"]
    only = cli.invoke("spikes", "--tool", "t", "--member", "b", "--json").json()
    assert [s["member"] for s in only] == ["b"]
    bad = cli.invoke("spikes", "--tool", "t", "--member", "Bad/Name")
    assert bad.code == 2 and len(bad.err_lines) == 1 and "invalid member name" in bad.err


def test_audit_names_the_odd_one_out_and_stores_its_divergence(cli: Cli) -> None:
    cli.store.put(cli.keys.tool("t"), Tool(name="t", image="img").to_json())
    schedule = Schedule(name="s", tool="t", cron="* * * * * */3", mode="everywhere")
    cli.store.put(cli.keys.schedule("s"), schedule.to_json())
    for member, value in (("a", 100.0), ("b", 100.0), ("c", 110.0)):
        digest = "same" if value == 100 else "other"
        run = Run(
            id=f"r-{member}",
            tool="t",
            member=member,
            status="succeeded",
            trigger="schedule",
            schedule="s",
            fire_time=FIRE,
            outputs={"control-x.csv": digest},
            control=value,
        )
        cli.store.put(cli.keys.run(run.id), run.to_json())
    text = cli.invoke("audit", "t", "--firing", "2027-01-15T08:00:03Z")
    assert text.code == 0, text.err
    assert "odd one(s) out: c" in text.err and "divergence: c wrote 110" in text.err
    data = cli.invoke("audit", "t", "--json").json()
    assert data["odd_ones_out"] == ["c"] and data["majority"] == ["a", "b"]
    assert data["differing_files"] == {"control-x.csv": ["c"]}
    assert len(cli.records("divergences/")) == 1  # stored once, however often audited
    bad = cli.invoke("audit", "t", "--firing", "yesterday")
    assert bad.code == 2 and len(bad.err_lines) == 1 and "invalid --firing" in bad.err
