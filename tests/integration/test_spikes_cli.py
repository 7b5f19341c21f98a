"""`maomao spikes` on files and on a tool's history: CSVs, control folders, bad input,
recompute, the terminal chart and the PNG plot."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import Env

pytestmark = pytest.mark.etcd


def stamp(i: int) -> str:
    return (datetime(2026, 1, 1) + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S")


def write_csv(path: Path, values: list[float], header: str = "timestamp,value") -> None:
    rows = [header] + [f"{stamp(i)},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(rows) + "\n")


def noisy(n: int, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [100 + rng.gauss(0, 1) for _ in range(n)]


def test_csv_json_lists_the_planted_spike_and_dip(env: Env, tmp_path: Path) -> None:
    values = noisy(20_000)
    values[5_000], values[15_000] = 160.0, 40.0
    csv = tmp_path / "series.csv"
    write_csv(csv, values)
    result = env.run("spikes", "--csv", str(csv), "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert {(s["index"], s["direction"]) for s in found} >= {(5_000, "up"), (15_000, "down")}
    spike = next(s for s in found if s["index"] == 5_000)
    assert spike["timestamp"] == stamp(5_000)  # the CSV's text, verbatim
    assert spike["value"] == 160.0 and spike["score"] > 5


def test_seed_method_with_a_threshold(env: Env, tmp_path: Path) -> None:
    csv = tmp_path / "series.csv"
    write_csv(csv, [10, 10, 13, 10, 10, 10.5])
    result = env.run(
        "spikes", "--csv", str(csv), "--json", "--method", "seed", "--threshold", "0.2"
    )
    assert result.code == 0, result.err
    assert [s["index"] for s in json.loads(result.out)] == [2]


def test_control_folder(env: Env, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for i, value in enumerate([*noisy(30), 500.0]):
        (folder / f"control-2026-02-{i + 1:02d}.csv").write_text(f"{value}\n")
    (folder / "control-2026-01-01.csv").write_text("not a number\n")
    result = env.run("spikes", "--dir", str(folder), "--json")
    assert result.code == 0, result.err
    assert [s["timestamp"] for s in json.loads(result.out)] == ["2026-02-31"]
    assert "control-2026-01-01.csv" in result.err  # the broken file is named once
    assert result.err.count("control-2026-01-01.csv") == 1


@pytest.mark.parametrize(
    ("content", "expect_code"),
    [
        ("timestamp,value\n", 0),  # no rows: an empty result
        ("timestamp,value\n2026-01-01,5\n", 0),  # a single point
        ("timestamp,value\n" + "".join(f"2026-01-{i:02d},7\n" for i in range(1, 29)), 0),
        ("timestamp,value\n2026-01-01,nan\n2026-01-02,text\n", 0),
        ("time,reading\n2026-01-01,5\n", 2),  # without the columns: one line, exit 2
        ("", 2),
    ],
)
def test_bad_or_small_csvs_never_trace_back(
    env: Env, tmp_path: Path, content: str, expect_code: int
) -> None:
    csv = tmp_path / "series.csv"
    csv.write_text(content)
    result = env.run("spikes", "--csv", str(csv), "--json")
    assert result.code == expect_code, result.err
    assert "Traceback" not in result.err
    if expect_code == 0:
        assert json.loads(result.out) == []
    else:  # with --json the one error is a JSON object on stdout
        error = json.loads(result.out)["error"]
        assert error["code"] == "bad-input" and "timestamp" in error["message"]
        plain = env.run("spikes", "--csv", str(csv))
        assert plain.code == 2 and len(plain.err.strip().splitlines()) == 1


def test_empty_or_missing_folder(env: Env, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = env.run("spikes", "--dir", str(empty), "--json")
    assert result.code == 0 and json.loads(result.out) == []
    missing = env.run("spikes", "--dir", str(tmp_path / "nope"), "--json")
    assert missing.code == 2 and "Traceback" not in missing.err


def test_recompute_chart_and_plot_over_a_tools_history(env: Env, tmp_path: Path) -> None:
    assert env.run("register", "hist", "img").code == 0
    data = tmp_path / "data" / "tools" / "hist"  # <importdir>/tools/<tool>, as runs lay it out
    data.mkdir(parents=True)
    for i, value in enumerate([*noisy(20), 900.0, *noisy(5, seed=9)]):
        (data / f"control-2026-03-{i + 1:02d}.csv").write_text(f"{value}\n")
    recomputed = env.run("spikes", "--tool", "hist", "--recompute", "--json")
    assert recomputed.code == 0, recomputed.err
    report = json.loads(recomputed.out)
    assert [s["sortable"] for s in report["found"]] == ["2026-03-21"]
    assert report["new"] == ["2026-03-21"] and report["gone"] == []  # nothing stored yet
    chart = env.run("spikes", "--tool", "hist", "--chart")
    assert chart.code == 0, chart.err
    assert "▲" in chart.out and "26 points" in chart.out
    png = tmp_path / "hist.png"
    plotted = env.run("spikes", "--tool", "hist", "--plot", str(png))
    pytest.importorskip("matplotlib")
    assert plotted.code == 0, plotted.err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_listing_needs_a_tool_or_all(env: Env) -> None:
    result = env.run("spikes")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    nothing = env.run("spikes", "--all", "--json")
    assert nothing.code == 0 and json.loads(nothing.out) == []
